//! The operator side of Pacer: what the `pacer` command does, as a library.
//!
//! - [`hosts`]: the hosts file (which agents there are, how to reach them);
//! - [`vm`]: start, list, show, stop, adopt, console, verify;
//! - [`migrate`]: one migration, followed with a live progress display;
//! - [`group`]: several VMs moved so that they finish together;
//! - [`gang`]: a gang's migration predicted before anything moves;
//! - [`when`]: finish times as the operator writes them.
//!
//! The `pacer` binary is a thin shell over these; `pacer-lab` (test beds, demo,
//! benchmarks) drives the same code, so what it measures is what an operator runs.

pub mod gang;
pub mod group;
pub mod hosts;
pub mod migrate;
pub mod vm;
pub mod when;

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
