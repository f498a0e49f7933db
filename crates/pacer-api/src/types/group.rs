//! Group migrations: the request, each member, the group and its result.

use serde::{Deserialize, Serialize};

use super::*;

/// One VM of a group migration, and where it runs now.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMemberRequest {
    /// VM name.
    pub vm: String,
    /// The agent it runs on, as the coordinating agent reaches it.
    pub source: PeerRef,
}

/// Move several VMs to one destination so that they finish together. The agent
/// this is sent to coordinates the group until it ends, whether or not the
/// client that sent it stays.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRequest {
    /// The VMs, each with its source.
    pub members: Vec<GroupMemberRequest>,
    /// Every member's migration options and destination; its `finish_in_s` is the
    /// group's target (none: the earliest the shared link allows).
    pub migration: MigrateRequest,
    /// Coordinate (predict, plan a common finish, pace, re-target); false starts
    /// every member flat out at once (for comparison).
    #[serde(default = "yes")]
    pub coordinate: bool,
}

/// How a group stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupStatus {
    /// Predicting the members before any moves.
    Planning,
    /// Members are migrating.
    Running,
    /// Every member runs at the destination.
    Completed,
    /// Some or all members did not move; each member's result says where it runs.
    Failed,
    /// Cancelled: members not yet moved stay at their sources.
    Cancelled,
}

impl GroupStatus {
    /// True once the group has ended.
    pub fn is_terminal(self) -> bool {
        !matches!(self, GroupStatus::Planning | GroupStatus::Running)
    }
}

/// Where a group member stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberState {
    /// Not started yet.
    Waiting,
    /// Its migration is being started.
    Starting,
    /// Its migration runs.
    Running,
    /// Moved: it runs at the destination.
    Completed,
    /// Its migration failed: it runs at its source (see its result).
    Failed,
    /// Its migration was cancelled: it runs at its source.
    Cancelled,
    /// Never started (the group ended first, or its source refused): it stays at its source.
    NotStarted,
    /// Its job is gone (its source agent restarted); `fate` says where the VM was found.
    Lost,
}

impl MemberState {
    /// True once the member has ended one way or another.
    pub fn is_terminal(self) -> bool {
        !matches!(self, MemberState::Waiting | MemberState::Starting | MemberState::Running)
    }
}

/// One member of a group as the coordinator reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupMemberInfo {
    /// VM name.
    pub vm: String,
    /// Its source host.
    pub source: String,
    /// Where it stands.
    pub state: MemberState,
    /// Its migration job on the source, once started.
    pub job_id: Option<String>,
    /// Seconds after the group started that its migration was started.
    pub started_s: Option<f64>,
    /// The member's latest progress (percent done, phase), while it runs.
    pub progress: Option<Progress>,
    /// Its result, once ended.
    pub result: Option<MigrationResult>,
    /// When it finished, seconds after the group started.
    pub finish_s: Option<f64>,
    /// Where the VM runs now and why, in words (e.g. "runs on h2", "not started: stays on h1").
    pub fate: String,
}

/// A group migration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Group id.
    pub id: String,
    /// The coordinating agent's host.
    pub coordinator: String,
    /// Destination host.
    pub destination: String,
    /// Status.
    pub status: GroupStatus,
    /// Members, in the order given.
    pub members: Vec<GroupMemberInfo>,
    /// The common target, seconds after the group started (none: uncoordinated).
    pub target_s: Option<f64>,
    /// When the group started (ms since the Unix epoch).
    pub started_unix_ms: u64,
    /// Notable events, oldest first.
    pub events: Vec<String>,
    /// The outcome, once every member has ended.
    pub result: Option<GroupResult>,
}

/// A group's outcome: what `pacer migrate-group --json` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupResult {
    /// Every member's result, in the order given (a member never started has none).
    pub results: Vec<Option<MigrationResult>>,
    /// When each finished, seconds after the group started.
    pub finish_s: Vec<Option<f64>>,
    /// The common target aimed at last (none: uncoordinated).
    pub target_s: Option<f64>,
    /// Last finish minus first finish of the members that completed, seconds.
    pub spread_s: f64,
    /// Time during which some members ran at the destination and others at their source, seconds.
    pub split_s: f64,
    /// Whether every member completed.
    pub all_completed: bool,
}
