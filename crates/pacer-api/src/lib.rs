//! The agent's HTTP/JSON API: the wire types, the error codes, the routes (one
//! place for the agent's router and the client), the job phases, and a typed
//! client.
//!
//! This crate does not depend on the model crate (`pacer-model`): its types are
//! a contract with other agents and with clients of other versions, so they
//! change only on purpose; the model's types change whenever the model learns
//! something. The agent converts between the two (`pacerd`'s `migration::plan`).

pub mod client;
pub mod error;
pub mod hosts;
pub mod phase;
pub mod routes;
pub mod types;

pub use client::{AgentClient, ClientError};
pub use error::{ErrorBody, ErrorCode};
pub use phase::JobPhase;
pub use types::*;
