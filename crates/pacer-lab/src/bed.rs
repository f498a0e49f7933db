//! A whole test bed: the network from [`crate::net`] plus one `pacerd` agent per
//! test host, and the hosts file the CLI and tests use to reach them.
//!
//! Layout on disk: `<root>/<name>/hosts.json`, and per host `<root>/<name>/hK/`
//! (the agent's state directory: token, VM records, VM runtime files) with the
//! agent's log beside it in `hK.log` and its pid in `hK.pid`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use pacer_api::{HostEntry, HostsFile};
use serde::{Deserialize, Serialize};

use crate::net::{self, NetSpec};

/// Port agents listen on inside their namespace.
pub const AGENT_PORT: u16 = 7070;

/// Errors building or tearing down a test bed.
#[derive(Debug, thiserror::Error)]
pub enum BedError {
    /// The network part failed.
    #[error(transparent)]
    Net(#[from] net::NetError),
    /// An agent did not start.
    #[error("agent for {host} did not start: {reason} (log: {log})")]
    Agent { host: String, reason: String, log: String },
    /// Filesystem trouble.
    #[error("test bed files: {0}")]
    Io(#[from] std::io::Error),
    /// No such test bed.
    #[error("no test bed named {0:?} (see `pacer-lab testbed list`)")]
    Unknown(String),
}

/// How to build a test bed.
#[derive(Debug, Clone)]
pub struct BedOptions {
    /// Name (1-6 of [a-z0-9]).
    pub name: String,
    /// Number of hosts.
    pub hosts: usize,
    /// Link rate in bits/s (0 = unshaped).
    pub rate_bps: u64,
    /// The `pacerd` binary.
    pub pacerd: PathBuf,
    /// Where test beds keep their files.
    pub root: PathBuf,
    /// Memory capacity given to each agent (e.g. "4G"), default: the host's.
    pub memory_capacity: Option<String>,
    /// Seconds an incoming VM lives without word from its source.
    pub incoming_lease_s: Option<u64>,
}

/// One test host with its agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BedHost {
    /// Host name (`h1`...).
    pub name: String,
    /// Network namespace, None in the loopback fallback.
    pub netns: Option<String>,
    /// Address on the test-bed network.
    pub data_ip: IpAddr,
    /// Agent state directory.
    pub state_dir: PathBuf,
    /// Agent TCP port.
    pub port: u16,
    /// Agent pid.
    pub pid: i32,
    /// Extra agent flags for this host only (e.g. `--disk-dir`).
    #[serde(default)]
    pub extra_args: Vec<String>,
}

/// A running test bed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bed {
    /// Name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Hosts.
    pub hosts: Vec<BedHost>,
    /// Whether links are shaped (false in the loopback fallback).
    pub shaped: bool,
    /// The options' extra agent flags, kept for restarts.
    pub agent_args: Vec<String>,
    /// The pacerd binary.
    pub pacerd: PathBuf,
}

/// Where test beds live by default: the rule the CLI finds their hosts files by
/// ([`pacer_api::hosts::testbeds_root`]: $PACER_TESTBED_DIR, /var/lib/pacer/testbeds
/// as root, else ~/.local/state/pacer/testbeds).
pub fn default_root() -> PathBuf {
    pacer_api::hosts::testbeds_root()
}

/// The pacerd binary: $PACER_PACERD, beside this executable, or on PATH.
pub fn find_pacerd() -> PathBuf {
    if let Ok(p) = std::env::var("PACER_PACERD") {
        return PathBuf::from(p);
    }
    if let Some(dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(PathBuf::from)) {
        let p = dir.join("pacerd");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("pacerd")
}

impl Bed {
    /// The hosts file path.
    pub fn hosts_file(&self) -> PathBuf {
        self.dir.join(pacer_api::hosts::TESTBED_HOSTS_FILE)
    }

    /// A host by name.
    pub fn host(&self, name: &str) -> Option<&BedHost> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Loads a test bed's record.
    pub fn load(root: &Path, name: &str) -> Result<Bed, BedError> {
        let p = root.join(name).join("bed.json");
        let text = std::fs::read(&p).map_err(|_| BedError::Unknown(name.to_string()))?;
        serde_json::from_slice(&text).map_err(|e| BedError::Io(e.into()))
    }

    fn save(&self) -> Result<(), BedError> {
        std::fs::write(self.dir.join("bed.json"), serde_json::to_vec_pretty(self).map_err(std::io::Error::from)?)?;
        let mut hosts = HostsFile::default();
        for h in &self.hosts {
            // A host whose agent has not started yet has no token: not reachable yet.
            let Ok(token) = std::fs::read_to_string(h.state_dir.join("token")) else { continue };
            let token = token.trim().to_string();
            hosts.hosts.push(HostEntry {
                name: h.name.clone(),
                url: format!("unix:{}", h.state_dir.join("pacerd.sock").display()),
                peer_url: Some(format!("http://{}:{}", h.data_ip, h.port)),
                token,
            });
        }
        std::fs::write(self.hosts_file(), serde_json::to_vec_pretty(&hosts).map_err(std::io::Error::from)?)?;
        Ok(())
    }

    /// Starts (or restarts) the agent of one host and waits for its socket.
    pub fn start_agent(&mut self, host: &str) -> Result<(), BedError> {
        let idx = self
            .hosts
            .iter()
            .position(|h| h.name == host)
            .ok_or_else(|| BedError::Unknown(format!("{}/{host}", self.name)))?;
        let h = self.hosts[idx].clone();
        let log_path = self.dir.join(format!("{}.log", h.name));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let sock = h.state_dir.join("pacerd.sock");
        let _ = std::fs::remove_file(&sock);
        let mut cmd = net::command_in(h.netns.as_deref(), &self.pacerd);
        cmd.arg("--state-dir")
            .arg(&h.state_dir)
            .arg("--host-name")
            .arg(&h.name)
            .arg("--listen")
            .arg(format!("{}:{}", h.data_ip, h.port))
            .args(&self.agent_args)
            .args(&h.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Its own session: the agent (and the VMs it starts) outlive this process.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| BedError::Agent {
            host: h.name.clone(),
            reason: format!("cannot run {}: {e}", self.pacerd.display()),
            log: log_path.display().to_string(),
        })?;
        let pid = child.id() as i32;
        std::fs::write(self.dir.join(format!("{}.pid", h.name)), pid.to_string())?;
        // The child is not waited for by us: the agent is a daemon.
        std::mem::forget(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(sock.exists() && h.state_dir.join("token").exists()) {
            if Instant::now() > deadline || !pid_running(pid) {
                return Err(BedError::Agent {
                    host: h.name.clone(),
                    reason: "no API socket within 20 s".into(),
                    log: log_path.display().to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.hosts[idx].pid = pid;
        self.save()
    }

    /// Kills one host's agent (its VMs keep running).
    pub fn kill_agent(&self, host: &str) -> Result<(), BedError> {
        let h = self.host(host).ok_or_else(|| BedError::Unknown(format!("{}/{host}", self.name)))?;
        kill_wait(h.pid);
        Ok(())
    }

    /// Cuts or restores a host's link.
    pub fn set_link_up(&self, host: &str, up: bool) -> Result<(), BedError> {
        Ok(net::set_link_up(&self.name, host, up)?)
    }

    /// Changes the link rate of one host or all.
    pub fn set_rate(&self, host: Option<&str>, rate_bps: u64) -> Result<(), BedError> {
        Ok(net::set_rate(&self.name, host, rate_bps)?)
    }
}

/// Builds a test bed: network, agents, hosts file. On failure removes what it made.
pub fn up(opts: &BedOptions) -> Result<Bed, BedError> {
    let network = net::create(&NetSpec {
        name: opts.name.clone(),
        hosts: opts.hosts,
        rate_bps: opts.rate_bps,
    })?;
    let dir = opts.root.join(&opts.name);
    let result = (|| {
        if dir.exists() {
            // Leftovers of a test bed whose network is gone: stale state only.
            kill_recorded(&dir);
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        let mut agent_args = Vec::new();
        if let Some(m) = &opts.memory_capacity {
            agent_args.extend(["--memory-capacity".to_string(), m.clone()]);
        }
        if let Some(l) = opts.incoming_lease_s {
            agent_args.extend(["--incoming-lease".to_string(), l.to_string()]);
        }
        let mut bed = Bed {
            name: opts.name.clone(),
            dir: dir.clone(),
            hosts: Vec::new(),
            shaped: network.shaped,
            agent_args,
            pacerd: opts.pacerd.clone(),
        };
        for (i, h) in network.hosts.iter().enumerate() {
            let port = if h.netns.is_some() { AGENT_PORT } else { free_local_port()? };
            let state_dir = dir.join(&h.name);
            std::fs::create_dir_all(&state_dir)?;
            bed.hosts.push(BedHost {
                name: h.name.clone(),
                netns: h.netns.clone(),
                data_ip: h.data_ip,
                state_dir,
                port,
                pid: 0,
                extra_args: Vec::new(),
            });
            let _ = i;
        }
        let names: Vec<String> = bed.hosts.iter().map(|h| h.name.clone()).collect();
        for n in names {
            bed.start_agent(&n)?;
        }
        Ok(bed)
    })();
    if result.is_err() {
        let _ = down(&opts.root, &opts.name);
    }
    result
}

/// Removes a test bed: its VMs, agents, namespaces and files. Safe to repeat.
pub fn down(root: &Path, name: &str) -> Result<(), BedError> {
    let dir = root.join(name);
    kill_recorded(&dir);
    net::destroy(name)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

/// Names of test beds with files under `root` or namespaces up.
pub fn list(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("bed.json").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    for n in net::list().unwrap_or_default() {
        if !v.contains(&n) {
            v.push(n);
        }
    }
    v.sort();
    v
}

/// Kills the agents and every VM recorded under a test bed's directory.
fn kill_recorded(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) == Some("pid") {
            if let Some(pid) = std::fs::read_to_string(&p).ok().and_then(|s| s.trim().parse().ok()) {
                kill_wait(pid);
            }
        }
        if p.is_dir() {
            for rec in std::fs::read_dir(p.join("vms")).into_iter().flatten().flatten() {
                let rp = rec.path();
                if rp.extension().and_then(|x| x.to_str()) != Some("json") {
                    continue;
                }
                let pid = std::fs::read(&rp)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v.get("pid").and_then(|p| p.as_i64()));
                if let Some(pid) = pid {
                    kill_wait(pid as i32);
                }
            }
        }
    }
}

fn pid_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|s| s.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

fn kill_wait(pid: i32) {
    if pid <= 0 || !pid_running(pid) {
        return;
    }
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    for _ in 0..100 {
        if !pid_running(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_local_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}
