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
use pacer_qemu::dirty_log::{DirtyLogProbe, Rehearsal};
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
    /// What QEMU's own dirty log showed (a probe before a prediction), if it ran.
    pub dirty_log: Option<DirtyLogReading>,
}

/// Points on the dirtying curve counted by QEMU's dirty log ([`pacer_qemu::dirty_log`]).
#[derive(Debug, Clone)]
pub struct DirtyLogReading {
    /// `(window s, bytes dirtied)`, one per sync after round one (the rehearsal's apart).
    pub points: Vec<(f64, f64)>,
    /// The dirty log counted more than twice what content hashing saw at the same
    /// windows: this guest rewrites pages with the bytes they held, which hashing
    /// cannot see, so its content curve is not believed while this reading is fresh.
    pub content_blind: bool,
    /// What content hashing made of the guest at the time, bytes/s.
    pub content_rate_bps: f64,
    /// The rehearsal of the migration's end at its link's rate, if one ran.
    pub rehearsal: Option<pacer_qemu::dirty_log::RehearsalOutcome>,
    /// Seconds covered by the probe's syncs and the bytes they found, rehearsal included
    /// ([`pacer_qemu::dirty_log::DirtyLogProbe::span`]).
    pub span: Option<(f64, f64)>,
    pub at: Instant,
}

/// All the rehearsal's points together weigh as much as this many of the probe's:
/// it places a sync every few tenths of a second, and the long windows must still count.
const REHEARSAL_WEIGHT: f64 = 3.0;

/// A span of syncs this long shows a writer's bursts (stress-ng's passes come seconds apart).
const BURST_SPAN_S: f64 = 4.0;
/// The span's rate is this many times the median window's: the guest writes in bursts.
const BURST_RATIO: f64 = 3.0;
/// ... and at least this many bytes/s (a few pages either way are no burst).
const BURST_MIN_BPS: f64 = 1e6;
/// Windows this long or longer show a writer's phases ([`DirtyLogReading::phases`]) ...
const PHASE_WINDOW_S: f64 = 1.0;
/// ... as rates this many times apart.
const PHASE_RATIO: f64 = 10.0;

impl DirtyLogReading {
    /// The dirty model through the probe's points and the rehearsal's; for a guest that
    /// writes in bursts, the burst model ([`burst`](Self::burst)).
    pub fn model(&self) -> Option<DirtyModel> {
        if let Some(m) = self.burst() {
            return Some(m);
        }
        let mut weighted: Vec<(f64, f64, f64)> = self.points.iter().map(|(t, b)| (*t, *b, 1.0)).collect();
        if let Some(r) = self.rehearsal.as_ref().filter(|r| !r.points.is_empty()) {
            let w = (REHEARSAL_WEIGHT / r.points.len() as f64).min(1.0);
            weighted.extend(r.points.iter().map(|(t, b)| (*t, *b, w)));
        }
        DirtyModel::fit_points(&weighted).ok()
    }

    /// A guest that rewrites a whole buffer now and then and little between (stress-ng's
    /// memrate passes at a set average rate): most syncs find next to nothing, one finds
    /// the buffer. A curve through the points is the quiet guest (stress-ng over 200
    /// Mbit/s: predicted 12.5 s, took 18.4 s in extra rounds); what a migration's rounds
    /// meet on average is the span's rate, up to the largest burst. So the model is that
    /// rate over a working set of the largest find: a window of `w` catches a burst
    /// with a chance of `w` over the period, and then the whole buffer.
    ///
    /// The same model stands for a guest that writes in phases at long windows
    /// ([`phases`](Self::phases)): stress-ng's write passes (a 128 MiB buffer written
    /// through in about 8 s) between its read passes (nothing written).
    pub fn burst(&self) -> Option<DirtyModel> {
        let (secs, bytes) = self.span.filter(|(t, _)| *t >= BURST_SPAN_S)?;
        let median = self.median_rate()?;
        let mean = bytes / secs;
        let set = self.all_points().map(|p| p.1).fold(0.0, f64::max);
        if mean < BURST_MIN_BPS || (mean < BURST_RATIO * median && !self.phases(set)) {
            return None;
        }
        // The set is at least one second of the mean rate: never a zero working set.
        DirtyModel::new(mean, set.max(mean * 1.0)).ok()
    }

    /// Windows of a second or more that no curve of a steady writer passes through: a
    /// quiet one among busy ones (a guest between write passes: stress-ng found 33 MB in
    /// 2.1 s, 135 MB in 6.3 s, then 0.2 MB in 5.5 s), or a longer window that found no
    /// more than a shorter one near the largest find `set` (a buffer written through
    /// and then over again: 129 MB in 4.8 s, 117 MB in 7.4 s; fitted as a steady writer
    /// that never stops growing, it was predicted at 42 s and took 18.5 s).
    fn phases(&self, set: f64) -> bool {
        let long: Vec<(f64, f64)> = self.all_points().filter(|p| p.0 >= PHASE_WINDOW_S).collect();
        let rates = long.iter().map(|(w, b)| b / w);
        let (lo, hi) = rates.fold((f64::INFINITY, 0.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
        if hi >= BURST_MIN_BPS && hi >= PHASE_RATIO * lo {
            return true;
        }
        long.iter().any(|a| a.1 >= 0.5 * set && long.iter().any(|b| b.0 >= 1.3 * a.0 && b.1 <= 1.1 * a.1))
    }

    /// What the API shows of this reading.
    pub fn view(&self) -> pacer_api::DirtyLogView {
        pacer_api::DirtyLogView {
            points: self.all_points().map(|(w, b)| [w, b]).collect(),
            median_rate_bps: self.median_rate(),
            span_s: self.span.map(|s| s.0),
            span_bytes: self.span.map(|s| s.1),
            largest_find_bytes: self.all_points().map(|p| p.1).fold(0.0, f64::max),
            bursts: self.burst().is_some(),
        }
    }

    /// The probe's points and the rehearsal's.
    fn all_points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        let rehearsed = self.rehearsal.iter().flat_map(|r| r.points.iter());
        self.points.iter().chain(rehearsed).copied()
    }

    /// The median window's rate over all points, bytes/s.
    pub fn median_rate(&self) -> Option<f64> {
        let mut rates: Vec<f64> = self.all_points().map(|(w, b)| b / w).collect();
        rates.sort_by(f64::total_cmp);
        rates.get(rates.len() / 2).copied()
    }
}

/// Where a guest's dirtying figures came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirtySource {
    /// Hashing guest memory (or QEMU's page sampling where memory cannot be read).
    Content,
    /// QEMU's dirty log: content hashing was blind to this guest's writes, or the
    /// probe rehearsed the migration's end.
    DirtyLog,
}

impl DirtySource {
    pub fn as_str(self) -> &'static str {
        match self {
            DirtySource::Content => "content",
            DirtySource::DirtyLog => "dirty-log",
        }
    }
}

/// A rehearsal with this many syncs placed describes the short windows.
const REHEARSAL_POINTS: usize = 3;
/// The dirty log counts more than this many times the content curve: hashing is blind.
const BLIND_RATIO: f64 = 2.0;
/// Share of RAM below which the two always agree (a few pages either way).
const BLIND_SLACK: f64 = 0.002;
/// The dirty-log probe: at most this long in all, and this long after round one.
const PROBE_LIMIT: Duration = Duration::from_secs(30);
const PROBE_AFTER_ROUND_ONE: Duration = Duration::from_secs(12);

impl Measurements {
    /// The guest's dirtying, from a fresh measurement: its content curve, or QEMU's
    /// dirty log where that showed content hashing blind to the guest's writes.
    pub fn dirty_model(&self) -> Option<DirtyModel> {
        if let Some(d) = self.blind_reading() {
            return d.model();
        }
        let (points, _) = self.curve.as_ref().filter(|(_, t)| t.elapsed() < FRESH)?;
        fit(points)
    }

    /// Which measurement [`dirty_model`](Self::dirty_model) stands on.
    pub fn dirty_source(&self) -> DirtySource {
        if self.blind_reading().is_some() {
            DirtySource::DirtyLog
        } else {
            DirtySource::Content
        }
    }

    /// The dirty-log reading the dirty model stands on: where hashing is blind, where the
    /// guest writes in bursts, or where it rehearsed the migration's end. A rehearsal's syncs count what QEMU's
    /// switch-over rule sees (pages dirtied since the last sync that were not still
    /// waiting to be sent), at the windows of the last rounds; hashing counts every page
    /// changed, which near the edge is more than QEMU will resend.
    fn blind_reading(&self) -> Option<&DirtyLogReading> {
        self.dirty_log.as_ref().filter(|d| {
            let rehearsed = d.rehearsal.as_ref().is_some_and(|r| r.points.len() >= REHEARSAL_POINTS);
            (d.content_blind || rehearsed || d.burst().is_some()) && d.at.elapsed() < FRESH && d.model().is_some()
        })
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

fn fit(points: &[(f64, f64)]) -> Option<DirtyModel> {
    let weighted: Vec<(f64, f64, f64)> = points.iter().map(|(t, b)| (*t, *b, 1.0)).collect();
    DirtyModel::fit_points(&weighted).ok()
}

/// Whether a reading rehearsed the migration asked about (a link within a tenth, the
/// same downtime limit), or none was asked.
fn rehearsed_like(d: &DirtyLogReading, asked: Option<Rehearsal>) -> bool {
    match (asked, &d.rehearsal) {
        (None, _) => true,
        (Some(a), Some(r)) => r.downtime_limit_ms == a.downtime_limit_ms && (r.link_bps - a.link_bps).abs() <= 0.1 * a.link_bps,
        (Some(_), None) => false,
    }
}

/// Whether the dirty log's points exceed the content curve's by [`BLIND_RATIO`] (at the
/// median point), for a guest of `ram` bytes.
fn content_blind(log: &[(f64, f64)], content: Option<&DirtyModel>, ram: f64) -> bool {
    if log.is_empty() {
        return false;
    }
    let mut ratios: Vec<bool> = log
        .iter()
        .map(|(w, b)| *b > BLIND_RATIO * content.map_or(0.0, |c| c.dirtied(*w)) + BLIND_SLACK * ram)
        .collect();
    ratios.sort();
    ratios[ratios.len() / 2]
}

/// What is measured of one VM, and how.
#[derive(Default)]
struct VmMeasure {
    latest: Measurements,
    /// QEMU pid and its guest RAM mapping, once looked for (`None` inside: not readable).
    guest_ram: Option<(i32, Option<Arc<GuestRam>>)>,
    /// Being migrated away: measured over shorter windows, back to back.
    migrating: bool,
    /// Held while QEMU's dirty log is probed: a migration waits for it.
    probing: Arc<tokio::sync::Mutex<()>>,
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

    /// Measurements of several VMs at most `max_age` old (waiting for one under way): those not measured recently are
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

    /// Measurements of `vm` at most `max_age` old (waiting for one under way), and with
    /// `probe` QEMU's dirty log probed too (unless probed within
    /// `max_age`), side by side with the content measurement: the dirty log counts the
    /// writes hashing cannot see. A probe that fails leaves the content figures.
    ///
    /// With `rehearsal` (the link and downtime limit of the migration to come) the probe
    /// also rehearses that migration's end; a reading that rehearsed another link is not fresh.
    pub async fn fresh_with_dirty_log(
        &self,
        vms: &Registry,
        vm: &str,
        max_age: Duration,
        probe: bool,
        rehearsal: Option<Rehearsal>,
    ) -> Result<Measurements, String> {
        let _one = self.one_at_a_time.lock().await;
        let m = self.latest(vm);
        let content_fresh = m.curve_at().is_some_and(|t| t.elapsed() < max_age) && m.zero_fraction.is_some();
        let log_fresh = m.dirty_log.as_ref().is_some_and(|d| d.at.elapsed() < max_age && rehearsed_like(d, rehearsal));
        if content_fresh && (log_fresh || !probe) {
            return Ok(m);
        }
        if !probe {
            return self.measure_locked(vms, vm).await;
        }
        let content = async {
            if content_fresh {
                Ok(m.clone())
            } else {
                self.measure_locked(vms, vm).await
            }
        };
        let (content, log) = tokio::join!(content, self.probe_dirty_log(vms, vm, rehearsal));
        let mut m = content?;
        match log {
            Ok(probe) => {
                let (points, span) = (probe.points, probe.span);
                let ram = (vms.record(vm).map_err(|e| e.to_string())?.memory_mib << 20) as f64;
                let curve_model = m.curve.as_ref().and_then(|(c, _)| fit(c));
                let reading = DirtyLogReading {
                    content_blind: content_blind(&points, curve_model.as_ref(), ram),
                    content_rate_bps: curve_model.map_or(0.0, |c| c.rate_bps),
                    points,
                    rehearsal: probe.rehearsal,
                    span,
                    at: Instant::now(),
                };
                debug!("{vm}: dirty log {reading:?}");
                m.dirty_log = Some(reading.clone());
                self.vms.lock().unwrap().entry(vm.to_string()).or_default().latest.dirty_log = Some(reading);
            }
            Err(e) => debug!("{vm}: dirty log not probed: {e}"),
        }
        Ok(m)
    }

    async fn probe_dirty_log(&self, vms: &Registry, vm: &str, rehearsal: Option<Rehearsal>) -> Result<DirtyLogProbe, String> {
        let qmp = vms.qmp(vm).await.map_err(|e| e.to_string())?;
        let lock = self.vms.lock().unwrap().entry(vm.to_string()).or_default().probing.clone();
        let _probing = lock.lock().await;
        if self.is_migrating(vm) {
            return Err("it is migrating".into());
        }
        let dir = vms.vm_dir(vm);
        let p = pacer_qemu::dirty_log::probe(&qmp, &dir, PROBE_LIMIT, PROBE_AFTER_ROUND_ONE, rehearsal, || self.is_migrating(vm)).await?;
        debug!("{vm}: dirty-log probe: {} points in {:?}, {} bytes sunk", p.points.len(), p.elapsed, p.sunk_bytes);
        Ok(p)
    }

    /// Waits for a dirty-log probe of `vm` under way to end (call after
    /// [`set_migrating`](Self::set_migrating), which makes it stop within a poll).
    pub async fn probe_settled(&self, vm: &str) {
        let lock = self.vms.lock().unwrap().get(vm).map(|e| e.probing.clone());
        if let Some(l) = lock {
            drop(l.lock().await);
        }
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
        let mut map = self.vms.lock().unwrap();
        let e = map.entry(vm.to_string()).or_default();
        // A dirty-log reading outlives a content measurement: it says what hashing misses.
        m.dirty_log = e.latest.dirty_log.take();
        e.latest = m.clone();
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

    #[test]
    fn the_dirty_log_stands_in_only_where_content_hashing_is_blind() {
        let ram = (1u64 << 30) as f64;
        let now = Instant::now();
        let seen = DirtyModel::new(20e6, 200e6).unwrap();
        let curve: Vec<(f64, f64)> = CURVE_WINDOWS_S.iter().map(|w| (*w, seen.dirtied(*w))).collect();
        // QEMU counts a little more than hashing (pages rewritten unchanged now and then).
        let near: Vec<(f64, f64)> = [0.4, 0.8, 1.6].iter().map(|w| (*w, 1.3 * seen.dirtied(*w))).collect();
        assert!(!content_blind(&near, Some(&seen), ram));
        // stress-ng: hashing sees almost nothing, QEMU 40 MB/s.
        let idle = DirtyModel::new(0.5e6, 200e6).unwrap();
        let log: Vec<(f64, f64)> = [0.4, 0.8, 1.6].iter().map(|w| (*w, 40e6 * w)).collect();
        assert!(content_blind(&log, Some(&idle), ram));
        assert!(content_blind(&log, None, ram), "no content curve at all");
        assert!(!content_blind(&[], Some(&idle), ram), "no reading: nothing to say");
        // A few pages either way are no evidence.
        assert!(!content_blind(&[(0.5, 100.0 * 4096.0)], Some(&DirtyModel::IDLE), ram));

        let mut m = Measurements { curve: Some((curve, now)), zero_fraction: Some((0.5, now)), ..Default::default() };
        assert_eq!(m.dirty_source(), DirtySource::Content);
        m.dirty_log = Some(DirtyLogReading { points: log.clone(), content_blind: true, content_rate_bps: 0.5e6, rehearsal: None, span: None, at: now });
        assert_eq!(m.dirty_source(), DirtySource::DirtyLog);
        let d = m.dirty_model().unwrap();
        assert!((d.dirtied(1.0) - 40e6).abs() < 4e6, "the dirty log's rate: {d:?}");
        m.dirty_log = Some(DirtyLogReading { points: near, content_blind: false, content_rate_bps: 20e6, rehearsal: None, span: None, at: now });
        assert_eq!(m.dirty_source(), DirtySource::Content);
        assert!((m.dirty_model().unwrap().dirtied(1.0) - seen.dirtied(1.0)).abs() < 0.1 * seen.dirtied(1.0));
    }

    #[test]
    fn a_guest_writing_in_bursts_is_modelled_by_its_span_not_its_quiet_windows() {
        // stress-ng memrate, 128 MiB at 15 MB/s, as the probe saw it: nine syncs found
        // ~400 KB in 0.3 s, one the whole buffer; the syncs' span, 17 s, found 260 MB.
        let mut points = vec![(0.3, 400e3); 9];
        points.push((0.3, 134.8e6));
        let now = Instant::now();
        let mut r = DirtyLogReading { points, content_blind: false, content_rate_bps: 0.25e6, rehearsal: None, span: Some((17.0, 260e6)), at: now };
        let b = r.burst().expect("a burst writer");
        assert!((b.rate_bps - 260e6 / 17.0).abs() < 1.0 && b.wss_bytes == 134.8e6, "{b:?}");
        let m = Measurements { dirty_log: Some(r.clone()), ..Default::default() };
        assert_eq!(m.dirty_source(), DirtySource::DirtyLog, "stands in though hashing was not blind");
        // An 8 s round meets most of the buffer; the curve through the points alone, next to nothing.
        assert!(m.dirty_model().unwrap().dirtied(8.0) > 80e6);
        // A steady writer: its span says what its windows say.
        r.points = vec![(0.3, 3e6), (0.5, 5e6), (8.0, 60e6)];
        r.span = Some((17.0, 17.0 * 9e6));
        assert!(r.burst().is_none());
        // Too short a span to tell, or too little written.
        r.points = vec![(0.3, 4e3); 5];
        r.span = Some((2.0, 100e6));
        assert!(r.burst().is_none());
        r.span = Some((17.0, 17.0 * 0.5e6));
        assert!(r.burst().is_none());
    }

    #[test]
    fn a_guest_writing_in_phases_is_modelled_by_its_span() {
        let now = Instant::now();
        // stress-ng memrate as two probes saw it: a write pass, then a read pass (quiet) ...
        let quiet = vec![(2.1, 33.2e6), (6.29, 135e6), (5.5, 0.23e6)];
        let r = DirtyLogReading { points: quiet, content_blind: true, content_rate_bps: 0.1e6, rehearsal: None, span: Some((14.3, 280e6)), at: now };
        let m = r.burst().expect("a quiet window among busy ones");
        assert!((m.rate_bps - 280e6 / 14.3).abs() < 1.0 && m.wss_bytes == 135e6, "{m:?}");
        // ... and a buffer written through and over again: a longer window found no more.
        let over = DirtyLogReading { points: vec![(1.21, 19.5e6), (7.38, 117e6), (4.79, 128.7e6)], span: Some((13.7, 266e6)), ..r.clone() };
        let m = over.burst().expect("a set that stopped growing");
        assert_eq!(m.wss_bytes, 128.7e6);
        // redis as the probe saw it: a steady writer's curve, rising at every window.
        let redis = vec![(1.3, 17.7e6), (6.7, 68.9e6), (2.83, 32.3e6), (1.38, 19.2e6), (0.79, 12.1e6), (0.54, 8.4e6), (0.25, 6.8e6)];
        let steady = DirtyLogReading { points: redis, span: Some((16.2, 200e6)), ..r.clone() };
        assert!(steady.burst().is_none());
    }

    fn rehearsal(points: Vec<(f64, f64)>) -> pacer_qemu::dirty_log::RehearsalOutcome {
        pacer_qemu::dirty_log::RehearsalOutcome {
            link_bps: 24e6,
            downtime_limit_ms: 300,
            ran_s: 8.0,
            switched_after_s: None,
            least_after_sync: Some(9_000_000),
            points,
            span: None,
        }
    }

    #[test]
    fn a_rehearsal_stands_in_for_hashing_and_its_many_syncs_do_not_drown_the_long_windows() {
        let now = Instant::now();
        // Hashing sees a hot set at short windows (every page changed, including those
        // QEMU has not sent yet); the rehearsal's syncs count what QEMU resends: less.
        let hashed = DirtyModel::new(5e6, f64::INFINITY).unwrap().with_hot(7e6);
        let curve: Vec<(f64, f64)> = CURVE_WINDOWS_S.iter().map(|w| (*w, hashed.dirtied(*w))).collect();
        let long = vec![(4.0, 40e6), (8.0, 60e6)];
        let short: Vec<(f64, f64)> = (0..20).map(|i| (0.2 + 0.005 * i as f64, 4e6)).collect();
        let mut m = Measurements { curve: Some((curve, now)), zero_fraction: Some((0.5, now)), ..Default::default() };
        let reading = |r| DirtyLogReading { points: long.clone(), content_blind: false, content_rate_bps: 5e6, rehearsal: r, span: None, at: now };
        // Without a rehearsal, a reading that is not blind leaves hashing in charge.
        m.dirty_log = Some(reading(None));
        assert_eq!(m.dirty_source(), DirtySource::Content);
        // Too few syncs rehearsed: still hashing.
        m.dirty_log = Some(reading(Some(rehearsal(short[..2].to_vec()))));
        assert_eq!(m.dirty_source(), DirtySource::Content);
        m.dirty_log = Some(reading(Some(rehearsal(short.clone()))));
        assert_eq!(m.dirty_source(), DirtySource::DirtyLog);
        let d = m.dirty_model().unwrap();
        assert!(d.dirtied(0.2) < 0.7 * hashed.dirtied(0.2), "short windows from the rehearsal: {d:?}");
        assert!((d.dirtied(0.2) - 4e6).abs() < 1.5e6, "{d:?} at 0.2 s: {}", d.dirtied(0.2));
        // Twenty syncs weigh as three points: the 8 s window still shapes the curve.
        assert!((d.dirtied(8.0) - 60e6).abs() < 0.25 * 60e6, "{d:?} at 8 s: {}", d.dirtied(8.0));
    }

    #[test]
    fn a_reading_rehearsed_over_another_link_is_not_fresh_for_this_one() {
        let r = DirtyLogReading { points: vec![], content_blind: false, content_rate_bps: 0.0, rehearsal: Some(rehearsal(vec![])), span: None, at: Instant::now() };
        let asked = |link_bps, downtime_limit_ms| Some(Rehearsal { link_bps, downtime_limit_ms });
        assert!(rehearsed_like(&r, None));
        assert!(rehearsed_like(&r, asked(25e6, 300)));
        assert!(!rehearsed_like(&r, asked(40e6, 300)), "another link");
        assert!(!rehearsed_like(&r, asked(24e6, 500)), "another limit");
        let none = DirtyLogReading { rehearsal: None, ..r };
        assert!(!rehearsed_like(&none, asked(24e6, 300)));
    }
}
