//! Migrations: the request, its predictions and target, its progress and result, the job.

use serde::{Deserialize, Serialize};

use super::*;

/// Migration strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Iterative pre-copy.
    #[default]
    PreCopy,
    /// Post-copy (switch at once or after a delay).
    PostCopy,
    /// Pre-copy, switching to post-copy when pre-copy stops converging.
    Hybrid,
    /// Stop the guest, copy everything, resume at the destination.
    StopAndCopy,
}

impl Strategy {
    /// Its name in the API and CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::PreCopy => "pre-copy",
            Strategy::PostCopy => "post-copy",
            Strategy::Hybrid => "hybrid",
            Strategy::StopAndCopy => "stop-and-copy",
        }
    }
}

/// A destination agent, as the source agent reaches it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerRef {
    /// Host name.
    pub name: String,
    /// URL of its API reachable from the source host.
    pub url: String,
    /// Its API token.
    pub token: String,
}

/// Start a migration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    /// Where to.
    pub destination: PeerRef,
    /// Strategy.
    #[serde(default)]
    pub strategy: Strategy,
    /// Bandwidth cap in bytes/s (none = unlimited).
    #[serde(default)]
    pub bandwidth: Option<u64>,
    /// Downtime limit in ms.
    #[serde(default)]
    pub downtime_limit_ms: Option<u64>,
    /// Turn on auto-converge (guest CPU throttling).
    #[serde(default)]
    pub auto_converge: bool,
    /// Post-copy: seconds of pre-copy before switching (0 = at once).
    #[serde(default)]
    pub postcopy_after_s: Option<f64>,
    /// Cancel if no byte moves for this long (link cut).
    #[serde(default)]
    pub stall_timeout_s: Option<f64>,
    /// Ask the guest to verify its memory after the migration.
    #[serde(default = "yes")]
    pub verify_guest: bool,
    /// Whether and how to copy disks.
    #[serde(default)]
    pub copy_storage: CopyStorage,
    /// Disk bandwidth cap in bytes/s (none = unlimited).
    #[serde(default)]
    pub disk_bandwidth: Option<u64>,
    /// Finish this many seconds after the request, at the gentlest pace that makes it.
    #[serde(default)]
    pub finish_in_s: Option<f64>,
    /// Refuse (rather than run flat out) when the target cannot be met.
    #[serde(default)]
    pub strict: bool,
    /// What Pacer may do when pre-copy does not converge.
    #[serde(default)]
    pub converge: ConvergePolicy,
    /// Send the memory stream through the hosts' relays, which send each page's
    /// content once over the host pair's connection, whichever VM it comes from
    /// (plain pre-copy only: post-copy needs QEMU's return path, which the relay
    /// does not carry, so such a migration goes direct and the result says why).
    #[serde(default)]
    pub dedup: bool,
    /// Through the relays without dedup (the relay as a plain forwarder: for
    /// comparing with dedup; `dedup` implies the relays).
    #[serde(default)]
    pub relay: bool,
}

/// What Pacer may do to end a pre-copy that does not converge (nothing by default: it
/// says so, and the migration goes on as asked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvergePolicy {
    /// Raise QEMU's downtime limit, a step a round, up to this (ms): to what the model says
    /// lets QEMU switch over, at least doubling it each step.
    #[serde(default)]
    pub max_downtime_ms: Option<u64>,
    /// Switch to post-copy when raising the limit is not enough (or not allowed).
    #[serde(default)]
    pub allow_postcopy: bool,
}

/// Something the controller did to end a pre-copy that did not converge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvergeStep {
    /// When, ms since the job started.
    pub at_ms: u64,
    /// What.
    pub action: ConvergeAction,
    /// Why, in words.
    pub why: String,
}

/// The controller's ways of ending a pre-copy that does not converge.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum ConvergeAction {
    /// Raised QEMU's downtime limit to this.
    DowntimeLimit {
        /// The new limit, ms.
        ms: u64,
    },
    /// Switched to post-copy.
    Postcopy,
}

impl MigrateRequest {
    /// A request with every option at its default.
    pub fn new(destination: PeerRef, strategy: Strategy) -> Self {
        MigrateRequest {
            destination,
            strategy,
            bandwidth: None,
            downtime_limit_ms: None,
            auto_converge: false,
            postcopy_after_s: None,
            stall_timeout_s: None,
            verify_guest: true,
            copy_storage: CopyStorage::All,
            disk_bandwidth: None,
            finish_in_s: None,
            strict: false,
            converge: ConvergePolicy::default(),
            dedup: false,
            relay: false,
        }
    }
}

/// Change a running migration's finish target.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetargetRequest {
    /// New target: this many seconds from now (none: run flat out).
    pub finish_in_s: Option<f64>,
}

/// One prediction made during a migration, kept so anyone can score it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct PredictionPoint {
    /// When it was made, ms since the job started.
    pub elapsed_ms: u64,
    /// Predicted total time, ms; none when the migration will not end on its own as it
    /// runs (pre-copy does not converge: `stuck` says why and what would end it).
    pub total_ms: Option<u64>,
    /// Early end of the band, ms.
    pub low_ms: u64,
    /// Late end of the band, ms; none when the band reaches the inputs at which pre-copy
    /// does not converge. The band is an 80% interval.
    pub high_ms: Option<u64>,
    /// Predicted downtime, ms.
    pub downtime_ms: u64,
    /// The naive estimate (elapsed + remaining / current rate) at the same moment, ms.
    pub naive_total_ms: Option<u64>,
    /// How likely the migration is to end on its own, 0 to 1.
    #[serde(default = "certain")]
    pub completes_chance: f64,
    /// Pre-copy does not converge at this rate: why, and what would end it.
    #[serde(default)]
    pub stuck: Option<StuckAdvice>,
    /// Pre-copy at the switch-over edge: rounds come within reach of QEMU's threshold
    /// and miss; the finish is a matter of chance, and the band says how wide.
    #[serde(default)]
    pub edge: Option<EdgeAdvice>,
}

/// Rounds at the switch-over edge, and what would end them.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct EdgeAdvice {
    /// Rounds in a row that came within reach of the threshold and did not switch.
    pub missed_rounds: u64,
    /// How long one of them lasts, ms.
    pub round_ms: u64,
    /// The least QEMU had left after one of them, bytes, and its threshold then.
    pub least_left_bytes: u64,
    pub threshold_bytes: u64,
    /// A downtime limit at which that round would have switched, ms (QEMU's unit,
    /// rounded up to 10 ms).
    pub downtime_limit_ms: u64,
}

fn certain() -> f64 {
    1.0
}

/// A pre-copy that does not converge at its rate, and what would end it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct StuckAdvice {
    /// The dirty set pre-copy keeps coming back to at each round's end, bytes.
    pub dirty_set_bytes: u64,
    /// How fast the guest dirties memory, bytes/s.
    pub dirty_rate_bps: f64,
    /// The rate the migration gets (the link's, or the cap), bytes/s.
    pub speed_bps: f64,
    /// A downtime limit that lets QEMU switch over now, ms.
    pub downtime_limit_ms: u64,
    /// The downtime that limit means, ms.
    pub downtime_ms: u64,
    /// The least bandwidth at which pre-copy converges with the current downtime limit,
    /// bytes/s (none: not within 100x of the rate it gets).
    pub bandwidth_needed_bps: Option<f64>,
    /// Switching to post-copy now: when the migration would end, ms since it started.
    pub postcopy_total_ms: u64,
    /// Turning on auto-converge now: when it would end, ms since it started (none: it is on).
    pub auto_converge_total_ms: Option<u64>,
}

/// A predicted finish and its band, ms.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct FinishBand {
    /// Early end, ms.
    pub low_ms: u64,
    /// Most likely, ms.
    pub total_ms: u64,
    /// Late end, ms.
    pub high_ms: u64,
}

/// A finish-time target and how the job is doing against it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct TargetStatus {
    /// Target finish, ms since the job started.
    pub finish_ms: u64,
    /// Whether it can be met.
    pub feasible: bool,
    /// Earliest possible finish (flat out), ms since the job started.
    pub earliest_finish_ms: u64,
    /// Speed currently set, bytes/s (0 = flat out).
    pub speed_bps: u64,
}

/// `pacer predict`: what a migration would take, without starting it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PredictRequest {
    /// Where to.
    pub destination: PeerRef,
    /// Strategy.
    #[serde(default)]
    pub strategy: Strategy,
    /// Bandwidth cap in bytes/s.
    #[serde(default)]
    pub bandwidth: Option<u64>,
    /// Downtime limit in ms.
    #[serde(default)]
    pub downtime_limit_ms: Option<u64>,
    /// Post-copy delay.
    #[serde(default)]
    pub postcopy_after_s: Option<f64>,
    /// Whether disks would be copied.
    #[serde(default)]
    pub copy_storage: CopyStorage,
    /// Also ask QEMU's own dirty log (a migration into a local sink that cannot switch
    /// over, about 10 s beside the content measurement): it counts the pages a program
    /// rewrites with the bytes they held, which hashing cannot see. Without it, a
    /// reading less than a minute old is still used.
    #[serde(default = "yes")]
    pub dirty_log: bool,
}

fn yes() -> bool {
    true
}

/// The answer to `pacer predict`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PredictResponse {
    /// Predicted total time, ms (none: pre-copy would not converge, see `stuck`).
    pub total_ms: Option<u64>,
    /// Band (80%), ms.
    pub low_ms: u64,
    /// Band (80%), ms (none: it reaches inputs at which pre-copy does not converge).
    pub high_ms: Option<u64>,
    /// Predicted downtime, ms.
    pub downtime_ms: u64,
    /// Whether pre-copy converges on its own (at the measured figures).
    pub converges: bool,
    /// How likely the migration is to end on its own, 0 to 1 (near the edge, both
    /// outcomes are possible: `if_it_converges` and `stuck` describe each).
    #[serde(default = "certain")]
    pub completes_chance: f64,
    /// The finish if it converges (from the likely inputs under which it does).
    #[serde(default)]
    pub if_it_converges: Option<FinishBand>,
    /// What would end it if it does not converge.
    #[serde(default)]
    pub stuck: Option<StuckAdvice>,
    /// Measured link rate to the destination, bytes/s.
    pub link_bps: f64,
    /// Guest dirty rate, bytes/s.
    pub dirty_rate_bps: f64,
    /// Guest writable working set, bytes (none: unbounded).
    pub wss_bytes: Option<f64>,
    /// Hot set the guest rewrites within a fraction of a second, bytes.
    #[serde(default)]
    pub hot_bytes: f64,
    /// Fraction of guest memory that is zero pages.
    pub zero_fraction: f64,
    /// Guest memory, bytes.
    pub ram_bytes: u64,
    /// Disk bytes to copy.
    pub disk_bytes: u64,
    /// What the dirtying figures stand on: `content` (hashing guest memory) or
    /// `dirty-log` (QEMU's dirty log: it counted more than twice what hashing saw, the
    /// guest rewriting pages with the bytes they held, or it rehearsed the migration's
    /// end, see `rehearsal`).
    #[serde(default)]
    pub dirty_source: String,
    /// With `dirty-log` because hashing was blind: the dirty rate hashing saw, bytes/s.
    #[serde(default)]
    pub content_dirty_rate_bps: Option<f64>,
    /// The migration's end rehearsed before the start, if it was.
    #[serde(default)]
    pub rehearsal: Option<RehearsalView>,
    /// What QEMU's dirty log counted, if the probe ran (or a reading under a minute old).
    #[serde(default)]
    pub dirty_log: Option<DirtyLogView>,
}

/// What the dirty-log probe's syncs counted: enough to see why a guest was or was not
/// taken for one that writes in bursts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirtyLogView {
    /// `[window s, bytes dirtied]` at the syncs with a window of their own (the probe's,
    /// then the rehearsal's).
    pub points: Vec<[f64; 2]>,
    /// The median window's rate, bytes/s.
    pub median_rate_bps: Option<f64>,
    /// Seconds covered by all the syncs, and the bytes they found.
    pub span_s: Option<f64>,
    pub span_bytes: Option<f64>,
    /// The largest single find, bytes.
    pub largest_find_bytes: f64,
    /// Taken for a guest that writes in bursts (its span's rate several times its median
    /// window's) or in phases (long windows no steady writer's curve passes through):
    /// the dirty model is the span's rate over the largest find.
    pub bursts: bool,
}

/// The dirty-log probe's rehearsal of a migration's end: QEMU paced at the link's
/// rate with the migration's downtime limit, never allowed to switch over, watched
/// for whether its switch-over rule would fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RehearsalView {
    /// The pace, bytes/s.
    pub link_bps: f64,
    pub downtime_limit_ms: u64,
    /// How long it ran.
    pub ran_ms: u64,
    /// When QEMU would have switched over (none: not while it ran).
    pub switched_after_ms: Option<u64>,
    /// The least QEMU had left just after a sync, bytes.
    pub least_after_sync_bytes: Option<u64>,
}

/// `pacer predict VM... --to HOST [--dedup]`: the migration of a gang of VMs of one
/// host, all started together, without starting it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PredictGangRequest {
    /// The VMs (all on the agent asked).
    pub vms: Vec<String>,
    /// Where to.
    pub destination: PeerRef,
    /// Strategy for every VM.
    #[serde(default)]
    pub strategy: Strategy,
    /// Bandwidth cap per VM in bytes/s.
    #[serde(default)]
    pub bandwidth: Option<u64>,
    /// Through the relays with dedup (as `MigrateRequest::dedup`).
    #[serde(default)]
    pub dedup: bool,
    /// Whether disks would be copied.
    #[serde(default)]
    pub copy_storage: CopyStorage,
}

/// One VM of a gang prediction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GangVmPrediction {
    /// VM name.
    pub vm: String,
    /// When it would run at the destination, ms from the gang's start (none: it would
    /// not converge at its share of the link).
    pub total_ms: Option<u64>,
    /// Its downtime, ms.
    pub downtime_ms: Option<u64>,
    /// Its QEMU stream, bytes.
    pub stream_bytes: Option<u64>,
    /// What its stream would cost on the link, bytes.
    pub wire_bytes: Option<u64>,
    /// Guest memory, bytes.
    pub ram_bytes: u64,
    /// Fraction of its memory that is zero pages.
    pub zero_fraction: f64,
    /// Its dirty rate, bytes/s.
    pub dirty_rate_bps: f64,
    /// Fraction of its non-zero pages whose content the gang holds more than once.
    pub shared_fraction: f64,
}

/// The answer to a gang prediction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PredictGangResponse {
    /// When the last VM would run at the destination, ms (none: some VM would not
    /// converge, see `not_converging`).
    pub total_ms: Option<u64>,
    /// Early end: the link 5% faster, the guests dirtying 25% less, ms.
    pub low_ms: Option<u64>,
    /// Late end: the link 5% slower, the guests dirtying 25% more, ms.
    pub high_ms: Option<u64>,
    /// Whether the prediction is for the relays with dedup.
    pub dedup: bool,
    /// Why dedup was asked but would not be used (the VMs would migrate direct).
    #[serde(default)]
    pub why_direct: Option<String>,
    /// Measured link rate to the destination, bytes/s.
    pub link_bps: f64,
    /// The QEMU streams, summed, bytes.
    pub stream_bytes: Option<u64>,
    /// The link's bytes, summed.
    pub wire_bytes: Option<u64>,
    /// Non-zero memory over the gang, bytes.
    pub nonzero_bytes: u64,
    /// Distinct content in that memory, bytes.
    pub distinct_bytes: u64,
    /// Pages were counted by content sample: one content in this many (1: all).
    pub sampled_one_in: u64,
    /// Per VM, in request order.
    pub vms: Vec<GangVmPrediction>,
    /// VMs that would not converge at their share of the link.
    pub not_converging: Vec<String>,
    /// What the prediction leaves out, in words.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// How a migration treats the VM's disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CopyStorage {
    /// Copy every disk whole (no shared storage); nothing to do without disks.
    #[default]
    All,
    /// Copy only the top layer: the destination has the same backing images.
    Incremental,
    /// Shared storage: the destination opens the same image files.
    None,
}

/// A disk the destination must create to receive a copy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IncomingDisk {
    /// Image format to create (`raw` or `qcow2`).
    pub format: String,
    /// Virtual size in bytes.
    pub virtual_size: u64,
    /// Bytes the copy may need on the destination.
    pub needed_bytes: u64,
    /// Backing image the destination must already have (incremental copy).
    #[serde(default)]
    pub backing: Option<String>,
    /// Its format.
    #[serde(default)]
    pub backing_format: Option<String>,
}

/// Where the source mirrors disks to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NbdTarget {
    /// NBD server address.
    pub host: String,
    /// NBD server port.
    pub port: u16,
    /// Export name per disk, in disk order.
    pub exports: Vec<String>,
}

/// Disk copy progress (all disks together).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DiskProgress {
    /// Bytes the mirrors must copy (grows as the guest writes).
    pub total: u64,
    /// Bytes copied.
    pub transferred: u64,
    /// Bytes left.
    pub remaining: u64,
    /// All mirrors in sync.
    pub ready: bool,
    /// Smoothed copy rate, bytes/s.
    pub rate_bps: f64,
    /// Guest disk write throughput (blockstats), bytes/s.
    pub write_rate_bps: f64,
    /// Distinct bytes the guest dirtied since the copy began (dirty bitmap).
    pub dirty_bytes: u64,
    /// Growth rate of the dirty bitmap, bytes/s.
    pub dirty_rate_bps: f64,
}

/// Job lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobStatus {
    /// Running.
    Running,
    /// Finished: the VM runs at the destination.
    Completed,
    /// Failed: the VM runs where it was (unless the reason says otherwise).
    Failed,
    /// Cancelled by request: the VM runs where it was.
    Cancelled,
}

impl JobStatus {
    /// True once the job has ended.
    pub fn is_terminal(self) -> bool {
        self != JobStatus::Running
    }
}

/// One progress sample of a migration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Milliseconds since the job started.
    pub elapsed_ms: u64,
    /// Phase.
    pub phase: JobPhase,
    /// Percent done, never decreasing, 100 only when completed.
    pub percent: f64,
    /// Bytes sent.
    pub transferred: u64,
    /// Bytes QEMU still counts as to be sent.
    pub remaining: u64,
    /// Guest RAM size.
    pub total: u64,
    /// Smoothed throughput in bytes/s.
    pub rate_bps: f64,
    /// Dirty rate in bytes/s (last round).
    pub dirty_rate_bps: f64,
    /// Pre-copy rounds so far.
    pub rounds: u64,
    /// QEMU's expected downtime in ms.
    pub expected_downtime_ms: Option<u64>,
    /// Disk copy, when disks are copied.
    #[serde(default)]
    pub disk: Option<DiskProgress>,
}

/// The guest program's memory check result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntegrityResult {
    /// True if every page verified and no error was ever seen.
    pub ok: bool,
    /// Pages checked in the sweep.
    pub pages_checked: u64,
    /// Bad pages found in the sweep.
    pub bad_pages: u64,
    /// Errors the guest has seen in total.
    pub errors_total: u64,
    /// How long the sweep took.
    pub duration_ms: u64,
    /// True if the disk verified too (true when the guest writes no disk).
    #[serde(default = "yes")]
    pub disk_ok: bool,
    /// Disk blocks checked (0 without a disk workload).
    #[serde(default)]
    pub disk_blocks_checked: u64,
    /// Bad disk blocks found.
    #[serde(default)]
    pub disk_bad_blocks: u64,
    /// Whether the guest's application is alive and holds what was stored in it (absent
    /// when it runs none; `ok` is false when this is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_ok: Option<bool>,
    /// What the application check found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_detail: Option<String>,
}

/// The result of a finished migration: what `pacer migrate --json` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrationResult {
    /// `completed`, `failed` or `cancelled`.
    pub status: JobStatus,
    /// VM name.
    pub vm: String,
    /// Strategy used.
    pub strategy: Strategy,
    /// Wall time from request to the guest running at the destination.
    pub total_time_ms: u64,
    /// Time the guest was stopped.
    pub downtime_ms: Option<u64>,
    /// Bytes sent over the wire.
    pub bytes_transferred: u64,
    /// Source host.
    pub source: String,
    /// Destination host.
    pub destination: String,
    /// Where the VM runs now.
    pub vm_location: String,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// QEMU's own migration time.
    pub qemu_total_time_ms: Option<u64>,
    /// Guest memory check after the migration.
    pub integrity: Option<IntegrityResult>,
    /// Pre-copy rounds.
    pub rounds: u64,
    /// Bytes sent in each phase.
    pub precopy_bytes: u64,
    /// Bytes sent while stopped.
    pub downtime_bytes: u64,
    /// Bytes sent in post-copy.
    pub postcopy_bytes: u64,
    /// Memory bytes sent.
    #[serde(default)]
    pub memory_bytes: u64,
    /// Disk bytes copied.
    #[serde(default)]
    pub disk_bytes: u64,
    /// Bytes the source sent to probe the link for this migration (a finish target needs
    /// the link's rate; a figure under a minute old is reused, and then this is 0). Not in
    /// `bytes_transferred`, which counts what QEMU sent.
    #[serde(default)]
    pub probe_bytes: u64,
    /// Every prediction made during the migration (compare with `total_time_ms`).
    #[serde(default)]
    pub predictions: Vec<PredictionPoint>,
    /// The finish-time target at the end, if there was one.
    #[serde(default)]
    pub target: Option<TargetStatus>,
    /// What the controller did because pre-copy did not converge, in order.
    #[serde(default)]
    pub converge_steps: Vec<ConvergeStep>,
    /// How the memory stream went when dedup was asked for.
    #[serde(default)]
    pub relay: Option<RelayReport>,
}

/// A migration's memory stream through the relays.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RelayReport {
    /// Whether it went through the relays (else direct, see `why`).
    pub relayed: bool,
    /// Bytes of QEMU's stream.
    pub stream_bytes: u64,
    /// Bytes this VM's stream took on the relays' connection.
    pub wire_bytes: u64,
    /// Pages in the stream.
    pub pages: u64,
    /// Pages sent as references to content that had crossed already.
    pub refs: u64,
    /// Why it went direct, or from where on it went through without dedup.
    pub why: Option<String>,
}

/// A migration job as the API reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobInfo {
    /// Job id.
    pub id: String,
    /// VM being moved.
    pub vm: String,
    /// Status.
    pub status: JobStatus,
    /// Strategy.
    pub strategy: Strategy,
    /// Source host.
    pub source: String,
    /// Destination host.
    pub destination: String,
    /// Latest progress.
    pub progress: Progress,
    /// Result, once ended.
    pub result: Option<MigrationResult>,
    /// Notable events, oldest first (e.g. "switched to post-copy: ...").
    pub events: Vec<String>,
    /// The latest prediction.
    #[serde(default)]
    pub prediction: Option<PredictionPoint>,
    /// Every prediction so far (one a second).
    #[serde(default)]
    pub predictions: Vec<PredictionPoint>,
    /// The finish-time target, if any.
    #[serde(default)]
    pub target: Option<TargetStatus>,
    /// When the job was requested (ms since the Unix epoch).
    #[serde(default)]
    pub started_unix_ms: u64,
}
