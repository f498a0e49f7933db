//! `pacer-lab bench predict` answers "how good is Pacer's finish-time prediction?":
//! it migrates guests with different workloads over different links (one of
//! which changes its rate mid-migration) and scores the total time Pacer
//! predicted, once a second, against the actual one, beside the naive estimate
//! (elapsed + bytes left / current rate) the agent records at the same moments.
//!
//! Workloads (a 1 GiB guest, 256 MiB working set by default):
//! - `idle`: the working set filled once, then no writes;
//! - `steady`: uniform writes at `--write-rate`;
//! - `skewed`: the same rate, 80% of it to a hot 1% of the working set (the guest
//!   writes at a fixed rate, so "bursty" can only mean skewed in space);
//! - `phase`: the same writer, paused (the bench keeps the guest busy sweeping
//!   its memory, see [`WriterPause`]) from boot until `--change-at` of the
//!   expected duration, then writing: the phase changes mid-migration;
//! - `disk`: a qcow2 disk the guest filled at boot and writes at
//!   `--disk-write-rate`, memory written at 5 MB/s.
//!
//! Links: 1 Gbit/s, 200 Mbit/s, and 1 Gbit/s dropping to 300 Mbit/s at
//! `--change-at` of the expected duration (the same workload's 1 Gbit/s run, or
//! Pacer's prediction before the start when there is none).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use pacer_api::PredictResponse;
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;

use super::harness::{
    follow_migration, migration_limit, parse_prior_wait, plot_path, precopy_request,
    predict_before, prediction_chart, wait_prior, write_svg, Followed, Sample, WriterPause,
    LIMIT_BASE,
};
use super::plot::{Chart, Line, Rule, PALETTE};
use super::record::{MigrationRecord, Row};
use super::score::{
    errors_at_fractions, naive_errors, pacer_estimates, pct, rel_error, Estimate, Verdict,
    FRACTIONS, GOAL_MAX_ERROR,
};
use super::{
    check_fits, fmt_total, median, parse_mib, parse_runs, parse_write_rate, prepare_out, push_list,
    stop_on_ctrl_c, unix_ms, write_results,
};
use crate::live::{guest_rates, room_for_disk, start_guest, GuestPlan, LiveBed};

/// Test bed name.
const BED: &str = "bpred";
/// The links' rates.
const FAST: &str = "1gbit";
const SLOW: &str = "200mbit";
const CHANGED: &str = "300mbit";
/// The disk workload's memory write rate, MB/s.
const DISK_MEM_RATE: f64 = 5.0;
/// The skewed workload's hot set and its share of the writes.
const HOT_FRACTION: f64 = 0.01;
const HOT_SHARE: f64 = 0.8;
/// Pre-copy converges comfortably only below this share of the slowest link.
const MAX_LINK_SHARE: f64 = 0.8;

/// A guest workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Wl {
    /// Filled once, no writes.
    Idle,
    /// Uniform memory writes.
    Steady,
    /// Memory writes skewed to a hot set.
    Skewed,
    /// Writer paused until mid-migration, then writing.
    Phase,
    /// A disk being written.
    Disk,
}

const ALL_WL: [Wl; 5] = [Wl::Idle, Wl::Steady, Wl::Skewed, Wl::Phase, Wl::Disk];

impl Wl {
    fn as_str(self) -> &'static str {
        match self {
            Wl::Idle => "idle",
            Wl::Steady => "steady",
            Wl::Skewed => "skewed",
            Wl::Phase => "phase",
            Wl::Disk => "disk",
        }
    }

    fn describe(self, o: &PredictOpts) -> String {
        let g = pacer_model::format_bytes(o.memory << 20);
        let w = pacer_model::format_bytes(o.wss << 20);
        match self {
            Wl::Idle => format!("{g} guest, {w} working set filled once, no writes"),
            Wl::Steady => format!("{g} guest writing {} MB/s uniformly over {w}", o.write_rate),
            Wl::Skewed => format!(
                "{g} guest writing {} MB/s over {w}, {:.0}% of it to a hot {:.0}% ({})",
                o.write_rate,
                HOT_SHARE * 100.0,
                HOT_FRACTION * 100.0,
                pacer_model::format_bytes(((o.wss << 20) as f64 * HOT_FRACTION) as u64)
            ),
            Wl::Phase => format!(
                "{g} guest whose {} MB/s writer over {w} is paused until {:.0}% of the expected \
                 duration, then writes",
                o.write_rate,
                o.change_at * 100.0
            ),
            Wl::Disk => format!(
                "{g} guest writing {DISK_MEM_RATE} MB/s over {w}, with a {} qcow2 disk it filled \
                 at boot and writes {} MB/s (uniform 64 KiB)",
                pacer_model::format_bytes(o.disk_size),
                o.disk_write_rate
            ),
        }
    }

    fn guest(self, o: &PredictOpts, name: &str) -> GuestPlan {
        match self {
            Wl::Idle => GuestPlan::memory(name, o.memory, o.wss, 0.0),
            Wl::Steady | Wl::Phase => GuestPlan::memory(name, o.memory, o.wss, o.write_rate),
            Wl::Skewed => {
                let mut g = GuestPlan::memory(name, o.memory, o.wss, o.write_rate);
                g.workload.hot_fraction = HOT_FRACTION;
                g.workload.hot_share = HOT_SHARE;
                g
            }
            Wl::Disk => GuestPlan::memory(name, o.memory, o.wss, DISK_MEM_RATE)
                .with_disk(o.disk_size, o.disk_write_rate),
        }
    }
}

/// The link of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Link {
    /// 1 Gbit/s.
    #[serde(rename = "1gbit")]
    Fast,
    /// 200 Mbit/s.
    #[serde(rename = "200mbit")]
    Slow,
    /// 1 Gbit/s, then 300 Mbit/s.
    #[serde(rename = "1gbit->300mbit")]
    Changing,
}

const ALL_LINKS: [Link; 3] = [Link::Fast, Link::Slow, Link::Changing];

impl Link {
    fn as_str(self) -> &'static str {
        match self {
            Link::Fast => "1gbit",
            Link::Slow => "200mbit",
            Link::Changing => "1gbit->300mbit",
        }
    }

    fn file_part(self) -> &'static str {
        match self {
            Link::Fast => "1gbit",
            Link::Slow => "200mbit",
            Link::Changing => "changing",
        }
    }

    fn start_rate(self) -> &'static str {
        match self {
            Link::Slow => SLOW,
            _ => FAST,
        }
    }

    /// The slowest rate the run sees, bits/s.
    fn slowest_bps(self) -> u64 {
        let r = match self {
            Link::Fast => FAST,
            Link::Slow => SLOW,
            Link::Changing => CHANGED,
        };
        crate::net::parse_rate(r).unwrap_or(1)
    }
}

fn parse_wl(s: &str) -> Result<Wl, String> {
    match s.trim() {
        "idle" => Ok(Wl::Idle),
        "steady" => Ok(Wl::Steady),
        "skewed" | "bursty" => Ok(Wl::Skewed),
        "phase" => Ok(Wl::Phase),
        "disk" => Ok(Wl::Disk),
        "" => Err("empty scenario name: give a comma-separated list such as steady,phase".into()),
        o => Err(format!(
            "unknown scenario {o:?}: use idle, steady, skewed, phase or disk"
        )),
    }
}

fn parse_link(s: &str) -> Result<Link, String> {
    match s.trim() {
        "1gbit" | "fast" => Ok(Link::Fast),
        "200mbit" | "slow" => Ok(Link::Slow),
        "changing" | "1gbit->300mbit" => Ok(Link::Changing),
        "" => Err("empty link name: give a comma-separated list such as 1gbit,changing".into()),
        o => Err(format!(
            "unknown link {o:?}: use 1gbit, 200mbit or changing"
        )),
    }
}

fn parse_disk_size(s: &str) -> Result<u64, String> {
    let b = pacer_model::parse_nonzero_size(s).map_err(|e| e.to_string())?;
    if b % (1 << 20) != 0 || !(64 << 20..=64 << 30).contains(&b) {
        return Err(format!("{s:?}: give a whole number of MiB from 64M to 64G"));
    }
    Ok(b)
}

fn parse_disk_rate(s: &str) -> Result<f64, String> {
    let r = parse_write_rate(s)?;
    if r <= 0.0 || r > 1000.0 {
        return Err(format!(
            "{s:?}: give a disk write rate above 0 and at most 1000 MB/s"
        ));
    }
    Ok(r)
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if (0.05..=0.95).contains(&f) => Ok(f),
        _ => Err(format!(
            "{s:?}: give a fraction of the duration from 0.05 to 0.95"
        )),
    }
}

/// Options of `pacer-lab bench predict`.
#[derive(Debug, Clone, clap::Args)]
pub struct PredictOpts {
    /// Runs of every scenario and link; the table shows medians.
    #[arg(long, default_value_t = 1, value_parser = parse_runs)]
    pub runs: u32,
    /// Where to write every run as JSON (plots go beside it).
    #[arg(long, default_value = "bench-results/predict.json")]
    pub out: PathBuf,
    /// Only the steady and phase workloads over the 1gbit and changing links (4 runs).
    #[arg(long)]
    pub quick: bool,
    /// Workloads, comma-separated: idle, steady, skewed, phase, disk [default: all].
    #[arg(long, value_delimiter = ',', value_parser = parse_wl)]
    pub scenarios: Option<Vec<Wl>>,
    /// Links, comma-separated: 1gbit, 200mbit, changing (1gbit -> 300mbit) [default: all].
    #[arg(long, value_delimiter = ',', value_parser = parse_link)]
    pub links: Option<Vec<Link>>,
    /// Guest memory.
    #[arg(long, default_value = "1G", value_parser = parse_mib)]
    pub memory: u64,
    /// Working set of the guest's memory writer.
    #[arg(long, default_value = "256M", value_parser = parse_mib)]
    pub wss: u64,
    /// Memory write rate of the steady, skewed and phase workloads (below 80% of
    /// 200 Mbit/s, 20 MB/s, so that pre-copy converges there).
    #[arg(long, default_value = "15MB/s", value_parser = parse_write_rate)]
    pub write_rate: f64,
    /// Disk size of the disk workload.
    #[arg(long, default_value = "1G", value_parser = parse_disk_size)]
    pub disk_size: u64,
    /// Disk write rate of the disk workload.
    #[arg(long, default_value = "10MB/s", value_parser = parse_disk_rate)]
    pub disk_write_rate: f64,
    /// How long a guest runs before it is migrated (the agent measures it meanwhile).
    #[arg(long, default_value = "20s", value_parser = parse_prior_wait)]
    pub prior_wait: f64,
    /// When the link (or the phase) changes, as a fraction of the expected duration.
    #[arg(long, default_value = "0.4", value_parser = parse_fraction)]
    pub change_at: f64,
}

impl PredictOpts {
    fn workloads(&self) -> Vec<Wl> {
        let want = match (&self.scenarios, self.quick) {
            (Some(v), _) => v.clone(),
            (None, true) => vec![Wl::Steady, Wl::Phase],
            (None, false) => ALL_WL.to_vec(),
        };
        ALL_WL
            .iter()
            .copied()
            .filter(|w| want.contains(w))
            .collect()
    }

    fn links(&self) -> Vec<Link> {
        let want = match (&self.links, self.quick) {
            (Some(v), _) => v.clone(),
            (None, true) => vec![Link::Fast, Link::Changing],
            (None, false) => ALL_LINKS.to_vec(),
        };
        ALL_LINKS
            .iter()
            .copied()
            .filter(|l| want.contains(l))
            .collect()
    }

    fn validate(&self) -> Result<()> {
        if self.workloads().is_empty() {
            bail!("--scenarios is empty: give idle, steady, skewed, phase or disk");
        }
        if self.links().is_empty() {
            bail!("--links is empty: give 1gbit, 200mbit or changing");
        }
        check_fits(self.wss, self.memory)?;
        let writes = self
            .workloads()
            .iter()
            .any(|w| matches!(w, Wl::Steady | Wl::Skewed | Wl::Phase));
        let slowest = self
            .links()
            .iter()
            .map(|l| l.slowest_bps())
            .min()
            .unwrap_or(1) as f64
            / 8e6;
        if writes && self.write_rate >= MAX_LINK_SHARE * slowest {
            bail!(
                "--write-rate {} MB/s is too close to the slowest link ({slowest:.1} MB/s): \
                 pre-copy would not converge; give less than {:.1} MB/s or leave that link out",
                self.write_rate,
                MAX_LINK_SHARE * slowest
            );
        }
        if self.workloads().contains(&Wl::Disk)
            && self.disk_write_rate + DISK_MEM_RATE >= MAX_LINK_SHARE * slowest
        {
            bail!(
                "--disk-write-rate {} MB/s plus the disk workload's {DISK_MEM_RATE} MB/s of memory \
                 writes is too close to the slowest link ({slowest:.1} MB/s)",
                self.disk_write_rate
            );
        }
        Ok(())
    }
}

/// What changed during a run, and when.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// `link` (rate drop) and/or `writer` (the guest starts writing).
    pub what: Vec<String>,
    /// The duration the change time was taken from, ms.
    pub expected_ms: u64,
    /// Where that duration came from.
    pub expected_from: String,
    /// When the change was planned, ms after the request.
    pub planned_ms: u64,
    /// When it was made, ms after the request (None: the migration ended first).
    pub made_ms: Option<u64>,
    /// The job's own elapsed time then, ms.
    pub made_job_ms: Option<u64>,
}

/// Pacer's prediction before the start.
#[derive(Debug, Clone, Serialize)]
pub struct Before {
    /// Predicted total, ms.
    pub total_ms: u64,
    /// Measured dirty rate, bytes/s.
    pub dirty_rate_bps: f64,
    /// Working set, bytes.
    pub wss_bytes: Option<f64>,
    /// Hot set, bytes.
    pub hot_bytes: f64,
    /// Zero-page fraction.
    pub zero_fraction: f64,
    /// Link rate probed, bytes/s.
    pub link_bps: f64,
}

impl From<&PredictResponse> for Before {
    fn from(p: &PredictResponse) -> Self {
        Before {
            total_ms: p.total_ms.unwrap_or(crate::bench::score::NEVER_MS),
            dirty_rate_bps: p.dirty_rate_bps,
            wss_bytes: p.wss_bytes,
            hot_bytes: p.hot_bytes,
            zero_fraction: p.zero_fraction,
            link_bps: p.link_bps,
        }
    }
}

/// One migration.
#[derive(Debug, Clone, Serialize)]
pub struct PredictRun {
    /// Workload.
    pub workload: Wl,
    /// Link.
    pub link: Link,
    /// Repetition (1-based).
    pub repeat: u32,
    /// Position in the order of runs (1-based).
    pub seq: usize,
    /// How it went.
    #[serde(flatten)]
    pub run: MigrationRecord,
    /// Pacer's absolute error at 10, 25, 50, 75% of the actual duration (fraction of it).
    pub pacer_errors: [Option<f64>; 4],
    /// The naive estimate's.
    pub naive_errors: [Option<f64>; 4],
    /// Which naive errors come from the bench's own estimate (no agent one then).
    pub naive_from_bench: [bool; 4],
    /// Pacer's prediction before the start, and its error.
    pub before: Option<Before>,
    /// Its absolute error (fraction of the actual).
    pub before_error: Option<f64>,
    /// The change made mid-migration.
    pub change: Option<Change>,
    /// The guest's memory write rate just before the migration (MB/s).
    pub guest_write_mbps: Option<f64>,
    /// Memory sweeps the guest made while its writer was paused.
    pub pause_sweeps: Option<u64>,
    /// What the bench saw at every poll.
    pub samples: Vec<Sample>,
    /// The plot.
    pub plot: Option<String>,
    /// Start, Unix ms.
    pub started_unix_ms: u64,
    /// The whole run, ms.
    pub wall_ms: u64,
}

impl PredictRun {
    fn new(workload: Wl, link: Link, repeat: u32, seq: usize) -> Self {
        PredictRun {
            workload,
            link,
            repeat,
            seq,
            run: MigrationRecord::default(),
            pacer_errors: [None; 4],
            naive_errors: [None; 4],
            naive_from_bench: [false; 4],
            before: None,
            before_error: None,
            change: None,
            guest_write_mbps: None,
            pause_sweeps: None,
            samples: Vec::new(),
            plot: None,
            started_unix_ms: unix_ms(),
            wall_ms: 0,
        }
    }

    fn completed(&self) -> bool {
        self.run.completed()
    }

    /// Takes the followed migration and scores it.
    fn take(&mut self, f: Followed, memory_mib: u64) {
        self.run.take(&f);
        self.samples = f.samples;
        self.score(memory_mib);
    }

    /// Scores a completed run's predictions, the naive estimate's and the one
    /// before the start against the actual total.
    fn score(&mut self, memory_mib: u64) {
        let Some(actual) = self.run.total_time_ms.filter(|_| self.completed()) else {
            return;
        };
        let predictions = &self.run.predictions;
        self.pacer_errors = errors_at_fractions(&pacer_estimates(predictions), actual);
        let fallback = bench_naive(&self.samples, memory_mib << 20);
        let (n, flagged) = naive_errors(predictions, &fallback, actual);
        self.naive_errors = n;
        self.naive_from_bench = flagged;
        self.before_error = self
            .before
            .as_ref()
            .and_then(|b| rel_error(b.total_ms, actual));
    }

    fn outcome_line(&self) -> String {
        if let Some(f) = self.run.failure() {
            return f;
        }
        let cells = |e: &[Option<f64>; 4]| e.map(pct).join(" ");
        format!(
            "completed in {}; error at 10/25/50/75%: Pacer {}, naive {}",
            fmt_total(self.run.total_time_ms.map(|v| v as f64)),
            cells(&self.pacer_errors),
            cells(&self.naive_errors)
        )
    }
}

/// The naive estimate as the bench can make it from the job's progress: elapsed +
/// bytes left / current rate, the disk's and all of memory while disks are copied.
pub fn bench_naive(samples: &[Sample], ram_bytes: u64) -> Vec<Estimate> {
    samples
        .iter()
        .filter_map(|s| {
            let (left, rate) = if s.copying_disks() {
                (s.disk_remaining? + ram_bytes, s.disk_rate_bps?)
            } else {
                (s.remaining, s.rate_bps)
            };
            (rate > 0.0 && s.elapsed_ms > 0).then(|| Estimate {
                at_ms: s.elapsed_ms,
                total_ms: s.elapsed_ms + (left as f64 / rate * 1000.0) as u64,
            })
        })
        .collect()
}

/// One row of the table: a workload over a link, over its runs.
#[derive(Debug, Clone, Serialize)]
pub struct RowSummary {
    /// Workload.
    pub workload: Wl,
    /// Link.
    pub link: Link,
    /// Runs made / completed.
    pub runs: usize,
    /// See `runs`.
    pub completed: usize,
    /// Median actual total, ms.
    pub total_time_ms: Option<f64>,
    /// Median Pacer error at each fraction.
    pub pacer: [Option<f64>; 4],
    /// Median naive error at each fraction.
    pub naive: [Option<f64>; 4],
    /// Whether some naive cell came from the bench's own estimate.
    pub naive_from_bench: [bool; 4],
    /// Median error of the prediction before the start.
    pub before: Option<f64>,
    /// The goal's verdict.
    pub verdict: Verdict,
}

fn med_cols(rows: &[&PredictRun], f: impl Fn(&PredictRun) -> [Option<f64>; 4]) -> [Option<f64>; 4] {
    let mut out = [None; 4];
    for (i, o) in out.iter_mut().enumerate() {
        *o = median(&rows.iter().filter_map(|r| f(r)[i]).collect::<Vec<_>>());
    }
    out
}

/// Summarises one (workload, link).
pub fn summarize(w: Wl, l: Link, runs: &[PredictRun]) -> RowSummary {
    let row = Row::of(runs, |r| r.workload == w && r.link == l, |r| &r.run);
    let done = &row.done;
    let pairs: Vec<_> = done
        .iter()
        .map(|r| (r.pacer_errors, r.naive_errors))
        .collect();
    let mut flagged = [false; 4];
    for r in done {
        for (i, f) in r.naive_from_bench.iter().enumerate() {
            flagged[i] |= *f;
        }
    }
    RowSummary {
        workload: w,
        link: l,
        runs: row.all.len(),
        completed: done.len(),
        total_time_ms: row.median(|r| r.run.total_time_ms),
        pacer: med_cols(done, |r| r.pacer_errors),
        naive: med_cols(done, |r| r.naive_errors),
        naive_from_bench: flagged,
        before: median(
            &done
                .iter()
                .filter_map(|r| r.before_error)
                .collect::<Vec<_>>(),
        ),
        verdict: Verdict::of(&pairs),
    }
}

/// The goals over all rows.
#[derive(Debug, Clone, Serialize)]
pub struct Goals {
    /// Every row's Pacer median from 25% on is at most 5%.
    pub within_5pct_everywhere: bool,
    /// Every row's Pacer median is below the naive one's.
    pub below_naive_everywhere: bool,
    /// Both, over at least one completed row.
    pub met: bool,
    /// Median over every completed run and point from 25% on.
    pub overall_pacer: Option<f64>,
    /// The same for the naive estimate.
    pub overall_naive: Option<f64>,
}

/// The goals' verdict.
pub fn goals(rows: &[RowSummary], runs: &[PredictRun]) -> Goals {
    let scored: Vec<&RowSummary> = rows
        .iter()
        .filter(|r| r.verdict.within_goal.is_some())
        .collect();
    let within = scored.iter().all(|r| r.verdict.within_goal == Some(true));
    let below = scored.iter().all(|r| r.verdict.beats_naive == Some(true));
    let done: Vec<_> = runs
        .iter()
        .filter(|r| r.completed())
        .map(|r| (r.pacer_errors, r.naive_errors))
        .collect();
    let all = Verdict::of(&done);
    Goals {
        within_5pct_everywhere: within,
        below_naive_everywhere: below,
        met: within && below && !scored.is_empty() && scored.len() == rows.len(),
        overall_pacer: all.pacer_median,
        overall_naive: all.naive_median,
    }
}

fn cell(e: Option<f64>, flagged: bool) -> String {
    let mut s = pct(e);
    if flagged && e.is_some() {
        s.push('+');
    }
    s
}

/// The table printed at the end.
pub fn render_table(order: &[(Wl, Link)], runs: &[PredictRun], opts: &PredictOpts) -> String {
    let mut out = String::new();
    let rows: Vec<RowSummary> = order.iter().map(|&(w, l)| summarize(w, l, runs)).collect();
    let line = |c: &[String]| {
        let mut s = format!("{:<9}{:<16}{:<10}", c[0], c[1], c[2]);
        for x in &c[3..7] {
            s.push_str(&format!("{x:<7}"));
        }
        s.push_str("  ");
        for x in &c[7..11] {
            s.push_str(&format!("{x:<7}"));
        }
        s.push_str("  ");
        s.push_str(&format!("{:<8}{:<8}{:<9}{}", c[11], c[12], c[13], c[14]));
        s.trim_end().to_string() + "\n"
    };
    let medians = if opts.runs > 1 {
        format!(" (medians of {} runs)", opts.runs)
    } else {
        String::new()
    };
    out.push_str(&format!(
        "{:<35}{:<30}{:<30}from 25% on{medians}\n",
        "", "Pacer |error| at", "naive |error| at"
    ));
    let head: Vec<String> = [
        "workload", "link", "actual", "10%", "25%", "50%", "75%", "10%", "25%", "50%", "75%",
        "Pacer", "naive", "before", "goal",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    out.push_str(&line(&head));
    for r in &rows {
        let mut c = vec![
            r.workload.as_str().to_string(),
            r.link.as_str().to_string(),
            fmt_total(r.total_time_ms),
        ];
        c.extend(r.pacer.iter().map(|e| pct(*e)));
        c.extend(
            r.naive
                .iter()
                .zip(r.naive_from_bench)
                .map(|(e, f)| cell(*e, f)),
        );
        c.push(pct(r.verdict.pacer_median));
        c.push(pct(r.verdict.naive_median));
        c.push(pct(r.before));
        c.push(if r.completed == 0 {
            super::status_cell(r.runs, r.completed)
        } else if r.completed < r.runs {
            format!(
                "{} ({})",
                r.verdict.word(),
                super::status_cell(r.runs, r.completed)
            )
        } else {
            r.verdict.word()
        });
        out.push_str(&line(&c));
    }
    let done: Vec<&PredictRun> = runs.iter().filter(|r| r.completed()).collect();
    let g = goals(&rows, runs);
    let mut c = vec![
        "median".to_string(),
        "(all runs)".to_string(),
        String::new(),
    ];
    c.extend(med_cols(&done, |r| r.pacer_errors).iter().map(|e| pct(*e)));
    c.extend(med_cols(&done, |r| r.naive_errors).iter().map(|e| pct(*e)));
    c.push(pct(g.overall_pacer));
    c.push(pct(g.overall_naive));
    c.push(pct(median(
        &done
            .iter()
            .filter_map(|r| r.before_error)
            .collect::<Vec<_>>(),
    )));
    c.push(String::new());
    out.push_str(&line(&c));

    out.push_str(
        "\n|error| = |predicted total - actual total| / actual total, of the prediction in force \
         (the last made) at 10, 25, 50 and 75% of the actual duration; '-': none made yet (the \
         first comes once the destination is ready); 'before': Pacer's prediction just before \
         the start (`pacer predict`).\n",
    );
    if rows.iter().any(|r| r.naive_from_bench.iter().any(|f| *f)) {
        out.push_str(
            "+: the agent records no naive estimate while disks are copied; this one is the \
             bench's own, from the job's progress (elapsed + disk and memory left / disk copy rate).\n",
        );
    }
    let over: Vec<String> = rows
        .iter()
        .filter(|r| r.verdict.within_goal == Some(false))
        .map(|r| {
            format!(
                "{} {} ({})",
                r.workload.as_str(),
                r.link.as_str(),
                pct(r.verdict.pacer_median)
            )
        })
        .collect();
    let worse: Vec<String> = rows
        .iter()
        .filter(|r| r.verdict.beats_naive == Some(false))
        .map(|r| {
            format!(
                "{} {} ({} vs {})",
                r.workload.as_str(),
                r.link.as_str(),
                pct(r.verdict.pacer_median),
                pct(r.verdict.naive_median)
            )
        })
        .collect();
    out.push_str(&format!(
        "goal: median |error| at most {:.0}% from 25% of the duration on, and below the naive \
         estimate's, in every scenario: {}\n",
        GOAL_MAX_ERROR * 100.0,
        if g.met { "MET" } else { "NOT MET" }
    ));
    out.push_str(&format!(
        "  at most {:.0}%: {}\n",
        GOAL_MAX_ERROR * 100.0,
        if over.is_empty() {
            "every scenario".to_string()
        } else {
            format!("not in {}", over.join(", "))
        }
    ));
    out.push_str(&format!(
        "  below naive: {}\n",
        if worse.is_empty() {
            "every scenario".to_string()
        } else {
            format!("not in {}", worse.join(", "))
        }
    ));
    let unscored: Vec<String> = rows
        .iter()
        .filter(|r| r.verdict.within_goal.is_none())
        .map(|r| format!("{} {}", r.workload.as_str(), r.link.as_str()))
        .collect();
    if !unscored.is_empty() {
        out.push_str(&format!(
            "  not scored (no completed run): {}\n",
            unscored.join(", ")
        ));
    }

    out.push_str("\nworkloads (pre-copy, 300 ms downtime limit):\n");
    let mut seen = Vec::new();
    for &(w, _) in order {
        if !seen.contains(&w) {
            seen.push(w);
            out.push_str(&format!("  {:<8} {}\n", w.as_str(), w.describe(opts)));
        }
    }
    out.push_str(&format!(
        "changes: the link drops to {CHANGED} (and the phase workload's writer starts) at {:.0}% of \
         the expected duration: the same workload's (phase: idle's) run over the starting link, \
         else Pacer's prediction before the start.\n",
        opts.change_at * 100.0
    ));
    for r in runs.iter().filter(|r| r.change.is_some()) {
        let c = r.change.as_ref().expect("filtered");
        out.push_str(&format!(
            "  {} {} run {}: {} at {:.1} s ({:.0}% of {:.1} s, {}){}\n",
            r.workload.as_str(),
            r.link.as_str(),
            r.repeat,
            c.what.join(" and "),
            c.planned_ms as f64 / 1000.0,
            opts.change_at * 100.0,
            c.expected_ms as f64 / 1000.0,
            c.expected_from,
            match (c.made_ms, r.run.total_time_ms) {
                (None, _) => "; NOT MADE: the migration ended first".to_string(),
                (Some(m), Some(t)) => format!(
                    "; made at {:.0}% of the actual",
                    m as f64 * 100.0 / t as f64
                ),
                _ => String::new(),
            }
        ));
    }
    let notes: Vec<String> = runs
        .iter()
        .filter(|r| !r.completed() || r.run.integrity_ok == Some(false))
        .map(|r| {
            format!(
                "  {} {} run {}: {}: {}",
                r.workload.as_str(),
                r.link.as_str(),
                r.repeat,
                if r.completed() {
                    "guest check FAILED"
                } else {
                    r.run.status.as_str()
                },
                r.run.why()
            )
        })
        .collect();
    push_list(&mut out, "failed runs", &notes);
    out
}

/// The plot of one run: predicted total with its band, the naive estimate and
/// the actual total, against elapsed time.
pub fn chart(r: &PredictRun, ram_bytes: u64) -> Option<Chart> {
    let actual_ms = r.run.total_time_ms?;
    let actual = actual_ms as f64 / 1000.0;
    let s = |ms: u64| ms as f64 / 1000.0;
    let title = format!(
        "{} over {} (run {}): predicted vs actual total",
        r.workload.as_str(),
        r.link.as_str(),
        r.repeat
    );
    let mut c = prediction_chart(
        title,
        &r.run.predictions,
        actual_ms,
        "naive: elapsed + left / rate (agent)",
    );
    let lines = &mut c.lines;
    if r.naive_from_bench.iter().any(|f| *f) {
        let own: Vec<(f64, f64)> = bench_naive(&r.samples, ram_bytes)
            .iter()
            .filter(|e| {
                r.samples
                    .iter()
                    .any(|x| x.elapsed_ms == e.at_ms && x.copying_disks())
            })
            .map(|e| (s(e.at_ms), s(e.total_ms)))
            .collect();
        let mut l = Line::new("naive during the disk copy (bench)", PALETTE[4], own).dashed();
        l.markers = false;
        lines.push(l);
    }
    if let Some(b) = &r.before {
        lines.push(Line::new(
            "Pacer before the start",
            PALETTE[3],
            vec![(0.0, s(b.total_ms))],
        ));
    }
    let mut vrules = Vec::new();
    if let Some(c) = &r.change {
        if let Some(m) = c.made_job_ms.or(c.made_ms) {
            vrules.push(Rule::new(&c.what.join(" and "), PALETTE[2], false, s(m)));
        }
    }
    for (i, f) in FRACTIONS.iter().enumerate() {
        let label = if i == 0 {
            "scored at 10, 25, 50, 75% of the actual"
        } else {
            ""
        };
        vrules.push(Rule::new(label, "#aaaaaa", true, f * actual));
    }
    c.vrules = vrules;
    Some(c)
}

/// The order of runs: repeats outermost, then workloads, then links.
pub fn plan(workloads: &[Wl], links: &[Link], repeats: u32) -> Vec<(u32, Wl, Link)> {
    let mut v = Vec::new();
    for r in 1..=repeats {
        for &w in workloads {
            for &l in links {
                v.push((r, w, l));
            }
        }
    }
    v
}

/// The run whose actual duration sets the change time of (w, l), if it has one.
pub fn reference_of(w: Wl, l: Link) -> Option<(Wl, Link)> {
    let changes = l == Link::Changing || w == Wl::Phase;
    changes.then(|| {
        (
            if w == Wl::Phase { Wl::Idle } else { w },
            if l == Link::Changing { Link::Fast } else { l },
        )
    })
}

/// Runs `pacer-lab bench predict`.
pub async fn run(opts: &PredictOpts) -> Result<i32> {
    opts.validate()?;
    prepare_out(&opts.out)?;
    let workloads = opts.workloads();
    let links = opts.links();
    let mut bed = LiveBed::up_shaped(BED, FAST)?;
    if workloads.contains(&Wl::Disk) {
        bed.check_room(room_for_disk(opts.disk_size)).await?;
    }
    let stop = stop_on_ctrl_c();
    let order = plan(&workloads, &links, opts.runs);
    let rows: Vec<(Wl, Link)> = workloads
        .iter()
        .flat_map(|&w| links.iter().map(move |&l| (w, l)))
        .collect();
    let mut runs: Vec<PredictRun> = Vec::new();
    let mut actuals: HashMap<(Wl, Link), u64> = HashMap::new();
    for (i, &(repeat, w, l)) in order.iter().enumerate() {
        if *stop.borrow() {
            break;
        }
        let tag = format!(
            "[{}/{}] {} over {} (run {repeat} of {})",
            i + 1,
            order.len(),
            w.as_str(),
            l.as_str(),
            opts.runs
        );
        eprintln!("{tag}: {}", w.describe(opts));
        let mut rec = PredictRun::new(w, l, repeat, i + 1);
        let name = format!("bp-{}", i + 1);
        let mut files = Vec::new();
        let t = Instant::now();
        let expected = reference_of(w, l).and_then(|k| actuals.get(&k).map(|&ms| (k, ms)));
        one_run(&mut bed, opts, &name, &mut rec, &mut files, expected, &stop).await;
        rec.run.mark_interrupted(&stop);
        bed.cleanup(&name, &files).await;
        if let Err(e) = bed.set_rate(crate::net::parse_rate(FAST)?) {
            eprintln!("warning: cannot reset the link rate: {e}");
        }
        rec.wall_ms = t.elapsed().as_millis() as u64;
        if let (true, Some(ms)) = (rec.completed(), rec.run.total_time_ms) {
            actuals.entry((w, l)).or_insert(ms);
        }
        if let Some(c) = chart(&rec, opts.memory << 20) {
            let file = plot_path(
                &opts.out,
                &format!(
                    "{}-{}{}",
                    w.as_str(),
                    l.file_part(),
                    if opts.runs > 1 {
                        format!("-{repeat}")
                    } else {
                        String::new()
                    }
                ),
            );
            rec.plot = write_svg(&file, &c.to_svg());
        }
        eprintln!("{tag}: {}", rec.outcome_line());
        runs.push(rec);
        save(opts, &rows, &bed, &runs)?;
    }
    bed.close("benchmark");
    print!("{}", render_table(&rows, &runs, opts));
    println!("\nall runs: {} (plots beside it)", opts.out.display());
    let rows_s: Vec<RowSummary> = rows.iter().map(|&(w, l)| summarize(w, l, &runs)).collect();
    let all_done = runs.len() == order.len() && runs.iter().all(|r| r.completed());
    Ok(if all_done && goals(&rows_s, &runs).met {
        0
    } else {
        1
    })
}

fn save(opts: &PredictOpts, rows: &[(Wl, Link)], bed: &LiveBed, runs: &[PredictRun]) -> Result<()> {
    let summaries: Vec<RowSummary> = rows.iter().map(|&(w, l)| summarize(w, l, runs)).collect();
    let config = json!({
        "runs": opts.runs,
        "workloads": opts.workloads(),
        "links": opts.links(),
        "memory_mib": opts.memory,
        "wss_mib": opts.wss,
        "write_rate_mbps": opts.write_rate,
        "skewed_hot_fraction": HOT_FRACTION,
        "skewed_hot_share": HOT_SHARE,
        "disk_size_bytes": opts.disk_size,
        "disk_write_rate_mbps": opts.disk_write_rate,
        "disk_memory_write_rate_mbps": DISK_MEM_RATE,
        "prior_wait_s": opts.prior_wait,
        "change_at": opts.change_at,
        "changed_rate": CHANGED,
        "fractions": FRACTIONS,
        "strategy": "pre-copy",
    });
    let body = json!({
        "summary": summaries,
        "goals": goals(&summaries, runs),
        "runs": runs,
    });
    write_results(&opts.out, "predict", bed, config, body)
}

/// One run: guest, prior, prediction before, migration with its change, scoring.
async fn one_run(
    bed: &mut LiveBed,
    opts: &PredictOpts,
    name: &str,
    rec: &mut PredictRun,
    files: &mut Vec<PathBuf>,
    expected: Option<((Wl, Link), u64)>,
    stop: &watch::Receiver<bool>,
) {
    let (w, l) = (rec.workload, rec.link);
    let rate = match crate::net::parse_rate(l.start_rate()) {
        Ok(r) => r,
        Err(e) => {
            rec.run.reason = Some(e.to_string());
            return;
        }
    };
    if let Err(e) = bed.set_rate(rate) {
        rec.run.reason = Some(format!("cannot set the link rate: {e}"));
        return;
    }
    let g = w.guest(opts, name);
    let info = match start_guest(bed, &g, files, stop).await {
        Ok(s) => s.info,
        Err(e) => {
            rec.run.reason = Some(format!("{e:#}"));
            return;
        }
    };
    let pause = if w == Wl::Phase {
        match WriterPause::start(&info).await {
            Ok(p) => Some(p),
            Err(e) => {
                rec.run.reason = Some(format!("cannot pause the guest's writer: {e:#}"));
                return;
            }
        }
    } else {
        None
    };
    eprintln!(
        "  letting it run {:.0} s so the agent measures it",
        opts.prior_wait
    );
    if !wait_prior(Duration::from_secs_f64(opts.prior_wait), stop).await {
        if let Some(p) = pause {
            let _ = p.finish().await;
        }
        return;
    }
    rec.guest_write_mbps = guest_rates(&bed.hosts, name).await.0;
    match predict_before(bed, name).await {
        Ok(p) => rec.before = Some(Before::from(&p)),
        Err(e) => eprintln!("  (no prediction before the start: {e:#})"),
    }
    // When to change what.
    let mut what = Vec::new();
    if l == Link::Changing {
        what.push(format!("link {FAST} -> {CHANGED}"));
    }
    if w == Wl::Phase {
        what.push("writer starts".to_string());
    }
    if !what.is_empty() {
        let (expected_ms, from) = match (expected, &rec.before) {
            (Some(((rw, rl), ms)), _) => {
                (ms, format!("{} over {}, actual", rw.as_str(), rl.as_str()))
            }
            (None, Some(b)) => (
                b.total_ms,
                "Pacer's prediction before the start".to_string(),
            ),
            (None, None) => (10_000, "no reference: 10 s assumed".to_string()),
        };
        rec.change = Some(Change {
            what,
            expected_ms,
            expected_from: from,
            planned_ms: (expected_ms as f64 * opts.change_at) as u64,
            made_ms: None,
            made_job_ms: None,
        });
    }
    let req = match precopy_request(bed) {
        Ok(r) => r,
        Err(e) => {
            rec.run.reason = Some(format!("{e:#}"));
            return;
        }
    };
    eprintln!(
        "  migrating to h2 over {} (guest writes {} MB/s now{})",
        l.start_rate(),
        rec.guest_write_mbps
            .map(|v| format!("{v:.1}"))
            .unwrap_or("?".into()),
        rec.before
            .as_ref()
            .map(|b| format!("; Pacer predicts {:.1} s", b.total_ms as f64 / 1000.0))
            .unwrap_or_default()
    );
    let limit = migration_limit(
        LIMIT_BASE,
        opts.memory,
        g.disk_size.unwrap_or(0),
        l.slowest_bps(),
    );
    let changed_bps = crate::net::parse_rate(CHANGED).unwrap_or(300_000_000);
    let mut change = rec.change.clone();
    let mut link_error = None;
    let followed = {
        let bed_ref = &*bed;
        let pause_ref = pause.as_ref();
        follow_migration(bed_ref, name, &req, limit, stop, |at, j| {
            let Some(c) = change.as_mut() else { return };
            if c.made_ms.is_some() || at.as_millis() < c.planned_ms as u128 {
                return;
            }
            if l == Link::Changing {
                if let Err(e) = bed_ref.bed.set_rate(None, changed_bps) {
                    link_error = Some(format!("cannot change the link rate: {e}"));
                }
            }
            if let Some(p) = pause_ref {
                p.release();
            }
            c.made_ms = Some(at.as_millis() as u64);
            c.made_job_ms = Some(j.progress.elapsed_ms);
            eprintln!("  {:.1} s: {}", at.as_secs_f64(), c.what.join(" and "));
        })
        .await
    };
    // The closure changed the link behind the bed's back: tell it.
    if change.as_ref().is_some_and(|c| c.made_ms.is_some()) && l == Link::Changing {
        bed.rate_bps = changed_bps;
    }
    rec.change = change;
    if let Some(p) = pause {
        match p.finish().await {
            Ok(n) => rec.pause_sweeps = Some(n),
            Err(e) => eprintln!("  warning: {e:#}"),
        }
    }
    rec.run.reason = link_error;
    rec.take(followed, opts.memory);
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacer_api::{JobPhase, MigrationResult, PredictionPoint};

    fn opts() -> PredictOpts {
        PredictOpts {
            runs: 1,
            out: "x.json".into(),
            quick: false,
            scenarios: None,
            links: None,
            memory: 1024,
            wss: 256,
            write_rate: 15.0,
            disk_size: 1 << 30,
            disk_write_rate: 10.0,
            prior_wait: 20.0,
            change_at: 0.4,
        }
    }

    fn pt(elapsed_ms: u64, total_ms: u64, naive: Option<u64>) -> PredictionPoint {
        PredictionPoint {
            elapsed_ms,
            total_ms: Some(total_ms),
            low_ms: total_ms.saturating_sub(500),
            high_ms: Some(total_ms + 500),
            downtime_ms: 100,
            naive_total_ms: naive,
            ..Default::default()
        }
    }

    fn done(w: Wl, l: Link, repeat: u32, actual: u64, points: Vec<PredictionPoint>) -> PredictRun {
        let mut r = PredictRun::new(w, l, repeat, 0);
        let res: MigrationResult = serde_json::from_value(json!({
            "status": "completed", "vm": "v", "strategy": "pre-copy", "total_time_ms": actual,
            "downtime_ms": 200, "bytes_transferred": 300_000_000u64, "source": "h1",
            "destination": "h2", "vm_location": "h2", "reason": null, "qemu_total_time_ms": 1,
            "rounds": 4, "precopy_bytes": 1, "downtime_bytes": 1, "postcopy_bytes": 0,
            "integrity": {"ok": true, "pages_checked": 1, "bad_pages": 0, "errors_total": 0,
                          "duration_ms": 1},
            "predictions": points,
        }))
        .unwrap();
        r.run.fill(&res);
        r.score(1024);
        r
    }

    #[test]
    fn option_parsing_and_filters() {
        assert_eq!(parse_wl("bursty"), Ok(Wl::Skewed));
        assert!(parse_wl("spiky").unwrap_err().contains("unknown scenario"));
        assert!(parse_wl("").is_err());
        assert_eq!(parse_link("changing"), Ok(Link::Changing));
        assert!(parse_link("10gbit").is_err());
        assert!(parse_fraction("0.4").is_ok());
        assert!(parse_fraction("1.5").is_err());
        assert!(parse_disk_size("100K").is_err());
        assert_eq!(parse_disk_size("1G"), Ok(1 << 30));
        assert!(parse_disk_rate("0").is_err());
        let mut o = opts();
        assert_eq!(o.workloads().len(), 5);
        assert_eq!(o.links(), ALL_LINKS);
        o.quick = true;
        assert_eq!(o.workloads(), [Wl::Steady, Wl::Phase]);
        assert_eq!(o.links(), [Link::Fast, Link::Changing]);
        o.scenarios = Some(vec![Wl::Disk, Wl::Idle, Wl::Disk]);
        assert_eq!(o.workloads(), [Wl::Idle, Wl::Disk]);
        assert!(o.validate().is_ok());
        let mut o = opts();
        o.write_rate = 30.0;
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("would not converge"));
        o.links = Some(vec![Link::Fast]);
        assert!(o.validate().is_ok());
        let mut o = opts();
        o.wss = 1000;
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("does not fit"));
        o = opts();
        o.scenarios = Some(vec![]);
        assert!(o.validate().is_err());
    }

    #[test]
    fn references_and_plan() {
        assert_eq!(reference_of(Wl::Steady, Link::Fast), None);
        assert_eq!(
            reference_of(Wl::Steady, Link::Changing),
            Some((Wl::Steady, Link::Fast))
        );
        assert_eq!(
            reference_of(Wl::Phase, Link::Slow),
            Some((Wl::Idle, Link::Slow))
        );
        assert_eq!(
            reference_of(Wl::Phase, Link::Changing),
            Some((Wl::Idle, Link::Fast))
        );
        let p = plan(&[Wl::Idle, Wl::Phase], &[Link::Fast, Link::Changing], 2);
        assert_eq!(p.len(), 8);
        assert_eq!(p[1], (1, Wl::Idle, Link::Changing));
        assert_eq!(p[4], (2, Wl::Idle, Link::Fast));
        let g = Wl::Skewed.guest(&opts(), "v");
        assert_eq!(
            (g.workload.hot_fraction, g.workload.hot_share),
            (HOT_FRACTION, HOT_SHARE)
        );
        assert!(Wl::Disk.guest(&opts(), "v").disk_size.is_some());
        assert_eq!(Wl::Idle.guest(&opts(), "v").workload.kind, "idle");
    }

    #[test]
    fn bench_naive_from_progress() {
        let s = |elapsed_ms, phase, remaining, rate_bps, disk: Option<(u64, f64)>| Sample {
            at_ms: elapsed_ms,
            elapsed_ms,
            phase,
            transferred: 0,
            remaining,
            rate_bps,
            disk_remaining: disk.map(|d| d.0),
            disk_rate_bps: disk.map(|d| d.1),
            prediction: None,
            target: None,
        };
        let samples = [
            s(0, JobPhase::Preparing, 0, 0.0, None),
            s(
                1000,
                JobPhase::DiskBulkCopy,
                0,
                0.0,
                Some((900_000_000, 100e6)),
            ),
            s(20_000, JobPhase::PreCopy, 50_000_000, 100e6, None),
        ];
        // Records write the phase in words.
        let written = serde_json::to_value(&samples[1]).unwrap();
        assert_eq!(written["phase"], "disk bulk copy");
        assert!(samples[1].copying_disks() && !samples[2].copying_disks());
        let e = bench_naive(&samples, 100_000_000);
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[0],
            Estimate {
                at_ms: 1000,
                total_ms: 11_000
            }
        );
        assert_eq!(
            e[1],
            Estimate {
                at_ms: 20_000,
                total_ms: 20_500
            }
        );
    }

    #[test]
    fn table_and_goals() {
        let good = vec![
            pt(1000, 11000, Some(20000)),
            pt(2000, 10300, Some(16000)),
            pt(5000, 10100, Some(12000)),
            pt(7000, 10000, Some(10500)),
            pt(10000, 10000, Some(10000)),
        ];
        let bad = vec![
            pt(1000, 30000, Some(12000)),
            pt(3000, 20000, Some(11000)),
            pt(6000, 15000, Some(10500)),
        ];
        let mut runs = vec![
            done(Wl::Steady, Link::Fast, 1, 10000, good.clone()),
            done(Wl::Steady, Link::Changing, 1, 10000, bad),
        ];
        let mut failed = PredictRun::new(Wl::Idle, Link::Fast, 1, 3);
        failed.run.status = "failed".into();
        failed.run.reason = Some("boom".into());
        runs.push(failed);
        let order = [
            (Wl::Idle, Link::Fast),
            (Wl::Steady, Link::Fast),
            (Wl::Steady, Link::Changing),
        ];
        let t = render_table(&order, &runs, &opts());
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].contains("Pacer |error| at"), "{t}");
        assert!(
            lines[1].starts_with("workload link            actual    10%    25%"),
            "{t}"
        );
        assert!(lines[2].starts_with("idle     1gbit           -"), "{t}");
        assert!(lines[2].ends_with("FAILED"), "{t}");
        // steady 1gbit: at 1 s 10%, 2.5 s 3%, 5 s 1%, 7.5 s 0%; naive 100% 60% 20% 5%.
        assert_eq!(
            lines[3],
            "steady   1gbit           10.00 s   10.0%  3.0%   1.0%   0.0%     100%   60.0%  20.0%  5.0%     1.0%    20.0%   -        ok"
        );
        assert!(lines[4].contains("MISSED both"), "{t}");
        assert!(lines[5].starts_with("median   (all runs)"), "{t}");
        assert!(t.contains("in every scenario: NOT MET"), "{t}");
        assert!(t.contains("not in steady 1gbit->300mbit (100%)"), "{t}");
        assert!(
            t.contains("below naive: not in steady 1gbit->300mbit"),
            "{t}"
        );
        assert!(
            t.contains("not scored (no completed run): idle 1gbit"),
            "{t}"
        );
        assert!(t.contains("idle 1gbit run 1: failed: boom"), "{t}");
        // Only the good row: the goals hold.
        let rows = [summarize(Wl::Steady, Link::Fast, &runs)];
        let g = goals(&rows, &runs[..1]);
        assert!(g.met && g.within_5pct_everywhere && g.below_naive_everywhere);
        assert_eq!(g.overall_pacer, Some(0.01));
        // The plot of the good run.
        let c = chart(&runs[0], 1 << 30).unwrap().to_svg();
        assert!(c.contains("actual total 10.00 s"));
        assert!(c.contains("<polygon"));
        assert!(chart(&runs[2], 1 << 30).is_none());
    }
}
