//! The agent's settings, from its command line.

use std::path::PathBuf;

/// Agent settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Host name, as peers and the CLI call it.
    pub host_name: String,
    /// Where records, tokens and VM runtime files live.
    pub state_dir: PathBuf,
    /// QEMU binary.
    pub qemu: PathBuf,
    /// Memory the agent may give to VMs (MiB); None = what the host has available.
    pub memory_capacity_mib: Option<u64>,
    /// IP address incoming migrations listen on.
    pub migration_address: String,
    /// Seconds without a heartbeat from the source before an incoming VM is dropped.
    pub incoming_lease_s: u64,
    /// Where incoming disk copies are created (default: STATE_DIR/vms).
    pub disk_dir: Option<PathBuf>,
}

impl Config {
    /// Where incoming disk copies go.
    pub fn disk_dir(&self) -> PathBuf {
        self.disk_dir.clone().unwrap_or_else(|| self.state_dir.join("vms"))
    }
}
