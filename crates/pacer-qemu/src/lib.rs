//! The QEMU side of Pacer: launching QEMU, talking QMP, typed migration and
//! storage commands, QEMU's status words as enums, reading guest memory and disk
//! images, and probing the accelerator. It speaks QEMU so that nothing above it must.

pub mod accel;
pub mod dirty_log;
pub mod disk_sample;
pub mod guest_ram;
pub mod image;
pub mod launch;
pub mod migration;
pub mod qmp;
pub mod status;
pub mod storage;
pub mod stream;

pub use launch::{Accel, LaunchConfig, VmPaths};
pub use qmp::{QmpClient, QmpError};
pub use status::{BlockJobStatus, MigrationStatus, RunState};
