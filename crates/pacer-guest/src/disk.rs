//! Disk workload: writes blocks of a block device at a fixed rate and checks
//! on `verify` that the device holds exactly what was last written.
//!
//! The span (the first `disk_span_mib` MiB of the device, a multiple of the
//! write size) is cut into chunks of `disk_bs_kib` KiB; each write rewrites
//! one whole chunk with its next generation. Every 4 KiB block of a chunk
//! holds the page format of [`crate::page`] under its own magic, keyed by the
//! block's absolute index on the device and the chunk's generation, so a
//! lost write (an older generation), a torn write (a mix of generations, or a
//! block cut in the middle) and plain corruption are all told apart. The
//! expected generation of every chunk lives in guest memory; generation 0
//! means "unknown" (never written by this run) and is not checked.
//!
//! I/O uses `O_DIRECT | O_DSYNC` with 4 KiB-aligned buffers, so every write
//! reaches the virtual disk before it returns and every verify read comes
//! from the disk, not from the guest's page cache. `O_DIRECT` is optional
//! (a regular file on tmpfs refuses it).
//!
//! The workload runs in its own thread ([`spawn`]); the main loop talks to it
//! through a [`DiskHandle`]: counters are shared atomics, a verify sweep is a
//! request answered over a channel (writes pause during the sweep).

use crate::config::{DiskConfig, DiskPattern, DISK_HOT_SHARE};
use crate::page::{self, Check, Page, PAGE_SIZE, WORDS};
use crate::pick::{Picker, Rng};
use pacer_guest_proto::{DiskFilledLine, DiskPhase, GuestLine, ReadyLine};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Bytes per checked block (the unit of the on-disk format).
pub const BLOCK: usize = PAGE_SIZE;
/// Header magic of disk blocks ("PACERDK1" in ASCII).
pub const DISK_MAGIC: u64 = 0x5041_4345_5244_4B31;
/// Largest single read or write of the fill and the verify sweep.
const BATCH_BYTES: usize = 1 << 20;

#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
const O_DIRECT: i32 = 0o40000;
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
const O_DIRECT: i32 = 0o200000;
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm"
)))]
const O_DIRECT: i32 = 0;
/// Linux `O_DSYNC` (the same on x86 and arm).
const O_DSYNC: i32 = 0o10000;
/// Linux `EINVAL`.
const EINVAL: i32 = 22;

/// A heap buffer whose usable part starts on a 4 KiB boundary.
struct AlignedBuf {
    words: Vec<u64>,
    off: usize,
    blocks: usize,
}

impl AlignedBuf {
    fn new(bytes: usize) -> AlignedBuf {
        let blocks = bytes.div_ceil(BLOCK).max(1);
        let words = vec![0u64; blocks * WORDS + WORDS - 1];
        let addr = words.as_ptr() as usize;
        let off = ((BLOCK - addr % BLOCK) % BLOCK) / 8;
        AlignedBuf { words, off, blocks }
    }

    fn block(&self, i: usize) -> &Page {
        let s = self.off + i * WORDS;
        (&self.words[s..s + WORDS]).try_into().unwrap()
    }

    fn block_mut(&mut self, i: usize) -> &mut Page {
        let s = self.off + i * WORDS;
        (&mut self.words[s..s + WORDS]).try_into().unwrap()
    }

    /// The first `len` bytes (a multiple of [`BLOCK`], at most the capacity).
    fn bytes(&self, len: usize) -> &[u8] {
        assert!(len <= self.blocks * BLOCK);
        let w = &self.words[self.off..self.off + len / 8];
        // SAFETY: any initialised u64 memory is valid as bytes.
        unsafe { std::slice::from_raw_parts(w.as_ptr() as *const u8, len) }
    }

    fn bytes_mut(&mut self, len: usize) -> &mut [u8] {
        assert!(len <= self.blocks * BLOCK);
        let w = &mut self.words[self.off..self.off + len / 8];
        // SAFETY: every byte pattern is a valid u64.
        unsafe { std::slice::from_raw_parts_mut(w.as_mut_ptr() as *mut u8, len) }
    }
}

/// Result of one verify sweep over the span.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskVerify {
    /// 4 KiB blocks compared with their expected content.
    pub blocks_checked: u64,
    /// Blocks not checked because their content is unknown (not yet filled,
    /// or a failed write).
    pub blocks_unknown: u64,
    /// Blocks that did not match.
    pub bad_blocks: u64,
    /// Bad blocks that hold a complete older generation (lost writes).
    pub stale_blocks: u64,
    /// Device offsets / 4096 of the first bad blocks.
    pub first_bad: Vec<u64>,
    /// Reads that failed (their blocks count as bad).
    pub read_errors: u64,
    /// Milliseconds the sweep took.
    pub duration_ms: u64,
}

/// An open disk with the expected generation of every chunk of its span.
pub struct DiskDev {
    file: File,
    path: PathBuf,
    /// Whether `O_DIRECT` is in effect.
    direct: bool,
    /// Size of the whole device.
    dev_bytes: u64,
    /// Bytes per chunk (one workload write).
    chunk: usize,
    /// Expected generation per chunk; 0 = unknown.
    gens: Vec<u32>,
    buf: AlignedBuf,
}

impl DiskDev {
    /// Opens `path` for the workload described by `cfg`. With `direct`,
    /// tries `O_DIRECT` and falls back to buffered I/O if the file system
    /// refuses it. Returns the disk and warnings (e.g. a clipped span).
    pub fn open(path: &Path, cfg: &DiskConfig, direct: bool) -> io::Result<(DiskDev, Vec<String>)> {
        let mut warnings = Vec::new();
        let open = |flags: i32| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(flags)
                .open(path)
        };
        let (file, direct) = if direct && O_DIRECT != 0 {
            match open(O_DIRECT | O_DSYNC) {
                Ok(f) => (f, true),
                Err(e) if e.raw_os_error() == Some(EINVAL) => {
                    warnings.push(format!(
                        "disk {}: O_DIRECT refused ({e}); using buffered O_DSYNC I/O",
                        path.display()
                    ));
                    (open(O_DSYNC)?, false)
                }
                Err(e) => return Err(e),
            }
        } else {
            (open(O_DSYNC)?, false)
        };
        // Block devices report size 0 in metadata; seeking to the end works for both.
        let dev_bytes = (&file).seek(SeekFrom::End(0))?;
        let chunk = (cfg.bs_kib as usize * 1024).max(BLOCK) / BLOCK * BLOCK;
        let mut span = dev_bytes;
        if let Some(mib) = cfg.span_mib {
            let want = mib << 20;
            if want > dev_bytes {
                warnings.push(format!(
                    "disk {}: span {mib} MiB exceeds the device ({} bytes); using the whole device",
                    path.display(),
                    dev_bytes
                ));
            } else {
                span = want;
            }
        }
        let chunks = (span / chunk as u64) as usize;
        if chunks == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "disk {}: {} bytes hold no whole {} KiB block",
                    path.display(),
                    span,
                    chunk / 1024
                ),
            ));
        }
        Ok((
            DiskDev {
                file,
                path: path.to_path_buf(),
                direct,
                dev_bytes,
                chunk,
                gens: vec![0; chunks],
                buf: AlignedBuf::new(chunk.max(BATCH_BYTES)),
            },
            warnings,
        ))
    }

    /// Number of chunks (units of one workload write) in the span.
    pub fn chunks(&self) -> usize {
        self.gens.len()
    }

    /// Bytes per chunk.
    pub fn chunk_bytes(&self) -> usize {
        self.chunk
    }

    /// Bytes of the device in use.
    pub fn span_bytes(&self) -> u64 {
        self.gens.len() as u64 * self.chunk as u64
    }

    /// Whether `O_DIRECT` is in effect.
    pub fn direct(&self) -> bool {
        self.direct
    }

    /// Chunks per batch of the fill and the sweep.
    fn batch_chunks(&self) -> usize {
        (self.buf.blocks * BLOCK / self.chunk).max(1)
    }

    /// The generation after `g` (never 0, which means unknown).
    fn next_gen(g: u32) -> u32 {
        match g.wrapping_add(1) {
            0 => 1,
            n => n,
        }
    }

    /// Writes the next generation of chunks `first..first + n` in one I/O.
    /// On success their expected generations advance; on failure they become
    /// unknown (the device may hold either).
    pub fn write_run(&mut self, first: usize, n: usize) -> io::Result<()> {
        assert!(n >= 1 && n <= self.batch_chunks() && first + n <= self.chunks());
        let bpc = self.chunk / BLOCK;
        let base_block = (first * self.chunk / BLOCK) as u64;
        for c in 0..n {
            let gen = Self::next_gen(self.gens[first + c]) as u64;
            for b in 0..bpc {
                let i = c * bpc + b;
                page::fill_tagged(
                    self.buf.block_mut(i),
                    DISK_MAGIC,
                    base_block + i as u64,
                    gen,
                );
            }
        }
        let len = n * self.chunk;
        let off = (first * self.chunk) as u64;
        match self.file.write_all_at(self.buf.bytes(len), off) {
            Ok(()) => {
                for g in &mut self.gens[first..first + n] {
                    *g = Self::next_gen(*g);
                }
                Ok(())
            }
            Err(e) => {
                self.gens[first..first + n].fill(0);
                Err(e)
            }
        }
    }

    /// Reads the whole span and checks every block of known content. Bad
    /// chunks are rewritten with their next generation so that each
    /// corruption is reported once.
    pub fn verify(&mut self) -> DiskVerify {
        let t0 = Instant::now();
        let mut r = DiskVerify::default();
        let bpc = self.chunk / BLOCK;
        let batch = self.batch_chunks();
        let mut to_fix = Vec::new();
        let mut first = 0;
        while first < self.chunks() {
            let n = batch.min(self.chunks() - first);
            if self.gens[first..first + n].iter().all(|&g| g == 0) {
                r.blocks_unknown += (n * bpc) as u64;
                first += n;
                continue;
            }
            let len = n * self.chunk;
            let off = (first * self.chunk) as u64;
            let read = self.file.read_exact_at(self.buf.bytes_mut(len), off);
            let base_block = (first * bpc) as u64;
            for c in 0..n {
                let gen = self.gens[first + c];
                if gen == 0 {
                    r.blocks_unknown += bpc as u64;
                    continue;
                }
                let mut chunk_bad = false;
                for b in 0..bpc {
                    let i = c * bpc + b;
                    let idx = base_block + i as u64;
                    r.blocks_checked += 1;
                    let check = if read.is_ok() {
                        page::check_tagged(self.buf.block(i), DISK_MAGIC, idx, gen as u64)
                    } else {
                        Check::Corrupt
                    };
                    if check != Check::Ok {
                        r.bad_blocks += 1;
                        chunk_bad = true;
                        if matches!(check, Check::Stale { .. }) {
                            r.stale_blocks += 1;
                        }
                        if r.first_bad.len() < 8 {
                            r.first_bad.push(idx);
                        }
                    }
                }
                if chunk_bad {
                    to_fix.push(first + c);
                }
            }
            if read.is_err() {
                r.read_errors += 1;
            }
            first += n;
        }
        for c in to_fix {
            // A failure leaves the chunk unknown; the sweep already counted it.
            let _ = self.write_run(c, 1);
        }
        r.duration_ms = t0.elapsed().as_millis() as u64;
        r
    }
}

/// Which chunk the workload writes next.
enum Chooser {
    Seq(usize),
    Random(Picker),
}

impl Chooser {
    fn new(cfg: &DiskConfig, chunks: usize) -> Chooser {
        match cfg.pattern {
            DiskPattern::Seq => Chooser::Seq(0),
            DiskPattern::Uniform => Chooser::Random(Picker::new(chunks, 0.0, 0.0)),
            DiskPattern::Hot => {
                Chooser::Random(Picker::new(chunks, cfg.hot_fraction, DISK_HOT_SHARE))
            }
        }
    }

    fn next(&mut self, chunks: usize, rng: &mut Rng) -> usize {
        match self {
            Chooser::Seq(c) => {
                let i = *c % chunks;
                *c = (i + 1) % chunks;
                i
            }
            Chooser::Random(p) => p.pick(rng),
        }
    }
}

/// Counters shared between the disk thread and the main loop.
#[derive(Default)]
pub struct DiskStats {
    /// Bytes written by the workload (not counting the fill).
    pub written_bytes: AtomicU64,
    /// Bytes written by the initial fill so far.
    pub fill_bytes: AtomicU64,
    /// True once the fill is over (or was skipped).
    pub fill_done: AtomicBool,
    /// Failed writes plus bad blocks found by sweeps.
    pub errors: AtomicU64,
}

/// Requests to the disk thread.
enum DiskCmd {
    Verify(mpsc::Sender<DiskVerify>),
}

/// The main loop's side of the disk thread.
pub struct DiskHandle {
    tx: mpsc::Sender<DiskCmd>,
    /// Shared counters.
    pub stats: Arc<DiskStats>,
    /// Bytes the fill writes (0 if there is no fill).
    pub fill_total: u64,
}

impl DiskHandle {
    /// Starts a verify sweep; the answer arrives on the returned channel.
    pub fn start_verify(&self) -> Option<mpsc::Receiver<DiskVerify>> {
        let (tx, rx) = mpsc::channel();
        self.tx.send(DiskCmd::Verify(tx)).ok()?;
        Some(rx)
    }

    /// `fill`, `write` or `idle` (fill done, rate 0).
    pub fn phase(&self, rate_mbps: f64) -> DiskPhase {
        if !self.stats.fill_done.load(Ordering::Relaxed) {
            DiskPhase::Fill
        } else if rate_mbps > 0.0 {
            DiskPhase::Write
        } else {
            DiskPhase::Idle
        }
    }
}

/// Cap on error lines printed by the disk thread.
const MAX_ERROR_LINES: u64 = 8;

struct Worker {
    dev: DiskDev,
    cfg: DiskConfig,
    stats: Arc<DiskStats>,
    rx: mpsc::Receiver<DiskCmd>,
    error_lines: u64,
}

impl Worker {
    fn io_error(&mut self, what: &str, e: &io::Error) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        self.error_lines += 1;
        if self.error_lines <= MAX_ERROR_LINES {
            crate::emit_error(&format!("disk {}: {what}: {e}", self.dev.path.display()));
        }
    }

    fn serve(&mut self, cmd: DiskCmd) {
        match cmd {
            DiskCmd::Verify(reply) => {
                let r = self.dev.verify();
                self.stats.errors.fetch_add(r.bad_blocks, Ordering::Relaxed);
                let _ = reply.send(r);
            }
        }
    }

    /// Writes generation 1 over the whole span, serving requests between
    /// batches. Returns false if the main loop has gone away.
    fn fill(&mut self) -> bool {
        let t0 = Instant::now();
        let batch = self.dev.batch_chunks();
        let mut first = 0;
        while first < self.dev.chunks() {
            loop {
                match self.rx.try_recv() {
                    Ok(cmd) => self.serve(cmd),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return false,
                }
            }
            let n = batch.min(self.dev.chunks() - first);
            if let Err(e) = self.dev.write_run(first, n) {
                let off = first as u64 * self.dev.chunk as u64;
                self.io_error(&format!("fill write at offset {off}"), &e);
            }
            self.stats
                .fill_bytes
                .fetch_add((n * self.dev.chunk) as u64, Ordering::Relaxed);
            first += n;
        }
        self.stats.fill_done.store(true, Ordering::Relaxed);
        let secs = t0.elapsed().as_secs_f64();
        let bytes = self.dev.span_bytes();
        crate::emit(&GuestLine::DiskFilled(DiskFilledLine {
            bytes,
            fill_ms: (secs * 1000.0) as u64,
            fill_mbps: crate::round2(if secs > 0.0 {
                bytes as f64 / secs / 1e6
            } else {
                0.0
            }),
        }));
        true
    }

    fn run(mut self) {
        if self.cfg.fill {
            if !self.fill() {
                return;
            }
        } else {
            self.stats.fill_done.store(true, Ordering::Relaxed);
        }
        let bytes_per_sec = self.cfg.rate_mbps * 1e6;
        let chunk = self.dev.chunk as f64;
        let writing = bytes_per_sec > 0.0;
        const TICK: Duration = Duration::from_millis(5);
        let burst = (bytes_per_sec * 0.05).max(chunk);
        let mut tokens = 0.0f64;
        let mut chooser = Chooser::new(&self.cfg, self.dev.chunks());
        let mut rng = Rng(Rng::seeded().0 ^ 0x6469_736B_5061_6365 | 1);
        let mut last = Instant::now();
        loop {
            let wait = if writing {
                TICK
            } else {
                Duration::from_secs(3600)
            };
            match self.rx.recv_timeout(wait) {
                Ok(cmd) => {
                    self.serve(cmd);
                    // Time spent in a sweep is not credited to the writer.
                    last = Instant::now();
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if !writing {
                continue;
            }
            let now = Instant::now();
            tokens = (tokens + bytes_per_sec * now.duration_since(last).as_secs_f64()).min(burst);
            last = now;
            while tokens >= chunk {
                let c = chooser.next(self.dev.chunks(), &mut rng);
                match self.dev.write_run(c, 1) {
                    Ok(()) => {
                        self.stats
                            .written_bytes
                            .fetch_add(self.dev.chunk as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        let off = c as u64 * self.dev.chunk as u64;
                        self.io_error(&format!("write at offset {off}"), &e);
                    }
                }
                tokens -= chunk;
            }
        }
    }
}

/// Waits up to `timeout` for `path` to appear (a device node created by
/// devtmpfs once the driver has probed the disk).
pub fn wait_for(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if path.exists() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the disk workload thread (fill, then rate-limited writes).
pub fn spawn(dev: DiskDev, cfg: &DiskConfig) -> DiskHandle {
    let (tx, rx) = mpsc::channel();
    let stats = Arc::new(DiskStats::default());
    let span_bytes = dev.span_bytes();
    let worker = Worker {
        dev,
        cfg: cfg.clone(),
        stats: stats.clone(),
        rx,
        error_lines: 0,
    };
    std::thread::Builder::new()
        .name("pacer-disk".into())
        .spawn(move || worker.run())
        .expect("spawn the disk thread");
    DiskHandle {
        tx,
        stats,
        fill_total: if cfg.fill { span_bytes } else { 0 },
    }
}

/// Describes the disk for the `ready` line.
pub fn describe(o: &mut ReadyLine, dev: &DiskDev, cfg: &DiskConfig) {
    o.disk = Some(dev.path.display().to_string());
    o.disk_dev_bytes = Some(dev.dev_bytes);
    o.disk_span_bytes = Some(dev.span_bytes());
    o.disk_bs = Some(dev.chunk_bytes() as u64);
    o.disk_pattern = Some(cfg.pattern.as_str().into());
    o.disk_rate_mbps = Some(cfg.rate_mbps);
    o.disk_direct = Some(dev.direct());
    o.disk_fill = Some(cfg.fill);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn cfg(bs_kib: u64) -> DiskConfig {
        DiskConfig {
            path: None,
            bs_kib,
            ..DiskConfig::default()
        }
    }

    fn temp_disk(bytes: u64) -> (tempdir::Dir, PathBuf) {
        let d = tempdir::Dir::new();
        let p = d.0.join("disk.img");
        let f = File::create(&p).unwrap();
        f.set_len(bytes).unwrap();
        (d, p)
    }

    /// A self-removing temporary directory (the guest crate keeps its dependencies few).
    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicU64, Ordering};
                static N: AtomicU64 = AtomicU64::new(0);
                let p = std::env::temp_dir().join(format!(
                    "pacer-guest-disk-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::SeqCst)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn fill_all(d: &mut DiskDev) {
        let batch = d.batch_chunks();
        let mut c = 0;
        while c < d.chunks() {
            let n = batch.min(d.chunks() - c);
            d.write_run(c, n).unwrap();
            c += n;
        }
    }

    /// Overwrites `len` bytes at `off` of the file behind `d` (not through `d`).
    fn poke(p: &Path, off: u64, data: &[u8]) {
        let f = OpenOptions::new().write(true).open(p).unwrap();
        f.write_all_at(data, off).unwrap();
        f.sync_all().unwrap();
    }

    fn read_block(p: &Path, block: u64) -> Vec<u8> {
        let f = File::open(p).unwrap();
        let mut v = vec![0u8; BLOCK];
        f.read_exact_at(&mut v, block * BLOCK as u64).unwrap();
        v
    }

    #[test]
    fn aligned_buffer() {
        for bytes in [1, 4096, 65536, 1 << 20] {
            let b = AlignedBuf::new(bytes);
            assert_eq!(b.bytes(BLOCK).as_ptr() as usize % BLOCK, 0);
            assert_eq!(b.blocks, bytes.div_ceil(BLOCK));
        }
    }

    #[test]
    fn span_and_chunks() {
        let (_d, p) = temp_disk((4 << 20) + 12288);
        let (d, w) = DiskDev::open(&p, &cfg(64), false).unwrap();
        assert!(w.is_empty());
        assert_eq!(d.dev_bytes, (4 << 20) + 12288);
        assert_eq!(d.chunk_bytes(), 65536);
        assert_eq!(d.chunks(), 64);
        assert_eq!(d.span_bytes(), 4 << 20);
        assert_eq!(d.batch_chunks(), 16);
        let c = DiskConfig {
            span_mib: Some(1),
            ..cfg(4)
        };
        let (d, w) = DiskDev::open(&p, &c, false).unwrap();
        assert!(w.is_empty());
        assert_eq!(d.chunks(), 256);
        let c = DiskConfig {
            span_mib: Some(64),
            ..cfg(4)
        };
        let (d, w) = DiskDev::open(&p, &c, false).unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(d.chunks(), 1027);
        // A device smaller than one write.
        let (_d2, small) = temp_disk(8192);
        assert!(DiskDev::open(&small, &cfg(64), false).is_err());
    }

    #[test]
    fn blocks_on_disk_carry_index_and_generation() {
        let (_d, p) = temp_disk(1 << 20);
        let (mut d, _) = DiskDev::open(&p, &cfg(16), false).unwrap();
        fill_all(&mut d);
        assert!(d.gens.iter().all(|&g| g == 1));
        d.write_run(5, 1).unwrap();
        assert_eq!(d.gens[5], 2);
        for (block, gen) in [(0u64, 1u64), (19, 1), (20, 2), (23, 2), (24, 1), (255, 1)] {
            let raw = read_block(&p, block);
            let mut page = Box::new([0u64; WORDS]);
            for (w, b) in page.iter_mut().zip(raw.chunks_exact(8)) {
                *w = u64::from_ne_bytes(b.try_into().unwrap());
            }
            assert_eq!(page[0], DISK_MAGIC);
            assert_eq!(page[1], block);
            assert_eq!(page[2], gen);
            assert_eq!(page::check_tagged(&page, DISK_MAGIC, block, gen), Check::Ok);
        }
        let r = d.verify();
        assert_eq!(r.blocks_checked, 256);
        assert_eq!(r.bad_blocks, 0);
        assert_eq!(r.blocks_unknown, 0);
    }

    #[test]
    fn verify_detects_lost_torn_and_corrupt_writes() {
        let (_d, p) = temp_disk(2 << 20);
        let (mut d, _) = DiskDev::open(&p, &cfg(64), false).unwrap();
        fill_all(&mut d);
        let r = d.verify();
        assert_eq!(
            (r.blocks_checked, r.bad_blocks, r.read_errors),
            (512, 0, 0),
            "{r:?}"
        );

        // Lost write: chunk 3 holds generation 1 on disk, 2 is expected.
        let old: Vec<u8> = (48..64).flat_map(|b| read_block(&p, b)).collect();
        d.write_run(3, 1).unwrap();
        poke(&p, 3 * 65536, &old);
        // Torn write: chunk 7's first half is new, the second half old.
        let old7: Vec<u8> = (120..128).flat_map(|b| read_block(&p, b)).collect();
        d.write_run(7, 1).unwrap();
        poke(&p, 7 * 65536 + 32768, &old7);
        // Corruption: one byte in block 200, zeroes over block 300.
        let mut b200 = read_block(&p, 200);
        b200[1234] ^= 0x40;
        poke(&p, 200 * 4096, &b200);
        poke(&p, 300 * 4096, &[0u8; 4096]);

        let r = d.verify();
        assert_eq!(r.blocks_checked, 512);
        assert_eq!(r.bad_blocks, 16 + 8 + 1 + 1, "{r:?}");
        assert_eq!(r.stale_blocks, 16 + 8, "{r:?}");
        assert_eq!(r.first_bad, vec![48, 49, 50, 51, 52, 53, 54, 55]);
        // Bad chunks were rewritten: the next sweep is clean.
        let r = d.verify();
        assert_eq!(r.bad_blocks, 0, "{r:?}");
    }

    #[test]
    fn unknown_chunks_are_skipped() {
        let (_d, p) = temp_disk(1 << 20);
        let (mut d, _) = DiskDev::open(&p, &cfg(64), false).unwrap();
        // Nothing written yet: nothing to check, nothing bad.
        let r = d.verify();
        assert_eq!(
            (r.blocks_checked, r.blocks_unknown, r.bad_blocks),
            (0, 256, 0)
        );
        d.write_run(2, 1).unwrap();
        let r = d.verify();
        assert_eq!(
            (r.blocks_checked, r.blocks_unknown, r.bad_blocks),
            (16, 240, 0)
        );
        // A second run over the same file starts from unknown again.
        let (mut d2, _) = DiskDev::open(&p, &cfg(64), false).unwrap();
        assert_eq!(d2.verify().blocks_checked, 0);
    }

    #[test]
    fn generations_skip_zero() {
        assert_eq!(DiskDev::next_gen(0), 1);
        assert_eq!(DiskDev::next_gen(1), 2);
        assert_eq!(DiskDev::next_gen(u32::MAX), 1);
    }

    #[test]
    fn direct_io_when_the_file_system_allows_it() {
        let (_d, p) = temp_disk(1 << 20);
        let (mut d, w) = DiskDev::open(&p, &cfg(4), true).unwrap();
        eprintln!("direct: {} {w:?}", d.direct());
        fill_all(&mut d);
        for c in [0, 17, 255] {
            d.write_run(c, 1).unwrap();
        }
        let r = d.verify();
        assert_eq!((r.blocks_checked, r.bad_blocks), (256, 0), "{r:?}");
    }

    #[test]
    fn chooser_patterns() {
        let mut rng = Rng(99);
        let c = cfg(64);
        let mut seq = Chooser::new(
            &DiskConfig {
                pattern: DiskPattern::Seq,
                ..c.clone()
            },
            5,
        );
        let got: Vec<usize> = (0..7).map(|_| seq.next(5, &mut rng)).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4, 0, 1]);
        let mut hot = Chooser::new(
            &DiskConfig {
                pattern: DiskPattern::Hot,
                hot_fraction: 0.1,
                ..c.clone()
            },
            1000,
        );
        let n = 20_000;
        let in_hot = (0..n).filter(|_| hot.next(1000, &mut rng) < 100).count();
        assert!((in_hot as f64 / n as f64 - 0.9).abs() < 0.02, "{in_hot}");
        let mut uni = Chooser::new(&c, 1000);
        let in_hot = (0..n).filter(|_| uni.next(1000, &mut rng) < 100).count();
        assert!((in_hot as f64 / n as f64 - 0.1).abs() < 0.02, "{in_hot}");
    }

    #[test]
    fn worker_without_fill_checks_only_what_it_wrote() {
        let (_d, p) = temp_disk(32 << 20);
        let c = DiskConfig {
            rate_mbps: 20.0,
            bs_kib: 64,
            pattern: DiskPattern::Seq,
            fill: false,
            ..DiskConfig::default()
        };
        let (dev, _) = DiskDev::open(&p, &c, false).unwrap();
        let h = spawn(dev, &c);
        assert_eq!(h.fill_total, 0);
        let t0 = Instant::now();
        while h.stats.written_bytes.load(Ordering::Relaxed) < 512 << 10 {
            assert!(t0.elapsed() < Duration::from_secs(20), "no writes");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(h.phase(c.rate_mbps), DiskPhase::Write);
        assert_eq!(h.stats.fill_bytes.load(Ordering::Relaxed), 0);
        let r = h.start_verify().unwrap().recv().unwrap();
        // Sequential writes from chunk 0: a prefix of the span is known.
        assert!(r.blocks_checked >= 128 && r.blocks_checked < 8192, "{r:?}");
        assert_eq!(r.blocks_checked + r.blocks_unknown, 8192);
        assert_eq!(r.bad_blocks, 0);
    }

    #[test]
    fn worker_fills_writes_and_verifies() {
        let (_d, p) = temp_disk(2 << 20);
        let c = DiskConfig {
            rate_mbps: 20.0,
            bs_kib: 16,
            pattern: DiskPattern::Hot,
            ..DiskConfig::default()
        };
        let (dev, _) = DiskDev::open(&p, &c, true).unwrap();
        let h = spawn(dev, &c);
        assert_eq!(h.fill_total, 2 << 20);
        let t0 = Instant::now();
        while h.stats.written_bytes.load(Ordering::Relaxed) < 256 << 10 {
            assert!(t0.elapsed() < Duration::from_secs(20), "no writes");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(h.stats.fill_done.load(Ordering::Relaxed));
        assert_eq!(h.stats.fill_bytes.load(Ordering::Relaxed), 2 << 20);
        assert_eq!(h.phase(c.rate_mbps), DiskPhase::Write);
        let r = h.start_verify().unwrap().recv().unwrap();
        assert_eq!(
            (r.blocks_checked, r.bad_blocks, r.blocks_unknown),
            (512, 0, 0),
            "{r:?}"
        );
        // Corrupt a block behind the worker's back; the next sweep sees it.
        // (The worker may rewrite that chunk in between, so retry a few times.)
        let mut seen = false;
        for _ in 0..20 {
            poke(&p, 511 * 4096, &[0xAAu8; 4096]);
            let r = h.start_verify().unwrap().recv().unwrap();
            if r.bad_blocks > 0 {
                seen = true;
                break;
            }
        }
        assert!(seen);
        assert!(h.stats.errors.load(Ordering::Relaxed) > 0);
        let _ = std::io::stdout().flush();
    }
}
