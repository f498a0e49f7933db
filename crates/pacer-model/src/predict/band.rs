//! The uncertainty band: the forward model replayed with its inputs pushed each way.

use serde::{Deserialize, Serialize};

use super::forward::{Finish, MigrationState};
use crate::dirty::DirtyModel;

/// Share of the remaining time always added to each side of the band.
const BASE_BAND: f64 = 0.03;

/// A predicted finish with its uncertainty band.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Predicted total migration time, seconds from its start.
    pub total_s: f64,
    /// Early end of the band, seconds from the start.
    pub low_s: f64,
    /// Late end of the band, seconds from the start.
    pub high_s: f64,
    /// Predicted downtime, ms.
    pub downtime_ms: f64,
    /// Low end of the downtime band, ms.
    pub downtime_low_ms: f64,
    /// High end of the downtime band, ms.
    pub downtime_high_ms: f64,
    /// Predicted seconds still to go.
    pub remaining_s: f64,
    /// False when pre-copy would not converge on its own (see [`Finish::converges`]).
    pub converges: bool,
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
        }
    }
}

/// How far the inputs may be off, as relative errors.
#[derive(Debug, Clone, Copy)]
pub(super) struct Spread {
    pub(super) bandwidth: f64,
    pub(super) dirty: f64,
}

/// Replays `state` at `v` with the inputs pushed both ways and assembles the band.
pub(super) fn band(
    state: &MigrationState,
    v: f64,
    spread: Spread,
    unknown_dirty: Option<DirtyModel>,
) -> Prediction {
    let point = state.finish(v);
    let (fast_dirty, slow_dirty) = match unknown_dirty {
        Some(guess) => (DirtyModel::IDLE, guess),
        None => (
            state.dirty.scaled(1.0 - spread.dirty),
            state.dirty.scaled(1.0 + spread.dirty),
        ),
    };
    let fast = state
        .with_dirty(fast_dirty)
        .finish(v * (1.0 + spread.bandwidth));
    let slow = state
        .with_dirty(slow_dirty)
        .finish(v * (1.0 - spread.bandwidth));
    let now = state.now_s;
    let total = point.total_s.max(now);
    let rem = total - now;
    let low = (fast.total_s.min(total) - BASE_BAND * rem).max(now);
    let high = slow.total_s.max(total) + BASE_BAND * rem;
    let ms = |f: &Finish| f.downtime_s * 1000.0;
    let dts = [ms(&point), ms(&fast), ms(&slow)];
    let dlo = dts.iter().cloned().fold(f64::INFINITY, f64::min);
    let dhi = dts.iter().cloned().fold(0.0, f64::max);
    let finite = |x: f64, fallback: f64| if x.is_finite() { x } else { fallback };
    let total = finite(total, now);
    Prediction {
        total_s: total,
        low_s: finite(low, total).min(total),
        high_s: finite(high, total).max(total),
        downtime_ms: finite(ms(&point), 0.0),
        downtime_low_ms: finite(dlo * 0.9, 0.0).min(ms(&point)),
        downtime_high_ms: finite(dhi * 1.1, 0.0).max(ms(&point)),
        remaining_s: total - now,
        converges: point.converges,
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
