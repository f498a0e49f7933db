//! `pacer bench baseline` answers "does Pacer add anything to a migration?": on one
//! test bed it migrates the same guest with every strategy twice over, once through
//! Pacer (agents, HTTP API, job monitor) and once as a plain QEMU-to-QEMU migration
//! driven by a minimal Python script (`bench/plain_migrate.py`, built into this
//! binary), and prints a table of total time, downtime and bytes sent, with the
//! pacer/plain ratios per strategy.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use pacer_api::{AccelChoice, JobStatus, MigrationResult, Strategy, Workload};
use pacer_model::format_bytes;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::{
    check_cell, check_word, fmt_downtime, fmt_sent, fmt_total, median, note, parse_link_rate,
    parse_runs, parse_write_rate, prepare_out, status_cell, stop_on_ctrl_c, unix_ms, write_json,
    KERNEL_RESERVE_MIB,
};
use crate::demo::{wait_guest_ready, BedGuard};
use pacer_cli::hosts::Hosts;
use pacer_cli::{migrate, vm};

/// The plain-migration script, as shipped in `bench/plain_migrate.py`.
const PLAIN_SCRIPT: &str = include_str!("../../../../bench/plain_migrate.py");
/// Working set of the guest's memory writer.
const WSS_MIB: u64 = 512;
/// Longest wait for a guest to boot and report.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest migration before the run is given up.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(600);
/// A post-copy downtime at or above this is QEMU's accounting artefact, see
/// [`postcopy_downtime_artefact`].
const ARTEFACT_MIN_MS: u64 = 500;
/// Every strategy, in table order.
const ALL_STRATEGIES: [Strategy; 4] = [
    Strategy::PreCopy,
    Strategy::PostCopy,
    Strategy::Hybrid,
    Strategy::StopAndCopy,
];

/// Options of `pacer bench baseline`.
#[derive(Debug, Clone, clap::Args)]
pub struct BaselineOpts {
    /// Runs of every strategy with each driver; the table shows medians.
    #[arg(long, default_value_t = 1, value_parser = parse_runs)]
    pub runs: u32,
    /// Where to write every run's result as JSON (its directory is created).
    #[arg(long, default_value = "bench-results/baseline.json")]
    pub out: PathBuf,
    /// Strategies to run, comma-separated: pre-copy, post-copy, hybrid, stop-and-copy.
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = parse_strategy,
        default_value = "pre-copy,post-copy,hybrid,stop-and-copy"
    )]
    pub strategies: Vec<Strategy>,
    /// Link rate between the two test hosts, tc style (e.g. 1gbit, 200mbit).
    #[arg(long, default_value = "1gbit", value_parser = parse_link_rate)]
    pub rate: String,
    /// Guest memory (the guest writes a 512 MiB working set).
    #[arg(long, default_value = "1G", value_parser = parse_memory_mib)]
    pub memory: u64,
    /// Guest memory write rate, uniform over the working set, e.g. 60MB/s (0 = idle).
    #[arg(long, default_value = "60MB/s", value_parser = parse_write_rate)]
    pub write_rate: f64,
    /// Use this copy of plain_migrate.py instead of the one built into pacer.
    #[arg(long)]
    pub script: Option<PathBuf>,
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    match s.trim() {
        "pre-copy" | "precopy" => Ok(Strategy::PreCopy),
        "post-copy" | "postcopy" => Ok(Strategy::PostCopy),
        "hybrid" => Ok(Strategy::Hybrid),
        "stop-and-copy" | "stop-copy" => Ok(Strategy::StopAndCopy),
        "" => {
            Err("empty strategy name: give a comma-separated list such as pre-copy,hybrid".into())
        }
        other => Err(format!(
            "unknown strategy {other:?}: use pre-copy, post-copy, hybrid or stop-and-copy"
        )),
    }
}

fn parse_memory_mib(s: &str) -> Result<u64, String> {
    let b = pacer_model::parse_nonzero_size(s).map_err(|e| e.to_string())?;
    let mib = b >> 20;
    let min = WSS_MIB + KERNEL_RESERVE_MIB;
    if mib < min {
        return Err(format!(
            "{s:?} is too small: the guest writes a {WSS_MIB} MiB working set and its kernel \
             needs {KERNEL_RESERVE_MIB} MiB more, give at least {min}M (e.g. 1G)"
        ));
    }
    if mib > 64 * 1024 {
        return Err(format!("{s:?} is more than this benchmark's 64G limit"));
    }
    Ok(mib)
}

/// Who drives the migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// Through the Pacer agents and API.
    Pacer,
    /// QEMU-to-QEMU by `plain_migrate.py`.
    Plain,
}

impl Driver {
    fn as_str(self) -> &'static str {
        match self {
            Driver::Pacer => "pacer",
            Driver::Plain => "plain",
        }
    }
}

/// One migration of the benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Strategy.
    pub strategy: Strategy,
    /// Driver.
    pub driver: Driver,
    /// Which repetition (1-based).
    pub repeat: u32,
    /// Position in the order runs were made (1-based).
    pub seq: usize,
    /// `completed`, `failed`, `cancelled` or `error` (the run could not be made).
    pub status: String,
    /// Driver's total time: Pacer's from its request, plain's from `migrate`, to the
    /// guest running at the destination.
    pub total_time_ms: Option<u64>,
    /// Downtime as QEMU reported it (stop-and-copy: from `stop` to resume).
    pub downtime_ms: Option<u64>,
    /// True if `downtime_ms` is QEMU's post-copy accounting artefact (real: < 1 ms).
    pub downtime_artefact: bool,
    /// RAM bytes QEMU sent.
    pub bytes_transferred: Option<u64>,
    /// QEMU's own migration time.
    pub qemu_total_time_ms: Option<u64>,
    /// Bytes sent in post-copy.
    pub postcopy_bytes: Option<u64>,
    /// Guest memory check after the migration.
    pub integrity_ok: Option<bool>,
    /// Why it failed.
    pub reason: Option<String>,
    /// Start of the run, Unix ms.
    pub started_unix_ms: u64,
    /// The whole run (boot, migration, check), ms.
    pub wall_ms: u64,
    /// The driver's own result: Pacer's MigrationResult or the script's JSON line.
    pub detail: Value,
}

impl RunRecord {
    fn new(strategy: Strategy, driver: Driver, repeat: u32, seq: usize) -> Self {
        RunRecord {
            strategy,
            driver,
            repeat,
            seq,
            status: "error".into(),
            total_time_ms: None,
            downtime_ms: None,
            downtime_artefact: false,
            bytes_transferred: None,
            qemu_total_time_ms: None,
            postcopy_bytes: None,
            integrity_ok: None,
            reason: None,
            started_unix_ms: unix_ms(),
            wall_ms: 0,
            detail: Value::Null,
        }
    }

    fn completed(&self) -> bool {
        self.status == "completed"
    }

    /// Downtime to report: the artefact is replaced by 0 (QEMU measured < 1 ms).
    fn effective_downtime_ms(&self) -> Option<u64> {
        if self.downtime_artefact {
            Some(0)
        } else {
            self.downtime_ms
        }
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
        format!(
            "completed: total {}, downtime {}, sent {}, guest check {}",
            fmt_total(self.total_time_ms.map(|v| v as f64)),
            fmt_downtime(
                self.effective_downtime_ms().map(|v| v as f64),
                self.downtime_artefact
            ),
            fmt_sent(self.bytes_transferred.map(|v| v as f64)),
            check_word(self.integrity_ok),
        )
    }
}

/// QEMU (seen in 10.0) sets the post-copy downtime when the switch ends, but at
/// completion overwrites it with "now - switch start" if it is still 0, i.e. when the
/// switch took under 1 ms: a post-copy migration then reports its whole post-copy
/// phase as downtime. The real switch downtime is a few ms at most here, so a figure
/// of [`ARTEFACT_MIN_MS`] or more after a post-copy phase is that artefact.
pub fn postcopy_downtime_artefact(downtime_ms: Option<u64>, postcopy_bytes: Option<u64>) -> bool {
    postcopy_bytes.unwrap_or(0) > 0 && downtime_ms.is_some_and(|d| d >= ARTEFACT_MIN_MS)
}

/// Medians of one (strategy, driver) pair over its completed runs.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Strategy.
    pub strategy: Strategy,
    /// Driver.
    pub driver: Driver,
    /// Runs made.
    pub runs: usize,
    /// Runs that completed.
    pub completed: usize,
    /// Median total time, ms.
    pub total_time_ms: Option<f64>,
    /// Median downtime, ms (artefacts counted as 0).
    pub downtime_ms: Option<f64>,
    /// Some run's QEMU downtime was the post-copy artefact.
    pub downtime_artefact: bool,
    /// Median bytes sent.
    pub bytes_transferred: Option<f64>,
    /// Completed runs whose guest memory check passed.
    pub checks_ok: usize,
    /// Completed runs whose guest memory check failed.
    pub checks_failed: usize,
    /// Why runs failed.
    pub reasons: Vec<String>,
}

/// Summarises the runs of one pair.
pub fn summarize(strategy: Strategy, driver: Driver, runs: &[RunRecord]) -> Summary {
    let mine: Vec<&RunRecord> = runs
        .iter()
        .filter(|r| r.strategy == strategy && r.driver == driver)
        .collect();
    let done: Vec<&&RunRecord> = mine.iter().filter(|r| r.completed()).collect();
    let med = |f: &dyn Fn(&RunRecord) -> Option<u64>| {
        median(
            &done
                .iter()
                .filter_map(|r| f(r))
                .map(|v| v as f64)
                .collect::<Vec<_>>(),
        )
    };
    Summary {
        strategy,
        driver,
        runs: mine.len(),
        completed: done.len(),
        total_time_ms: med(&|r| r.total_time_ms),
        downtime_ms: med(&|r| r.effective_downtime_ms()),
        downtime_artefact: done.iter().any(|r| r.downtime_artefact),
        bytes_transferred: med(&|r| r.bytes_transferred),
        checks_ok: done.iter().filter(|r| r.integrity_ok == Some(true)).count(),
        checks_failed: done
            .iter()
            .filter(|r| r.integrity_ok == Some(false))
            .count(),
        reasons: mine
            .iter()
            .filter(|r| !r.completed())
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

impl Summary {
    fn check(&self) -> String {
        check_cell(self.checks_ok, self.checks_failed, self.completed)
    }

    fn status(&self) -> String {
        status_cell(self.runs, self.completed)
    }
}

/// pacer/plain ratios of one strategy.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// Strategy.
    pub strategy: Strategy,
    /// Median total time, pacer / plain.
    pub total_time: Option<f64>,
    /// Median bytes sent, pacer / plain.
    pub bytes: Option<f64>,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// The pacer/plain ratios of every strategy.
pub fn ratios(strategies: &[Strategy], summaries: &[Summary]) -> Vec<Ratio> {
    let find = |s: Strategy, d: Driver| summaries.iter().find(|x| x.strategy == s && x.driver == d);
    strategies
        .iter()
        .map(|&s| {
            let (p, q) = (find(s, Driver::Pacer), find(s, Driver::Plain));
            Ratio {
                strategy: s,
                total_time: ratio(
                    p.and_then(|p| p.total_time_ms),
                    q.and_then(|q| q.total_time_ms),
                ),
                bytes: ratio(
                    p.and_then(|p| p.bytes_transferred),
                    q.and_then(|q| q.bytes_transferred),
                ),
            }
        })
        .collect()
}

/// The table printed at the end: one row per (strategy, driver), then the ratios
/// and notes.
pub fn render_table(strategies: &[Strategy], runs: &[RunRecord], repeats: u32) -> String {
    let mut out = String::new();
    let median_note = if repeats > 1 {
        format!(" (medians of {repeats} runs)")
    } else {
        String::new()
    };
    out.push_str(&format!(
        "{:<16}{:<8}{:<11}{:<11}{:<12}{:<13}{}{median_note}\n",
        "strategy", "driver", "total", "downtime", "sent", "guest check", "status"
    ));
    let mut summaries = Vec::new();
    for &s in strategies {
        for d in [Driver::Pacer, Driver::Plain] {
            let m = summarize(s, d, runs);
            out.push_str(&format!(
                "{:<16}{:<8}{:<11}{:<11}{:<12}{:<13}{}\n",
                s.as_str(),
                d.as_str(),
                fmt_total(m.total_time_ms),
                fmt_downtime(m.downtime_ms, m.downtime_artefact),
                fmt_sent(m.bytes_transferred),
                m.check(),
                m.status()
            ));
            summaries.push(m);
        }
    }
    out.push_str(&format!(
        "\n{:<16}{:<8}{:<11}{:<11}\n",
        "pacer/plain", "", "total", "sent"
    ));
    let f = |r: Option<f64>| r.map(|r| format!("{r:.3}")).unwrap_or_else(|| "-".into());
    for r in ratios(strategies, &summaries) {
        out.push_str(&format!(
            "{:<16}{:<8}{:<11}{:<11}\n",
            r.strategy.as_str(),
            "",
            f(r.total_time),
            f(r.bytes)
        ));
    }
    if summaries.iter().any(|m| m.downtime_artefact) {
        out.push_str(
            "\n* QEMU reported the whole post-copy phase as downtime: it keeps the switch's \
             downtime only if it is at least 1 ms, so the real downtime was < 1 ms \
             (counted as 0).\n",
        );
    }
    let failures: Vec<String> = summaries
        .iter()
        .flat_map(|m| {
            m.reasons
                .iter()
                .map(move |r| format!("  {} {} {r}", m.strategy.as_str(), m.driver.as_str()))
        })
        .collect();
    if !failures.is_empty() {
        out.push_str("\nfailed runs:\n");
        for f in failures {
            out.push_str(&f);
            out.push('\n');
        }
    }
    out
}

/// The order of the runs: repeats outermost, then strategies; within a strategy the
/// drivers alternate, and which goes first flips with every repeat.
pub fn plan(strategies: &[Strategy], repeats: u32) -> Vec<(u32, Strategy, Driver)> {
    let mut v = Vec::new();
    for r in 1..=repeats {
        for &s in strategies {
            let pair = if r % 2 == 1 {
                [Driver::Pacer, Driver::Plain]
            } else {
                [Driver::Plain, Driver::Pacer]
            };
            for d in pair {
                v.push((r, s, d));
            }
        }
    }
    v
}

/// What every run of the baseline shares.
struct Setup {
    hosts: Hosts,
    kernel: String,
    initrd: String,
    kernel_version: String,
    src_netns: Option<String>,
    dst_netns: Option<String>,
    dst_ip: String,
    qemu: String,
    /// The accelerator Pacer's agent chose (learnt from the first Pacer run).
    accel: Option<String>,
}

fn strategies_of(opts: &BaselineOpts) -> Result<Vec<Strategy>> {
    if opts.strategies.is_empty() {
        bail!("--strategies is empty: give a comma-separated list such as pre-copy,hybrid");
    }
    // Table order, no duplicates.
    Ok(ALL_STRATEGIES
        .iter()
        .copied()
        .filter(|s| opts.strategies.contains(s))
        .collect())
}

/// Runs `pacer bench baseline`.
pub async fn run(opts: &BaselineOpts) -> Result<i32> {
    let strategies = strategies_of(opts)?;
    prepare_out(&opts.out)?;
    if let Some(s) = &opts.script {
        if !s.is_file() {
            bail!("--script {}: no such file", s.display());
        }
    }
    let py = tokio::process::Command::new("python3")
        .arg("--version")
        .output()
        .await;
    if !py.is_ok_and(|o| o.status.success()) {
        bail!("python3 is needed for the plain QEMU-to-QEMU runs and was not found on PATH");
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
    let guard = BedGuard::up("bench", 2, &opts.rate, false)?;
    let (h1, h2) = (&guard.bed.hosts[0], &guard.bed.hosts[1]);
    let mut setup = Setup {
        hosts: guard.hosts()?,
        kernel: img.kernel.display().to_string(),
        initrd: img.initrd.display().to_string(),
        kernel_version: img.kernel_version.clone(),
        src_netns: h1.netns.clone(),
        dst_netns: h2.netns.clone(),
        dst_ip: h2.data_ip.to_string(),
        qemu: std::env::var("PACER_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into()),
        accel: None,
    };

    let stop_rx = stop_on_ctrl_c();

    let order = plan(&strategies, opts.runs);
    let started = unix_ms();
    let mut runs: Vec<RunRecord> = Vec::new();
    for (i, &(repeat, strategy, driver)) in order.iter().enumerate() {
        if *stop_rx.borrow() {
            break;
        }
        let tag = format!(
            "[{}/{}] {} via {} (run {repeat} of {})",
            i + 1,
            order.len(),
            strategy.as_str(),
            driver.as_str(),
            opts.runs
        );
        eprintln!(
            "{tag}: starting a {} guest on h1",
            format_bytes(opts.memory << 20)
        );
        let mut rec = RunRecord::new(strategy, driver, repeat, i + 1);
        let t = Instant::now();
        match driver {
            Driver::Pacer => {
                let name = format!("bench-{}", i + 1);
                let mut stop = stop_rx.clone();
                tokio::select! {
                    _ = pacer_run(&mut setup, opts, &name, &mut rec) => {}
                    _ = stop.wait_for(|s| *s) => {
                        rec.status = "cancelled".into();
                        rec.reason = Some("interrupted".into());
                    }
                }
                let _ = vm::stop(&setup.hosts, &name, None).await;
            }
            Driver::Plain => plain_run(&setup, opts, &mut rec, stop_rx.clone()).await,
        }
        rec.wall_ms = t.elapsed().as_millis() as u64;
        eprintln!("{tag}: {}", rec.outcome_line());
        runs.push(rec);
        write_results(opts, &strategies, &setup, &runs, started)?;
    }
    drop(guard);
    eprintln!(
        "test bed removed (benchmark took {:.0} s)\n",
        t0.elapsed().as_secs_f64()
    );

    print!("{}", render_table(&strategies, &runs, opts.runs));
    println!("\nall runs: {}", opts.out.display());
    let all_ok = runs.len() == order.len()
        && runs
            .iter()
            .all(|r| r.completed() && r.integrity_ok == Some(true));
    Ok(if all_ok { 0 } else { 1 })
}

fn write_results(
    opts: &BaselineOpts,
    strategies: &[Strategy],
    setup: &Setup,
    runs: &[RunRecord],
    started: u64,
) -> Result<()> {
    let summaries: Vec<Summary> = strategies
        .iter()
        .flat_map(|&s| [Driver::Pacer, Driver::Plain].map(|d| summarize(s, d, runs)))
        .collect();
    let doc = json!({
        "benchmark": "baseline",
        "pacer_version": env!("CARGO_PKG_VERSION"),
        "started_unix_ms": started,
        "updated_unix_ms": unix_ms(),
        "config": {
            "runs": opts.runs,
            "strategies": strategies,
            "link_rate": opts.rate,
            "memory_mib": opts.memory,
            "wss_mib": WSS_MIB,
            "write_rate_mbps": opts.write_rate,
            "write_pattern": "uniform",
            "qemu": setup.qemu,
            "accel": setup.accel,
            "kernel_version": setup.kernel_version,
        },
        "runs": runs,
        "summary": summaries,
        "ratios_pacer_over_plain": ratios(strategies, &summaries),
    });
    write_json(&opts.out, &doc)
}

fn workload(opts: &BaselineOpts) -> Workload {
    Workload {
        kind: "memwrite".into(),
        wss_mib: WSS_MIB,
        rate_mbps: opts.write_rate,
        hot_fraction: 0.0,
        hot_share: 0.0,
        disk: None,
    }
}

/// One migration through Pacer: start the guest on h1, wait for it, migrate to h2.
async fn pacer_run(setup: &mut Setup, opts: &BaselineOpts, name: &str, rec: &mut RunRecord) {
    let w = workload(opts);
    let start = vm::StartOpts {
        memory: opts.memory,
        vcpus: 1,
        kernel: Some(setup.kernel.clone()),
        initrd: Some(setup.initrd.clone()),
        append: None,
        workload: w.kind.clone(),
        wss: w.wss_mib,
        write_rate: w.rate_mbps,
        hot_fraction: w.hot_fraction,
        hot_share: w.hot_share,
        accel: AccelChoice::Auto,
        ..vm::StartOpts::new(name, "h1")
    };
    let info = match vm::start(&setup.hosts, &start).await {
        Ok(i) => i,
        Err(e) => {
            rec.reason = Some(format!("cannot start the guest: {e:#}"));
            return;
        }
    };
    setup.accel.get_or_insert(info.accel.clone());
    let t = Instant::now();
    if let Err(e) = wait_guest_ready(&setup.hosts, name, "h1", READY_TIMEOUT).await {
        rec.reason = Some(format!("{e:#}"));
        return;
    }
    eprintln!(
        "  guest ready after {:.1} s; migrating ({})",
        t.elapsed().as_secs_f64(),
        rec.strategy.as_str()
    );
    // The CLI's defaults: unlimited bandwidth, 300 ms downtime limit, post-copy at
    // once, guest memory check on.
    let mopts = migrate::MigrateOpts::new("h2", rec.strategy);
    let r = tokio::time::timeout(
        MIGRATION_TIMEOUT,
        migrate::migrate(&setup.hosts, name, Some("h1"), &mopts, false),
    )
    .await;
    match r {
        Err(_) => {
            rec.status = "failed".into();
            rec.reason = Some(format!("not done after {} s", MIGRATION_TIMEOUT.as_secs()));
        }
        Ok(Err(e)) => rec.reason = Some(format!("{e:#}")),
        Ok(Ok(r)) => fill_from_pacer(rec, &r),
    }
}

fn fill_from_pacer(rec: &mut RunRecord, r: &MigrationResult) {
    rec.status = match r.status {
        JobStatus::Completed => "completed",
        JobStatus::Cancelled => "cancelled",
        _ => "failed",
    }
    .into();
    rec.reason = r.reason.clone();
    if r.status == JobStatus::Completed {
        rec.total_time_ms = Some(r.total_time_ms);
        rec.downtime_ms = r.downtime_ms;
        rec.bytes_transferred = Some(r.bytes_transferred);
        rec.qemu_total_time_ms = r.qemu_total_time_ms;
        rec.postcopy_bytes = Some(r.postcopy_bytes);
        rec.downtime_artefact = postcopy_downtime_artefact(r.downtime_ms, Some(r.postcopy_bytes));
        rec.integrity_ok = r.integrity.as_ref().map(|i| i.ok);
        if rec.integrity_ok.is_none() {
            rec.reason = Some("the guest memory check did not run".into());
        }
    }
    rec.detail = serde_json::to_value(r).unwrap_or(Value::Null);
}

/// One plain QEMU-to-QEMU migration by the script.
async fn plain_run(
    setup: &Setup,
    opts: &BaselineOpts,
    rec: &mut RunRecord,
    mut stop: watch::Receiver<bool>,
) {
    let mut append = String::from("console=ttyS0 panic=-1 ");
    append.push_str(&workload(opts).kernel_args());
    let mut cmd = tokio::process::Command::new("python3");
    match &opts.script {
        Some(p) => cmd.arg(p),
        None => cmd.arg("-"),
    };
    cmd.args(["--qemu", &setup.qemu])
        .args(["--accel", setup.accel.as_deref().unwrap_or("tcg")])
        .args([
            "--kernel",
            &setup.kernel,
            "--initrd",
            &setup.initrd,
            "--append",
            &append,
        ])
        .args(["--memory", &opts.memory.to_string()])
        .args([
            "--dst-ip",
            &setup.dst_ip,
            "--strategy",
            rec.strategy.as_str(),
        ])
        .args(["--ready-timeout", &READY_TIMEOUT.as_secs().to_string()])
        .args(["--timeout", &MIGRATION_TIMEOUT.as_secs().to_string()]);
    if let Some(ns) = &setup.src_netns {
        cmd.args(["--src-netns", ns]);
    }
    if let Some(ns) = &setup.dst_netns {
        cmd.args(["--dst-netns", ns]);
    }
    cmd.stdin(if opts.script.is_some() {
        Stdio::null()
    } else {
        Stdio::piped()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            rec.reason = Some(format!("cannot run python3: {e}"));
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // `python3 -` reads the whole program before running it.
        if let Err(e) = stdin.write_all(PLAIN_SCRIPT.as_bytes()).await {
            rec.reason = Some(format!("cannot hand the script to python3: {e}"));
        }
        drop(stdin);
    }
    let pid = child.id();
    let out = child.wait_with_output();
    tokio::pin!(out);
    let out = tokio::select! {
        o = &mut out => o,
        _ = stop.wait_for(|s| *s) => {
            // The script cleans up its QEMUs on SIGTERM, then reports.
            if let Some(pid) = pid {
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
            out.await
        }
    };
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            rec.reason = Some(format!("python3 failed: {e}"));
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(v) = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
    else {
        rec.reason = Some(format!(
            "plain_migrate.py printed no result ({}); stdout: {}",
            out.status,
            stdout.trim()
        ));
        return;
    };
    fill_from_plain(rec, v);
}

fn fill_from_plain(rec: &mut RunRecord, v: Value) {
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    let err = v.get("error").and_then(Value::as_str).map(String::from);
    let completed = v.get("status").and_then(Value::as_str) == Some("completed");
    rec.status = if completed {
        "completed".into()
    } else if err.as_deref() == Some("interrupted") {
        "cancelled".into()
    } else {
        "failed".into()
    };
    rec.reason = err;
    if completed {
        rec.total_time_ms = n("total_time_ms");
        rec.downtime_ms = n("downtime_ms");
        rec.bytes_transferred = n("bytes_transferred");
        rec.qemu_total_time_ms = n("qemu_total_time_ms");
        rec.postcopy_bytes = n("postcopy_bytes");
        rec.downtime_artefact = postcopy_downtime_artefact(rec.downtime_ms, rec.postcopy_bytes);
        rec.integrity_ok = v
            .get("integrity")
            .and_then(|i| i.get("ok"))
            .and_then(Value::as_bool);
    }
    rec.detail = v;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        strategy: Strategy,
        driver: Driver,
        repeat: u32,
        total: u64,
        down: u64,
        sent: u64,
    ) -> RunRecord {
        let mut r = RunRecord::new(strategy, driver, repeat, 0);
        r.status = "completed".into();
        r.total_time_ms = Some(total);
        r.downtime_ms = Some(down);
        r.bytes_transferred = Some(sent);
        r.integrity_ok = Some(true);
        r
    }

    #[test]
    fn plan_alternates_drivers() {
        let p = plan(&[Strategy::PreCopy, Strategy::Hybrid], 2);
        let d: Vec<Driver> = p.iter().map(|x| x.2).collect();
        use Driver::*;
        assert_eq!(d, [Pacer, Plain, Pacer, Plain, Plain, Pacer, Plain, Pacer]);
        assert_eq!(p[4], (2, Strategy::PreCopy, Plain));
    }

    #[test]
    fn table_rows_medians_ratios_and_failures() {
        let mib = 1u64 << 20;
        let mut runs = vec![
            rec(Strategy::PreCopy, Driver::Pacer, 1, 8850, 278, 998 * mib),
            rec(Strategy::PreCopy, Driver::Pacer, 2, 9150, 300, 1002 * mib),
            rec(Strategy::PreCopy, Driver::Pacer, 3, 9000, 290, 1000 * mib),
            rec(Strategy::PreCopy, Driver::Plain, 1, 9000, 280, 1000 * mib),
        ];
        let mut bad = RunRecord::new(Strategy::PostCopy, Driver::Plain, 1, 0);
        bad.status = "failed".into();
        bad.reason = Some("migration failed: boom".into());
        runs.push(bad);
        let mut pc = rec(Strategy::PostCopy, Driver::Pacer, 1, 5654, 5294, 600 * mib);
        pc.postcopy_bytes = Some(500 * mib);
        pc.downtime_artefact = postcopy_downtime_artefact(pc.downtime_ms, pc.postcopy_bytes);
        runs.push(pc);
        let t = render_table(&[Strategy::PreCopy, Strategy::PostCopy], &runs, 3);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with(
                "strategy        driver  total      downtime   sent        guest check  status"
            ),
            "{t}"
        );
        assert!(lines[0].ends_with("(medians of 3 runs)"));
        assert_eq!(
            lines[1],
            "pre-copy        pacer   9.00 s     290 ms     1000.0 MiB  ok           completed"
        );
        assert_eq!(
            lines[2],
            "pre-copy        plain   9.00 s     280 ms     1000.0 MiB  ok           completed"
        );
        assert!(
            lines[3].starts_with("post-copy       pacer   5.65 s     <1 ms*"),
            "{t}"
        );
        assert_eq!(
            lines[4],
            "post-copy       plain   -          -          -           n/a          FAILED"
        );
        assert!(
            t.contains("pre-copy                1.000      1.000"),
            "{t}"
        );
        assert!(t.contains("post-copy               -          -"), "{t}");
        assert!(
            t.contains("* QEMU reported the whole post-copy phase"),
            "{t}"
        );
        assert!(
            t.contains("post-copy plain run 1: failed: migration failed: boom"),
            "{t}"
        );
    }

    #[test]
    fn check_and_status_words() {
        let mut a = rec(Strategy::Hybrid, Driver::Pacer, 1, 1000, 10, 1);
        a.integrity_ok = Some(false);
        let b = RunRecord::new(Strategy::Hybrid, Driver::Pacer, 2, 0);
        let m = summarize(Strategy::Hybrid, Driver::Pacer, &[a, b]);
        assert_eq!(m.check(), "FAILED 1/1");
        assert_eq!(m.status(), "FAILED 1/2");
    }

    #[test]
    fn artefact_rule() {
        assert!(postcopy_downtime_artefact(Some(5294), Some(1)));
        assert!(!postcopy_downtime_artefact(Some(3), Some(1)));
        // Pre-copy and stop-and-copy send nothing in post-copy: long downtimes are real.
        assert!(!postcopy_downtime_artefact(Some(5294), Some(0)));
        assert!(!postcopy_downtime_artefact(None, Some(1)));
    }

    #[test]
    fn option_parsing() {
        assert_eq!(parse_strategy("postcopy"), Ok(Strategy::PostCopy));
        assert!(parse_strategy("fast")
            .unwrap_err()
            .contains("unknown strategy"));
        assert!(parse_strategy("").is_err());
        assert!(parse_runs("0").is_err());
        assert_eq!(parse_runs("3"), Ok(3));
        assert_eq!(parse_memory_mib("1G"), Ok(1024));
        assert!(parse_memory_mib("512M")
            .unwrap_err()
            .contains("at least 560M"));
        assert_eq!(parse_write_rate("60MB/s"), Ok(60.0));
        assert_eq!(parse_write_rate("0"), Ok(0.0));
        assert!(parse_link_rate("1gbps").is_err());
        assert_eq!(parse_link_rate("1gbit").as_deref(), Ok("1gbit"));
        let opts = BaselineOpts {
            runs: 1,
            out: "x.json".into(),
            strategies: vec![Strategy::StopAndCopy, Strategy::PreCopy, Strategy::PreCopy],
            rate: "1gbit".into(),
            memory: 1024,
            write_rate: 60.0,
            script: None,
        };
        assert_eq!(
            strategies_of(&opts).unwrap(),
            [Strategy::PreCopy, Strategy::StopAndCopy]
        );
    }

    #[test]
    fn plain_result_line() {
        let v: Value = serde_json::from_str(
            r#"{"driver":"plain","strategy":"post-copy","status":"completed","error":null,
                "total_time_ms":5474,"downtime_ms":5294,"bytes_transferred":634012230,
                "qemu_total_time_ms":5296,"postcopy_bytes":600000000,
                "integrity":{"ok":true,"pages_checked":131072}}"#,
        )
        .unwrap();
        let mut r = RunRecord::new(Strategy::PostCopy, Driver::Plain, 1, 1);
        fill_from_plain(&mut r, v);
        assert!(r.completed());
        assert!(r.downtime_artefact);
        assert_eq!(r.effective_downtime_ms(), Some(0));
        assert_eq!(r.integrity_ok, Some(true));
    }

    #[test]
    fn embedded_script_is_the_shipped_one() {
        assert!(PLAIN_SCRIPT.starts_with("#!/usr/bin/env python3"));
        assert!(PLAIN_SCRIPT.contains("migrate-start-postcopy"));
    }
}
