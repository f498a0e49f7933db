//! pacer-guest: the workload program run inside a test VM.
//!
//! It allocates a working set, fills every page with content that is a pure
//! function of (page index, generation), optionally rewrites random pages at
//! a fixed rate (verifying each page before rewriting it), and on the
//! `verify` command sweeps the whole working set. Output is JSON lines
//! prefixed by `PACER ` on stdout; commands are lines on stdin. Both are
//! defined by the `pacer-guest-proto` crate, which readers of the console use.
//!
//! With `pacer.disk=/dev/vda` it also writes a block device at a fixed rate
//! (see [`disk`]), and `verify` checks the disk too.
//!
//! With `pacer.app=redis|memcached|stress-ng|zstd` a real application is the
//! workload (see [`app`]); `verify` checks it too.

mod app;
mod config;
mod disk;
mod kv;
mod page;
mod pick;

use config::{Config, Workload};
use disk::DiskHandle;
use pacer_guest_proto::{
    Command, DiskPhase, GuestLine, ReadyLine, StatusLine, UnknownCommand, VerifyLine,
};
use page::{Check, Page, PAGE_SIZE, WORDS};
use pick::{Picker, Rng};
use std::io::{self, BufRead, Write};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Writes one `PACER {...}` line to stdout and flushes it. Write errors are
/// ignored: there is nobody to tell.
pub(crate) fn emit(line: &GuestLine) {
    let mut text = line.to_line();
    text.push('\n');
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Writes an `error` line.
pub(crate) fn emit_error(message: &str) {
    emit(&GuestLine::error(message));
}

/// A rate rounded to 2 decimals, as status lines carry it.
pub(crate) fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The working set: `pages` page-aligned 4 KiB pages plus the expected
/// generation of each.
struct Memory {
    buf: Vec<u64>,
    off: usize,
    pages: usize,
    gens: Vec<u32>,
    /// Pages from here on hold content of this guest's own (`pacer.unique`);
    /// those below are what every guest of the program holds at the same
    /// generation (the content a gang shares).
    unique_from: usize,
    /// This guest's own header magic for its unique pages (random per boot).
    unique_magic: u64,
}

impl Memory {
    /// Allocates (lazily zeroed, so untouched) memory for `pages` pages.
    fn new(pages: usize) -> Memory {
        let buf = vec![0u64; pages * WORDS + WORDS - 1];
        let addr = buf.as_ptr() as usize;
        let off = ((PAGE_SIZE - addr % PAGE_SIZE) % PAGE_SIZE) / 8;
        Memory {
            buf,
            off,
            pages,
            gens: vec![0; pages],
            unique_from: pages,
            unique_magic: page::MAGIC,
        }
    }

    /// Makes the last `fraction` of the pages this guest's own (before the fill).
    fn set_unique(&mut self, fraction: f64, salt: u64) {
        let n = (self.pages as f64 * fraction.clamp(0.0, 1.0)).round() as usize;
        self.unique_from = self.pages - n.min(self.pages);
        // Never the shared magic, whatever the salt.
        self.unique_magic = page::MAGIC ^ (salt | 1);
    }

    #[inline]
    fn magic(&self, i: usize) -> u64 {
        if i >= self.unique_from {
            self.unique_magic
        } else {
            page::MAGIC
        }
    }

    #[inline]
    fn page(&self, i: usize) -> &Page {
        let start = self.off + i * WORDS;
        (&self.buf[start..start + WORDS]).try_into().unwrap()
    }

    #[inline]
    fn page_mut(&mut self, i: usize) -> &mut Page {
        let start = self.off + i * WORDS;
        (&mut self.buf[start..start + WORDS]).try_into().unwrap()
    }

    /// Writes generation 0 into every page.
    fn fill_all(&mut self) {
        for i in 0..self.pages {
            let m = self.magic(i);
            page::fill_tagged(self.page_mut(i), m, i as u64, 0);
            self.gens[i] = 0;
        }
    }

    #[inline]
    fn check(&self, i: usize) -> Check {
        page::check_tagged(self.page(i), self.magic(i), i as u64, self.gens[i] as u64)
    }

    /// Read-verify-write: checks page `i`, then writes its next generation.
    /// Returns the result of the check.
    #[inline]
    fn rewrite(&mut self, i: usize) -> Check {
        let c = self.check(i);
        let next = self.gens[i].wrapping_add(1);
        let m = self.magic(i);
        page::fill_tagged(self.page_mut(i), m, i as u64, next as u64);
        self.gens[i] = next;
        c
    }
}

/// Reads stdin lines in a thread and hands them to the main loop.
fn spawn_stdin_reader() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let stdin = io::stdin();
        let mut lock = stdin.lock();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match lock.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    if tx.send(line).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    emit_error(&format!("stdin: {e}; no more commands"));
                    break;
                }
            }
        }
    });
    rx
}

fn mem_available_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Cap on the number of per-page error lines from the write path.
const MAX_PAGE_ERROR_LINES: u64 = 8;

struct Guest {
    cfg: Config,
    mem: Memory,
    picker: Picker,
    rng: Rng,
    start: Instant,
    /// Pages rewritten by the workload (not counting the initial fill).
    pages_written: u64,
    /// Corrupt pages detected so far (write-path checks and sweeps).
    errors: u64,
    /// First pages found bad by read-before-write checks.
    write_bad: Vec<u64>,
    verify_seq: u64,
    last_status: Instant,
    written_at_last_status: u64,
    /// The disk workload, if any.
    disk: Option<DiskHandle>,
    disk_written_at_last_status: u64,
    /// The memory writer is paused (`pause`), or starts paused.
    paused: bool,
    /// The application, if any.
    app: Option<app::AppHandle>,
}

impl Guest {
    fn describe(c: Check, expected: u32) -> String {
        match c {
            Check::Ok => "ok".into(),
            Check::Stale { found_gen } => {
                format!("stale: generation {found_gen}, expected {expected}")
            }
            Check::Future { found_gen } => {
                format!("newer: generation {found_gen}, expected {expected}")
            }
            Check::Corrupt => format!("corrupt (expected generation {expected})"),
        }
    }

    fn write_one(&mut self) {
        let i = self.picker.pick(&mut self.rng);
        let expected = self.mem.gens[i];
        let c = self.mem.rewrite(i);
        self.pages_written += 1;
        if c != Check::Ok {
            self.errors += 1;
            if self.write_bad.len() < 8 {
                self.write_bad.push(i as u64);
            }
            if self.errors <= MAX_PAGE_ERROR_LINES {
                emit_error(&format!(
                    "page {i} before rewrite: {}",
                    Self::describe(c, expected)
                ));
            }
        }
    }

    fn status(&mut self) {
        let now = Instant::now();
        let secs = now.duration_since(self.last_status).as_secs_f64();
        let bytes = (self.pages_written - self.written_at_last_status) * PAGE_SIZE as u64;
        let mbps = if secs > 0.0 {
            bytes as f64 / secs / 1e6
        } else {
            0.0
        };
        self.last_status = now;
        self.written_at_last_status = self.pages_written;
        let mut o = StatusLine {
            uptime_ms: self.start.elapsed().as_millis() as u64,
            pages_written: self.pages_written,
            write_mbps: round2(mbps),
            errors: self.errors,
            workload: self.cfg.workload.as_str().into(),
            ..StatusLine::default()
        };
        match &self.disk {
            Some(d) => {
                let written = d.stats.written_bytes.load(Ordering::Relaxed);
                let delta = written - self.disk_written_at_last_status;
                self.disk_written_at_last_status = written;
                let dmbps = if secs > 0.0 {
                    delta as f64 / secs / 1e6
                } else {
                    0.0
                };
                o.disk_written_bytes = written;
                o.disk_write_mbps = round2(dmbps);
                o.disk_errors = d.stats.errors.load(Ordering::Relaxed);
                o.disk_phase = d.phase(self.cfg.disk.rate_mbps);
                o.disk_fill_bytes = Some(d.stats.fill_bytes.load(Ordering::Relaxed));
                o.disk_fill_total = Some(d.fill_total);
            }
            None => {
                o.disk_written_bytes = 0;
                o.disk_write_mbps = 0.0;
                o.disk_errors = 0;
                o.disk_phase = DiskPhase::None;
            }
        }
        if let Some(a) = &mut self.app {
            let st = a.status(secs);
            o.app = Some(a.cfg.kind.as_str().into());
            o.app_phase = Some(st.phase);
            o.app_alive = Some(st.alive);
            o.app_ops = Some(st.ops);
            o.app_write_mbps = Some(st.write_mbps);
        }
        emit(&GuestLine::Status(o));
    }

    /// Full sweep of the working set. Bad pages are counted as errors and
    /// then rewritten with their next generation, so each corruption is
    /// counted once.
    fn verify(&mut self) {
        let t0 = Instant::now();
        self.verify_seq += 1;
        // The disk thread sweeps the disk (its writes pause meanwhile) while
        // this thread sweeps memory.
        let disk_reply = self.disk.as_ref().map(|d| d.start_verify());
        let mut bad = 0u64;
        let mut stale = 0u64;
        let mut first_bad = Vec::new();
        for i in 0..self.mem.pages {
            let c = self.mem.check(i);
            if c != Check::Ok {
                bad += 1;
                if matches!(c, Check::Stale { .. }) {
                    stale += 1;
                }
                if first_bad.len() < 8 {
                    first_bad.push(i as u64);
                }
                self.mem.rewrite(i);
            }
        }
        self.errors += bad;
        let mem_ok = self.errors == 0;
        let mem_ms = t0.elapsed().as_millis() as u64;
        let mut o = VerifyLine {
            seq: self.verify_seq,
            ..VerifyLine::default()
        };
        match (disk_reply, &self.disk) {
            (Some(reply), Some(d)) => {
                let r = reply.and_then(|rx| rx.recv().ok());
                let errors = d.stats.errors.load(Ordering::Relaxed);
                match r {
                    Some(r) => {
                        let ok = errors == 0;
                        o.ok = mem_ok && ok;
                        o.mem_ok = mem_ok;
                        o.disk_ok = ok;
                        o.disk_blocks_checked = r.blocks_checked;
                        o.disk_bad_blocks = r.bad_blocks;
                        o.disk_stale_blocks = Some(r.stale_blocks);
                        o.disk_unknown_blocks = Some(r.blocks_unknown);
                        o.disk_first_bad = Some(r.first_bad);
                        o.disk_read_errors = Some(r.read_errors);
                        o.disk_duration_ms = Some(r.duration_ms);
                        o.disk_errors_total = Some(errors);
                    }
                    None => {
                        emit_error("disk: the disk thread is gone; cannot verify the disk");
                        o.ok = false;
                        o.mem_ok = mem_ok;
                        o.disk_ok = false;
                        o.disk_blocks_checked = 0;
                        o.disk_bad_blocks = 0;
                    }
                }
            }
            _ => {
                o.ok = mem_ok;
                o.mem_ok = mem_ok;
                o.disk_ok = true;
                o.disk_blocks_checked = 0;
                o.disk_bad_blocks = 0;
            }
        }
        o.pages_checked = self.mem.pages as u64;
        o.bad_pages = bad;
        o.first_bad = first_bad;
        o.stale_pages = stale;
        o.mem_duration_ms = mem_ms;
        o.duration_ms = t0.elapsed().as_millis() as u64;
        o.errors_total = self.errors;
        o.write_path_bad = self.write_bad.clone();
        if let Some(a) = &self.app {
            let (ok, detail) = a.check();
            o.app = Some(a.cfg.kind.as_str().into());
            o.app_ok = Some(ok);
            o.app_detail = Some(detail);
            o.ok = o.ok && ok;
        }
        o.duration_ms = t0.elapsed().as_millis() as u64;
        emit(&GuestLine::Verify(o));
    }

    fn command(&mut self, line: &str) {
        match Command::parse(line) {
            Some(Command::Verify) => self.verify(),
            Some(Command::Status) => self.status(),
            Some(Command::Pause) => {
                self.paused = true;
                self.status();
            }
            Some(Command::Resume) => {
                self.paused = false;
                self.status();
            }
            None if line.trim().is_empty() => {}
            None => {
                let shown: String = line.trim().chars().take(80).collect();
                emit_error(&UnknownCommand(shown).to_string());
            }
        }
    }

    fn run(&mut self, rx: mpsc::Receiver<String>) -> ! {
        let interval = Duration::from_millis(self.cfg.status_ms);
        let writing = self.cfg.workload == Workload::MemWrite && self.cfg.rate_mbps > 0.0;
        let bytes_per_sec = self.cfg.rate_mbps * 1e6;
        // Small batches: one every TICK; at most BURST worth of catch-up.
        const TICK: Duration = Duration::from_millis(5);
        let burst = (bytes_per_sec * 0.05).max(PAGE_SIZE as f64);
        let mut tokens = 0.0f64;
        let mut last = Instant::now();
        let mut next_status = last + interval;
        let mut stdin_open = true;
        loop {
            let now = Instant::now();
            let mut wait = next_status.saturating_duration_since(now);
            if writing {
                wait = wait.min(TICK);
            }
            let cmd = if stdin_open {
                match rx.recv_timeout(wait) {
                    Ok(line) => Some(line),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => {
                        stdin_open = false;
                        None
                    }
                }
            } else {
                std::thread::sleep(wait);
                None
            };
            if let Some(line) = cmd {
                self.command(&line);
                // Time spent in a sweep, or paused, is not credited to the writer.
                if matches!(Command::parse(&line), Some(Command::Verify | Command::Resume)) {
                    last = Instant::now();
                }
            }
            let now = Instant::now();
            if writing && self.paused {
                last = now;
            } else if writing {
                let dt = now.duration_since(last).as_secs_f64();
                last = now;
                tokens = (tokens + bytes_per_sec * dt).min(burst);
                while tokens >= PAGE_SIZE as f64 {
                    self.write_one();
                    tokens -= PAGE_SIZE as f64;
                }
            }
            if now >= next_status {
                self.status();
                next_status += interval;
                if next_status <= now {
                    next_status = now + interval;
                }
            }
        }
    }
}

/// Opens the workload's disk, waiting a little for its device node; problems
/// are reported and mean no disk workload.
fn open_disk(path: &str, cfg: &config::DiskConfig) -> Option<disk::DiskDev> {
    let p = std::path::Path::new(path);
    if !disk::wait_for(p, Duration::from_secs(10)) {
        emit_error(&format!("disk {path} does not exist; no disk workload"));
        return None;
    }
    match disk::DiskDev::open(p, cfg, true) {
        Ok((d, warnings)) => {
            for w in &warnings {
                emit_error(w);
            }
            Some(d)
        }
        Err(e) => {
            emit_error(&format!("disk {path}: cannot open: {e}; no disk workload"));
            None
        }
    }
}

fn main() {
    let start = Instant::now();
    let path = std::env::var("PACER_GUEST_CMDLINE").unwrap_or_else(|_| "/proc/cmdline".into());
    let cmdline = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) => {
            emit_error(&format!("cannot read {path}: {e}; using defaults"));
            String::new()
        }
    };
    let (cfg, problems) = config::parse_cmdline(&cmdline);
    for p in &problems {
        emit_error(p);
    }
    let pages = (cfg.wss_mib as usize) * (1 << 20) / PAGE_SIZE;
    if let Some(avail) = mem_available_kib() {
        if cfg.wss_mib * 1024 > avail {
            emit_error(&format!(
                "working set {} MiB exceeds MemAvailable {} MiB; expect the OOM killer",
                cfg.wss_mib,
                avail / 1024
            ));
        }
    }

    let disk_dev = cfg
        .disk
        .path
        .as_deref()
        .and_then(|p| open_disk(p, &cfg.disk));

    let t_fill = Instant::now();
    let mut mem = Memory::new(pages);
    mem.set_unique(cfg.unique, Rng::seeded().next());
    mem.fill_all();
    let fill_ms = t_fill.elapsed().as_millis() as u64;
    let mut ready = ReadyLine {
        workload: cfg.workload.as_str().into(),
        wss_mib: cfg.wss_mib,
        rate_mbps: cfg.rate_mbps,
        hot_fraction: cfg.hot_fraction,
        hot_share: cfg.hot_share,
        status_ms: cfg.status_ms,
        pages: pages as u64,
        fill_ms,
        uptime_ms: start.elapsed().as_millis() as u64,
        ..ReadyLine::default()
    };
    if let Some(d) = &disk_dev {
        disk::describe(&mut ready, d, &cfg.disk);
    }
    if let Some(a) = &cfg.app {
        ready.app = Some(a.kind.as_str().into());
        ready.app_mib = Some(a.mib);
        ready.app_rate_mbps = Some(a.rate_mbps);
    }
    emit(&GuestLine::Ready(ready));
    let disk = disk_dev.map(|d| disk::spawn(d, &cfg.disk));
    let app = cfg.app.clone().map(app::spawn);

    let rx = spawn_stdin_reader();
    let now = Instant::now();
    let cfg_paused = cfg.paused;
    let mut guest = Guest {
        picker: Picker::new(pages, cfg.hot_fraction, cfg.hot_share),
        cfg,
        mem,
        rng: Rng::seeded(),
        start,
        pages_written: 0,
        errors: 0,
        write_bad: Vec::new(),
        verify_seq: 0,
        last_status: now,
        written_at_last_status: 0,
        disk,
        disk_written_at_last_status: 0,
        paused: cfg_paused,
        app,
    };
    guest.run(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_pages_are_aligned_and_verify() {
        let mut m = Memory::new(16);
        assert_eq!(m.page(0).as_ptr() as usize % PAGE_SIZE, 0);
        m.fill_all();
        for i in 0..16 {
            assert_eq!(m.check(i), Check::Ok);
        }
        assert_eq!(m.rewrite(3), Check::Ok);
        assert_eq!(m.gens[3], 1);
        assert_eq!(m.check(3), Check::Ok);
        // Simulate a lost write: put generation 0 back.
        page::fill(m.page_mut(3), 3, 0);
        assert_eq!(m.check(3), Check::Stale { found_gen: 0 });
        // Read-before-write reports it.
        assert_eq!(m.rewrite(3), Check::Stale { found_gen: 0 });
        assert_eq!(m.check(3), Check::Ok);
        // Zeroed page.
        m.page_mut(5).fill(0);
        assert_eq!(m.check(5), Check::Corrupt);
    }

    #[test]
    fn unique_pages_differ_between_guests_and_shared_ones_do_not() {
        let (mut a, mut b) = (Memory::new(8), Memory::new(8));
        a.set_unique(0.5, 11);
        b.set_unique(0.5, 12);
        a.fill_all();
        b.fill_all();
        for i in 0..8 {
            assert_eq!(a.check(i), Check::Ok);
            assert_eq!(a.page(i) == b.page(i), i < 4, "page {i}");
        }
        // A rewrite keeps a page its kind: shared pages at the same generation agree.
        assert_eq!((a.rewrite(1), b.rewrite(1)), (Check::Ok, Check::Ok));
        assert!(a.page(1) == b.page(1));
        assert_eq!(a.rewrite(6), Check::Ok);
        assert_eq!(a.check(6), Check::Ok);
    }
}
