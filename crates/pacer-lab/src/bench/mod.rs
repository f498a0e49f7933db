//! Benchmarks that print tables and write JSON.
//!
//! - `pacer-lab bench baseline` ([`baseline`]): every strategy through Pacer and as a
//!   plain QEMU-to-QEMU migration, with the pacer/plain ratios.
//! - `pacer-lab bench storage` ([`storage`]): a VM with a disk, migrated with and
//!   without a disk write load (and incrementally over a shared base image): total
//!   time, downtime, disk bytes, memory bytes.
//! - `pacer-lab bench predict` ([`predict`]): Pacer's finish-time prediction against
//!   the actual finish, beside the naive estimate, over workloads and links.
//! - `pacer-lab bench control` ([`control`]): finishing at a target: deviation and
//!   the bandwidth used, against running flat out.
//! - `pacer-lab bench group` ([`group`]): several VMs migrated together, coordinated
//!   or not: how far apart they finish.
//! - `pacer-lab bench gang` ([`gang`]): same-image guests at once, directly, through
//!   the relays and with dedup: link bytes, time, downtime; `bench relay-cost`: the
//!   codec per core.
//!
//! They share one test bed setup ([`crate::live::LiveBed`]: the guest image, two
//! hosts with agents, guests started and waited for), one follower of a
//! migration ([`harness::follow_migration`]) and one record of a migration
//! ([`record::MigrationRecord`]) that every benchmark's run record embeds. This
//! module holds the rest they share: option parsers, medians, cell formatting,
//! the results file and Ctrl-C handling.

mod baseline;
mod control;
mod gang;
mod group;
mod harness;
mod plot;
mod predict;
pub mod record;
mod score;
mod storage;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use pacer_model::format_bytes;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::live::LiveBed;

/// Benchmark commands.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCmd {
    /// Every strategy through Pacer and as plain QEMU-to-QEMU migration.
    Baseline(baseline::BaselineOpts),
    /// A VM with a disk: migrated with and without a disk write load.
    Storage(storage::StorageOpts),
    /// Pacer's finish-time prediction against the actual finish and the naive estimate.
    Predict(predict::PredictOpts),
    /// Finish-time control: targets at 1.2x, 1.5x, 2x (and 0.5x) of flat out.
    Control(control::ControlOpts),
    /// Several VMs migrated together, coordinated or not: finish spread.
    Group(group::GroupOpts),
    /// A gang of same-image guests at once: direct, through the relays, with dedup.
    Gang(gang::GangOpts),
    /// The relay codec's own cost per core.
    RelayCost(gang::RelayCostOpts),
}

/// Runs a benchmark.
pub async fn run(cmd: BenchCmd) -> Result<i32> {
    match cmd {
        BenchCmd::Baseline(opts) => baseline::run(&opts).await,
        BenchCmd::Storage(opts) => storage::run(&opts).await,
        BenchCmd::Predict(opts) => predict::run(&opts).await,
        BenchCmd::Control(opts) => control::run(&opts).await,
        BenchCmd::Group(opts) => group::run(&opts).await,
        BenchCmd::Gang(opts) => gang::run(&opts).await,
        BenchCmd::RelayCost(opts) => gang::run_cost(&opts).await,
    }
}

/// Memory the guest kernel needs beside the working set (the agent's own rule).
const KERNEL_RESERVE_MIB: u64 = 48;

fn parse_runs(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=100).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a run count: give 1 to 100")),
    }
}

fn parse_link_rate(s: &str) -> Result<String, String> {
    crate::net::parse_rate(s).map_err(|e| e.to_string())?;
    Ok(s.trim().to_string())
}

/// A size in whole MiB, 1M to 64G.
fn parse_mib(s: &str) -> Result<u64, String> {
    let b = pacer_model::parse_nonzero_size(s).map_err(|e| e.to_string())?;
    let mib = b >> 20;
    if mib == 0 || mib > 64 * 1024 {
        return Err(format!("{s:?} is out of range: give 1M to 64G"));
    }
    Ok(mib)
}

/// Guest memory in MiB for a benchmark whose guest writes a `wss_mib` working
/// set: room for it and the kernel, at most 64G (`example` goes in the error).
fn parse_guest_memory(s: &str, wss_mib: u64, example: &str) -> Result<u64, String> {
    let b = pacer_model::parse_nonzero_size(s).map_err(|e| e.to_string())?;
    let mib = b >> 20;
    let min = wss_mib + KERNEL_RESERVE_MIB;
    if mib < min {
        return Err(format!(
            "{s:?} is too small: the guest writes a {wss_mib} MiB working set and its kernel \
             needs {KERNEL_RESERVE_MIB} MiB more, give at least {min}M (e.g. {example})"
        ));
    }
    if mib > 64 * 1024 {
        return Err(format!("{s:?} is more than this benchmark's 64G limit"));
    }
    Ok(mib)
}

/// The `--wss` working set fits in `--memory` beside the guest kernel.
fn check_fits(wss_mib: u64, memory_mib: u64) -> Result<()> {
    if wss_mib + KERNEL_RESERVE_MIB > memory_mib {
        anyhow::bail!(
            "--wss {wss_mib} MiB does not fit in --memory {memory_mib} MiB: the guest kernel \
             needs {KERNEL_RESERVE_MIB} MiB more"
        );
    }
    Ok(())
}

/// A guest memory write rate in MB/s (`0` = idle).
fn parse_write_rate(s: &str) -> Result<f64, String> {
    if s.trim() == "0" {
        return Ok(0.0);
    }
    let mbps = pacer_model::parse_bandwidth(s).map_err(|e| e.to_string())? as f64 / 1e6;
    if mbps > 100_000.0 {
        return Err(format!("{s:?} is more than the guest's 100000 MB/s limit"));
    }
    Ok(mbps)
}

/// Now, Unix ms.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The median; the mean of the middle two for an even count.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn fmt_total(ms: Option<f64>) -> String {
    ms.map(|ms| format!("{:.2} s", ms / 1000.0))
        .unwrap_or_else(|| "-".into())
}

fn fmt_downtime(ms: Option<f64>, artefact: bool) -> String {
    let Some(ms) = ms else { return "-".into() };
    let star = if artefact { "*" } else { "" };
    if ms < 1.0 && artefact {
        format!("<1 ms{star}")
    } else if ms < 10_000.0 {
        format!("{ms:.0} ms{star}")
    } else {
        format!("{:.2} s{star}", ms / 1000.0)
    }
}

fn fmt_sent(bytes: Option<f64>) -> String {
    bytes
        .map(|b| format_bytes(b.round() as u64))
        .unwrap_or_else(|| "-".into())
}

fn check_word(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "ok",
        Some(false) => "FAILED",
        None => "n/a",
    }
}

/// A check cell over the completed runs of one row: `ok`, `ok 2/3` (some runs had
/// no check), `FAILED 1/3` or `n/a`.
fn check_cell(ok: usize, failed: usize, completed: usize) -> String {
    match (ok, failed) {
        (0, 0) => "n/a".into(),
        (ok, 0) if ok == completed => "ok".into(),
        (ok, 0) => format!("ok {ok}/{completed}"),
        (_, bad) => format!("FAILED {bad}/{completed}"),
    }
}

/// A status cell: `completed`, `FAILED` (none completed), `FAILED 1/3` or `not run`.
fn status_cell(runs: usize, completed: usize) -> String {
    if runs == 0 {
        "not run".into()
    } else if completed == runs {
        "completed".into()
    } else if completed == 0 {
        "FAILED".into()
    } else {
        format!("FAILED {}/{runs}", runs - completed)
    }
}

/// Appends a titled list to a table's notes (`title:` and the lines), if any.
fn push_list(out: &mut String, title: &str, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    out.push_str(&format!("\n{title}:\n"));
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
}

/// Creates the results file's directory and makes sure the file can be written
/// there, so that a bad `--out` shows before the runs, not after.
fn prepare_out(out: &Path) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let probe = out.with_extension("json.tmp");
    std::fs::write(&probe, b"")
        .with_context(|| format!("cannot write results beside {}", out.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Writes a results document atomically (a reader never sees half a file).
fn write_json(out: &Path, doc: &Value) -> Result<()> {
    let tmp = out.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(doc)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

/// Writes the results file of `benchmark`: what it ran on (`config`, to which the
/// bed's accelerator and kernel are added) and `body` (its runs, summaries, goals).
fn write_results(
    out: &Path,
    benchmark: &str,
    bed: &LiveBed,
    mut config: Value,
    body: Value,
) -> Result<()> {
    config["accel"] = json!(bed.accel);
    config["kernel_version"] = json!(bed.kernel_version);
    let mut doc = json!({
        "benchmark": benchmark,
        "pacer_version": env!("CARGO_PKG_VERSION"),
        "started_unix_ms": bed.started_unix_ms,
        "updated_unix_ms": unix_ms(),
        "config": config,
    });
    if let Value::Object(body) = body {
        for (k, v) in body {
            doc[k] = v;
        }
    }
    write_json(out, &doc)
}

/// A flag that turns true on Ctrl-C: the current run stops, the test bed goes.
fn stop_on_ctrl_c() -> watch::Receiver<bool> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: stopping the current run, then removing the test bed");
            let _ = stop_tx.send(true);
        }
    });
    stop_rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 2.0]), Some(2.0));
    }

    #[test]
    fn check_and_status_cells() {
        assert_eq!(check_cell(0, 0, 0), "n/a");
        assert_eq!(check_cell(3, 0, 3), "ok");
        assert_eq!(check_cell(2, 0, 3), "ok 2/3");
        assert_eq!(check_cell(2, 1, 3), "FAILED 1/3");
        assert_eq!(status_cell(0, 0), "not run");
        assert_eq!(status_cell(3, 3), "completed");
        assert_eq!(status_cell(3, 0), "FAILED");
        assert_eq!(status_cell(3, 2), "FAILED 1/3");
    }

    #[test]
    fn results_file_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sub/r.json");
        prepare_out(&out).unwrap();
        assert!(!out.with_extension("json.tmp").exists());
        write_json(&out, &serde_json::json!({"a": 1})).unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(v["a"], 1);
    }
}
