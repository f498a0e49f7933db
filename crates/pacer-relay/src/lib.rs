//! The dedup relay's codec, without I/O: what a source host's relay sends over
//! its one connection to a destination host's relay, and how that relay rebuilds
//! each VM's migration stream byte for byte.
//!
//! Each VM's stream is tokenized ([`pacer_qemu::stream`]); a page whose content
//! already crossed this connection (from this VM or another of the gang) goes as a
//! reference to where the receiver keeps it. Contents are compared byte for byte
//! before a reference is sent: a hash only finds candidates. Both ends keep the
//! same contents in the same slots because the receiver stores pages in the order
//! the sender sent them (one ordered connection), so a reference never needs the
//! receiver to trust a hash either.
//!
//! The agent owns the sockets and the scheduling (pacerd's relay); this crate is
//! pure and unit-tested, and it is what the relay benchmarks measure.

pub mod decode;
pub mod encode;
pub mod store;
pub mod wire;

pub use decode::{Decoder, Event};
pub use encode::{Encoder, EncoderStats};
pub use wire::WireError;
