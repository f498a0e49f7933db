//! Finding agents: the hosts file maps host names to agent URLs and tokens.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use pacer_api::{AgentClient, HostEntry, HostsFile, VmInfo};

/// The hosts file in use and its entries.
pub struct Hosts {
    /// Where it was read from.
    pub path: PathBuf,
    /// Entries.
    pub file: HostsFile,
}

impl Hosts {
    /// Loads the hosts file (`--hosts-file`, else [`pacer_api::hosts::default_hosts_path`]:
    /// $PACER_HOSTS, ~/.config/pacer/hosts.json, or the one test bed that is up).
    pub fn load(explicit: Option<PathBuf>) -> Result<Self> {
        let path = match explicit.or_else(pacer_api::hosts::default_hosts_path) {
            Some(p) => p,
            None => bail!(
                "no hosts file: pass --hosts-file FILE, set PACER_HOSTS, write \
                 ~/.config/pacer/hosts.json, or start a test bed with `pacer-lab testbed up`"
            ),
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read hosts file {}", path.display()))?;
        let file: HostsFile = serde_json::from_str(&text)
            .with_context(|| format!("hosts file {} is not valid", path.display()))?;
        if file.hosts.is_empty() {
            bail!("hosts file {} lists no hosts", path.display());
        }
        Ok(Hosts { path, file })
    }

    /// The entry for a host name, or an error listing the known ones.
    pub fn get(&self, name: &str) -> Result<&HostEntry> {
        self.file.hosts.iter().find(|h| h.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.file.hosts.iter().map(|h| h.name.as_str()).collect();
            anyhow::anyhow!(
                "unknown host {name:?}: the hosts file {} knows {}",
                self.path.display(),
                known.join(", ")
            )
        })
    }

    /// A client for a host.
    pub fn client(&self, name: &str) -> Result<AgentClient> {
        let h = self.get(name)?;
        Ok(AgentClient::new(&h.url, &h.token))
    }

    /// Finds which host runs a VM (asking every agent).
    pub async fn locate(&self, vm: &str) -> Result<(String, VmInfo)> {
        let mut unreachable = Vec::new();
        for h in &self.file.hosts {
            let c = AgentClient::new(&h.url, &h.token);
            match c.vm(vm).await {
                Ok(info) if info.origin != pacer_api::VmOrigin::Incoming => {
                    return Ok((h.name.clone(), info))
                }
                Ok(_) => {}
                Err(e) if e.code() == Some(pacer_api::ErrorCode::NotFound) => {}
                Err(e) => unreachable.push(format!("{}: {e}", h.name)),
            }
        }
        if unreachable.is_empty() {
            bail!("no host runs a VM named {vm:?}; `pacer vm list` shows the VMs")
        }
        bail!(
            "no reachable host runs a VM named {vm:?} (unreachable: {})",
            unreachable.join("; ")
        )
    }
}
