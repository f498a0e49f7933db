//! `pacer-lab bench baseline` answers "does Pacer add anything to a migration?": on one
//! test bed it migrates the same guest with every strategy twice over, once through
//! Pacer (agents, HTTP API, job monitor) and once as a plain QEMU-to-QEMU migration
//! driven by a minimal Python script (`bench/plain_migrate.py`, built into this
//! binary), and prints a table of total time, downtime and bytes sent, with the
//! pacer/plain ratios per strategy.
//!
//! (About 660 lines outside tests: one benchmark, its runs, its Python driver's
//! protocol, its table and its JSON, read together.)

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use pacer_api::{MigrateRequest, Strategy, Workload};
use pacer_model::format_bytes;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::harness::{follow_migration, migration_limit};
use super::record::{status_word, MigrationRecord, Row};
use super::{
    check_cell, check_word, fmt_downtime, fmt_sent, fmt_total, parse_guest_memory, parse_link_rate,
    parse_runs, parse_write_rate, prepare_out, push_list, status_cell, stop_on_ctrl_c, unix_ms,
    write_results,
};
use crate::live::{start_guest, GuestPlan, LiveBed};

/// The plain-migration script, as shipped in `bench/plain_migrate.py`.
const PLAIN_SCRIPT: &str = include_str!("../../../../bench/plain_migrate.py");
/// Test bed name.
const BED: &str = "bench";
/// Working set of the guest's memory writer.
const WSS_MIB: u64 = 512;
/// Longest wait for a guest to boot and report (the plain script's).
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest migration before the run is given up, before the share that grows
/// with the memory to move.
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

/// Options of `pacer-lab bench baseline`.
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
    /// Use this copy of plain_migrate.py instead of the one built into pacer-lab.
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
    parse_guest_memory(s, WSS_MIB, "1G")
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
pub struct BaselineRun {
    /// Strategy.
    pub strategy: Strategy,
    /// Driver.
    pub driver: Driver,
    /// Which repetition (1-based).
    pub repeat: u32,
    /// Position in the order runs were made (1-based).
    pub seq: usize,
    /// How it went. Its total time is the driver's: Pacer's from its request,
    /// plain's from `migrate`, to the guest running at the destination; the
    /// downtime is QEMU's (stop-and-copy: from `stop` to resume); the detail is
    /// Pacer's MigrationResult or the script's JSON line.
    #[serde(flatten)]
    pub run: MigrationRecord,
    /// True if `downtime_ms` is QEMU's post-copy accounting artefact (real: < 1 ms).
    pub downtime_artefact: bool,
    /// Bytes sent in post-copy.
    pub postcopy_bytes: Option<u64>,
    /// Start of the run, Unix ms.
    pub started_unix_ms: u64,
    /// The whole run (boot, migration, check), ms.
    pub wall_ms: u64,
}

impl BaselineRun {
    fn new(strategy: Strategy, driver: Driver, repeat: u32, seq: usize) -> Self {
        BaselineRun {
            strategy,
            driver,
            repeat,
            seq,
            run: MigrationRecord::default(),
            downtime_artefact: false,
            postcopy_bytes: None,
            started_unix_ms: unix_ms(),
            wall_ms: 0,
        }
    }

    fn completed(&self) -> bool {
        self.run.completed()
    }

    /// Downtime to report: the artefact is replaced by 0 (QEMU measured < 1 ms).
    fn effective_downtime_ms(&self) -> Option<u64> {
        if self.downtime_artefact {
            Some(0)
        } else {
            self.run.downtime_ms
        }
    }

    /// The post-copy bytes, and whether the downtime is the artefact.
    fn set_postcopy(&mut self, postcopy_bytes: Option<u64>) {
        self.postcopy_bytes = postcopy_bytes;
        self.downtime_artefact = postcopy_downtime_artefact(self.run.downtime_ms, postcopy_bytes);
    }

    /// One line for the progress display.
    fn outcome_line(&self) -> String {
        if let Some(f) = self.run.failure() {
            return f;
        }
        format!(
            "completed: total {}, downtime {}, sent {}, guest check {}",
            fmt_total(self.run.total_time_ms.map(|v| v as f64)),
            fmt_downtime(
                self.effective_downtime_ms().map(|v| v as f64),
                self.downtime_artefact
            ),
            fmt_sent(self.run.bytes_transferred.map(|v| v as f64)),
            check_word(self.run.integrity_ok),
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
pub fn summarize(strategy: Strategy, driver: Driver, runs: &[BaselineRun]) -> Summary {
    let row = Row::of(
        runs,
        |r| r.strategy == strategy && r.driver == driver,
        |r| &r.run,
    );
    Summary {
        strategy,
        driver,
        runs: row.all.len(),
        completed: row.done.len(),
        total_time_ms: row.median(|r| r.run.total_time_ms),
        downtime_ms: row.median(|r| r.effective_downtime_ms()),
        downtime_artefact: row.done.iter().any(|r| r.downtime_artefact),
        bytes_transferred: row.median(|r| r.run.bytes_transferred),
        checks_ok: row.count(|r| r.run.integrity_ok, true),
        checks_failed: row.count(|r| r.run.integrity_ok, false),
        reasons: row
            .all
            .iter()
            .filter_map(|r| Some(format!("run {}: {}", r.repeat, r.run.failure()?)))
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
pub fn render_table(strategies: &[Strategy], runs: &[BaselineRun], repeats: u32) -> String {
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
    push_list(&mut out, "failed runs", &failures);
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

/// Runs `pacer-lab bench baseline`.
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
    let qemu = std::env::var("PACER_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into());
    let mut bed = LiveBed::up_shaped(BED, &opts.rate)?;
    let stop = stop_on_ctrl_c();
    let order = plan(&strategies, opts.runs);
    let mut runs: Vec<BaselineRun> = Vec::new();
    for (i, &(repeat, strategy, driver)) in order.iter().enumerate() {
        if *stop.borrow() {
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
        let mut rec = BaselineRun::new(strategy, driver, repeat, i + 1);
        let t = Instant::now();
        match driver {
            Driver::Pacer => {
                let name = format!("bench-{}", i + 1);
                pacer_run(&mut bed, opts, &name, &mut rec, &stop).await;
                bed.cleanup(&name, &[]).await;
            }
            Driver::Plain => plain_run(&bed, opts, &qemu, &mut rec, stop.clone()).await,
        }
        rec.run.mark_interrupted(&stop);
        rec.wall_ms = t.elapsed().as_millis() as u64;
        eprintln!("{tag}: {}", rec.outcome_line());
        runs.push(rec);
        save(opts, &strategies, &bed, &qemu, &runs)?;
    }
    bed.close("benchmark");

    print!("{}", render_table(&strategies, &runs, opts.runs));
    println!("\nall runs: {}", opts.out.display());
    let all_ok = runs.len() == order.len()
        && runs
            .iter()
            .all(|r| r.completed() && r.run.integrity_ok == Some(true));
    Ok(if all_ok { 0 } else { 1 })
}

fn save(
    opts: &BaselineOpts,
    strategies: &[Strategy],
    bed: &LiveBed,
    qemu: &str,
    runs: &[BaselineRun],
) -> Result<()> {
    let summaries: Vec<Summary> = strategies
        .iter()
        .flat_map(|&s| [Driver::Pacer, Driver::Plain].map(|d| summarize(s, d, runs)))
        .collect();
    let config = json!({
        "runs": opts.runs,
        "strategies": strategies,
        "link_rate": opts.rate,
        "memory_mib": opts.memory,
        "wss_mib": WSS_MIB,
        "write_rate_mbps": opts.write_rate,
        "write_pattern": "uniform",
        "qemu": qemu,
    });
    let body = json!({
        "runs": runs,
        "summary": summaries,
        "ratios_pacer_over_plain": ratios(strategies, &summaries),
    });
    write_results(&opts.out, "baseline", bed, config, body)
}

/// The guest both drivers run.
fn guest(opts: &BaselineOpts, name: &str) -> GuestPlan {
    GuestPlan::memory(name, opts.memory, WSS_MIB, opts.write_rate)
}

fn workload(opts: &BaselineOpts) -> Workload {
    guest(opts, "").workload
}

/// One migration through Pacer: start the guest on h1, wait for it, migrate to
/// h2 with the CLI's defaults (unlimited bandwidth, 300 ms downtime limit,
/// post-copy at once, guest check on).
async fn pacer_run(
    bed: &mut LiveBed,
    opts: &BaselineOpts,
    name: &str,
    rec: &mut BaselineRun,
    stop: &watch::Receiver<bool>,
) {
    if let Err(e) = start_guest(bed, &guest(opts, name), &mut Vec::new(), stop).await {
        rec.run.reason = Some(format!("{e:#}"));
        return;
    }
    eprintln!("  migrating ({})", rec.strategy.as_str());
    let req = match bed.peer("h2") {
        Ok(p) => MigrateRequest::new(p, rec.strategy),
        Err(e) => {
            rec.run.reason = Some(format!("{e:#}"));
            return;
        }
    };
    let limit = migration_limit(MIGRATION_TIMEOUT, opts.memory, 0, bed.rate_bps);
    let f = follow_migration(bed, name, &req, limit, stop, |_, _| {}).await;
    rec.run.take(&f);
    if let (true, Some(r)) = (rec.completed(), &f.result) {
        rec.set_postcopy(Some(r.postcopy_bytes));
    }
}

/// One plain QEMU-to-QEMU migration by the script, between the bed's hosts.
async fn plain_run(
    bed: &LiveBed,
    opts: &BaselineOpts,
    qemu: &str,
    rec: &mut BaselineRun,
    mut stop: watch::Receiver<bool>,
) {
    let (h1, h2) = (&bed.bed.hosts[0], &bed.bed.hosts[1]);
    let mut append = String::from("console=ttyS0 panic=-1 ");
    append.push_str(&workload(opts).kernel_args());
    let mut cmd = tokio::process::Command::new("python3");
    match &opts.script {
        Some(p) => cmd.arg(p),
        None => cmd.arg("-"),
    };
    cmd.args(["--qemu", qemu])
        .args(["--accel", bed.accel.as_deref().unwrap_or("tcg")])
        .args([
            "--kernel",
            &bed.kernel,
            "--initrd",
            &bed.initrd,
            "--append",
            &append,
        ])
        .args(["--memory", &opts.memory.to_string()])
        .args([
            "--dst-ip",
            &h2.data_ip.to_string(),
            "--strategy",
            rec.strategy.as_str(),
        ])
        .args(["--ready-timeout", &READY_TIMEOUT.as_secs().to_string()])
        .args(["--timeout", &MIGRATION_TIMEOUT.as_secs().to_string()]);
    if let Some(ns) = &h1.netns {
        cmd.args(["--src-netns", ns]);
    }
    if let Some(ns) = &h2.netns {
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
            rec.run.reason = Some(format!("cannot run python3: {e}"));
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // `python3 -` reads the whole program before running it.
        if let Err(e) = stdin.write_all(PLAIN_SCRIPT.as_bytes()).await {
            rec.run.reason = Some(format!("cannot hand the script to python3: {e}"));
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
            rec.run.reason = Some(format!("python3 failed: {e}"));
            return;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(v) = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
    else {
        rec.run.reason = Some(format!(
            "plain_migrate.py printed no result ({}); stdout: {}",
            out.status,
            stdout.trim()
        ));
        return;
    };
    fill_from_plain(rec, v);
}

/// Takes the script's JSON line.
fn fill_from_plain(rec: &mut BaselineRun, v: Value) {
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    let err = v.get("error").and_then(Value::as_str).map(String::from);
    let completed = v.get("status").and_then(Value::as_str) == Some("completed");
    let run = &mut rec.run;
    run.status = if completed {
        status_word(pacer_api::JobStatus::Completed).into()
    } else if err.as_deref() == Some("interrupted") {
        "cancelled".into()
    } else {
        "failed".into()
    };
    run.reason = err;
    if completed {
        run.total_time_ms = n("total_time_ms");
        run.downtime_ms = n("downtime_ms");
        run.bytes_transferred = n("bytes_transferred");
        run.qemu_total_time_ms = n("qemu_total_time_ms");
        run.integrity_ok = v
            .get("integrity")
            .and_then(|i| i.get("ok"))
            .and_then(Value::as_bool);
        rec.set_postcopy(n("postcopy_bytes"));
    }
    rec.run.detail = v;
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
    ) -> BaselineRun {
        let mut r = BaselineRun::new(strategy, driver, repeat, 0);
        r.run.status = "completed".into();
        r.run.total_time_ms = Some(total);
        r.run.downtime_ms = Some(down);
        r.run.bytes_transferred = Some(sent);
        r.run.integrity_ok = Some(true);
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
        let mut bad = BaselineRun::new(Strategy::PostCopy, Driver::Plain, 1, 0);
        bad.run.status = "failed".into();
        bad.run.reason = Some("migration failed: boom".into());
        runs.push(bad);
        let mut pc = rec(Strategy::PostCopy, Driver::Pacer, 1, 5654, 5294, 600 * mib);
        pc.set_postcopy(Some(500 * mib));
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
        a.run.integrity_ok = Some(false);
        let b = BaselineRun::new(Strategy::Hybrid, Driver::Pacer, 2, 0);
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
        let mut r = BaselineRun::new(Strategy::PostCopy, Driver::Plain, 1, 1);
        fill_from_plain(&mut r, v);
        assert!(r.completed());
        assert!(r.downtime_artefact);
        assert_eq!(r.effective_downtime_ms(), Some(0));
        assert_eq!(r.run.integrity_ok, Some(true));
    }

    #[test]
    fn embedded_script_is_the_shipped_one() {
        assert!(PLAIN_SCRIPT.starts_with("#!/usr/bin/env python3"));
        assert!(PLAIN_SCRIPT.contains("migrate-start-postcopy"));
    }
}
