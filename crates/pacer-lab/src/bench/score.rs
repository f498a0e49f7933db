//! Scoring predictions against what happened: the absolute error of a predicted
//! total time at fixed fractions of the ACTUAL duration, using the prediction in
//! force then (the last one made at or before that moment); how often the band
//! held the actual total and how wide it was; and, for a migration that does not
//! converge, how soon Pacer said so (and for one that does, how long it wrongly
//! said it would not).

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
/// An error at least this large comes from a "does not converge" verdict
/// ([`NEVER_MS`]) in a migration that ended: an infinite error, written `never`.
pub const NEVER_ERROR: f64 = 1e9;
/// The coverage the band claims (`pacer_model::predict::BAND_COVERAGE`).
pub const BAND_COVERAGE: f64 = 0.8;
/// The band goal: over all runs, the actual total inside the band this often.
pub const BAND_GOAL: (f64, f64) = (0.70, 0.90);
/// Index in [`FRACTIONS`] from which predictions count for the band (10%).
pub const BAND_FROM: f64 = 0.10;
/// The recognition goal: a migration that does not converge said so this soon
/// after the condition (dirty rate above the link) became true, ms.
pub const GOAL_RECOGNISED_MS: u64 = 5_000;
/// The goal of the prediction before the start, where nothing changes after it.
pub const GOAL_BEFORE_ERROR: f64 = 0.10;

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

/// Whether a prediction says pre-copy does not converge as it runs.
pub fn is_stuck(p: &PredictionPoint) -> bool {
    p.total_ms.is_none() && p.stuck.is_some()
}

/// The prediction in force at `t_ms`: the last made at or before it.
pub fn point_in_force(points: &[PredictionPoint], t_ms: f64) -> Option<&PredictionPoint> {
    points
        .iter()
        .filter(|p| p.elapsed_ms as f64 <= t_ms)
        .max_by_key(|p| p.elapsed_ms)
}

/// How long, in ms of the job's time within `[from_ms, to_ms)`, a prediction for
/// which `pick` holds was the one in force, and how many such predictions were
/// made in that time (one made before `from_ms` and still in force counts too).
pub fn in_force_ms(
    points: &[PredictionPoint],
    from_ms: u64,
    to_ms: u64,
    pick: impl Fn(&PredictionPoint) -> bool,
) -> (u64, usize) {
    let mut sorted: Vec<&PredictionPoint> = points.iter().collect();
    sorted.sort_by_key(|p| p.elapsed_ms);
    let mut ms = 0;
    let mut count = 0;
    for (i, p) in sorted.iter().enumerate() {
        let end = sorted.get(i + 1).map_or(to_ms, |n| n.elapsed_ms.min(to_ms));
        let start = p.elapsed_ms.max(from_ms);
        if end > start && pick(p) {
            ms += end - start;
            count += 1;
        }
    }
    (ms, count)
}

/// When Pacer recognised that pre-copy does not converge: ms from `from_ms` (the
/// moment the condition became true, job time) to the first "does not converge"
/// prediction made at or after it; None if none was.
pub fn recognised_after(points: &[PredictionPoint], from_ms: u64) -> Option<u64> {
    points
        .iter()
        .filter(|p| p.elapsed_ms >= from_ms && is_stuck(p))
        .map(|p| p.elapsed_ms - from_ms)
        .min()
}

/// The band scored against the actual total of a completed migration.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct BandScore {
    /// Predictions scored: those made from 10% of the actual duration to its end.
    pub scored: usize,
    /// Of them, those whose band held the actual total (low <= actual <= high, or
    /// no high).
    pub inside: usize,
    /// Of them, those whose band had no late end (an open top).
    pub open_top: usize,
    /// Mean of (high - low) / actual over the scored predictions with a top.
    pub mean_width: Option<f64>,
    /// At 10, 25, 50 and 75% of the actual duration: whether the band in force
    /// held the actual total (None: no prediction yet).
    pub inside_at: [Option<bool>; 4],
    /// Its relative width then (None: no prediction yet, or an open top).
    pub width_at: [Option<f64>; 4],
}

impl BandScore {
    /// The share of scored predictions whose band held the actual total.
    pub fn coverage(&self) -> Option<f64> {
        (self.scored > 0).then(|| self.inside as f64 / self.scored as f64)
    }
}

fn holds(p: &PredictionPoint, actual_ms: u64) -> bool {
    p.low_ms <= actual_ms && p.high_ms.is_none_or(|h| actual_ms <= h)
}

fn width(p: &PredictionPoint, actual_ms: u64) -> Option<f64> {
    let h = p.high_ms?;
    (actual_ms > 0).then(|| h.saturating_sub(p.low_ms) as f64 / actual_ms as f64)
}

/// Scores the band of every prediction made from [`BAND_FROM`] of the actual
/// duration on (to its end), and of those in force at [`FRACTIONS`].
pub fn band_score(points: &[PredictionPoint], actual_ms: u64) -> BandScore {
    let from = BAND_FROM * actual_ms as f64;
    let mut b = BandScore::default();
    let mut widths = Vec::new();
    for p in points
        .iter()
        .filter(|p| p.elapsed_ms as f64 >= from && p.elapsed_ms <= actual_ms)
    {
        b.scored += 1;
        b.inside += usize::from(holds(p, actual_ms));
        match width(p, actual_ms) {
            Some(w) => widths.push(w),
            None => b.open_top += 1,
        }
    }
    b.mean_width = (!widths.is_empty()).then(|| widths.iter().sum::<f64>() / widths.len() as f64);
    for (i, f) in FRACTIONS.iter().enumerate() {
        if let Some(p) = point_in_force(points, f * actual_ms as f64) {
            b.inside_at[i] = Some(holds(p, actual_ms));
            b.width_at[i] = width(p, actual_ms);
        }
    }
    b
}

/// Band scores pooled over runs: every scored prediction counts once.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct BandPool {
    /// Predictions scored.
    pub scored: usize,
    /// Of them, inside.
    pub inside: usize,
    /// Of them, with an open top.
    pub open_top: usize,
    /// `inside / scored`.
    pub coverage: Option<f64>,
    /// Mean relative width over the predictions with a top.
    pub mean_width: Option<f64>,
    /// At 10, 25, 50, 75%: the share of runs whose band in force held the actual.
    pub coverage_at: [Option<f64>; 4],
    /// The mean relative width then (bands with a top).
    pub width_at: [Option<f64>; 4],
}

impl BandPool {
    /// Pools band scores.
    pub fn of<'a>(scores: impl IntoIterator<Item = &'a BandScore>) -> BandPool {
        let scores: Vec<&BandScore> = scores.into_iter().collect();
        let mut p = BandPool::default();
        let (mut wsum, mut wn) = (0.0, 0usize);
        for s in &scores {
            p.scored += s.scored;
            p.inside += s.inside;
            p.open_top += s.open_top;
            if let Some(w) = s.mean_width {
                let n = s.scored - s.open_top;
                wsum += w * n as f64;
                wn += n;
            }
        }
        p.coverage = (p.scored > 0).then(|| p.inside as f64 / p.scored as f64);
        p.mean_width = (wn > 0).then(|| wsum / wn as f64);
        for i in 0..FRACTIONS.len() {
            let at: Vec<bool> = scores.iter().filter_map(|s| s.inside_at[i]).collect();
            p.coverage_at[i] = (!at.is_empty())
                .then(|| at.iter().filter(|x| **x).count() as f64 / at.len() as f64);
            let w: Vec<f64> = scores.iter().filter_map(|s| s.width_at[i]).collect();
            p.width_at[i] = (!w.is_empty()).then(|| w.iter().sum::<f64>() / w.len() as f64);
        }
        p
    }

    /// Whether the coverage is within [`BAND_GOAL`] (None: nothing scored).
    pub fn within_goal(&self) -> Option<bool> {
        self.coverage
            .map(|c| (BAND_GOAL.0..=BAND_GOAL.1).contains(&c))
    }
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
        Some(e) if e >= NEVER_ERROR => "never".into(),
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
        let never = rel_error(NEVER_MS, 30_000);
        assert_eq!(pct(never), "never");
    }

    fn band(elapsed_ms: u64, low_ms: u64, high_ms: Option<u64>) -> PredictionPoint {
        PredictionPoint {
            elapsed_ms,
            total_ms: high_ms.map(|h| (low_ms + h) / 2),
            low_ms,
            high_ms,
            ..Default::default()
        }
    }

    fn stuck(elapsed_ms: u64) -> PredictionPoint {
        PredictionPoint {
            elapsed_ms,
            total_ms: None,
            low_ms: elapsed_ms,
            high_ms: None,
            completes_chance: 0.0,
            stuck: Some(Default::default()),
            ..Default::default()
        }
    }

    #[test]
    fn band_coverage_and_width() {
        // Actual 10 s: predictions from 1 s on count.
        let points = [
            band(500, 1000, Some(2000)),    // before 10%: not scored
            band(1000, 8000, Some(12000)),  // inside, width 40%
            band(3000, 10500, Some(11000)), // outside (too late), width 5%
            band(6000, 9000, None),         // inside, open top
            band(8000, 9500, Some(10000)),  // inside (at the edge), width 5%
            band(10_500, 1, Some(2)),       // after the end: not scored
        ];
        let b = band_score(&points, 10_000);
        assert_eq!((b.scored, b.inside, b.open_top), (4, 3, 1));
        assert_eq!(b.coverage(), Some(0.75));
        assert!((b.mean_width.unwrap() - 0.5 / 3.0).abs() < 1e-12);
        // In force at 1, 2.5, 5, 7.5 s.
        assert_eq!(
            b.inside_at,
            [Some(true), Some(true), Some(false), Some(true)]
        );
        assert_eq!(b.width_at[3], None, "an open top has no width");
        assert!((b.width_at[0].unwrap() - 0.4).abs() < 1e-12);
        let none = band_score(&[], 10_000);
        assert_eq!((none.coverage(), none.inside_at), (None, [None; 4]));
        // Pooled: every prediction counts once.
        let other = BandScore {
            scored: 1,
            inside: 1,
            open_top: 0,
            mean_width: Some(0.5),
            inside_at: [None, Some(true), Some(true), Some(true)],
            width_at: [None, Some(0.5), Some(0.5), Some(0.5)],
        };
        let p = BandPool::of([&b, &other]);
        assert_eq!((p.scored, p.inside, p.open_top), (5, 4, 1));
        assert_eq!(p.coverage, Some(0.8));
        assert_eq!(p.within_goal(), Some(true));
        // (0.4 + 0.05 + 0.05 + 0.5) / 4
        assert!((p.mean_width.unwrap() - 0.25).abs() < 1e-12);
        assert_eq!(p.coverage_at[0], Some(1.0));
        assert_eq!(p.coverage_at[2], Some(0.5));
        assert_eq!(BandPool::of([]).within_goal(), None);
        let low = BandPool {
            coverage: Some(0.6),
            ..Default::default()
        };
        assert_eq!(low.within_goal(), Some(false));
    }

    #[test]
    fn recognition_and_verdicts_in_force() {
        let points = [
            band(1000, 8000, Some(12000)),
            stuck(2000),
            band(4000, 8000, Some(12000)),
            stuck(6000),
            stuck(7000),
        ];
        assert!(is_stuck(&points[1]) && !is_stuck(&points[0]));
        // A total of None without advice is not a verdict.
        let bare = PredictionPoint {
            total_ms: None,
            ..Default::default()
        };
        assert!(!is_stuck(&bare));
        assert_eq!(recognised_after(&points, 0), Some(2000));
        // The condition came at 3 s: the first verdict after it, at 6 s.
        assert_eq!(recognised_after(&points, 3000), Some(3000));
        assert_eq!(recognised_after(&points, 7001), None);
        // Stuck in force: 2-4 s and 6 s to the end (10 s).
        assert_eq!(in_force_ms(&points, 0, 10_000, is_stuck), (6000, 3));
        // Within 3-6.5 s: 3-4 s (the verdict of 2 s, still in force) and 6-6.5 s.
        assert_eq!(in_force_ms(&points, 3000, 6500, is_stuck), (1500, 2));
        // Converging verdicts in force after the first stuck one (2 s).
        assert_eq!(
            in_force_ms(&points, 2000, 10_000, |p| !is_stuck(p)),
            (2000, 1)
        );
        assert_eq!(in_force_ms(&[], 0, 10, is_stuck), (0, 0));
    }
}
