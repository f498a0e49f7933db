//! The Pacer lab: everything for trying Pacer out on one machine, kept apart
//! from the operator's `pacer` command.
//!
//! - [`net`]: test hosts in network namespaces joined by shaped links;
//! - [`bed`]: a test bed, that network plus one `pacerd` agent per host and the
//!   hosts file the CLI finds it by;
//! - [`guest_image`]: the guest image (a Debian kernel and an initramfs with the
//!   `pacer-guest` workload program);
//! - [`live`]: the one test-bed setup of the demo and the benchmarks (image, bed,
//!   guests started and waited for, cleanup);
//! - [`demo`]: the demo, a guest migrated live between two test hosts;
//! - [`bench`]: the benchmarks (baseline, storage, predict, control, group).
//!
//! The `pacer-lab` binary puts these behind `testbed`, `image`, `demo` and
//! `bench` subcommands; the integration tests in `tests/` use the same test bed.

pub mod bed;
pub mod bench;
pub mod demo;
pub mod guest_image;
pub mod live;
pub mod net;
