//! How much memory a guest dirties in a window of time, bounded by its writable working set.
//!
//! A guest that writes pages at random within a working set of `W` bytes, at `r` bytes/s of
//! page writes, has dirtied `W (1 - exp(-r t / W))` distinct bytes after `t` seconds: about
//! `r t` while few pages are dirty, never more than `W`. QEMU only ever re-sends distinct
//! dirty pages, so this saturating curve, not `r t`, is what a pre-copy round has to resend.
//!
//! Two measurements over windows of different lengths (two `calc-dirty-rate` probes, or two
//! pre-copy rounds) pin down both `r` and `W`: see [`DirtyModel::fit`].

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a dirty model could not be built.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DirtyError {
    /// The dirty rate is negative or not finite.
    #[error("invalid dirty rate {0} B/s: must be a finite number >= 0, e.g. 10e6")]
    InvalidRate(f64),
    /// The working set is not positive (infinite means unbounded).
    #[error("invalid working set {0} bytes: must be > 0, e.g. 200e6 (infinite for unbounded)")]
    InvalidWss(f64),
    /// A probe window is not a positive finite number of seconds.
    #[error("invalid probe window {0} s: must be a positive number of seconds, e.g. 1")]
    InvalidWindow(f64),
    /// A probe's byte count is negative or not finite.
    #[error("invalid probe result {0} bytes: must be a finite number >= 0")]
    InvalidBytes(f64),
}

/// Distinct bytes dirtied in a window: `hot (1 - exp(-t / HOT_TAU_S)) + wss (1 - exp(-rate t / wss))`.
///
/// The hot set is memory rewritten so often that it is all dirty again within a fraction of a
/// second (a skewed guest's few busy pages); the rest is written at `rate` over `wss`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DirtyModel {
    /// Rate of page writes while few pages are dirty, in bytes/s (the short-window dirty rate).
    pub rate_bps: f64,
    /// Writable working set in bytes: the most that can be dirty at once (infinite: unbounded).
    pub wss_bytes: f64,
    /// Hot set in bytes, dirty again within [`HOT_TAU_S`] (0: none).
    #[serde(default)]
    pub hot_bytes: f64,
}

/// Time constant within which the hot set is all dirty again, seconds.
pub const HOT_TAU_S: f64 = 0.1;
/// A hot set is only looked for in curves measured at windows this short, seconds.
const HOT_MAX_WINDOW_S: f64 = 0.75;

/// A hot set is believed only if the shortest window saw this many times what the curve
/// without one says there (sampling noise alone is about 10%).
const HOT_EVIDENCE: f64 = 1.3;

/// Probe results seen as a fraction of the working set above which the set is deemed too small.
const SATURATED: f64 = 0.95;

impl DirtyModel {
    /// A guest that writes nothing.
    pub const IDLE: DirtyModel = DirtyModel {
        rate_bps: 0.0,
        wss_bytes: f64::INFINITY,
        hot_bytes: 0.0,
    };

    /// Builds a model from a write rate and a working set (`f64::INFINITY` for unbounded).
    pub fn new(rate_bps: f64, wss_bytes: f64) -> Result<Self, DirtyError> {
        if !(rate_bps.is_finite() && rate_bps >= 0.0) {
            return Err(DirtyError::InvalidRate(rate_bps));
        }
        if wss_bytes.is_nan() || wss_bytes <= 0.0 {
            return Err(DirtyError::InvalidWss(wss_bytes));
        }
        Ok(DirtyModel {
            rate_bps,
            wss_bytes,
            hot_bytes: 0.0,
        })
    }

    /// The same model with a hot set of `hot_bytes` (negative or non-finite: none).
    pub fn with_hot(self, hot_bytes: f64) -> DirtyModel {
        DirtyModel {
            hot_bytes: if hot_bytes.is_finite() { hot_bytes.max(0.0) } else { 0.0 },
            ..self
        }
    }

    /// Distinct bytes dirtied in `window_s` seconds (0 for a non-positive window).
    pub fn dirtied(&self, window_s: f64) -> f64 {
        if window_s.is_nan() || window_s <= 0.0 {
            return 0.0;
        }
        let hot = -self.hot_bytes * (-window_s / HOT_TAU_S).exp_m1();
        if self.rate_bps <= 0.0 {
            return hot;
        }
        hot + if self.wss_bytes.is_infinite() {
            self.rate_bps * window_s
        } else {
            -self.wss_bytes * (-self.rate_bps * window_s / self.wss_bytes).exp_m1()
        }
    }

    /// Everything that can be dirty at once: the hot set and the working set.
    pub fn set_bytes(&self) -> f64 {
        self.hot_bytes + self.wss_bytes
    }

    /// The same working set with the write rate multiplied by `factor` (>= 0).
    pub fn scaled(&self, factor: f64) -> DirtyModel {
        // The hot set is measured by the same sampled curve as the rate, with the
        // same error: a band that kept it fixed was sure of a hot-set guest's verdict.
        DirtyModel {
            rate_bps: (self.rate_bps * factor.max(0.0)).max(0.0),
            hot_bytes: (self.hot_bytes * factor.max(0.0)).max(0.0),
            ..*self
        }
    }

    /// The same model with hot set and working set together capped at `max_bytes` (e.g.
    /// guest RAM).
    pub fn capped(&self, max_bytes: f64) -> DirtyModel {
        let max = max_bytes.max(1.0);
        let hot = self.hot_bytes.min(0.5 * max);
        DirtyModel {
            wss_bytes: self.wss_bytes.min(max - hot),
            hot_bytes: hot,
            ..*self
        }
    }

    /// The model through one probe (`bytes` distinct bytes dirtied in `window_s`), given a working set.
    ///
    /// Without a working set the rate is taken as `bytes / window_s`, unbounded. A probe that saw
    /// nearly the whole stated working set means the set is larger than stated: it is raised.
    pub fn from_probe(
        bytes: f64,
        window_s: f64,
        wss_bytes: Option<f64>,
    ) -> Result<Self, DirtyError> {
        check_probe(window_s, bytes)?;
        let Some(wss) = wss_bytes else {
            return DirtyModel::new(bytes / window_s, f64::INFINITY);
        };
        if wss.is_nan() || wss <= 0.0 {
            return Err(DirtyError::InvalidWss(wss));
        }
        if wss.is_infinite() {
            return DirtyModel::new(bytes / window_s, wss);
        }
        let wss = wss.max(bytes / SATURATED);
        DirtyModel::new(rate_through(bytes, window_s, wss), wss)
    }

    /// The model through two probes `(window_s, bytes)`, a short and a long one.
    ///
    /// If the long window dirtied proportionally less than the short one, the working set is
    /// the unique `W` whose curve passes through both; otherwise writes are not saturating and
    /// the model is linear at the long window's rate.
    pub fn fit(short: (f64, f64), long: (f64, f64)) -> Result<Self, DirtyError> {
        check_probe(short.0, short.1)?;
        check_probe(long.0, long.1)?;
        let (short, long) = if short.0 <= long.0 {
            (short, long)
        } else {
            (long, short)
        };
        let ((ts, ds), (tl, dl)) = (short, long);
        if dl <= 0.0 && ds <= 0.0 {
            return Ok(DirtyModel::IDLE);
        }
        if tl <= ts * (1.0 + 1e-9) {
            return DirtyModel::new((ds / ts).max(dl / tl), f64::INFINITY);
        }
        if ds <= 0.0 || dl / tl >= ds / ts {
            return DirtyModel::new(dl / tl, f64::INFINITY);
        }
        if dl <= ds {
            // The set stopped growing: it is (about) what the short window already saw.
            return DirtyModel::from_probe(ds, ts, Some(ds / SATURATED));
        }
        // h(W) = W (1 - (1 - ds/W)^(tl/ts)) - dl rises from ds - dl < 0 to ds tl/ts - dl > 0.
        let k = tl / ts;
        let h = |w: f64| -w * (k * (-ds / w).ln_1p()).exp_m1() - dl;
        let mut lo = ds;
        let mut hi = 2.0 * ds;
        let mut doublings = 0;
        while h(hi) < 0.0 {
            lo = hi;
            hi *= 2.0;
            doublings += 1;
            if doublings > 200 {
                return DirtyModel::new(dl / tl, f64::INFINITY);
            }
        }
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if h(mid) < 0.0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        DirtyModel::new(rate_through(ds, ts, hi), hi)
    }
}

impl DirtyModel {
    /// The model closest to many points `(window_s, bytes, weight)` on the dirtying curve, in
    /// weighted squared relative error (a measured curve, or rounds of a migration).
    ///
    /// Points with a non-positive weight are ignored. With fewer than two distinct windows
    /// this is [`DirtyModel::from_probe`] without a working set; with all bytes zero, idle.
    pub fn fit_points(points: &[(f64, f64, f64)]) -> Result<Self, DirtyError> {
        for (t, b, _) in points {
            check_probe(*t, *b)?;
        }
        let pts: Vec<(f64, f64, f64)> = points
            .iter()
            .copied()
            .filter(|p| p.2 > 0.0 && p.2.is_finite())
            .collect();
        let max_b = pts.iter().map(|p| p.1).fold(0.0, f64::max);
        if max_b <= 0.0 {
            return Ok(DirtyModel::IDLE);
        }
        let longest = pts.iter().copied().max_by(|a, b| a.0.total_cmp(&b.0)).expect("non-empty");
        let windows_differ = pts.iter().any(|p| p.0 < longest.0 / 1.2);
        if !windows_differ {
            return DirtyModel::from_probe(longest.1, longest.0, None);
        }
        let floor = 0.01 * max_b;
        let cost = |m: &DirtyModel| -> f64 {
            pts.iter()
                .map(|(t, b, w)| w * ((m.dirtied(*t) - b) / b.max(floor)).powi(2))
                .sum()
        };
        let mut best = fit_cold(&pts, 0.0, &cost);
        // A hot set explains a curve that rises steeply and then slowly; it must be no larger
        // than the shortest window saw, and must earn its place (halve the error).
        // Only a curve measured down to short windows shows one.
        let shortest = pts.iter().copied().min_by(|a, b| a.0.total_cmp(&b.0)).expect("non-empty");
        if shortest.0 >= 2.0 * HOT_TAU_S && shortest.0 <= HOT_MAX_WINDOW_S && pts.len() >= 4 {
            let mut hot_best = (f64::INFINITY, best.1);
            for i in 1..12 {
                let c = fit_cold(&pts, shortest.1 * i as f64 / 12.0, &cost);
                if c.0 < hot_best.0 {
                    hot_best = c;
                }
            }
            // ... and must show beyond the noise of a sampled curve (~10%): the shortest
            // window saw clearly more than the cold curve through the rest says.
            let beyond_noise = shortest.1 > HOT_EVIDENCE * best.1.dirtied(shortest.0);
            if hot_best.0 < 0.5 * best.0 && beyond_noise {
                best = hot_best;
            }
        }
        Ok(best.1)
    }
}

/// The best write rate and working set under a hot set of `hot` bytes: `(cost, model)`.
fn fit_cold(
    pts: &[(f64, f64, f64)],
    hot: f64,
    cost: &dyn Fn(&DirtyModel) -> f64,
) -> (f64, DirtyModel) {
    let max_b = pts.iter().map(|p| p.1).fold(0.0, f64::max);
    // For a working set, the best rate (the curve rises with it): golden section on ln r.
    let max_rate = pts.iter().map(|p| p.1 / p.0).fold(0.0, f64::max).max(1.0);
    let best_for = |wss: f64| -> (f64, DirtyModel) {
        let (mut lo, mut hi) = ((max_rate * 1e-4).ln(), (max_rate * 1e3).ln());
        let at = |x: f64| DirtyModel {
            rate_bps: x.exp(),
            wss_bytes: wss,
            hot_bytes: hot,
        };
        for _ in 0..40 {
            let m1 = lo + (hi - lo) * 0.382;
            let m2 = lo + (hi - lo) * 0.618;
            if cost(&at(m1)) <= cost(&at(m2)) {
                hi = m2;
            } else {
                lo = m1;
            }
        }
        let m = at(0.5 * (lo + hi));
        (cost(&m), m)
    };
    let mut best = best_for(f64::INFINITY);
    // Working sets from just above the largest point to 1000x it, log-spaced, then refined.
    let (w0, w1) = (((max_b - hot).max(1.0) * 1.001).ln(), (max_b * 1e3).ln());
    let steps = 24;
    let mut best_i = None;
    for i in 0..=steps {
        let w = (w0 + (w1 - w0) * i as f64 / steps as f64).exp();
        let c = best_for(w);
        if c.0 < best.0 {
            best = c;
            best_i = Some(i);
        }
    }
    if let Some(i) = best_i {
        let step = (w1 - w0) / steps as f64;
        let (mut lo, mut hi) = (w0 + step * (i as f64 - 1.0), w0 + step * (i as f64 + 1.0));
        lo = lo.max(w0);
        for _ in 0..25 {
            let m1 = lo + (hi - lo) * 0.382;
            let m2 = lo + (hi - lo) * 0.618;
            if best_for(m1.exp()).0 <= best_for(m2.exp()).0 {
                hi = m2;
            } else {
                lo = m1;
            }
        }
        let c = best_for((0.5 * (lo + hi)).exp());
        if c.0 < best.0 {
            best = c;
        }
    }
    best
}

fn check_probe(window_s: f64, bytes: f64) -> Result<(), DirtyError> {
    if !(window_s.is_finite() && window_s > 0.0) {
        return Err(DirtyError::InvalidWindow(window_s));
    }
    if !(bytes.is_finite() && bytes >= 0.0) {
        return Err(DirtyError::InvalidBytes(bytes));
    }
    Ok(())
}

/// The write rate whose curve with working set `wss` dirties `bytes` in `window_s` (`bytes < wss`).
fn rate_through(bytes: f64, window_s: f64, wss: f64) -> f64 {
    let r = -(wss / window_s) * (-bytes / wss).ln_1p();
    if r.is_finite() {
        r.max(0.0)
    } else {
        bytes / window_s
    }
}

/// Bytes dirty after adding `new` freshly dirtied bytes to `pending` already dirty ones.
///
/// Both sets are taken as random parts of a working set of `wss` bytes, so they overlap by
/// `pending * new / wss`.
pub fn union(pending: f64, new: f64, wss: f64) -> f64 {
    if wss.is_infinite() {
        pending + new
    } else {
        pending + new * (1.0 - pending / wss).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MB: f64 = 1e6;

    #[test]
    fn curve_basics() {
        let m = DirtyModel::new(10.0 * MB, 200.0 * MB).unwrap();
        assert_eq!(m.dirtied(0.0), 0.0);
        assert_eq!(m.dirtied(-1.0), 0.0);
        assert!((m.dirtied(0.01) - 0.1 * MB).abs() < 0.001 * MB);
        assert!((m.dirtied(14.0) - 200.0 * MB * (1.0 - (-0.7f64).exp())).abs() < 1.0);
        assert!(m.dirtied(1e6) <= 200.0 * MB);
        assert_eq!(DirtyModel::IDLE.dirtied(100.0), 0.0);
        let lin = DirtyModel::new(5.0, f64::INFINITY).unwrap();
        assert_eq!(lin.dirtied(2.0), 10.0);
        assert!(DirtyModel::new(-1.0, 1.0).is_err());
        assert!(DirtyModel::new(f64::NAN, 1.0).is_err());
        assert!(DirtyModel::new(1.0, 0.0).is_err());
        assert_eq!(m.scaled(2.0).rate_bps, 20.0 * MB);
        assert_eq!(m.capped(100.0 * MB).wss_bytes, 100.0 * MB);
    }

    #[test]
    fn probe_with_and_without_wss() {
        let m = DirtyModel::new(10.0 * MB, 200.0 * MB).unwrap();
        let back = DirtyModel::from_probe(m.dirtied(1.0), 1.0, Some(200.0 * MB)).unwrap();
        assert!((back.rate_bps - m.rate_bps).abs() < 1.0);
        let lin = DirtyModel::from_probe(8.0 * MB, 2.0, None).unwrap();
        assert_eq!(lin.rate_bps, 4.0 * MB);
        assert!(lin.wss_bytes.is_infinite());
        // A probe that filled the stated set: the set is raised and the rate stays finite.
        let full = DirtyModel::from_probe(300.0 * MB, 1.0, Some(200.0 * MB)).unwrap();
        assert!(full.wss_bytes > 300.0 * MB && full.rate_bps.is_finite());
        assert!(DirtyModel::from_probe(1.0, 0.0, None).is_err());
        assert!(DirtyModel::from_probe(-1.0, 1.0, None).is_err());
    }

    #[test]
    fn fit_recovers_curve() {
        let m = DirtyModel::new(10.0 * MB, 200.0 * MB).unwrap();
        let f = DirtyModel::fit((1.0, m.dirtied(1.0)), (14.0, m.dirtied(14.0))).unwrap();
        assert!((f.wss_bytes / m.wss_bytes - 1.0).abs() < 1e-6, "{f:?}");
        assert!((f.rate_bps / m.rate_bps - 1.0).abs() < 1e-6, "{f:?}");
        // Order does not matter.
        let g = DirtyModel::fit((14.0, m.dirtied(14.0)), (1.0, m.dirtied(1.0))).unwrap();
        assert!((g.wss_bytes / f.wss_bytes - 1.0).abs() < 1e-9);
        // Not saturating: linear at the long rate.
        let l = DirtyModel::fit((1.0, 5.0 * MB), (10.0, 60.0 * MB)).unwrap();
        assert!(l.wss_bytes.is_infinite() && l.rate_bps == 6.0 * MB);
        // Set stopped growing.
        let s = DirtyModel::fit((1.0, 50.0 * MB), (10.0, 50.0 * MB)).unwrap();
        assert!(s.wss_bytes >= 50.0 * MB && s.wss_bytes < 60.0 * MB);
        assert_eq!(
            DirtyModel::fit((1.0, 0.0), (5.0, 0.0)).unwrap(),
            DirtyModel::IDLE
        );
    }

    #[test]
    fn fit_points_recovers_curves() {
        let m = DirtyModel::new(15.0 * MB, 256.0 * MB).unwrap();
        let pts: Vec<_> = [0.5, 1.0, 2.0, 4.0, 8.0].iter().map(|t| (*t, m.dirtied(*t), 1.0)).collect();
        let f = DirtyModel::fit_points(&pts).unwrap();
        assert!((f.wss_bytes / m.wss_bytes - 1.0).abs() < 0.02, "{f:?}");
        assert!((f.rate_bps / m.rate_bps - 1.0).abs() < 0.02, "{f:?}");
        // Linear writes stay (nearly) linear.
        let lin: Vec<_> = [1.0, 2.0, 8.0].iter().map(|t| (*t, 5.0 * MB * t, 1.0)).collect();
        let l = DirtyModel::fit_points(&lin).unwrap();
        for t in [1.0, 8.0, 30.0] {
            assert!((l.dirtied(t) / (5.0 * MB * t) - 1.0).abs() < 0.03, "{l:?}");
        }
        assert_eq!(DirtyModel::fit_points(&[(1.0, 0.0, 1.0), (4.0, 0.0, 1.0)]).unwrap(), DirtyModel::IDLE);
        let one = DirtyModel::fit_points(&[(2.0, 4.0 * MB, 1.0)]).unwrap();
        assert_eq!(one.rate_bps, 2.0 * MB);
        assert!(DirtyModel::fit_points(&[(0.0, 1.0, 1.0)]).is_err());
        // Zero weights are ignored.
        let w = DirtyModel::fit_points(&[(1.0, MB, 1.0), (4.0, 100.0 * MB, 0.0)]).unwrap();
        assert_eq!(w.rate_bps, MB);
    }

    #[test]
    fn fit_points_finds_a_hot_set() {
        // 80% of 15 MB/s to 2.5 MB, the rest spread over 253 MB.
        let truth = |t: f64| {
            let hot = 2.5 * MB * (1.0 - (-12.0 * MB * t / (2.5 * MB)).exp());
            hot + 253.0 * MB * (1.0 - (-3.0 * MB * t / (253.0 * MB)).exp())
        };
        let pts: Vec<_> = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0].iter().map(|t| (*t, truth(*t), 1.0)).collect();
        let f = DirtyModel::fit_points(&pts).unwrap();
        assert!(f.hot_bytes > 1.5 * MB && f.hot_bytes < 3.0 * MB, "{f:?}");
        // Extrapolated to a 14 s first round, and down to a 0.3 s last one.
        for t in [0.3, 14.0] {
            assert!((f.dirtied(t) / truth(t) - 1.0).abs() < 0.1, "{f:?} at {t}: {} vs {}", f.dirtied(t), truth(t));
        }
        // Uniform writes get no hot set.
        let m = DirtyModel::new(15.0 * MB, 256.0 * MB).unwrap();
        let pts: Vec<_> = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0].iter().map(|t| (*t, m.dirtied(*t), 1.0)).collect();
        assert_eq!(DirtyModel::fit_points(&pts).unwrap().hot_bytes, 0.0);
        // Capping keeps hot and working set within RAM.
        let c = f.capped(100.0 * MB);
        assert!(c.set_bytes() <= 100.0 * MB + 1.0 && c.hot_bytes == f.hot_bytes, "{c:?}");
    }

    proptest! {
        /// Noise-free points from any saturating curve are fitted to within 5% over the windows.
        #[test]
        fn fit_points_matches_its_points(rate in 1e5f64..1e9, wss_factor in 0.3f64..50.0) {
            let wss = rate * 4.0 * wss_factor;
            let m = DirtyModel::new(rate, wss).unwrap();
            let pts: Vec<_> = [0.5, 1.0, 2.0, 4.0, 8.0].iter().map(|t| (*t, m.dirtied(*t), 1.0)).collect();
            let f = DirtyModel::fit_points(&pts).unwrap();
            for (t, b, _) in pts {
                prop_assert!((f.dirtied(t) / b - 1.0).abs() < 0.05, "{f:?} at {t}: {b}");
            }
        }
    }

    #[test]
    fn union_overlaps() {
        assert_eq!(union(10.0, 5.0, f64::INFINITY), 15.0);
        assert_eq!(union(50.0, 100.0, 100.0), 100.0);
        assert_eq!(union(0.0, 30.0, 100.0), 30.0);
    }

    proptest! {
        #[test]
        fn fit_round_trips(rate in 1e3f64..1e9, wss in 1e6f64..1e11, ts in 0.1f64..5.0, k in 1.5f64..30.0) {
            let m = DirtyModel::new(rate, wss).unwrap();
            let f = DirtyModel::fit((ts, m.dirtied(ts)), (ts * k, m.dirtied(ts * k))).unwrap();
            // Wherever the curve is measurably bent the fit finds it; the curves agree everywhere.
            for t in [ts / 2.0, ts, ts * k, ts * k * 3.0] {
                let (a, b) = (m.dirtied(t), f.dirtied(t));
                prop_assert!((a - b).abs() <= 1e-3 * a.max(b) + 1.0, "t={t} {a} vs {b}: {m:?} {f:?}");
            }
        }

        #[test]
        fn dirtied_monotone_and_bounded(rate in 0f64..1e10, wss in 1f64..1e12, a in 0f64..1e4, b in 0f64..1e4) {
            let m = DirtyModel::new(rate, wss).unwrap();
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(m.dirtied(lo) <= m.dirtied(hi));
            prop_assert!(m.dirtied(hi) <= wss * (1.0 + 1e-12));
            prop_assert!(m.dirtied(hi) <= rate * hi * (1.0 + 1e-12) + 1e-9);
        }
    }
}
#[cfg(test)]
mod measured {
    use super::*;

    /// A curve the agent measured on a guest writing 80% of 15 MB/s to 2.5 MB of 256 MB.
    #[test]
    fn a_measured_skewed_curve_has_a_hot_set() {
        let pts = [
            (0.500095767, 4161536.0, 1.0),
            (1.000079418, 5816320.0, 1.0),
            (2.000129301, 8847360.0, 1.0),
            (4.000097413, 14991360.0, 1.0),
            (8.000137741, 26066944.0, 1.0),
        ];
        let f = DirtyModel::fit_points(&pts).unwrap();
        assert!(f.hot_bytes > 1.5e6 && f.hot_bytes < 3.5e6, "{f:?}");
        // The first round over 200 Mbit/s lasts 14 s: 2.5 MB hot + about 38 MB cold.
        assert!(f.dirtied(14.0) > 35e6 && f.dirtied(14.0) < 50e6, "{f:?}");
    }
}
