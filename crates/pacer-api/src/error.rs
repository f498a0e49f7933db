//! The API's errors on the wire: a machine-readable [`ErrorCode`] and a message
//! saying what is wrong and what to do. The HTTP status follows from the code,
//! so agent and client agree on it.

use serde::{Deserialize, Serialize};

/// What kind of error an agent answered with. Clients branch on this, never on
/// the message. A code a newer agent adds reads as [`ErrorCode::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or a value is out of range (400).
    BadRequest,
    /// Missing or wrong API token (401).
    Unauthorized,
    /// No such VM, job, group or endpoint (404).
    NotFound,
    /// A VM of that name (or a file the request would create) already exists (409).
    AlreadyExists,
    /// The VM is already being migrated (409).
    AlreadyMigrating,
    /// The VM is being migrated: cancel the job first (409).
    Migrating,
    /// The VM is not running (409).
    NotRunning,
    /// Pacer cannot do this with this VM, e.g. migrate an adopted VM (409).
    Unsupported,
    /// The host cannot give the memory asked for (409).
    InsufficientMemory,
    /// The host has too little disk space for the disks (409).
    InsufficientSpace,
    /// An incremental copy's base image is missing at the destination (409).
    MissingBacking,
    /// The VM is not an incoming migration on this host (409).
    NotIncoming,
    /// The VM has no console Pacer knows of (409).
    NoConsole,
    /// The job or group has already ended (409).
    Ended,
    /// A finish target that cannot be met, refused because the request was strict (409).
    TargetInfeasible,
    /// A peer agent or QEMU failed or could not be reached (502).
    UpstreamFailed,
    /// The agent is shutting down (503).
    ShuttingDown,
    /// A fault of the agent's own (500).
    Internal,
    /// A code this client does not know (from a newer agent).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The HTTP status an agent answers this code with.
    pub fn http_status(self) -> u16 {
        use ErrorCode::*;
        match self {
            BadRequest => 400,
            Unauthorized => 401,
            NotFound => 404,
            AlreadyExists | AlreadyMigrating | Migrating | NotRunning | Unsupported
            | InsufficientMemory | InsufficientSpace | MissingBacking | NotIncoming | NoConsole
            | Ended | TargetInfeasible => 409,
            UpstreamFailed | Unknown => 502,
            ShuttingDown => 503,
            Internal => 500,
        }
    }

    /// Its word on the wire (`not_found`).
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            BadRequest => "bad_request",
            Unauthorized => "unauthorized",
            NotFound => "not_found",
            AlreadyExists => "already_exists",
            AlreadyMigrating => "already_migrating",
            Migrating => "migrating",
            NotRunning => "not_running",
            Unsupported => "unsupported",
            InsufficientMemory => "insufficient_memory",
            InsufficientSpace => "insufficient_space",
            MissingBacking => "missing_backing",
            NotIncoming => "not_incoming",
            NoConsole => "no_console",
            Ended => "ended",
            TargetInfeasible => "target_infeasible",
            UpstreamFailed => "upstream_failed",
            ShuttingDown => "shutting_down",
            Internal => "internal",
            Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Body of every API error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// What is wrong and what to do.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_words_and_unknown_ones_are_tolerated() {
        for c in [ErrorCode::NotFound, ErrorCode::TargetInfeasible, ErrorCode::InsufficientSpace] {
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{}\"", c.as_str()));
        }
        let b: ErrorBody = serde_json::from_str(r#"{"code":"quota_exceeded","message":"m"}"#).unwrap();
        assert_eq!(b.code, ErrorCode::Unknown);
        assert_eq!(ErrorCode::NotFound.http_status(), 404);
        assert_eq!(ErrorCode::Ended.http_status(), 409);
    }
}
