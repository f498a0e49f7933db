//! Request and response bodies of the agent's HTTP/JSON API, shared by the agent
//! (`pacerd`), its peers and the CLI.

use serde::{Deserialize, Serialize};

pub use crate::phase::JobPhase;

/// Accelerator choice in a VM spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    /// Use KVM if a probe shows it really runs a guest, else TCG.
    #[default]
    Auto,
    /// Hardware virtualization only.
    Kvm,
    /// Software emulation.
    Tcg,
}

/// The workload the Pacer guest program runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// `idle` or `memwrite`.
    pub kind: String,
    /// Working-set size in MiB.
    #[serde(default = "default_wss")]
    pub wss_mib: u64,
    /// Write rate in MB/s (10^6 bytes/s).
    #[serde(default)]
    pub rate_mbps: f64,
    /// Fraction of the working set that is hot.
    #[serde(default)]
    pub hot_fraction: f64,
    /// Fraction of writes that go to the hot set.
    #[serde(default)]
    pub hot_share: f64,
    /// Disk writer, if any.
    #[serde(default)]
    pub disk: Option<DiskWorkload>,
    /// Start with the memory writer paused (the guest's `resume` command starts it).
    #[serde(default)]
    pub paused: bool,
    /// A real application as the workload (the guest's memory writer then runs only
    /// as `kind`, `wss_mib` and `rate_mbps` say: `idle` over a few MiB, usually). Left
    /// out of the JSON when absent, so agents older than it accept the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppWorkload>,
}

/// The applications the guest image carries, in the guest's words.
pub const APP_KINDS: [&str; 4] = ["redis", "memcached", "stress-ng", "zstd"];

/// A real application in the guest (from the image's `initrd-apps.img`) and its load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppWorkload {
    /// One of [`APP_KINDS`].
    pub kind: String,
    /// Its data set, MiB.
    pub mib: u64,
    /// The rate its load aims at, MB/s written (what each application really gets is in
    /// docs/guest.md).
    pub rate: f64,
}

impl AppWorkload {
    /// Checks the kind and the numbers, saying what is wrong and what to give instead.
    pub fn check(&self) -> Result<(), String> {
        if !APP_KINDS.contains(&self.kind.as_str()) {
            return Err(format!(
                "unknown application {:?}: use {}",
                self.kind,
                APP_KINDS.join(", ")
            ));
        }
        if self.mib == 0 || self.mib > 1 << 20 {
            return Err(format!(
                "application data set {} MiB is out of range: give 1 MiB or more",
                self.mib
            ));
        }
        if !self.rate.is_finite() || self.rate < 0.0 || self.rate > 100_000.0 {
            return Err(format!(
                "application rate {} MB/s is out of range: give 0 to 100000",
                self.rate
            ));
        }
        Ok(())
    }

    /// Guest memory the application needs beside the guest's own, MiB: its data set
    /// twice (redis's and memcached's overhead, zstd's outputs beside its data) and the
    /// programs themselves (about 48 MiB unpacked from the initramfs).
    pub fn memory_mib(&self) -> u64 {
        self.mib * 2 + 48
    }
}

/// The guest program's disk writer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskWorkload {
    /// Guest block device, e.g. `/dev/vda`.
    #[serde(default = "default_disk_device")]
    pub device: String,
    /// Write rate in MB/s.
    pub rate_mbps: f64,
    /// Block size in KiB (multiple of 4).
    #[serde(default = "default_bs")]
    pub bs_kib: u64,
    /// `seq`, `uniform` or `hot`.
    #[serde(default = "default_pattern")]
    pub pattern: String,
    /// For `hot`: the fraction of the span that takes 90% of the writes.
    #[serde(default = "default_hot")]
    pub hot_fraction: f64,
    /// MiB of the device to use (default: all of it).
    #[serde(default)]
    pub span_mib: Option<u64>,
    /// Write every block once at start so the whole span can be verified.
    #[serde(default = "yes")]
    pub fill: bool,
}

fn default_disk_device() -> String {
    "/dev/vda".into()
}
fn default_bs() -> u64 {
    64
}
fn default_pattern() -> String {
    "uniform".into()
}
fn default_hot() -> f64 {
    0.1
}

fn default_wss() -> u64 {
    256
}

impl Workload {
    /// The kernel command-line words that select this workload in the guest.
    pub fn kernel_args(&self) -> String {
        let mut s = format!(
            "pacer.workload={} pacer.wss_mib={} pacer.rate_mbps={} pacer.hot_fraction={} pacer.hot_share={}",
            self.kind, self.wss_mib, self.rate_mbps, self.hot_fraction, self.hot_share
        );
        if self.paused {
            s.push_str(" pacer.paused=1");
        }
        if let Some(d) = &self.disk {
            s.push_str(&format!(
                " pacer.disk={} pacer.disk_rate_mbps={} pacer.disk_bs_kib={} pacer.disk_pattern={} pacer.disk_hot_fraction={} pacer.disk_fill={}",
                d.device, d.rate_mbps, d.bs_kib, d.pattern, d.hot_fraction, u8::from(d.fill)
            ));
            if let Some(span) = d.span_mib {
                s.push_str(&format!(" pacer.disk_span_mib={span}"));
            }
        }
        if let Some(a) = &self.app {
            s.push_str(&format!(
                " pacer.app={} pacer.app_mib={} pacer.app_rate={}",
                a.kind, a.mib, a.rate
            ));
        }
        s
    }
}

/// What to start: a VM specification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Unique name on its host.
    pub name: String,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    #[serde(default = "one")]
    pub vcpus: u32,
    /// Kernel for direct boot.
    #[serde(default)]
    pub kernel: Option<String>,
    /// Initramfs for direct boot.
    #[serde(default)]
    pub initrd: Option<String>,
    /// Extra kernel command line.
    #[serde(default)]
    pub append: Option<String>,
    /// Disk images (raw or qcow2), attached as virtio-blk in order (/dev/vda, vdb...).
    #[serde(default)]
    pub disks: Vec<String>,
    /// Workload for the Pacer guest program.
    #[serde(default)]
    pub workload: Option<Workload>,
    /// Accelerator.
    #[serde(default)]
    pub accel: AccelChoice,
}

fn one() -> u32 {
    1
}

/// How a VM came under this agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VmOrigin {
    /// Started by this agent.
    Launched,
    /// An existing QEMU taken over by its QMP socket.
    Adopted,
    /// Arrived by migration.
    MigratedIn,
    /// A migration target not yet committed.
    Incoming,
}

/// Whether a VM's guest runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VmState {
    /// The guest runs.
    Running,
    /// Stopped, and `cont` would resume it (paused, created paused, or after a
    /// migration that was not committed).
    Paused,
    /// Receiving a migration.
    Incoming,
    /// Its migration away completed: the guest lives elsewhere now.
    MigratedAway,
    /// QEMU runs but the guest does not (shut down, crashed, I/O error, ...).
    Stopped,
    /// The QEMU process is gone.
    Gone,
    /// QEMU runs but does not answer on QMP.
    Unreachable,
    /// A state this client does not know (from a newer agent).
    #[serde(other)]
    Unknown,
}

impl VmState {
    /// Its word in the API (`running`, `migrated-away`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::Incoming => "incoming",
            VmState::MigratedAway => "migrated-away",
            VmState::Stopped => "stopped",
            VmState::Gone => "gone",
            VmState::Unreachable => "unreachable",
            VmState::Unknown => "unknown",
        }
    }
}

/// A VM as the agent reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmInfo {
    /// Name.
    pub name: String,
    /// Whether the guest runs, in a word.
    pub state: VmState,
    /// QEMU's own run state word (`running`, `paused`, `inmigrate`, ...), when QEMU answered.
    #[serde(default)]
    pub qemu_state: Option<String>,
    /// QEMU pid.
    pub pid: i32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// Accelerator in use.
    pub accel: String,
    /// How the VM came here.
    pub origin: VmOrigin,
    /// The spec, when known (not for adopted VMs).
    pub spec: Option<VmSpec>,
    /// Migration job currently moving this VM, if any.
    pub migrating: Option<String>,
    /// QMP socket path.
    pub qmp_socket: String,
    /// Serial console log, if known.
    pub console_log: Option<String>,
}

/// Adopt an already running QEMU.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdoptRequest {
    /// Name to give it.
    pub name: String,
    /// Its QMP socket.
    pub qmp_socket: String,
    /// Its serial console log file, if it has one.
    #[serde(default)]
    pub console_log: Option<String>,
}

/// About the host an agent runs on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostInfo {
    /// Host name as the agent was told.
    pub name: String,
    /// Agent version.
    pub version: String,
    /// Memory the agent may give to VMs, in MiB.
    pub memory_capacity_mib: u64,
    /// Memory already given to VMs, in MiB.
    pub memory_committed_mib: u64,
    /// Address QEMU receives migrations on.
    pub migration_address: String,
    /// Result of the KVM probe, if it ran.
    pub kvm: Option<String>,
    /// Free bytes where incoming disks are created.
    #[serde(default)]
    pub disk_free_bytes: u64,
}

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

fn yes() -> bool {
    true
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

/// Ask a destination agent to prepare an incoming VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingRequest {
    /// The VM's spec.
    pub spec: VmSpec,
    /// Accelerator the source runs (the destination must match).
    pub accel: String,
    /// Migration capabilities to turn on at the destination.
    pub capabilities: Vec<String>,
    /// Disks to create and export for the copy (empty: nothing to copy).
    #[serde(default)]
    pub disks: Vec<IncomingDisk>,
}

/// The destination is ready.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncomingReady {
    /// URI for QEMU's `migrate`.
    pub uri: String,
    /// Where to mirror disks, when disks are copied.
    #[serde(default)]
    pub nbd: Option<NbdTarget>,
}

/// One agent in a hosts file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    /// Host name.
    pub name: String,
    /// How the CLI reaches the agent (`unix:/path` or `http://host:port`).
    pub url: String,
    /// How other agents reach it (defaults to `url`).
    #[serde(default)]
    pub peer_url: Option<String>,
    /// API token.
    pub token: String,
}

impl HostEntry {
    /// The URL other agents use.
    pub fn peer_url(&self) -> &str {
        self.peer_url.as_deref().unwrap_or(&self.url)
    }
}

/// The CLI's list of agents (`hosts.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostsFile {
    /// The agents.
    pub hosts: Vec<HostEntry>,
}

/// The answer to stopping a VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stopped {
    /// The VM stopped.
    pub stopped: String,
}

/// The answer to aborting an incoming VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Aborted {
    /// The incoming VM thrown away.
    pub aborted: String,
}

/// The end of a VM's serial console.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Console {
    /// VM name.
    pub vm: String,
    /// Console text (lossy UTF-8).
    pub text: String,
}

/// The answer to a link probe.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ProbeAnswer {
    /// Bytes that arrived.
    pub bytes: u64,
}

/// An empty answer.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Empty {}

/// One VM of a group migration, and where it runs now.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMemberRequest {
    /// VM name.
    pub vm: String,
    /// The agent it runs on, as the coordinating agent reaches it.
    pub source: PeerRef,
}

/// Move several VMs to one destination so that they finish together. The agent
/// this is sent to coordinates the group until it ends, whether or not the
/// client that sent it stays.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRequest {
    /// The VMs, each with its source.
    pub members: Vec<GroupMemberRequest>,
    /// Every member's migration options and destination; its `finish_in_s` is the
    /// group's target (none: the earliest the shared link allows).
    pub migration: MigrateRequest,
    /// Coordinate (predict, plan a common finish, pace, re-target); false starts
    /// every member flat out at once (for comparison).
    #[serde(default = "yes")]
    pub coordinate: bool,
}

/// How a group stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupStatus {
    /// Predicting the members before any moves.
    Planning,
    /// Members are migrating.
    Running,
    /// Every member runs at the destination.
    Completed,
    /// Some or all members did not move; each member's result says where it runs.
    Failed,
    /// Cancelled: members not yet moved stay at their sources.
    Cancelled,
}

impl GroupStatus {
    /// True once the group has ended.
    pub fn is_terminal(self) -> bool {
        !matches!(self, GroupStatus::Planning | GroupStatus::Running)
    }
}

/// Where a group member stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberState {
    /// Not started yet.
    Waiting,
    /// Its migration is being started.
    Starting,
    /// Its migration runs.
    Running,
    /// Moved: it runs at the destination.
    Completed,
    /// Its migration failed: it runs at its source (see its result).
    Failed,
    /// Its migration was cancelled: it runs at its source.
    Cancelled,
    /// Never started (the group ended first, or its source refused): it stays at its source.
    NotStarted,
    /// Its job is gone (its source agent restarted); `fate` says where the VM was found.
    Lost,
}

impl MemberState {
    /// True once the member has ended one way or another.
    pub fn is_terminal(self) -> bool {
        !matches!(self, MemberState::Waiting | MemberState::Starting | MemberState::Running)
    }
}

/// One member of a group as the coordinator reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupMemberInfo {
    /// VM name.
    pub vm: String,
    /// Its source host.
    pub source: String,
    /// Where it stands.
    pub state: MemberState,
    /// Its migration job on the source, once started.
    pub job_id: Option<String>,
    /// Seconds after the group started that its migration was started.
    pub started_s: Option<f64>,
    /// The member's latest progress (percent done, phase), while it runs.
    pub progress: Option<Progress>,
    /// Its result, once ended.
    pub result: Option<MigrationResult>,
    /// When it finished, seconds after the group started.
    pub finish_s: Option<f64>,
    /// Where the VM runs now and why, in words (e.g. "runs on h2", "not started: stays on h1").
    pub fate: String,
}

/// A group migration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Group id.
    pub id: String,
    /// The coordinating agent's host.
    pub coordinator: String,
    /// Destination host.
    pub destination: String,
    /// Status.
    pub status: GroupStatus,
    /// Members, in the order given.
    pub members: Vec<GroupMemberInfo>,
    /// The common target, seconds after the group started (none: uncoordinated).
    pub target_s: Option<f64>,
    /// When the group started (ms since the Unix epoch).
    pub started_unix_ms: u64,
    /// Notable events, oldest first.
    pub events: Vec<String>,
    /// The outcome, once every member has ended.
    pub result: Option<GroupResult>,
}

/// A group's outcome: what `pacer migrate-group --json` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupResult {
    /// Every member's result, in the order given (a member never started has none).
    pub results: Vec<Option<MigrationResult>>,
    /// When each finished, seconds after the group started.
    pub finish_s: Vec<Option<f64>>,
    /// The common target aimed at last (none: uncoordinated).
    pub target_s: Option<f64>,
    /// Last finish minus first finish of the members that completed, seconds.
    pub spread_s: f64,
    /// Time during which some members ran at the destination and others at their source, seconds.
    pub split_s: f64,
    /// Whether every member completed.
    pub all_completed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle() -> Workload {
        serde_json::from_str(r#"{"kind":"idle","wss_mib":4}"#).unwrap()
    }

    /// JSON written before applications existed still reads, and a workload
    /// without one is written without the field (older agents reject unknown ones).
    #[test]
    fn app_field_is_optional_both_ways() {
        let w = idle();
        assert_eq!(w.app, None);
        assert!(!serde_json::to_string(&w).unwrap().contains("app"));
        assert!(!w.kernel_args().contains("pacer.app"));
        let i: IntegrityResult = serde_json::from_str(
            r#"{"ok":true,"pages_checked":1,"bad_pages":0,"errors_total":0,"duration_ms":1}"#,
        )
        .unwrap();
        assert_eq!((i.disk_ok, i.app_ok), (true, None));
        assert!(!serde_json::to_string(&i).unwrap().contains("app"));
    }

    #[test]
    fn app_goes_to_the_kernel_command_line() {
        let w = Workload {
            app: Some(AppWorkload { kind: "redis".into(), mib: 64, rate: 12.5 }),
            ..idle()
        };
        assert!(w.kernel_args().ends_with(" pacer.app=redis pacer.app_mib=64 pacer.app_rate=12.5"));
        let back: Workload = serde_json::from_str(&serde_json::to_string(&w).unwrap()).unwrap();
        assert_eq!(back, w);
    }

    #[test]
    fn app_checks_name_what_is_wrong() {
        let a = |kind: &str, mib, rate| AppWorkload { kind: kind.into(), mib, rate };
        for k in APP_KINDS {
            assert_eq!(a(k, 64, 10.0).check(), Ok(()));
        }
        let e = a("mysql", 64, 10.0).check().unwrap_err();
        assert_eq!(e, r#"unknown application "mysql": use redis, memcached, stress-ng, zstd"#);
        assert!(a("zstd", 0, 10.0).check().unwrap_err().contains("data set"));
        assert!(a("zstd", 64, f64::NAN).check().unwrap_err().contains("rate"));
        assert_eq!(a("zstd", 64, 1.0).memory_mib(), 176);
    }
}
