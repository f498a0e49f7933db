//! The agent's state: its VMs (persisted, one JSON record per VM, so a restarted
//! agent re-adopts them) and its migration jobs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pacer_api::{HostInfo, VmInfo, VmOrigin, VmSpec};
use pacer_qemu::{launch::pid_alive, QmpClient};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::error::{ApiError, ApiResult};
use crate::jobs::Job;

/// Agent settings from the command line.
#[derive(Debug, Clone)]
pub struct Config {
    /// Host name.
    pub host_name: String,
    /// Where records, tokens and VM runtime files live.
    pub state_dir: PathBuf,
    /// QEMU binary.
    pub qemu: PathBuf,
    /// Memory the agent may give to VMs (MiB); None = what the host has available.
    pub memory_capacity_mib: Option<u64>,
    /// IP address incoming migrations listen on.
    pub migration_address: String,
    /// Seconds without a heartbeat from the source before an incoming VM is dropped.
    pub incoming_lease_s: u64,
    /// Where incoming disk copies are created (default: each VM's directory).
    pub disk_dir: Option<PathBuf>,
}

/// What is persisted about a VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmRecord {
    /// Name.
    pub name: String,
    /// QEMU pid.
    pub pid: i32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// Accelerator in use.
    pub accel: String,
    /// Origin.
    pub origin: VmOrigin,
    /// Spec, when known.
    pub spec: Option<VmSpec>,
    /// QMP socket.
    pub qmp_socket: PathBuf,
    /// Serial socket, when known.
    pub serial_socket: Option<PathBuf>,
    /// Serial console log, when known.
    pub console_log: Option<PathBuf>,
    /// Runtime directory owned by the agent (removed with the VM), if any.
    pub dir: Option<PathBuf>,
    /// Disk copies made for an incoming migration: deleted if it is aborted.
    #[serde(default)]
    pub created_disks: Vec<PathBuf>,
}

/// A VM under this agent.
pub struct VmEntry {
    /// Persisted record.
    pub record: VmRecord,
    /// Shared QMP connection, once opened.
    pub qmp: Option<Arc<QmpClient>>,
    /// Job moving this VM, if any.
    pub migrating: Option<String>,
    /// Last heartbeat from the source (incoming VMs only).
    pub lease: Option<std::time::Instant>,
    /// NBD exports serving a storage migration into this VM.
    pub nbd_exports: Vec<String>,
    /// What is known of the guest's behaviour (dirty rate, zero pages).
    pub measurements: crate::measure::Measurements,
    /// Before this, the guest is booting: its writes say nothing of its work.
    pub measure_after: std::time::Instant,
    /// QEMU pid and its guest RAM mapping, once looked for (`None`: not readable).
    pub guest_ram: Option<(i32, Option<std::sync::Arc<pacer_qemu::guest_ram::GuestRam>>)>,
}

/// The agent.
pub struct Agent {
    /// Settings.
    pub cfg: Config,
    /// API token.
    pub token: String,
    /// VMs by name.
    pub vms: Mutex<HashMap<String, VmEntry>>,
    /// Jobs by id.
    pub jobs: Mutex<HashMap<String, Arc<Job>>>,
    /// Cached KVM probe result.
    pub kvm: tokio::sync::OnceCell<pacer_qemu::accel::KvmProbe>,
    /// Learned time from allowing a held switch-over to the guest running at the
    /// destination (s), smoothed over migrations.
    pub switch_lag_s: Mutex<f64>,
    /// Link rates to destinations (bytes/s) and when they were measured.
    pub link_rates: Mutex<HashMap<String, (f64, std::time::Instant)>>,
    /// Held while a guest is measured: QEMU measures one dirty rate at a time,
    /// and the background sampler and `predict` must not collide.
    pub measuring: tokio::sync::Mutex<()>,
}

impl Agent {
    /// Creates the agent, its state directory and token (mode 0600, made once).
    pub fn new(cfg: Config) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(cfg.state_dir.join("vms"))?;
        let token = load_or_create_token(&cfg.state_dir.join("token"))?;
        Ok(Arc::new(Agent {
            cfg,
            token,
            vms: Mutex::default(),
            jobs: Mutex::default(),
            kvm: tokio::sync::OnceCell::new(),
            switch_lag_s: Mutex::new(crate::foresight::DEFAULT_SWITCH_LAG_S),
            link_rates: Mutex::default(),
            measuring: tokio::sync::Mutex::new(()),
        }))
    }

    /// Where incoming disk copies go.
    pub fn disk_dir(&self) -> PathBuf {
        self.cfg.disk_dir.clone().unwrap_or_else(|| self.cfg.state_dir.join("vms"))
    }

    /// Directory for a VM's runtime files.
    pub fn vm_dir(&self, name: &str) -> PathBuf {
        self.cfg.state_dir.join("vms").join(name)
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.cfg.state_dir.join("vms").join(format!("{name}.json"))
    }

    /// Writes a VM's record atomically.
    pub fn persist(&self, rec: &VmRecord) -> std::io::Result<()> {
        let path = self.record_path(&rec.name);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(rec)?)?;
        std::fs::rename(tmp, path)
    }

    /// Forgets a VM: drops its record and runtime directory.
    pub fn forget(&self, name: &str) {
        let removed = self.vms.lock().unwrap().remove(name);
        let _ = std::fs::remove_file(self.record_path(name));
        if let Some(dir) = removed.and_then(|e| e.record.dir) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Re-adopts the VMs recorded by an earlier run of the agent.
    pub async fn readopt(&self) {
        let Ok(dir) = std::fs::read_dir(self.cfg.state_dir.join("vms")) else { return };
        for ent in dir.flatten() {
            let path = ent.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let rec: VmRecord = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(r) => r,
                Err(e) => {
                    warn!("ignoring unreadable VM record {}: {e}", path.display());
                    continue;
                }
            };
            if !pid_alive(rec.pid) {
                warn!("VM {} (pid {}) is no longer running; forgetting it", rec.name, rec.pid);
                let _ = std::fs::remove_file(&path);
                if let Some(d) = &rec.dir {
                    let _ = std::fs::remove_dir_all(d);
                }
                continue;
            }
            if rec.origin == VmOrigin::Incoming {
                // An unfinished incoming migration: its source gave up on us or will.
                warn!("dropping unfinished incoming VM {}", rec.name);
                pacer_qemu::launch::kill_and_wait(rec.pid).await;
                for d in &rec.created_disks {
                    let _ = std::fs::remove_file(d);
                }
                let _ = std::fs::remove_file(&path);
                if let Some(d) = &rec.dir {
                    let _ = std::fs::remove_dir_all(d);
                }
                continue;
            }
            let qmp = QmpClient::connect(&rec.qmp_socket).await.ok();
            info!("re-adopted VM {} (pid {})", rec.name, rec.pid);
            self.vms.lock().unwrap().insert(
                rec.name.clone(),
                VmEntry {
                    record: rec,
                    qmp,
                    migrating: None,
                    lease: None,
                    nbd_exports: vec![],
                    measurements: Default::default(),
                    measure_after: std::time::Instant::now(),
                    guest_ram: None,
                },
            );
        }
    }

    /// A VM's record, or 404.
    pub fn record(&self, name: &str) -> ApiResult<VmRecord> {
        self.vms
            .lock()
            .unwrap()
            .get(name)
            .map(|e| e.record.clone())
            .ok_or_else(|| unknown_vm(name))
    }

    /// The VM's QMP connection, (re)connecting when needed.
    pub async fn qmp(&self, name: &str) -> ApiResult<Arc<QmpClient>> {
        let (existing, path) = {
            let vms = self.vms.lock().unwrap();
            let e = vms.get(name).ok_or_else(|| unknown_vm(name))?;
            (e.qmp.clone(), e.record.qmp_socket.clone())
        };
        if let Some(q) = existing {
            if !q.is_closed() {
                return Ok(q);
            }
        }
        let q = QmpClient::connect(&path).await?;
        if let Some(e) = self.vms.lock().unwrap().get_mut(name) {
            e.qmp = Some(q.clone());
        }
        Ok(q)
    }

    /// The VM as the API shows it.
    pub async fn vm_info(&self, name: &str) -> ApiResult<VmInfo> {
        let (rec, migrating) = {
            let vms = self.vms.lock().unwrap();
            let e = vms.get(name).ok_or_else(|| unknown_vm(name))?;
            (e.record.clone(), e.migrating.clone())
        };
        let state = if !pid_alive(rec.pid) {
            "gone".to_string()
        } else {
            match self.qmp(name).await {
                Ok(q) => q.run_state().await.unwrap_or_else(|_| "unknown".into()),
                Err(_) => "unreachable".into(),
            }
        };
        Ok(VmInfo {
            name: rec.name,
            state,
            pid: rec.pid,
            memory_mib: rec.memory_mib,
            vcpus: rec.vcpus,
            accel: rec.accel,
            origin: rec.origin,
            spec: rec.spec,
            migrating,
            qmp_socket: rec.qmp_socket.display().to_string(),
            console_log: rec.console_log.map(|p| p.display().to_string()),
        })
    }

    /// Memory the agent may hand out, in MiB.
    pub fn memory_capacity_mib(&self) -> u64 {
        self.cfg.memory_capacity_mib.unwrap_or_else(|| mem_available_mib() + self.committed_mib())
    }

    /// Memory given to VMs, in MiB.
    pub fn committed_mib(&self) -> u64 {
        self.vms.lock().unwrap().values().map(|e| e.record.memory_mib).sum()
    }

    /// Checks that `mib` more can be given, else a clear 409.
    pub fn check_memory(&self, mib: u64) -> ApiResult<()> {
        let cap = self.memory_capacity_mib();
        let used = self.committed_mib();
        if used + mib > cap {
            return Err(ApiError::conflict(
                "insufficient_memory",
                format!(
                    "host {} cannot give {mib} MiB: {used} MiB of {cap} MiB already given to VMs; \
                     choose a smaller VM or another host",
                    self.cfg.host_name
                ),
            ));
        }
        Ok(())
    }

    /// Host summary.
    pub fn host_info(&self) -> HostInfo {
        HostInfo {
            name: self.cfg.host_name.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            memory_capacity_mib: self.memory_capacity_mib(),
            memory_committed_mib: self.committed_mib(),
            migration_address: self.cfg.migration_address.clone(),
            kvm: self.kvm.get().map(|p| format!("{p:?}")),
            disk_free_bytes: pacer_qemu::image::free_space(&self.disk_dir()).unwrap_or(0),
        }
    }
}

/// 404 for a VM name.
pub fn unknown_vm(name: &str) -> ApiError {
    ApiError::not_found(format!("no VM named {name:?} on this host; `pacer vm list` shows the VMs"))
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

fn load_or_create_token(path: &Path) -> std::io::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(t) = std::fs::read_to_string(path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let token: String = {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        (0..32).map(|_| format!("{:02x}", rng.gen::<u8>())).collect()
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(token.as_bytes())?;
    Ok(token)
}
