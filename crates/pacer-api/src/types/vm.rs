//! VMs and hosts: specs, workloads, what a VM and a host report.

use serde::{Deserialize, Serialize};

use super::*;

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
    /// Fraction of the working set whose content is this guest's own (the rest is
    /// what every guest of the program holds: content a gang shares). Left out of
    /// the JSON when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unique: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
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
        if self.unique > 0.0 {
            s.push_str(&format!(" pacer.unique={}", self.unique));
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
