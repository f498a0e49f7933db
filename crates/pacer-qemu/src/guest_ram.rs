//! Reading a running guest's RAM from the QEMU process on this host, to measure
//! it exactly: which pages are zero, and how many distinct pages the guest dirties
//! in a window of time.
//!
//! QEMU's own `calc-dirty-rate` samples 512 pages per GiB by default (at most 4096)
//! and reports whole MiB/s, too coarse to tell a guest's working set from its write
//! rate; its `dirty-bitmap` mode reads zero under TCG. Reading the guest RAM mapping
//! through `/proc/PID/mem` (the agent runs beside QEMU, as the same user) costs a few
//! milliseconds per thousand pages and does not disturb a migration in progress.
//!
//! The mapping is found by size in `/proc/PID/maps` and must then be confirmed
//! against `pmemsave` (see [`GuestRam::confirm_with`]): nothing here assumes QEMU's
//! memory layout without checking it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;
use thiserror::Error;

/// Guest page size the measurements work in.
pub const PAGE: u64 = 4096;

/// Why guest RAM cannot be read directly.
#[derive(Debug, Error)]
pub enum RamError {
    /// `/proc/PID/maps` or `/proc/PID/mem` could not be opened.
    #[error("cannot read QEMU process {pid} memory ({what}): {source}")]
    Proc {
        /// QEMU pid.
        pid: i32,
        /// Which file.
        what: &'static str,
        /// Underlying error.
        source: io::Error,
    },
    /// No mapping, or more than one, has the guest RAM's size.
    #[error("QEMU process {pid}: {found} writable mappings of {size} bytes, need exactly one")]
    NotFound {
        /// QEMU pid.
        pid: i32,
        /// Guest RAM size.
        size: u64,
        /// How many matched.
        found: usize,
    },
}

/// One candidate (or confirmed) guest RAM mapping in a QEMU process.
#[derive(Debug)]
pub struct GuestRam {
    mem: File,
    base: u64,
    size: u64,
    pid: i32,
}

/// Guest-physical address of byte `offset` of RAM on a q35/pc machine: RAM up to 2 GiB
/// (all of it when below 2.75 GiB) sits at address 0, the rest above 4 GiB.
pub fn ram_offset_to_gpa(offset: u64, ram_bytes: u64) -> u64 {
    let low = if ram_bytes >= 0xb000_0000 {
        0x8000_0000
    } else {
        ram_bytes
    };
    if offset < low {
        offset
    } else {
        (4u64 << 30) + (offset - low)
    }
}

/// Whether pages read through a candidate mapping (`ours`, from [`GuestRam::nonzero_pages`])
/// are the guest's: at least 3 must equal what QEMU returned for the same addresses
/// (`theirs`), allowing one the guest may have rewritten in between.
pub fn confirms(ours: &[(u64, Vec<u8>)], theirs: &[Vec<u8>]) -> bool {
    let same = ours.iter().zip(theirs).filter(|((_, a), b)| a == *b).count();
    same >= 3 && ours.len() == theirs.len() && same + 1 >= ours.len()
}

impl GuestRam {
    /// The writable, non-executable mappings of exactly `ram_bytes` in process `pid`
    /// (TCG's code buffer is executable; guest RAM is not).
    pub fn candidates(pid: i32, ram_bytes: u64) -> Result<Vec<GuestRam>, RamError> {
        let maps_path = PathBuf::from(format!("/proc/{pid}/maps"));
        let maps = std::fs::read_to_string(&maps_path).map_err(|source| RamError::Proc {
            pid,
            what: "maps",
            source,
        })?;
        let mut out = Vec::new();
        for line in maps.lines() {
            let mut f = line.split_whitespace();
            let (Some(range), Some(perms)) = (f.next(), f.next()) else {
                continue;
            };
            let Some((a, b)) = range.split_once('-') else {
                continue;
            };
            let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
                continue;
            };
            if b - a != ram_bytes || !perms.starts_with("rw") || perms.as_bytes().get(2) == Some(&b'x')
            {
                continue;
            }
            let mem = File::open(format!("/proc/{pid}/mem")).map_err(|source| RamError::Proc {
                pid,
                what: "mem",
                source,
            })?;
            out.push(GuestRam {
                mem,
                base: a,
                size: ram_bytes,
                pid,
            });
        }
        Ok(out)
    }

    /// Size of guest RAM in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The QEMU process this reads from.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Number of guest pages.
    pub fn pages(&self) -> u64 {
        self.size / PAGE
    }

    /// Reads `buf.len()` bytes at RAM offset `offset`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if offset + buf.len() as u64 > self.size {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "past the end of guest RAM"));
        }
        self.mem.read_exact_at(buf, self.base + offset)
    }

    /// Up to `n` random non-zero pages as read through this mapping: `(RAM offset, bytes)`.
    /// To confirm the mapping, read the same pages with `pmemsave` (at
    /// [`ram_offset_to_gpa`]) and pass both to [`confirms`].
    pub fn nonzero_pages(&self, n: usize) -> io::Result<Vec<(u64, Vec<u8>)>> {
        let mut rng = rand::thread_rng();
        let mut out = Vec::with_capacity(n);
        for _ in 0..64 * n.max(1) {
            if out.len() >= n {
                break;
            }
            let mut buf = vec![0u8; PAGE as usize];
            let off = rng.gen_range(0..self.pages()) * PAGE;
            self.read_at(off, &mut buf)?;
            if !is_zero(&buf) {
                out.push((off, buf));
            }
        }
        Ok(out)
    }

    /// Fraction of zero pages, over every page or over a random `max_pages` of them.
    pub fn zero_fraction(&self, max_pages: u64) -> io::Result<f64> {
        let pages = self.pages();
        if pages == 0 {
            return Ok(0.0);
        }
        let mut zero = 0u64;
        if pages <= max_pages {
            let chunk = 256 * PAGE as usize;
            let mut buf = vec![0u8; chunk];
            let mut off = 0;
            while off < self.size {
                let n = chunk.min((self.size - off) as usize);
                self.read_at(off, &mut buf[..n])?;
                zero += buf[..n].chunks(PAGE as usize).filter(|p| is_zero(p)).count() as u64;
                off += n as u64;
            }
            Ok(zero as f64 / pages as f64)
        } else {
            let sample = sample_pages(pages, max_pages as usize);
            let mut buf = vec![0u8; PAGE as usize];
            for p in &sample {
                self.read_at(p * PAGE, &mut buf)?;
                zero += is_zero(&buf) as u64;
            }
            Ok(zero as f64 / sample.len() as f64)
        }
    }

    /// Content hashes of the non-zero pages whose hash has its low `sample_bits` bits
    /// zero: a sample by content, so every copy of a content is in it or none is, and
    /// counts of copies in the sample scale by `2^sample_bits`.
    pub fn content_hashes(&self, sample_bits: u32) -> io::Result<Vec<u64>> {
        let mask = (1u64 << sample_bits.min(63)) - 1;
        let chunk = 256 * PAGE as usize;
        let mut buf = vec![0u8; chunk];
        let mut out = Vec::new();
        let mut off = 0;
        while off < self.size {
            let n = chunk.min((self.size - off) as usize);
            self.read_at(off, &mut buf[..n])?;
            for page in buf[..n].chunks(PAGE as usize) {
                if is_zero(page) {
                    continue;
                }
                let h = xxhash_rust::xxh3::xxh3_64(page);
                if h & mask == 0 {
                    out.push(h);
                }
            }
            off += n as u64;
        }
        Ok(out)
    }

    /// Hashes of the given pages.
    pub fn hashes(&self, pages: &[u64]) -> io::Result<Vec<u64>> {
        let mut buf = vec![0u8; PAGE as usize];
        pages
            .iter()
            .map(|p| {
                self.read_at(p * PAGE, &mut buf)?;
                Ok(xxhash_rust::xxh3::xxh3_64(&buf))
            })
            .collect()
    }

    /// Points on the guest's dirtying curve: for each window in `windows_s` (ascending), the
    /// distinct bytes it changed since the start, estimated from `sample` random pages hashed
    /// at the start and re-hashed at the end of each window. Blocks for the longest window.
    pub fn dirty_curve(&self, sample: usize, windows_s: &[f64]) -> io::Result<Vec<(f64, f64)>> {
        let pages = sample_pages(self.pages(), sample);
        let t0 = Instant::now();
        let first = self.hashes(&pages)?;
        let mut out = Vec::with_capacity(windows_s.len());
        for w in windows_s {
            let wait = Duration::from_secs_f64(w.max(0.0)).saturating_sub(t0.elapsed());
            std::thread::sleep(wait);
            // Pages are read in the same order each time, so every page's own window is the
            // time between the starts of the two passes.
            let window = t0.elapsed().as_secs_f64();
            let now = self.hashes(&pages)?;
            let changed = first.iter().zip(&now).filter(|(a, b)| a != b).count();
            let bytes = changed as f64 / pages.len().max(1) as f64 * self.size as f64;
            out.push((window, bytes));
        }
        Ok(out)
    }
}

/// A dirtying curve that follows the guest as it goes: a fixed sample of pages hashed
/// at every step (say every 0.5 s), each new snapshot compared with older ones, so a
/// guest that starts, stops or changes its writing shows at the next step rather than
/// at the end of a whole measurement.
#[derive(Debug)]
pub struct RollingCurve {
    pages: Vec<u64>,
    /// Snapshots, oldest first: when each pass began, and its hashes.
    snaps: std::collections::VecDeque<(Instant, Vec<u64>)>,
    windows_s: Vec<f64>,
}

impl RollingCurve {
    /// Follows `sample` random pages of a guest of `pages` pages, giving points at about
    /// the windows in `windows_s` (ascending) once the snapshots reach back that far.
    pub fn new(pages: u64, sample: usize, windows_s: &[f64]) -> RollingCurve {
        RollingCurve {
            pages: sample_pages(pages, sample),
            snaps: std::collections::VecDeque::new(),
            windows_s: windows_s.to_vec(),
        }
    }

    /// Takes a snapshot of `ram` now; the curve against the older snapshots.
    pub fn step(&mut self, ram: &GuestRam) -> io::Result<Vec<(f64, f64)>> {
        let at = Instant::now();
        let hashes = ram.hashes(&self.pages)?;
        Ok(self.push(at, hashes, ram.size()))
    }

    /// Adds a snapshot made at `at` of a guest of `size` bytes; for each window, the
    /// distinct bytes changed since the snapshot about that far back.
    pub fn push(&mut self, at: Instant, hashes: Vec<u64>, size: u64) -> Vec<(f64, f64)> {
        let longest = self.windows_s.last().copied().unwrap_or(0.0);
        while self.snaps.front().is_some_and(|(t, _)| at.duration_since(*t).as_secs_f64() > longest * 1.3) {
            self.snaps.pop_front();
        }
        let n = hashes.len().max(1) as f64;
        let mut out = Vec::new();
        for w in &self.windows_s {
            // The snapshot whose age is nearest the window (within 30% of it).
            let best = self
                .snaps
                .iter()
                .map(|(t, h)| (at.duration_since(*t).as_secs_f64(), h))
                .filter(|(age, _)| (age / w - 1.0).abs() <= 0.3)
                .min_by(|a, b| (a.0 / w - 1.0).abs().total_cmp(&(b.0 / w - 1.0).abs()));
            if let Some((age, old)) = best {
                let changed = old.iter().zip(&hashes).filter(|(a, b)| a != b).count();
                if out.last().is_none_or(|l: &(f64, f64)| age > l.0) {
                    out.push((age, changed as f64 / n * size as f64));
                }
            }
        }
        self.snaps.push_back((at, hashes));
        out
    }
}

/// `n` distinct random page numbers below `pages` (all of them if fewer), ascending.
fn sample_pages(pages: u64, n: usize) -> Vec<u64> {
    let mut rng = rand::thread_rng();
    let mut v: Vec<u64> = if (n as u64) >= pages {
        (0..pages).collect()
    } else if (n as u64) * 4 >= pages {
        let mut all: Vec<u64> = (0..pages).collect();
        all.shuffle(&mut rng);
        all.truncate(n);
        all
    } else {
        let mut set = std::collections::HashSet::with_capacity(n);
        while set.len() < n {
            set.insert(rng.gen_range(0..pages));
        }
        set.into_iter().collect()
    };
    v.sort_unstable();
    v
}

fn is_zero(page: &[u8]) -> bool {
    let (pre, words, post) = unsafe { page.align_to::<u64>() };
    pre.iter().all(|b| *b == 0) && words.iter().all(|w| *w == 0) && post.iter().all(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpa_layout() {
        let gib = 1u64 << 30;
        assert_eq!(ram_offset_to_gpa(0, gib), 0);
        assert_eq!(ram_offset_to_gpa(gib - 4096, gib), gib - 4096);
        assert_eq!(ram_offset_to_gpa(2 * gib, 4 * gib), 4 * gib);
        assert_eq!(ram_offset_to_gpa(3 * gib, 4 * gib), 5 * gib);
    }

    #[test]
    fn samples_are_distinct_sorted_and_bounded() {
        for (pages, n) in [(10, 20), (100, 50), (1 << 18, 1000)] {
            let s = sample_pages(pages, n);
            assert_eq!(s.len(), n.min(pages as usize));
            assert!(s.windows(2).all(|w| w[0] < w[1]));
            assert!(s.iter().all(|p| *p < pages));
        }
    }

    #[test]
    fn a_rolling_curve_compares_each_snapshot_with_older_ones() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut c = RollingCurve::new(1000, 4, &[0.5, 1.0, 2.0]);
        assert_eq!(c.pages.len(), 4);
        assert!(c.push(at(0.0), vec![1, 2, 3, 4], 4096).is_empty());
        // Half a second later one page of four changed.
        assert_eq!(c.push(at(0.5), vec![1, 2, 3, 5], 4096), vec![(0.5, 1024.0)]);
        // Another half second: two changed since the start, one since the last pass.
        assert_eq!(c.push(at(1.0), vec![1, 2, 6, 5], 4096), vec![(0.5, 1024.0), (1.0, 2048.0)]);
        // Snapshots older than the longest window (and 30%) go.
        c.push(at(3.0), vec![1, 2, 6, 5], 4096);
        assert!(c.snaps.len() <= 3, "{:?}", c.snaps.len());
        // The writer stops: the short windows read nothing at once.
        let p = c.push(at(3.5), vec![1, 2, 6, 5], 4096);
        assert_eq!(p[0], (0.5, 0.0));
    }

    #[test]
    fn zero_check() {
        let mut p = vec![0u8; 4096];
        assert!(is_zero(&p));
        p[4095] = 1;
        assert!(!is_zero(&p));
        assert!(!is_zero(&p[1..]));
    }

    /// Reads this test process's own buffer through /proc/self/mem, as the agent reads QEMU's.
    #[test]
    fn reads_and_measures_a_mapping_of_this_process() {
        let pages = 1024usize;
        let size = pages * PAGE as usize;
        let layout = std::alloc::Layout::from_size_align(size, PAGE as usize).unwrap();
        // SAFETY: size is non-zero; the buffer is freed below.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        // SAFETY: ptr points at `size` initialised bytes owned here.
        let buf = unsafe { std::slice::from_raw_parts_mut(ptr, size) };
        for p in 0..pages / 4 {
            buf[p * PAGE as usize] = 1;
        }
        let ram = GuestRam {
            mem: File::open("/proc/self/mem").unwrap(),
            base: ptr as u64,
            size: size as u64,
            pid: std::process::id() as i32,
        };
        assert!((ram.zero_fraction(u64::MAX).unwrap() - 0.75).abs() < 1e-9);
        let sampled = ram.zero_fraction(512).unwrap();
        assert!((sampled - 0.75).abs() < 0.1, "{sampled}");
        // A quarter of the pages are non-zero, all with the same content.
        let contents = ram.content_hashes(0).unwrap();
        assert_eq!(contents.len(), pages / 4);
        assert!(contents.iter().all(|h| *h == contents[0]));
        let sampled = ram.content_hashes(8).unwrap().len();
        assert!(sampled == 0 || sampled == pages / 4, "a content is sampled with all its copies: {sampled}");
        let all: Vec<u64> = (0..pages as u64).collect();
        let before = ram.hashes(&all).unwrap();
        for p in 0..100 {
            buf[p * PAGE as usize + 7] ^= 0xff;
        }
        let after = ram.hashes(&all).unwrap();
        assert_eq!(before.iter().zip(&after).filter(|(a, b)| a != b).count(), 100);
        let mut page = vec![0u8; PAGE as usize];
        assert!(ram.read_at(size as u64 - 1, &mut page).is_err());
        // The same pages read another way confirm the mapping; other pages do not.
        let ours = ram.nonzero_pages(5).unwrap();
        assert_eq!(ours.len(), 5);
        let theirs: Vec<Vec<u8>> = ours
            .iter()
            .map(|(off, _)| buf[*off as usize..*off as usize + 4096].to_vec())
            .collect();
        assert!(confirms(&ours, &theirs));
        let mut one_off = theirs.clone();
        one_off[0][1] ^= 1;
        assert!(confirms(&ours, &one_off));
        assert!(!confirms(&ours, &vec![vec![9u8; 4096]; 5]));
        assert!(!confirms(&ours[..2], &theirs[..2]));
        // SAFETY: allocated above with this layout.
        unsafe { std::alloc::dealloc(ptr, layout) };
    }
}
