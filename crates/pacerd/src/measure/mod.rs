//! What Pacer knows about a guest: how it dirties memory and its disks, and
//! what fraction of its memory is zero pages; and how fast the link to a
//! destination is (a timed upload to the destination agent, [`link`]).
//!
//! Guest memory is read where QEMU keeps it (`/proc/PID/mem`, confirmed page by
//! page against `pmemsave`): every page is checked for zeros, and 65536 random
//! pages are hashed at the start and again 0.5, 1, 2, 4 and 8 s later, five points
//! on the guest's dirtying curve from one measurement. This also works while the
//! VM migrates, so predictions follow a guest that changes its ways during the
//! first round. Where guest memory cannot be read, QEMU's own sampling
//! (`calc-dirty-rate`, 4096 pages per GiB, whole MiB/s) over 1 and 4 s and 384
//! `pmemsave` pages stand in, before migrations only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pacer_model::disk_regions::RegionWrites;
use pacer_model::{DirtyModel, Prior};
use pacer_qemu::guest_ram::GuestRam;
use tracing::debug;

use crate::vms::Registry;

pub mod disks;
pub mod guest;
pub mod link;
pub mod sampler;

/// Windows (s) of one dirtying-curve measurement from guest memory.
pub const CURVE_WINDOWS_S: [f64; 5] = [0.5, 1.0, 2.0, 4.0, 8.0];
/// While the VM migrates, its dirtying is followed: this many pages hashed every
/// [`FOLLOW_STEP`], compared with the snapshots about these windows back (the longer
/// windows of the last full measurement are kept while the rolling curve is short and
/// agrees with them).
const FOLLOW_SAMPLE_PAGES: usize = 16384;
/// How often a migrating guest is looked at.
pub const FOLLOW_STEP: Duration = Duration::from_millis(500);
const FOLLOW_WINDOWS_S: [f64; 5] = [0.5, 1.0, 2.0, 4.0, 8.0];
/// Two curves agree if they differ by at most this share at their longest common window.
const CURVES_AGREE: f64 = 0.3;
/// Pages hashed for a dirtying curve.
const CURVE_SAMPLE_PAGES: usize = 65536;
/// A VM this agent launched is not measured in the background for this long: its
/// boot (and a workload filling its memory) is not its work.
pub const BOOT_GRACE: Duration = Duration::from_secs(12);
/// Pages read for the zero fraction (all of RAM up to 4 GiB).
const ZERO_SCAN_PAGES: u64 = 1 << 20;
/// Measurements older than this are not used (a guest changes its ways).
const FRESH: Duration = Duration::from_secs(60);

/// Latest measurements of one VM.
#[derive(Debug, Clone, Default)]
pub struct Measurements {
    /// Points `(window s, distinct bytes dirtied)` on the guest's dirtying curve, and when
    /// the measurement ended.
    pub curve: Option<(Vec<(f64, f64)>, Instant)>,
    /// Fraction of guest memory that is zero pages.
    pub zero_fraction: Option<(f64, Instant)>,
    /// Where the guest writes on its disks (all disks end to end), if it has any.
    pub disk_regions: Option<(Arc<RegionWrites>, Instant)>,
}

impl Measurements {
    /// The guest's dirtying, from a fresh measurement.
    pub fn dirty_model(&self) -> Option<DirtyModel> {
        let (points, _) = self.curve.as_ref().filter(|(_, t)| t.elapsed() < FRESH)?;
        let weighted: Vec<(f64, f64, f64)> = points.iter().map(|(t, b)| (*t, *b, 1.0)).collect();
        DirtyModel::fit_points(&weighted).ok()
    }

    /// When the dirtying curve was last measured.
    pub fn curve_at(&self) -> Option<Instant> {
        self.curve.as_ref().map(|(_, t)| *t)
    }

    /// The prior for a migration starting now.
    pub fn prior(&self, link_bps: Option<f64>) -> Prior {
        Prior {
            dirty: self.dirty_model(),
            zero_fraction: self.zero_fraction.filter(|(_, t)| t.elapsed() < FRESH).map(|(z, _)| z),
            link_bps,
        }
    }
}

/// What is measured of one VM, and how.
#[derive(Default)]
struct VmMeasure {
    latest: Measurements,
    /// QEMU pid and its guest RAM mapping, once looked for (`None` inside: not readable).
    guest_ram: Option<(i32, Option<Arc<GuestRam>>)>,
    /// Being migrated away: measured over shorter windows, back to back.
    migrating: bool,
}

/// The measurements of every VM, and the rule that one guest is measured at a time.
#[derive(Default)]
pub struct MeasureStore {
    vms: Mutex<HashMap<String, VmMeasure>>,
    /// Held while a guest is measured: QEMU measures one dirty rate at a time,
    /// and the background sampler and `predict` must not collide.
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl MeasureStore {
    /// The latest measurements of `vm` (empty if none).
    pub fn latest(&self, vm: &str) -> Measurements {
        self.vms.lock().unwrap().get(vm).map(|e| e.latest.clone()).unwrap_or_default()
    }

    /// Marks `vm` as migrating away (or not any more): its measurements then
    /// follow the first round over shorter windows.
    pub fn set_migrating(&self, vm: &str, migrating: bool) {
        self.vms.lock().unwrap().entry(vm.to_string()).or_default().migrating = migrating;
    }

    fn is_migrating(&self, vm: &str) -> bool {
        self.vms.lock().unwrap().get(vm).is_some_and(|e| e.migrating)
    }

    /// Forgets a VM that left the host.
    pub fn forget(&self, vm: &str) {
        self.vms.lock().unwrap().remove(vm);
    }

    /// Forgets every VM not in `names`.
    fn retain(&self, names: &[String]) {
        self.vms.lock().unwrap().retain(|n, _| names.contains(n));
    }

    /// Measurements of `vm` at most `max_age` old: waits for one under way, else measures.
    pub async fn fresh(&self, vms: &Registry, vm: &str, max_age: Duration) -> Result<Measurements, String> {
        let _one = self.one_at_a_time.lock().await;
        let m = self.latest(vm);
        if m.curve_at().is_some_and(|t| t.elapsed() < max_age) && m.zero_fraction.is_some() {
            return Ok(m);
        }
        self.measure_locked(vms, vm).await
    }

    /// [`fresh`](Self::fresh) for several VMs at once: those not measured recently are
    /// measured side by side (each reads its own QEMU's memory), in request order.
    pub async fn fresh_many(&self, vms: &Registry, names: &[String], max_age: Duration) -> Vec<Result<Measurements, String>> {
        let _one = self.one_at_a_time.lock().await;
        let each = names.iter().map(|vm| async move {
            let m = self.latest(vm);
            if m.curve_at().is_some_and(|t| t.elapsed() < max_age) && m.zero_fraction.is_some() {
                return Ok(m);
            }
            self.measure_locked(vms, vm).await
        });
        futures_util::future::join_all(each).await
    }

    /// Content hashes of `vm`'s non-zero pages, sampled by content
    /// ([`GuestRam::content_hashes`]); an error where its memory cannot be read here.
    pub async fn content_hashes(&self, vms: &Registry, vm: &str, sample_bits: u32) -> Result<Vec<u64>, String> {
        let ram = self
            .guest_ram(vms, vm)
            .await
            .ok_or_else(|| format!("the memory of VM {vm:?} cannot be read here (see the agent's log)"))?;
        tokio::task::spawn_blocking(move || ram.content_hashes(sample_bits))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("reading the memory of VM {vm:?}: {e}"))
    }

    /// Follows a migrating VM's dirtying every [`FOLLOW_STEP`] until `stop`, replacing its
    /// curve at each step, so the predictor sees a guest change its ways within about a
    /// second. Returns at once where guest memory cannot be read (QEMU's own sampling
    /// does not run during a migration).
    pub async fn follow(self: Arc<Self>, vms: Arc<Registry>, vm: String, stop: tokio_util::sync::CancellationToken) {
        let Some(ram) = self.guest_ram(&vms, &vm).await else { return };
        let mut roll = Some(pacer_qemu::guest_ram::RollingCurve::new(ram.pages(), FOLLOW_SAMPLE_PAGES, &FOLLOW_WINDOWS_S));
        // A step every FOLLOW_STEP, hashing included (a step late on a busy host is
        // taken at once, then the rhythm resumes): sleeping a whole step after each
        // hashing made them a second apart under load, and a change took 3 s to show.
        let mut every = tokio::time::interval(FOLLOW_STEP);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let (mut r, ram2) = (roll.take().expect("put back"), ram.clone());
            let Ok((r, curve)) = tokio::task::spawn_blocking(move || {
                let c = r.step(&ram2);
                (r, c)
            })
            .await
            else {
                return;
            };
            roll = Some(r);
            let Ok(curve) = curve else {
                debug!("{vm}: guest memory no longer readable; not followed");
                return;
            };
            if curve.is_empty() {
                continue;
            }
            let mut vms_map = self.vms.lock().unwrap();
            let e = vms_map.entry(vm.clone()).or_default();
            let old = e.latest.curve.take();
            let merged = merge_curves(curve, old.as_ref().map(|(c, _)| c.as_slice()));
            debug!("{vm}: followed: {merged:?}");
            e.latest.curve = Some((merged, Instant::now()));
        }
    }

    /// Measures one VM now (not while it migrates: then it is followed): its dirtying
    /// curve and zero fraction.
    async fn measure_locked(&self, vms: &Registry, vm: &str) -> Result<Measurements, String> {
        let qmp = vms.qmp(vm).await.map_err(|e| e.to_string())?;
        let rec = vms.record(vm).map_err(|e| e.to_string())?;
        let mut m = Measurements::default();
        let windows: &'static [f64] = &CURVE_WINDOWS_S;
        let longest = Duration::from_secs_f64(windows[windows.len() - 1]);
        let disks = disks::disk_writes(&rec, longest);
        if let Some(ram) = self.guest_ram(vms, vm).await {
            let (zero, curve) = tokio::task::spawn_blocking(move || {
                let zero = ram.zero_fraction(ZERO_SCAN_PAGES);
                let curve = ram.dirty_curve(CURVE_SAMPLE_PAGES, windows);
                (zero, curve)
            })
            .await
            .map_err(|e| e.to_string())?;
            let now = Instant::now();
            let curve = curve.map_err(|e| format!("reading guest memory: {e}"))?;
            m.zero_fraction = Some((zero.map_err(|e| format!("reading guest memory: {e}"))?, now));
            m.curve = Some((curve, now));
        } else {
            let scratch = vms.vm_dir(vm).join("page.sample");
            let (points, z) = guest::measure_with_qemu(&qmp, rec.memory_mib << 20, &scratch).await?;
            m.zero_fraction = Some((z, Instant::now()));
            m.curve = Some((points, Instant::now()));
        }
        match disks.await {
            Ok(Some(r)) => m.disk_regions = Some((Arc::new(r), Instant::now())),
            Ok(None) => {}
            Err(e) => debug!("{vm}: disk writes not measured: {e}"),
        }
        self.vms.lock().unwrap().entry(vm.to_string()).or_default().latest = m.clone();
        Ok(m)
    }

    /// The VM's guest RAM as QEMU maps it, found and confirmed once per QEMU process.
    async fn guest_ram(&self, vms: &Registry, vm: &str) -> Option<Arc<GuestRam>> {
        let rec = vms.record(vm).ok()?;
        if let Some((pid, found)) = self.vms.lock().unwrap().get(vm).and_then(|e| e.guest_ram.clone()) {
            if pid == rec.pid {
                return found;
            }
        }
        let found = guest::locate_ram(vms, vm, rec.pid, rec.memory_mib << 20).await.ok().map(Arc::new);
        self.vms.lock().unwrap().entry(vm.to_string()).or_default().guest_ram = Some((rec.pid, found.clone()));
        found
    }
}

/// A curve measured over short windows keeps the longer windows of the previous one
/// when both agree at the new curve's longest window: the working set shows only in
/// long windows. When they disagree, the guest has changed and the new curve stands alone.
fn merge_curves(new: Vec<(f64, f64)>, old: Option<&[(f64, f64)]>) -> Vec<(f64, f64)> {
    let (Some(&(wn, bn)), Some(old)) = (new.last(), old) else {
        return new;
    };
    let Some(&(_, bo)) = old.iter().find(|(w, _)| (w / wn - 1.0).abs() < 0.1) else {
        return new;
    };
    if (bn - bo).abs() > CURVES_AGREE * bn.max(bo) {
        return new;
    }
    let mut out = new;
    out.extend(old.iter().filter(|(w, _)| *w > wn * 1.1));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_curves_keep_long_windows_only_when_they_agree() {
        let old = vec![(0.5, 7.0), (1.0, 14.0), (2.0, 27.0), (4.0, 52.0), (8.0, 95.0)];
        let new = vec![(0.5, 7.5), (1.0, 14.5), (2.0, 28.0), (4.0, 55.0)];
        let m = merge_curves(new.clone(), Some(&old));
        assert_eq!(m.len(), 5);
        assert_eq!(m[4], (8.0, 95.0));
        // The guest started writing: the idle curve's long window is not kept.
        let idle = vec![(0.5, 0.0), (1.0, 0.0), (2.0, 0.1), (4.0, 0.1), (8.0, 0.2)];
        assert_eq!(merge_curves(new.clone(), Some(&idle)), new);
        assert_eq!(merge_curves(new.clone(), None), new);
    }
}
