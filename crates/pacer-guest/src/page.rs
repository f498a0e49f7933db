//! Page content: every 4 KiB page holds a pure function of (page index,
//! generation). The first words are a header (magic, index, generation,
//! check word); the rest are cheap words derived from a per-page seed.

/// Bytes per page.
pub const PAGE_SIZE: usize = 4096;
/// 64-bit words per page.
pub const WORDS: usize = PAGE_SIZE / 8;
/// Header magic ("PACERPG1" in ASCII).
pub const MAGIC: u64 = 0x5041_4345_5250_4731;
/// Header words: magic, index, generation, check.
const HDR: usize = 4;
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// One page of words.
pub type Page = [u64; WORDS];

/// splitmix64 finalizer.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Per-page seed, a hash of (magic, index, generation).
#[inline]
fn seed(magic: u64, index: u64, gen: u64) -> u64 {
    mix(index.wrapping_mul(GOLDEN) ^ gen.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ magic)
}

/// Header check word.
#[inline]
fn check_word(seed: u64) -> u64 {
    mix(seed ^ 0xC0FF_EE00_DEAD_BEEF)
}

/// Body word `i` of a page with the given seed.
#[inline(always)]
fn body_word(seed: u64, i: usize) -> u64 {
    seed ^ (i as u64).wrapping_mul(GOLDEN)
}

/// Writes the content of page `index` at generation `gen` into `page`.
#[cfg(test)]
pub fn fill(page: &mut Page, index: u64, gen: u64) {
    fill_tagged(page, MAGIC, index, gen)
}

/// [`fill`] with another header magic (the disk blocks use their own).
pub fn fill_tagged(page: &mut Page, magic: u64, index: u64, gen: u64) {
    let s = seed(magic, index, gen);
    page[0] = magic;
    page[1] = index;
    page[2] = gen;
    page[3] = check_word(s);
    for (i, w) in page.iter_mut().enumerate().skip(HDR) {
        *w = body_word(s, i);
    }
}

/// Result of checking one page against its expected generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Content matches (index, expected generation).
    Ok,
    /// The page is a complete, consistent copy of an older generation
    /// (a write was lost, e.g. by migration).
    Stale { found_gen: u64 },
    /// The page is a consistent copy of a newer generation than expected
    /// (should never happen).
    Future { found_gen: u64 },
    /// Zeroed, torn, misplaced or otherwise corrupted.
    Corrupt,
}

/// True if `page` holds exactly the content of (index, gen).
#[cfg(test)]
pub fn matches(page: &Page, index: u64, gen: u64) -> bool {
    matches_tagged(page, MAGIC, index, gen)
}

/// [`matches`] with another header magic.
#[inline]
pub fn matches_tagged(page: &Page, magic: u64, index: u64, gen: u64) -> bool {
    let s = seed(magic, index, gen);
    let mut diff =
        (page[0] ^ magic) | (page[1] ^ index) | (page[2] ^ gen) | (page[3] ^ check_word(s));
    for (i, w) in page.iter().enumerate().skip(HDR) {
        diff |= *w ^ body_word(s, i);
    }
    diff == 0
}

/// Checks `page` (page number `index`) against generation `expected`.
/// The fast path is one pass; classification only runs on a mismatch.
#[cfg(test)]
pub fn check(page: &Page, index: u64, expected: u64) -> Check {
    check_tagged(page, MAGIC, index, expected)
}

/// [`check`] with another header magic.
pub fn check_tagged(page: &Page, magic: u64, index: u64, expected: u64) -> Check {
    if matches_tagged(page, magic, index, expected) {
        return Check::Ok;
    }
    if page[0] == magic
        && page[1] == index
        && page[2] != expected
        && matches_tagged(page, magic, index, page[2])
    {
        let found_gen = page[2];
        return if found_gen < expected {
            Check::Stale { found_gen }
        } else {
            Check::Future { found_gen }
        };
    }
    Check::Corrupt
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(index: u64, gen: u64) -> Box<Page> {
        let mut p = Box::new([0u64; WORDS]);
        fill(&mut p, index, gen);
        p
    }

    #[test]
    fn round_trip() {
        for index in [0u64, 1, 7, 65_535, 1 << 40] {
            for gen in [0u64, 1, 2, 1000, u32::MAX as u64] {
                let p = make(index, gen);
                assert!(matches(&p, index, gen));
                assert_eq!(check(&p, index, gen), Check::Ok);
            }
        }
    }

    #[test]
    fn content_depends_on_index_and_gen() {
        let a = make(3, 5);
        let b = make(4, 5);
        let c = make(3, 6);
        assert_ne!(a[10..], b[10..]);
        assert_ne!(a[10..], c[10..]);
        assert!(!matches(&a, 4, 5));
        assert!(!matches(&a, 3, 6));
    }

    #[test]
    fn corrupted_byte_detected_everywhere() {
        let good = make(42, 3);
        // Flip one bit in every byte position, one at a time.
        for byte in 0..PAGE_SIZE {
            let mut p = good.clone();
            p[byte / 8] ^= 1u64 << ((byte % 8) * 8 + (byte % 7));
            assert_eq!(check(&p, 42, 3), Check::Corrupt, "byte {byte}");
        }
    }

    #[test]
    fn stale_generation_detected() {
        let p = make(9, 4);
        assert_eq!(check(&p, 9, 5), Check::Stale { found_gen: 4 });
        assert_eq!(check(&p, 9, 3), Check::Future { found_gen: 4 });
    }

    #[test]
    fn zeroed_page_detected() {
        let p = Box::new([0u64; WORDS]);
        assert_eq!(check(&p, 0, 0), Check::Corrupt);
        assert_eq!(check(&p, 5, 1), Check::Corrupt);
    }

    #[test]
    fn torn_page_detected() {
        // First half new generation, second half old: a torn copy.
        let old = make(11, 1);
        let new = make(11, 2);
        let mut p = new.clone();
        p[WORDS / 2..].copy_from_slice(&old[WORDS / 2..]);
        assert_eq!(check(&p, 11, 2), Check::Corrupt);
        let mut q = old.clone();
        q[WORDS / 2..].copy_from_slice(&new[WORDS / 2..]);
        assert_eq!(check(&q, 11, 2), Check::Corrupt);
    }

    #[test]
    fn magic_is_part_of_the_content() {
        const OTHER: u64 = 0x5041_4345_5244_4B31;
        let mut p = Box::new([0u64; WORDS]);
        fill_tagged(&mut p, OTHER, 5, 2);
        assert_eq!(check_tagged(&p, OTHER, 5, 2), Check::Ok);
        assert_eq!(check_tagged(&p, OTHER, 5, 3), Check::Stale { found_gen: 2 });
        assert_eq!(check(&p, 5, 2), Check::Corrupt);
        let q = make(5, 2);
        assert_eq!(check_tagged(&q, OTHER, 5, 2), Check::Corrupt);
    }

    #[test]
    fn misplaced_page_detected() {
        let p = make(12, 1);
        assert_eq!(check(&p, 13, 1), Check::Corrupt);
    }
}
