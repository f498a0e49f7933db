//! Rounds at the switch-over edge: QEMU comes back within reach of its threshold round
//! after round and does not switch, because what the guest dirtied during the round was
//! a little more than the threshold left room for (redis over 200 Mbit/s: 30 rounds of
//! about 0.3 s hovering at 6-10 MB against a 7.1 MB threshold, then a round that found
//! less). Whether a round ends it is chance, set by when a hot set happens to be
//! rewritten; no curve fitted at long windows gives it, and the forward model, playing
//! the average round, says "the next one". What the migration has shown is how many
//! rounds have missed.
//!
//! With nothing assumed of the chance `p` that a round switches (a uniform prior), after
//! `k` misses the rounds still to miss, `M`, have `P(M >= m) = (k+1)/(k+1+m)`
//! (Beta-geometric): its `q` quantile is `q (k+1) / (1-q)` rounds, so the median is as
//! many rounds again as have missed, and the 80% band runs from a ninth of that to nine
//! times it. Wide, because the chance is not known; honest, because it is what the rounds
//! say.

/// A sync leaving at most this many times QEMU's threshold is a round at the edge.
pub const EDGE_NEAR: f64 = 2.0;
/// Misses before the edge takes over from the forward model, and the least time they
/// span, s: a migration that converges normally comes within reach a few times before
/// it switches, in rounds as short as QEMU's 50 ms checks when little is left (the
/// simulator's runs end within four such rounds in all but about 2 in 100).
pub const EDGE_MIN_MISSES: u64 = 5;
/// See [`EDGE_MIN_MISSES`].
pub const EDGE_MIN_SPAN_S: f64 = 1.0;

/// Counts the rounds that came within reach of the threshold and missed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdgeRounds {
    /// Syncs in a row that left at most [`EDGE_NEAR`] x the threshold.
    misses: u64,
    /// When the first of them happened (s), and the latest.
    first_s: Option<f64>,
    last_s: f64,
    /// The least left after one of them, bytes, and the threshold then.
    least: Option<(f64, f64)>,
}

/// What the edge says of the rest of a migration.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Edge {
    /// Rounds in a row that came within reach of the threshold and did not switch.
    pub missed_rounds: u64,
    /// How long one such round lasts, s.
    pub round_s: f64,
    /// The least QEMU had left after one of them, bytes.
    pub least_left_bytes: f64,
    /// QEMU's threshold at that sync, bytes.
    pub threshold_bytes: f64,
}

impl EdgeRounds {
    /// Takes the syncs seen in one sample: `syncs` of them (one or more since the last
    /// sample), placed at `at_s`, leaving `left` bytes against `threshold` bytes.
    pub fn observe(&mut self, syncs: u64, at_s: f64, left: f64, threshold: f64) {
        if syncs == 0 || threshold.is_nan() || threshold <= 0.0 || !left.is_finite() {
            return;
        }
        if left > EDGE_NEAR * threshold {
            *self = EdgeRounds::default();
            return;
        }
        if self.first_s.is_none() {
            // The first miss starts the clock: its round's length is not known.
            self.first_s = Some(at_s);
            self.misses = 1;
        } else {
            self.misses += syncs;
        }
        self.last_s = at_s;
        if self.least.is_none_or(|(l, t)| left / threshold < l / t) {
            self.least = Some((left, threshold));
        }
    }

    /// The edge, once [`EDGE_MIN_MISSES`] rounds have missed (and their length is known).
    pub fn edge(&self) -> Option<Edge> {
        let first = self.first_s?;
        let (least, thr) = self.least?;
        if self.misses < EDGE_MIN_MISSES || self.last_s - first < EDGE_MIN_SPAN_S {
            return None;
        }
        Some(Edge {
            missed_rounds: self.misses,
            round_s: (self.last_s - first) / (self.misses - 1) as f64,
            least_left_bytes: least,
            threshold_bytes: thr,
        })
    }
}

impl Edge {
    /// Rounds still to miss at quantile `q` (0 < q < 1).
    pub fn rounds_at(&self, q: f64) -> f64 {
        let q = q.clamp(1e-6, 1.0 - 1e-6);
        q * (self.missed_rounds + 1) as f64 / (1.0 - q)
    }

    /// Seconds the rounds still to miss take, at quantile `q`.
    pub fn extra_s(&self, q: f64) -> f64 {
        self.rounds_at(q) * self.round_s
    }

    /// The downtime limit (ms) at which the least dirty set seen would have switched
    /// (with a tenth to spare), for a migration whose limit is `limit_ms`: what would
    /// end it at the next such round.
    pub fn limit_to_end_ms(&self, limit_ms: f64) -> f64 {
        1.1 * self.least_left_bytes / self.threshold_bytes.max(1.0) * limit_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn misses_near_the_threshold_count_and_a_far_sync_starts_over() {
        let mut e = EdgeRounds::default();
        for i in 0..5 {
            e.observe(1, 10.0 + 0.3 * i as f64, 9e6, 7e6);
        }
        let edge = e.edge().unwrap();
        assert_eq!(edge.missed_rounds, 5);
        assert!((edge.round_s - 0.3).abs() < 1e-9, "{edge:?}");
        // Two syncs in one sample: both missed.
        e.observe(2, 11.8, 6.5e6, 7e6);
        let edge = e.edge().unwrap();
        assert_eq!(edge.missed_rounds, 7);
        assert!((edge.round_s - 0.3).abs() < 1e-9, "{edge:?}");
        assert_eq!(edge.least_left_bytes, 6.5e6);
        // A round that found far more (a burst) is not at the edge.
        e.observe(1, 11.5, 30e6, 7e6);
        assert_eq!(e.edge(), None);
    }

    #[test]
    fn too_few_misses_or_too_short_a_time_say_nothing() {
        let mut e = EdgeRounds::default();
        for i in 0..4 {
            e.observe(1, 1.0 + 0.3 * i as f64, 9e6, 7e6);
        }
        assert_eq!(e.edge(), None);
        // Many misses in QEMU's 50 ms checks: a normal end, not yet the edge.
        let mut f = EdgeRounds::default();
        for i in 0..12 {
            f.observe(1, 1.0 + 0.05 * i as f64, 9e6, 7e6);
        }
        assert_eq!(f.edge(), None);
        e.observe(0, 1.6, 9e6, 7e6);
        e.observe(1, 1.9, 9e6, 0.0);
        assert_eq!(e.edge(), None);
    }

    proptest! {
        /// Rounds that switch with a chance drawn uniformly (the prior): judged after
        /// every miss from the minimum on, as a live predictor is, the 80% band holds the
        /// rounds actually still to miss about 80% of the time.
        #[test]
        fn the_band_holds_about_four_in_five(seed in any::<u64>()) {
            let mut rng = seed | 1;
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng >> 11) as f64 / (1u64 << 53) as f64
            };
            let (mut inside, mut all) = (0u64, 0u64);
            for _ in 0..300 {
                let p = next().max(1e-3);
                let mut total = 0u64;
                while next() >= p && total < 5000 {
                    total += 1;
                }
                for seen in EDGE_MIN_MISSES..=total {
                    let edge = Edge { missed_rounds: seen, round_s: 1.0, least_left_bytes: 1.0, threshold_bytes: 1.0 };
                    let left = (total - seen) as f64;
                    all += 1;
                    if left >= edge.rounds_at(0.1) && left <= edge.rounds_at(0.9) {
                        inside += 1;
                    }
                }
            }
            let share = inside as f64 / all.max(1) as f64;
            prop_assert!((0.7..=0.9).contains(&share), "{inside} of {all}");
        }
    }
}
