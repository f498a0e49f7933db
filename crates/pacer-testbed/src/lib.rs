//! The Pacer test bed: test hosts in network namespaces joined by shaped links,
//! an agent per host, and the guest image with its workloads. Used by tests,
//! benchmarks and the demo alike.

pub mod bed;
pub mod guest_image;
pub mod net;
