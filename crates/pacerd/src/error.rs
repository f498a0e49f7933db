//! The agent's one error type. Its text is the message the client sees (what is
//! wrong and what to do); its [`ErrorCode`] is what a program branches on, and
//! the HTTP status follows from the code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pacer_api::{ClientError, ErrorBody, ErrorCode};

/// Everything an agent operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A request value is wrong; the text names it and the range to use.
    #[error("{0}")]
    Invalid(String),
    /// No VM of that name here.
    #[error("no VM named {0:?} on this host; `pacer vm list` shows the VMs")]
    UnknownVm(String),
    /// No job of that id here.
    #[error("no job {0:?} on this host; `pacer job list` lists them")]
    UnknownJob(String),
    /// No group of that id here.
    #[error("no group {0:?} on this host; `pacer group list` lists them")]
    UnknownGroup(String),
    /// No such endpoint.
    #[error("no such API endpoint; see docs/agent.md for the API")]
    NoRoute,
    /// The name is taken.
    #[error("a VM named {0:?} already exists on this host")]
    VmExists(String),
    /// A file the request would create is already there.
    #[error("{0} already exists on {1}")]
    FileExists(String, String),
    /// The VM is already being moved.
    #[error("VM {vm:?} is already being migrated by job {job}")]
    AlreadyMigrating {
        /// VM name.
        vm: String,
        /// The job moving it.
        job: String,
    },
    /// The VM is being moved, so it cannot be stopped.
    #[error("VM {vm:?} is being migrated by job {job}; cancel the job first")]
    Migrating {
        /// VM name.
        vm: String,
        /// The job moving it.
        job: String,
    },
    /// Only a running VM can be migrated.
    #[error("VM {vm:?} is {state}, not running: only a running VM can be migrated")]
    NotRunning {
        /// VM name.
        vm: String,
        /// QEMU's run state.
        state: String,
    },
    /// Pacer cannot do this with this VM.
    #[error("{0}")]
    Unsupported(String),
    /// Not enough memory on the host.
    #[error("{0}")]
    InsufficientMemory(String),
    /// Not enough disk space on the host.
    #[error("{0}")]
    InsufficientSpace(String),
    /// An incremental copy's base image is missing.
    #[error("{0}")]
    MissingBacking(String),
    /// Not an incoming VM.
    #[error("VM {0:?} is not an incoming migration here")]
    NotIncoming(String),
    /// No console known.
    #[error("{0}")]
    NoConsole(String),
    /// A job or group that already ended.
    #[error("{what} {id} already ended ({how}); nothing to {action}")]
    Ended {
        /// `job` or `group`.
        what: &'static str,
        /// Its id.
        id: String,
        /// How it ended.
        how: String,
        /// What was asked.
        action: &'static str,
    },
    /// A strict finish target that cannot be met.
    #[error("{0}")]
    TargetInfeasible(String),
    /// QEMU or a peer failed, or a peer could not be reached.
    #[error("{0}")]
    Upstream(String),
    /// A peer agent answered with an error: its code is kept.
    #[error("{host}: {message}")]
    Peer {
        /// Which peer.
        host: String,
        /// The peer's code.
        code: ErrorCode,
        /// The peer's message.
        message: String,
    },
    /// QMP failed.
    #[error(transparent)]
    Qmp(#[from] pacer_qemu::QmpError),
    /// The agent is stopping.
    #[error("the agent is shutting down; retry when it is back")]
    ShuttingDown,
    /// A fault of the agent's own.
    #[error("{0}")]
    Internal(String),
}

impl AgentError {
    /// The machine-readable code.
    pub fn code(&self) -> ErrorCode {
        use AgentError::*;
        match self {
            Invalid(_) => ErrorCode::BadRequest,
            UnknownVm(_) | UnknownJob(_) | UnknownGroup(_) | NoRoute => ErrorCode::NotFound,
            VmExists(_) | FileExists(..) => ErrorCode::AlreadyExists,
            AlreadyMigrating { .. } => ErrorCode::AlreadyMigrating,
            Migrating { .. } => ErrorCode::Migrating,
            NotRunning { .. } => ErrorCode::NotRunning,
            Unsupported(_) => ErrorCode::Unsupported,
            InsufficientMemory(_) => ErrorCode::InsufficientMemory,
            InsufficientSpace(_) => ErrorCode::InsufficientSpace,
            MissingBacking(_) => ErrorCode::MissingBacking,
            NotIncoming(_) => ErrorCode::NotIncoming,
            NoConsole(_) => ErrorCode::NoConsole,
            Ended { .. } => ErrorCode::Ended,
            TargetInfeasible(_) => ErrorCode::TargetInfeasible,
            Upstream(_) | Qmp(_) => ErrorCode::UpstreamFailed,
            // A peer's own refusal (no room, bad request) is the answer's reason too;
            // its faults are ours to report as upstream ones.
            Peer { code, .. } => match code {
                ErrorCode::Internal | ErrorCode::Unknown | ErrorCode::Unauthorized => ErrorCode::UpstreamFailed,
                c => *c,
            },
            ShuttingDown => ErrorCode::ShuttingDown,
            Internal(_) => ErrorCode::Internal,
        }
    }

    /// The error a peer call failed with, naming the peer.
    pub fn from_peer(host: &str, e: ClientError) -> AgentError {
        match e {
            ClientError::Api { code, message, .. } => AgentError::Peer { host: host.to_string(), code, message },
            other => AgentError::Upstream(format!("{host}: {other}")),
        }
    }

    /// An internal error from anything displayable.
    pub fn internal(e: impl std::fmt::Display) -> AgentError {
        AgentError::Internal(e.to_string())
    }
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        let code = self.code();
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
        (status, Json(ErrorBody { code, message: self.to_string() })).into_response()
    }
}

/// Result type of agent operations.
pub type AgentResult<T> = Result<T, AgentError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_the_text_and_codes_give_the_status() {
        let e = AgentError::AlreadyMigrating { vm: "vm".into(), job: "job-1".into() };
        assert_eq!(e.to_string(), "VM \"vm\" is already being migrated by job job-1");
        assert_eq!(e.code(), ErrorCode::AlreadyMigrating);
        assert_eq!(e.code().http_status(), 409);
        let p = AgentError::from_peer(
            "h2",
            ClientError::Api { status: 409, code: ErrorCode::InsufficientMemory, message: "no room".into() },
        );
        assert_eq!((p.code(), p.to_string().as_str()), (ErrorCode::InsufficientMemory, "h2: no room"));
        let i = AgentError::from_peer(
            "h2",
            ClientError::Api { status: 500, code: ErrorCode::Internal, message: "oops".into() },
        );
        assert_eq!(i.code(), ErrorCode::UpstreamFailed);
        assert_eq!(AgentError::UnknownVm("x".into()).code().http_status(), 404);
    }
}
