//! Detects a pre-copy migration that is not converging (to switch to post-copy).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::units::format_bytes;

/// Why a convergence configuration is invalid.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConvergenceError {
    /// The window is too short to measure a trend.
    #[error("invalid convergence window {0}: must be at least 2 rounds, e.g. 3")]
    InvalidWindow(usize),
    /// The required shrink is not a fraction in [0, 1).
    #[error("invalid min_shrink {0}: must be a fraction in [0, 1), e.g. 0.1 for 10%")]
    InvalidMinShrink(f64),
    /// The transfer factor is not a positive finite number.
    #[error(
        "invalid max_transfer_factor {0}: must be a positive number, e.g. 3.0 (times guest RAM)"
    )]
    InvalidTransferFactor(f64),
}

/// Tuning of [`ConvergenceDetector`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConvergenceConfig {
    /// Rounds to observe before judging the trend.
    pub min_rounds: usize,
    /// Minimum fractional shrink of remaining bytes across the window (0.1 = 10%).
    pub min_shrink: f64,
    /// Number of most recent round ends compared (oldest against newest).
    pub window: usize,
    /// Give up once transferred bytes exceed this multiple of guest RAM (Xen's rule).
    pub max_transfer_factor: f64,
}

impl Default for ConvergenceConfig {
    /// 3 rounds, 10% shrink over a window of 3 rounds, 3.0 x RAM.
    fn default() -> Self {
        ConvergenceConfig {
            min_rounds: 3,
            min_shrink: 0.1,
            window: 3,
            max_transfer_factor: 3.0,
        }
    }
}

impl ConvergenceConfig {
    /// Checks that every field holds a usable value.
    pub fn validate(&self) -> Result<(), ConvergenceError> {
        if self.window < 2 {
            return Err(ConvergenceError::InvalidWindow(self.window));
        }
        if !(self.min_shrink.is_finite() && (0.0..1.0).contains(&self.min_shrink)) {
            return Err(ConvergenceError::InvalidMinShrink(self.min_shrink));
        }
        if !(self.max_transfer_factor.is_finite() && self.max_transfer_factor > 0.0) {
            return Err(ConvergenceError::InvalidTransferFactor(
                self.max_transfer_factor,
            ));
        }
        Ok(())
    }
}

/// The detector's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Remaining bytes are shrinking fast enough.
    Converging,
    /// Pre-copy is not getting anywhere; `reason` says why, for operators.
    NotConverging {
        /// Human-readable explanation with the figures.
        reason: String,
    },
    /// Not enough rounds observed yet.
    TooEarly,
}

/// Judges from per-round QEMU counters whether pre-copy converges.
///
/// The first observation carrying a new `dirty_sync_count` records that sync's remaining
/// bytes (the dirty set the next round must send); repeated observations of the same
/// sync only refresh the transferred and RAM totals. Sync count 0 (setup) is not a round,
/// and a sync count that goes down starts over (a new migration).
#[derive(Debug, Clone, PartialEq)]
pub struct ConvergenceDetector {
    config: ConvergenceConfig,
    last_sync: Option<u64>,
    rounds: usize,
    window: VecDeque<u64>,
    transferred: u64,
    ram_total: u64,
}

impl Default for ConvergenceDetector {
    /// A detector with [`ConvergenceConfig::default`].
    fn default() -> Self {
        Self::with_valid_config(ConvergenceConfig::default())
    }
}

impl ConvergenceDetector {
    /// Creates a detector after validating `config`.
    pub fn new(config: ConvergenceConfig) -> Result<Self, ConvergenceError> {
        config.validate()?;
        Ok(Self::with_valid_config(config))
    }

    fn with_valid_config(config: ConvergenceConfig) -> Self {
        ConvergenceDetector {
            config,
            last_sync: None,
            rounds: 0,
            window: VecDeque::with_capacity(config.window),
            transferred: 0,
            ram_total: 0,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &ConvergenceConfig {
        &self.config
    }

    /// Number of rounds (distinct sync counts) recorded so far.
    pub fn rounds(&self) -> usize {
        self.rounds
    }

    /// Feeds one `query-migrate` sample: dirty-sync-count and ram remaining/transferred/total.
    pub fn observe(
        &mut self,
        dirty_sync_count: u64,
        remaining_bytes: u64,
        transferred_bytes: u64,
        ram_total: u64,
    ) {
        if self.last_sync.is_some_and(|last| dirty_sync_count < last) {
            *self = Self::with_valid_config(self.config);
        }
        self.transferred = transferred_bytes;
        self.ram_total = ram_total;
        if dirty_sync_count == 0 || self.last_sync.is_some_and(|last| dirty_sync_count == last) {
            return;
        }
        self.last_sync = Some(dirty_sync_count);
        self.rounds += 1;
        if self.window.len() == self.config.window {
            self.window.pop_front();
        }
        self.window.push_back(remaining_bytes);
    }

    /// Current verdict: the transfer limit applies at any time, the shrink rule after enough rounds.
    pub fn is_converging(&self) -> Verdict {
        let limit = self.config.max_transfer_factor * self.ram_total as f64;
        if self.ram_total > 0 && self.transferred as f64 > limit {
            return Verdict::NotConverging {
                reason: format!(
                    "transferred {} already exceeds {} x guest RAM ({})",
                    format_bytes(self.transferred),
                    self.config.max_transfer_factor,
                    format_bytes(self.ram_total),
                ),
            };
        }
        if self.rounds < self.config.min_rounds.max(self.config.window) {
            return Verdict::TooEarly;
        }
        let (Some(&oldest), Some(&newest)) = (self.window.front(), self.window.back()) else {
            return Verdict::TooEarly;
        };
        if newest == 0 {
            return Verdict::Converging;
        }
        let shrink = if oldest == 0 {
            f64::NEG_INFINITY
        } else {
            (oldest as f64 - newest as f64) / oldest as f64
        };
        if shrink >= self.config.min_shrink {
            Verdict::Converging
        } else {
            Verdict::NotConverging {
                reason: format!(
                    "remaining memory went from {} to {} over the last {} rounds ({}), \
                     less than the required {:.0}% shrink",
                    format_bytes(oldest),
                    format_bytes(newest),
                    self.config.window,
                    if newest > oldest {
                        "grew".to_string()
                    } else {
                        format!("shrank {:.1}%", shrink * 100.0)
                    },
                    self.config.min_shrink * 100.0,
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    #[test]
    fn config_validation() {
        let ok = ConvergenceConfig::default();
        assert!(ConvergenceDetector::new(ok).is_ok());
        for bad in [
            ConvergenceConfig { window: 1, ..ok },
            ConvergenceConfig {
                min_shrink: 1.0,
                ..ok
            },
            ConvergenceConfig {
                min_shrink: -0.1,
                ..ok
            },
            ConvergenceConfig {
                min_shrink: f64::NAN,
                ..ok
            },
            ConvergenceConfig {
                max_transfer_factor: 0.0,
                ..ok
            },
            ConvergenceConfig {
                max_transfer_factor: f64::INFINITY,
                ..ok
            },
        ] {
            assert!(ConvergenceDetector::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn converging_sequence() {
        let mut d = ConvergenceDetector::default();
        assert_eq!(d.is_converging(), Verdict::TooEarly);
        d.observe(0, 0, 0, GIB); // setup: not a round
        d.observe(1, GIB, 0, GIB);
        d.observe(1, GIB / 2, GIB / 2, GIB); // same round again: ignored
        d.observe(2, 200 * MIB, GIB, GIB);
        assert_eq!(d.is_converging(), Verdict::TooEarly);
        d.observe(3, 100 * MIB, GIB + 200 * MIB, GIB);
        assert_eq!(d.rounds(), 3);
        assert_eq!(d.is_converging(), Verdict::Converging);
        d.observe(4, 60 * MIB, GIB + 300 * MIB, GIB);
        assert_eq!(d.is_converging(), Verdict::Converging);
    }

    #[test]
    fn stuck_sequence_is_not_converging() {
        let mut d = ConvergenceDetector::default();
        d.observe(1, GIB, 0, GIB);
        d.observe(2, 300 * MIB, GIB, GIB);
        d.observe(3, 290 * MIB, GIB + 300 * MIB, GIB);
        // Window is rounds 1..=3: the first round's large remainder still shows a shrink.
        assert_eq!(d.is_converging(), Verdict::Converging);
        d.observe(4, 295 * MIB, GIB + 600 * MIB, GIB);
        match d.is_converging() {
            Verdict::NotConverging { reason } => {
                assert!(reason.contains("shrank 1.7%"), "{reason}");
                assert!(reason.contains("10%"), "{reason}");
            }
            v => panic!("expected NotConverging, got {v:?}"),
        }
    }

    #[test]
    fn growing_sequence_is_not_converging() {
        let mut d = ConvergenceDetector::default();
        for (sync, rem) in [(1, 100 * MIB), (2, 150 * MIB), (3, 200 * MIB)] {
            d.observe(sync, rem, sync * 100 * MIB, GIB);
        }
        assert!(
            matches!(d.is_converging(), Verdict::NotConverging { reason } if reason.contains("grew"))
        );
    }

    #[test]
    fn transfer_limit_applies_early() {
        let mut d = ConvergenceDetector::default();
        d.observe(1, GIB, 3 * GIB + 1, GIB);
        assert!(
            matches!(d.is_converging(), Verdict::NotConverging { reason } if reason.contains("3 x guest RAM"))
        );
        // Unknown RAM size disables the rule.
        d.observe(1, GIB, 3 * GIB + 1, 0);
        assert_eq!(d.is_converging(), Verdict::TooEarly);
    }

    #[test]
    fn sync_count_going_down_starts_over() {
        let mut d = ConvergenceDetector::default();
        for s in 1..=5 {
            d.observe(s, GIB, s * GIB / 2, GIB);
        }
        assert!(matches!(d.is_converging(), Verdict::NotConverging { .. }));
        d.observe(1, GIB, 0, GIB);
        assert_eq!(d.rounds(), 1);
        assert_eq!(d.is_converging(), Verdict::TooEarly);
    }

    #[test]
    fn reaching_zero_converges() {
        let mut d = ConvergenceDetector::default();
        for (s, rem) in [(1, 0), (2, 0), (3, 0)] {
            d.observe(s, rem, GIB, GIB);
        }
        assert_eq!(d.is_converging(), Verdict::Converging);
    }

    proptest! {
        #[test]
        fn fast_shrinking_is_never_not_converging(
            start in MIB..16 * GIB,
            factors in prop::collection::vec(0.0f64..=0.5, 1..30),
            repeats in prop::collection::vec(1usize..4, 30),
        ) {
            let mut d = ConvergenceDetector::default();
            let ram = start;
            let mut remaining = start;
            let mut transferred = 0u64;
            for (i, f) in factors.iter().enumerate() {
                let sync = i as u64 + 1;
                for k in 0..repeats[i] {
                    // Within a round the remainder only goes down as pages are sent.
                    d.observe(sync, remaining >> k, transferred + (remaining - (remaining >> k)), ram);
                    prop_assert!(!matches!(d.is_converging(), Verdict::NotConverging { .. }),
                        "round {sync}: {:?}", d.is_converging());
                }
                transferred += remaining;
                remaining = (remaining as f64 * f) as u64;
            }
        }
    }
}
