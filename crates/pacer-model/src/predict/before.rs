//! Predicting a migration that has not started yet.

use super::band::{band, Prediction, Spread};
use super::forward::{DiskState, MigrationState};
use super::inputs::{Plan, PredictError};
use crate::dirty::DirtyModel;

/// Predicts a migration that has not started (`pacer predict`).
///
/// `dirty_rate_bps` is the short-window rate of distinct dirtied bytes (as `calc-dirty-rate`
/// reports), `wss_bytes` the writable working set if known (else unbounded up to RAM).
pub fn predict_before(
    ram_total: u64,
    zero_fraction_guess: f64,
    dirty_rate_bps: f64,
    wss_bytes: Option<u64>,
    link_bps: f64,
    plan: &Plan,
) -> Result<Prediction, PredictError> {
    let wss = wss_bytes.map_or(f64::INFINITY, |w| w as f64);
    let dirty = DirtyModel::new(dirty_rate_bps, wss)?;
    predict_before_model(ram_total, zero_fraction_guess, dirty, None, link_bps, plan)
}

/// [`predict_before`] with the guest's whole dirty model (hot set included) and the disks
/// to copy first, if any.
pub fn predict_before_model(
    ram_total: u64,
    zero_fraction_guess: f64,
    dirty: DirtyModel,
    disk: Option<DiskState>,
    link_bps: f64,
    plan: &Plan,
) -> Result<Prediction, PredictError> {
    plan.validate()?;
    if ram_total == 0 {
        return Err(PredictError::InvalidRamSize);
    }
    if !(0.0..=1.0).contains(&zero_fraction_guess) {
        return Err(PredictError::InvalidZeroFraction(zero_fraction_guess));
    }
    if !(link_bps.is_finite() && link_bps > 0.0) {
        return Err(PredictError::InvalidLinkRate(link_bps));
    }
    let dirty = DirtyModel::new(dirty.rate_bps, dirty.wss_bytes)?
        .with_hot(dirty.hot_bytes)
        .capped(ram_total as f64);
    let mut state = MigrationState::before(ram_total, zero_fraction_guess, dirty, *plan);
    state.disk = disk;
    let v = plan.bandwidth_cap_bps.map_or(link_bps, |c| c.min(link_bps));
    Ok(band(
        &state,
        v,
        // A fresh measurement: the dirty rate within about 25% (sampled pages, a guest
        // that varies), the link within about 5% (a timed upload).
        Spread {
            bandwidth: 0.05,
            dirty: 0.25,
        },
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: f64 = 1e6;
    const GIB: u64 = 1 << 30;

    #[test]
    fn before_and_validation() {
        let p = predict_before(
            GIB,
            0.5,
            10.0 * MB,
            Some(200_000_000),
            25.0 * MB,
            &Plan::default(),
        )
        .unwrap();
        assert!(
            p.low_s <= p.total_s && p.total_s <= p.high_s && p.converges,
            "{p:?}"
        );
        assert!(p.total_s > 20.0 && p.total_s < 40.0, "{p:?}");
        assert!(predict_before(0, 0.5, 0.0, None, 1.0, &Plan::default()).is_err());
        assert!(predict_before(GIB, 1.5, 0.0, None, 1.0, &Plan::default()).is_err());
        assert!(predict_before(GIB, 0.5, -1.0, None, 1.0, &Plan::default()).is_err());
        assert!(predict_before(GIB, 0.5, 0.0, None, 0.0, &Plan::default()).is_err());
    }
}
