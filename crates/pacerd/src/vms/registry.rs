//! The registry of this host's VMs: one persisted record per VM (so a restarted
//! agent re-adopts them: QEMU runs in its own session and outlives the agent),
//! the QMP connection to each, and the memory they were given. It knows nothing
//! of jobs, incoming leases or measurements: their owners keep those.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pacer_api::{VmInfo, VmOrigin, VmSpec, VmState};
use pacer_qemu::launch::pid_alive;
use pacer_qemu::{QmpClient, RunState};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::error::{AgentError, AgentResult};
use crate::journal::Journal;

/// What is persisted about a VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmRecord {
    /// Name.
    pub name: String,
    /// QEMU pid (0 while launching).
    pub pid: i32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// Accelerator in use.
    pub accel: String,
    /// How it came here.
    pub origin: VmOrigin,
    /// Spec, when known (not for adopted VMs).
    pub spec: Option<VmSpec>,
    /// QMP socket.
    pub qmp_socket: PathBuf,
    /// Serial socket, when known.
    pub serial_socket: Option<PathBuf>,
    /// Serial console log, when known.
    pub console_log: Option<PathBuf>,
    /// Runtime directory owned by the agent (removed with the VM), if any.
    pub dir: Option<PathBuf>,
}

struct Entry {
    record: VmRecord,
    qmp: Option<Arc<QmpClient>>,
    /// When this agent launched it (not for re-adopted VMs): its boot is not its work.
    launched_at: Option<Instant>,
}

/// The VMs of this host.
pub struct Registry {
    host_name: String,
    root: PathBuf,
    journal: Journal,
    memory_capacity_mib: Option<u64>,
    vms: Mutex<HashMap<String, Entry>>,
}

impl Registry {
    /// The registry kept in `state_dir/vms`.
    pub fn open(state_dir: &Path, host_name: &str, memory_capacity_mib: Option<u64>) -> std::io::Result<Registry> {
        let root = state_dir.join("vms");
        Ok(Registry {
            host_name: host_name.to_string(),
            journal: Journal::open(root.clone())?,
            root,
            memory_capacity_mib,
            vms: Mutex::default(),
        })
    }

    /// Directory for a VM's runtime files.
    pub fn vm_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Re-adopts the VMs recorded by an earlier run of the agent; records of
    /// QEMUs that are gone are dropped. Returns the records taken back.
    pub async fn readopt(&self) -> Vec<VmRecord> {
        let mut back = Vec::new();
        for rec in self.journal.read_all::<VmRecord>() {
            if !pid_alive(rec.pid) {
                warn!("VM {} (pid {}) is no longer running; forgetting it", rec.name, rec.pid);
                self.drop_files(&rec);
                continue;
            }
            let qmp = QmpClient::connect(&rec.qmp_socket).await.ok();
            info!("re-adopted VM {} (pid {})", rec.name, rec.pid);
            back.push(rec.clone());
            self.vms.lock().unwrap().insert(rec.name.clone(), Entry { record: rec, qmp, launched_at: None });
        }
        back
    }

    /// Reserves a name for a VM about to be launched, checking under one lock
    /// that the name is free and the memory fits, so concurrent starts cannot
    /// over-commit.
    pub fn reserve(&self, record: VmRecord) -> AgentResult<()> {
        let mut vms = self.vms.lock().unwrap();
        if vms.contains_key(&record.name) {
            return Err(AgentError::VmExists(record.name));
        }
        let used: u64 = vms.values().map(|e| e.record.memory_mib).sum();
        self.check_fits(used, record.memory_mib)?;
        vms.insert(record.name.clone(), Entry { record, qmp: None, launched_at: Some(Instant::now()) });
        Ok(())
    }

    /// Adds a VM that is already running (adopted), and persists it.
    pub fn insert_running(&self, record: VmRecord, qmp: Arc<QmpClient>) -> AgentResult<()> {
        {
            let mut vms = self.vms.lock().unwrap();
            if vms.contains_key(&record.name) {
                return Err(AgentError::VmExists(record.name));
            }
            vms.insert(record.name.clone(), Entry { record: record.clone(), qmp: Some(qmp), launched_at: None });
        }
        self.persist(&record)
    }

    /// Records that a reserved VM's QEMU runs, and persists it.
    pub fn launched(&self, name: &str, pid: i32, accel: &str, qmp: Arc<QmpClient>) -> AgentResult<VmRecord> {
        let rec = {
            let mut vms = self.vms.lock().unwrap();
            let e = vms.get_mut(name).ok_or_else(|| AgentError::UnknownVm(name.into()))?;
            e.record.pid = pid;
            e.record.accel = accel.to_string();
            e.qmp = Some(qmp);
            e.record.clone()
        };
        self.persist(&rec)?;
        Ok(rec)
    }

    /// Changes a VM's record and persists it.
    pub fn update(&self, name: &str, f: impl FnOnce(&mut VmRecord)) -> AgentResult<VmRecord> {
        let rec = {
            let mut vms = self.vms.lock().unwrap();
            let e = vms.get_mut(name).ok_or_else(|| AgentError::UnknownVm(name.into()))?;
            f(&mut e.record);
            e.record.clone()
        };
        self.persist(&rec)?;
        Ok(rec)
    }

    fn persist(&self, rec: &VmRecord) -> AgentResult<()> {
        self.journal
            .write(&rec.name, rec)
            .map_err(|e| AgentError::Internal(format!("cannot save the record of VM {}: {e}", rec.name)))
    }

    /// Forgets a VM: drops its record and runtime directory.
    pub fn forget(&self, name: &str) {
        let removed = self.vms.lock().unwrap().remove(name);
        self.journal.remove(name);
        if let Some(e) = removed {
            self.drop_files(&e.record);
        }
    }

    fn drop_files(&self, rec: &VmRecord) {
        self.journal.remove(&rec.name);
        if let Some(d) = &rec.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    /// A VM's record.
    pub fn record(&self, name: &str) -> AgentResult<VmRecord> {
        self.vms.lock().unwrap().get(name).map(|e| e.record.clone()).ok_or_else(|| AgentError::UnknownVm(name.into()))
    }

    /// Every VM's record, by name.
    pub fn records(&self) -> Vec<VmRecord> {
        let mut v: Vec<VmRecord> = self.vms.lock().unwrap().values().map(|e| e.record.clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Whether a VM of that name is here.
    pub fn contains(&self, name: &str) -> bool {
        self.vms.lock().unwrap().contains_key(name)
    }

    /// When this agent launched the VM (None for adopted or re-adopted VMs).
    pub fn launched_at(&self, name: &str) -> Option<Instant> {
        self.vms.lock().unwrap().get(name).and_then(|e| e.launched_at)
    }

    /// The VM's QMP connection, (re)connecting when needed.
    pub async fn qmp(&self, name: &str) -> AgentResult<Arc<QmpClient>> {
        let (existing, path) = {
            let vms = self.vms.lock().unwrap();
            let e = vms.get(name).ok_or_else(|| AgentError::UnknownVm(name.into()))?;
            (e.qmp.clone(), e.record.qmp_socket.clone())
        };
        if let Some(q) = existing.filter(|q| !q.is_closed()) {
            return Ok(q);
        }
        let q = QmpClient::connect(&path).await?;
        if let Some(e) = self.vms.lock().unwrap().get_mut(name) {
            e.qmp = Some(q.clone());
        }
        Ok(q)
    }

    /// QEMU's run state of a VM.
    pub async fn run_state(&self, name: &str) -> AgentResult<RunState> {
        Ok(self.qmp(name).await?.run_state().await?)
    }

    /// The VM as the API shows it (`migrating` is the job table's to fill in).
    pub async fn info(&self, name: &str) -> AgentResult<VmInfo> {
        let rec = self.record(name)?;
        let (state, qemu_state) = if !pid_alive(rec.pid) {
            (VmState::Gone, None)
        } else {
            match self.run_state(name).await {
                Ok(s) => (vm_state(&s), Some(s.to_string())),
                Err(_) => (VmState::Unreachable, None),
            }
        };
        Ok(VmInfo {
            name: rec.name,
            state,
            qemu_state,
            pid: rec.pid,
            memory_mib: rec.memory_mib,
            vcpus: rec.vcpus,
            accel: rec.accel,
            origin: rec.origin,
            spec: rec.spec,
            migrating: None,
            qmp_socket: rec.qmp_socket.display().to_string(),
            console_log: rec.console_log.map(|p| p.display().to_string()),
        })
    }

    /// Memory the agent may hand out, in MiB.
    pub fn capacity_mib(&self) -> u64 {
        self.memory_capacity_mib.unwrap_or_else(|| mem_available_mib() + self.committed_mib())
    }

    /// Memory given to VMs, in MiB.
    pub fn committed_mib(&self) -> u64 {
        self.vms.lock().unwrap().values().map(|e| e.record.memory_mib).sum()
    }

    fn check_fits(&self, used: u64, mib: u64) -> AgentResult<()> {
        let cap = self.memory_capacity_mib.unwrap_or_else(|| mem_available_mib() + used);
        if used + mib > cap {
            return Err(AgentError::InsufficientMemory(format!(
                "host {} cannot give {mib} MiB: {used} MiB of {cap} MiB already given to VMs; \
                 choose a smaller VM or another host",
                self.host_name
            )));
        }
        Ok(())
    }
}

/// The API's word for QEMU's run state.
pub fn vm_state(s: &RunState) -> VmState {
    match s {
        RunState::Running => VmState::Running,
        RunState::Postmigrate => VmState::MigratedAway,
        RunState::Inmigrate => VmState::Incoming,
        s if s.is_resumable() || s.is_loading() => VmState::Paused,
        RunState::Other(_) => VmState::Unknown,
        _ => VmState::Stopped,
    }
}

fn mem_available_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, mib: u64) -> VmRecord {
        VmRecord {
            name: name.into(),
            pid: 0,
            memory_mib: mib,
            vcpus: 1,
            accel: "tcg".into(),
            origin: VmOrigin::Launched,
            spec: None,
            qmp_socket: "/nonexistent".into(),
            serial_socket: None,
            console_log: None,
            dir: None,
        }
    }

    #[test]
    fn reservations_refuse_taken_names_and_over_commitment() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::open(dir.path(), "h1", Some(1024)).unwrap();
        r.reserve(rec("a", 512)).unwrap();
        assert!(matches!(r.reserve(rec("a", 64)), Err(AgentError::VmExists(_))));
        let e = r.reserve(rec("b", 768)).unwrap_err();
        assert!(e.to_string().contains("512 MiB of 1024 MiB"), "{e}");
        r.reserve(rec("b", 512)).unwrap();
        assert_eq!(r.committed_mib(), 1024);
        r.forget("a");
        assert_eq!(r.committed_mib(), 512);
        assert!(r.launched_at("b").is_some());
    }

    #[test]
    fn run_states_map_to_the_api_words() {
        assert_eq!(vm_state(&RunState::Running), VmState::Running);
        assert_eq!(vm_state(&RunState::Prelaunch), VmState::Paused);
        assert_eq!(vm_state(&RunState::Postmigrate), VmState::MigratedAway);
        assert_eq!(vm_state(&RunState::GuestPanicked), VmState::Stopped);
        assert_eq!(vm_state(&RunState::from("teleported")), VmState::Unknown);
    }
}
