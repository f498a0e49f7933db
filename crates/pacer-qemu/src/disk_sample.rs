//! Where a running guest writes on its disks: random 4 KiB blocks of each image are
//! hashed, and hashed again after a window; the blocks that changed, counted per region
//! of the disk, give Pacer's per-region write model (`pacer_model::disk_regions`).
//!
//! Images are read through the host page cache, which QEMU's writes go through too
//! (Pacer starts disks with `cache.direct=off`). A raw image's byte `x` is the guest's
//! byte `x`; a qcow2 image is read where `qemu-img map` says each guest cluster lives
//! (clusters not yet allocated are not sampled: a write there lands elsewhere).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Deserialize;

use crate::image::{qemu_img, ImageError};

/// Bytes hashed per sampled block.
const BLOCK: u64 = 4096;

/// One guest range of an image and where its data lies in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Guest offset.
    pub start: u64,
    /// Length.
    pub length: u64,
    /// File offset of `start`.
    pub file_offset: u64,
}

/// How to read an image's guest blocks from its file.
#[derive(Debug, Clone)]
pub struct ImageLayout {
    /// The image file.
    pub path: PathBuf,
    /// Size the guest sees.
    pub virtual_size: u64,
    /// Guest ranges with data in this file, ascending.
    pub extents: Vec<Extent>,
}

#[derive(Deserialize)]
struct MapEntry {
    start: u64,
    length: u64,
    #[serde(default)]
    data: bool,
    #[serde(default)]
    depth: u64,
    #[serde(default)]
    offset: Option<u64>,
}

/// The layout of an image in use by QEMU (`raw`: identity; `qcow2`: `qemu-img map -U`).
pub async fn layout(path: &Path, format: &str, virtual_size: u64) -> Result<ImageLayout, ImageError> {
    if format == "raw" {
        return Ok(ImageLayout {
            path: path.to_path_buf(),
            virtual_size,
            extents: vec![Extent { start: 0, length: virtual_size, file_offset: 0 }],
        });
    }
    let args: [&std::ffi::OsStr; 6] = [
        "map".as_ref(),
        "-U".as_ref(),
        "--output=json".as_ref(),
        "-f".as_ref(),
        format.as_ref(),
        path.as_os_str(),
    ];
    let out = qemu_img(&args, format!("map {}", path.display())).await?;
    let entries: Vec<MapEntry> =
        serde_json::from_slice(&out).map_err(|e| ImageError::Parse(e.to_string()))?;
    let extents = entries
        .into_iter()
        .filter(|e| e.data && e.depth == 0)
        .filter_map(|e| e.offset.map(|o| Extent { start: e.start, length: e.length, file_offset: o }))
        .collect();
    Ok(ImageLayout { path: path.to_path_buf(), virtual_size, extents })
}

impl ImageLayout {
    /// File offset of guest byte `x`, if it has data in this file.
    fn file_offset(&self, x: u64) -> Option<u64> {
        let i = self.extents.partition_point(|e| e.start + e.length <= x);
        let e = self.extents.get(i)?;
        (e.start <= x && x + BLOCK <= e.start + e.length).then(|| e.file_offset + (x - e.start))
    }
}

/// Per region of every disk, end to end: `(region bytes, blocks sampled, blocks changed)`
/// over `window`, from up to `samples` blocks per disk in `regions` regions per disk.
/// Blocks for `window`.
pub fn sample_writes(
    disks: &[ImageLayout],
    regions: usize,
    samples: usize,
    window: Duration,
) -> io::Result<Vec<(f64, usize, usize)>> {
    let t0 = Instant::now();
    let first = WriteSample::take(disks, regions, samples)?;
    std::thread::sleep(window.saturating_sub(t0.elapsed()));
    first.changes()
}

/// The first pass of a write sample: which blocks were picked and what they held.
pub struct WriteSample<'a> {
    disks: &'a [ImageLayout],
    files: Vec<File>,
    regions: usize,
    /// (disk, guest offset, file offset, hash)
    picks: Vec<(usize, u64, u64, u64)>,
}

impl<'a> WriteSample<'a> {
    /// Picks up to `samples` random blocks per disk and hashes them.
    pub fn take(disks: &'a [ImageLayout], regions: usize, samples: usize) -> io::Result<Self> {
        let regions = regions.max(1);
        let mut rng = rand::thread_rng();
        let mut picks = Vec::new();
        for (d, disk) in disks.iter().enumerate() {
            let blocks = disk.virtual_size / BLOCK;
            let mut taken = 0;
            for _ in 0..samples * 4 {
                if taken >= samples || blocks == 0 {
                    break;
                }
                let x = rng.gen_range(0..blocks) * BLOCK;
                if let Some(off) = disk.file_offset(x) {
                    picks.push((d, x, off, 0u64));
                    taken += 1;
                }
            }
        }
        let files: Vec<File> = disks.iter().map(|d| File::open(&d.path)).collect::<io::Result<_>>()?;
        let mut s = WriteSample { disks, files, regions, picks };
        let mut buf = vec![0u8; BLOCK as usize];
        for i in 0..s.picks.len() {
            let (d, _, off, _) = s.picks[i];
            s.picks[i].3 = s.hash(d, off, &mut buf)?;
        }
        Ok(s)
    }

    fn hash(&self, d: usize, off: u64, buf: &mut [u8]) -> io::Result<u64> {
        self.files[d].read_exact_at(buf, off)?;
        Ok(xxhash_rust::xxh3::xxh3_64(buf))
    }

    /// Hashes the picked blocks again: per region of every disk, end to end,
    /// `(region bytes, blocks sampled, blocks changed)` since `take`.
    pub fn changes(&self) -> io::Result<Vec<(f64, usize, usize)>> {
        let regions = self.regions;
        let mut buf = vec![0u8; BLOCK as usize];
        let mut out = Vec::with_capacity(self.disks.len() * regions);
        for (d, disk) in self.disks.iter().enumerate() {
            let size = (disk.virtual_size as f64 / regions as f64).max(1.0);
            let mut per = vec![(size, 0usize, 0usize); regions];
            for p in self.picks.iter().filter(|p| p.0 == d) {
                let r = ((p.1 as f64 / size) as usize).min(regions - 1);
                per[r].1 += 1;
                if self.hash(p.0, p.2, &mut buf)? != p.3 {
                    per[r].2 += 1;
                }
            }
            out.extend(per);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_written_region_of_a_raw_image() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        let size = 16u64 << 20;
        std::fs::write(&path, vec![1u8; size as usize]).unwrap();
        let layout = ImageLayout {
            path: path.clone(),
            virtual_size: size,
            extents: vec![Extent { start: 0, length: size, file_offset: 0 }],
        };
        // Rewrite the last quarter between the two passes.
        let first = WriteSample::take(std::slice::from_ref(&layout), 4, 2000).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&vec![2u8; (size / 4) as usize], size * 3 / 4).unwrap();
        let r = first.changes().unwrap();
        assert_eq!(r.len(), 4);
        assert!(r.iter().all(|x| x.1 > 300), "{r:?}");
        assert_eq!((r[0].2, r[1].2, r[2].2), (0, 0, 0), "{r:?}");
        assert_eq!(r[3].2, r[3].1, "{r:?}");
    }

    #[test]
    fn qcow2_layout_maps_guest_offsets() {
        let l = ImageLayout {
            path: PathBuf::new(),
            virtual_size: 1 << 20,
            extents: vec![
                Extent { start: 0, length: 65536, file_offset: 196608 },
                Extent { start: 131072, length: 65536, file_offset: 262144 },
            ],
        };
        assert_eq!(l.file_offset(4096), Some(196608 + 4096));
        assert_eq!(l.file_offset(65536), None);
        assert_eq!(l.file_offset(131072 + 8192), Some(262144 + 8192));
        assert_eq!(l.file_offset(65536 * 3), None);
    }
}
