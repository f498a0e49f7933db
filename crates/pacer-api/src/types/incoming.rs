//! The destination side (incoming VMs), the hosts file, and small answers.

use serde::{Deserialize, Serialize};

use super::*;

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
    /// The stream comes through this host's relay (the incoming QEMU listens on a
    /// local socket the relay feeds).
    #[serde(default)]
    pub relay: bool,
}

/// The destination is ready.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncomingReady {
    /// URI for QEMU's `migrate`.
    pub uri: String,
    /// Where to mirror disks, when disks are copied.
    #[serde(default)]
    pub nbd: Option<NbdTarget>,
    /// With `relay`: the destination relay's address (`host:port`); the source's
    /// relay opens the VM's stream there by the VM's name, and `uri` is local.
    #[serde(default)]
    pub relay: Option<String>,
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

/// The answer to committing an incoming VM: the VM, now the destination's own, and
/// when its guest resumed there.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Committed {
    /// The VM.
    #[serde(flatten)]
    pub vm: VmInfo,
    /// When QEMU resumed the guest (its RESUME event), µs since the Unix epoch by the
    /// destination's clock (none if the agent did not see the event).
    #[serde(default)]
    pub resumed_at_unix_us: Option<u64>,
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
