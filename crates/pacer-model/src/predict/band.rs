//! The uncertainty band: the forward model replayed with its inputs pushed each way.

use serde::{Deserialize, Serialize};

use super::forward::{MigrationState, Stuck};
use crate::dirty::DirtyModel;

/// Share of the remaining time always added to each side of the band.
const BASE_BAND: f64 = 0.03;
/// The band's coverage: the actual finish falls between `low_s` and `high_s` this often.
pub const BAND_COVERAGE: f64 = 0.8;
/// The inputs' spreads are multiplied by this before they make the band (calibrated so
/// that the band covers [`BAND_COVERAGE`] of simulated and measured runs).
pub const SPREAD_CALIBRATION: f64 = 1.0;
/// Standard normal quantiles at 1/14, 3/14, ..., 13/14: seven equally likely values of an
/// input's error.
const NODES: [f64; 7] = [-1.465, -0.792, -0.366, 0.0, 0.366, 0.792, 1.465];

/// A predicted finish with its uncertainty band.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Predicted total migration time, seconds from its start (infinite: it does not end
    /// on its own, see `stuck`).
    pub total_s: f64,
    /// Early end of the band, seconds from the start.
    pub low_s: f64,
    /// Late end of the band, seconds from the start (infinite: the band reaches inputs at
    /// which pre-copy does not converge).
    pub high_s: f64,
    /// Predicted downtime, ms.
    pub downtime_ms: f64,
    /// Low end of the downtime band, ms.
    pub downtime_low_ms: f64,
    /// High end of the downtime band, ms.
    pub downtime_high_ms: f64,
    /// Predicted seconds still to go (infinite when it does not end).
    pub remaining_s: f64,
    /// False when pre-copy would not converge on its own (see [`Finish::converges`](super::Finish::converges)).
    pub converges: bool,
    /// Whether the migration ends on its own under its plan ([`Finish::completes`](super::Finish::completes)).
    pub completes: bool,
    /// How likely it is to end on its own, given how far the inputs may be off.
    pub completes_chance: f64,
    /// Where pre-copy is stuck and what would finish it, when it does not end on its own.
    pub stuck: Option<Stuck>,
    /// The band (low, middle, high; seconds from the start) over the likely inputs under
    /// which it does end on its own; none when under none of them it does.
    pub if_completes: Option<(f64, f64, f64)>,
    /// Pre-copy at the switch-over edge: rounds come within reach of the threshold and
    /// miss, and the finish is the rounds still to miss ([`super::edge`]).
    #[serde(default)]
    pub edge: Option<super::edge::Edge>,
}

impl Prediction {
    /// A finished migration: everything collapses onto `t_s`.
    pub(super) fn done(t_s: f64, downtime_ms: f64) -> Prediction {
        Prediction {
            total_s: t_s,
            low_s: t_s,
            high_s: t_s,
            downtime_ms,
            downtime_low_ms: downtime_ms,
            downtime_high_ms: downtime_ms,
            remaining_s: 0.0,
            converges: true,
            completes: true,
            completes_chance: 1.0,
            stuck: None,
            if_completes: Some((t_s, t_s, t_s)),
            edge: None,
        }
    }
}

/// How far the inputs may be off, as relative standard deviations.
#[derive(Debug, Clone, Copy)]
pub(super) struct Spread {
    pub(super) bandwidth: f64,
    pub(super) dirty: f64,
}

/// The weighted `q` quantile of `(value, weight)` pairs (infinite values sort last).
fn quantile(points: &mut [(f64, f64)], q: f64) -> f64 {
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = points.iter().map(|p| p.1).sum();
    let mut acc = 0.0;
    for p in points.iter() {
        acc += p.1;
        if acc >= q * total - 1e-12 {
            return p.0;
        }
    }
    points.last().map_or(f64::INFINITY, |p| p.0)
}

/// Replays `state` at `v` over the likely values of its inputs (bandwidth and dirty rate
/// off by up to `spread`, calibrated) and assembles the point, the band and the chance that
/// the migration ends on its own. Without a dirty model (`unknown_dirty`: the guess), the
/// guest is as likely idle as writing like the guess.
pub(super) fn band(
    state: &MigrationState,
    v: f64,
    spread: Spread,
    unknown_dirty: Option<DirtyModel>,
) -> Prediction {
    let point = state.finish(v);
    let now = state.now_s;
    let dirties: Vec<(DirtyModel, f64)> = match unknown_dirty {
        Some(guess) => vec![(DirtyModel::IDLE, 0.5), (guess, 0.5)],
        None => NODES
            .iter()
            .map(|z| (state.dirty.scaled((z * spread.dirty * SPREAD_CALIBRATION).exp()), 1.0 / 7.0))
            .collect(),
    };
    let mut totals = Vec::with_capacity(dirties.len() * NODES.len());
    let mut downtimes = vec![point.downtime_s * 1000.0];
    let mut chance = 0.0;
    for (d, wd) in &dirties {
        let s = state.with_dirty(*d);
        for z in NODES {
            let f = s.finish(v * (1.0 + z * spread.bandwidth * SPREAD_CALIBRATION).max(0.2));
            let w = wd / 7.0;
            if f.completes {
                chance += w;
                downtimes.push(f.downtime_s * 1000.0);
                totals.push((f.total_s.max(now), w));
            } else {
                totals.push((f64::INFINITY, w));
            }
        }
    }
    let tail = (1.0 - BAND_COVERAGE) / 2.0;
    let mut done: Vec<(f64, f64)> = totals.iter().copied().filter(|t| t.0.is_finite()).collect();
    let if_completes = (!done.is_empty()).then(|| {
        (quantile(&mut done, tail), quantile(&mut done, 0.5), quantile(&mut done, 1.0 - tail))
    });
    let (mut lo, mut hi) = (quantile(&mut totals, tail), quantile(&mut totals, 1.0 - tail));
    let total = if point.completes { point.total_s.max(now) } else { f64::INFINITY };
    let rem = if total.is_finite() { total - now } else { 0.0 };
    lo = (lo.min(total) - BASE_BAND * rem).max(now);
    hi = hi.max(total) + BASE_BAND * rem;
    let dlo = downtimes.iter().cloned().fold(f64::INFINITY, f64::min);
    let dhi = downtimes.iter().cloned().fold(0.0, f64::max);
    let dt = point.downtime_s * 1000.0;
    let finite = |x: f64, fallback: f64| if x.is_finite() { x } else { fallback };
    Prediction {
        total_s: total,
        low_s: if lo.is_finite() { lo } else { now },
        high_s: hi,
        downtime_ms: finite(dt, 0.0),
        downtime_low_ms: finite(dlo * 0.9, 0.0).min(finite(dt, 0.0)),
        downtime_high_ms: finite(dhi * 1.1, 0.0).max(finite(dt, 0.0)),
        remaining_s: total - now,
        converges: point.converges,
        completes: point.completes,
        completes_chance: chance,
        stuck: if point.completes { None } else { state.stuck(v) },
        if_completes,
        edge: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::{Phase, Plan};

    #[test]
    fn band_holds_the_point_and_narrows_at_the_end() {
        let dirty = DirtyModel::new(10e6, 200e6).unwrap();
        let mut s = MigrationState::before(1 << 30, 0.5, dirty, Plan::default());
        let spread = Spread {
            bandwidth: 0.1,
            dirty: 0.5,
        };
        let p = band(&s, 25e6, spread, None);
        assert_eq!(p.total_s, s.finish(25e6).total_s);
        assert!(p.low_s < p.total_s && p.total_s < p.high_s, "{p:?}");
        assert!(p.downtime_low_ms <= p.downtime_ms && p.downtime_ms <= p.downtime_high_ms);
        // Late in pre-copy with little left to send: the band is a sliver.
        s.phase = Phase::PreCopy;
        s.now_s = 40.0;
        s.memory_start_s = Some(0.0);
        s.sync_count = 5;
        s.pending_bytes = 1e6;
        let q = band(&s, 25e6, spread, None);
        assert!(
            q.low_s >= s.now_s && q.low_s <= q.total_s && q.total_s <= q.high_s,
            "{q:?}"
        );
        assert!(
            q.high_s - q.low_s < 0.01 * (p.high_s - p.low_s),
            "{p:?} {q:?}"
        );
    }
}
