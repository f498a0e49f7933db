//! Pseudo-random numbers and the choice of which page or block to write next.

/// xorshift64* pseudo-random numbers.
pub struct Rng(pub u64);

impl Rng {
    pub fn seeded() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng(t ^ 0x2545_F491_4F6C_DD1D | 1)
    }

    #[inline]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, n).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next() as u128 * n as u128) >> 64) as usize
    }

    /// Uniform in [0, 1).
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Chooses pages to write: the first `hot` pages get `hot_share` of the
/// writes, the others the rest; uniform if there is no proper hot set.
pub struct Picker {
    pages: usize,
    hot: usize,
    hot_share: f64,
}

impl Picker {
    pub fn new(pages: usize, hot_fraction: f64, hot_share: f64) -> Picker {
        let hot = (hot_fraction * pages as f64).ceil() as usize;
        let skewed = hot_fraction > 0.0 && hot_share > 0.0 && hot > 0 && hot < pages;
        Picker {
            pages,
            hot: if skewed { hot } else { 0 },
            hot_share,
        }
    }

    #[inline]
    pub fn pick(&self, rng: &mut Rng) -> usize {
        if self.hot == 0 {
            rng.below(self.pages)
        } else if rng.unit() < self.hot_share {
            rng.below(self.hot)
        } else {
            self.hot + rng.below(self.pages - self.hot)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picker_respects_hot_share() {
        let p = Picker::new(1000, 0.1, 0.9);
        assert_eq!(p.hot, 100);
        let mut rng = Rng(12345);
        let n = 100_000;
        let hot = (0..n).filter(|_| p.pick(&mut rng) < 100).count();
        let share = hot as f64 / n as f64;
        assert!((share - 0.9).abs() < 0.01, "{share}");
        // Uniform when the hot fraction or share is 0.
        for (hf, hs) in [(0.0, 0.9), (0.1, 0.0), (1.0, 0.5)] {
            let p = Picker::new(1000, hf, hs);
            assert_eq!(p.hot, 0);
            let hot = (0..n).filter(|_| p.pick(&mut rng) < 100).count();
            let share = hot as f64 / n as f64;
            assert!((share - 0.1).abs() < 0.01, "{share}");
        }
        let mut rng = Rng(7);
        assert!((0..10_000).all(|_| p.pick(&mut rng) < 1000));
    }
}
