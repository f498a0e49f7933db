//! What the prediction, control and group benchmarks share on a live test bed:
//! the bed itself, guests (with a disk when asked), the wait for the agent's
//! background prior, following a migration job while something happens to it
//! (a link rate change, the guest's writer pausing), and the cleanup.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pacer_api::{
    AccelChoice, DiskWorkload, JobInfo, MigrateRequest, MigrationResult, PeerRef, PredictRequest,
    PredictResponse, PredictionPoint, Strategy, TargetStatus, VmInfo, VmSpec, Workload,
};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use super::note;
use super::storage::{
    cleanup, free_bytes, guest_lines, last_of_kind, progress_line, qcow2_create_args, qemu_tool,
    tool_present, wait_steady,
};
use crate::demo::BedGuard;
use pacer_cli::hosts::Hosts;

/// Longest wait for a guest to boot and report (a disk fill adds to it).
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// Slowest guest disk fill allowed for, bytes/s.
const SLOWEST_FILL_BPS: f64 = 4e6;
/// Every how often the job is polled.
const POLL: Duration = Duration::from_millis(250);
/// Every how often a progress line is printed while a migration runs.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Free space kept beside disk images.
const SPACE_MARGIN: u64 = 1 << 30;

/// A test bed with two hosts and the guest image, removed on drop.
pub struct LiveBed {
    /// Removes the bed when dropped.
    pub guard: BedGuard,
    /// Its agents.
    pub hosts: Hosts,
    /// Guest kernel.
    pub kernel: String,
    /// Guest initramfs.
    pub initrd: String,
    /// Its version.
    pub kernel_version: String,
    /// Where disk images are made.
    pub image_dir: PathBuf,
    /// Where the destination agent makes its disk copies.
    pub dest_disk_dir: PathBuf,
    /// The accelerator the agent chose (learnt from the first guest).
    pub accel: Option<String>,
    /// The link rate now, bits/s.
    pub rate_bps: u64,
}

impl LiveBed {
    /// Builds the guest image (cached) and a two-host bed joined by `rate`.
    pub fn up(name: &str, rate: &str) -> Result<LiveBed> {
        note("building the guest image (cached after the first run)");
        let mut img_opts = crate::guest_image::ImageOptions::from_env();
        img_opts.progress = true;
        let img = crate::guest_image::ensure_guest_image(&img_opts)?;
        note(&format!("creating two test hosts joined by a {rate} link"));
        let guard = BedGuard::up(name, 2, rate, false)?;
        if !guard.bed.shaped {
            bail!(
                "the test bed's links are not shaped (run as root): link rates would mean nothing"
            );
        }
        let image_dir = guard.bed.dir.join("bench-images");
        std::fs::create_dir_all(&image_dir)
            .with_context(|| format!("cannot create {}", image_dir.display()))?;
        Ok(LiveBed {
            hosts: guard.hosts()?,
            kernel: img.kernel.display().to_string(),
            initrd: img.initrd.display().to_string(),
            kernel_version: img.kernel_version.clone(),
            image_dir,
            dest_disk_dir: guard.bed.hosts[1].state_dir.join("vms"),
            accel: None,
            rate_bps: crate::net::parse_rate(rate)?,
            guard,
        })
    }

    /// Changes the rate of every link of the bed (no-op if it is already that).
    pub fn set_rate(&mut self, bps: u64) -> Result<()> {
        if bps != self.rate_bps {
            self.guard.bed.set_rate(None, bps)?;
            self.rate_bps = bps;
        }
        Ok(())
    }

    /// Checks there is room for the disk images: one image and its copy.
    pub async fn check_disk_room(&self, disk_size: u64) -> Result<()> {
        tool_present("qemu-img").await?;
        let need = 2 * disk_size + disk_size / 16 + SPACE_MARGIN;
        if let Some(free) = free_bytes(&self.image_dir) {
            if free < need {
                bail!(
                    "{} has {} free but the disk images need about {}: free space there or give a \
                     smaller --disk-size",
                    self.image_dir.display(),
                    pacer_model::format_bytes(free),
                    pacer_model::format_bytes(need)
                );
            }
        }
        Ok(())
    }

    /// Stops a guest wherever it is and deletes its images (the copy included).
    pub async fn cleanup(&self, name: &str, files: &[PathBuf]) {
        cleanup(&self.hosts, &self.dest_disk_dir, name, files).await;
    }

    /// How the source agent reaches h2.
    pub fn peer(&self, host: &str) -> Result<PeerRef> {
        let d = self.hosts.get(host)?;
        Ok(PeerRef {
            name: d.name.clone(),
            url: d.peer_url().to_string(),
            token: d.token.clone(),
        })
    }
}

/// A guest to start on h1.
#[derive(Debug, Clone, Serialize)]
pub struct GuestPlan {
    /// VM name.
    pub name: String,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// The guest program's workload (its disk writer included).
    pub workload: Workload,
    /// Size of a fresh qcow2 disk to attach, bytes (the disk writer fills it at boot).
    pub disk_size: Option<u64>,
}

impl GuestPlan {
    /// A memory-writing guest (`rate_mbps` 0 = idle) without a disk.
    pub fn memory(name: &str, memory_mib: u64, wss_mib: u64, rate_mbps: f64) -> GuestPlan {
        GuestPlan {
            name: name.into(),
            memory_mib,
            workload: Workload {
                kind: if rate_mbps > 0.0 { "memwrite" } else { "idle" }.into(),
                wss_mib,
                rate_mbps,
                hot_fraction: 0.0,
                hot_share: 0.0,
                disk: None,
            },
            disk_size: None,
        }
    }

    /// Adds a disk of `size` bytes the guest fills at boot and then writes at
    /// `rate_mbps` (uniform 64 KiB writes).
    pub fn with_disk(mut self, size: u64, rate_mbps: f64) -> GuestPlan {
        self.disk_size = Some(size);
        self.workload.disk = Some(DiskWorkload {
            device: "/dev/vda".into(),
            rate_mbps,
            bs_kib: 64,
            pattern: "uniform".into(),
            hot_fraction: 0.1,
            span_mib: None,
            fill: true,
        });
        self
    }

    fn disk_rate(&self) -> f64 {
        self.workload.disk.as_ref().map_or(0.0, |d| d.rate_mbps)
    }
}

/// Starts a guest on h1 and waits until its program runs (disk filled and
/// writers writing, when it has a disk). Every file made is pushed to `files`.
pub async fn start_guest(
    bed: &mut LiveBed,
    g: &GuestPlan,
    files: &mut Vec<PathBuf>,
    stop: &watch::Receiver<bool>,
) -> Result<VmInfo> {
    let mut disks = Vec::new();
    if let Some(size) = g.disk_size {
        let img = bed.image_dir.join(format!("{}.qcow2", g.name));
        files.push(img.clone());
        qemu_tool("qemu-img", &qcow2_create_args(&img, size, None)).await?;
        disks.push(img.display().to_string());
    }
    let spec = VmSpec {
        name: g.name.clone(),
        memory_mib: g.memory_mib,
        vcpus: 1,
        kernel: Some(bed.kernel.clone()),
        initrd: Some(bed.initrd.clone()),
        append: None,
        disks,
        workload: Some(g.workload.clone()),
        accel: AccelChoice::Auto,
    };
    let info: VmInfo = bed
        .hosts
        .client("h1")?
        .post("/v1/vms", &spec)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the guest: {e}"))?;
    bed.accel.get_or_insert(info.accel.clone());
    let t = Instant::now();
    match g.disk_size {
        Some(size) => {
            let timeout = BOOT_TIMEOUT + Duration::from_secs_f64(size as f64 / SLOWEST_FILL_BPS);
            let mem_rate = if g.workload.kind == "memwrite" {
                g.workload.rate_mbps
            } else {
                0.0
            };
            wait_steady(&bed.hosts, &g.name, g.disk_rate(), mem_rate, timeout, stop).await?;
        }
        None => wait_status(&bed.hosts, &g.name, BOOT_TIMEOUT, stop).await?,
    }
    eprintln!(
        "  {} ready after {:.1} s",
        g.name,
        t.elapsed().as_secs_f64()
    );
    Ok(info)
}

/// Waits until the guest program reports status (its working set is filled).
async fn wait_status(
    hosts: &Hosts,
    name: &str,
    timeout: Duration,
    stop: &watch::Receiver<bool>,
) -> Result<()> {
    let t0 = Instant::now();
    loop {
        if *stop.borrow() {
            bail!("interrupted");
        }
        let text = pacer_cli::vm::console(hosts, name, Some("h1"), 64 * 1024).await?;
        if last_of_kind(&guest_lines(&text), "status").is_some() {
            return Ok(());
        }
        if t0.elapsed() > timeout {
            let tail: String = text
                .chars()
                .rev()
                .take(1500)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            bail!(
                "guest {name} did not report within {} s; console:\n{tail}",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Sleeps `d` (the agent measures the guest in the background meanwhile); false if
/// interrupted.
pub async fn wait_prior(d: Duration, stop: &watch::Receiver<bool>) -> bool {
    let mut stop = stop.clone();
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

/// The guest's own memory and disk write rates (MB/s) from its last status line.
pub async fn guest_rates(hosts: &Hosts, name: &str) -> (Option<f64>, Option<f64>) {
    let Ok(text) = pacer_cli::vm::console(hosts, name, Some("h1"), 16 * 1024).await else {
        return (None, None);
    };
    let lines = guest_lines(&text);
    let Some(s) = last_of_kind(&lines, "status") else {
        return (None, None);
    };
    (
        s.get("write_mbps").and_then(Value::as_f64),
        s.get("disk_write_mbps").and_then(Value::as_f64),
    )
}

/// Pacer's prediction before the start (`POST /v1/vms/NAME/predict`).
pub async fn predict_before(bed: &LiveBed, name: &str) -> Result<PredictResponse> {
    let req = PredictRequest {
        destination: bed.peer("h2")?,
        strategy: Strategy::PreCopy,
        bandwidth: None,
        downtime_limit_ms: None,
        postcopy_after_s: None,
        copy_storage: pacer_api::CopyStorage::All,
    };
    Ok(bed
        .hosts
        .client("h1")?
        .post(&format!("/v1/vms/{name}/predict"), &req)
        .await?)
}

/// One look at a running job, as the benchmark saw it.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// When, ms since the request was sent (the bench's clock).
    pub at_ms: u64,
    /// The job's own elapsed time, ms.
    pub elapsed_ms: u64,
    /// Phase.
    pub phase: String,
    /// Memory bytes sent.
    pub transferred: u64,
    /// Memory bytes left (QEMU's count).
    pub remaining: u64,
    /// Smoothed rate, bytes/s.
    pub rate_bps: f64,
    /// Disk bytes left, when disks are copied.
    pub disk_remaining: Option<u64>,
    /// Disk copy rate, bytes/s.
    pub disk_rate_bps: Option<f64>,
    /// The latest prediction.
    pub prediction: Option<PredictionPoint>,
    /// The finish target's status.
    pub target: Option<TargetStatus>,
}

impl Sample {
    fn of(at: Duration, j: &JobInfo) -> Sample {
        let p = &j.progress;
        Sample {
            at_ms: at.as_millis() as u64,
            elapsed_ms: p.elapsed_ms,
            phase: p.phase.clone(),
            transferred: p.transferred,
            remaining: p.remaining,
            rate_bps: p.rate_bps,
            disk_remaining: p.disk.as_ref().map(|d| d.remaining),
            disk_rate_bps: p.disk.as_ref().map(|d| d.rate_bps),
            prediction: j.prediction,
            target: j.target,
        }
    }
}

/// A followed migration.
#[derive(Debug, Clone, Default)]
pub struct Followed {
    /// The job as the request's answer showed it.
    pub first: Option<JobInfo>,
    /// The result, when the job ended.
    pub result: Option<MigrationResult>,
    /// The job's events.
    pub events: Vec<String>,
    /// What every poll saw.
    pub samples: Vec<Sample>,
    /// Why there is no result, or why it was cancelled.
    pub reason: Option<String>,
}

/// Starts a migration of `name` from h1 and follows it until it ends; `on_poll`
/// is called after every poll with the time since the request and the job. On
/// Ctrl-C or after `limit` the job is cancelled (and still followed to its end).
pub async fn follow_migration(
    bed: &LiveBed,
    name: &str,
    req: &MigrateRequest,
    limit: Duration,
    stop: &watch::Receiver<bool>,
    mut on_poll: impl FnMut(Duration, &JobInfo),
) -> Followed {
    let mut out = Followed::default();
    let client = match bed.hosts.client("h1") {
        Ok(c) => c,
        Err(e) => {
            out.reason = Some(format!("{e:#}"));
            return out;
        }
    };
    let t0 = Instant::now();
    let job: JobInfo = match client.post(&format!("/v1/vms/{name}/migrate"), req).await {
        Ok(j) => j,
        Err(e) => {
            out.reason = Some(format!("the migration was refused: {e}"));
            return out;
        }
    };
    out.first = Some(job.clone());
    let mut stop = stop.clone();
    let mut cancelled: Option<String> = None;
    let mut last_note = Instant::now();
    let mut lost = 0;
    loop {
        let j: JobInfo = match client.get(&format!("/v1/jobs/{}", job.id)).await {
            Ok(j) => {
                lost = 0;
                j
            }
            Err(e) => {
                lost += 1;
                if lost >= 20 {
                    out.reason = Some(format!("lost the job {}: {e}", job.id));
                    return out;
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        let at = t0.elapsed();
        out.events = j.events.clone();
        if let Some(r) = j.result.clone() {
            if let Some(why) = cancelled {
                out.reason = Some(why);
            }
            out.result = Some(r);
            return out;
        }
        out.samples.push(Sample::of(at, &j));
        on_poll(at, &j);
        if last_note.elapsed() >= PROGRESS_EVERY {
            last_note = Instant::now();
            let pred = j
                .prediction
                .map(|p| format!(", Pacer predicts {:.1} s", p.total_ms as f64 / 1000.0))
                .unwrap_or_default();
            eprintln!("  {}{pred}", progress_line(&j));
        }
        if cancelled.is_none() {
            let why = if *stop.borrow() {
                Some("interrupted".to_string())
            } else if at > limit {
                Some(format!("not done after {} s", limit.as_secs()))
            } else {
                None
            };
            if let Some(why) = why {
                eprintln!("  cancelling the migration: {why}");
                let _: Result<JobInfo, _> = client
                    .post(&format!("/v1/jobs/{}/cancel", job.id), &json!({}))
                    .await;
                cancelled = Some(why);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed(), if cancelled.is_none() => {}
        }
    }
}

/// The usual request: pre-copy to h2 with the CLI's defaults.
pub fn precopy_request(bed: &LiveBed) -> Result<MigrateRequest> {
    Ok(MigrateRequest::new(bed.peer("h2")?, Strategy::PreCopy))
}

/// Keeps the guest program's memory writer paused by asking it to verify its
/// memory over and over: the program does not write while it sweeps, and time
/// spent sweeping is not credited to the writer, so it writes (almost) nothing
/// until the requests stop. This is the only way to change a running guest's
/// write phase: the program's rate is fixed at boot and it knows no other command.
pub struct WriterPause {
    stop_tx: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<u64>>,
}

impl WriterPause {
    /// Connects to the guest's serial console (next to its QMP socket) and starts.
    pub async fn start(info: &VmInfo) -> Result<WriterPause> {
        let serial = serial_socket(Path::new(&info.qmp_socket));
        let stream = tokio::net::UnixStream::connect(&serial)
            .await
            .with_context(|| {
                format!(
                    "cannot open the guest's serial console {}",
                    serial.display()
                )
            })?;
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut lines = BufReader::new(r).lines();
            let mut sweeps = 0u64;
            loop {
                if *stop_rx.borrow() {
                    return Ok(sweeps);
                }
                w.write_all(b"verify\n").await?;
                // Until this sweep's answer; the console also carries status lines.
                loop {
                    let line = tokio::select! {
                        l = tokio::time::timeout(Duration::from_secs(30), lines.next_line()) => l,
                        _ = stop_rx.wait_for(|s| *s) => return Ok(sweeps),
                    };
                    match line {
                        Err(_) => bail!("the guest did not answer a memory sweep within 30 s"),
                        // The VM is gone (migrated away): nothing left to pause.
                        Ok(Ok(None)) | Ok(Err(_)) => return Ok(sweeps),
                        Ok(Ok(Some(l))) if l.contains("\"kind\":\"verify\"") => {
                            sweeps += 1;
                            break;
                        }
                        Ok(Ok(Some(_))) => {}
                    }
                }
            }
        });
        Ok(WriterPause { stop_tx, task })
    }

    /// Lets the writer run again (at once: the task stops asking).
    pub fn release(&self) {
        let _ = self.stop_tx.send(true);
    }

    /// Releases and returns how many sweeps the guest made.
    pub async fn finish(self) -> Result<u64> {
        self.release();
        match tokio::time::timeout(Duration::from_secs(35), self.task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => bail!("writer pause task failed: {e}"),
            Err(_) => bail!("writer pause task did not stop"),
        }
    }
}

/// The serial console socket beside a VM's QMP socket (the agent's layout).
pub fn serial_socket(qmp: &Path) -> PathBuf {
    qmp.with_file_name("serial.sock")
}

/// The migration timeout: a base plus four times what the link needs for memory
/// and disk at `link_bps`.
pub fn migration_limit(memory_mib: u64, disk_bytes: u64, link_bps: u64) -> Duration {
    let bytes = (memory_mib << 20) + disk_bytes;
    let link_s = if link_bps == 0 {
        0.0
    } else {
        bytes as f64 * 8.0 / link_bps as f64
    };
    Duration::from_secs(120) + Duration::from_secs_f64(4.0 * link_s)
}

/// `completed`, `failed`, `cancelled` (or `error` without a result).
pub fn status_word(f: &Followed) -> String {
    match &f.result {
        Some(r) => match r.status {
            pacer_api::JobStatus::Completed => "completed",
            pacer_api::JobStatus::Cancelled => "cancelled",
            _ => "failed",
        }
        .into(),
        None => "error".into(),
    }
}

/// Whether the guest's checks passed after the migration (None: not run).
pub fn integrity_ok(r: &MigrationResult) -> Option<bool> {
    r.integrity.as_ref().map(|i| i.ok && i.disk_ok)
}

/// Where the plot of `scenario` goes: beside the results file, named after it
/// (`bench-results/predict.json` -> `bench-results/predict-<scenario>.svg`).
pub fn plot_path(out: &Path, scenario: &str) -> PathBuf {
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bench".into());
    dir.join(format!("{stem}-{scenario}.svg"))
}

/// Writes an SVG file; a failure is reported, not fatal.
pub fn write_svg(path: &Path, svg: &str) -> Option<String> {
    match std::fs::write(path, svg) {
        Ok(()) => Some(path.display().to_string()),
        Err(e) => {
            eprintln!("warning: cannot write {}: {e}", path.display());
            None
        }
    }
}

/// Parses a duration of 0 to 600 s (the wait for the background prior).
pub fn parse_prior_wait(s: &str) -> Result<f64, String> {
    let d = pacer_model::parse_duration(s).map_err(|e| e.to_string())?;
    let secs = d.as_secs_f64();
    if secs > 600.0 {
        return Err(format!("{s:?} is more than 10 minutes"));
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_beside_qmp() {
        assert_eq!(
            serial_socket(Path::new("/s/h1/vms/v/qmp.sock")),
            PathBuf::from("/s/h1/vms/v/serial.sock")
        );
    }

    #[test]
    fn limits_and_parsers() {
        // 1 GiB over 1 Gbit/s is ~8.6 s: four times that on top of 120 s.
        assert_eq!(migration_limit(1024, 0, 1_000_000_000).as_secs(), 154);
        assert_eq!(migration_limit(1024, 0, 0).as_secs(), 120);
        assert_eq!(parse_prior_wait("20s"), Ok(20.0));
        assert_eq!(parse_prior_wait("0s"), Ok(0.0));
        assert!(parse_prior_wait("11m").is_err());
        assert!(parse_prior_wait("soon").is_err());
        assert_eq!(
            plot_path(Path::new("r.json"), "x"),
            PathBuf::from("./r-x.svg")
        );
        assert_eq!(
            plot_path(Path::new("a/control.json"), "1_5x"),
            PathBuf::from("a/control-1_5x.svg")
        );
    }

    #[test]
    fn guest_plans() {
        let g = GuestPlan::memory("v", 1024, 256, 0.0);
        assert_eq!(g.workload.kind, "idle");
        let g = GuestPlan::memory("v", 1024, 256, 15.0).with_disk(1 << 30, 10.0);
        assert_eq!(g.workload.kind, "memwrite");
        assert_eq!(g.disk_rate(), 10.0);
        assert!(g.workload.disk.as_ref().unwrap().fill);
    }
}
