//! Scoring predictions against what happened: the absolute error of a predicted
//! total time at fixed fractions of the ACTUAL duration, using the prediction in
//! force then (the last one made at or before that moment).

use pacer_api::PredictionPoint;
use serde::Serialize;

/// Fractions of the actual duration at which predictions are scored.
pub const FRACTIONS: [f64; 4] = [0.10, 0.25, 0.50, 0.75];
/// Index in [`FRACTIONS`] from which the accuracy goal applies (25%).
pub const GOAL_FROM: usize = 1;
/// The accuracy goal: median absolute error at most this fraction of the duration.
pub const GOAL_MAX_ERROR: f64 = 0.05;

/// The total of a prediction that the migration will not end (pre-copy does not converge).
pub const NEVER_MS: u64 = u64::MAX;

/// One estimate of the total time made at some moment (ms since the job started).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// When it was made.
    pub at_ms: u64,
    /// The total time it predicted.
    pub total_ms: u64,
}

/// The estimate in force at `t_ms`: the last made at or before it.
pub fn in_force(estimates: &[Estimate], t_ms: f64) -> Option<Estimate> {
    estimates
        .iter()
        .filter(|e| e.at_ms as f64 <= t_ms)
        .max_by_key(|e| e.at_ms)
        .copied()
}

/// Absolute error of `predicted_ms` as a fraction of `actual_ms`.
pub fn rel_error(predicted_ms: u64, actual_ms: u64) -> Option<f64> {
    (actual_ms > 0).then(|| (predicted_ms as f64 - actual_ms as f64).abs() / actual_ms as f64)
}

/// Errors (fractions of the actual duration) at each of [`FRACTIONS`]; None where
/// no estimate had been made yet.
pub fn errors_at_fractions(estimates: &[Estimate], actual_ms: u64) -> [Option<f64>; 4] {
    FRACTIONS.map(|f| {
        in_force(estimates, f * actual_ms as f64).and_then(|e| rel_error(e.total_ms, actual_ms))
    })
}

/// Pacer's own estimates from its prediction history.
pub fn pacer_estimates(points: &[PredictionPoint]) -> Vec<Estimate> {
    points
        .iter()
        .map(|p| Estimate {
            at_ms: p.elapsed_ms,
            // "Does not converge" scored as never.
            total_ms: p.total_ms.unwrap_or(NEVER_MS),
        })
        .collect()
}

/// The naive errors at each fraction: the agent's naive estimate made at the same
/// moment as the Pacer prediction in force (the same point); where the agent made
/// none then (during a disk copy it has no memory rate), the `fallback` estimate
/// in force, flagged. None where no prediction had been made yet.
pub fn naive_errors(
    points: &[PredictionPoint],
    fallback: &[Estimate],
    actual_ms: u64,
) -> ([Option<f64>; 4], [bool; 4]) {
    let mut errs = [None; 4];
    let mut flagged = [false; 4];
    for (i, f) in FRACTIONS.iter().enumerate() {
        let t = f * actual_ms as f64;
        let point = points
            .iter()
            .filter(|p| p.elapsed_ms as f64 <= t)
            .max_by_key(|p| p.elapsed_ms);
        match point.map(|p| p.naive_total_ms) {
            // No prediction made yet: nothing to compare with.
            None => {}
            Some(Some(n)) => errs[i] = rel_error(n, actual_ms),
            Some(None) => {
                if let Some(e) = in_force(fallback, t) {
                    errs[i] = rel_error(e.total_ms, actual_ms);
                    flagged[i] = true;
                }
            }
        }
    }
    (errs, flagged)
}

/// The error values from the goal's first fraction on.
pub fn late(errs: &[Option<f64>; 4]) -> impl Iterator<Item = f64> + '_ {
    errs[GOAL_FROM..].iter().flatten().copied()
}

/// Pacer's and the naive estimate's errors at each fraction, of one run.
pub type ErrorPair = ([Option<f64>; 4], [Option<f64>; 4]);

/// The goal verdict of one scenario (over its runs).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Verdict {
    /// Median of Pacer's errors from 25% on.
    pub pacer_median: Option<f64>,
    /// Median of the naive estimate's errors from 25% on.
    pub naive_median: Option<f64>,
    /// Pacer's median is at most 5%.
    pub within_goal: Option<bool>,
    /// Pacer's median is below the naive one's.
    pub beats_naive: Option<bool>,
}

impl Verdict {
    /// From all (Pacer, naive) error rows of one scenario.
    pub fn of(rows: &[ErrorPair]) -> Verdict {
        let p: Vec<f64> = rows.iter().flat_map(|(p, _)| late(p)).collect();
        let n: Vec<f64> = rows.iter().flat_map(|(_, n)| late(n)).collect();
        let pacer_median = super::median(&p);
        let naive_median = super::median(&n);
        Verdict {
            pacer_median,
            naive_median,
            within_goal: pacer_median.map(|m| m <= GOAL_MAX_ERROR),
            beats_naive: match (pacer_median, naive_median) {
                (Some(p), Some(n)) => Some(p < n),
                // The naive estimate said nothing: Pacer's is the only one.
                (Some(_), None) => Some(true),
                _ => None,
            },
        }
    }

    /// `ok`, or what was missed.
    pub fn word(&self) -> String {
        match (self.within_goal, self.beats_naive) {
            (None, _) => "n/a".into(),
            (Some(true), Some(true)) => "ok".into(),
            (Some(false), Some(true)) => "MISSED >5%".into(),
            (Some(true), _) => "MISSED naive".into(),
            (Some(false), _) => "MISSED both".into(),
        }
    }
}

/// An error as a percentage cell.
pub fn pct(e: Option<f64>) -> String {
    match e {
        None => "-".into(),
        Some(e) if e >= 10.0 => format!("{:.0}x", e + 1.0),
        Some(e) if e >= 0.995 => format!("{:.0}%", e * 100.0),
        Some(e) => format!("{:.1}%", e * 100.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(elapsed_ms: u64, total_ms: u64, naive: Option<u64>) -> PredictionPoint {
        PredictionPoint {
            elapsed_ms,
            total_ms: Some(total_ms),
            low_ms: total_ms,
            high_ms: Some(total_ms),
            downtime_ms: 0,
            naive_total_ms: naive,
            ..Default::default()
        }
    }

    #[test]
    fn estimate_in_force_is_the_last_before() {
        let e = [
            Estimate {
                at_ms: 1000,
                total_ms: 9000,
            },
            Estimate {
                at_ms: 2000,
                total_ms: 11000,
            },
            Estimate {
                at_ms: 3000,
                total_ms: 10500,
            },
        ];
        assert_eq!(in_force(&e, 999.0), None);
        assert_eq!(in_force(&e, 1000.0).unwrap().total_ms, 9000);
        assert_eq!(in_force(&e, 2999.9).unwrap().total_ms, 11000);
        assert_eq!(in_force(&e, 1e9).unwrap().total_ms, 10500);
        // Order of the history does not matter.
        let mut r = e.to_vec();
        r.reverse();
        assert_eq!(in_force(&r, 2500.0).unwrap().total_ms, 11000);
    }

    #[test]
    fn errors_at_the_four_fractions() {
        // Actual 10 s: fractions at 1, 2.5, 5 and 7.5 s.
        let points = [
            pt(1200, 20000, Some(30000)),
            pt(2200, 12000, None),
            pt(4800, 10500, Some(9000)),
            pt(7600, 10000, Some(10000)),
            pt(10000, 10000, Some(10000)),
        ];
        let p = errors_at_fractions(&pacer_estimates(&points), 10000);
        assert_eq!(p[0], None); // nothing made before 1 s
        assert!((p[1].unwrap() - 0.2).abs() < 1e-12); // 12 s at 2.2 s
        assert!((p[2].unwrap() - 0.05).abs() < 1e-12); // 10.5 s at 4.8 s
        assert!((p[3].unwrap() - 0.05).abs() < 1e-12); // 7.6 s is after 7.5 s
        let fallback = [
            Estimate {
                at_ms: 500,
                total_ms: 1,
            },
            Estimate {
                at_ms: 2000,
                total_ms: 15000,
            },
        ];
        let (n, flagged) = naive_errors(&points, &fallback, 10000);
        assert_eq!(n[0], None);
        // The point in force at 2.5 s has no naive estimate: the fallback's, flagged.
        assert!((n[1].unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(flagged, [false, true, false, false]);
        assert!((n[2].unwrap() - 0.1).abs() < 1e-12);
        assert!((n[3].unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(rel_error(5, 0), None);
    }

    #[test]
    fn verdicts() {
        let a = [Some(0.5), Some(0.04), Some(0.02), Some(0.01)];
        let b = [Some(0.1), Some(0.30), Some(0.20), Some(0.10)];
        let v = Verdict::of(&[(a, b)]);
        assert_eq!(v.pacer_median, Some(0.02));
        assert_eq!(v.naive_median, Some(0.2));
        assert_eq!(v.word(), "ok");
        let v = Verdict::of(&[(b, a)]);
        assert_eq!(v.word(), "MISSED both");
        let c = [None, Some(0.08), Some(0.06), Some(0.07)];
        assert_eq!(Verdict::of(&[(c, b)]).word(), "MISSED >5%");
        let d = [None, Some(0.01), Some(0.01), Some(0.01)];
        let e = [None, Some(0.001), Some(0.001), Some(0.001)];
        assert_eq!(Verdict::of(&[(d, e)]).word(), "MISSED naive");
        assert_eq!(Verdict::of(&[([None; 4], [None; 4])]).word(), "n/a");
        assert_eq!(Verdict::of(&[(d, [None; 4])]).word(), "ok");
        // Medians run over every run of the scenario.
        let v = Verdict::of(&[(a, b), (c, b)]);
        assert!((v.pacer_median.unwrap() - 0.05).abs() < 1e-12);
    }

    #[test]
    fn percent_cells() {
        assert_eq!(pct(None), "-");
        assert_eq!(pct(Some(0.0123)), "1.2%");
        assert_eq!(pct(Some(1.62)), "162%");
        assert_eq!(pct(Some(25.0)), "26x");
    }
}
