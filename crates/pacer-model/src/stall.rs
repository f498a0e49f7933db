//! Detects a migration whose transferred counter stopped moving (e.g. a cut link).

use thiserror::Error;

/// Why a stall detector could not be built.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StallError {
    /// The timeout is not a positive finite number of seconds.
    #[error("invalid stall timeout {0} s: must be a positive number of seconds, e.g. 30")]
    InvalidTimeout(f64),
}

/// Flags a stall when transferred bytes have not grown for `timeout_s` seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StallDetector {
    timeout_s: f64,
    /// Latest (time, bytes) reading.
    last: Option<(f64, u64)>,
    /// Time the counter last increased (or was first seen, or reset).
    last_progress_s: f64,
}

impl StallDetector {
    /// Creates a detector; `timeout_s` must be positive and finite.
    pub fn new(timeout_s: f64) -> Result<Self, StallError> {
        if timeout_s.is_finite() && timeout_s > 0.0 {
            Ok(StallDetector {
                timeout_s,
                last: None,
                last_progress_s: 0.0,
            })
        } else {
            Err(StallError::InvalidTimeout(timeout_s))
        }
    }

    /// The configured timeout in seconds.
    pub fn timeout_s(&self) -> f64 {
        self.timeout_s
    }

    /// Feeds a reading; older-than-latest or non-finite times are ignored, a drop counts as activity.
    pub fn observe(&mut self, t_s: f64, transferred_bytes: u64) {
        if !t_s.is_finite() {
            return;
        }
        match self.last {
            Some((t0, _)) if t_s < t0 => return,
            Some((_, b0)) if transferred_bytes == b0 => {}
            _ => self.last_progress_s = t_s,
        }
        self.last = Some((t_s, transferred_bytes));
    }

    /// Seconds since the counter last moved, or `None` before the first reading.
    pub fn stalled_for(&self, t_s: f64) -> Option<f64> {
        self.last
            .filter(|_| t_s.is_finite())
            .map(|_| (t_s - self.last_progress_s).max(0.0))
    }

    /// Whether the counter has not moved for at least the timeout as of `t_s`.
    pub fn is_stalled(&self, t_s: f64) -> bool {
        self.stalled_for(t_s)
            .is_some_and(|idle| idle >= self.timeout_s)
    }

    /// Forgets all readings.
    pub fn reset(&mut self) {
        self.last = None;
        self.last_progress_s = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_timeouts() {
        for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(StallDetector::new(t).is_err());
        }
        assert!(StallDetector::new(30.0).unwrap().timeout_s() == 30.0);
    }

    #[test]
    fn no_readings_is_not_stalled() {
        let d = StallDetector::new(5.0).unwrap();
        assert!(!d.is_stalled(1000.0));
        assert_eq!(d.stalled_for(1000.0), None);
    }

    #[test]
    fn detects_flat_counter() {
        let mut d = StallDetector::new(10.0).unwrap();
        d.observe(0.0, 100);
        d.observe(5.0, 200);
        d.observe(10.0, 200);
        assert!(!d.is_stalled(14.9));
        assert!(d.is_stalled(15.0));
        assert_eq!(d.stalled_for(12.0), Some(7.0));
        // Progress resumes.
        d.observe(16.0, 201);
        assert!(!d.is_stalled(20.0));
        assert!(d.is_stalled(26.0));
    }

    #[test]
    fn first_reading_starts_the_clock() {
        let mut d = StallDetector::new(10.0).unwrap();
        d.observe(100.0, 0);
        assert!(!d.is_stalled(109.0));
        assert!(d.is_stalled(110.0));
    }

    #[test]
    fn ignores_out_of_order_and_counts_resets() {
        let mut d = StallDetector::new(10.0).unwrap();
        d.observe(10.0, 500);
        d.observe(5.0, 900); // older than latest: ignored
        d.observe(f64::NAN, 900);
        assert!(d.is_stalled(20.0));
        d.observe(20.0, 0); // counter reset (new migration): activity
        assert!(!d.is_stalled(25.0));
        assert!(!d.is_stalled(f64::NAN));
        d.reset();
        assert!(!d.is_stalled(1000.0));
    }
}
