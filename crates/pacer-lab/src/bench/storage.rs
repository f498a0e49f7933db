//! `pacer bench storage` answers "what does moving a VM's disk cost?": on one test
//! bed it migrates (pre-copy, disks copied over NBD) a guest with a 2 GiB qcow2
//! disk and 512 MiB of memory whose memory writer runs at a modest rate, in up to
//! three scenarios:
//!
//! - `no-writes`: the guest filled its whole disk at boot (so there is data to
//!   copy) and writes no more to it;
//! - `disk-writes`: the same, while the guest writes its disk (10 MB/s of
//!   uniform 64 KiB writes);
//! - `incremental`: an empty qcow2 top layer over a base image full of data that
//!   both hosts have; the guest writes its disk; only the top layer is copied.
//!
//! Every run gets fresh images and a fresh VM, waits for the guest's steady state
//! (disk filled, writers running), migrates, and ends with the guest checking its
//! memory and disk at the destination. The table shows total time, downtime,
//! disk and memory bytes, both checks and the status, medians over `--runs`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pacer_api::{
    AccelChoice, CopyStorage, DiskWorkload, JobInfo, JobStatus, MigrateRequest, MigrationResult,
    PeerRef, Strategy, VmInfo, VmSpec, Workload,
};
use pacer_model::format_bytes;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::{
    check_cell, fmt_downtime, fmt_sent, fmt_total, median, note, parse_link_rate, parse_runs,
    parse_write_rate, prepare_out, status_cell, stop_on_ctrl_c, unix_ms, write_json,
    KERNEL_RESERVE_MIB,
};
use crate::demo::BedGuard;
use pacer_cli::hosts::Hosts;
use pacer_cli::vm;

/// Test bed name (distinct from the baseline's, so both can be up).
const BED: &str = "bstore";
/// Working set of the guest's memory writer.
const WSS_MIB: u64 = 128;
/// Guest disk writer block size.
const DISK_BLOCK_KIB: u64 = 64;
/// The unit the guest verifies its disk in.
const VERIFY_BLOCK: u64 = 4096;
/// How long the writers run in their steady state before the migration starts.
const SETTLE: Duration = Duration::from_secs(3);
/// Longest wait for a guest to boot and report, fill aside.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// Slowest guest disk fill allowed for, bytes/s (the fill adds size / this to the
/// boot timeout).
const SLOWEST_FILL_BPS: f64 = 4e6;
/// Migration timeout before the share that grows with the bytes to move.
const MIGRATION_TIMEOUT_BASE: Duration = Duration::from_secs(600);
/// Every how often a progress line is printed while waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// Pieces in which `qemu-io` writes the base image (its buffer is this big).
const BASE_WRITE_PIECE: u64 = 256 << 20;
/// Free space kept beside the images (the agent itself keeps 64 MiB).
const SPACE_MARGIN: u64 = 1 << 30;

/// One benchmark scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// A disk full of data, not written during the migration.
    NoWrites,
    /// The same, with the guest writing its disk.
    DiskWrites,
    /// An empty top layer over a shared base full of data; only the top is copied.
    Incremental,
}

/// Every scenario, in table order.
const ALL_SCENARIOS: [Scenario; 3] = [
    Scenario::NoWrites,
    Scenario::DiskWrites,
    Scenario::Incremental,
];

impl Scenario {
    fn as_str(self) -> &'static str {
        match self {
            Scenario::NoWrites => "no-writes",
            Scenario::DiskWrites => "disk-writes",
            Scenario::Incremental => "incremental",
        }
    }

    fn copy_storage(self) -> CopyStorage {
        match self {
            Scenario::Incremental => CopyStorage::Incremental,
            _ => CopyStorage::All,
        }
    }

    /// The guest's disk write rate in this scenario, MB/s.
    fn disk_rate(self, opts: &StorageOpts) -> f64 {
        match self {
            Scenario::NoWrites => 0.0,
            _ => opts.disk_write_rate,
        }
    }

    /// Whether the guest writes its whole disk at boot (the incremental scenario's
    /// data is in the base image, which the guest must not overwrite).
    fn fill(self) -> bool {
        self != Scenario::Incremental
    }

    /// The guest's disk workload.
    fn disk_workload(self, opts: &StorageOpts) -> DiskWorkload {
        DiskWorkload {
            device: "/dev/vda".into(),
            rate_mbps: self.disk_rate(opts),
            bs_kib: DISK_BLOCK_KIB,
            pattern: "uniform".into(),
            hot_fraction: 0.1,
            span_mib: None,
            fill: self.fill(),
        }
    }

    /// One line saying what the scenario is.
    fn describe(self, opts: &StorageOpts) -> String {
        let size = format_bytes(opts.disk_size);
        let rate = format!(
            "{} MB/s of uniform {DISK_BLOCK_KIB} KiB writes",
            opts.disk_write_rate
        );
        match self {
            Scenario::NoWrites => {
                format!("{size} qcow2 the guest filled at boot; no disk writes; full copy")
            }
            Scenario::DiskWrites => {
                format!("{size} qcow2 the guest filled at boot; guest writes {rate}; full copy")
            }
            Scenario::Incremental => format!(
                "empty qcow2 over a {size} base full of data on both hosts; guest writes {rate}; \
                 top layer copied"
            ),
        }
    }
}

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    match s.trim() {
        "no-writes" | "nowrites" | "idle" => Ok(Scenario::NoWrites),
        "disk-writes" | "writes" => Ok(Scenario::DiskWrites),
        "incremental" | "inc" => Ok(Scenario::Incremental),
        "" => Err(
            "empty scenario name: give a comma-separated list such as no-writes,disk-writes".into(),
        ),
        other => Err(format!(
            "unknown scenario {other:?}: use no-writes, disk-writes or incremental"
        )),
    }
}

/// Options of `pacer bench storage`.
#[derive(Debug, Clone, clap::Args)]
pub struct StorageOpts {
    /// Runs of every scenario; the table shows medians.
    #[arg(long, default_value_t = 1, value_parser = parse_runs)]
    pub runs: u32,
    /// Where to write every run's result as JSON (its directory is created).
    #[arg(long, default_value = "bench-results/storage.json")]
    pub out: PathBuf,
    /// Scenarios to run, comma-separated: no-writes, disk-writes, incremental.
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = parse_scenario,
        default_value = "no-writes,disk-writes,incremental"
    )]
    pub scenarios: Vec<Scenario>,
    /// Link rate between the two test hosts, tc style (e.g. 1gbit, 200mbit).
    #[arg(long, default_value = "1gbit", value_parser = parse_link_rate)]
    pub rate: String,
    /// Guest memory (the guest writes a 128 MiB working set).
    #[arg(long, default_value = "512M", value_parser = parse_memory_mib)]
    pub memory: u64,
    /// Virtual size of the guest's qcow2 disk, a whole number of MiB.
    #[arg(long, default_value = "2G", value_parser = parse_disk_size)]
    pub disk_size: u64,
    /// Guest disk write rate in the disk-writes and incremental scenarios, e.g. 10MB/s.
    #[arg(long, default_value = "10MB/s", value_parser = parse_disk_rate)]
    pub disk_write_rate: f64,
    /// Guest memory write rate, uniform over the working set, e.g. 20MB/s (0 = idle).
    #[arg(long, default_value = "20MB/s", value_parser = parse_write_rate)]
    pub write_rate: f64,
}

fn parse_memory_mib(s: &str) -> Result<u64, String> {
    let b = pacer_model::parse_nonzero_size(s).map_err(|e| e.to_string())?;
    let mib = b >> 20;
    let min = WSS_MIB + KERNEL_RESERVE_MIB;
    if mib < min {
        return Err(format!(
            "{s:?} is too small: the guest writes a {WSS_MIB} MiB working set and its kernel \
             needs {KERNEL_RESERVE_MIB} MiB more, give at least {min}M (e.g. 512M)"
        ));
    }
    if mib > 64 * 1024 {
        return Err(format!("{s:?} is more than this benchmark's 64G limit"));
    }
    Ok(mib)
}

/// A disk size in bytes: whole MiB, 64 MiB to 1 TiB.
fn parse_disk_size(s: &str) -> Result<u64, String> {
    let b = pacer_model::parse_nonzero_size(s).map_err(|e| e.to_string())?;
    if b % (1 << 20) != 0 {
        return Err(format!(
            "{s:?} is not a whole number of MiB (e.g. 2G, 512M)"
        ));
    }
    if b < 64 << 20 {
        return Err(format!("{s:?} is too small: give at least 64M"));
    }
    if b > 1 << 40 {
        return Err(format!("{s:?} is more than this benchmark's 1T limit"));
    }
    Ok(b)
}

/// The disk write load, MB/s: more than 0 (the no-writes scenario is the one
/// without), at most 1000.
fn parse_disk_rate(s: &str) -> Result<f64, String> {
    let mbps = if s.trim() == "0" {
        0.0
    } else {
        pacer_model::parse_bandwidth(s).map_err(|e| e.to_string())? as f64 / 1e6
    };
    if mbps <= 0.0 {
        return Err(format!(
            "{s:?}: give a disk write load above 0 (the no-writes scenario is the run without one)"
        ));
    }
    if mbps > 1000.0 {
        return Err(format!(
            "{s:?} is more than this benchmark's 1000 MB/s limit"
        ));
    }
    Ok(mbps)
}

fn scenarios_of(opts: &StorageOpts) -> Result<Vec<Scenario>> {
    if opts.scenarios.is_empty() {
        bail!("--scenarios is empty: give a comma-separated list such as no-writes,disk-writes");
    }
    // Table order, no duplicates.
    Ok(ALL_SCENARIOS
        .iter()
        .copied()
        .filter(|s| opts.scenarios.contains(s))
        .collect())
}

/// Free bytes the images need at once: a full disk at the source and its copy at
/// the destination, or for the incremental scenario the base (the tops are small).
fn space_needed(scenarios: &[Scenario], disk_size: u64) -> u64 {
    let per_run = scenarios
        .iter()
        .map(|s| match s {
            Scenario::Incremental => disk_size + disk_size / 4,
            _ => 2 * disk_size + disk_size / 16,
        })
        .max()
        .unwrap_or(0);
    per_run + SPACE_MARGIN
}

/// The longest a migration may take: the base plus four times the time the link
/// needs for a whole disk and the memory.
fn migration_timeout(disk_size: u64, memory_mib: u64, link_bps: u64) -> Duration {
    let bytes = disk_size + (memory_mib << 20);
    let link_s = if link_bps == 0 {
        0.0
    } else {
        bytes as f64 * 8.0 / link_bps as f64
    };
    MIGRATION_TIMEOUT_BASE + Duration::from_secs_f64(4.0 * link_s)
}

/// One migration of the benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct StorageRun {
    /// Scenario.
    pub scenario: Scenario,
    /// Which repetition (1-based).
    pub repeat: u32,
    /// Position in the order runs were made (1-based).
    pub seq: usize,
    /// `completed`, `failed`, `cancelled` or `error` (the run could not be made).
    pub status: String,
    /// Pacer's total time, from the request to the guest running at the destination.
    pub total_time_ms: Option<u64>,
    /// Time the guest was stopped.
    pub downtime_ms: Option<u64>,
    /// Disk bytes copied.
    pub disk_bytes: Option<u64>,
    /// Memory bytes sent.
    pub memory_bytes: Option<u64>,
    /// Both.
    pub bytes_transferred: Option<u64>,
    /// QEMU's own time for the memory migration.
    pub qemu_total_time_ms: Option<u64>,
    /// Pre-copy rounds of memory.
    pub rounds: Option<u64>,
    /// The guest's memory check at the destination.
    pub memory_ok: Option<bool>,
    /// The guest's disk check at the destination.
    pub disk_ok: Option<bool>,
    /// 4 KiB disk blocks the guest verified.
    pub disk_blocks_checked: Option<u64>,
    /// Bad disk blocks it found.
    pub disk_bad_blocks: Option<u64>,
    /// Why the run failed.
    pub reason: Option<String>,
    /// Making the images, ms.
    pub images_ms: u64,
    /// From starting the VM to its steady state, ms.
    pub ready_ms: Option<u64>,
    /// The guest's fill of its disk, ms (from its `disk_filled` line).
    pub fill_ms: Option<u64>,
    /// Its rate, MB/s.
    pub fill_mbps: Option<f64>,
    /// The guest's disk write rate just before the migration, MB/s.
    pub guest_disk_write_mbps: Option<f64>,
    /// Its memory write rate just before the migration, MB/s.
    pub guest_mem_write_mbps: Option<f64>,
    /// Bytes allocated in the VM's (top) image when the migration began.
    pub image_allocated_bytes: Option<u64>,
    /// Error lines the guest printed before the migration.
    pub guest_errors: Vec<String>,
    /// The migration job's events.
    pub events: Vec<String>,
    /// Start of the run, Unix ms.
    pub started_unix_ms: u64,
    /// The whole run (images, boot, fill, migration, check), ms.
    pub wall_ms: u64,
    /// Pacer's MigrationResult.
    pub detail: Value,
}

impl StorageRun {
    fn new(scenario: Scenario, repeat: u32, seq: usize) -> Self {
        StorageRun {
            scenario,
            repeat,
            seq,
            status: "error".into(),
            total_time_ms: None,
            downtime_ms: None,
            disk_bytes: None,
            memory_bytes: None,
            bytes_transferred: None,
            qemu_total_time_ms: None,
            rounds: None,
            memory_ok: None,
            disk_ok: None,
            disk_blocks_checked: None,
            disk_bad_blocks: None,
            reason: None,
            images_ms: 0,
            ready_ms: None,
            fill_ms: None,
            fill_mbps: None,
            guest_disk_write_mbps: None,
            guest_mem_write_mbps: None,
            image_allocated_bytes: None,
            guest_errors: Vec::new(),
            events: Vec::new(),
            started_unix_ms: unix_ms(),
            wall_ms: 0,
            detail: Value::Null,
        }
    }

    fn completed(&self) -> bool {
        self.status == "completed"
    }

    fn checks_passed(&self) -> bool {
        self.memory_ok == Some(true) && self.disk_ok == Some(true)
    }

    /// One line for the progress display.
    fn outcome_line(&self) -> String {
        if !self.completed() {
            return format!(
                "{}: {}",
                self.status,
                self.reason.as_deref().unwrap_or("no reason given")
            );
        }
        let f = |v: Option<u64>| v.map(|v| v as f64);
        format!(
            "completed: total {}, downtime {}, disk {}, memory {}, memory check {}, disk check {}",
            fmt_total(f(self.total_time_ms)),
            fmt_downtime(f(self.downtime_ms), false),
            fmt_sent(f(self.disk_bytes)),
            fmt_sent(f(self.memory_bytes)),
            super::check_word(self.memory_ok),
            super::check_word(self.disk_ok),
        )
    }

    /// Takes Pacer's result.
    fn fill_from(&mut self, r: &MigrationResult) {
        self.status = match r.status {
            JobStatus::Completed => "completed",
            JobStatus::Cancelled => "cancelled",
            _ => "failed",
        }
        .into();
        self.reason = r.reason.clone();
        if r.status == JobStatus::Completed {
            self.total_time_ms = Some(r.total_time_ms);
            self.downtime_ms = r.downtime_ms;
            self.disk_bytes = Some(r.disk_bytes);
            self.memory_bytes = Some(r.memory_bytes);
            self.bytes_transferred = Some(r.bytes_transferred);
            self.qemu_total_time_ms = r.qemu_total_time_ms;
            self.rounds = Some(r.rounds);
            match &r.integrity {
                Some(i) => {
                    // `ok` covers both; the memory's own verdict is "no error ever".
                    self.memory_ok = Some(i.errors_total == 0 && i.bad_pages == 0);
                    self.disk_ok = Some(i.disk_ok);
                    self.disk_blocks_checked = Some(i.disk_blocks_checked);
                    self.disk_bad_blocks = Some(i.disk_bad_blocks);
                }
                None => self.reason = Some("the guest check did not run".into()),
            }
        }
        self.detail = serde_json::to_value(r).unwrap_or(Value::Null);
    }
}

/// Medians of one scenario over its completed runs.
#[derive(Debug, Clone, Serialize)]
pub struct StorageSummary {
    /// Scenario.
    pub scenario: Scenario,
    /// Runs made.
    pub runs: usize,
    /// Runs that completed.
    pub completed: usize,
    /// Median total time, ms.
    pub total_time_ms: Option<f64>,
    /// Median downtime, ms.
    pub downtime_ms: Option<f64>,
    /// Median disk bytes.
    pub disk_bytes: Option<f64>,
    /// Median memory bytes.
    pub memory_bytes: Option<f64>,
    /// Median disk bytes the guest verified.
    pub disk_verified_bytes: Option<f64>,
    /// Median image bytes allocated when the migration began.
    pub image_allocated_bytes: Option<f64>,
    /// Completed runs whose memory check passed / failed.
    pub memory_checks_ok: usize,
    /// See `memory_checks_ok`.
    pub memory_checks_failed: usize,
    /// Completed runs whose disk check passed / failed.
    pub disk_checks_ok: usize,
    /// See `disk_checks_ok`.
    pub disk_checks_failed: usize,
    /// Why runs failed.
    pub reasons: Vec<String>,
}

impl StorageSummary {
    fn memory_check(&self) -> String {
        check_cell(
            self.memory_checks_ok,
            self.memory_checks_failed,
            self.completed,
        )
    }

    fn disk_check(&self) -> String {
        check_cell(self.disk_checks_ok, self.disk_checks_failed, self.completed)
    }

    fn status(&self) -> String {
        status_cell(self.runs, self.completed)
    }
}

/// Summarises the runs of one scenario.
pub fn summarize(scenario: Scenario, runs: &[StorageRun]) -> StorageSummary {
    let mine: Vec<&StorageRun> = runs.iter().filter(|r| r.scenario == scenario).collect();
    let done: Vec<&StorageRun> = mine.iter().copied().filter(|r| r.completed()).collect();
    let med = |f: &dyn Fn(&StorageRun) -> Option<u64>| {
        median(
            &done
                .iter()
                .filter_map(|r| f(r))
                .map(|v| v as f64)
                .collect::<Vec<_>>(),
        )
    };
    let count = |f: &dyn Fn(&StorageRun) -> Option<bool>, want: bool| {
        done.iter().filter(|r| f(r) == Some(want)).count()
    };
    StorageSummary {
        scenario,
        runs: mine.len(),
        completed: done.len(),
        total_time_ms: med(&|r| r.total_time_ms),
        downtime_ms: med(&|r| r.downtime_ms),
        disk_bytes: med(&|r| r.disk_bytes),
        memory_bytes: med(&|r| r.memory_bytes),
        disk_verified_bytes: med(&|r| r.disk_blocks_checked.map(|b| b * VERIFY_BLOCK)),
        image_allocated_bytes: med(&|r| r.image_allocated_bytes),
        memory_checks_ok: count(&|r| r.memory_ok, true),
        memory_checks_failed: count(&|r| r.memory_ok, false),
        disk_checks_ok: count(&|r| r.disk_ok, true),
        disk_checks_failed: count(&|r| r.disk_ok, false),
        reasons: mine
            .iter()
            .filter(|r| !r.completed() || r.reason.is_some())
            .map(|r| {
                format!(
                    "run {}: {}: {}",
                    r.repeat,
                    r.status,
                    r.reason.as_deref().unwrap_or("no reason given")
                )
            })
            .collect(),
    }
}

/// The table printed at the end: one row per scenario, then what each scenario is,
/// how much of the disk the guest verified, and why runs failed.
pub fn render_table(scenarios: &[Scenario], runs: &[StorageRun], opts: &StorageOpts) -> String {
    let mut out = String::new();
    let median_note = if opts.runs > 1 {
        format!(" (medians of {} runs)", opts.runs)
    } else {
        String::new()
    };
    let row = |c: [&str; 8]| {
        format!(
            "{:<13}{:<10}{:<10}{:<12}{:<12}{:<11}{:<11}{}\n",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
        )
    };
    let head = row([
        "scenario",
        "total",
        "downtime",
        "disk",
        "memory",
        "mem check",
        "disk check",
        "status",
    ]);
    out.push_str(head.trim_end());
    out.push_str(&median_note);
    out.push('\n');
    let summaries: Vec<StorageSummary> = scenarios.iter().map(|&s| summarize(s, runs)).collect();
    for m in &summaries {
        out.push_str(&row([
            m.scenario.as_str(),
            &fmt_total(m.total_time_ms),
            &fmt_downtime(m.downtime_ms, false),
            &fmt_sent(m.disk_bytes),
            &fmt_sent(m.memory_bytes),
            &m.memory_check(),
            &m.disk_check(),
            &m.status(),
        ]));
    }
    out.push_str(&format!(
        "\npre-copy over {}; {} guest writing {} MB/s of memory over a {WSS_MIB} MiB working set\n",
        opts.rate,
        format_bytes(opts.memory << 20),
        opts.write_rate
    ));
    for &s in scenarios {
        out.push_str(&format!("  {:<13}{}\n", s.as_str(), s.describe(opts)));
    }
    let verified: Vec<String> = summaries
        .iter()
        .filter_map(|m| {
            m.disk_verified_bytes
                .map(|b| format!("{} {}", m.scenario.as_str(), fmt_sent(Some(b))))
        })
        .collect();
    if !verified.is_empty() {
        out.push_str(&format!(
            "disk verified by the guest at the destination: {}\n",
            verified.join(", ")
        ));
    }
    let failures: Vec<String> = summaries
        .iter()
        .flat_map(|m| {
            m.reasons
                .iter()
                .map(move |r| format!("  {} {r}", m.scenario.as_str()))
        })
        .collect();
    if !failures.is_empty() {
        out.push_str("\nfailed runs and notes:\n");
        for f in failures {
            out.push_str(&f);
            out.push('\n');
        }
    }
    out
}

/// The order of the runs: repeats outermost, then scenarios in table order.
pub fn plan(scenarios: &[Scenario], repeats: u32) -> Vec<(u32, Scenario)> {
    (1..=repeats)
        .flat_map(|r| scenarios.iter().map(move |&s| (r, s)))
        .collect()
}

/// What every run shares.
struct Setup {
    hosts: Hosts,
    kernel: String,
    initrd: String,
    kernel_version: String,
    /// Where this benchmark makes its images.
    image_dir: PathBuf,
    /// Where the destination agent makes its disk copies.
    dest_disk_dir: PathBuf,
    link_bps: u64,
    /// The accelerator the agent chose (learnt from the first run).
    accel: Option<String>,
}

/// Runs `pacer bench storage`.
pub async fn run(opts: &StorageOpts) -> Result<i32> {
    let scenarios = scenarios_of(opts)?;
    prepare_out(&opts.out)?;
    tool_present("qemu-img").await?;
    if scenarios.contains(&Scenario::Incremental) {
        tool_present("qemu-io").await?;
    }

    let t0 = Instant::now();
    note("building the guest image (cached after the first run)");
    let mut img_opts = crate::guest_image::ImageOptions::from_env();
    img_opts.progress = true;
    let img = crate::guest_image::ensure_guest_image(&img_opts)?;

    note(&format!(
        "creating two test hosts joined by a {} link",
        opts.rate
    ));
    let guard = BedGuard::up(BED, 2, &opts.rate, false)?;
    let image_dir = guard.bed.dir.join("bench-images");
    std::fs::create_dir_all(&image_dir)
        .with_context(|| format!("cannot create {}", image_dir.display()))?;
    let need = space_needed(&scenarios, opts.disk_size);
    if let Some(free) = free_bytes(&image_dir) {
        if free < need {
            bail!(
                "{} has {} free but the images need about {}: free space there or give a \
                 smaller --disk-size",
                image_dir.display(),
                format_bytes(free),
                format_bytes(need)
            );
        }
    }
    let mut setup = Setup {
        hosts: guard.hosts()?,
        kernel: img.kernel.display().to_string(),
        initrd: img.initrd.display().to_string(),
        kernel_version: img.kernel_version.clone(),
        image_dir,
        dest_disk_dir: guard.bed.hosts[1].state_dir.join("vms"),
        link_bps: crate::net::parse_rate(&opts.rate)?,
        accel: None,
    };

    let stop_rx = stop_on_ctrl_c();
    let order = plan(&scenarios, opts.runs);
    let started = unix_ms();
    let mut runs: Vec<StorageRun> = Vec::new();
    for (i, &(repeat, scenario)) in order.iter().enumerate() {
        if *stop_rx.borrow() {
            break;
        }
        let tag = format!(
            "[{}/{}] {} (run {repeat} of {})",
            i + 1,
            order.len(),
            scenario.as_str(),
            opts.runs
        );
        eprintln!("{tag}: {}", scenario.describe(opts));
        let mut rec = StorageRun::new(scenario, repeat, i + 1);
        let name = format!("bstore-{}", i + 1);
        let mut files = Vec::new();
        let t = Instant::now();
        one_run(
            &mut setup,
            opts,
            &name,
            &mut rec,
            &mut files,
            stop_rx.clone(),
        )
        .await;
        if *stop_rx.borrow() && rec.status == "error" {
            rec.status = "cancelled".into();
            rec.reason = Some("interrupted".into());
        }
        cleanup(&setup.hosts, &setup.dest_disk_dir, &name, &files).await;
        rec.wall_ms = t.elapsed().as_millis() as u64;
        eprintln!("{tag}: {}", rec.outcome_line());
        runs.push(rec);
        write_results(opts, &scenarios, &setup, &runs, started)?;
    }
    drop(guard);
    eprintln!(
        "test bed removed (benchmark took {:.0} s)\n",
        t0.elapsed().as_secs_f64()
    );

    print!("{}", render_table(&scenarios, &runs, opts));
    println!("\nall runs: {}", opts.out.display());
    let all_ok =
        runs.len() == order.len() && runs.iter().all(|r| r.completed() && r.checks_passed());
    Ok(if all_ok { 0 } else { 1 })
}

fn write_results(
    opts: &StorageOpts,
    scenarios: &[Scenario],
    setup: &Setup,
    runs: &[StorageRun],
    started: u64,
) -> Result<()> {
    let summaries: Vec<StorageSummary> = scenarios.iter().map(|&s| summarize(s, runs)).collect();
    let doc = json!({
        "benchmark": "storage",
        "pacer_version": env!("CARGO_PKG_VERSION"),
        "started_unix_ms": started,
        "updated_unix_ms": unix_ms(),
        "config": {
            "runs": opts.runs,
            "scenarios": scenarios,
            "strategy": Strategy::PreCopy,
            "link_rate": opts.rate,
            "memory_mib": opts.memory,
            "wss_mib": WSS_MIB,
            "write_rate_mbps": opts.write_rate,
            "disk_size_bytes": opts.disk_size,
            "disk_format": "qcow2",
            "disk_write_rate_mbps": opts.disk_write_rate,
            "disk_block_kib": DISK_BLOCK_KIB,
            "disk_pattern": "uniform",
            "settle_ms": SETTLE.as_millis() as u64,
            "accel": setup.accel,
            "kernel_version": setup.kernel_version,
        },
        "runs": runs,
        "summary": summaries,
    });
    write_json(&opts.out, &doc)
}

pub(super) async fn tool_present(tool: &str) -> Result<()> {
    let ok = tokio::process::Command::new(tool)
        .arg("--version")
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    if !ok {
        bail!("{tool} is needed to make the disk images and was not found on PATH (install qemu-utils)");
    }
    Ok(())
}

pub(super) fn free_bytes(p: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
    // SAFETY: a zeroed statvfs is a valid out-parameter; `c` is NUL-terminated.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}

/// Runs a qemu tool to completion; an error with its stderr if it fails.
pub(super) async fn qemu_tool(tool: &str, args: &[String]) -> Result<()> {
    let out = tokio::process::Command::new(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {tool}"))?;
    if !out.status.success() {
        bail!(
            "{tool} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub(super) fn qcow2_create_args(path: &Path, size: u64, backing: Option<&Path>) -> Vec<String> {
    let mut a: Vec<String> = ["create", "-q", "-f", "qcow2"].map(String::from).into();
    if let Some(b) = backing {
        a.extend([
            "-b".into(),
            b.display().to_string(),
            "-F".into(),
            "qcow2".into(),
        ]);
    }
    a.push(path.display().to_string());
    a.push(size.to_string());
    a
}

/// `qemu-io` arguments that write the pattern 0x5a over the whole image, in
/// pieces of at most [`BASE_WRITE_PIECE`] bytes.
fn base_fill_args(path: &Path, size: u64) -> Vec<String> {
    let mut a: Vec<String> = vec!["-f".into(), "qcow2".into()];
    let mut off = 0;
    while off < size {
        let len = BASE_WRITE_PIECE.min(size - off);
        a.push("-c".into());
        a.push(format!("write -q -P 0x5a {off} {len}"));
        off += len;
    }
    a.push(path.display().to_string());
    a
}

/// Bytes allocated to an image on the host (`qemu-img info`'s actual size).
async fn allocated_bytes(path: &Path) -> Option<u64> {
    let out = tokio::process::Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get("actual-size").and_then(Value::as_u64)
}

/// Makes the images of one run; returns the one the VM boots with. Every file
/// made is pushed to `files` (for the cleanup) before it is written.
async fn make_images(
    setup: &Setup,
    opts: &StorageOpts,
    scenario: Scenario,
    name: &str,
    files: &mut Vec<PathBuf>,
) -> Result<PathBuf> {
    let top = setup.image_dir.join(format!("{name}.qcow2"));
    match scenario {
        Scenario::NoWrites | Scenario::DiskWrites => {
            files.push(top.clone());
            qemu_tool("qemu-img", &qcow2_create_args(&top, opts.disk_size, None)).await?;
        }
        Scenario::Incremental => {
            let base = setup.image_dir.join(format!("{name}-base.qcow2"));
            files.push(base.clone());
            qemu_tool("qemu-img", &qcow2_create_args(&base, opts.disk_size, None)).await?;
            qemu_tool("qemu-io", &base_fill_args(&base, opts.disk_size)).await?;
            files.push(top.clone());
            qemu_tool(
                "qemu-img",
                &qcow2_create_args(&top, opts.disk_size, Some(&base)),
            )
            .await?;
        }
    }
    Ok(top)
}

/// One run: images, VM, steady state, migration. Leaves the cleanup to the caller.
async fn one_run(
    setup: &mut Setup,
    opts: &StorageOpts,
    name: &str,
    rec: &mut StorageRun,
    files: &mut Vec<PathBuf>,
    stop: watch::Receiver<bool>,
) {
    let scenario = rec.scenario;
    let t = Instant::now();
    let disk = match make_images(setup, opts, scenario, name, files).await {
        Ok(d) => d,
        Err(e) => {
            rec.reason = Some(format!("cannot make the images: {e:#}"));
            return;
        }
    };
    rec.images_ms = t.elapsed().as_millis() as u64;
    if *stop.borrow() {
        return;
    }
    eprintln!(
        "  images ready after {:.1} s; starting a {} guest on h1",
        t.elapsed().as_secs_f64(),
        format_bytes(opts.memory << 20)
    );
    let spec = VmSpec {
        name: name.into(),
        memory_mib: opts.memory,
        vcpus: 1,
        kernel: Some(setup.kernel.clone()),
        initrd: Some(setup.initrd.clone()),
        append: None,
        disks: vec![disk.display().to_string()],
        workload: Some(Workload {
            kind: "memwrite".into(),
            wss_mib: WSS_MIB,
            rate_mbps: opts.write_rate,
            hot_fraction: 0.0,
            hot_share: 0.0,
            disk: Some(scenario.disk_workload(opts)),
        }),
        accel: AccelChoice::Auto,
    };
    let h1 = match setup.hosts.client("h1") {
        Ok(c) => c,
        Err(e) => {
            rec.reason = Some(format!("{e:#}"));
            return;
        }
    };
    let info: VmInfo = match h1.post("/v1/vms", &spec).await {
        Ok(i) => i,
        Err(e) => {
            rec.reason = Some(format!("cannot start the guest: {e}"));
            return;
        }
    };
    setup.accel.get_or_insert(info.accel.clone());
    let t = Instant::now();
    let fill_s = if scenario.fill() {
        opts.disk_size as f64 / SLOWEST_FILL_BPS
    } else {
        0.0
    };
    let timeout = BOOT_TIMEOUT + Duration::from_secs_f64(fill_s);
    let (disk_rate, mem_rate) = (scenario.disk_rate(opts), opts.write_rate);
    let steady = match wait_steady(&setup.hosts, name, disk_rate, mem_rate, timeout, &stop).await {
        Ok(s) => s,
        Err(e) => {
            rec.reason = Some(format!("{e:#}"));
            return;
        }
    };
    rec.ready_ms = Some(t.elapsed().as_millis() as u64);
    rec.fill_ms = steady.fill_ms;
    rec.fill_mbps = steady.fill_mbps;
    rec.guest_errors = steady.errors.clone();
    let fill = match (steady.fill_ms, steady.fill_mbps) {
        (Some(ms), Some(r)) => {
            format!(" (disk filled in {:.1} s, {r:.0} MB/s)", ms as f64 / 1000.0)
        }
        _ => String::new(),
    };
    eprintln!(
        "  guest steady after {:.1} s{fill}; letting it run {} s",
        t.elapsed().as_secs_f64(),
        SETTLE.as_secs()
    );
    tokio::time::sleep(SETTLE).await;
    if *stop.borrow() {
        return;
    }
    if let Ok(text) = vm::console(&setup.hosts, name, Some("h1"), 16 * 1024).await {
        if let Some(s) = last_of_kind(&guest_lines(&text), "status") {
            rec.guest_disk_write_mbps = s.get("disk_write_mbps").and_then(Value::as_f64);
            rec.guest_mem_write_mbps = s.get("write_mbps").and_then(Value::as_f64);
        }
    }
    rec.image_allocated_bytes = allocated_bytes(&disk).await;
    eprintln!(
        "  migrating to h2 (pre-copy, copy storage {}); guest writes {} MB/s memory, {} MB/s disk; \
         image holds {}",
        match scenario.copy_storage() {
            CopyStorage::Incremental => "incremental",
            _ => "all",
        },
        rec.guest_mem_write_mbps.map(|v| format!("{v:.1}")).unwrap_or("?".into()),
        rec.guest_disk_write_mbps.map(|v| format!("{v:.1}")).unwrap_or("?".into()),
        rec.image_allocated_bytes.map(format_bytes).unwrap_or("?".into()),
    );
    let limit = migration_timeout(opts.disk_size, opts.memory, setup.link_bps);
    migrate(setup, name, scenario, rec, limit, stop).await;
    if rec.completed() {
        // The destination's copy, to delete with the rest.
        if let Ok(c) = setup.hosts.client("h2") {
            if let Ok(i) = c.get::<VmInfo>(&format!("/v1/vms/{name}")).await {
                files.extend(i.spec.into_iter().flat_map(|s| s.disks).map(PathBuf::from));
            }
        }
    }
}

/// What the guest said when it got steady.
#[derive(Debug, Default)]
pub(super) struct Steady {
    pub(super) fill_ms: Option<u64>,
    pub(super) fill_mbps: Option<f64>,
    pub(super) errors: Vec<String>,
}

/// The guest program's JSON lines in a console text.
pub(super) fn guest_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("PACER "))
        .filter_map(|j| serde_json::from_str::<Value>(j).ok())
        .collect()
}

pub(super) fn last_of_kind<'a>(lines: &'a [Value], kind: &str) -> Option<&'a Value> {
    lines
        .iter()
        .rev()
        .find(|v| v.get("kind").and_then(Value::as_str) == Some(kind))
}

/// Whether a status line shows the steady state: the disk filled, the disk writer
/// writing (or idle when it has no rate), the memory writer writing.
pub(super) fn is_steady(status: &Value, disk_rate: f64, mem_rate: f64) -> bool {
    let num = |k: &str| status.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let phase = status.get("disk_phase").and_then(Value::as_str);
    let disk = if disk_rate > 0.0 {
        phase == Some("write") && num("disk_write_mbps") > 0.0
    } else {
        phase == Some("idle")
    };
    disk && (mem_rate <= 0.0 || num("write_mbps") > 0.0)
}

/// Waits until the guest is in its steady state, printing the fill's progress.
pub(super) async fn wait_steady(
    hosts: &Hosts,
    name: &str,
    disk_rate: f64,
    mem_rate: f64,
    timeout: Duration,
    stop: &watch::Receiver<bool>,
) -> Result<Steady> {
    let t0 = Instant::now();
    let mut last_note = Instant::now();
    loop {
        if *stop.borrow() {
            bail!("interrupted");
        }
        let text = vm::console(hosts, name, Some("h1"), 64 * 1024).await?;
        let lines = guest_lines(&text);
        let status = last_of_kind(&lines, "status");
        if status.is_some_and(|s| is_steady(s, disk_rate, mem_rate)) {
            let filled = last_of_kind(&lines, "disk_filled");
            return Ok(Steady {
                fill_ms: filled
                    .and_then(|f| f.get("fill_ms"))
                    .and_then(Value::as_u64),
                fill_mbps: filled
                    .and_then(|f| f.get("fill_mbps"))
                    .and_then(Value::as_f64),
                errors: lines
                    .iter()
                    .filter(|v| v.get("kind").and_then(Value::as_str) == Some("error"))
                    .map(|v| v.to_string())
                    .collect(),
            });
        }
        if t0.elapsed() > timeout {
            let tail: String = text
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            bail!(
                "guest {name} did not reach its steady state within {} s; console:\n{tail}",
                timeout.as_secs()
            );
        }
        if last_note.elapsed() >= PROGRESS_EVERY {
            last_note = Instant::now();
            let fill = status.and_then(|s| {
                let done = s.get("disk_fill_bytes")?.as_u64()?;
                let total = s.get("disk_fill_total")?.as_u64()?;
                (s.get("disk_phase")?.as_str()? == "fill" && total > 0).then(|| {
                    format!(
                        "filling its disk: {} of {} ({:.0}%)",
                        format_bytes(done),
                        format_bytes(total),
                        done as f64 * 100.0 / total as f64
                    )
                })
            });
            eprintln!(
                "  {:.0} s: guest {}",
                t0.elapsed().as_secs_f64(),
                fill.unwrap_or_else(|| if status.is_some() {
                    "running, not steady yet".into()
                } else {
                    "booting".into()
                })
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The migration: start the job on h1, follow it with a progress line now and
/// then, cancel it on Ctrl-C or when it takes longer than `limit`.
async fn migrate(
    setup: &Setup,
    name: &str,
    scenario: Scenario,
    rec: &mut StorageRun,
    limit: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let (client, dest) = match (setup.hosts.client("h1"), setup.hosts.get("h2")) {
        (Ok(c), Ok(d)) => (c, d.clone()),
        (Err(e), _) | (_, Err(e)) => {
            rec.reason = Some(format!("{e:#}"));
            return;
        }
    };
    // The CLI's defaults: unlimited bandwidth, 300 ms downtime limit, guest check on.
    let mut req = MigrateRequest::new(
        PeerRef {
            name: dest.name.clone(),
            url: dest.peer_url().to_string(),
            token: dest.token.clone(),
        },
        Strategy::PreCopy,
    );
    req.copy_storage = scenario.copy_storage();
    let job: JobInfo = match client.post(&format!("/v1/vms/{name}/migrate"), &req).await {
        Ok(j) => j,
        Err(e) => {
            rec.reason = Some(format!("the migration was refused: {e}"));
            return;
        }
    };
    let t0 = Instant::now();
    let mut last_note = Instant::now();
    let mut cancelled: Option<String> = None;
    loop {
        let j: JobInfo = match client.get(&format!("/v1/jobs/{}", job.id)).await {
            Ok(j) => j,
            Err(e) => {
                rec.reason = Some(format!("lost the job {}: {e}", job.id));
                return;
            }
        };
        if let Some(r) = &j.result {
            rec.fill_from(r);
            rec.events = j.events.clone();
            if let Some(why) = cancelled {
                rec.reason = Some(match &rec.reason {
                    Some(r) => format!("{why} ({r})"),
                    None => why,
                });
                if rec.status == "cancelled" && why_is_timeout(rec) {
                    rec.status = "failed".into();
                }
            }
            return;
        }
        if last_note.elapsed() >= PROGRESS_EVERY {
            last_note = Instant::now();
            eprintln!("  {}", progress_line(&j));
        }
        if cancelled.is_none() {
            let why = if *stop.borrow() {
                Some("interrupted".to_string())
            } else if t0.elapsed() > limit {
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
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed(), if cancelled.is_none() => {}
        }
    }
}

fn why_is_timeout(rec: &StorageRun) -> bool {
    rec.reason
        .as_deref()
        .is_some_and(|r| r.starts_with("not done after"))
}

/// A progress line of a running migration.
pub(super) fn progress_line(j: &JobInfo) -> String {
    let p = &j.progress;
    let mut s = format!(
        "{:.0} s: {} {:.0}%",
        p.elapsed_ms as f64 / 1000.0,
        p.phase,
        p.percent
    );
    if let Some(d) = &p.disk {
        s.push_str(&format!(
            ", disk {} of {}{}",
            format_bytes(d.transferred),
            format_bytes(d.total),
            if d.ready { " (in sync)" } else { "" }
        ));
    }
    if !p.phase.starts_with("disk") && !p.phase.starts_with("prep") {
        s.push_str(&format!(", memory {}", format_bytes(p.transferred)));
    }
    s
}

/// Stops the run's VM wherever it is and deletes its images, the destination's
/// copy included (also one left behind by a failed run).
pub(super) async fn cleanup(hosts: &Hosts, dest_disk_dir: &Path, name: &str, files: &[PathBuf]) {
    for h in ["h1", "h2"] {
        let _ = vm::stop(hosts, name, Some(h)).await;
    }
    for f in files {
        let _ = std::fs::remove_file(f);
    }
    let prefix = format!("{name}-disk");
    if let Ok(dir) = std::fs::read_dir(dest_disk_dir) {
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> StorageOpts {
        StorageOpts {
            runs: 1,
            out: "x.json".into(),
            scenarios: ALL_SCENARIOS.to_vec(),
            rate: "1gbit".into(),
            memory: 512,
            disk_size: 2 << 30,
            disk_write_rate: 10.0,
            write_rate: 20.0,
        }
    }

    fn done(scenario: Scenario, repeat: u32, total: u64, disk: u64, mem: u64) -> StorageRun {
        let mut r = StorageRun::new(scenario, repeat, 0);
        r.status = "completed".into();
        r.total_time_ms = Some(total);
        r.downtime_ms = Some(150);
        r.disk_bytes = Some(disk);
        r.memory_bytes = Some(mem);
        r.memory_ok = Some(true);
        r.disk_ok = Some(true);
        r.disk_blocks_checked = Some(disk / VERIFY_BLOCK);
        r
    }

    #[test]
    fn option_parsing() {
        assert_eq!(parse_scenario("inc"), Ok(Scenario::Incremental));
        assert_eq!(parse_scenario(" no-writes"), Ok(Scenario::NoWrites));
        assert!(parse_scenario("all")
            .unwrap_err()
            .contains("unknown scenario"));
        assert!(parse_scenario("").is_err());
        assert_eq!(parse_disk_size("2G"), Ok(2 << 30));
        assert!(parse_disk_size("32M").unwrap_err().contains("at least 64M"));
        assert!(parse_disk_size("100000K")
            .unwrap_err()
            .contains("whole number of MiB"));
        assert!(parse_disk_size("2T").is_err());
        assert_eq!(parse_disk_rate("10MB/s"), Ok(10.0));
        assert!(parse_disk_rate("0").unwrap_err().contains("above 0"));
        assert!(parse_disk_rate("2GB/s").is_err());
        assert_eq!(parse_memory_mib("512M"), Ok(512));
        assert!(parse_memory_mib("128M")
            .unwrap_err()
            .contains("at least 176M"));
        let mut o = opts();
        o.scenarios = vec![
            Scenario::Incremental,
            Scenario::NoWrites,
            Scenario::Incremental,
        ];
        assert_eq!(
            scenarios_of(&o).unwrap(),
            [Scenario::NoWrites, Scenario::Incremental]
        );
        o.scenarios.clear();
        assert!(scenarios_of(&o).is_err());
    }

    #[test]
    fn scenario_workloads() {
        let o = opts();
        let a = Scenario::NoWrites.disk_workload(&o);
        assert_eq!((a.rate_mbps, a.fill), (0.0, true));
        let b = Scenario::DiskWrites.disk_workload(&o);
        assert_eq!((b.rate_mbps, b.fill, b.bs_kib), (10.0, true, 64));
        let c = Scenario::Incremental.disk_workload(&o);
        assert_eq!((c.rate_mbps, c.fill), (10.0, false));
        assert_eq!(
            Scenario::Incremental.copy_storage(),
            CopyStorage::Incremental
        );
        assert_eq!(Scenario::DiskWrites.copy_storage(), CopyStorage::All);
        assert_eq!(
            plan(&[Scenario::NoWrites, Scenario::Incremental], 2).len(),
            4
        );
        assert_eq!(
            plan(&[Scenario::NoWrites, Scenario::Incremental], 2)[2],
            (2, Scenario::NoWrites)
        );
    }

    #[test]
    fn steady_state_rule() {
        let s = |phase: &str, disk: f64, mem: f64| json!({"kind": "status", "disk_phase": phase, "disk_write_mbps": disk, "write_mbps": mem});
        assert!(!is_steady(&s("fill", 0.0, 20.0), 0.0, 20.0));
        assert!(is_steady(&s("idle", 0.0, 20.0), 0.0, 20.0));
        assert!(!is_steady(&s("idle", 0.0, 0.0), 0.0, 20.0));
        assert!(is_steady(&s("idle", 0.0, 0.0), 0.0, 0.0));
        assert!(!is_steady(&s("write", 0.0, 20.0), 10.0, 20.0));
        assert!(is_steady(&s("write", 9.8, 20.0), 10.0, 20.0));
        assert!(!is_steady(&json!({"kind": "status"}), 10.0, 0.0));
    }

    #[test]
    fn guest_console_lines() {
        let text = "boot noise\nPACER {\"kind\":\"status\",\"disk_phase\":\"fill\"}\n\
                    PACER {\"kind\":\"disk_filled\",\"fill_ms\":30000,\"fill_mbps\":71.5}\n\
                    PACER {broken\n  PACER {\"kind\":\"status\",\"disk_phase\":\"idle\"}\n";
        let l = guest_lines(text);
        assert_eq!(l.len(), 3);
        assert_eq!(last_of_kind(&l, "status").unwrap()["disk_phase"], "idle");
        assert_eq!(last_of_kind(&l, "disk_filled").unwrap()["fill_ms"], 30000);
        assert!(last_of_kind(&l, "verify").is_none());
    }

    #[test]
    fn image_commands() {
        let a = qcow2_create_args(
            Path::new("/i/top.qcow2"),
            2 << 30,
            Some(Path::new("/i/b.qcow2")),
        );
        assert_eq!(
            a.join(" "),
            "create -q -f qcow2 -b /i/b.qcow2 -F qcow2 /i/top.qcow2 2147483648"
        );
        let f = base_fill_args(Path::new("/i/b.qcow2"), (600 << 20) as u64);
        assert_eq!(
            f.join(" "),
            "-f qcow2 -c write -q -P 0x5a 0 268435456 -c write -q -P 0x5a 268435456 268435456 \
             -c write -q -P 0x5a 536870912 92274688 /i/b.qcow2"
        );
    }

    #[test]
    fn space_and_timeouts() {
        let g = 1u64 << 30;
        assert_eq!(
            space_needed(&[Scenario::Incremental], 2 * g),
            2 * g + g / 2 + g
        );
        assert_eq!(
            space_needed(&ALL_SCENARIOS, 2 * g),
            4 * g + g / 8 + SPACE_MARGIN
        );
        // 2.5 GiB over 1 Gbit/s is ~21.5 s; four times that on top of the base.
        let t = migration_timeout(2 * g, 512, 1_000_000_000);
        assert_eq!(t.as_secs(), 600 + 85);
        assert_eq!(migration_timeout(g, 512, 0), MIGRATION_TIMEOUT_BASE);
    }

    #[test]
    fn results_from_pacer() {
        let r: MigrationResult = serde_json::from_value(json!({
            "status": "completed", "vm": "v", "strategy": "pre-copy", "total_time_ms": 25000,
            "downtime_ms": 180, "bytes_transferred": 2_300_000_000u64, "source": "h1",
            "destination": "h2", "vm_location": "h2", "reason": null,
            "qemu_total_time_ms": 3000, "rounds": 4, "precopy_bytes": 1, "downtime_bytes": 1,
            "postcopy_bytes": 0, "memory_bytes": 150_000_000u64, "disk_bytes": 2_150_000_000u64,
            "integrity": {"ok": false, "pages_checked": 32768, "bad_pages": 0,
                          "errors_total": 0, "duration_ms": 900, "disk_ok": false,
                          "disk_blocks_checked": 524288, "disk_bad_blocks": 3}
        }))
        .unwrap();
        let mut rec = StorageRun::new(Scenario::DiskWrites, 1, 1);
        rec.fill_from(&r);
        assert!(rec.completed());
        assert_eq!((rec.memory_ok, rec.disk_ok), (Some(true), Some(false)));
        assert_eq!(rec.disk_bad_blocks, Some(3));
        assert!(!rec.checks_passed());
        assert!(rec
            .outcome_line()
            .contains("memory check ok, disk check FAILED"));
    }

    #[test]
    fn table_rows_and_notes() {
        let mib = 1u64 << 20;
        let g = 1u64 << 30;
        let mut runs = vec![
            done(Scenario::NoWrites, 1, 22_000, 2 * g, 140 * mib),
            done(Scenario::NoWrites, 2, 24_000, 2 * g, 150 * mib),
            done(Scenario::NoWrites, 3, 23_000, 2 * g, 145 * mib),
            done(
                Scenario::DiskWrites,
                1,
                30_000,
                2 * g + 200 * mib,
                200 * mib,
            ),
        ];
        let mut bad = StorageRun::new(Scenario::DiskWrites, 2, 5);
        bad.status = "failed".into();
        bad.reason = Some("disk mirror failed: boom".into());
        runs.push(bad);
        let mut o = opts();
        o.runs = 3;
        let t = render_table(&[Scenario::NoWrites, Scenario::DiskWrites], &runs, &o);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "scenario     total     downtime  disk        memory      mem check  disk check status \
             (medians of 3 runs)"
        );
        assert_eq!(
            lines[1],
            "no-writes    23.00 s   150 ms    2.00 GiB    145.0 MiB   ok         ok         completed"
        );
        assert_eq!(
            lines[2],
            "disk-writes  30.00 s   150 ms    2.20 GiB    200.0 MiB   ok         ok         FAILED 1/2"
        );
        assert!(
            t.contains("pre-copy over 1gbit; 512.0 MiB guest writing 20 MB/s"),
            "{t}"
        );
        assert!(
            t.contains("  no-writes    2.00 GiB qcow2 the guest filled at boot"),
            "{t}"
        );
        assert!(
            t.contains("disk verified by the guest at the destination: no-writes 2.00 GiB, disk-writes 2.20 GiB"),
            "{t}"
        );
        assert!(
            t.contains("  disk-writes run 2: failed: disk mirror failed: boom"),
            "{t}"
        );
    }
}
