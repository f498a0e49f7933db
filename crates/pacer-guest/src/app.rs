//! A real application as the guest's workload (`pacer.app=...`): the
//! program from the apps initramfs (`initrd-apps.img`), its load, and the
//! check `verify` makes of it.
//!
//! - `redis`, `memcached`: the server on loopback, filled with `app_mib` of
//!   4000-byte values, then random keys rewritten at `app_rate` MB/s of
//!   values by this program's own client ([`crate::kv`]). Checked: it
//!   answers PING/version, and a sample of keys holds what was last written.
//! - `stress-ng`: its memrate stressor over `app_mib`, writing at `app_rate`
//!   MB/s (`--memrate-wr-mbs`; passes of reads between, unlimited).
//!   Checked: alive, and no failure in its log.
//! - `zstd`: a compressible `app_mib` data set on a tmpfs compressed over and
//!   over (`zstd -1`), each round at least `output / app_rate` long. Checked:
//!   the last round's output decompresses (its frame checksum checked, as
//!   `zstd -t` does) to exactly the data set.
//!
//! One thread drives the application; the main loop reads its counters and
//! asks it for checks through a channel, so a check never races a write.
//!
//! (Over 600 lines: the four drivers share the driver's counters, check
//! channel and process handling; each is short, and apart they would only
//! trade one file for four that all need the same private parts.)

use crate::kv::{self, Client, Proto};
use crate::pick::Rng;
use crate::{emit_error, round2};
use pacer_guest_proto::AppPhase;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The applications, in the guest's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    Redis,
    Memcached,
    StressNg,
    Zstd,
}

/// Every application's word, for messages.
pub const APP_CHOICES: &str = "redis|memcached|stress-ng|zstd";

impl AppKind {
    pub fn parse(s: &str) -> Option<AppKind> {
        match s {
            "redis" => Some(AppKind::Redis),
            "memcached" => Some(AppKind::Memcached),
            "stress-ng" => Some(AppKind::StressNg),
            "zstd" => Some(AppKind::Zstd),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AppKind::Redis => "redis",
            AppKind::Memcached => "memcached",
            AppKind::StressNg => "stress-ng",
            AppKind::Zstd => "zstd",
        }
    }

    fn program(self) -> &'static str {
        match self {
            AppKind::Redis => "/usr/bin/redis-server",
            AppKind::Memcached => "/usr/bin/memcached",
            AppKind::StressNg => "/usr/bin/stress-ng",
            AppKind::Zstd => "/usr/bin/zstd",
        }
    }
}

/// `pacer.app*` keys.
#[derive(Debug, Clone, PartialEq)]
pub struct AppConfig {
    pub kind: AppKind,
    /// Data set, MiB.
    pub mib: u64,
    /// What the load aims at, MB/s written.
    pub rate_mbps: f64,
}

/// The application's tmpfs (zstd's data, logs).
const DIR: &str = "/run/pacer-app";
/// Keys checked by `verify` beside the first ones: a random sample.
const SAMPLE_KEYS: usize = 256;
/// How often the stress-ng driver looks at its process.
const TICK: Duration = Duration::from_millis(100);

/// The counters the main loop reads.
struct Shared {
    phase: AtomicU8,
    alive: AtomicBool,
    ops: AtomicU64,
    written: AtomicU64,
}

fn phase_code(p: AppPhase) -> u8 {
    match p {
        AppPhase::Start => 0,
        AppPhase::Fill => 1,
        AppPhase::Run => 2,
        _ => 3,
    }
}

/// A check's answer: ok, and what was checked or what was wrong.
type Check = (bool, String);

/// The running application, as the main loop sees it.
pub struct AppHandle {
    pub cfg: AppConfig,
    shared: Arc<Shared>,
    checks: Sender<Sender<Check>>,
    written_at_last_status: u64,
}

/// What the status line says about the application.
pub struct AppStatus {
    pub phase: AppPhase,
    pub alive: bool,
    pub ops: u64,
    pub write_mbps: f64,
}

impl AppHandle {
    pub fn status(&mut self, secs: f64) -> AppStatus {
        let s = &self.shared;
        let written = s.written.load(Ordering::Relaxed);
        let delta = written.saturating_sub(self.written_at_last_status);
        self.written_at_last_status = written;
        AppStatus {
            phase: match s.phase.load(Ordering::Relaxed) {
                0 => AppPhase::Start,
                1 => AppPhase::Fill,
                2 => AppPhase::Run,
                _ => AppPhase::Failed,
            },
            alive: s.alive.load(Ordering::Relaxed),
            ops: s.ops.load(Ordering::Relaxed),
            write_mbps: if secs > 0.0 {
                round2(delta as f64 / secs / 1e6)
            } else {
                0.0
            },
        }
    }

    /// Asks the driver to check the application; waits for its answer.
    pub fn check(&self) -> Check {
        let (tx, rx) = mpsc::channel();
        if self.checks.send(tx).is_err() {
            return (
                false,
                "the application's driver is gone (see the error lines)".into(),
            );
        }
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(c) => c,
            Err(_) => (
                false,
                "the application's driver did not answer within 60 s".into(),
            ),
        }
    }
}

/// Starts the application and its driver thread.
pub fn spawn(cfg: AppConfig) -> AppHandle {
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(0),
        alive: AtomicBool::new(false),
        ops: AtomicU64::new(0),
        written: AtomicU64::new(0),
    });
    let (tx, rx) = mpsc::channel();
    let s = shared.clone();
    let c = cfg.clone();
    std::thread::spawn(move || {
        let d = Driver {
            cfg: c,
            s,
            checks: rx,
        };
        let why = d.run();
        d.s.phase
            .store(phase_code(AppPhase::Failed), Ordering::Relaxed);
        d.s.alive.store(false, Ordering::Relaxed);
        emit_error(&format!("app {}: {why}", d.cfg.kind.as_str()));
        // Keep answering checks: the application is not ok.
        while let Ok(reply) = d.checks.recv() {
            let _ = reply.send((false, format!("failed: {why}")));
        }
    });
    AppHandle {
        cfg,
        shared,
        checks: tx,
        written_at_last_status: 0,
    }
}

struct Driver {
    cfg: AppConfig,
    s: Arc<Shared>,
    checks: Receiver<Sender<Check>>,
}

/// Runs a setup command; its failure is reported, not fatal (the
/// application's own start says whether it mattered).
fn setup(args: &[&str]) {
    match Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(o) => emit_error(&format!(
            "app setup: {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => emit_error(&format!("app setup: {}: {e}", args.join(" "))),
    }
}

fn log_tail(path: &Path) -> String {
    let s = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

impl Driver {
    fn set_phase(&self, p: AppPhase) {
        self.s.phase.store(phase_code(p), Ordering::Relaxed);
    }

    /// Returns only when the application failed, saying why.
    fn run(&self) -> String {
        let prog = self.cfg.kind.program();
        if !Path::new(prog).exists() {
            return format!(
                "{prog} is not in this image: boot the apps initramfs, initrd-apps.img \
                 (`pacer-lab image` prints its path)"
            );
        }
        // Loopback for the servers; a tmpfs for data and logs.
        setup(&["/bin/busybox", "ip", "link", "set", "lo", "up"]);
        let _ = fs::create_dir_all(DIR);
        let size = format!("size={}m", self.cfg.mib * 2 + 64);
        setup(&[
            "/bin/busybox",
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &size,
            "tmpfs",
            DIR,
        ]);
        let log = PathBuf::from(DIR).join(format!("{}.log", self.cfg.kind.as_str()));
        let r = match self.cfg.kind {
            AppKind::Redis => self.run_kv(Proto::Redis, &log),
            AppKind::Memcached => self.run_kv(Proto::Memcached, &log),
            AppKind::StressNg => self.run_stress(&log),
            AppKind::Zstd => self.run_zstd(),
        };
        match r {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    fn start(&self, cmd: &mut Command, log: &Path) -> Result<Child, String> {
        let out = fs::File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
        self.s.alive.store(true, Ordering::Relaxed);
        Ok(child)
    }

    /// Whether the server still runs; its exit, with its log, as an error.
    fn alive(&self, child: &mut Child, log: &Path) -> Result<(), String> {
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => Err(format!("exited ({st}); its log: {}", log_tail(log))),
            Err(e) => Err(format!("cannot wait for it: {e}")),
        }
    }

    fn run_kv(&self, proto: Proto, log: &Path) -> Result<std::convert::Infallible, String> {
        let port = match proto {
            Proto::Redis => 6379,
            Proto::Memcached => 11211,
        };
        let mut cmd = Command::new(self.cfg.kind.program());
        match proto {
            Proto::Redis => cmd.args([
                "--bind",
                "127.0.0.1",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
            ]),
            // Room for every item with its slab overhead, so none is evicted.
            Proto::Memcached => cmd
                .args([
                    "-u",
                    "root",
                    "-l",
                    "127.0.0.1",
                    "-p",
                    "11211",
                    "-U",
                    "0",
                    "-t",
                    "1",
                ])
                .arg("-m")
                .arg((self.cfg.mib * 3 / 2 + 16).to_string()),
        };
        let mut child = self.start(&mut cmd, log)?;
        let mut c = Client::connect(proto, port, Duration::from_secs(30)).map_err(|e| {
            format!(
                "does not answer on 127.0.0.1:{port}: {e}; its log: {}",
                log_tail(log)
            )
        })?;
        c.ping().map_err(|e| format!("ping: {e}"))?;
        let keys = ((self.cfg.mib << 20) / kv::VALUE_LEN as u64).max(1);
        let mut gens = vec![0u32; keys as usize];
        let mut val = Vec::with_capacity(kv::VALUE_LEN);
        let io = |e: std::io::Error| format!("{e}; its log: {}", log_tail(log));
        self.set_phase(AppPhase::Fill);
        const BATCH: u64 = 32;
        let mut i = 0;
        while i < keys {
            let n = BATCH.min(keys - i);
            for k in i..i + n {
                kv::value(k, 0, &mut val);
                c.queue_set(&proto.key(k), &val);
            }
            c.flush().map_err(io)?;
            for _ in 0..n {
                c.set_reply().map_err(io)?;
            }
            i += n;
            self.answer_checks(|| Ok(self.check_kv(&mut c, &gens)));
        }
        self.set_phase(AppPhase::Run);
        let mut rng = Rng::seeded();
        let bytes_per_sec = self.cfg.rate_mbps * 1e6;
        let mut tokens = 0.0f64;
        let mut last = Instant::now();
        loop {
            self.alive(&mut child, log)?;
            let mut failed = None;
            self.answer_checks(|| {
                let r = self.check_kv(&mut c, &gens);
                if !r.0 {
                    failed = Some(r.1.clone());
                }
                Ok(r)
            });
            if let Some(f) = failed {
                emit_error(&format!(
                    "app {}: check failed: {f}",
                    self.cfg.kind.as_str()
                ));
            }
            let now = Instant::now();
            tokens = (tokens + bytes_per_sec * now.duration_since(last).as_secs_f64())
                .min(bytes_per_sec * 0.05 + kv::VALUE_LEN as f64);
            last = now;
            let n = (tokens / kv::VALUE_LEN as f64) as u64;
            if n == 0 {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            tokens -= (n * kv::VALUE_LEN as u64) as f64;
            for _ in 0..n {
                let k = rng.below(keys as usize) as u64;
                gens[k as usize] = gens[k as usize].wrapping_add(1);
                kv::value(k, gens[k as usize], &mut val);
                c.queue_set(&proto.key(k), &val);
            }
            c.flush().map_err(io)?;
            for _ in 0..n {
                c.set_reply().map_err(io)?;
            }
            self.s.ops.fetch_add(n, Ordering::Relaxed);
            self.s
                .written
                .fetch_add(n * kv::VALUE_LEN as u64, Ordering::Relaxed);
        }
    }

    /// Answers the checks asked for meanwhile.
    fn answer_checks(&self, mut check: impl FnMut() -> Result<Check, String>) {
        while let Ok(reply) = self.checks.try_recv() {
            let r = check().unwrap_or_else(|e| (false, e));
            let _ = reply.send(r);
        }
    }

    /// PING, then the first keys and a random sample: each must hold the
    /// generation last written (keys not yet filled are skipped).
    fn check_kv(&self, c: &mut Client, gens: &[u32]) -> Check {
        let proto_key = |k: u64| match self.cfg.kind {
            AppKind::Redis => Proto::Redis.key(k),
            _ => Proto::Memcached.key(k),
        };
        if let Err(e) = c.ping() {
            return (false, format!("does not answer: {e}"));
        }
        let filled = self.s.phase.load(Ordering::Relaxed) >= phase_code(AppPhase::Run);
        if !filled {
            return (true, "answers (still filling: keys not checked)".into());
        }
        let n = gens.len() as u64;
        let mut rng = Rng::seeded();
        let mut want = Vec::with_capacity(kv::VALUE_LEN);
        let picks: Vec<u64> = (0..n.min(64))
            .chain((0..SAMPLE_KEYS).map(|_| rng.below(n as usize) as u64))
            .collect();
        for k in &picks {
            let key = proto_key(*k);
            kv::value(*k, gens[*k as usize], &mut want);
            match c.get(&key) {
                Ok(Some(v)) if v == want => {}
                Ok(Some(v)) => {
                    let head: String = String::from_utf8_lossy(&v[..v.len().min(24)]).into();
                    return (
                        false,
                        format!(
                            "key {key}: holds {head:?}..., expected generation {}",
                            gens[*k as usize]
                        ),
                    );
                }
                Ok(None) => return (false, format!("key {key} is missing")),
                Err(e) => return (false, format!("get {key}: {e}")),
            }
        }
        (
            true,
            format!("answers; {} keys hold what was written", picks.len()),
        )
    }

    fn run_stress(&self, log: &Path) -> Result<std::convert::Infallible, String> {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(self.cfg.kind.program());
        // The memrate stressor holds its own write rate (`--memrate-wr-mbs`); its
        // reads are not limited (they dirty nothing and end each pass quickly).
        cmd.args(["--memrate", "1", "--timeout", "0"])
            .arg("--memrate-bytes")
            .arg(format!("{}M", self.cfg.mib))
            .arg("--memrate-wr-mbs")
            .arg(format!("{}", self.cfg.rate_mbps.max(1.0).round() as u64))
            .args(["--temp-path", DIR])
            // Its own process group, so that its workers are counted together.
            .process_group(0);
        let mut child = self.start(&mut cmd, log)?;
        let pgid = child.id() as i32;
        let t0 = Instant::now();
        while group_size(pgid) < 2 {
            self.alive(&mut child, log)?;
            self.answer_checks(|| Ok((true, "starting: its worker is not forked yet".into())));
            if t0.elapsed() > Duration::from_secs(120) {
                return Err(format!("no worker after 120 s; its log: {}", log_tail(log)));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.set_phase(AppPhase::Run);
        loop {
            self.alive(&mut child, log)?;
            let failed = stress_failed(log);
            self.answer_checks(|| {
                if let Some(f) = &failed {
                    return Ok((false, format!("stress-ng reports a failure: {f}")));
                }
                let n = group_size(pgid);
                if n < 2 {
                    return Ok((
                        false,
                        format!("stress-ng's worker is gone ({n} process left); its log: {}", log_tail(log)),
                    ));
                }
                Ok((true, format!("alive ({n} processes), no failure in its log")))
            });
            std::thread::sleep(TICK);
            self.s.ops.fetch_add(1, Ordering::Relaxed);
            // What it aims at (its own figure, not counted here).
            let w = (self.cfg.rate_mbps * 1e6 * TICK.as_secs_f64()) as u64;
            self.s.written.fetch_add(w, Ordering::Relaxed);
        }
    }

    fn run_zstd(&self) -> Result<std::convert::Infallible, String> {
        let dir = Path::new(DIR);
        let data = dir.join("data");
        let (tmp, last) = (dir.join("out.zst.tmp"), dir.join("last.zst"));
        self.set_phase(AppPhase::Fill);
        let (len, hash) = write_data_set(&data, self.cfg.mib << 20)
            .map_err(|e| format!("cannot write its data set {}: {e}", data.display()))?;
        self.s.alive.store(true, Ordering::Relaxed);
        self.set_phase(AppPhase::Run);
        let mut have_last = false;
        loop {
            let t0 = Instant::now();
            let mut child = Command::new(self.cfg.kind.program())
                .args(["-1", "-q", "-f", "-T1"])
                .arg(&data)
                .arg("-o")
                .arg(&tmp)
                .stdin(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start zstd: {e}"))?;
            let st = loop {
                self.answer_checks(|| Ok(check_zstd(&last, have_last, len, hash)));
                match child.try_wait() {
                    Ok(Some(st)) => break st,
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                    Err(e) => return Err(format!("cannot wait for zstd: {e}")),
                }
            };
            if !st.success() {
                let mut err = String::new();
                let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
                return Err(format!("zstd failed ({st}): {}", err.trim()));
            }
            let out = fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0);
            fs::rename(&tmp, &last).map_err(|e| format!("rename to {}: {e}", last.display()))?;
            have_last = true;
            self.s.ops.fetch_add(1, Ordering::Relaxed);
            self.s.written.fetch_add(out, Ordering::Relaxed);
            // Each round at least output / rate long.
            if self.cfg.rate_mbps > 0.0 {
                let min = Duration::from_secs_f64(out as f64 / (self.cfg.rate_mbps * 1e6));
                while t0.elapsed() < min {
                    self.answer_checks(|| Ok(check_zstd(&last, have_last, len, hash)));
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

/// Processes whose process group is `pgid`.
fn group_size(pgid: i32) -> usize {
    let Ok(rd) = fs::read_dir("/proc") else {
        return 0;
    };
    rd.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| fs::read_to_string(e.path().join("stat")).ok())
        .filter(|s| {
            // After the ")" that ends the command: state, ppid, pgrp.
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(2))
                .and_then(|g| g.parse::<i32>().ok())
                == Some(pgid)
        })
        .count()
}

/// A failure stress-ng logged (`fail:` lines, bit errors its `--verify` found).
fn stress_failed(log: &Path) -> Option<String> {
    let s = fs::read_to_string(log).ok()?;
    s.lines()
        .find(|l| l.contains(" fail: ") || l.contains("bit error"))
        .map(|l| l.trim().to_string())
}

/// 64-bit FNV-1a.
fn fnv(h: &mut u64, data: &[u8]) {
    for b in data {
        *h ^= *b as u64;
        *h = h.wrapping_mul(0x100_0000_01b3);
    }
}
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// A compressible data set (random words, like text): its length and hash.
fn write_data_set(path: &Path, bytes: u64) -> std::io::Result<(u64, u64)> {
    const WORDS: &[&str] = &[
        "pacer", "migrate", "memory", "page", "dirty", "round", "guest", "host", "link", "predict",
        "converge", "copy", "switch", "over", "redis", "zstd", "the", "a", "of", "and", "to", "in",
        "is", "it", "rate", "time", "finish",
    ];
    let mut f = std::io::BufWriter::with_capacity(1 << 20, fs::File::create(path)?);
    let mut rng = Rng::seeded();
    let (mut h, mut n) = (FNV_START, 0u64);
    let mut line = Vec::with_capacity(256);
    while n < bytes {
        line.clear();
        for _ in 0..12 {
            line.extend_from_slice(WORDS[rng.below(WORDS.len())].as_bytes());
            line.push(b' ');
        }
        line.extend_from_slice(format!("{}\n", rng.below(1 << 20)).as_bytes());
        let take = line.len().min((bytes - n) as usize);
        f.write_all(&line[..take])?;
        fnv(&mut h, &line[..take]);
        n += take as u64;
    }
    f.flush()?;
    Ok((n, h))
}

/// The last round's output decompresses, checksum checked, to the data set.
fn check_zstd(last: &Path, have_last: bool, len: u64, hash: u64) -> Check {
    if !have_last {
        return (
            true,
            "first round not finished yet: nothing to check".into(),
        );
    }
    // Hold the file: the next round may rename a new one over it meanwhile.
    let held = Path::new(DIR).join("check.zst");
    if let Err(e) = fs::hard_link(last, &held).or_else(|_| {
        let _ = fs::remove_file(&held);
        fs::hard_link(last, &held)
    }) {
        return (false, format!("cannot hold {}: {e}", last.display()));
    }
    let r = (|| {
        // zstd -d checks the frame checksum as it goes (what zstd -t does);
        // comparing with the data set checks the rest, in one pass.
        let mut child = match Command::new("/usr/bin/zstd")
            .args(["-d", "-c", "-q"])
            .arg(&held)
            .stdout(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => return (false, format!("zstd -d: {e}")),
        };
        let mut out = child.stdout.take().unwrap();
        let (mut h, mut n, mut buf) = (FNV_START, 0u64, vec![0u8; 1 << 16]);
        loop {
            match out.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    fnv(&mut h, &buf[..k]);
                    n += k as u64;
                }
                Err(e) => return (false, format!("reading zstd -d: {e}")),
            }
        }
        let _ = child.wait();
        if (n, h) != (len, hash) {
            return (
                false,
                format!("decompressed {n} bytes (hash {h:016x}), expected {len} ({hash:016x})"),
            );
        }
        (
            true,
            format!("last output decompresses (checksum ok) to the {len}-byte data set"),
        )
    })();
    let _ = fs::remove_file(&held);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_words() {
        for a in APP_CHOICES.split('|') {
            assert_eq!(AppKind::parse(a).unwrap().as_str(), a);
        }
        assert_eq!(AppKind::parse("stress"), None);
    }

    #[test]
    fn data_set_is_what_its_hash_says() {
        let t = std::env::temp_dir().join(format!("pacer-app-test-{}", std::process::id()));
        let (n, h) = write_data_set(&t, 100_000).unwrap();
        let data = fs::read(&t).unwrap();
        let _ = fs::remove_file(&t);
        assert_eq!(n, 100_000);
        assert_eq!(data.len(), 100_000);
        let mut h2 = FNV_START;
        fnv(&mut h2, &data);
        assert_eq!(h, h2);
    }

    #[test]
    fn own_process_group_counts() {
        // This test's own group holds at least this process.
        let me = fs::read_to_string("/proc/self/stat").unwrap();
        let pgrp: i32 = me
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .nth(2)
            .unwrap()
            .parse()
            .unwrap();
        assert!(group_size(pgrp) >= 1);
    }
}
