//! Pure models for Pacer: unit parsing, smoothing, progress, convergence and stall detection.
//!
//! No I/O and no clocks: callers pass times in (seconds as `f64` or milliseconds as `u64`).
#![warn(missing_docs)]

pub mod convergence;
pub mod ewma;
pub mod progress;
pub mod stall;
pub mod units;

pub use convergence::{ConvergenceConfig, ConvergenceDetector, ConvergenceError, Verdict};
pub use ewma::{Ewma, EwmaError, RateEstimator};
pub use progress::MonotonicProgress;
pub use stall::{StallDetector, StallError};
pub use units::{
    format_bytes, format_duration_ms, format_rate, parse_bandwidth, parse_duration,
    parse_nonzero_size, parse_size, UnitError,
};
