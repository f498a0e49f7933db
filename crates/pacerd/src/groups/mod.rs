//! Group migrations this agent coordinates: several VMs, from one or several
//! source hosts, moved to one destination so that they finish together. A
//! group is a job of its own, journaled to disk, so it goes on without the
//! client that submitted it and a restarted agent picks it up again.

pub mod coordinator;
pub mod plan;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use pacer_api::{GroupInfo, GroupRequest};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::error::{AgentError, AgentResult};
use crate::journal::Journal;

/// What is journaled about a group: the request and how far it got.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupRecord {
    /// What was asked.
    pub request: GroupRequest,
    /// How it stands.
    pub info: GroupInfo,
}

/// One group.
pub struct Group {
    /// Group id.
    pub id: String,
    /// What was asked.
    pub request: GroupRequest,
    /// Cancelled by request.
    pub cancel: CancellationToken,
    info: Mutex<GroupInfo>,
    journal: Journal,
}

impl Group {
    /// The group as the API shows it.
    pub fn info(&self) -> GroupInfo {
        self.info.lock().unwrap().clone()
    }

    /// Changes the group (not journaled: progress only).
    pub fn update(&self, f: impl FnOnce(&mut GroupInfo)) {
        f(&mut self.info.lock().unwrap());
    }

    /// Changes the group and journals it.
    pub fn commit(&self, f: impl FnOnce(&mut GroupInfo)) {
        let info = {
            let mut i = self.info.lock().unwrap();
            f(&mut i);
            i.clone()
        };
        if let Err(e) = self.journal.write(&self.id, &GroupRecord { request: self.request.clone(), info }) {
            warn!("group {}: cannot journal: {e}", self.id);
        }
    }

    /// Adds an event line, journaled.
    pub fn event(&self, msg: impl Into<String>) {
        let msg = msg.into();
        tracing::info!("group {}: {msg}", self.id);
        self.commit(|i| i.events.push(msg));
    }
}

/// The groups of this agent.
pub struct GroupTable {
    journal: Journal,
    groups: Mutex<HashMap<String, Arc<Group>>>,
}

impl GroupTable {
    /// The table kept in `state_dir/groups`.
    pub fn open(state_dir: &Path) -> std::io::Result<GroupTable> {
        Ok(GroupTable { journal: Journal::open(state_dir.join("groups"))?, groups: Mutex::default() })
    }

    /// Registers a new group and journals it.
    pub fn insert(&self, request: GroupRequest, info: GroupInfo, cancel: CancellationToken) -> Arc<Group> {
        let g = Arc::new(Group {
            id: info.id.clone(),
            request,
            cancel,
            info: Mutex::new(info),
            journal: self.journal.clone(),
        });
        g.commit(|_| {});
        self.groups.lock().unwrap().insert(g.id.clone(), g.clone());
        g
    }

    /// The groups journaled by an earlier run of the agent.
    pub fn journaled(&self) -> Vec<GroupRecord> {
        self.journal.read_all()
    }

    /// A group by id.
    pub fn get(&self, id: &str) -> AgentResult<Arc<Group>> {
        self.groups.lock().unwrap().get(id).cloned().ok_or_else(|| AgentError::UnknownGroup(id.into()))
    }

    /// Every group, oldest first.
    pub fn list(&self) -> Vec<GroupInfo> {
        let groups: Vec<Arc<Group>> = self.groups.lock().unwrap().values().cloned().collect();
        let mut v: Vec<GroupInfo> = groups.iter().map(|g| g.info()).collect();
        v.sort_by_key(|g| (g.started_unix_ms, g.id.clone()));
        v
    }
}
