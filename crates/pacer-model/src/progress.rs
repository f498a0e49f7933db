//! Progress percentages that never run backwards.

/// The highest percent shown before the migration has completed.
pub const MAX_INCOMPLETE_PERCENT: f64 = 99.9;

/// Raw progress `100 * transferred / (transferred + remaining)`, `None` when both are zero.
pub fn raw_percent(transferred: u64, remaining: u64) -> Option<f64> {
    let total = transferred as f64 + remaining as f64;
    (total > 0.0).then(|| 100.0 * transferred as f64 / total)
}

/// Progress in percent that never decreases and reads 100 only once completed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MonotonicProgress {
    percent: f64,
    completed: bool,
}

impl MonotonicProgress {
    /// Starts at 0 %, not completed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a sample and returns the percent to show, in [0, 100].
    ///
    /// Before completion the result is capped at [`MAX_INCOMPLETE_PERCENT`] and holds its
    /// highest value when the raw figure drops (e.g. when the guest dirties memory).
    pub fn update(&mut self, transferred: u64, remaining: u64, completed: bool) -> f64 {
        if completed {
            self.completed = true;
        }
        if self.completed {
            self.percent = 100.0;
        } else if let Some(raw) = raw_percent(transferred, remaining) {
            self.percent = self.percent.max(raw.min(MAX_INCOMPLETE_PERCENT));
        }
        self.percent
    }

    /// The percent last returned by [`MonotonicProgress::update`].
    pub fn percent(&self) -> f64 {
        self.percent
    }

    /// Whether a completed sample has been seen.
    pub fn is_completed(&self) -> bool {
        self.completed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn holds_and_caps() {
        let mut p = MonotonicProgress::new();
        assert_eq!(p.percent(), 0.0);
        assert_eq!(p.update(0, 0, false), 0.0);
        assert_eq!(p.update(50, 50, false), 50.0);
        // Guest dirtied memory: raw drops to 25 %, shown value holds.
        assert_eq!(p.update(50, 150, false), 50.0);
        assert_eq!(p.update(75, 25, false), 75.0);
        assert_eq!(p.update(1000, 0, false), MAX_INCOMPLETE_PERCENT);
        assert!(!p.is_completed());
        assert_eq!(p.update(1000, 0, true), 100.0);
        assert!(p.is_completed());
        // Completion sticks.
        assert_eq!(p.update(10, 990, false), 100.0);
    }

    #[test]
    fn raw() {
        assert_eq!(raw_percent(0, 0), None);
        assert_eq!(raw_percent(1, 3), Some(25.0));
        assert_eq!(raw_percent(u64::MAX, u64::MAX), Some(50.0));
    }

    proptest! {
        #[test]
        fn non_decreasing_and_below_100_until_completed(
            samples in prop::collection::vec((any::<u64>(), any::<u64>(), prop::bool::weighted(0.05)), 0..100),
        ) {
            let mut p = MonotonicProgress::new();
            let mut prev = 0.0;
            let mut done = false;
            for (t, r, c) in samples {
                done |= c;
                let v = p.update(t, r, c);
                prop_assert!(v >= prev, "{v} < {prev}");
                prop_assert!((0.0..=100.0).contains(&v));
                if done {
                    prop_assert_eq!(v, 100.0);
                } else {
                    prop_assert!(v < 100.0);
                }
                prev = v;
            }
        }
    }
}
