//! Pacer's per-region disk write model: which parts of a disk the guest will have
//! written again by the time a sequential bulk copy ends.
//!
//! A mirror copies the disk front to back. A block written before the copy reaches it
//! costs nothing extra; one written after it was copied must be sent again. Writes are
//! rarely uniform (logs at one end, a database's hot table), so the disk is cut into
//! regions, each with its own rate `λ` at which any one block in it is written (from
//! sampling blocks of the image: a fraction `f` changed in a window `w` gives
//! `λ = -ln(1 - f) / w`). A block at position `x`, copied at `t_x`, is dirty again at the
//! end `T` with probability `1 - e^(-λ (T - t_x))`; integrating over every region gives the
//! bytes to re-send.

use serde::{Deserialize, Serialize};

/// Per-region write rates over a disk (or several disks, end to end, in copy order).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RegionWrites {
    /// Size of each region, bytes.
    pub region_bytes: Vec<f64>,
    /// Rate at which any one block of the region is written, 1/s.
    pub rate: Vec<f64>,
}

/// Sampled fractions at or above this are taken as this (all blocks written: the rate is
/// at least what this says).
const MAX_FRACTION: f64 = 0.99;

impl RegionWrites {
    /// The model from sampled blocks: per region its size, how many blocks were sampled and
    /// how many of those changed within `window_s`. Regions with no sample get the disk's
    /// overall rate.
    pub fn from_samples(regions: &[(f64, usize, usize)], window_s: f64) -> Option<RegionWrites> {
        if !(window_s.is_finite() && window_s > 0.0) || regions.is_empty() {
            return None;
        }
        let lam = |sampled: usize, changed: usize| {
            let f = (changed as f64 / sampled as f64).min(MAX_FRACTION);
            -(-f).ln_1p() / window_s
        };
        let (s, c) = regions
            .iter()
            .fold((0, 0), |(s, c), r| (s + r.1, c + r.2.min(r.1)));
        let overall = if s > 0 { lam(s, c) } else { 0.0 };
        Some(RegionWrites {
            region_bytes: regions.iter().map(|r| r.0.max(0.0)).collect(),
            rate: regions
                .iter()
                .map(|r| if r.1 > 0 { lam(r.1, r.2.min(r.1)) } else { overall })
                .collect(),
        })
    }

    /// Total size, bytes.
    pub fn total_bytes(&self) -> f64 {
        self.region_bytes.iter().sum()
    }

    /// Guest write throughput the model implies (bytes/s, counting each block write once).
    pub fn write_rate_bps(&self) -> f64 {
        self.region_bytes.iter().zip(&self.rate).map(|(b, l)| b * l).sum()
    }

    /// Bytes written again, from now until the end, behind a copy that has reached position
    /// `done` (bytes from the start) and goes on at `speed_bps` to the end.
    pub fn redirtied(&self, done: f64, speed_bps: f64) -> f64 {
        let total = self.total_bytes();
        if speed_bps.is_nan() || speed_bps <= 0.0 || total <= 0.0 {
            return 0.0;
        }
        let done = done.clamp(0.0, total);
        let end = (total - done) / speed_bps;
        let mut a = 0.0;
        let mut out = 0.0;
        for (len, lam) in self.region_bytes.iter().zip(&self.rate) {
            let b = a + len;
            let lam = lam.max(0.0);
            // Behind the copy: written any time until the end.
            let behind = (b.min(done) - a).max(0.0);
            out += behind * -(-lam * end).exp_m1();
            // Ahead: copied at t(x) = (x - done) / v, written in the end - t(x) left.
            let (x1, x2) = (a.max(done), b.max(done));
            if x2 > x1 {
                let s1 = end - (x1 - done) / speed_bps;
                let s2 = end - (x2 - done) / speed_bps;
                let clean = if lam > 0.0 {
                    speed_bps / lam * (-lam * s2).exp() * -(-lam * (s1 - s2)).exp_m1()
                } else {
                    x2 - x1
                };
                out += (x2 - x1) - clean;
            }
            a = b;
        }
        out.max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MB: f64 = 1e6;

    fn uniform(total: f64, lam: f64, n: usize) -> RegionWrites {
        RegionWrites {
            region_bytes: vec![total / n as f64; n],
            rate: vec![lam; n],
        }
    }

    #[test]
    fn uniform_writes_closed_form() {
        // 1 GB written uniformly at 10 MB/s, copied at 25 MB/s from the start: each block is
        // dirty with 1 - e^(-λ(T - t)); the average over a linear sweep is 1 - (1 - e^-λT)/λT.
        let total = 1000.0 * MB;
        let lam = 10.0 * MB / total;
        let m = uniform(total, lam, 64);
        let t_end = total / (25.0 * MB);
        let k = lam * t_end;
        let want = total * (1.0 - (1.0 - (-k).exp()) / k);
        let got = m.redirtied(0.0, 25.0 * MB);
        assert!((got / want - 1.0).abs() < 1e-6, "{got} vs {want}");
        // Far less than the rate x time the simple model charges.
        assert!(got < 0.5 * 10.0 * MB * t_end);
        assert!((m.write_rate_bps() / (10.0 * MB) - 1.0).abs() < 1e-9);
        // All copied: everything may be written until the (immediate) end: nothing.
        assert_eq!(m.redirtied(total, 25.0 * MB), 0.0);
        assert_eq!(m.redirtied(0.0, 0.0), 0.0);
    }

    #[test]
    fn where_the_writes_go_matters() {
        // The same 10 MB/s to the first or the last 10% of a 1 GB disk.
        let total = 1000.0 * MB;
        let mut front = uniform(total, 0.0, 10);
        let mut back = front.clone();
        front.rate[0] = 10.0 * MB / (100.0 * MB);
        back.rate[9] = 10.0 * MB / (100.0 * MB);
        let (f, b) = (front.redirtied(0.0, 25.0 * MB), back.redirtied(0.0, 25.0 * MB));
        // Written early and copied early: rewritten for the whole copy; the back is copied last.
        assert!(f > 95.0 * MB && b < 30.0 * MB, "{f} {b}");
    }

    #[test]
    fn from_samples() {
        let m = RegionWrites::from_samples(&[(100.0, 100, 10), (100.0, 0, 0), (100.0, 100, 100)], 2.0).unwrap();
        assert!((m.rate[0] - -(0.9f64).ln() / 2.0).abs() < 1e-12);
        assert!((m.rate[2] - -(0.01f64).ln() / 2.0).abs() < 1e-12);
        // Unsampled: the overall rate.
        assert!((m.rate[1] - -(1.0 - 110.0 / 200.0f64).ln() / 2.0).abs() < 1e-12);
        assert!(RegionWrites::from_samples(&[], 1.0).is_none());
        assert!(RegionWrites::from_samples(&[(1.0, 1, 0)], 0.0).is_none());
    }

    proptest! {
        /// More time (a slower copy) never means less to re-send, and never more than the disk.
        #[test]
        fn redirtied_is_bounded_and_grows_as_the_copy_slows(
            rates in proptest::collection::vec(0.0f64..0.5, 1..20),
            done_frac in 0.0f64..1.0,
            v in 1e6f64..1e9,
        ) {
            let m = RegionWrites { region_bytes: vec![50.0 * MB; rates.len()], rate: rates };
            let done = done_frac * m.total_bytes();
            let fast = m.redirtied(done, v);
            let slow = m.redirtied(done, v / 2.0);
            prop_assert!(fast >= 0.0 && slow <= m.total_bytes() * (1.0 + 1e-9));
            prop_assert!(slow >= fast * (1.0 - 1e-9), "{fast} {slow}");
        }
    }
}
