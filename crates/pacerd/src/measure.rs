//! What Pacer knows about a guest before migrating it: how it dirties memory,
//! what fraction of its memory is zero pages, and how fast the link to a
//! destination is (a timed upload to the destination agent).
//!
//! Guest memory is read where QEMU keeps it (`/proc/PID/mem`, confirmed page by
//! page against `pmemsave`): every page is checked for zeros, and 65536 random
//! pages are hashed at the start and again 0.5, 1, 2, 4 and 8 s later, five points
//! on the guest's dirtying curve from one measurement. This also works while the
//! VM migrates, so predictions follow a guest that changes its ways during the
//! first round. Where guest memory cannot be read, QEMU's own sampling
//! (`calc-dirty-rate`, 4096 pages per GiB, whole MiB/s) over 1 and 4 s and 384
//! `pmemsave` pages stand in, before migrations only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pacer_api::AgentClient;
use pacer_model::disk_regions::RegionWrites;
use pacer_model::{DirtyModel, Prior};
use pacer_qemu::guest_ram::{confirms, ram_offset_to_gpa, GuestRam, PAGE};
use pacer_qemu::QmpClient;
use serde_json::json;
use tracing::{debug, info};

use crate::state::Agent;

/// Windows (s) of one dirtying-curve measurement from guest memory.
pub const CURVE_WINDOWS_S: [f64; 5] = [0.5, 1.0, 2.0, 4.0, 8.0];
/// While the VM migrates: shorter windows, to follow a change during the first round
/// sooner (the longer windows of the last curve are kept if the two agree).
const MIGRATING_WINDOWS_S: [f64; 4] = [0.5, 1.0, 2.0, 4.0];
/// Two curves agree if they differ by at most this share at their longest common window.
const CURVES_AGREE: f64 = 0.3;
/// Pages hashed for a dirtying curve.
const CURVE_SAMPLE_PAGES: usize = 65536;
/// Regions per disk of the per-region write model, and blocks sampled per disk.
const DISK_REGIONS: usize = 64;
const DISK_SAMPLES: usize = 8192;
/// A VM this agent launched is not measured in the background for this long: its
/// boot (and a workload filling its memory) is not its work.
pub const BOOT_GRACE: Duration = Duration::from_secs(12);
/// Pages read for the zero fraction (all of RAM up to 4 GiB).
const ZERO_SCAN_PAGES: u64 = 1 << 20;
/// Windows (s) of QEMU's page sampling, where guest memory cannot be read.
const QEMU_WINDOWS_S: [u64; 2] = [1, 4];
/// Pause between two rounds of the background sampler.
const SAMPLE_PAUSE: Duration = Duration::from_secs(4);
/// Measurements older than this are not used (a guest changes its ways).
const FRESH: Duration = Duration::from_secs(60);
/// A link rate measured this recently is reused.
const LINK_FRESH: Duration = Duration::from_secs(60);
/// Pages sampled with `pmemsave` for the zero-page fraction (fallback).
const ZERO_SAMPLES: usize = 384;

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

/// Distinct bytes the guest dirties in `secs` (QEMU page sampling, 4096 pages per GiB).
pub async fn dirtied_bytes(qmp: &QmpClient, secs: u64) -> Result<f64, String> {
    qmp.execute(
        "calc-dirty-rate",
        Some(json!({"calc-time": secs, "mode": "page-sampling", "sample-pages": 4096})),
    )
    .await
    .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(secs + 5);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = qmp.execute("query-dirty-rate", None).await.map_err(|e| e.to_string())?;
        if r.get("status").and_then(|s| s.as_str()) == Some("measured") {
            // QEMU reports whole MiB/s over the window, rounded down: take the middle.
            let mib_s = r.get("dirty-rate").and_then(|v| v.as_f64()).unwrap_or(0.0);
            let mib_s = if mib_s > 0.0 { mib_s + 0.5 } else { 0.0 };
            return Ok(mib_s * (1 << 20) as f64 * secs as f64);
        }
        if Instant::now() > deadline {
            return Err("QEMU did not finish measuring the dirty rate".into());
        }
    }
}

/// One page of guest memory at a guest-physical address, read by QEMU (`pmemsave`).
async fn pmem_page(qmp: &QmpClient, gpa: u64, scratch: &std::path::Path) -> Result<Vec<u8>, String> {
    qmp.execute(
        "pmemsave",
        Some(json!({"val": gpa, "size": PAGE, "filename": scratch.display().to_string()})),
    )
    .await
    .map_err(|e| e.to_string())?;
    std::fs::read(scratch).map_err(|e| e.to_string())
}

/// Fraction of guest RAM that is zero pages, from `ZERO_SAMPLES` random pages (`pmemsave`).
pub async fn zero_fraction_sampled(qmp: &QmpClient, ram_bytes: u64, scratch: &std::path::Path) -> Result<f64, String> {
    use rand::Rng;
    let pages = ram_bytes / PAGE;
    let picks: Vec<u64> = {
        let mut rng = rand::thread_rng();
        (0..ZERO_SAMPLES).map(|_| rng.gen_range(0..pages) * PAGE).collect()
    };
    let mut zero = 0usize;
    for p in picks {
        let page = pmem_page(qmp, ram_offset_to_gpa(p, ram_bytes), scratch).await?;
        zero += page.iter().all(|b| *b == 0) as usize;
    }
    let _ = std::fs::remove_file(scratch);
    Ok(zero as f64 / ZERO_SAMPLES as f64)
}

/// The VM's guest RAM as QEMU maps it, found and confirmed once per QEMU process.
pub async fn guest_ram(agent: &Agent, vm: &str) -> Option<Arc<GuestRam>> {
    let rec = agent.record(vm).ok()?;
    if let Some(e) = agent.vms.lock().unwrap().get(vm) {
        if let Some((pid, found)) = &e.guest_ram {
            if *pid == rec.pid {
                return found.clone();
            }
        }
    }
    let found = locate_ram(agent, vm, rec.pid, rec.memory_mib << 20).await;
    match &found {
        Ok(_) => info!("{vm}: measuring guest memory directly (QEMU pid {})", rec.pid),
        Err(e) => info!("{vm}: guest memory not readable here ({e}); using QEMU's sampling"),
    }
    let found = found.ok().map(Arc::new);
    if let Some(e) = agent.vms.lock().unwrap().get_mut(vm) {
        e.guest_ram = Some((rec.pid, found.clone()));
    }
    found
}

async fn locate_ram(agent: &Agent, vm: &str, pid: i32, ram_bytes: u64) -> Result<GuestRam, String> {
    let candidates = tokio::task::spawn_blocking(move || GuestRam::candidates(pid, ram_bytes))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let qmp = agent.qmp(vm).await.map_err(|e| e.message)?;
    let scratch = agent.vm_dir(vm).join("page.sample");
    let n = candidates.len();
    for ram in candidates {
        let ours = ram.nonzero_pages(5).map_err(|e| e.to_string())?;
        let mut theirs = Vec::with_capacity(ours.len());
        for (off, _) in &ours {
            theirs.push(pmem_page(&qmp, ram_offset_to_gpa(*off, ram_bytes), &scratch).await?);
        }
        let _ = std::fs::remove_file(&scratch);
        if confirms(&ours, &theirs) {
            return Ok(ram);
        }
    }
    Err(format!("none of {n} mappings of {ram_bytes} bytes in QEMU pid {pid} holds the guest's pages"))
}

/// Measurements of `vm` at most `max_age` old: waits for one under way, else measures.
pub async fn measure_fresh(agent: &Agent, vm: &str, max_age: Duration) -> Result<Measurements, String> {
    let _one = agent.measuring.lock().await;
    if let Some(e) = agent.vms.lock().unwrap().get(vm) {
        let m = &e.measurements;
        if m.curve_at().is_some_and(|t| t.elapsed() < max_age) && m.zero_fraction.is_some() {
            return Ok(m.clone());
        }
    }
    measure_locked(agent, vm, false).await
}

/// Measures one VM now: its dirtying curve and zero fraction. While it migrates, only
/// where guest memory can be read directly (QEMU refuses its sampling then).
async fn measure_locked(agent: &Agent, vm: &str, migrating: bool) -> Result<Measurements, String> {
    let qmp = agent.qmp(vm).await.map_err(|e| e.message)?;
    let rec = agent.record(vm).map_err(|e| e.message)?;
    let mut m = Measurements::default();
    let windows: &'static [f64] = if migrating { &MIGRATING_WINDOWS_S } else { &CURVE_WINDOWS_S };
    let longest = Duration::from_secs_f64(windows[windows.len() - 1]);
    let disks = disk_writes(&rec, longest);
    if let Some(ram) = guest_ram(agent, vm).await {
        let (zero, curve) = tokio::task::spawn_blocking(move || {
            let zero = ram.zero_fraction(ZERO_SCAN_PAGES);
            let curve = ram.dirty_curve(CURVE_SAMPLE_PAGES, windows);
            (zero, curve)
        })
        .await
        .map_err(|e| e.to_string())?;
        let now = Instant::now();
        let curve = curve.map_err(|e| format!("reading guest memory: {e}"))?;
        let curve = if migrating {
            let old = agent.vms.lock().unwrap().get(vm).and_then(|e| e.measurements.curve.clone());
            merge_curves(curve, old.as_ref().map(|(c, _)| c.as_slice()))
        } else {
            curve
        };
        m.zero_fraction = Some((zero.map_err(|e| format!("reading guest memory: {e}"))?, now));
        m.curve = Some((curve, now));
    } else if migrating {
        return Err("guest memory cannot be read while the VM migrates".into());
    } else {
        let mut points = Vec::new();
        for w in QEMU_WINDOWS_S {
            points.push((w as f64, dirtied_bytes(&qmp, w).await?));
        }
        let scratch = agent.vm_dir(vm).join("page.sample");
        let z = zero_fraction_sampled(&qmp, rec.memory_mib << 20, &scratch).await?;
        m.zero_fraction = Some((z, Instant::now()));
        m.curve = Some((points, Instant::now()));
    }
    match disks.await {
        Ok(Some(r)) => m.disk_regions = Some((Arc::new(r), Instant::now())),
        Ok(None) => {}
        Err(e) => debug!("{vm}: disk writes not measured: {e}"),
    }
    if let Some(e) = agent.vms.lock().unwrap().get_mut(vm) {
        e.measurements = m.clone();
    }
    Ok(m)
}

/// Starts sampling where the guest writes on its disks (over `window`, the memory
/// curve's longest); `None` for a VM without disks.
fn disk_writes(
    rec: &crate::state::VmRecord,
    window: Duration,
) -> impl std::future::Future<Output = Result<Option<RegionWrites>, String>> {
    let paths: Vec<String> = rec.spec.as_ref().map(|s| s.disks.clone()).unwrap_or_default();
    let task = tokio::spawn(async move {
        if paths.is_empty() {
            return Ok(None);
        }
        let mut layouts = Vec::new();
        for p in &paths {
            let path = std::path::Path::new(p);
            let info = pacer_qemu::image::image_info(path).await.map_err(|e| e.to_string())?;
            layouts.push(
                pacer_qemu::disk_sample::layout(path, &info.format, info.virtual_size)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let regions = tokio::task::spawn_blocking(move || {
            pacer_qemu::disk_sample::sample_writes(&layouts, DISK_REGIONS, DISK_SAMPLES, window)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("reading disk images: {e}"))?;
        Ok(RegionWrites::from_samples(&regions, window.as_secs_f64()))
    });
    async move { task.await.map_err(|e| e.to_string())? }
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

/// Keeps every running VM's measurements fresh, one VM at a time, including VMs
/// migrating away (whose first round the predictor then follows: measured back to
/// back, over shorter windows).
pub async fn sampler(agent: Arc<Agent>) {
    let mut measured_migrating = false;
    loop {
        if !measured_migrating {
            tokio::time::sleep(SAMPLE_PAUSE).await;
        }
        measured_migrating = false;
        let names: Vec<(String, bool)> = agent
            .vms
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| e.record.origin != pacer_api::VmOrigin::Incoming)
            .filter(|(_, e)| Instant::now() >= e.measure_after)
            .map(|(n, e)| (n.clone(), e.migrating.is_some()))
            .collect();
        for (name, migrating) in names {
            let _one = agent.measuring.lock().await;
            let Ok(qmp) = agent.qmp(&name).await else { continue };
            if qmp.run_state().await.ok().as_deref() != Some("running") {
                continue;
            }
            if migrating && guest_ram(&agent, &name).await.is_none() {
                continue;
            }
            // A job may start meanwhile: QEMU's own sampling then fails, harmlessly.
            let r = measure_locked(&agent, &name, migrating).await;
            measured_migrating |= migrating && r.is_ok();
            debug!("measured {name}: {r:?}");
        }
    }
}

/// A link rate, and the bytes sent to measure it now (0 when a recent figure was reused).
#[derive(Debug, Clone, Copy)]
pub struct LinkRate {
    /// Bytes per second.
    pub rate_bps: f64,
    /// Bytes the probe put on the link for this answer.
    pub probe_bytes: u64,
}

/// The link rate to a destination, measured now (and cached).
pub async fn link_rate_fresh(agent: &Agent, dest: &pacer_api::PeerRef) -> Result<LinkRate, String> {
    agent.link_rates.lock().unwrap().remove(&dest.url);
    link_rate_cached(agent, dest).await
}

/// The link rate to a destination, measured at most once a minute.
pub async fn link_rate_cached(agent: &Agent, dest: &pacer_api::PeerRef) -> Result<LinkRate, String> {
    if let Some((r, t)) = agent.link_rates.lock().unwrap().get(&dest.url) {
        if t.elapsed() < LINK_FRESH {
            return Ok(LinkRate { rate_bps: *r, probe_bytes: 0 });
        }
    }
    let client = AgentClient::new(&dest.url, &dest.token).with_timeout(Duration::from_secs(30));
    let r = link_rate(&client).await?;
    agent.link_rates.lock().unwrap().insert(dest.url.clone(), (r.rate_bps, Instant::now()));
    Ok(r)
}

/// Bytes per second a timed upload to the destination agent achieves.
pub async fn link_rate(dest: &AgentClient) -> Result<LinkRate, String> {
    // Grow the upload until it takes long enough to say something about the link.
    let mut size = 4usize << 20;
    let mut sent = 0u64;
    loop {
        let body = vec![0x5au8; size];
        let t0 = Instant::now();
        let _: serde_json::Value = dest
            .post_bytes("/v1/probe", body)
            .await
            .map_err(|e| format!("link probe failed: {e}"))?;
        let secs = t0.elapsed().as_secs_f64();
        sent += size as u64;
        if secs >= 0.2 || size >= 256 << 20 {
            return Ok(LinkRate { rate_bps: size as f64 / secs, probe_bytes: sent });
        }
        size *= 4;
    }
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
