//! A VM's life: launch QEMU from a spec, adopt a running QEMU, stop one.

use std::path::PathBuf;
use std::time::Duration;

use pacer_api::{AccelChoice, AdoptRequest, VmOrigin, VmSpec};
use pacer_qemu::accel::{probe_kvm, KvmProbe};
use pacer_qemu::launch::{kill_and_wait, process_argv, wait_exit};
use pacer_qemu::{Accel, QmpClient, VmPaths};
use tracing::info;

use crate::error::{AgentError, AgentResult};
use crate::vms::spec::{disk_formats, launch_config, validate_name, validate_spec};
use crate::vms::{Registry, VmRecord};

/// Starts QEMU processes: knows the binary and whether KVM really works here.
pub struct Launcher {
    qemu: PathBuf,
    kvm: tokio::sync::OnceCell<KvmProbe>,
}

/// How to launch: as a new VM, or as the target of an incoming migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchMode {
    /// A new VM, running.
    Fresh,
    /// A migration target (`-incoming defer`), started paused (`-S`) when
    /// `paused`: a storage target must drop its NBD exports before the guest writes.
    Incoming {
        /// Start with the CPUs stopped.
        paused: bool,
    },
}

impl Launcher {
    /// A launcher of `qemu`.
    pub fn new(qemu: PathBuf) -> Launcher {
        Launcher { qemu, kvm: tokio::sync::OnceCell::new() }
    }

    /// The KVM probe's result, once it ran.
    pub fn kvm(&self) -> Option<KvmProbe> {
        self.kvm.get().cloned()
    }

    /// Resolves `auto` by probing KVM once per agent (booting the guest kernel).
    async fn resolve_accel(&self, spec: &VmSpec) -> Accel {
        match spec.accel {
            AccelChoice::Tcg => Accel::Tcg,
            AccelChoice::Kvm => Accel::Kvm,
            AccelChoice::Auto => {
                let kernel = spec.kernel.as_ref().map(PathBuf::from);
                let probe = self
                    .kvm
                    .get_or_init(|| async {
                        let p = probe_kvm(&self.qemu, kernel.as_deref(), Duration::from_secs(8)).await;
                        info!("KVM probe: {p:?}");
                        p
                    })
                    .await;
                if *probe == KvmProbe::Works {
                    Accel::Kvm
                } else {
                    Accel::Tcg
                }
            }
        }
    }

    /// Launches a VM from a spec (`accel`: forced, as for an incoming VM that must
    /// match its source). On any failure nothing is left behind.
    pub async fn launch(
        &self,
        vms: &Registry,
        spec: &VmSpec,
        accel: Option<Accel>,
        mode: LaunchMode,
    ) -> AgentResult<VmRecord> {
        validate_spec(spec)?;
        let dir = vms.vm_dir(&spec.name);
        let paths = VmPaths::in_dir(&dir);
        vms.reserve(VmRecord {
            name: spec.name.clone(),
            pid: 0,
            memory_mib: spec.memory_mib,
            vcpus: spec.vcpus,
            accel: String::new(),
            origin: if mode == LaunchMode::Fresh { VmOrigin::Launched } else { VmOrigin::Incoming },
            spec: Some(spec.clone()),
            qmp_socket: paths.qmp.clone(),
            serial_socket: Some(paths.serial.clone()),
            console_log: Some(paths.console_log.clone()),
            dir: Some(dir.clone()),
        })?;
        let result = async {
            let accel = match accel {
                Some(a) => a,
                None => self.resolve_accel(spec).await,
            };
            let formats = disk_formats(spec).await?;
            let (incoming, paused) = match mode {
                LaunchMode::Fresh => (false, false),
                LaunchMode::Incoming { paused } => (true, paused),
            };
            let cfg = launch_config(&self.qemu, &dir, spec, &formats, accel, incoming, paused);
            std::fs::create_dir_all(&dir)
                .map_err(|e| AgentError::Internal(format!("cannot create VM directory {}: {e}", dir.display())))?;
            let pid = cfg.launch().await.map_err(|e| AgentError::Upstream(e.to_string()))?;
            let qmp = match QmpClient::connect(&cfg.paths.qmp).await {
                Ok(q) => q,
                Err(e) => {
                    kill_and_wait(pid).await;
                    return Err(e.into());
                }
            };
            let rec = vms.launched(&spec.name, pid, accel.as_str(), qmp)?;
            info!("launched VM {} (pid {pid}, {})", spec.name, accel.as_str());
            Ok(rec)
        }
        .await;
        if result.is_err() {
            vms.forget(&spec.name);
        }
        result
    }
}

/// Takes over a QEMU that is already running, by its QMP socket.
pub async fn adopt(vms: &Registry, req: &AdoptRequest) -> AgentResult<VmRecord> {
    validate_name(&req.name)?;
    if vms.contains(&req.name) {
        return Err(AgentError::VmExists(req.name.clone()));
    }
    let path = PathBuf::from(&req.qmp_socket);
    let qmp = QmpClient::connect(&path).await.map_err(|e| AgentError::Invalid(e.to_string()))?;
    let pid = qmp
        .peer_pid()
        .ok_or_else(|| AgentError::Invalid("cannot tell the QEMU pid from the QMP socket's credentials".into()))?;
    let mem = qmp.execute("query-memory-size-summary", None).await?;
    let memory_mib = mem.get("base-memory").and_then(|v| v.as_u64()).unwrap_or(0) >> 20;
    let cpus = qmp.execute("query-cpus-fast", None).await?;
    let vcpus = cpus.as_array().map(|a| a.len() as u32).unwrap_or(1);
    let argv = process_argv(pid).unwrap_or_default();
    let accel = if argv.iter().any(|a| a.contains("kvm")) { "kvm" } else { "tcg" };
    let rec = VmRecord {
        name: req.name.clone(),
        pid,
        memory_mib,
        vcpus,
        accel: accel.into(),
        origin: VmOrigin::Adopted,
        spec: None,
        qmp_socket: path,
        serial_socket: None,
        console_log: req.console_log.as_ref().map(PathBuf::from),
        dir: None,
    };
    vms.insert_running(rec.clone(), qmp)?;
    info!("adopted VM {} (pid {pid})", req.name);
    Ok(rec)
}

/// Stops a VM: QMP `quit`, then SIGKILL if it lingers; forgets it. The caller
/// checks first that no job moves it.
pub async fn stop(vms: &Registry, name: &str) -> AgentResult<()> {
    let rec = vms.record(name)?;
    quit(vms, &rec).await;
    vms.forget(name);
    info!("stopped VM {name}");
    Ok(())
}

/// Ends a VM's QEMU: `quit`, then SIGKILL after 5 s.
pub async fn quit(vms: &Registry, rec: &VmRecord) {
    if let Ok(q) = vms.qmp(&rec.name).await {
        let _ = q.execute_timeout("quit", None, Duration::from_secs(5)).await;
    }
    if !wait_exit(rec.pid, Duration::from_secs(5)).await {
        kill_and_wait(rec.pid).await;
    }
}
