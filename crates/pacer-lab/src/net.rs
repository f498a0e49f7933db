//! The test-bed network: test hosts as Linux network namespaces joined by a
//! bridge, with bandwidth shaped by `tbf`.
//!
//! Topology of a test bed named `NAME` (1..=6 characters from `[a-z0-9]`):
//!
//! ```text
//!   pacer-NAME-h1            pacer-NAME-sw              pacer-NAME-h2
//!   eth0 10.210.0.1/24 <-veth-> h1 ─┐            ┌─ h2 <-veth-> eth0 10.210.0.2/24
//!                                   └── br0 ─────┘
//! ```
//!
//! Every interface lives inside the test bed's own namespaces (nothing is
//! added to the root namespace), so several test beds can exist at once with
//! the same addresses. Shaping is a `tbf` qdisc on the host's `eth0` egress
//! and on the switch-side `hK` egress, so both directions of each host are
//! limited to the rate. A "link cut" sets the switch-side `hK` down.
//!
//! Without the privileges to make namespaces (not root), [`create`] returns a
//! loopback fallback: every host is 127.0.0.1, nothing is shaped, and the
//! caller is expected to print a warning.
//!
//! Everything here is blocking std code and shells out to iproute2 (`ip`, `tc`).
//!
//! (About 850 lines outside tests: namespaces, veth links, tbf shaping, link cuts and
//! the clean-up of all of them; each part names the others' devices.)

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Most hosts in one test bed.
pub const MAX_HOSTS: usize = 32;
/// Longest test-bed name.
pub const MAX_NAME_LEN: usize = 6;
/// Lowest non-zero rate accepted (below this, tc's token-bucket timings overflow).
pub const MIN_RATE_BPS: u64 = 100_000;
/// Host k gets `10.210.0.k/24`.
pub const SUBNET: [u8; 3] = [10, 210, 0];
/// Interface name of a host's data link, inside the host namespace.
pub const HOST_IF: &str = "eth0";
/// Bridge inside the switch namespace.
const BRIDGE: &str = "br0";
/// tbf queue: packets wait at most this long before being dropped.
const TBF_LATENCY_MS: u64 = 50;
/// Smallest tbf bucket (bytes): must hold a full 64 KiB GSO packet.
const TBF_MIN_BURST: u64 = 64 * 1024;
/// Serialises namespace creation/deletion across threads and processes:
/// concurrent first-time `ip netns add` calls race on mounting /run/netns.
const LOCK_FILE: &str = "/run/lock/pacer-testbed-net.lock";

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetSpec {
    /// Test-bed name: 1..=6 characters from `[a-z0-9]`.
    pub name: String,
    /// Number of hosts, 1..=32.
    pub hosts: usize,
    /// Bits per second on every host link, 0 = unshaped.
    pub rate_bps: u64,
}

/// One test host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostNet {
    /// "h1", "h2", ...
    pub name: String,
    /// Network namespace of the host (`pacer-NAME-hK`); `None` in the loopback fallback.
    pub netns: Option<String>,
    /// Address of the host on the test-bed network (127.0.0.1 in the fallback).
    pub data_ip: IpAddr,
}

/// A created test bed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub hosts: Vec<HostNet>,
    /// True when the links are shaped by tbf (false when unshaped or in the fallback).
    pub shaped: bool,
}

impl Network {
    /// The host named `name` ("h1", ...).
    pub fn host(&self, name: &str) -> Option<&HostNet> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// True for the loopback fallback (no namespaces).
    pub fn is_loopback(&self) -> bool {
        self.hosts.iter().all(|h| h.netns.is_none())
    }
}

/// Errors of the test-bed network. Each message says what went wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(
        "invalid test-bed name {name:?}: {reason}; use 1 to 6 characters from [a-z0-9], e.g. \"tb1\""
    )]
    InvalidName { name: String, reason: String },

    #[error("invalid host count {hosts}: a test bed has 1 to {MAX_HOSTS} hosts")]
    InvalidHosts { hosts: usize },

    #[error(
        "invalid rate {input:?}: {reason}; write it as tc does, in bits per second: \
         \"1gbit\", \"200mbit\", \"500kbit\", \"1000000bit\" (\"0\" = unshaped)"
    )]
    InvalidRate { input: String, reason: String },

    #[error(
        "test bed {name:?} already exists (namespaces: {}); remove it first with \
         destroy(\"{name}\") (e.g. `pacer-lab testbed down --name {name}`), or pick another name",
        namespaces.join(", ")
    )]
    Exists {
        name: String,
        namespaces: Vec<String>,
    },

    #[error("test bed {name:?} does not exist (no namespace pacer-{name}-*); create it first")]
    NotFound { name: String },

    #[error("test bed {name:?} has no host {host:?}; its hosts are {}", hosts.join(", "))]
    UnknownHost {
        name: String,
        host: String,
        hosts: Vec<String>,
    },

    #[error(
        "{op} needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and a working `ip netns`; \
         run it as root on a Linux host with iproute2"
    )]
    NoPrivileges { op: String },

    #[error(
        "could not run `{command}`: {source}; is iproute2 installed? (apt-get install iproute2)"
    )]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },

    #[error("`{command}` failed ({status}): {stderr}{hint}")]
    Command {
        command: String,
        status: String,
        stderr: String,
        hint: String,
    },

    #[error("cannot enter network namespace {netns:?} ({path}): {source}{hint}")]
    EnterNetns {
        netns: String,
        path: String,
        #[source]
        source: io::Error,
        hint: String,
    },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/// True when this process can build test beds: effective CAP_NET_ADMIN and
/// CAP_SYS_ADMIN (root) and `ip netns list` works.
pub fn have_netns_privileges() -> bool {
    let caps_ok = match effective_caps() {
        Some(caps) => {
            // capability(7) numbers: CAP_NET_ADMIN = 12, CAP_SYS_ADMIN = 21.
            let need = (1u64 << 12) | (1u64 << 21);
            caps & need == need
        }
        // SAFETY: geteuid has no preconditions.
        None => (unsafe { libc::geteuid() }) == 0,
    };
    caps_ok
        && Command::new(ip_bin())
            .args(["netns", "list"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
}

/// Builds the test bed described by `spec`.
///
/// Refuses when a test bed of that name exists ([`NetError::Exists`]). When a
/// step fails half-way, removes every namespace this call made. Without
/// privileges returns the loopback fallback (hosts with `netns: None`,
/// `data_ip` 127.0.0.1, `shaped: false`); the caller should warn about it.
pub fn create(spec: &NetSpec) -> Result<Network, NetError> {
    validate_name(&spec.name)?;
    if spec.hosts == 0 || spec.hosts > MAX_HOSTS {
        return Err(NetError::InvalidHosts { hosts: spec.hosts });
    }
    validate_rate(spec.rate_bps)?;
    if !have_netns_privileges() {
        return Ok(loopback_network(spec));
    }

    let _lock = lock()?;
    let name = spec.name.as_str();
    let existing = bed_namespaces(name)?;
    if !existing.is_empty() {
        return Err(NetError::Exists {
            name: name.to_string(),
            namespaces: existing,
        });
    }

    // Deletes what this call made unless disarmed at the end. Declared after
    // `_lock`, so it runs while the lock is still held.
    let mut made = Cleanup::default();
    let sw = sw_ns(name);
    add_netns(name, &sw)?;
    made.0.push(sw.clone());
    run(ip_cmd(&sw, &["link", "set", "lo", "up"]))?;
    run(ip_cmd(
        &sw,
        &["link", "add", BRIDGE, "type", "bridge", "stp_state", "0"],
    ))?;
    run(ip_cmd(&sw, &["link", "set", BRIDGE, "up"]))?;

    let mut hosts = Vec::with_capacity(spec.hosts);
    for k in 1..=spec.hosts {
        #[cfg(test)]
        if tests::FAIL_AT_HOST.with(|f| f.get()) == Some(k) {
            return Err(NetError::Io {
                what: format!("injected failure at host {k}"),
                source: io::Error::other("test"),
            });
        }
        let hns = host_ns(name, k);
        add_netns(name, &hns)?;
        made.0.push(hns.clone());
        let port = host_name(k);
        let addr = host_ip(k);
        let cidr = format!("{addr}/24");
        run(ip_cmd(&hns, &["link", "set", "lo", "up"]))?;
        run(ip_cmd(
            &hns,
            &[
                "link", "add", HOST_IF, "type", "veth", "peer", "name", &port, "netns", &sw,
            ],
        ))?;
        run(ip_cmd(&hns, &["addr", "add", &cidr, "dev", HOST_IF]))?;
        run(ip_cmd(&sw, &["link", "set", &port, "master", BRIDGE]))?;
        if spec.rate_bps > 0 {
            shape_host(name, k, spec.rate_bps)?;
        }
        run(ip_cmd(&sw, &["link", "set", &port, "up"]))?;
        run(ip_cmd(&hns, &["link", "set", HOST_IF, "up"]))?;
        hosts.push(HostNet {
            name: port,
            netns: Some(hns),
            data_ip: IpAddr::V4(addr),
        });
    }
    made.0.clear();
    Ok(Network {
        name: name.to_string(),
        hosts,
        shaped: spec.rate_bps > 0,
    })
}

/// Removes the test bed `name`: kills the processes still inside its
/// namespaces and deletes every `pacer-NAME-*` namespace. Idempotent: a test
/// bed that does not exist is fine.
pub fn destroy(name: &str) -> Result<(), NetError> {
    validate_name(name)?;
    if bed_namespaces(name)?.is_empty() {
        return Ok(());
    }
    if !have_netns_privileges() {
        return Err(NetError::NoPrivileges {
            op: format!("destroying test bed {name:?}"),
        });
    }
    let _lock = lock()?;
    let namespaces = bed_namespaces(name)?;
    delete_namespaces(&namespaces)
}

/// Sets the rate of one host's link (`Some("h2")`) or of every host (`None`),
/// in both directions. `rate_bps == 0` removes the shaping. Takes effect at once
/// on a running test bed.
pub fn set_rate(name: &str, host: Option<&str>, rate_bps: u64) -> Result<(), NetError> {
    validate_name(name)?;
    validate_rate(rate_bps)?;
    let hosts = bed_hosts(name)?;
    let targets = match host {
        Some(h) => vec![resolve_host(name, h, &hosts)?],
        None => hosts,
    };
    for k in targets {
        shape_host(name, k, rate_bps)?;
    }
    Ok(())
}

/// Cuts (`up == false`) or restores the link of `host`: sets the switch-side
/// end `hK` of its veth down or up. While cut, the host's `eth0` has no
/// carrier and every packet to or from the host is dropped.
pub fn set_link_up(name: &str, host: &str, up: bool) -> Result<(), NetError> {
    validate_name(name)?;
    let hosts = bed_hosts(name)?;
    let k = resolve_host(name, host, &hosts)?;
    let state = if up { "up" } else { "down" };
    run(ip_cmd(&sw_ns(name), &["link", "set", &host_name(k), state]))?;
    Ok(())
}

/// Names of the test beds that exist (from `ip netns list`), sorted.
pub fn list() -> Result<Vec<String>, NetError> {
    let mut names: Vec<String> = netns_list()?
        .iter()
        .filter_map(|ns| parse_bed_netns(ns).map(|(name, _)| name.to_string()))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// A command that runs `program` inside network namespace `netns`
/// (`ip netns exec NS program`), or directly when `netns` is `None`.
/// Add arguments with `.arg()` as usual.
pub fn command_in(netns: Option<&str>, program: impl AsRef<OsStr>) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new(ip_bin());
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Moves the CALLING THREAD (only) into network namespace `netns`
/// (`setns(CLONE_NEWNET)` on `/run/netns/NS`). Sockets the thread opens
/// afterwards live in that namespace. Meant for test threads; a thread cannot
/// easily go back, so use a dedicated thread.
pub fn enter_netns(netns: &str) -> Result<(), NetError> {
    let path = format!("/run/netns/{netns}");
    let err = |source: io::Error, hint: &str| NetError::EnterNetns {
        netns: netns.to_string(),
        path: path.clone(),
        source,
        hint: hint.to_string(),
    };
    if netns.is_empty() || netns.contains('/') || netns == "." || netns == ".." {
        return Err(err(
            io::Error::from(io::ErrorKind::InvalidInput),
            "; give a namespace name as listed by `ip netns list`",
        ));
    }
    let file = File::open(&path).map_err(|e| {
        err(
            e,
            "; does the test bed exist? (`ip netns list`; create it first)",
        )
    })?;
    // SAFETY: plain syscall on a valid, open file descriptor.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(err(
            io::Error::last_os_error(),
            "; entering a network namespace needs CAP_SYS_ADMIN (run as root)",
        ));
    }
    Ok(())
}

/// Parses a tc-style rate in bits per second: `"1gbit"`, `"200mbit"`,
/// `"500kbit"`, `"1000000bit"`, a bare number (bits/s), decimals such as
/// `"1.5gbit"`, and the binary units `kibit`/`mibit`/`gibit`/`tibit`.
/// Byte units (`bps`, `mbps`, ...) are refused: tc reads them as BYTES per
/// second, which is too easily mistaken for bits.
pub fn parse_rate(s: &str) -> Result<u64, NetError> {
    let bad = |reason: String| NetError::InvalidRate {
        input: s.to_string(),
        reason,
    };
    let t = s.trim().to_ascii_lowercase();
    if t.is_empty() {
        return Err(bad("it is empty".into()));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    if num.is_empty() || num == "." {
        return Err(bad("it does not start with a number".into()));
    }
    let mult: u128 = match unit {
        "" | "bit" => 1,
        "kbit" => 1_000,
        "mbit" => 1_000_000,
        "gbit" => 1_000_000_000,
        "tbit" => 1_000_000_000_000,
        "kibit" => 1 << 10,
        "mibit" => 1 << 20,
        "gibit" => 1 << 30,
        "tibit" => 1 << 40,
        "bps" | "kbps" | "mbps" | "gbps" | "tbps" | "kibps" | "mibps" | "gibps" | "tibps" => {
            let bits = unit.replacen("bps", "bit", 1);
            let as_bits = parse_rate(&format!("{num}{bits}"))
                .ok()
                .and_then(|b| b.checked_mul(8))
                .map(|b| format!(": {s:?} as tc reads it is {:?}", format_rate(b)))
                .unwrap_or_default();
            return Err(bad(format!(
                "tc reads \"{unit}\" as BYTES per second, easily mistaken for bits; \
                 give the rate in bits{as_bits}"
            )));
        }
        other => return Err(bad(format!("unknown unit {other:?}"))),
    };
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if frac.contains('.') {
        return Err(bad("the number has more than one '.'".into()));
    }
    if frac.len() > 18 {
        return Err(bad("too many decimals".into()));
    }
    let digits = format!("{int}{frac}");
    let mantissa: u128 = digits
        .parse()
        .map_err(|_| bad("the number is too large".into()))?;
    let scale = 10u128.pow(frac.len() as u32);
    let scaled = mantissa
        .checked_mul(mult)
        .ok_or_else(|| bad("the rate is too large".into()))?;
    if scaled % scale != 0 {
        return Err(bad("it is not a whole number of bits per second".into()));
    }
    u64::try_from(scaled / scale).map_err(|_| bad("the rate is too large".into()))
}

/// Formats bits per second the way tc prints them: "50mbit", "1gbit", "1500kbit", "0" (unshaped).
pub fn format_rate(rate_bps: u64) -> String {
    if rate_bps == 0 {
        return "0".into();
    }
    for (unit, div) in [
        ("tbit", 1_000_000_000_000u64),
        ("gbit", 1_000_000_000),
        ("mbit", 1_000_000),
        ("kbit", 1_000),
    ] {
        if rate_bps.is_multiple_of(div) {
            return format!("{}{unit}", rate_bps / div);
        }
    }
    format!("{rate_bps}bit")
}

// ---------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------

fn validate_name(name: &str) -> Result<(), NetError> {
    let bad = |reason: &str| NetError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(bad("it is longer than 6 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(bad("it has characters other than a-z and 0-9"));
    }
    Ok(())
}

fn validate_rate(rate_bps: u64) -> Result<(), NetError> {
    if rate_bps != 0 && rate_bps < MIN_RATE_BPS {
        return Err(NetError::InvalidRate {
            input: format!("{rate_bps}bit"),
            reason: format!(
                "below the lowest supported rate {} (use 0 for unshaped)",
                format_rate(MIN_RATE_BPS)
            ),
        });
    }
    Ok(())
}

fn loopback_network(spec: &NetSpec) -> Network {
    Network {
        name: spec.name.clone(),
        hosts: (1..=spec.hosts)
            .map(|k| HostNet {
                name: host_name(k),
                netns: None,
                data_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            })
            .collect(),
        shaped: false,
    }
}

fn host_name(k: usize) -> String {
    format!("h{k}")
}

fn host_ip(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], k as u8)
}

fn sw_ns(name: &str) -> String {
    format!("pacer-{name}-sw")
}

fn host_ns(name: &str, k: usize) -> String {
    format!("pacer-{name}-h{k}")
}

/// `pacer-NAME-sw` -> (NAME, None); `pacer-NAME-hK` -> (NAME, Some(K)).
fn parse_bed_netns(ns: &str) -> Option<(&str, Option<usize>)> {
    let rest = ns.strip_prefix("pacer-")?;
    let (name, role) = rest.split_once('-')?;
    validate_name(name).ok()?;
    if role == "sw" {
        return Some((name, None));
    }
    let k = role.strip_prefix('h')?;
    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_digit()) || k.starts_with('0') {
        return None;
    }
    Some((name, Some(k.parse().ok()?)))
}

/// Parses "h3" to 3, checking the test bed has that host.
fn resolve_host(name: &str, host: &str, hosts: &[usize]) -> Result<usize, NetError> {
    host.strip_prefix('h')
        .filter(|k| !k.starts_with('0'))
        .and_then(|k| k.parse::<usize>().ok())
        .filter(|k| hosts.contains(k))
        .ok_or_else(|| NetError::UnknownHost {
            name: name.to_string(),
            host: host.to_string(),
            hosts: hosts.iter().map(|&k| host_name(k)).collect(),
        })
}

/// Names of the namespaces in `ip netns list`.
fn netns_list() -> Result<Vec<String>, NetError> {
    // Before the first `ip netns add` the directory does not exist and there is nothing to list.
    if !Path::new("/run/netns").exists() {
        return Ok(Vec::new());
    }
    let out = run(Command::new(ip_bin()).args(["netns", "list"]))?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// Every namespace named `pacer-NAME-*`.
fn bed_namespaces(name: &str) -> Result<Vec<String>, NetError> {
    let prefix = format!("pacer-{name}-");
    let mut v: Vec<String> = netns_list()?
        .into_iter()
        .filter(|ns| ns.starts_with(&prefix))
        .collect();
    v.sort();
    Ok(v)
}

/// Host numbers of an existing test bed; NotFound when it has no switch namespace.
fn bed_hosts(name: &str) -> Result<Vec<usize>, NetError> {
    let mut has_switch = false;
    let mut hosts = Vec::new();
    for ns in bed_namespaces(name)? {
        match parse_bed_netns(&ns) {
            Some((_, None)) => has_switch = true,
            Some((_, Some(k))) => hosts.push(k),
            None => {}
        }
    }
    if !has_switch {
        return Err(NetError::NotFound {
            name: name.to_string(),
        });
    }
    hosts.sort_unstable();
    Ok(hosts)
}

fn add_netns(name: &str, ns: &str) -> Result<(), NetError> {
    match run(Command::new(ip_bin()).args(["netns", "add", ns])) {
        Err(NetError::Command { stderr, .. }) if stderr.contains("File exists") => {
            Err(NetError::Exists {
                name: name.to_string(),
                namespaces: vec![ns.to_string()],
            })
        }
        r => r.map(|_| ()),
    }
}

/// Kills the processes inside each namespace, then deletes the namespaces.
/// Goes on after an error and returns the first one.
fn delete_namespaces(namespaces: &[String]) -> Result<(), NetError> {
    let mut first_err = None;
    for ns in namespaces {
        if let Err(e) = kill_netns_pids(ns) {
            first_err.get_or_insert(e);
        }
    }
    for ns in namespaces {
        match run(Command::new(ip_bin()).args(["netns", "del", ns])) {
            Ok(_) => {}
            Err(NetError::Command { stderr, .. }) if stderr.contains("No such file") => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// SIGKILLs every process inside `ns` (`ip netns pids`), never this process,
/// and waits up to 5 s for them to be gone.
fn kill_netns_pids(ns: &str) -> Result<(), NetError> {
    let me = std::process::id() as libc::pid_t;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = match run(Command::new(ip_bin()).args(["netns", "pids", ns])) {
            Ok(out) => out,
            // Namespace already gone: nothing to kill.
            Err(NetError::Command { stderr, .. }) if stderr.contains("No such file") => {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        let pids: Vec<libc::pid_t> = out
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|&p| p != me && p > 1)
            .collect();
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(NetError::Io {
                what: format!(
                    "processes {pids:?} in namespace {ns} survived SIGKILL for 5 s; \
                     kill them by hand, then run destroy again"
                ),
                source: io::Error::from(io::ErrorKind::TimedOut),
            });
        }
        for p in pids {
            // SAFETY: plain syscall; pids come from `ip netns pids` for our own namespace.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Shapes (or unshapes, rate 0) both directions of host k's link.
fn shape_host(name: &str, k: usize, rate_bps: u64) -> Result<(), NetError> {
    apply_tbf(&host_ns(name, k), HOST_IF, rate_bps)?;
    apply_tbf(&sw_ns(name), &host_name(k), rate_bps)
}

/// tbf bucket size for a rate: about 10 ms of traffic, at least one 64 KiB GSO packet.
fn tbf_burst(rate_bps: u64) -> u64 {
    (rate_bps / 8 / 100).max(TBF_MIN_BURST)
}

fn apply_tbf(ns: &str, dev: &str, rate_bps: u64) -> Result<(), NetError> {
    if rate_bps == 0 {
        let shown = run(tc_cmd(ns, &["qdisc", "show", "dev", dev, "root"]))?;
        if shown.contains("tbf") {
            run(tc_cmd(ns, &["qdisc", "del", "dev", dev, "root"]))?;
        }
        return Ok(());
    }
    let rate = format!("{rate_bps}bit");
    let burst = tbf_burst(rate_bps).to_string();
    let latency = format!("{TBF_LATENCY_MS}ms");
    run(tc_cmd(
        ns,
        &[
            "qdisc", "replace", "dev", dev, "root", "tbf", "rate", &rate, "burst", &burst,
            "latency", &latency,
        ],
    ))?;
    Ok(())
}

#[derive(Default)]
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = delete_namespaces(&self.0);
        }
    }
}

/// An exclusive flock on [`LOCK_FILE`], released when dropped.
struct Lock(#[allow(dead_code)] File);

fn lock() -> Result<Lock, NetError> {
    let path = if Path::new("/run/lock").is_dir() {
        LOCK_FILE.to_string()
    } else {
        std::env::temp_dir()
            .join("pacer-testbed-net.lock")
            .to_string_lossy()
            .into_owned()
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| NetError::Io {
            what: format!("cannot open lock file {path}"),
            source,
        })?;
    loop {
        // SAFETY: plain syscall on a valid, open file descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(Lock(file));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(NetError::Io {
                what: format!("cannot lock {path}"),
                source: e,
            });
        }
    }
}

fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn find_bin(name: &str) -> String {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| name.to_string())
}

fn ip_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| find_bin("ip"))
}

fn tc_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| find_bin("tc"))
}

fn ip_cmd(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new(ip_bin());
    c.args(["-n", ns]).args(args);
    c
}

fn tc_cmd(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new(tc_bin());
    c.args(["-n", ns]).args(args);
    c
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion; its stdout on success, a [`NetError::Command`]
/// carrying the command line and stderr otherwise.
fn run<C: std::borrow::BorrowMut<Command>>(mut cmd: C) -> Result<String, NetError> {
    let cmd = cmd.borrow_mut();
    let command = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetError::Spawn {
            command: command.clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let hint = if stderr.contains("qdisc kind is unknown") {
        "; this kernel lacks the tbf qdisc (sch_tbf): use rate 0 (unshaped)".to_string()
    } else if stderr.contains("Operation not permitted") || stderr.contains("Permission denied") {
        "; this needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)".to_string()
    } else {
        String::new()
    };
    Err(NetError::Command {
        command,
        status: out.status.to_string(),
        stderr,
        hint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    use std::thread;

    thread_local! {
        /// Makes `create` on this thread fail just before building host k.
        pub(super) static FAIL_AT_HOST: std::cell::Cell<Option<usize>> =
            const { std::cell::Cell::new(None) };
    }

    /// Destroys the test bed when dropped, also when the test panics.
    struct Bed(String);

    impl Drop for Bed {
        fn drop(&mut self) {
            if let Err(e) = destroy(&self.0) {
                eprintln!("cleanup: destroy({:?}) failed: {e}", self.0);
            }
        }
    }

    /// A test-bed name unique to this test (`tag`) and this process: tag + pid in base 36.
    fn bed_name(tag: char) -> String {
        let mut pid = std::process::id() % 36u32.pow(5);
        let mut digits = Vec::new();
        for _ in 0..5 {
            digits.push(std::char::from_digit(pid % 36, 36).unwrap());
            pid /= 36;
        }
        std::iter::once(tag)
            .chain(digits.into_iter().rev())
            .collect()
    }

    fn privileged() -> bool {
        let ok = have_netns_privileges();
        if !ok {
            eprintln!("SKIPPED: needs root and `ip netns` (test-bed namespaces)");
        }
        ok
    }

    /// Creates a test bed with a guard. A leftover of the same name can only come
    /// from a crashed run of a process with our pid, so remove it first.
    fn bed(tag: char, hosts: usize, rate_bps: u64) -> (Bed, Network) {
        let name = bed_name(tag);
        destroy(&name).unwrap();
        let guard = Bed(name.clone());
        let net = create(&NetSpec {
            name,
            hosts,
            rate_bps,
        })
        .unwrap();
        assert_eq!(net.hosts.len(), hosts);
        assert_eq!(net.shaped, rate_bps > 0);
        (guard, net)
    }

    fn ns(h: &HostNet) -> String {
        h.netns.clone().expect("host has a namespace")
    }

    fn accept_timeout(l: &TcpListener, timeout: Duration) -> io::Result<TcpStream> {
        l.set_nonblocking(true)?;
        let deadline = Instant::now() + timeout;
        loop {
            match l.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false)?;
                    return Ok(s);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(io::Error::from(io::ErrorKind::TimedOut));
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Bulk TCP from host `from` to host `to` for `secs`; bits per second seen by the receiver.
    fn measure(from: &HostNet, to: &HostNet, secs: f64) -> f64 {
        let (to_ns, from_ns, ip) = (ns(to), ns(from), to.data_ip);
        let (tx, rx) = mpsc::channel::<SocketAddr>();
        let receiver = thread::spawn(move || -> io::Result<(u64, Duration)> {
            enter_netns(&to_ns).unwrap();
            let l = TcpListener::bind((ip, 0))?;
            tx.send(l.local_addr()?).unwrap();
            let mut s = accept_timeout(&l, Duration::from_secs(10))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut buf = vec![0u8; 256 * 1024];
            // The clock starts at the first byte; that first read is not counted.
            s.read_exact(&mut buf[..1])?;
            let t0 = Instant::now();
            let mut total = 0u64;
            while t0.elapsed().as_secs_f64() < secs {
                match s.read(&mut buf)? {
                    0 => break,
                    n => total += n as u64,
                }
            }
            Ok((total, t0.elapsed()))
            // Dropping the socket with unread data resets the sender.
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("listener up");
        let sender = thread::spawn(move || {
            enter_netns(&from_ns).unwrap();
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
            s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            let buf = vec![0x5au8; 256 * 1024];
            let deadline = Instant::now() + Duration::from_secs_f64(secs + 15.0);
            while Instant::now() < deadline {
                if s.write(&buf).is_err() {
                    break;
                }
            }
        });
        let (bytes, elapsed) = receiver.join().unwrap().expect("receiver");
        sender.join().unwrap();
        bytes as f64 * 8.0 / elapsed.as_secs_f64()
    }

    fn mbit(bps: f64) -> String {
        format!("{:.1} Mbit/s", bps / 1e6)
    }

    #[test]
    fn shaping_is_measured_and_changeable() {
        if !privileged() {
            return;
        }
        let started = Instant::now();
        let (_bed, net) = bed('s', 2, 50_000_000);
        let (h1, h2) = (&net.hosts[0], &net.hosts[1]);
        assert_eq!(h2.data_ip, IpAddr::V4(Ipv4Addr::new(10, 210, 0, 2)));

        let r50 = measure(h1, h2, 2.0);
        println!("tbf 50mbit: measured {} ({:.3}x)", mbit(r50), r50 / 50e6);
        assert!(
            (0.7 * 50e6..=1.15 * 50e6).contains(&r50),
            "50 Mbit/s link measured {}",
            mbit(r50)
        );

        set_rate(&net.name, None, 100_000_000).unwrap();
        let r100 = measure(h1, h2, 2.0);
        println!(
            "tbf 100mbit: measured {} ({:.3}x), {:.2}x the 50mbit figure",
            mbit(r100),
            r100 / 100e6,
            r100 / r50
        );
        assert!(
            (0.7 * 100e6..=1.15 * 100e6).contains(&r100),
            "100 Mbit/s link measured {}",
            mbit(r100)
        );
        assert!(r100 / r50 > 1.5, "rate did not change: {r50} -> {r100}");

        // The reverse direction is shaped too (switch-side tbf).
        let r_rev = measure(h2, h1, 1.0);
        println!("tbf 100mbit h2->h1: measured {}", mbit(r_rev));
        assert!(
            r_rev < 1.15 * 100e6,
            "reverse direction unshaped: {}",
            mbit(r_rev)
        );

        set_rate(&net.name, None, 1_000_000_000).unwrap();
        let r1g = measure(h1, h2, 2.0);
        println!("tbf 1gbit: measured {} ({:.3}x)", mbit(r1g), r1g / 1e9);
        assert!(r1g > r100, "1gbit not faster than 100mbit");
        println!("shaping test took {:.1} s", started.elapsed().as_secs_f64());
    }

    /// Connects from `from` to `addr`; Ok(()) when a byte comes back (echo).
    fn try_echo(from_ns: &str, addr: SocketAddr, timeout: Duration) -> io::Result<()> {
        let from_ns = from_ns.to_string();
        thread::spawn(move || {
            enter_netns(&from_ns).unwrap();
            let mut s = TcpStream::connect_timeout(&addr, timeout)?;
            s.set_read_timeout(Some(timeout))?;
            s.write_all(b"x")?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b)?;
            assert_eq!(&b, b"x");
            Ok(())
        })
        .join()
        .unwrap()
    }

    #[test]
    fn link_cut_and_restore() {
        if !privileged() {
            return;
        }
        let (_bed, net) = bed('c', 2, 100_000_000);
        let (h1, h2) = (&net.hosts[0], &net.hosts[1]);

        // Echo server in h2 until `stop`.
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (h2_ns, ip, stop2) = (ns(h2), h2.data_ip, stop.clone());
        let server = thread::spawn(move || {
            enter_netns(&h2_ns).unwrap();
            let l = TcpListener::bind((ip, 0)).unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            while !stop2.load(Ordering::Relaxed) {
                if let Ok(mut s) = accept_timeout(&l, Duration::from_millis(200)) {
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut b = [0u8; 1];
                    if s.read_exact(&mut b).is_ok() {
                        let _ = s.write_all(&b);
                    }
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let h1_ns = ns(h1);

        try_echo(&h1_ns, addr, Duration::from_secs(3)).expect("link works before the cut");

        set_link_up(&net.name, "h1", false).unwrap();
        let t = Instant::now();
        let cut = try_echo(&h1_ns, addr, Duration::from_secs(3));
        println!(
            "while cut: {cut:?} after {:.2} s",
            t.elapsed().as_secs_f64()
        );
        assert!(cut.is_err(), "connection worked through a cut link");
        assert!(t.elapsed() < Duration::from_secs(5));

        set_link_up(&net.name, "h1", true).unwrap();
        let t = Instant::now();
        let mut restored = Err(io::Error::from(io::ErrorKind::TimedOut));
        while t.elapsed() < Duration::from_secs(10) {
            restored = try_echo(&h1_ns, addr, Duration::from_secs(2));
            if restored.is_ok() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        println!(
            "restored: {restored:?} after {:.2} s",
            t.elapsed().as_secs_f64()
        );
        restored.expect("link works again after restore");

        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();

        // Errors name the host and the test bed.
        let e = set_link_up(&net.name, "h3", false).unwrap_err();
        assert!(matches!(e, NetError::UnknownHost { .. }), "{e}");
        assert!(e.to_string().contains("h1, h2"), "{e}");
    }

    fn qdisc(netns: &str, dev: &str) -> String {
        run(tc_cmd(netns, &["qdisc", "show", "dev", dev, "root"])).unwrap()
    }

    #[test]
    fn destroy_removes_everything_and_is_idempotent() {
        if !privileged() {
            return;
        }
        let (_bed, net) = bed('d', 3, 0);
        let name = net.name.clone();
        assert!(list().unwrap().contains(&name));
        assert_eq!(
            bed_namespaces(&name).unwrap(),
            vec![
                host_ns(&name, 1),
                host_ns(&name, 2),
                host_ns(&name, 3),
                sw_ns(&name)
            ]
        );

        // Unshaped; set_rate on one host adds tbf on both ends of that link only; 0 removes it.
        let sw = sw_ns(&name);
        assert!(!qdisc(&host_ns(&name, 2), HOST_IF).contains("tbf"));
        set_rate(&name, Some("h2"), 10_000_000).unwrap();
        assert!(qdisc(&host_ns(&name, 2), HOST_IF).contains("rate 10Mbit"));
        assert!(qdisc(&sw, "h2").contains("rate 10Mbit"));
        assert!(!qdisc(&sw, "h1").contains("tbf"));
        set_rate(&name, Some("h2"), 0).unwrap();
        assert!(!qdisc(&sw, "h2").contains("tbf"));
        assert!(matches!(
            set_rate(&name, Some("h9"), 1_000_000),
            Err(NetError::UnknownHost { .. })
        ));

        // A process inside a host is killed by destroy.
        let mut child = command_in(net.hosts[0].netns.as_deref(), "sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while run(Command::new(ip_bin()).args(["netns", "pids", &host_ns(&name, 1)]))
            .unwrap()
            .trim()
            .is_empty()
        {
            assert!(
                Instant::now() < deadline,
                "sleep did not start in the namespace"
            );
            thread::sleep(Duration::from_millis(20));
        }

        destroy(&name).unwrap();
        assert!(!list().unwrap().contains(&name));
        assert!(bed_namespaces(&name).unwrap().is_empty());
        let status = child.wait().unwrap();
        assert!(!status.success(), "sleep was not killed: {status}");
        destroy(&name).unwrap();

        let e = set_rate(&name, None, 1_000_000).unwrap_err();
        assert!(matches!(e, NetError::NotFound { .. }), "{e}");
    }

    #[test]
    fn create_twice_is_refused_and_keeps_the_first() {
        if !privileged() {
            return;
        }
        let (_bed, net) = bed('e', 1, 0);
        let e = create(&NetSpec {
            name: net.name.clone(),
            hosts: 2,
            rate_bps: 0,
        })
        .unwrap_err();
        println!("{e}");
        assert!(matches!(e, NetError::Exists { .. }), "{e}");
        assert!(e.to_string().contains("destroy"), "{e}");
        assert_eq!(
            bed_namespaces(&net.name).unwrap().len(),
            2,
            "first test bed damaged"
        );
    }

    #[test]
    fn failed_create_removes_what_it_made() {
        if !privileged() {
            return;
        }
        let name = bed_name('f');
        destroy(&name).unwrap();
        let _guard = Bed(name.clone());
        FAIL_AT_HOST.with(|f| f.set(Some(3)));
        let r = create(&NetSpec {
            name: name.clone(),
            hosts: 4,
            rate_bps: 10_000_000,
        });
        FAIL_AT_HOST.with(|f| f.set(None));
        let e = r.unwrap_err();
        assert!(e.to_string().contains("injected"), "{e}");
        assert!(
            bed_namespaces(&name).unwrap().is_empty(),
            "half-made test bed left behind"
        );
        // And the name is usable afterwards.
        let net = create(&NetSpec {
            name: name.clone(),
            hosts: 1,
            rate_bps: 0,
        })
        .unwrap();
        assert_eq!(
            net.hosts[0].netns.as_deref(),
            Some(host_ns(&name, 1).as_str())
        );
    }

    #[test]
    fn bad_specs_are_refused() {
        let spec = |name: &str, hosts, rate_bps| NetSpec {
            name: name.into(),
            hosts,
            rate_bps,
        };
        for name in ["", "Abc", "toolong", "a-b", "a b", "é"] {
            let e = create(&spec(name, 1, 0)).unwrap_err();
            assert!(matches!(e, NetError::InvalidName { .. }), "{name:?}: {e}");
            assert!(e.to_string().contains("[a-z0-9]"), "{e}");
        }
        for hosts in [0, 33] {
            let e = create(&spec("ok1", hosts, 0)).unwrap_err();
            assert!(matches!(e, NetError::InvalidHosts { .. }), "{e}");
            assert!(e.to_string().contains("1 to 32"), "{e}");
        }
        let e = create(&spec("ok1", 1, 1000)).unwrap_err();
        assert!(matches!(e, NetError::InvalidRate { .. }), "{e}");
        println!("{e}");
        assert!(matches!(destroy("../x"), Err(NetError::InvalidName { .. })));
        assert!(enter_netns("../etc").is_err());
    }

    #[test]
    fn loopback_fallback_shape() {
        let net = loopback_network(&NetSpec {
            name: "lb".into(),
            hosts: 3,
            rate_bps: 1_000_000,
        });
        assert!(net.is_loopback() && !net.shaped);
        assert_eq!(
            net.host("h3").unwrap().data_ip,
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert!(net.host("h4").is_none());
        let c = command_in(None, "true");
        assert_eq!(c.get_program(), "true");
        let c = command_in(Some("pacer-x-h1"), "true");
        assert_eq!(
            describe(&c),
            format!("{} netns exec pacer-x-h1 true", ip_bin())
        );
    }

    #[test]
    fn parse_rate_cases() {
        let ok = [
            ("1gbit", 1_000_000_000),
            ("200mbit", 200_000_000),
            ("500kbit", 500_000),
            ("1000000bit", 1_000_000),
            ("1000000", 1_000_000),
            ("0", 0),
            (" 50Mbit ", 50_000_000),
            ("100 mbit", 100_000_000),
            ("1.5gbit", 1_500_000_000),
            ("0.5mbit", 500_000),
            ("1kibit", 1024),
            ("2mibit", 2 * 1024 * 1024),
            ("1gibit", 1 << 30),
            ("10tbit", 10_000_000_000_000),
        ];
        for (s, want) in ok {
            assert_eq!(parse_rate(s).unwrap(), want, "{s:?}");
        }
        for s in [
            "",
            "fast",
            "mbit",
            "10 mb",
            "1.2.3mbit",
            "0.5bit",
            "-1mbit",
            "1e9",
            "99999999999999999999999tbit",
        ] {
            let e = parse_rate(s).unwrap_err();
            assert!(e.to_string().contains("\"1gbit\""), "{s:?}: {e}");
        }
        let e = parse_rate("100mbps").unwrap_err();
        assert!(e.to_string().contains("BYTES"), "{e}");
        assert!(e.to_string().contains("\"800mbit\""), "{e}");
        println!("{e}");
        for r in [0, 50_000_000, 1_000_000_000, 1_500_000, 1234] {
            assert_eq!(parse_rate(&format_rate(r)).unwrap(), r);
        }
        assert_eq!(format_rate(50_000_000), "50mbit");
    }

    #[test]
    fn netns_names_parse() {
        assert_eq!(parse_bed_netns("pacer-ab1-sw"), Some(("ab1", None)));
        assert_eq!(parse_bed_netns("pacer-ab1-h12"), Some(("ab1", Some(12))));
        assert_eq!(parse_bed_netns("pacer-ab1-h0x"), None);
        assert_eq!(parse_bed_netns("pacer-AB-sw"), None);
        assert_eq!(parse_bed_netns("other"), None);
        assert_eq!(resolve_host("x", "h2", &[1, 2]).unwrap(), 2);
        assert!(resolve_host("x", "h02", &[1, 2]).is_err());
        assert!(resolve_host("x", "2", &[1, 2]).is_err());
    }
}
