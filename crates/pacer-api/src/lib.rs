//! The agent's HTTP/JSON API: shared types and a small client.

pub mod client;
pub mod hosts;
pub mod types;

pub use client::{AgentClient, ClientError};
pub use types::*;
