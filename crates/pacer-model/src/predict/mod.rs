//! Predicting when a live migration will finish and how long the guest will be paused.
//!
//! # The model
//!
//! A [`MigrationState`] is a snapshot of one migration: what is left of the disk bulk copy,
//! memory still dirty (QEMU's `remaining`), how much of it is zero pages, how long ago the
//! dirty log was last synced, and a [`DirtyModel`] of the guest's writes. Its
//! [`MigrationState::finish`] plays the rest of the migration forward at a given speed `v`:
//!
//! - **Wire cost.** A normal page costs `page + 8` bytes on the wire, a zero page 9 bytes (QEMU
//!   sends a header and one fill byte). `remaining` counts every page, so the fraction of zero
//!   pages among those not yet sent decides how fast the first round really goes: this is why
//!   the naive `remaining / rate` is far off early on.
//! - **Disk first** (as in the original Pacer): the bulk copy `S` takes `S / v`; what the guest
//!   dirties meanwhile (`DS`, by default `disk rate x bulk time`) takes `DS / (v - d_disk)`.
//!   Memory then gets `v - d_disk` while the mirror keeps following writes.
//! - **Pre-copy rounds, as QEMU runs them.** QEMU keeps sending dirty pages and syncs the dirty
//!   log once what is left drops below `threshold = bandwidth x downtime-limit`; after the sync,
//!   if the dirty set is still at or above the threshold it goes on, else it stops the guest and
//!   sends the rest (the downtime). QEMU checks every ~50 ms, so a round leaves on average
//!   `threshold - v x 25 ms` unsent. Round `i` sends `D_i - leftover` in `T_i`, the guest dirties
//!   `dirtied(window since the last sync)` distinct bytes, bounded by its working set, and the
//!   next dirty set is the union of the leftover and the new writes (round one's leftover is
//!   any part of RAM, later ones lie in the working set).
//! - **Non-convergence.** Pre-copy does not converge when the dirty set stops shrinking or the
//!   migration would send more than 3x guest RAM (Xen's rule, as in
//!   [`ConvergenceConfig`]). Plain pre-copy then reports
//!   `converges: false` and the finish if the guest were paused at that point; hybrid switches to
//!   post-copy when [`ConvergenceDetector`] would (as `pacerd` does); post-copy switches after
//!   its delay anyway.
//! - **Post-copy** sends each page still dirty at the switch once: `wire(D) / v`, with only
//!   the switch-over as downtime. **Stop-and-copy** sends all of memory with the guest paused
//!   from the start: downtime equals the total time.
//!
//! The live [`Predictor`] feeds on `query-migrate` samples and estimates the inputs: the
//! bandwidth (a 3 s average of transferred bytes per interval, starting over when a 0.25 s
//! average shows the link's rate has clearly changed), the zero fraction (duplicate vs normal pages in the
//! first round, then among re-sent pages), and the dirty model: each sync of the dirty log
//! reveals how many pages became dirty since the previous one (`remaining` after minus before,
//! plus pages sent in between), a point `(window, bytes)` on the guest's dirtying curve. These
//! points and the measured curve (the prior, refreshed while the migration runs) are fitted
//! together ([`DirtyModel::fit_points`]).
//!
//! The uncertainty band replays the model with the bandwidth and the dirty rate pushed each way
//! by their observed variability (smoothed squared relative error of bandwidth samples, and of
//! predicted vs observed dirty sets), plus 3% of the remaining time. It contains the point
//! estimate and narrows to nothing as the migration ends.
//!
//! [`DirtyModel`]: crate::dirty::DirtyModel
//! [`DirtyModel::fit_points`]: crate::dirty::DirtyModel::fit_points
//! [`ConvergenceConfig`]: crate::convergence::ConvergenceConfig
//! [`ConvergenceDetector`]: crate::convergence::ConvergenceDetector
//!
//! # Where things are
//!
//! - `inputs`: what callers hand in: [`Sample`], [`DiskSample`], [`Status`], [`Plan`],
//!   [`Strategy`], [`Prior`], and [`PredictError`] for unusable ones.
//! - `forward`: the forward model, [`MigrationState::finish`] returning a [`Finish`].
//! - `band`: the uncertainty band around a point estimate, giving a [`Prediction`].
//! - `naive`: the estimate operators get today ([`naive_total`], [`NaiveEstimator`]).
//! - `before`: predicting a migration that has not started ([`predict_before`]).
//! - `online`: the live [`Predictor`].

mod band;
mod before;
mod edge;
mod forward;
mod inputs;
mod naive;
mod online;
mod syncs;

pub use band::Prediction;
pub use before::{predict_before, predict_before_model};
pub use edge::{Edge, EdgeRounds, EDGE_MIN_MISSES, EDGE_MIN_SPAN_S, EDGE_NEAR};
pub use forward::{
    DiskState, Finish, MigrationState, Phase, Stuck, THROTTLE_INCREMENT, THROTTLE_INITIAL, THROTTLE_MAX, CHECK_INTERVAL_S, PAGE_HEADER_BYTES, SWITCHOVER_S,
    ZERO_PAGE_WIRE_BYTES,
};
pub use inputs::{DiskSample, Plan, PredictError, Prior, Sample, Status, Strategy};
pub use naive::{naive_total, NaiveEstimator};
pub use online::Predictor;
pub use syncs::SyncPoints;
