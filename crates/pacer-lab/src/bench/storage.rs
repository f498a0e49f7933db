//! `pacer-lab bench storage` answers "what does moving a VM's disk cost?": on one test
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
//!
//! (About 730 lines outside tests: one benchmark with its disk scenarios and the
//! guest's disk check; the scenarios share its setup.)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use pacer_api::{CopyStorage, DiskWorkload, MigrateRequest, MigrationResult, Strategy};
use pacer_model::format_bytes;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::harness::{follow_migration, migration_limit};
use super::record::{MigrationRecord, Row};
use super::{
    check_cell, check_word, fmt_downtime, fmt_sent, fmt_total, parse_guest_memory, parse_link_rate,
    parse_runs, parse_write_rate, prepare_out, push_list, status_cell, stop_on_ctrl_c, unix_ms,
    write_results,
};
use crate::live::{
    guest_rates, qcow2_create_args, qemu_tool, room_for_disk, start_guest, tool_present,
    uniform_disk_writer, GuestPlan, LiveBed, SPACE_MARGIN,
};

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
/// Migration timeout before the share that grows with the bytes to move.
const MIGRATION_TIMEOUT_BASE: Duration = Duration::from_secs(600);
/// Pieces in which `qemu-io` writes the base image (its buffer is this big).
const BASE_WRITE_PIECE: u64 = 256 << 20;

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
        uniform_disk_writer(self.disk_rate(opts), self.fill())
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

/// Options of `pacer-lab bench storage`.
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
    parse_guest_memory(s, WSS_MIB, "512M")
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
            Scenario::Incremental => disk_size + disk_size / 4 + SPACE_MARGIN,
            _ => room_for_disk(disk_size),
        })
        .max()
        .unwrap_or(SPACE_MARGIN);
    per_run
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
    /// How it went (bytes: disk and memory).
    #[serde(flatten)]
    pub run: MigrationRecord,
    /// Disk bytes copied.
    pub disk_bytes: Option<u64>,
    /// Memory bytes sent.
    pub memory_bytes: Option<u64>,
    /// The guest's memory check at the destination.
    pub memory_ok: Option<bool>,
    /// The guest's disk check at the destination.
    pub disk_ok: Option<bool>,
    /// 4 KiB disk blocks the guest verified.
    pub disk_blocks_checked: Option<u64>,
    /// Bad disk blocks it found.
    pub disk_bad_blocks: Option<u64>,
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
    /// Start of the run, Unix ms.
    pub started_unix_ms: u64,
    /// The whole run (images, boot, fill, migration, check), ms.
    pub wall_ms: u64,
}

impl StorageRun {
    fn new(scenario: Scenario, repeat: u32, seq: usize) -> Self {
        StorageRun {
            scenario,
            repeat,
            seq,
            run: MigrationRecord::default(),
            disk_bytes: None,
            memory_bytes: None,
            memory_ok: None,
            disk_ok: None,
            disk_blocks_checked: None,
            disk_bad_blocks: None,
            images_ms: 0,
            ready_ms: None,
            fill_ms: None,
            fill_mbps: None,
            guest_disk_write_mbps: None,
            guest_mem_write_mbps: None,
            image_allocated_bytes: None,
            guest_errors: Vec::new(),
            started_unix_ms: unix_ms(),
            wall_ms: 0,
        }
    }

    fn completed(&self) -> bool {
        self.run.completed()
    }

    fn checks_passed(&self) -> bool {
        self.memory_ok == Some(true) && self.disk_ok == Some(true)
    }

    /// One line for the progress display.
    fn outcome_line(&self) -> String {
        if let Some(f) = self.run.failure() {
            return f;
        }
        let f = |v: Option<u64>| v.map(|v| v as f64);
        format!(
            "completed: total {}, downtime {}, disk {}, memory {}, memory check {}, disk check {}",
            fmt_total(f(self.run.total_time_ms)),
            fmt_downtime(f(self.run.downtime_ms), false),
            fmt_sent(f(self.disk_bytes)),
            fmt_sent(f(self.memory_bytes)),
            check_word(self.memory_ok),
            check_word(self.disk_ok),
        )
    }

    /// Takes what the shared record leaves out of Pacer's result: bytes per kind
    /// and the memory's and the disk's checks apart.
    fn fill_storage(&mut self, r: &MigrationResult) {
        if !self.completed() {
            return;
        }
        self.disk_bytes = Some(r.disk_bytes);
        self.memory_bytes = Some(r.memory_bytes);
        if let Some(i) = &r.integrity {
            // `ok` covers both; the memory's own verdict is "no error ever".
            self.memory_ok = Some(i.errors_total == 0 && i.bad_pages == 0);
            self.disk_ok = Some(i.disk_ok);
            self.disk_blocks_checked = Some(i.disk_blocks_checked);
            self.disk_bad_blocks = Some(i.disk_bad_blocks);
        }
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
    let row = Row::of(runs, |r| r.scenario == scenario, |r| &r.run);
    StorageSummary {
        scenario,
        runs: row.all.len(),
        completed: row.done.len(),
        total_time_ms: row.median(|r| r.run.total_time_ms),
        downtime_ms: row.median(|r| r.run.downtime_ms),
        disk_bytes: row.median(|r| r.disk_bytes),
        memory_bytes: row.median(|r| r.memory_bytes),
        disk_verified_bytes: row.median(|r| r.disk_blocks_checked.map(|b| b * VERIFY_BLOCK)),
        image_allocated_bytes: row.median(|r| r.image_allocated_bytes),
        memory_checks_ok: row.count(|r| r.memory_ok, true),
        memory_checks_failed: row.count(|r| r.memory_ok, false),
        disk_checks_ok: row.count(|r| r.disk_ok, true),
        disk_checks_failed: row.count(|r| r.disk_ok, false),
        reasons: row
            .all
            .iter()
            .filter(|r| !r.completed() || r.run.reason.is_some())
            .map(|r| format!("run {}: {}: {}", r.repeat, r.run.status, r.run.why()))
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
    push_list(&mut out, "failed runs and notes", &failures);
    out
}

/// The order of the runs: repeats outermost, then scenarios in table order.
pub fn plan(scenarios: &[Scenario], repeats: u32) -> Vec<(u32, Scenario)> {
    (1..=repeats)
        .flat_map(|r| scenarios.iter().map(move |&s| (r, s)))
        .collect()
}

/// Runs `pacer-lab bench storage`.
pub async fn run(opts: &StorageOpts) -> Result<i32> {
    let scenarios = scenarios_of(opts)?;
    prepare_out(&opts.out)?;
    tool_present("qemu-img").await?;
    if scenarios.contains(&Scenario::Incremental) {
        tool_present("qemu-io").await?;
    }
    let mut bed = LiveBed::up_shaped(BED, &opts.rate)?;
    bed.check_room(space_needed(&scenarios, opts.disk_size))
        .await?;
    let stop = stop_on_ctrl_c();
    let order = plan(&scenarios, opts.runs);
    let mut runs: Vec<StorageRun> = Vec::new();
    for (i, &(repeat, scenario)) in order.iter().enumerate() {
        if *stop.borrow() {
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
        one_run(&mut bed, opts, &name, &mut rec, &mut files, &stop).await;
        rec.run.mark_interrupted(&stop);
        bed.cleanup(&name, &files).await;
        rec.wall_ms = t.elapsed().as_millis() as u64;
        eprintln!("{tag}: {}", rec.outcome_line());
        runs.push(rec);
        save(opts, &scenarios, &bed, &runs)?;
    }
    bed.close("benchmark");

    print!("{}", render_table(&scenarios, &runs, opts));
    println!("\nall runs: {}", opts.out.display());
    let all_ok =
        runs.len() == order.len() && runs.iter().all(|r| r.completed() && r.checks_passed());
    Ok(if all_ok { 0 } else { 1 })
}

fn save(
    opts: &StorageOpts,
    scenarios: &[Scenario],
    bed: &LiveBed,
    runs: &[StorageRun],
) -> Result<()> {
    let summaries: Vec<StorageSummary> = scenarios.iter().map(|&s| summarize(s, runs)).collect();
    let config = json!({
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
    });
    write_results(
        &opts.out,
        "storage",
        bed,
        config,
        json!({"runs": runs, "summary": summaries}),
    )
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

/// The incremental scenario's base: a qcow2 image full of data that both hosts
/// have (pushed to `files` before it is written).
async fn make_base(
    bed: &LiveBed,
    opts: &StorageOpts,
    name: &str,
    files: &mut Vec<PathBuf>,
) -> Result<PathBuf> {
    let base = bed.image_dir.join(format!("{name}-base.qcow2"));
    files.push(base.clone());
    qemu_tool("qemu-img", &qcow2_create_args(&base, opts.disk_size, None)).await?;
    qemu_tool("qemu-io", &base_fill_args(&base, opts.disk_size)).await?;
    Ok(base)
}

/// One run: images, VM, steady state, migration. Leaves the cleanup to the caller.
async fn one_run(
    bed: &mut LiveBed,
    opts: &StorageOpts,
    name: &str,
    rec: &mut StorageRun,
    files: &mut Vec<PathBuf>,
    stop: &watch::Receiver<bool>,
) {
    let scenario = rec.scenario;
    let mut guest = GuestPlan::memory(name, opts.memory, WSS_MIB, opts.write_rate)
        .with_disk_workload(opts.disk_size, scenario.disk_workload(opts));
    let t = Instant::now();
    if scenario == Scenario::Incremental {
        match make_base(bed, opts, name, files).await {
            Ok(base) => guest = guest.over(&base),
            Err(e) => {
                rec.run.reason = Some(format!("cannot make the images: {e:#}"));
                return;
            }
        }
    }
    let base_ms = t.elapsed().as_millis() as u64;
    if *stop.borrow() {
        return;
    }
    eprintln!(
        "  starting a {} guest on h1",
        format_bytes(opts.memory << 20)
    );
    let started = match start_guest(bed, &guest, files, stop).await {
        Ok(s) => s,
        Err(e) => {
            rec.run.reason = Some(format!("{e:#}"));
            return;
        }
    };
    rec.images_ms = base_ms + started.images_ms;
    rec.ready_ms = Some(started.ready_ms);
    rec.fill_ms = started.ready.fill_ms;
    rec.fill_mbps = started.ready.fill_mbps;
    rec.guest_errors = started.ready.errors.clone();
    eprintln!("  letting it run {} s", SETTLE.as_secs());
    tokio::time::sleep(SETTLE).await;
    if *stop.borrow() {
        return;
    }
    (rec.guest_mem_write_mbps, rec.guest_disk_write_mbps) = guest_rates(&bed.hosts, name).await;
    if let Some(disk) = &started.disk {
        rec.image_allocated_bytes = allocated_bytes(disk).await;
    }
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
    // The CLI's defaults: unlimited bandwidth, 300 ms downtime limit, guest check on.
    let mut req = match bed.peer("h2") {
        Ok(p) => MigrateRequest::new(p, Strategy::PreCopy),
        Err(e) => {
            rec.run.reason = Some(format!("{e:#}"));
            return;
        }
    };
    req.copy_storage = scenario.copy_storage();
    let limit = migration_limit(
        MIGRATION_TIMEOUT_BASE,
        opts.memory,
        opts.disk_size,
        bed.rate_bps,
    );
    let f = follow_migration(bed, name, &req, limit, stop, |_, _| {}).await;
    rec.run.take(&f);
    if let Some(r) = &f.result {
        rec.fill_storage(r);
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
        r.run.status = "completed".into();
        r.run.total_time_ms = Some(total);
        r.run.downtime_ms = Some(150);
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
        assert_eq!(
            (b.rate_mbps, b.fill, b.bs_kib),
            (10.0, true, DISK_BLOCK_KIB)
        );
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
    fn image_commands() {
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
        rec.run.fill(&r);
        rec.fill_storage(&r);
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
        bad.run.status = "failed".into();
        bad.run.reason = Some("disk mirror failed: boom".into());
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
