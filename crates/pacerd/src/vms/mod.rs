//! This host's VMs: the registry that owns their records and QMP handles, the
//! launcher, spec checks, and the guest's console and memory check.

pub mod guest;
pub mod lifecycle;
pub mod registry;
pub mod spec;

pub use lifecycle::{LaunchMode, Launcher};
pub use registry::{Registry, VmRecord};
