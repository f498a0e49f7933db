//! `pacer-lab bench predict` answers "how good is Pacer's finish-time prediction?":
//! it migrates guests with different workloads over different links (some of
//! which change their rate mid-migration) and scores the total time Pacer
//! predicted, once a second, against the actual one, beside the naive estimate
//! (elapsed + bytes left / current rate) the agent records at the same moments;
//! how often Pacer's 80% band held the actual total and how wide it was; for a
//! migration that does not converge, how soon Pacer said so; and its prediction
//! before the start.
//!
//! Workloads (a 1 GiB guest, 256 MiB working set by default):
//! - `idle`: the working set filled once, then no writes;
//! - `steady`: uniform writes at `--write-rate`;
//! - `skewed`: the same rate, 80% of it to a hot 1% of the working set (the guest
//!   writes at a fixed rate, so "bursty" can only mean skewed in space);
//! - `phase`: the same writer, started paused and resumed (the guest's `resume`
//!   console command) at `--change-at` of the expected duration: the phase
//!   changes mid-migration;
//! - `disk`: a qcow2 disk the guest filled at boot and writes at
//!   `--disk-write-rate`, memory written at 5 MB/s;
//! - the convergence edge, `edge-0.8`, `edge-1.0`, `edge-1.2`: uniform writes at
//!   that ratio of the link's rate (after its change, if it changes) over half the
//!   guest's memory, far more than a downtime's worth: run over 200 Mbit/s
//!   (20, 25, 30 MB/s), and `edge-1.2` also over `falling` (1 Gbit/s, then
//!   200 Mbit/s: 30 MB/s converges on the fast link and does not once it falls);
//! - real applications, `redis`, `memcached`, `stress` (stress-ng), `zstd`, from the
//!   image's initrd-apps.img: the data set is `--wss`, the load aims at `--write-rate`
//!   (what each really dirties is in docs/guest.md); the guest program's own pages
//!   are then a 4 MiB idle canary.
//!
//! Links: 1 Gbit/s, 200 Mbit/s, 1 Gbit/s dropping to 300 Mbit/s (`changing`),
//! 200 Mbit/s rising to 1 Gbit/s (`rising`) and 1 Gbit/s dropping to 200 Mbit/s
//! (`falling`), each change at `--change-at` of the expected duration (the same
//! workload's run over the starting link, else Pacer's prediction before the
//! start, else one pass of the guest's memory over the starting link).
//!
//! A run whose migration is still going at its time limit is cancelled (the VM
//! stays at the source: checked) and recorded as `not-converged`; one that is
//! bound not to converge (dirty rate above the link) is cancelled 20 s after
//! Pacer said so, and has a short limit otherwise. Such a run is scored by when
//! Pacer first said "does not converge" after the condition became true.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use pacer_api::{JobStatus, PredictResponse, VmState};
use pacer_guest_proto::Command;
use serde::{Serialize, Serializer};
use serde_json::json;
use tokio::sync::watch;

use super::harness::{
    console_command, follow_migration_until, migration_limit, parse_prior_wait, plot_path,
    precopy_request, predict_before, prediction_chart_of, wait_prior, write_svg, Followed, Sample,
    LIMIT_BASE,
};
use super::plot::{Chart, Line, Rule, PALETTE};
use super::record::{MigrationRecord, Row};
use super::score::{
    band_score, errors_at_fractions, in_force_ms, is_stuck, naive_errors, pacer_estimates, pct,
    recognised_after, rel_error, BandPool, BandScore, Estimate, Verdict, BAND_COVERAGE, BAND_GOAL,
    FRACTIONS, GOAL_BEFORE_ERROR, GOAL_MAX_ERROR, GOAL_RECOGNISED_MS, NEVER_MS,
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
/// A writer below this share of the link is expected to converge; above
/// [`STUCK_ABOVE`], not to; in between, either way.
const CONVERGES_BELOW: f64 = 0.95;
const STUCK_ABOVE: f64 = 1.05;
/// A run expected not to converge is cancelled this long after Pacer said so
/// (the verdict should stay meanwhile).
const GIVE_UP_AFTER_MS: u64 = 20_000;
/// The time limit of a run expected not to converge, from the moment the
/// condition becomes true (the start, or the link's change).
const STUCK_LIMIT: Duration = Duration::from_secs(60);
/// The time limit of a run at the edge (either way), from that moment.
const EDGE_LIMIT: Duration = Duration::from_secs(180);
/// Whether this guest image runs real applications (`pacer_api::Workload::app`,
/// set by [`Wl::guest`] from [`AppKind::spec`]); recorded in the results.
pub const GUEST_HAS_APPS: bool = true;
/// The guest program's own pages beside an application: an idle canary.
const APP_CANARY_MIB: u64 = 4;

/// A ratio of the edge family: the guest's writer at this share of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Edge {
    /// 0.8x: converges, slowly.
    Below,
    /// 1.0x: either way.
    At,
    /// 1.2x: does not converge.
    Above,
}

impl Edge {
    /// The writer's share of the link's rate.
    pub fn ratio(self) -> f64 {
        match self {
            Edge::Below => 0.8,
            Edge::At => 1.0,
            Edge::Above => 1.2,
        }
    }
}

/// A real application in the guest, as a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AppKind {
    /// redis-server with a load generator writing keys.
    Redis,
    /// memcached with a load generator setting items.
    Memcached,
    /// stress-ng's virtual-memory stressor.
    Stress,
    /// zstd compressing a data set in memory, over and over.
    Zstd,
}

/// What a guest running an application is asked for: `pacer_api::AppWorkload`'s
/// fields (`kind`, `mib`, `rate`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AppSpec {
    /// The application, in the guest's word.
    pub kind: &'static str,
    /// Its data set, MiB.
    pub mib: u64,
    /// The rate its load aims at, MB/s written.
    pub rate: f64,
}

impl AppKind {
    fn as_str(self) -> &'static str {
        match self {
            AppKind::Redis => "redis",
            AppKind::Memcached => "memcached",
            AppKind::Stress => "stress",
            AppKind::Zstd => "zstd",
        }
    }

    /// The program the guest runs.
    fn program(self) -> &'static str {
        match self {
            AppKind::Stress => "stress-ng",
            k => k.as_str(),
        }
    }

    /// The application's data set is `--app-mib`, its load the write rate.
    pub fn spec(self, o: &PredictOpts) -> AppSpec {
        AppSpec {
            kind: self.program(),
            mib: o.app_mib,
            rate: o.write_rate,
        }
    }
}

/// A guest workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    /// Uniform writes at a ratio of the link.
    Edge(Edge),
    /// A real application.
    App(AppKind),
}

/// Every workload, in the order of the table.
const ALL_WL: [Wl; 12] = [
    Wl::Idle,
    Wl::Steady,
    Wl::Skewed,
    Wl::Phase,
    Wl::Disk,
    Wl::Edge(Edge::Below),
    Wl::Edge(Edge::At),
    Wl::Edge(Edge::Above),
    Wl::App(AppKind::Redis),
    Wl::App(AppKind::Memcached),
    Wl::App(AppKind::Stress),
    Wl::App(AppKind::Zstd),
];

/// The workloads run when none are named: all, the applications only once the
/// guest image has them.
fn default_workloads() -> Vec<Wl> {
    ALL_WL
        .iter()
        .copied()
        .filter(|w| GUEST_HAS_APPS || !matches!(w, Wl::App(_)))
        .collect()
}

impl Serialize for Wl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Wl {
    fn as_str(self) -> &'static str {
        match self {
            Wl::Idle => "idle",
            Wl::Steady => "steady",
            Wl::Skewed => "skewed",
            Wl::Phase => "phase",
            Wl::Disk => "disk",
            Wl::Edge(Edge::Below) => "edge-0.8",
            Wl::Edge(Edge::At) => "edge-1.0",
            Wl::Edge(Edge::Above) => "edge-1.2",
            Wl::App(a) => a.as_str(),
        }
    }

    /// The links it runs over when none are named.
    fn default_links(self) -> Vec<Link> {
        match self {
            Wl::Edge(Edge::Above) => vec![Link::Slow, Link::Falling],
            Wl::Edge(_) => vec![Link::Slow],
            // An application fills its data set at boot (minutes under TCG): the
            // slow link, where the issue's key-value store took 82 s, and a change.
            Wl::App(_) => vec![Link::Slow, Link::Changing],
            _ => vec![Link::Fast, Link::Slow, Link::Changing, Link::Rising],
        }
    }

    /// The edge family's working set, MiB: half the guest's memory.
    fn edge_wss(o: &PredictOpts) -> u64 {
        o.memory / 2
    }

    /// The memory writer's rate over `l` once it writes, MB/s (None: an
    /// application's own).
    fn write_mbps(self, o: &PredictOpts, l: Link) -> Option<f64> {
        match self {
            Wl::Idle => Some(0.0),
            Wl::Steady | Wl::Skewed | Wl::Phase => Some(o.write_rate),
            Wl::Disk => Some(DISK_MEM_RATE),
            Wl::Edge(e) => Some(e.ratio() * l.end_mbps()),
            Wl::App(_) => None,
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
                "{g} guest whose {} MB/s writer over {w} starts paused and is resumed (its \
                 `resume` command) at {:.0}% of the expected duration",
                o.write_rate,
                o.change_at * 100.0
            ),
            Wl::Disk => format!(
                "{g} guest writing {DISK_MEM_RATE} MB/s over {w}, with a {} qcow2 disk it filled \
                 at boot and writes {} MB/s (uniform 64 KiB)",
                pacer_model::format_bytes(o.disk_size),
                o.disk_write_rate
            ),
            Wl::Edge(e) => format!(
                "{g} guest writing {}x the link's rate (after its change, if it changes) \
                 uniformly over {} (half its memory): {:.0} MB/s over 200mbit",
                e.ratio(),
                pacer_model::format_bytes(Wl::edge_wss(o) << 20),
                e.ratio() * Link::Slow.end_mbps()
            ),
            Wl::App(a) => {
                let s = a.spec(o);
                format!(
                    "{g} guest running {} over a {} data set, its load aiming at {} MB/s",
                    s.kind,
                    pacer_model::format_bytes(s.mib << 20),
                    s.rate
                )
            }
        }
    }

    /// The guest to start for a run over `l`.
    fn guest(self, o: &PredictOpts, name: &str, l: Link) -> Result<GuestPlan> {
        Ok(match self {
            Wl::Idle => GuestPlan::memory(name, o.memory, o.wss, 0.0),
            Wl::Steady => GuestPlan::memory(name, o.memory, o.wss, o.write_rate),
            Wl::Phase => {
                let mut g = GuestPlan::memory(name, o.memory, o.wss, o.write_rate);
                g.workload.paused = true;
                g
            }
            Wl::Skewed => {
                let mut g = GuestPlan::memory(name, o.memory, o.wss, o.write_rate);
                g.workload.hot_fraction = HOT_FRACTION;
                g.workload.hot_share = HOT_SHARE;
                g
            }
            Wl::Disk => GuestPlan::memory(name, o.memory, o.wss, DISK_MEM_RATE)
                .with_disk(o.disk_size, o.disk_write_rate),
            Wl::Edge(e) => {
                GuestPlan::memory(name, o.memory, Wl::edge_wss(o), e.ratio() * l.end_mbps())
            }
            Wl::App(a) => {
                let s = a.spec(o);
                GuestPlan::memory(name, o.memory, APP_CANARY_MIB, 0.0).with_app(s.kind, s.mib, s.rate)
            }
        })
    }
}

/// The link of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
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
    /// 200 Mbit/s, then 1 Gbit/s.
    #[serde(rename = "200mbit->1gbit")]
    Rising,
    /// 1 Gbit/s, then 200 Mbit/s.
    #[serde(rename = "1gbit->200mbit")]
    Falling,
}

const ALL_LINKS: [Link; 5] = [
    Link::Fast,
    Link::Slow,
    Link::Changing,
    Link::Rising,
    Link::Falling,
];

impl Link {
    fn as_str(self) -> &'static str {
        match self {
            Link::Fast => "1gbit",
            Link::Slow => "200mbit",
            Link::Changing => "1gbit->300mbit",
            Link::Rising => "200mbit->1gbit",
            Link::Falling => "1gbit->200mbit",
        }
    }

    fn file_part(self) -> &'static str {
        match self {
            Link::Fast => "1gbit",
            Link::Slow => "200mbit",
            Link::Changing => "changing",
            Link::Rising => "rising",
            Link::Falling => "falling",
        }
    }

    fn start_rate(self) -> &'static str {
        match self {
            Link::Slow | Link::Rising => SLOW,
            _ => FAST,
        }
    }

    /// The rate after the change (the rate, when it does not change).
    fn end_rate(self) -> &'static str {
        match self {
            Link::Fast | Link::Rising => FAST,
            Link::Slow | Link::Falling => SLOW,
            Link::Changing => CHANGED,
        }
    }

    fn changes(self) -> bool {
        self.start_rate() != self.end_rate()
    }

    fn bps(rate: &str) -> u64 {
        crate::net::parse_rate(rate).unwrap_or(1)
    }

    /// The starting rate in MB/s (bytes: the tbf rate / 8).
    fn start_mbps(self) -> f64 {
        Link::bps(self.start_rate()) as f64 / 8e6
    }

    /// The rate after the change, MB/s.
    fn end_mbps(self) -> f64 {
        Link::bps(self.end_rate()) as f64 / 8e6
    }

    /// The slowest rate the run sees, bits/s.
    fn slowest_bps(self) -> u64 {
        Link::bps(self.start_rate()).min(Link::bps(self.end_rate()))
    }
}

fn parse_wl(s: &str) -> Result<Wl, String> {
    match s.trim() {
        "idle" => Ok(Wl::Idle),
        "steady" => Ok(Wl::Steady),
        "skewed" | "bursty" => Ok(Wl::Skewed),
        "phase" => Ok(Wl::Phase),
        "disk" => Ok(Wl::Disk),
        "edge-0.8" => Ok(Wl::Edge(Edge::Below)),
        "edge-1.0" | "edge-1" => Ok(Wl::Edge(Edge::At)),
        "edge-1.2" => Ok(Wl::Edge(Edge::Above)),
        "redis" => Ok(Wl::App(AppKind::Redis)),
        "memcached" => Ok(Wl::App(AppKind::Memcached)),
        "stress" | "stress-ng" => Ok(Wl::App(AppKind::Stress)),
        "zstd" => Ok(Wl::App(AppKind::Zstd)),
        "" => Err("empty scenario name: give a comma-separated list such as steady,phase".into()),
        o => Err(format!(
            "unknown scenario {o:?}: use idle, steady, skewed, phase, disk, edge-0.8, edge-1.0, \
             edge-1.2, redis, memcached, stress or zstd"
        )),
    }
}

fn parse_link(s: &str) -> Result<Link, String> {
    match s.trim() {
        "1gbit" | "fast" => Ok(Link::Fast),
        "200mbit" | "slow" => Ok(Link::Slow),
        "changing" | "1gbit->300mbit" => Ok(Link::Changing),
        "rising" | "200mbit->1gbit" => Ok(Link::Rising),
        "falling" | "1gbit->200mbit" => Ok(Link::Falling),
        "" => Err("empty link name: give a comma-separated list such as 1gbit,changing".into()),
        o => Err(format!(
            "unknown link {o:?}: use 1gbit, 200mbit, changing, rising or falling"
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
    /// Only steady and phase over 1gbit and changing, and edge-1.2 over 200mbit (5 runs).
    #[arg(long)]
    pub quick: bool,
    /// Workloads, comma-separated: idle, steady, skewed, phase, disk, edge-0.8,
    /// edge-1.0, edge-1.2, and the applications redis, memcached, stress, zstd (data
    /// set --wss, load aiming at --write-rate) [default: all].
    #[arg(long, value_delimiter = ',', value_parser = parse_wl)]
    pub scenarios: Option<Vec<Wl>>,
    /// Links, comma-separated: 1gbit, 200mbit, changing (1gbit -> 300mbit), rising
    /// (200mbit -> 1gbit), falling (1gbit -> 200mbit) [default: the first four, and
    /// for the edge family 200mbit (edge-1.2 also falling)].
    #[arg(long, value_delimiter = ',', value_parser = parse_link)]
    pub links: Option<Vec<Link>>,
    /// Guest memory.
    #[arg(long, default_value = "1G", value_parser = parse_mib)]
    pub memory: u64,
    /// Working set of the guest's memory writer (the edge family writes half the
    /// guest's memory).
    #[arg(long, default_value = "256M", value_parser = parse_mib)]
    pub wss: u64,
    /// Data set of the application workloads (filling it takes a while under TCG).
    #[arg(long, default_value = "128M", value_parser = parse_mib)]
    pub app_mib: u64,
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
            (None, true) => vec![Wl::Steady, Wl::Phase, Wl::Edge(Edge::Above)],
            (None, false) => default_workloads(),
        };
        ALL_WL
            .iter()
            .copied()
            .filter(|w| want.contains(w))
            .collect()
    }

    /// The links of workload `w`: those named, else its own.
    fn links_of(&self, w: Wl) -> Vec<Link> {
        let want = match (&self.links, self.quick) {
            (Some(v), _) => v.clone(),
            (None, true) if matches!(w, Wl::Edge(_)) => vec![Link::Slow],
            (None, true) => vec![Link::Fast, Link::Changing],
            (None, false) => w.default_links(),
        };
        ALL_LINKS
            .iter()
            .copied()
            .filter(|l| want.contains(l))
            .collect()
    }

    /// The rows of the table: every workload over each of its links.
    fn rows(&self) -> Vec<(Wl, Link)> {
        self.workloads()
            .into_iter()
            .flat_map(|w| self.links_of(w).into_iter().map(move |l| (w, l)))
            .collect()
    }

    /// Every link some row runs over.
    fn links(&self) -> Vec<Link> {
        let rows = self.rows();
        ALL_LINKS
            .iter()
            .copied()
            .filter(|l| rows.iter().any(|r| r.1 == *l))
            .collect()
    }

    fn validate(&self) -> Result<()> {
        if self.workloads().is_empty() {
            bail!("--scenarios is empty: give idle, steady, skewed, phase, disk or edge-1.2 (say)");
        }
        if self.links.as_ref().is_some_and(|l| l.is_empty()) || self.rows().is_empty() {
            bail!("--links is empty: give 1gbit, 200mbit, changing, rising or falling");
        }
        let rows = self.rows();
        if rows.iter().any(|r| !matches!(r.0, Wl::Edge(_))) {
            check_fits(self.wss, self.memory)?;
        }
        if rows.iter().any(|r| matches!(r.0, Wl::Edge(_))) {
            check_fits(Wl::edge_wss(self), self.memory)?;
        }
        let slowest = |pick: &dyn Fn(Wl) -> bool| {
            rows.iter()
                .filter(|r| pick(r.0))
                .map(|r| r.1.slowest_bps())
                .min()
                .map(|b| b as f64 / 8e6)
        };
        if let Some(slowest) = slowest(&|w| matches!(w, Wl::Steady | Wl::Skewed | Wl::Phase)) {
            if self.write_rate >= MAX_LINK_SHARE * slowest {
                bail!(
                    "--write-rate {} MB/s is too close to the slowest link ({slowest:.1} MB/s): \
                     pre-copy would not converge; give less than {:.1} MB/s or leave that link \
                     out (the edge-* scenarios are the ones meant for that)",
                    self.write_rate,
                    MAX_LINK_SHARE * slowest
                );
            }
        }
        if let Some(slowest) = slowest(&|w| w == Wl::Disk) {
            if self.disk_write_rate + DISK_MEM_RATE >= MAX_LINK_SHARE * slowest {
                bail!(
                    "--disk-write-rate {} MB/s plus the disk workload's {DISK_MEM_RATE} MB/s of \
                     memory writes is too close to the slowest link ({slowest:.1} MB/s)",
                    self.disk_write_rate
                );
            }
        }
        Ok(())
    }
}

/// What the bench expects of a run, from its writer's rate against the link's
/// rate at the end: it decides the time limit and whether the bench may give up
/// once Pacer says "does not converge"; the scoring goes by what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// The writer is well below the link.
    Converges,
    /// At the edge (or an application's writes: not known beforehand).
    Either,
    /// The writer is above the link.
    DoesNotConverge,
}

impl Expect {
    fn of(write_mbps: Option<f64>, l: Link) -> Expect {
        match write_mbps.map(|d| d / l.end_mbps()) {
            None => Expect::Either,
            Some(r) if r < CONVERGES_BELOW => Expect::Converges,
            Some(r) if r > STUCK_ABOVE => Expect::DoesNotConverge,
            Some(_) => Expect::Either,
        }
    }
}

/// What changed during a run, and when.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// `link` (rate change) and/or `writer` (the guest starts writing).
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

/// What `pacer predict` said before the start, in a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Said {
    /// It converges (a chance it completes of 0.9 or more).
    Converges,
    /// Both outcomes possible (a chance from 0.1 to 0.9).
    Either,
    /// It does not converge (a chance of 0.1 or less).
    DoesNotConverge,
}

impl Said {
    fn words(self) -> &'static str {
        match self {
            Said::Converges => "converges",
            Said::Either => "either way",
            Said::DoesNotConverge => "does not converge",
        }
    }
}

/// Pacer's prediction before the start.
#[derive(Debug, Clone, Serialize)]
pub struct Before {
    /// Predicted total, ms (None: pre-copy would not converge).
    pub total_ms: Option<u64>,
    /// Its band, ms.
    pub low_ms: u64,
    /// See `low_ms` (None: no late end).
    pub high_ms: Option<u64>,
    /// Whether pre-copy converges on its own at the measured figures.
    pub converges: bool,
    /// How likely it ends on its own, 0 to 1.
    pub completes_chance: f64,
    /// The finish if it converges, ms (near the edge).
    pub if_it_converges_ms: Option<u64>,
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
            total_ms: p.total_ms,
            low_ms: p.low_ms,
            high_ms: p.high_ms,
            converges: p.converges,
            completes_chance: p.completes_chance,
            if_it_converges_ms: p.if_it_converges.map(|f| f.total_ms),
            dirty_rate_bps: p.dirty_rate_bps,
            wss_bytes: p.wss_bytes,
            hot_bytes: p.hot_bytes,
            zero_fraction: p.zero_fraction,
            link_bps: p.link_bps,
        }
    }
}

impl Before {
    /// What it said: both outcomes when the chance is strictly between 0.1 and 0.9.
    pub fn said(&self) -> Said {
        let c = self.completes_chance;
        if c > 0.1 && c < 0.9 {
            Said::Either
        } else if self.total_ms.is_none() || !self.converges || c <= 0.1 {
            Said::DoesNotConverge
        } else {
            Said::Converges
        }
    }

    /// The finish it predicted if the migration ends: its total, or near the edge
    /// the finish if it converges (None: it said it does not converge).
    pub fn finish_ms(&self) -> Option<u64> {
        self.total_ms.or(match self.said() {
            Said::DoesNotConverge => None,
            _ => self.if_it_converges_ms,
        })
    }
}

/// The prediction before the start against what happened, for a run in which
/// nothing changed after the start.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BeforeVerdict {
    /// What it said.
    pub said: Said,
    /// Its chance that the migration ends on its own.
    pub completes_chance: f64,
    /// `completed` or `not-converged`.
    pub happened: String,
    /// Whether what it said held: "converges" and it completed, "does not
    /// converge" and it did not; "either way" holds both ways.
    pub matched: bool,
    /// For "either way": whether it leaned the right way (a chance of 0.5 or
    /// more and it completed, or less and it did not).
    pub leaned_right: Option<bool>,
}

impl BeforeVerdict {
    fn of(b: &Before, completed: bool) -> BeforeVerdict {
        let said = b.said();
        BeforeVerdict {
            said,
            completes_chance: b.completes_chance,
            happened: if completed {
                "completed"
            } else {
                "not-converged"
            }
            .into(),
            matched: match said {
                Said::Converges => completed,
                Said::DoesNotConverge => !completed,
                Said::Either => true,
            },
            leaned_right: (said == Said::Either)
                .then_some((b.completes_chance >= 0.5) == completed),
        }
    }
}

/// Where the VM was after the bench cancelled a migration that did not converge.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SourceCheck {
    /// It runs at the source in the same QEMU, and nothing runs it at the destination.
    pub ok: bool,
    /// Its state at the source, in the API's word (None: the source does not know it).
    pub state: Option<String>,
    /// The same QEMU process as before the migration.
    pub same_qemu: bool,
    /// The destination runs it (it should not).
    pub at_destination: bool,
}

/// The status of a run the bench cancelled because it did not converge.
pub const NOT_CONVERGED: &str = "not-converged";

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
    /// The guest's memory writer's rate once it writes, MB/s (None: an application's).
    pub write_target_mbps: Option<f64>,
    /// What the bench expected of it (from that rate against the link's).
    pub expect: Expect,
    /// Its time limit, s after the request.
    pub limit_s: u64,
    /// How it went (`status` is `not-converged` for a run the bench cancelled as
    /// not converging).
    #[serde(flatten)]
    pub run: MigrationRecord,
    /// Pacer's absolute error at 10, 25, 50, 75% of the actual duration (fraction of
    /// it; a "does not converge" prediction in force is an infinite error, written
    /// as a number above 1e9).
    pub pacer_errors: [Option<f64>; 4],
    /// The naive estimate's.
    pub naive_errors: [Option<f64>; 4],
    /// Which naive errors come from the bench's own estimate (no agent one then).
    pub naive_from_bench: [bool; 4],
    /// Pacer's band against the actual total (completed runs).
    pub band: Option<BandScore>,
    /// Pacer's prediction before the start.
    pub before: Option<Before>,
    /// Its absolute error (fraction of the actual; completed runs).
    pub before_error: Option<f64>,
    /// It against what happened, where nothing changed after the start.
    pub before_verdict: Option<BeforeVerdict>,
    /// The change made mid-migration.
    pub change: Option<Change>,
    /// Whether the guest answered the command resuming its writer (phase).
    pub writer_resumed: Option<bool>,
    /// When the condition (dirty rate above the link) became true, job ms: the
    /// start, or the link's change (runs that did not converge).
    pub condition_ms: Option<u64>,
    /// How long after it Pacer first said "does not converge", ms (None: never).
    pub recognised_ms: Option<u64>,
    /// After that, how long a converging prediction was in force again, ms.
    pub relapsed_ms: Option<u64>,
    /// How long a "does not converge" prediction was in force while the migration
    /// was converging, ms: in a completed run (from the start, or from a rising
    /// link's change when the writer was above the starting rate), or in one that
    /// did not converge, before the condition.
    pub wrong_stuck_ms: u64,
    /// How many such predictions there were.
    pub wrong_stuck_predictions: usize,
    /// Why the bench cancelled the migration (gave up, or its time limit).
    pub cut: Option<String>,
    /// Where the VM was after that.
    pub source_check: Option<SourceCheck>,
    /// The guest's memory write rate just before the migration (MB/s).
    pub guest_write_mbps: Option<f64>,
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
    fn new(workload: Wl, link: Link, repeat: u32, seq: usize, write: Option<f64>) -> Self {
        PredictRun {
            workload,
            link,
            repeat,
            seq,
            write_target_mbps: write,
            expect: Expect::of(write, link),
            limit_s: 0,
            run: MigrationRecord::default(),
            pacer_errors: [None; 4],
            naive_errors: [None; 4],
            naive_from_bench: [false; 4],
            band: None,
            before: None,
            before_error: None,
            before_verdict: None,
            change: None,
            writer_resumed: None,
            condition_ms: None,
            recognised_ms: None,
            relapsed_ms: None,
            wrong_stuck_ms: 0,
            wrong_stuck_predictions: 0,
            cut: None,
            source_check: None,
            guest_write_mbps: None,
            samples: Vec::new(),
            plot: None,
            started_unix_ms: unix_ms(),
            wall_ms: 0,
        }
    }

    fn completed(&self) -> bool {
        self.run.completed()
    }

    fn not_converged(&self) -> bool {
        self.run.status == NOT_CONVERGED
    }

    /// Completed, or cut short as not converging: an outcome to score.
    fn finished(&self) -> bool {
        self.completed() || self.not_converged()
    }

    /// Nothing changes after the start (no link change, no phase change).
    fn unchanged(&self) -> bool {
        !self.link.changes() && self.workload != Wl::Phase
    }

    /// The writer is at or above the starting link's rate: the condition holds
    /// from the start.
    fn over_at_start(&self) -> bool {
        self.write_target_mbps
            .is_some_and(|d| d >= CONVERGES_BELOW * self.link.start_mbps())
    }

    /// When the condition became true, job ms: the start when the writer is over
    /// the starting rate (or nothing else explains it), else the link's change.
    fn condition_job_ms(&self) -> Option<u64> {
        if self.over_at_start() || !self.link.changes() {
            Some(0)
        } else {
            self.change.as_ref().and_then(|c| c.made_job_ms)
        }
    }

    /// Takes the followed migration and scores it. A migration the bench
    /// cancelled (it gave up, or the time limit came) is `not-converged`.
    fn take(&mut self, f: Followed, memory_mib: u64) {
        self.run.take(&f);
        let cancelled = f
            .result
            .as_ref()
            .is_some_and(|r| r.status == JobStatus::Cancelled);
        if cancelled && (f.given_up || f.timed_out) {
            self.run.status = NOT_CONVERGED.into();
            self.cut = f.reason.clone();
        }
        self.samples = f.samples;
        self.score(memory_mib);
    }

    /// Scores a completed run's predictions, the naive estimate's, the band and
    /// the one before the start against the actual total; a run that did not
    /// converge by when Pacer said so.
    fn score(&mut self, memory_mib: u64) {
        let predictions = &self.run.predictions;
        if self.not_converged() {
            let end = predictions
                .iter()
                .map(|p| p.elapsed_ms)
                .chain(self.samples.iter().map(|s| s.elapsed_ms))
                .max()
                .unwrap_or(0);
            self.condition_ms = self.condition_job_ms();
            if let Some(c) = self.condition_ms {
                self.recognised_ms = recognised_after(predictions, c);
                self.relapsed_ms = self
                    .recognised_ms
                    .map(|r| in_force_ms(predictions, c + r, end + 1, |p| !is_stuck(p)).0);
                let (ms, n) = in_force_ms(predictions, 0, c, is_stuck);
                self.wrong_stuck_ms = ms;
                self.wrong_stuck_predictions = n;
            }
            if self.unchanged() {
                self.before_verdict = self.before.as_ref().map(|b| BeforeVerdict::of(b, false));
            }
            return;
        }
        let Some(actual) = self.run.total_time_ms.filter(|_| self.completed()) else {
            return;
        };
        self.pacer_errors = errors_at_fractions(&pacer_estimates(predictions), actual);
        let fallback = bench_naive(&self.samples, memory_mib << 20);
        let (n, flagged) = naive_errors(predictions, &fallback, actual);
        self.naive_errors = n;
        self.naive_from_bench = flagged;
        self.band = Some(band_score(predictions, actual));
        // "Does not converge" is right only while a rising link had not risen yet.
        let justified = match (&self.change, self.over_at_start() && self.link.changes()) {
            (Some(c), true) => c.made_job_ms.unwrap_or(actual),
            _ => 0,
        };
        let (ms, count) = in_force_ms(predictions, justified, actual, is_stuck);
        self.wrong_stuck_ms = ms;
        self.wrong_stuck_predictions = count;
        self.before_error = self
            .before
            .as_ref()
            .and_then(|b| rel_error(b.finish_ms().unwrap_or(NEVER_MS), actual));
        if self.unchanged() {
            self.before_verdict = self.before.as_ref().map(|b| BeforeVerdict::of(b, true));
        }
    }

    fn tag(&self) -> String {
        format!(
            "{} {} run {}",
            self.workload.as_str(),
            self.link.as_str(),
            self.repeat
        )
    }

    fn outcome_line(&self) -> String {
        if self.not_converged() {
            return format!(
                "did not converge: {}; cancelled ({})",
                self.recognition_words(),
                self.cut.as_deref().unwrap_or("no reason given")
            );
        }
        if let Some(f) = self.run.failure() {
            return f;
        }
        let cells = |e: &[Option<f64>; 4]| e.map(pct).join(" ");
        format!(
            "completed in {}; error at 10/25/50/75%: Pacer {}, naive {}; band held it in {}",
            fmt_total(self.run.total_time_ms.map(|v| v as f64)),
            cells(&self.pacer_errors),
            cells(&self.naive_errors),
            pct(self.band.as_ref().and_then(|b| b.coverage()))
        )
    }

    /// `condition at 0.0 s (the start), Pacer said so 2.1 s after`.
    fn recognition_words(&self) -> String {
        let Some(c) = self.condition_ms else {
            return "the condition (dirty rate above the link) never came: the link did not change"
                .into();
        };
        let when = if c == 0 && self.over_at_start() {
            "the start".to_string()
        } else if c == 0 {
            "the start (unexpected: the writer is below the link)".to_string()
        } else {
            format!("the link's change to {}", self.link.end_rate())
        };
        let said = match self.recognised_ms {
            Some(r) => format!(
                "Pacer said it does not converge {:.1} s after",
                r as f64 / 1000.0
            ),
            None => "Pacer never said it does not converge".into(),
        };
        format!("condition at {:.1} s ({when}), {said}", c as f64 / 1000.0)
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

/// When the bench gives up on a migration expected not to converge: once the
/// first "does not converge" prediction made at or after the condition
/// (`condition_ms`, job time; None: not yet true) is [`GIVE_UP_AFTER_MS`] old at
/// `now_ms`. Returns that prediction's time.
pub fn give_up_at(
    points: &[pacer_api::PredictionPoint],
    condition_ms: Option<u64>,
    now_ms: u64,
) -> Option<u64> {
    let first = condition_ms.and_then(|c| {
        points
            .iter()
            .filter(|p| p.elapsed_ms >= c && is_stuck(p))
            .map(|p| p.elapsed_ms)
            .min()
    })?;
    (now_ms >= first + GIVE_UP_AFTER_MS).then_some(first)
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
    /// Runs cancelled as not converging.
    pub not_converged: usize,
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
    /// The goal's verdict (completed runs).
    pub verdict: Verdict,
    /// The band over the completed runs.
    pub band: BandPool,
    /// When Pacer recognised each not-converged run, ms after the condition.
    pub recognised_ms: Vec<Option<u64>>,
    /// The latest of them (None: none, or one never recognised).
    pub recognised_max_ms: Option<u64>,
    /// Every not-converged run recognised within 5 s (None: there was none).
    pub recognised_ok: Option<bool>,
    /// "Does not converge" in force while the migration converged, ms, over the runs.
    pub wrong_stuck_ms: u64,
    /// Nothing changes after the start: the prediction before it is scored.
    pub before_scored: bool,
    /// That prediction's goal in this row (None: not scored here).
    pub before_ok: Option<bool>,
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
    let stuck: Vec<&&PredictRun> = row.all.iter().filter(|r| r.not_converged()).collect();
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
    let recognised: Vec<Option<u64>> = stuck.iter().map(|r| r.recognised_ms).collect();
    let recognised_ok = (!recognised.is_empty()).then(|| {
        recognised
            .iter()
            .all(|r| r.is_some_and(|ms| ms <= GOAL_RECOGNISED_MS))
    });
    let recognised_max_ms = if recognised.iter().any(|r| r.is_none()) {
        None
    } else {
        recognised.iter().flatten().copied().max()
    };
    let before = median(
        &done
            .iter()
            .filter_map(|r| r.before_error)
            .collect::<Vec<_>>(),
    );
    let before_scored = !l.changes() && w != Wl::Phase;
    let before_ok = if before_scored {
        let verdicts: Vec<&BeforeVerdict> = row
            .all
            .iter()
            .filter_map(|r| r.before_verdict.as_ref())
            .collect();
        let close = before.map(|e| e <= GOAL_BEFORE_ERROR);
        let right = (!verdicts.is_empty()).then(|| verdicts.iter().all(|v| v.matched));
        match (close, right) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(true) && b.unwrap_or(true)),
        }
    } else {
        None
    };
    RowSummary {
        workload: w,
        link: l,
        runs: row.all.len(),
        completed: done.len(),
        not_converged: stuck.len(),
        total_time_ms: row.median(|r| r.run.total_time_ms),
        pacer: med_cols(done, |r| r.pacer_errors),
        naive: med_cols(done, |r| r.naive_errors),
        naive_from_bench: flagged,
        before,
        verdict: Verdict::of(&pairs),
        band: BandPool::of(done.iter().filter_map(|r| r.band.as_ref())),
        recognised_ms: recognised,
        recognised_max_ms,
        recognised_ok,
        wrong_stuck_ms: row.all.iter().map(|r| r.wrong_stuck_ms).sum(),
        before_scored,
        before_ok,
    }
}

/// One goal of the issue, and how it went.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GoalLine {
    /// Short name: `accuracy`, `naive`, `recognition`, `band`, `before`.
    pub name: &'static str,
    /// The goal in words.
    pub goal: String,
    /// Met (None: nothing to score it on).
    pub met: Option<bool>,
    /// The figures behind the verdict.
    pub figures: String,
    /// Where it is not met (or could not be scored), and why.
    pub not_met_in: Vec<String>,
}

/// The goals over all rows.
#[derive(Debug, Clone, Serialize)]
pub struct Goals {
    /// Every row's Pacer median from 25% on is at most 5%.
    pub within_5pct_everywhere: bool,
    /// Every row's Pacer median is below the naive one's.
    pub below_naive_everywhere: bool,
    /// Every goal with something to score is met, and every row has an outcome.
    pub met: bool,
    /// Median over every completed run and point from 25% on.
    pub overall_pacer: Option<f64>,
    /// The same for the naive estimate.
    pub overall_naive: Option<f64>,
    /// The band over every completed run.
    pub band: BandPool,
    /// Runs that did not converge.
    pub not_converged: usize,
    /// The latest recognition among them, ms after the condition (None: none, or
    /// one never recognised).
    pub recognised_max_ms: Option<u64>,
    /// "Does not converge" in force while migrations converged, ms, over all runs.
    pub wrong_stuck_ms: u64,
    /// Median error of the prediction before the start where nothing changes.
    pub before_unchanged: Option<f64>,
    /// Each goal of the issue.
    pub list: Vec<GoalLine>,
}

fn row_name(r: &RowSummary) -> String {
    format!("{} {}", r.workload.as_str(), r.link.as_str())
}

fn ms_words(ms: Option<u64>) -> String {
    ms.map(|v| format!("{:.1} s", v as f64 / 1000.0))
        .unwrap_or_else(|| "never".into())
}

/// The goals' verdict.
pub fn goals(rows: &[RowSummary], runs: &[PredictRun]) -> Goals {
    let scored: Vec<&RowSummary> = rows
        .iter()
        .filter(|r| r.verdict.within_goal.is_some())
        .collect();
    let within = scored.iter().all(|r| r.verdict.within_goal == Some(true));
    let below = scored.iter().all(|r| r.verdict.beats_naive == Some(true));
    let done: Vec<&PredictRun> = runs.iter().filter(|r| r.completed()).collect();
    let all = Verdict::of(
        &done
            .iter()
            .map(|r| (r.pacer_errors, r.naive_errors))
            .collect::<Vec<_>>(),
    );
    let no_outcome: Vec<String> = rows
        .iter()
        .filter(|r| r.completed == 0 && r.not_converged == 0)
        .map(|r| format!("{} (no run finished)", row_name(r)))
        .collect();
    let mut list = Vec::new();

    // 1. Accuracy.
    let mut where1: Vec<String> = rows
        .iter()
        .filter(|r| r.verdict.within_goal == Some(false))
        .map(|r| format!("{} ({})", row_name(r), pct(r.verdict.pacer_median)))
        .collect();
    where1.extend(no_outcome.iter().cloned());
    let apps_run = rows
        .iter()
        .any(|r| matches!(r.workload, Wl::App(_)) && r.completed > 0);
    if !apps_run {
        where1.push(
            "real applications: none run (give --scenarios redis,memcached,stress,zstd)".into(),
        );
    }
    let worst = scored
        .iter()
        .filter_map(|r| r.verdict.pacer_median)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    list.push(GoalLine {
        name: "accuracy",
        goal: format!(
            "median |error| at most {:.0}% from 25% of the duration on, in every scenario \
             (real applications included)",
            GOAL_MAX_ERROR * 100.0
        ),
        met: (!scored.is_empty()).then_some(within && no_outcome.is_empty()),
        figures: format!(
            "overall {}, worst row {}, {} of {} rows scored",
            pct(all.pacer_median),
            pct(worst),
            scored.len(),
            rows.len()
        ),
        not_met_in: where1,
    });

    // 2. Below naive.
    let where2: Vec<String> = rows
        .iter()
        .filter(|r| r.verdict.beats_naive == Some(false))
        .map(|r| {
            format!(
                "{} ({} vs {})",
                row_name(r),
                pct(r.verdict.pacer_median),
                pct(r.verdict.naive_median)
            )
        })
        .collect();
    list.push(GoalLine {
        name: "naive",
        goal: "below the naive estimate's in every scenario".into(),
        met: (!scored.is_empty()).then_some(below),
        figures: format!(
            "overall Pacer {} vs naive {}",
            pct(all.pacer_median),
            pct(all.naive_median)
        ),
        not_met_in: where2,
    });

    // 3. Recognition.
    let stuck: Vec<&PredictRun> = runs.iter().filter(|r| r.not_converged()).collect();
    let late: Vec<String> = stuck
        .iter()
        .filter(|r| r.recognised_ms.is_none_or(|ms| ms > GOAL_RECOGNISED_MS))
        .map(|r| format!("{} ({})", r.tag(), ms_words(r.recognised_ms)))
        .collect();
    let recognised_max_ms = if stuck.iter().any(|r| r.recognised_ms.is_none()) {
        None
    } else {
        stuck.iter().filter_map(|r| r.recognised_ms).max()
    };
    list.push(GoalLine {
        name: "recognition",
        goal: format!(
            "a non-converging migration recognised within {} s of the condition, in every \
             such run",
            GOAL_RECOGNISED_MS / 1000
        ),
        met: (!stuck.is_empty()).then_some(late.is_empty()),
        figures: if stuck.is_empty() {
            "no run did not converge".into()
        } else {
            format!(
                "{} run(s) did not converge; recognised at the latest {} after the condition",
                stuck.len(),
                ms_words(recognised_max_ms)
            )
        },
        not_met_in: late,
    });

    // 4. Band.
    let band = BandPool::of(done.iter().filter_map(|r| r.band.as_ref()));
    let where4: Vec<String> = rows
        .iter()
        .filter(|r| r.band.within_goal() == Some(false))
        .map(|r| format!("{} ({})", row_name(r), pct(r.band.coverage)))
        .collect();
    list.push(GoalLine {
        name: "band",
        goal: format!(
            "{:.0}% bands covering {:.0}-{:.0}% of outcomes",
            BAND_COVERAGE * 100.0,
            BAND_GOAL.0 * 100.0,
            BAND_GOAL.1 * 100.0
        ),
        met: band.within_goal(),
        figures: format!(
            "{} of {} predictions ({}), mean width {} of the actual, {} with an open top",
            band.inside,
            band.scored,
            pct(band.coverage),
            pct(band.mean_width),
            band.open_top
        ),
        not_met_in: if band.within_goal() == Some(false) {
            where4
        } else {
            vec![]
        },
    });

    // 5. Before the start.
    let unchanged: Vec<&RowSummary> = rows.iter().filter(|r| r.before_scored).collect();
    let before_errs: Vec<f64> = runs
        .iter()
        .filter(|r| r.completed() && r.unchanged())
        .filter_map(|r| r.before_error)
        .collect();
    let before_unchanged = median(&before_errs);
    let mut where5: Vec<String> = unchanged
        .iter()
        .filter(|r| r.before_ok == Some(false))
        .map(|r| {
            let wrong: Vec<String> = runs
                .iter()
                .filter(|x| x.workload == r.workload && x.link == r.link)
                .filter_map(|x| x.before_verdict.as_ref())
                .filter(|v| !v.matched)
                .map(|v| format!("said {} and it {}", v.said.words(), v.happened))
                .collect();
            let mut s = format!("{} ({})", row_name(r), pct(r.before));
            if !wrong.is_empty() {
                s = format!("{s}: {}", wrong.join("; "));
            }
            s
        })
        .collect();
    if unchanged.iter().all(|r| r.before_ok.is_none()) && !unchanged.is_empty() {
        where5.push("no prediction before the start was made".into());
    }
    let before_met = if unchanged.iter().any(|r| r.before_ok.is_some()) {
        Some(unchanged.iter().all(|r| r.before_ok != Some(false)))
    } else {
        None
    };
    list.push(GoalLine {
        name: "before",
        goal: format!(
            "predictions before the start within {:.0}% where nothing changes after the start",
            GOAL_BEFORE_ERROR * 100.0
        ),
        met: before_met,
        figures: if unchanged.is_empty() {
            "no row without a change".into()
        } else {
            format!(
                "median {} over {} completed run(s) in {} row(s) without a change",
                pct(before_unchanged),
                before_errs.len(),
                unchanged.len()
            )
        },
        not_met_in: where5,
    });

    let met = list.iter().all(|g| g.met != Some(false))
        && list.iter().any(|g| g.met.is_some())
        && no_outcome.is_empty();
    Goals {
        within_5pct_everywhere: within,
        below_naive_everywhere: below,
        met,
        overall_pacer: all.pacer_median,
        overall_naive: all.naive_median,
        band,
        not_converged: stuck.len(),
        recognised_max_ms,
        wrong_stuck_ms: runs.iter().map(|r| r.wrong_stuck_ms).sum(),
        before_unchanged,
        list,
    }
}

fn cell(e: Option<f64>, flagged: bool) -> String {
    let mut s = pct(e);
    if flagged && e.is_some() {
        s.push('+');
    }
    s
}

/// The goal cell of a row: the completed runs' verdict, and the not-converged
/// runs' recognition.
fn goal_cell(r: &RowSummary) -> String {
    let mut parts = Vec::new();
    if r.completed > 0 {
        parts.push(r.verdict.word());
    }
    if r.not_converged > 0 {
        let w = if r.recognised_ok == Some(true) {
            "ok"
        } else {
            "MISSED 5 s"
        };
        parts.push(if r.completed > 0 {
            format!("{} not conv. {w}", r.not_converged)
        } else {
            w.to_string()
        });
    }
    if parts.is_empty() {
        return super::status_cell(r.runs, 0);
    }
    let failed = r.runs - r.completed - r.not_converged;
    let mut s = parts.join(", ");
    if failed > 0 {
        s.push_str(&format!(" (FAILED {failed}/{})", r.runs));
    }
    s
}

/// The table printed at the end, with the goals and notes.
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
        s.push_str(&format!(
            "{:<8}{:<8}{:<9}{:<7}{:<7}{:<8}{}",
            c[11], c[12], c[13], c[14], c[15], c[16], c[17]
        ));
        s.trim_end().to_string() + "\n"
    };
    let medians = if opts.runs > 1 {
        format!(" (medians of {} runs)", opts.runs)
    } else {
        String::new()
    };
    out.push_str(&format!(
        "{:<35}{:<30}{:<30}{:<25}{}{medians}\n",
        "", "Pacer |error| at", "naive |error| at", "from 25% on", "80% band"
    ));
    let head: Vec<String> = [
        "workload", "link", "actual", "10%", "25%", "50%", "75%", "10%", "25%", "50%", "75%",
        "Pacer", "naive", "before", "cover", "width", "recog", "goal",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    out.push_str(&line(&head));
    for r in &rows {
        let actual = if r.completed == 0 && r.not_converged > 0 {
            "not conv.".to_string()
        } else {
            fmt_total(r.total_time_ms)
        };
        let mut c = vec![
            r.workload.as_str().to_string(),
            r.link.as_str().to_string(),
            actual,
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
        c.push(pct(r.band.coverage));
        c.push(pct(r.band.mean_width));
        c.push(if r.not_converged > 0 {
            ms_words(r.recognised_max_ms)
        } else {
            "-".into()
        });
        c.push(goal_cell(r));
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
    c.push(pct(g.band.coverage));
    c.push(pct(g.band.mean_width));
    c.push(if g.not_converged > 0 {
        ms_words(g.recognised_max_ms)
    } else {
        "-".into()
    });
    c.push(String::new());
    out.push_str(&line(&c));

    out.push_str(
        "\n|error| = |predicted total - actual total| / actual total, of the prediction in force \
         (the last made) at 10, 25, 50 and 75% of the actual duration; '-': none made yet (the \
         first comes once the destination is ready); 'never': a \"does not converge\" \
         prediction in force in a migration that ended (an infinite error); 'before': Pacer's \
         prediction just before the start (`pacer predict`).\n",
    );
    out.push_str(&format!(
        "cover: the share of Pacer's predictions, from {:.0}% of the actual duration to its end, \
         whose {:.0}% band held the actual total (an open top holds any late finish); width: \
         the band's mean (high - low) / actual, open tops left out; recog: for a migration that \
         did not converge, how soon after the condition (dirty rate above the link: the start, \
         or the link's fall) Pacer first said so (the latest of the row's runs).\n",
        super::score::BAND_FROM * 100.0,
        BAND_COVERAGE * 100.0
    ));
    if rows.iter().any(|r| r.naive_from_bench.iter().any(|f| *f)) {
        out.push_str(
            "+: the agent records no naive estimate while disks are copied; this one is the \
             bench's own, from the job's progress (elapsed + disk and memory left / disk copy rate).\n",
        );
    }
    let at = |v: &[Option<f64>; 4]| v.map(pct).join(" ");
    out.push_str(&format!(
        "band at 10/25/50/75% (all completed runs): held the actual in {}; width {}\n",
        at(&g.band.coverage_at),
        at(&g.band.width_at)
    ));
    let open: Vec<String> = rows
        .iter()
        .filter(|r| r.band.open_top > 0)
        .map(|r| format!("{} {} of {}", row_name(r), r.band.open_top, r.band.scored))
        .collect();
    if !open.is_empty() {
        out.push_str(&format!(
            "bands with an open top (no late end; not in the widths): {}\n",
            open.join(", ")
        ));
    }

    let apps_run = rows
        .iter()
        .any(|r| matches!(r.workload, Wl::App(_)) && r.completed > 0);
    out.push_str(&format!(
        "\ngoals (issue 9): {}{}\n",
        if g.met { "MET" } else { "NOT MET" },
        if apps_run {
            ""
        } else {
            " (without real applications: none was run)"
        }
    ));
    for (i, l) in g.list.iter().enumerate() {
        let word = match l.met {
            Some(true) => "MET",
            Some(false) => "NOT MET",
            None => "n/a",
        };
        out.push_str(&format!(
            "  {}. {}: {word} ({})\n",
            i + 1,
            l.goal,
            l.figures
        ));
        let prefix = match l.met {
            Some(false) => "not met",
            None => "not scored",
            Some(true) => "note",
        };
        if l.met != Some(true) || l.name == "accuracy" {
            for w in &l.not_met_in {
                out.push_str(&format!("     {prefix}: {w}\n"));
            }
        }
    }
    let wrong: Vec<String> = runs
        .iter()
        .filter(|r| r.wrong_stuck_ms > 0)
        .map(|r| {
            format!(
                "  {}: {} in force ({} prediction(s)){}",
                r.tag(),
                ms_words(Some(r.wrong_stuck_ms)),
                r.wrong_stuck_predictions,
                if r.not_converged() {
                    ", before the condition"
                } else {
                    ", an infinite error while in force"
                }
            )
        })
        .collect();
    if wrong.is_empty() {
        if runs.iter().any(|r| r.finished()) {
            out.push_str("\nno \"does not converge\" prediction while a migration converged\n");
        }
    } else {
        push_list(
            &mut out,
            "\"does not converge\" said while the migration converged",
            &wrong,
        );
    }
    let before: Vec<String> = runs
        .iter()
        .filter_map(|r| Some((r, r.before_verdict.as_ref()?)))
        .filter(|(_, v)| v.said != Said::Converges || !v.matched)
        .map(|(r, v)| {
            format!(
                "  {}: said {} (chance it ends {:.0}%) and it {}: {}",
                r.tag(),
                v.said.words(),
                v.completes_chance * 100.0,
                v.happened,
                match (v.matched, v.leaned_right) {
                    (false, _) => "WRONG".to_string(),
                    (true, Some(true)) => "both possible, leaned right".to_string(),
                    (true, Some(false)) => "both possible, leaned wrong".to_string(),
                    (true, None) => "right".to_string(),
                }
            )
        })
        .collect();
    push_list(
        &mut out,
        "before the start (rows without a change): not a plain \"converges\", or wrong",
        &before,
    );
    let stuck: Vec<String> = runs
        .iter()
        .filter(|r| r.not_converged())
        .map(|r| {
            let src = match &r.source_check {
                Some(s) if s.ok => "the VM stayed at the source (running, same QEMU)".to_string(),
                Some(s) => format!(
                    "the VM at the source: {} ({}){}",
                    s.state.as_deref().unwrap_or("unknown"),
                    if s.same_qemu {
                        "same QEMU"
                    } else {
                        "NOT the same QEMU"
                    },
                    if s.at_destination {
                        ", and running at the destination"
                    } else {
                        ""
                    }
                ),
                None => "where the VM is was not checked".into(),
            };
            format!(
                "  {}: {}; cancelled: {}; {src}{}",
                r.tag(),
                r.recognition_words(),
                r.cut.as_deref().unwrap_or("no reason given"),
                r.relapsed_ms
                    .filter(|ms| *ms > 0)
                    .map(|ms| format!(
                        "; a converging prediction again for {:.1} s",
                        ms as f64 / 1000.0
                    ))
                    .unwrap_or_default()
            )
        })
        .collect();
    push_list(&mut out, "runs that did not converge", &stuck);
    let surprises: Vec<String> = runs
        .iter()
        .filter(|r| {
            (r.completed() && r.expect == Expect::DoesNotConverge)
                || (r.not_converged() && r.expect == Expect::Converges)
        })
        .map(|r| {
            format!(
                "  {}: expected to {}, it {}",
                r.tag(),
                if r.expect == Expect::Converges {
                    "converge"
                } else {
                    "not converge"
                },
                r.run.status
            )
        })
        .collect();
    push_list(&mut out, "outcomes the bench did not expect", &surprises);

    out.push_str("\nworkloads (pre-copy, 300 ms downtime limit):\n");
    let mut seen = Vec::new();
    for &(w, _) in order {
        if !seen.contains(&w) {
            seen.push(w);
            out.push_str(&format!("  {:<9} {}\n", w.as_str(), w.describe(opts)));
        }
    }
    out.push_str(&format!(
        "changes: at {:.0}% of the expected duration (the same workload's (phase: idle's) run \
         over the starting link, else Pacer's prediction before the start, else one pass of \
         memory over the starting link) the link changes (changing: to {CHANGED}; rising: to \
         {FAST}; falling: to {SLOW}) and the phase workload's writer is resumed.\n",
        opts.change_at * 100.0
    ));
    for r in runs.iter().filter(|r| r.change.is_some()) {
        let c = r.change.as_ref().expect("filtered");
        out.push_str(&format!(
            "  {}: {} at {:.1} s ({:.0}% of {:.1} s, {}){}\n",
            r.tag(),
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
                (Some(m), None) => format!("; made at {:.1} s", m as f64 / 1000.0),
            }
        ));
    }
    let notes: Vec<String> = runs
        .iter()
        .filter(|r| !r.finished() || r.run.integrity_ok == Some(false))
        .map(|r| {
            format!(
                "  {}: {}: {}",
                r.tag(),
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
/// the actual total (if it ended), against elapsed time; "does not converge"
/// predictions are marks at the top.
pub fn chart(r: &PredictRun, ram_bytes: u64) -> Option<Chart> {
    if !r.finished() {
        return None;
    }
    let actual_ms = r.run.total_time_ms.filter(|_| r.completed());
    let s = |ms: u64| ms as f64 / 1000.0;
    let title = format!(
        "{} over {} (run {}): {}",
        r.workload.as_str(),
        r.link.as_str(),
        r.repeat,
        if actual_ms.is_some() {
            "predicted vs actual total"
        } else {
            "did not converge (cancelled)"
        }
    );
    let mut c = prediction_chart_of(
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
    if let Some(t) = r.before.as_ref().and_then(|b| b.total_ms) {
        lines.push(Line::new(
            "Pacer before the start",
            PALETTE[3],
            vec![(0.0, s(t))],
        ));
    }
    let mut vrules = Vec::new();
    if let Some(ch) = &r.change {
        if let Some(m) = ch.made_job_ms.or(ch.made_ms) {
            vrules.push(Rule::new(&ch.what.join(" and "), PALETTE[2], false, s(m)));
        }
    }
    match actual_ms {
        Some(a) => {
            for (i, f) in FRACTIONS.iter().enumerate() {
                let label = if i == 0 {
                    "scored at 10, 25, 50, 75% of the actual"
                } else {
                    ""
                };
                vrules.push(Rule::new(label, "#aaaaaa", true, f * s(a)));
            }
        }
        None => {
            if let (Some(cond), Some(rec)) = (r.condition_ms, r.recognised_ms) {
                vrules.push(Rule::new(
                    &format!(
                        "Pacer said it does not converge ({:.1} s after the condition)",
                        s(rec)
                    ),
                    PALETTE[5],
                    true,
                    s(cond + rec),
                ));
            }
        }
    }
    c.vrules = vrules;
    Some(c)
}

/// The order of runs: repeats outermost, then the rows.
pub fn plan(rows: &[(Wl, Link)], repeats: u32) -> Vec<(u32, Wl, Link)> {
    let mut v = Vec::new();
    for r in 1..=repeats {
        for &(w, l) in rows {
            v.push((r, w, l));
        }
    }
    v
}

/// The run whose actual duration sets the change time of (w, l), if it has one:
/// the same guest over the starting link (phase: the idle guest). The edge
/// family's writer goes with its link, so none there.
pub fn reference_of(w: Wl, l: Link) -> Option<(Wl, Link)> {
    let changes = l.changes() || w == Wl::Phase;
    let start = match l {
        Link::Changing | Link::Falling => Link::Fast,
        Link::Rising => Link::Slow,
        l => l,
    };
    (changes && !matches!(w, Wl::Edge(_)))
        .then(|| (if w == Wl::Phase { Wl::Idle } else { w }, start))
}

/// Runs `pacer-lab bench predict`.
pub async fn run(opts: &PredictOpts) -> Result<i32> {
    opts.validate()?;
    prepare_out(&opts.out)?;
    let rows = opts.rows();
    let mut bed = LiveBed::up_shaped(BED, FAST)?;
    if rows.iter().any(|r| r.0 == Wl::Disk) {
        bed.check_room(room_for_disk(opts.disk_size)).await?;
    }
    let stop = stop_on_ctrl_c();
    let order = plan(&rows, opts.runs);
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
        let write = w.write_mbps(opts, l);
        eprintln!(
            "{tag}: {}{}",
            w.describe(opts),
            match (w, write) {
                (Wl::Edge(_), Some(r)) => format!("; here {r:.1} MB/s"),
                _ => String::new(),
            }
        );
        let mut rec = PredictRun::new(w, l, repeat, i + 1, write);
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
    let all_done = runs.len() == order.len() && runs.iter().all(|r| r.finished());
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
        "rows": rows.iter().map(|(w, l)| json!([w, l])).collect::<Vec<_>>(),
        "memory_mib": opts.memory,
        "wss_mib": opts.wss,
        "edge_wss_mib": Wl::edge_wss(opts),
        "write_rate_mbps": opts.write_rate,
        "skewed_hot_fraction": HOT_FRACTION,
        "skewed_hot_share": HOT_SHARE,
        "disk_size_bytes": opts.disk_size,
        "disk_write_rate_mbps": opts.disk_write_rate,
        "disk_memory_write_rate_mbps": DISK_MEM_RATE,
        "prior_wait_s": opts.prior_wait,
        "change_at": opts.change_at,
        "changed_rate": CHANGED,
        "link_rates": ALL_LINKS.iter().map(|l| json!({
            "link": l, "start": l.start_rate(), "end": l.end_rate(),
        })).collect::<Vec<_>>(),
        "fractions": FRACTIONS,
        "band_coverage": BAND_COVERAGE,
        "band_goal": BAND_GOAL,
        "band_from": super::score::BAND_FROM,
        "recognised_goal_ms": GOAL_RECOGNISED_MS,
        "before_goal": GOAL_BEFORE_ERROR,
        "give_up_after_ms": GIVE_UP_AFTER_MS,
        "stuck_limit_s": STUCK_LIMIT.as_secs(),
        "edge_limit_s": EDGE_LIMIT.as_secs(),
        "guest_has_apps": GUEST_HAS_APPS,
        "strategy": "pre-copy",
    });
    let body = json!({
        "summary": summaries,
        "goals": goals(&summaries, runs),
        "runs": runs,
    });
    write_results(&opts.out, "predict", bed, config, body)
}

/// The duration the change time is taken from: the reference run's actual total,
/// else Pacer's prediction before the start (its finish if it converges), else
/// one pass of the guest's memory over the starting link.
fn expected_duration(
    expected: Option<((Wl, Link), u64)>,
    before: Option<&Before>,
    memory_mib: u64,
    l: Link,
) -> (u64, String) {
    if let Some(((rw, rl), ms)) = expected {
        return (ms, format!("{} over {}, actual", rw.as_str(), rl.as_str()));
    }
    if let Some(ms) = before.and_then(|b| b.finish_ms()) {
        return (ms, "Pacer's prediction before the start".into());
    }
    let pass_ms = ((memory_mib << 20) as f64 / (l.start_mbps() * 1e6) * 1000.0) as u64;
    (
        pass_ms.max(1000),
        format!(
            "one pass of memory over {} (no prediction of a finish)",
            l.start_rate()
        ),
    )
}

/// The time limit of a run: the usual one for a migration expected to converge;
/// a short one from the condition on for one that is not.
fn limit_of(rec: &PredictRun, opts: &PredictOpts, disk_bytes: u64) -> Duration {
    let cond = if rec.over_at_start() {
        Duration::ZERO
    } else {
        rec.change
            .as_ref()
            .map_or(Duration::ZERO, |c| Duration::from_millis(c.planned_ms))
    };
    let usual = migration_limit(LIMIT_BASE, opts.memory, disk_bytes, rec.link.slowest_bps());
    match rec.expect {
        Expect::Converges => usual,
        // An application's writes are not known beforehand: the usual limit.
        Expect::Either if matches!(rec.workload, Wl::App(_)) => usual,
        Expect::DoesNotConverge => cond + STUCK_LIMIT,
        Expect::Either => cond + EDGE_LIMIT,
    }
}

/// Where the VM is after a cancelled migration: still running at the source in
/// the same QEMU (waited for up to 10 s), not at the destination.
async fn source_check(bed: &LiveBed, name: &str, pid: i32) -> SourceCheck {
    let mut check = SourceCheck {
        ok: false,
        state: None,
        same_qemu: false,
        at_destination: false,
    };
    let t0 = Instant::now();
    loop {
        if let Ok(c) = bed.hosts.client("h1") {
            if let Ok(info) = c.vm(name).await {
                check.state = Some(info.state.as_str().to_string());
                check.same_qemu = info.pid == pid;
                if info.state == VmState::Running && info.migrating.is_none() {
                    break;
                }
            }
        }
        if t0.elapsed() > Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Ok(c) = bed.hosts.client("h2") {
        if let Ok(info) = c.vm(name).await {
            check.at_destination = info.state == VmState::Running;
        }
    }
    check.ok =
        check.state.as_deref() == Some("running") && check.same_qemu && !check.at_destination;
    check
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
    let g = match w.guest(opts, name, l) {
        Ok(g) => g,
        Err(e) => {
            rec.run.reason = Some(format!("{e:#}"));
            return;
        }
    };
    let info = match start_guest(bed, &g, files, stop).await {
        Ok(s) => s.info,
        Err(e) => {
            rec.run.reason = Some(format!("{e:#}"));
            return;
        }
    };
    eprintln!(
        "  letting it run {:.0} s so the agent measures it",
        opts.prior_wait
    );
    if !wait_prior(Duration::from_secs_f64(opts.prior_wait), stop).await {
        return;
    }
    rec.guest_write_mbps = guest_rates(&bed.hosts, name).await.0;
    match predict_before(bed, name).await {
        Ok(p) => rec.before = Some(Before::from(&p)),
        Err(e) => eprintln!("  (no prediction before the start: {e:#})"),
    }
    // When to change what.
    let mut what = Vec::new();
    if l.changes() {
        what.push(format!("link {} -> {}", l.start_rate(), l.end_rate()));
    }
    if w == Wl::Phase {
        what.push("writer resumed".to_string());
    }
    if !what.is_empty() {
        let (expected_ms, from) = expected_duration(expected, rec.before.as_ref(), opts.memory, l);
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
    let limit = limit_of(rec, opts, g.disk_size.unwrap_or(0));
    rec.limit_s = limit.as_secs();
    eprintln!(
        "  migrating to h2 over {} (guest writes {} MB/s now{}; limit {} s)",
        l.start_rate(),
        rec.guest_write_mbps
            .map(|v| format!("{v:.1}"))
            .unwrap_or("?".into()),
        rec.before
            .as_ref()
            .map(|b| match b.total_ms {
                Some(t) => format!("; Pacer predicts {:.1} s", t as f64 / 1000.0),
                None => "; Pacer says pre-copy does not converge".into(),
            })
            .unwrap_or_default(),
        rec.limit_s
    );
    let end_bps = crate::net::parse_rate(l.end_rate()).unwrap_or(rate);
    let over_at_start = rec.over_at_start();
    let give_up = rec.expect == Expect::DoesNotConverge;
    let mut change = rec.change.clone();
    let mut link_error = None;
    let mut resume = None;
    let followed = {
        let bed_ref = &*bed;
        let qmp = info.qmp_socket.clone();
        follow_migration_until(bed_ref, name, &req, limit, stop, |at, j| {
            if let Some(c) = change.as_mut() {
                if c.made_ms.is_none() && at.as_millis() >= c.planned_ms as u128 {
                    if l.changes() {
                        if let Err(e) = bed_ref.bed.set_rate(None, end_bps) {
                            link_error = Some(format!("cannot change the link rate: {e}"));
                        }
                    }
                    if w == Wl::Phase {
                        let qmp = qmp.clone();
                        resume = Some(tokio::spawn(async move {
                            console_command(&qmp, Command::Resume, Duration::from_secs(5)).await
                        }));
                    }
                    c.made_ms = Some(at.as_millis() as u64);
                    c.made_job_ms = Some(j.progress.elapsed_ms);
                    eprintln!("  {:.1} s: {}", at.as_secs_f64(), c.what.join(" and "));
                }
            }
            if !give_up {
                return None;
            }
            let condition = if over_at_start {
                Some(0)
            } else {
                change.as_ref().and_then(|c| c.made_job_ms)
            };
            let first = give_up_at(&j.predictions, condition, j.progress.elapsed_ms)?;
            Some(format!(
                "Pacer said at {:.1} s that pre-copy does not converge; given up {} s later",
                first as f64 / 1000.0,
                GIVE_UP_AFTER_MS / 1000
            ))
        })
        .await
    };
    // The closure changed the link behind the bed's back: tell it.
    if change.as_ref().is_some_and(|c| c.made_ms.is_some()) && l.changes() {
        bed.rate_bps = end_bps;
    }
    rec.change = change;
    if let Some(h) = resume {
        match h.await {
            Ok(Ok(answered)) => rec.writer_resumed = Some(answered),
            Ok(Err(e)) => {
                link_error.get_or_insert(format!("cannot resume the guest's writer: {e:#}"));
            }
            Err(e) => {
                link_error.get_or_insert(format!("cannot resume the guest's writer: {e}"));
            }
        }
    }
    let cancelled_by_bench = (followed.given_up || followed.timed_out)
        && followed
            .result
            .as_ref()
            .is_some_and(|r| r.status == JobStatus::Cancelled);
    rec.run.reason = link_error;
    rec.take(followed, opts.memory);
    if cancelled_by_bench {
        let check = source_check(bed, name, info.pid).await;
        if !check.ok {
            rec.run.status = "failed".into();
            rec.run.reason = Some(format!(
                "cancelled as not converging, but the VM is not running at the source as before \
                 (state {}, same QEMU: {}, running at the destination: {})",
                check.state.as_deref().unwrap_or("unknown"),
                check.same_qemu,
                check.at_destination
            ));
        }
        rec.source_check = Some(check);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacer_api::{JobPhase, MigrationResult, PredictionPoint, StuckAdvice};

    fn opts() -> PredictOpts {
        PredictOpts {
            runs: 1,
            out: "x.json".into(),
            quick: false,
            scenarios: None,
            links: None,
            memory: 1024,
            wss: 256,
            app_mib: 128,
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

    fn stuck_pt(elapsed_ms: u64) -> PredictionPoint {
        PredictionPoint {
            elapsed_ms,
            total_ms: None,
            low_ms: elapsed_ms + 1000,
            high_ms: None,
            downtime_ms: 100,
            naive_total_ms: Some(elapsed_ms + 60_000),
            completes_chance: 0.02,
            stuck: Some(StuckAdvice {
                dirty_set_bytes: 150 << 20,
                dirty_rate_bps: 30e6,
                speed_bps: 25e6,
                ..Default::default()
            }),
        }
    }

    fn result(status: &str, actual: u64, points: &[PredictionPoint]) -> MigrationResult {
        serde_json::from_value(json!({
            "status": status, "vm": "v", "strategy": "pre-copy", "total_time_ms": actual,
            "downtime_ms": 200, "bytes_transferred": 300_000_000u64, "source": "h1",
            "destination": "h2", "vm_location": "h2", "reason": null, "qemu_total_time_ms": 1,
            "rounds": 4, "precopy_bytes": 1, "downtime_bytes": 1, "postcopy_bytes": 0,
            "integrity": {"ok": true, "pages_checked": 1, "bad_pages": 0, "errors_total": 0,
                          "duration_ms": 1},
            "predictions": points,
        }))
        .unwrap()
    }

    fn write_of(w: Wl, l: Link) -> Option<f64> {
        w.write_mbps(&opts(), l)
    }

    fn done(w: Wl, l: Link, repeat: u32, actual: u64, points: Vec<PredictionPoint>) -> PredictRun {
        let mut r = PredictRun::new(w, l, repeat, 0, write_of(w, l));
        r.run.fill(&result("completed", actual, &points));
        r.score(1024);
        r
    }

    /// A run the bench cancelled: given up on, as the follower reports it.
    fn cut(w: Wl, l: Link, change_job_ms: Option<u64>, points: Vec<PredictionPoint>) -> PredictRun {
        let mut r = PredictRun::new(w, l, 1, 0, write_of(w, l));
        r.change = change_job_ms.map(|ms| Change {
            what: vec!["link".into()],
            expected_ms: 10_000,
            expected_from: "test".into(),
            planned_ms: ms,
            made_ms: Some(ms),
            made_job_ms: Some(ms),
        });
        let f = Followed {
            result: Some(result("cancelled", 0, &points)),
            reason: Some(
                "Pacer said at 2.0 s that pre-copy does not converge; given up 20 s later".into(),
            ),
            given_up: true,
            ..Followed::default()
        };
        r.take(f, 1024);
        r.source_check = Some(SourceCheck {
            ok: true,
            state: Some("running".into()),
            same_qemu: true,
            at_destination: false,
        });
        r
    }

    fn before(total: Option<u64>, chance: f64) -> Before {
        Before {
            total_ms: total,
            low_ms: 0,
            high_ms: total,
            converges: total.is_some(),
            completes_chance: chance,
            if_it_converges_ms: Some(40_000),
            dirty_rate_bps: 0.0,
            wss_bytes: None,
            hot_bytes: 0.0,
            zero_fraction: 0.0,
            link_bps: 0.0,
        }
    }

    #[test]
    fn option_parsing_and_filters() {
        assert_eq!(parse_wl("bursty"), Ok(Wl::Skewed));
        assert_eq!(parse_wl("edge-0.8"), Ok(Wl::Edge(Edge::Below)));
        assert_eq!(parse_wl("edge-1"), Ok(Wl::Edge(Edge::At)));
        assert_eq!(parse_wl(" edge-1.2 "), Ok(Wl::Edge(Edge::Above)));
        assert_eq!(parse_wl("stress-ng"), Ok(Wl::App(AppKind::Stress)));
        assert_eq!(parse_wl("redis"), Ok(Wl::App(AppKind::Redis)));
        assert!(parse_wl("edge-1.5").unwrap_err().contains("edge-1.2"));
        assert!(parse_wl("spiky").unwrap_err().contains("unknown scenario"));
        assert!(parse_wl("").is_err());
        assert_eq!(parse_link("changing"), Ok(Link::Changing));
        assert_eq!(parse_link("rising"), Ok(Link::Rising));
        assert_eq!(parse_link("1gbit->200mbit"), Ok(Link::Falling));
        assert!(parse_link("10gbit").unwrap_err().contains("rising"));
        assert!(parse_fraction("0.4").is_ok());
        assert!(parse_fraction("1.5").is_err());
        assert!(parse_disk_size("100K").is_err());
        assert_eq!(parse_disk_size("1G"), Ok(1 << 30));
        assert!(parse_disk_rate("0").is_err());
        // Every name round-trips.
        for w in ALL_WL {
            assert_eq!(parse_wl(w.as_str()), Ok(w));
        }
        for l in ALL_LINKS {
            assert_eq!(parse_link(l.as_str()), Ok(l));
            assert_eq!(parse_link(l.file_part()), Ok(l));
        }
        let mut o = opts();
        // By default: the five workloads over four links, the four applications
        // over two, the edge family over 200mbit and edge-1.2 also over the falling link.
        assert_eq!(o.workloads().len(), 12);
        assert!(o.workloads().contains(&Wl::App(AppKind::Redis)));
        let rows = o.rows();
        assert_eq!(rows.len(), 5 * 4 + 3 + 1 + 4 * 2);
        assert!(rows.contains(&(Wl::App(AppKind::Redis), Link::Slow)));
        assert!(rows.contains(&(Wl::Edge(Edge::Above), Link::Falling)));
        assert!(rows.contains(&(Wl::Steady, Link::Rising)));
        assert!(!rows.contains(&(Wl::Steady, Link::Falling)));
        assert!(!rows.contains(&(Wl::Edge(Edge::Below), Link::Fast)));
        assert_eq!(o.links(), ALL_LINKS);
        o.quick = true;
        assert_eq!(
            o.workloads(),
            [Wl::Steady, Wl::Phase, Wl::Edge(Edge::Above)]
        );
        assert_eq!(o.links(), [Link::Fast, Link::Slow, Link::Changing]);
        assert_eq!(o.rows().len(), 5);
        o.scenarios = Some(vec![Wl::Disk, Wl::Idle, Wl::Disk]);
        assert_eq!(o.workloads(), [Wl::Idle, Wl::Disk]);
        assert!(o.validate().is_ok());
        // Named links go for every workload, the edge family too.
        let mut o = opts();
        o.scenarios = Some(vec![Wl::Edge(Edge::Above), Wl::Steady]);
        o.links = Some(vec![Link::Slow]);
        assert_eq!(
            o.rows(),
            [
                (Wl::Steady, Link::Slow),
                (Wl::Edge(Edge::Above), Link::Slow)
            ]
        );
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
        // Only the edge family: the write rate is not theirs.
        o.links = None;
        o.scenarios = Some(vec![Wl::Edge(Edge::At)]);
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
        o = opts();
        o.links = Some(vec![]);
        assert!(o.validate().is_err());
        // Applications are workloads like the others.
        o = opts();
        o.scenarios = Some(vec![Wl::Steady, Wl::App(AppKind::Zstd)]);
        o.validate().unwrap();
    }

    #[test]
    fn guests_rates_and_expectations() {
        let o = opts();
        // The edge family writes a ratio of the link's (final) rate over half the memory.
        let g = Wl::Edge(Edge::Above).guest(&o, "v", Link::Slow).unwrap();
        assert_eq!(
            (g.workload.kind.as_str(), g.workload.wss_mib),
            ("memwrite", 512)
        );
        assert!((g.workload.rate_mbps - 30.0).abs() < 1e-9);
        let g = Wl::Edge(Edge::Below).guest(&o, "v", Link::Slow).unwrap();
        assert!((g.workload.rate_mbps - 20.0).abs() < 1e-9);
        let g = Wl::Edge(Edge::Above).guest(&o, "v", Link::Falling).unwrap();
        assert!(
            (g.workload.rate_mbps - 30.0).abs() < 1e-9,
            "1.2x of 200mbit"
        );
        let g = Wl::Edge(Edge::Below).guest(&o, "v", Link::Rising).unwrap();
        assert!((g.workload.rate_mbps - 100.0).abs() < 1e-9, "0.8x of 1gbit");
        // The phase workload starts paused; the others do not.
        assert!(
            Wl::Phase
                .guest(&o, "v", Link::Fast)
                .unwrap()
                .workload
                .paused
        );
        assert!(
            !Wl::Steady
                .guest(&o, "v", Link::Fast)
                .unwrap()
                .workload
                .paused
        );
        let g = Wl::Skewed.guest(&o, "v", Link::Fast).unwrap();
        assert_eq!(
            (g.workload.hot_fraction, g.workload.hot_share),
            (HOT_FRACTION, HOT_SHARE)
        );
        assert!(Wl::Disk
            .guest(&o, "v", Link::Fast)
            .unwrap()
            .disk_size
            .is_some());
        assert_eq!(
            Wl::Idle.guest(&o, "v", Link::Fast).unwrap().workload.kind,
            "idle"
        );
        // An application: the app in the workload, the program's own pages a canary.
        let g = Wl::App(AppKind::Redis).guest(&o, "v", Link::Fast).unwrap();
        let app = g.workload.app.clone().unwrap();
        assert_eq!((app.kind.as_str(), app.mib, app.rate), ("redis", 128, 15.0));
        assert_eq!((g.workload.kind.as_str(), g.workload.wss_mib), ("idle", APP_CANARY_MIB));
        let s = AppKind::Stress.spec(&o);
        assert_eq!((s.kind, s.mib, s.rate), ("stress-ng", 128, 15.0));
        assert_eq!(write_of(Wl::App(AppKind::Zstd), Link::Fast), None);
        // Expectations.
        let ex = |w, l| Expect::of(write_of(w, l), l);
        assert_eq!(ex(Wl::Steady, Link::Slow), Expect::Converges);
        assert_eq!(ex(Wl::Edge(Edge::Below), Link::Slow), Expect::Converges);
        assert_eq!(ex(Wl::Edge(Edge::At), Link::Slow), Expect::Either);
        assert_eq!(
            ex(Wl::Edge(Edge::Above), Link::Slow),
            Expect::DoesNotConverge
        );
        assert_eq!(
            ex(Wl::Edge(Edge::Above), Link::Falling),
            Expect::DoesNotConverge
        );
        assert_eq!(ex(Wl::Edge(Edge::Below), Link::Rising), Expect::Converges);
        assert_eq!(ex(Wl::App(AppKind::Redis), Link::Fast), Expect::Either);
        // Where the condition comes: the start, or the falling link's change.
        let r = PredictRun::new(Wl::Edge(Edge::Above), Link::Slow, 1, 1, Some(30.0));
        assert!(r.over_at_start() && r.unchanged());
        assert_eq!(r.condition_job_ms(), Some(0));
        let mut r = PredictRun::new(Wl::Edge(Edge::Above), Link::Falling, 1, 1, Some(30.0));
        assert!(!r.over_at_start() && !r.unchanged());
        assert_eq!(r.condition_job_ms(), None, "the link has not fallen yet");
        r.change = Some(Change {
            what: vec![],
            expected_ms: 10_000,
            expected_from: String::new(),
            planned_ms: 4000,
            made_ms: Some(4100),
            made_job_ms: Some(4050),
        });
        assert_eq!(r.condition_job_ms(), Some(4050));
        // Limits: short for a run bound not to converge, from the condition on.
        assert_eq!(
            limit_of(&r, &o, 0),
            Duration::from_millis(4000) + STUCK_LIMIT
        );
        let r = PredictRun::new(Wl::Edge(Edge::At), Link::Slow, 1, 1, Some(25.0));
        assert_eq!(limit_of(&r, &o, 0), EDGE_LIMIT);
        let r = PredictRun::new(Wl::Steady, Link::Slow, 1, 1, Some(15.0));
        assert!(limit_of(&r, &o, 0) > EDGE_LIMIT);
        let r = PredictRun::new(Wl::App(AppKind::Redis), Link::Slow, 1, 1, None);
        assert_eq!(r.expect, Expect::Either);
        assert!(
            limit_of(&r, &o, 0) > EDGE_LIMIT,
            "the usual limit for an application"
        );
    }

    #[test]
    fn references_and_plan() {
        assert_eq!(reference_of(Wl::Steady, Link::Fast), None);
        assert_eq!(
            reference_of(Wl::Steady, Link::Changing),
            Some((Wl::Steady, Link::Fast))
        );
        assert_eq!(
            reference_of(Wl::Steady, Link::Rising),
            Some((Wl::Steady, Link::Slow))
        );
        assert_eq!(
            reference_of(Wl::Disk, Link::Falling),
            Some((Wl::Disk, Link::Fast))
        );
        assert_eq!(
            reference_of(Wl::Phase, Link::Slow),
            Some((Wl::Idle, Link::Slow))
        );
        assert_eq!(
            reference_of(Wl::Phase, Link::Changing),
            Some((Wl::Idle, Link::Fast))
        );
        // The edge family's writer depends on the link: no reference.
        assert_eq!(reference_of(Wl::Edge(Edge::Above), Link::Falling), None);
        let rows = [
            (Wl::Idle, Link::Fast),
            (Wl::Idle, Link::Changing),
            (Wl::Edge(Edge::At), Link::Slow),
        ];
        let p = plan(&rows, 2);
        assert_eq!(p.len(), 6);
        assert_eq!(p[1], (1, Wl::Idle, Link::Changing));
        assert_eq!(p[3], (2, Wl::Idle, Link::Fast));
        // Durations to time a change by.
        let b = before(Some(20_000), 0.99);
        assert_eq!(
            expected_duration(
                Some(((Wl::Idle, Link::Fast), 9000)),
                Some(&b),
                1024,
                Link::Fast
            )
            .0,
            9000
        );
        assert_eq!(
            expected_duration(None, Some(&b), 1024, Link::Fast).0,
            20_000
        );
        // Does not converge at the start: one pass of 1 GiB over 25 MB/s.
        let b = before(None, 0.0);
        let (ms, from) = expected_duration(None, Some(&b), 1024, Link::Rising);
        assert_eq!(ms, 42_949);
        assert!(from.contains("one pass"), "{from}");
    }

    #[test]
    fn before_the_start_in_words() {
        let b = before(Some(20_000), 0.97);
        assert_eq!((b.said(), b.finish_ms()), (Said::Converges, Some(20_000)));
        let b = before(None, 0.03);
        assert_eq!((b.said(), b.finish_ms()), (Said::DoesNotConverge, None));
        // Near the edge both outcomes: its finish if it converges.
        let b = before(None, 0.4);
        assert_eq!((b.said(), b.finish_ms()), (Said::Either, Some(40_000)));
        let v = BeforeVerdict::of(&b, true);
        assert_eq!((v.matched, v.leaned_right), (true, Some(false)));
        assert_eq!(v.happened, "completed");
        let v = BeforeVerdict::of(&before(None, 0.03), true);
        assert!(!v.matched);
        let v = BeforeVerdict::of(&before(None, 0.03), false);
        assert!(v.matched && v.leaned_right.is_none());
        assert!(!BeforeVerdict::of(&before(Some(1), 0.95), false).matched);
        // A completed run scored against a "does not converge" before: never.
        let mut r = done(
            Wl::Edge(Edge::At),
            Link::Slow,
            1,
            50_000,
            vec![pt(5000, 50_000, None)],
        );
        r.before = Some(before(None, 0.05));
        r.score(1024);
        assert_eq!(pct(r.before_error), "never");
        assert!(!r.before_verdict.as_ref().unwrap().matched);
    }

    #[test]
    fn giving_up_once_recognised() {
        let points = [pt(1000, 50_000, None), stuck_pt(2000), stuck_pt(3000)];
        assert_eq!(give_up_at(&points, Some(0), 21_999), None);
        assert_eq!(give_up_at(&points, Some(0), 22_000), Some(2000));
        // Not before the condition is true, and only verdicts made after it count.
        assert_eq!(give_up_at(&points, None, 60_000), None);
        assert_eq!(give_up_at(&points, Some(2500), 22_500), None);
        assert_eq!(give_up_at(&points, Some(2500), 23_000), Some(3000));
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
    fn not_converged_and_wrong_verdicts() {
        // edge-1.2 over 200mbit: said at 2 s, stays said; cancelled.
        let r = cut(
            Wl::Edge(Edge::Above),
            Link::Slow,
            None,
            vec![
                stuck_pt(2000),
                stuck_pt(3000),
                pt(4000, 90_000, None),
                stuck_pt(5000),
            ],
        );
        assert!(r.not_converged() && r.finished() && !r.completed());
        assert_eq!((r.condition_ms, r.recognised_ms), (Some(0), Some(2000)));
        assert_eq!(r.relapsed_ms, Some(1000));
        assert_eq!(r.wrong_stuck_ms, 0);
        assert!(r.cut.as_deref().unwrap().contains("given up"));
        assert!(
            r.outcome_line().contains("2.0 s after"),
            "{}",
            r.outcome_line()
        );
        // No accuracy scores for it.
        assert_eq!((r.pacer_errors, r.band.is_some()), ([None; 4], false));
        // The falling edge: the condition at the link's fall (4 s); a verdict
        // before it was wrong, the first after it 1.5 s later.
        let r = cut(
            Wl::Edge(Edge::Above),
            Link::Falling,
            Some(4000),
            vec![
                pt(1000, 9000, None),
                stuck_pt(2000),
                pt(3000, 9000, None),
                stuck_pt(5500),
            ],
        );
        assert_eq!((r.condition_ms, r.recognised_ms), (Some(4000), Some(1500)));
        assert_eq!((r.wrong_stuck_ms, r.wrong_stuck_predictions), (1000, 1));
        // Never recognised.
        let r = cut(
            Wl::Edge(Edge::At),
            Link::Slow,
            None,
            vec![pt(1000, 90_000, None)],
        );
        assert_eq!((r.recognised_ms, r.relapsed_ms), (None, None));
        assert!(r.outcome_line().contains("never said"));
        // A time-limit cancel is not-converged too; an interrupt is not.
        let mut t = PredictRun::new(Wl::Edge(Edge::At), Link::Slow, 1, 1, Some(25.0));
        t.take(
            Followed {
                result: Some(result("cancelled", 0, &[])),
                reason: Some("not done after 180 s".into()),
                timed_out: true,
                ..Followed::default()
            },
            1024,
        );
        assert_eq!(t.run.status, NOT_CONVERGED);
        let mut t = PredictRun::new(Wl::Steady, Link::Slow, 1, 1, Some(15.0));
        t.take(
            Followed {
                result: Some(result("cancelled", 0, &[])),
                reason: Some("interrupted".into()),
                ..Followed::default()
            },
            1024,
        );
        assert_eq!(t.run.status, "cancelled");
        // A completed run with a wrong verdict: an infinite error while in force.
        let r = done(
            Wl::Edge(Edge::At),
            Link::Slow,
            1,
            10_000,
            vec![
                pt(1000, 10_000, None),
                stuck_pt(2000),
                pt(6000, 10_000, None),
            ],
        );
        assert_eq!((r.wrong_stuck_ms, r.wrong_stuck_predictions), (4000, 1));
        assert_eq!(pct(r.pacer_errors[1]), "never");
        assert_eq!(pct(r.pacer_errors[2]), "never");
        assert_eq!(pct(r.pacer_errors[3]), "0.0%");
        // A rising link with the writer above its starting rate: "does not
        // converge" is right until the rise (at 3 s).
        let mut r = PredictRun::new(Wl::Edge(Edge::Below), Link::Rising, 1, 1, Some(100.0));
        r.change = Some(Change {
            what: vec![],
            expected_ms: 0,
            expected_from: String::new(),
            planned_ms: 3000,
            made_ms: Some(3000),
            made_job_ms: Some(3000),
        });
        let points = [
            stuck_pt(1000),
            stuck_pt(2000),
            stuck_pt(4000),
            pt(5000, 9000, None),
        ];
        r.run.fill(&result("completed", 9000, &points));
        r.score(1024);
        assert_eq!((r.wrong_stuck_ms, r.wrong_stuck_predictions), (2000, 2));
    }

    #[test]
    fn json_names() {
        assert_eq!(
            serde_json::to_value(Wl::Edge(Edge::Above)).unwrap(),
            "edge-1.2"
        );
        assert_eq!(
            serde_json::to_value(Wl::App(AppKind::Stress)).unwrap(),
            "stress"
        );
        assert_eq!(serde_json::to_value(Wl::Skewed).unwrap(), "skewed");
        assert_eq!(
            serde_json::to_value(Link::Rising).unwrap(),
            "200mbit->1gbit"
        );
        assert_eq!(
            serde_json::to_value(Link::Falling).unwrap(),
            "1gbit->200mbit"
        );
        let r = cut(
            Wl::Edge(Edge::Above),
            Link::Slow,
            None,
            vec![stuck_pt(2000)],
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["status"], "not-converged");
        assert_eq!(v["expect"], "does-not-converge");
        assert_eq!(v["recognised_ms"], 2000);
        assert_eq!(v["source_check"]["ok"], true);
        assert!(v["write_target_mbps"].as_f64().is_some());
        let d = done(
            Wl::Steady,
            Link::Fast,
            1,
            10_000,
            vec![pt(2000, 10_000, None)],
        );
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["band"]["inside"], 1);
        assert_eq!(v["wrong_stuck_ms"], 0);
        assert!(v["pacer_errors"].is_array() && v["naive_errors"].is_array());
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
        let mut failed = PredictRun::new(Wl::Idle, Link::Fast, 1, 3, Some(0.0));
        failed.run.status = "failed".into();
        failed.run.reason = Some("boom".into());
        runs.push(failed);
        runs.push(cut(
            Wl::Edge(Edge::Above),
            Link::Slow,
            None,
            vec![pt(1000, 50_000, None), stuck_pt(2000), stuck_pt(3000)],
        ));
        runs.push(cut(
            Wl::Edge(Edge::Above),
            Link::Falling,
            Some(4000),
            vec![pt(1000, 9000, None), stuck_pt(11_000)],
        ));
        let order = [
            (Wl::Idle, Link::Fast),
            (Wl::Steady, Link::Fast),
            (Wl::Steady, Link::Changing),
            (Wl::Edge(Edge::Above), Link::Slow),
            (Wl::Edge(Edge::Above), Link::Falling),
        ];
        let t = render_table(&order, &runs, &opts());
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].contains("Pacer |error| at"), "{t}");
        assert!(lines[0].trim_end().ends_with("80% band"), "{t}");
        assert!(
            lines[1].starts_with("workload link            actual    10%    25%"),
            "{t}"
        );
        assert!(
            lines[1].contains("before   cover  width  recog   goal"),
            "{t}"
        );
        assert!(lines[2].starts_with("idle     1gbit           -"), "{t}");
        assert!(lines[2].ends_with("FAILED"), "{t}");
        // steady 1gbit: at 1 s 10%, 2.5 s 3%, 5 s 1%, 7.5 s 0%; naive 100% 60% 20% 5%;
        // every band (+-0.5 s) from 1 s on held 10 s but the first: 4 of 5, 10% wide.
        assert_eq!(
            lines[3],
            "steady   1gbit           10.00 s   10.0%  3.0%   1.0%   0.0%     100%   60.0%  20.0%  5.0%     1.0%    20.0%   -        80.0%  10.0%  -       ok"
        );
        assert!(lines[4].contains("MISSED both"), "{t}");
        assert!(
            lines[5].starts_with("edge-1.2 200mbit         not conv. -"),
            "{t}"
        );
        assert!(lines[5].contains("2.0 s   ok"), "{t}");
        // The falling edge: said 7 s after the link fell.
        assert!(
            lines[6].starts_with("edge-1.2 1gbit->200mbit  not conv."),
            "{t}"
        );
        assert!(lines[6].ends_with("7.0 s   MISSED 5 s"), "{t}");
        assert!(lines[7].starts_with("median   (all runs)"), "{t}");
        assert!(
            t.contains("goals (issue 9): NOT MET (without real applications: none was run)"),
            "{t}"
        );
        assert!(
            t.contains("1. median |error| at most 5% from 25% of the duration on, in every scenario (real applications included): NOT MET"),
            "{t}"
        );
        assert!(t.contains("not met: steady 1gbit->300mbit (100%)"), "{t}");
        assert!(t.contains("not met: idle 1gbit (no run finished)"), "{t}");
        assert!(t.contains("not met: real applications"), "{t}");
        assert!(
            t.contains("2. below the naive estimate's in every scenario: NOT MET"),
            "{t}"
        );
        assert!(
            t.contains("3. a non-converging migration recognised within 5 s of the condition, in every such run: NOT MET (2 run(s) did not converge; recognised at the latest 7.0 s after the condition)"),
            "{t}"
        );
        assert!(
            t.contains("not met: edge-1.2 1gbit->200mbit run 1 (7.0 s)"),
            "{t}"
        );
        assert!(
            t.contains("4. 80% bands covering 70-90% of outcomes"),
            "{t}"
        );
        assert!(
            t.contains("5. predictions before the start within 10%"),
            "{t}"
        );
        assert!(
            t.contains("not scored: no prediction before the start was made"),
            "{t}"
        );
        assert!(t.contains("runs that did not converge:"), "{t}");
        assert!(
            t.contains("edge-1.2 200mbit run 1: condition at 0.0 s (the start), Pacer said it does not converge 2.0 s after"),
            "{t}"
        );
        assert!(t.contains("the link's change to 200mbit"), "{t}");
        assert!(t.contains("the VM stayed at the source"), "{t}");
        assert!(t.contains("idle 1gbit run 1: failed: boom"), "{t}");
        assert!(
            !t.contains("edge-1.2 200mbit run 1: not-converged"),
            "not a failure: {t}"
        );
        assert!(t.contains("real applications: none run"), "{t}");
        // Only the good row and a recognised run: the accuracy, naive and
        // recognition goals hold; the band's 80% is within 70-90%.
        let rows = [
            summarize(Wl::Steady, Link::Fast, &runs),
            summarize(Wl::Edge(Edge::Above), Link::Slow, &runs),
        ];
        let some = [runs[0].clone(), runs[3].clone()];
        let g = goals(&rows, &some);
        assert!(g.within_5pct_everywhere && g.below_naive_everywhere);
        assert_eq!(g.overall_pacer, Some(0.01));
        assert_eq!(g.list[2].met, Some(true));
        assert_eq!(g.recognised_max_ms, Some(2000));
        assert_eq!(g.band.coverage, Some(0.8));
        assert_eq!(g.list[3].met, Some(true));
        // No prediction before the start was made: not scored.
        assert_eq!(g.list[4].met, None);
        assert!(g.met, "{:?}", g.list);
        // The plot of the good run.
        let c = chart(&runs[0], 1 << 30).unwrap().to_svg();
        assert!(c.contains("actual total 10.00 s"));
        assert!(c.contains("<polygon"));
        assert!(chart(&runs[2], 1 << 30).is_none());
        // The plot of a run that did not converge: its verdicts at the top.
        let c = chart(&runs[3], 1 << 30).unwrap().to_svg();
        assert!(c.contains("did not converge"), "{c}");
        assert!(
            c.contains("Pacer: does not converge (marked at the top)"),
            "{c}"
        );
        assert!(c.contains("open top"), "{c}");
        assert!(!c.contains("actual total"), "{c}");
    }

    #[test]
    fn band_and_before_goals() {
        // A wide band that always holds: 100% is outside 70-90%.
        let wide: Vec<PredictionPoint> = (1..=9)
            .map(|i| PredictionPoint {
                elapsed_ms: i * 1000,
                total_ms: Some(10_000),
                low_ms: 1000,
                high_ms: Some(30_000),
                ..Default::default()
            })
            .collect();
        let mut a = done(Wl::Steady, Link::Slow, 1, 10_000, wide);
        a.before = Some(before(Some(12_500), 0.99));
        a.score(1024);
        let runs = vec![a];
        let rows = [summarize(Wl::Steady, Link::Slow, &runs)];
        assert_eq!(rows[0].band.coverage, Some(1.0));
        assert!((rows[0].band.mean_width.unwrap() - 2.9).abs() < 1e-9);
        assert!(rows[0].before_scored);
        assert_eq!(rows[0].before_ok, Some(false), "25% off");
        let g = goals(&rows, &runs);
        assert_eq!(g.list[3].met, Some(false));
        assert_eq!(g.list[3].not_met_in, ["steady 200mbit (100%)"]);
        assert_eq!(g.list[4].met, Some(false));
        assert_eq!(g.list[4].not_met_in, ["steady 200mbit (25.0%)"]);
        assert_eq!(g.before_unchanged, Some(0.25));
        assert!(!g.met);
        // A changing link: the prediction before is not scored for the goal.
        let mut b = done(
            Wl::Steady,
            Link::Changing,
            1,
            10_000,
            vec![pt(2000, 10_000, None)],
        );
        b.before = Some(before(Some(20_000), 0.99));
        b.score(1024);
        assert!(b.before_verdict.is_none() && b.before_error == Some(1.0));
        let row = summarize(Wl::Steady, Link::Changing, &[b]);
        assert!(!row.before_scored && row.before_ok.is_none());
        // A not-converged run that Pacer called converging before the start.
        let mut s = cut(
            Wl::Edge(Edge::Above),
            Link::Slow,
            None,
            vec![stuck_pt(1000)],
        );
        s.before = Some(before(Some(30_000), 0.95));
        s.score(1024);
        let runs = vec![s];
        let rows = [summarize(Wl::Edge(Edge::Above), Link::Slow, &runs)];
        assert_eq!(rows[0].before_ok, Some(false));
        let g = goals(&rows, &runs);
        assert!(
            g.list[4].not_met_in[0].contains("said converges and it not-converged"),
            "{:?}",
            g.list[4]
        );
        let t = render_table(&[(Wl::Edge(Edge::Above), Link::Slow)], &runs, &opts());
        assert!(
            t.contains("said converges (chance it ends 95%) and it not-converged: WRONG"),
            "{t}"
        );
    }
}
