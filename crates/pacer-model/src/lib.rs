//! Pure models for Pacer: unit parsing, smoothing, progress, convergence and stall detection,
//! and the progress-management core: finish-time prediction, pacing to a target, coordinated
//! groups, and a pre-copy simulator to check them against.
//!
//! No I/O and no clocks: callers pass times in (seconds as `f64` or milliseconds as `u64`).
#![warn(missing_docs)]

pub mod convergence;
pub mod dirty;
pub mod disk_regions;
pub mod ewma;
pub mod gang;
pub mod group;
pub mod pacing;
pub mod predict;
pub mod progress;
pub mod sim;
#[cfg(test)]
mod sim_checks;
pub mod stall;
pub mod units;

pub use convergence::{ConvergenceConfig, ConvergenceDetector, ConvergenceError, Verdict};
pub use dirty::{DirtyError, DirtyModel};
pub use ewma::{Ewma, EwmaError, RateEstimator};
pub use group::{plan_group, GroupError, GroupPlan};
pub use pacing::{pace, PaceDecision, PaceError};
pub use predict::{
    naive_total, predict_before, NaiveEstimator, predict_before_model, DiskSample, MigrationState, Plan, PredictError, Prediction,
    Predictor, Prior, Sample,
};
pub use progress::MonotonicProgress;
pub use sim::{simulate_precopy, SimError, SimParams, SimRun};
pub use stall::{StallDetector, StallError};
pub use units::{
    format_bytes, format_duration_ms, format_rate, parse_bandwidth, parse_duration,
    parse_nonzero_size, parse_size, UnitError,
};
