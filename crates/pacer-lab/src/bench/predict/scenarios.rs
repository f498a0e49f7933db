//! The scenarios: workloads, links, the options that pick them.

use super::*;

/// Test bed name.
pub(super) const BED: &str = "bpred";
/// The links' rates.
pub(super) const FAST: &str = "1gbit";
pub(super) const SLOW: &str = "200mbit";
pub(super) const CHANGED: &str = "300mbit";
/// The disk workload's memory write rate, MB/s.
pub(super) const DISK_MEM_RATE: f64 = 5.0;
/// The skewed workload's hot set and its share of the writes.
pub(super) const HOT_FRACTION: f64 = 0.01;
pub(super) const HOT_SHARE: f64 = 0.8;
/// Pre-copy converges comfortably only below this share of the slowest link.
pub(super) const MAX_LINK_SHARE: f64 = 0.8;
/// A writer below this share of the link is expected to converge; above
/// [`STUCK_ABOVE`], not to; in between, either way.
pub(super) const CONVERGES_BELOW: f64 = 0.95;
pub(super) const STUCK_ABOVE: f64 = 1.05;
/// A run expected not to converge is cancelled this long after Pacer said so
/// (the verdict should stay meanwhile).
pub(super) const GIVE_UP_AFTER_MS: u64 = 20_000;
/// The time limit of a run expected not to converge, from the moment the
/// condition becomes true (the start, or the link's change).
pub(super) const STUCK_LIMIT: Duration = Duration::from_secs(60);
/// The time limit of a run at the edge (either way), from that moment.
pub(super) const EDGE_LIMIT: Duration = Duration::from_secs(180);
/// Whether this guest image runs real applications (`pacer_api::Workload::app`,
/// set by [`Wl::guest`] from [`AppKind::spec`]); recorded in the results.
pub const GUEST_HAS_APPS: bool = true;
/// The guest program's own pages beside an application: an idle canary.
pub(super) const APP_CANARY_MIB: u64 = 4;

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
    pub(super) fn as_str(self) -> &'static str {
        match self {
            AppKind::Redis => "redis",
            AppKind::Memcached => "memcached",
            AppKind::Stress => "stress",
            AppKind::Zstd => "zstd",
        }
    }

    /// The program the guest runs.
    pub(super) fn program(self) -> &'static str {
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
pub(super) const ALL_WL: [Wl; 12] = [
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
pub(super) fn default_workloads() -> Vec<Wl> {
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
    pub(super) fn as_str(self) -> &'static str {
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
    pub(super) fn default_links(self) -> Vec<Link> {
        match self {
            Wl::Edge(Edge::Above) => vec![Link::Slow, Link::Falling],
            Wl::Edge(_) => vec![Link::Slow],
            // An application fills its data set at boot (minutes under TCG): the
            // slow link, where the key-value store took 82 s, and a change.
            Wl::App(_) => vec![Link::Slow, Link::Changing],
            _ => vec![Link::Fast, Link::Slow, Link::Changing, Link::Rising],
        }
    }

    /// The edge family's working set, MiB: half the guest's memory.
    pub(super) fn edge_wss(o: &PredictOpts) -> u64 {
        o.memory / 2
    }

    /// The memory writer's rate over `l` once it writes, MB/s (None: an
    /// application's own).
    pub(super) fn write_mbps(self, o: &PredictOpts, l: Link) -> Option<f64> {
        match self {
            Wl::Idle => Some(0.0),
            Wl::Steady | Wl::Skewed | Wl::Phase => Some(o.write_rate),
            Wl::Disk => Some(DISK_MEM_RATE),
            Wl::Edge(e) => Some(e.ratio() * l.end_mbps()),
            Wl::App(_) => None,
        }
    }

    pub(super) fn describe(self, o: &PredictOpts) -> String {
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
    pub(super) fn guest(self, o: &PredictOpts, name: &str, l: Link) -> Result<GuestPlan> {
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

pub(super) const ALL_LINKS: [Link; 5] = [
    Link::Fast,
    Link::Slow,
    Link::Changing,
    Link::Rising,
    Link::Falling,
];

impl Link {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Link::Fast => "1gbit",
            Link::Slow => "200mbit",
            Link::Changing => "1gbit->300mbit",
            Link::Rising => "200mbit->1gbit",
            Link::Falling => "1gbit->200mbit",
        }
    }

    pub(super) fn file_part(self) -> &'static str {
        match self {
            Link::Fast => "1gbit",
            Link::Slow => "200mbit",
            Link::Changing => "changing",
            Link::Rising => "rising",
            Link::Falling => "falling",
        }
    }

    pub(super) fn start_rate(self) -> &'static str {
        match self {
            Link::Slow | Link::Rising => SLOW,
            _ => FAST,
        }
    }

    /// The rate after the change (the rate, when it does not change).
    pub(super) fn end_rate(self) -> &'static str {
        match self {
            Link::Fast | Link::Rising => FAST,
            Link::Slow | Link::Falling => SLOW,
            Link::Changing => CHANGED,
        }
    }

    pub(super) fn changes(self) -> bool {
        self.start_rate() != self.end_rate()
    }

    pub(super) fn bps(rate: &str) -> u64 {
        crate::net::parse_rate(rate).unwrap_or(1)
    }

    /// The starting rate in MB/s (bytes: the tbf rate / 8).
    pub(super) fn start_mbps(self) -> f64 {
        Link::bps(self.start_rate()) as f64 / 8e6
    }

    /// The rate after the change, MB/s.
    pub(super) fn end_mbps(self) -> f64 {
        Link::bps(self.end_rate()) as f64 / 8e6
    }

    /// The slowest rate the run sees, bits/s.
    pub(super) fn slowest_bps(self) -> u64 {
        Link::bps(self.start_rate()).min(Link::bps(self.end_rate()))
    }
}

pub(super) fn parse_wl(s: &str) -> Result<Wl, String> {
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

pub(super) fn parse_link(s: &str) -> Result<Link, String> {
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

pub(super) fn parse_disk_size(s: &str) -> Result<u64, String> {
    let b = pacer_model::parse_nonzero_size(s).map_err(|e| e.to_string())?;
    if b % (1 << 20) != 0 || !(64 << 20..=64 << 30).contains(&b) {
        return Err(format!("{s:?}: give a whole number of MiB from 64M to 64G"));
    }
    Ok(b)
}

pub(super) fn parse_disk_rate(s: &str) -> Result<f64, String> {
    let r = parse_write_rate(s)?;
    if r <= 0.0 || r > 1000.0 {
        return Err(format!(
            "{s:?}: give a disk write rate above 0 and at most 1000 MB/s"
        ));
    }
    Ok(r)
}

pub(super) fn parse_fraction(s: &str) -> Result<f64, String> {
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
    pub(super) fn workloads(&self) -> Vec<Wl> {
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
    pub(super) fn links_of(&self, w: Wl) -> Vec<Link> {
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
    pub(super) fn rows(&self) -> Vec<(Wl, Link)> {
        self.workloads()
            .into_iter()
            .flat_map(|w| self.links_of(w).into_iter().map(move |l| (w, l)))
            .collect()
    }

    /// Every link some row runs over.
    pub(super) fn links(&self) -> Vec<Link> {
        let rows = self.rows();
        ALL_LINKS
            .iter()
            .copied()
            .filter(|l| rows.iter().any(|r| r.1 == *l))
            .collect()
    }

    pub(super) fn validate(&self) -> Result<()> {
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
