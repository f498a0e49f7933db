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

/// Distinct bytes dirtied in a window: `wss (1 - exp(-rate t / wss))`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DirtyModel {
    /// Rate of page writes while few pages are dirty, in bytes/s (the short-window dirty rate).
    pub rate_bps: f64,
    /// Writable working set in bytes: the most that can be dirty at once (infinite: unbounded).
    pub wss_bytes: f64,
}

/// Probe results seen as a fraction of the working set above which the set is deemed too small.
const SATURATED: f64 = 0.95;

impl DirtyModel {
    /// A guest that writes nothing.
    pub const IDLE: DirtyModel = DirtyModel {
        rate_bps: 0.0,
        wss_bytes: f64::INFINITY,
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
        })
    }

    /// Distinct bytes dirtied in `window_s` seconds (0 for a non-positive window).
    pub fn dirtied(&self, window_s: f64) -> f64 {
        if window_s.is_nan() || window_s <= 0.0 || self.rate_bps <= 0.0 {
            return 0.0;
        }
        if self.wss_bytes.is_infinite() {
            self.rate_bps * window_s
        } else {
            -self.wss_bytes * (-self.rate_bps * window_s / self.wss_bytes).exp_m1()
        }
    }

    /// The same working set with the write rate multiplied by `factor` (>= 0).
    pub fn scaled(&self, factor: f64) -> DirtyModel {
        DirtyModel {
            rate_bps: (self.rate_bps * factor.max(0.0)).max(0.0),
            ..*self
        }
    }

    /// The same model with the working set capped at `max_bytes` (e.g. guest RAM).
    pub fn capped(&self, max_bytes: f64) -> DirtyModel {
        DirtyModel {
            wss_bytes: self.wss_bytes.min(max_bytes.max(1.0)),
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
