//! The QEMU side of Pacer: launching QEMU, talking QMP, typed migration commands,
//! and probing the accelerator.

pub mod accel;
pub mod disk_sample;
pub mod guest_ram;
pub mod image;
pub mod launch;
pub mod migration;
pub mod qmp;
pub mod storage;

pub use launch::{Accel, LaunchConfig, VmPaths};
pub use qmp::{QmpClient, QmpError};
