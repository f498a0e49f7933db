//! Exponentially weighted moving averages and a smoothed rate from cumulative counters.

use thiserror::Error;

/// Why a smoother could not be built.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EwmaError {
    /// The smoothing factor is outside (0, 1].
    #[error("invalid smoothing factor alpha {0}: must be in (0, 1], the weight of the newest sample, e.g. 0.2")]
    InvalidAlpha(f64),
}

/// Exponentially weighted moving average: `v = alpha * x + (1 - alpha) * v`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ewma {
    alpha: f64,
    value: Option<f64>,
}

impl Ewma {
    /// Pacer's weight for the newest sample (0.8 old + 0.2 new).
    pub const PACER_ALPHA: f64 = 0.2;

    /// Creates an empty average; `alpha` in (0, 1] is the weight of each new sample.
    pub fn new(alpha: f64) -> Result<Self, EwmaError> {
        if alpha.is_finite() && alpha > 0.0 && alpha <= 1.0 {
            Ok(Ewma { alpha, value: None })
        } else {
            Err(EwmaError::InvalidAlpha(alpha))
        }
    }

    /// The weight of each new sample.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Folds in a sample; the first sample is taken as is, non-finite samples are ignored.
    pub fn update(&mut self, sample: f64) {
        if !sample.is_finite() {
            return;
        }
        self.value = Some(match self.value {
            None => sample,
            Some(v) => {
                let next = v + self.alpha * (sample - v);
                // Guard against rounding stepping outside the two points being blended.
                next.clamp(v.min(sample), v.max(sample))
            }
        });
    }

    /// The current average, or `None` before the first sample.
    pub fn value(&self) -> Option<f64> {
        self.value
    }

    /// Forgets all samples.
    pub fn reset(&mut self) {
        self.value = None;
    }
}

impl Default for Ewma {
    /// An empty average with [`Ewma::PACER_ALPHA`].
    fn default() -> Self {
        Ewma {
            alpha: Self::PACER_ALPHA,
            value: None,
        }
    }
}

/// Smoothed rate (bytes/s) from timestamped cumulative byte counters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RateEstimator {
    ewma: Ewma,
    last: Option<(f64, u64)>,
    last_rate: Option<f64>,
}

impl RateEstimator {
    /// Creates an estimator whose smoothing gives weight `alpha` in (0, 1] to each new interval.
    pub fn new(alpha: f64) -> Result<Self, EwmaError> {
        Ok(RateEstimator {
            ewma: Ewma::new(alpha)?,
            last: None,
            last_rate: None,
        })
    }

    /// Feeds a counter reading at time `t_s` (seconds, any origin).
    ///
    /// A counter that went down is a reset: the reading becomes the new baseline.
    /// Readings with a non-finite time or no time elapsed since the baseline are ignored.
    pub fn observe(&mut self, t_s: f64, cumulative_bytes: u64) {
        if !t_s.is_finite() {
            return;
        }
        let Some((t0, b0)) = self.last else {
            self.last = Some((t_s, cumulative_bytes));
            return;
        };
        if cumulative_bytes < b0 {
            self.last = Some((t_s, cumulative_bytes));
            return;
        }
        let dt = t_s - t0;
        if dt <= 0.0 {
            return;
        }
        let rate = (cumulative_bytes - b0) as f64 / dt;
        self.ewma.update(rate);
        self.last_rate = Some(rate);
        self.last = Some((t_s, cumulative_bytes));
    }

    /// The smoothed rate in bytes/s, or `None` until two usable readings were seen.
    pub fn rate(&self) -> Option<f64> {
        self.ewma.value()
    }

    /// The unsmoothed rate over the latest usable interval, in bytes/s.
    pub fn last_rate(&self) -> Option<f64> {
        self.last_rate
    }

    /// Forgets all readings.
    pub fn reset(&mut self) {
        self.ewma.reset();
        self.last = None;
        self.last_rate = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ewma_basics() {
        assert!(Ewma::new(0.0).is_err());
        assert!(Ewma::new(1.5).is_err());
        assert!(Ewma::new(f64::NAN).is_err());
        let mut e = Ewma::new(0.5).unwrap();
        assert_eq!(e.value(), None);
        e.update(10.0);
        assert_eq!(e.value(), Some(10.0));
        e.update(20.0);
        assert_eq!(e.value(), Some(15.0));
        e.update(f64::NAN);
        assert_eq!(e.value(), Some(15.0));
        e.reset();
        assert_eq!(e.value(), None);
        assert_eq!(Ewma::default().alpha(), 0.2);
    }

    #[test]
    fn rate_steady() {
        let mut r = RateEstimator::default();
        assert_eq!(r.rate(), None);
        for i in 0..10u64 {
            r.observe(i as f64, i * 1000);
        }
        assert!((r.rate().unwrap() - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn rate_ignores_bad_time_and_resets() {
        let mut r = RateEstimator::new(1.0).unwrap();
        r.observe(0.0, 0);
        r.observe(0.0, 500); // no time elapsed: ignored
        r.observe(-1.0, 600); // time went backwards: ignored
        r.observe(f64::NAN, 700);
        assert_eq!(r.rate(), None);
        r.observe(1.0, 1000);
        assert_eq!(r.rate(), Some(1000.0));
        r.observe(2.0, 10); // counter reset: new baseline, no sample
        assert_eq!(r.rate(), Some(1000.0));
        r.observe(4.0, 410);
        assert_eq!(r.rate(), Some(200.0));
        assert_eq!(r.last_rate(), Some(200.0));
        r.reset();
        assert_eq!(r.rate(), None);
    }

    proptest! {
        #[test]
        fn ewma_within_input_range(
            alpha in 0.001f64..=1.0,
            xs in prop::collection::vec(-1e12f64..1e12, 1..50),
        ) {
            let mut e = Ewma::new(alpha).unwrap();
            for x in &xs {
                e.update(*x);
            }
            let min = xs.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let v = e.value().unwrap();
            prop_assert!(v >= min && v <= max, "{v} not in [{min}, {max}]");
        }

        #[test]
        fn rate_within_interval_rates(
            alpha in 0.01f64..=1.0,
            steps in prop::collection::vec((0.01f64..10.0, 0u64..1_000_000_000), 1..40),
        ) {
            let mut r = RateEstimator::new(alpha).unwrap();
            let (mut t, mut b) = (0.0, 0u64);
            r.observe(t, b);
            let mut rates = Vec::new();
            for (dt, db) in steps {
                t += dt;
                b += db;
                r.observe(t, b);
                rates.push(r.last_rate().unwrap());
            }
            let min = rates.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = rates.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let v = r.rate().unwrap();
            prop_assert!(v >= min && v <= max, "{v} not in [{min}, {max}]");
        }
    }
}
