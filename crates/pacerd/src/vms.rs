//! VM lifecycle: validate a spec, launch QEMU, adopt a running one, stop, read the
//! console and ask the guest program to verify its memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pacer_api::{AccelChoice, IntegrityResult, VmOrigin, VmSpec};
use pacer_qemu::accel::{probe_kvm, KvmProbe};
use pacer_qemu::launch::{kill_and_wait, process_argv, wait_exit};
use pacer_qemu::{Accel, LaunchConfig, QmpClient, VmPaths};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tracing::info;

use crate::error::{ApiError, ApiResult};
use crate::state::{Agent, VmEntry, VmRecord};

/// Largest VM memory accepted (MiB): anything above is a typo.
const MAX_MEMORY_MIB: u64 = 4 * 1024 * 1024;

/// Checks a VM name: 1-32 of [A-Za-z0-9_-], not starting with '-'.
pub fn validate_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid VM name {name:?}: use 1-32 letters, digits, '-' or '_'"
        )))
    }
}

/// Checks a spec for nonsense before anything is started.
pub fn validate_spec(spec: &VmSpec) -> ApiResult<()> {
    validate_name(&spec.name)?;
    if spec.memory_mib < 64 || spec.memory_mib > MAX_MEMORY_MIB {
        return Err(ApiError::bad_request(format!(
            "memory {} MiB is out of range: give 64 MiB to 4 TiB (e.g. --memory 1G)",
            spec.memory_mib
        )));
    }
    if spec.vcpus == 0 || spec.vcpus > 256 {
        return Err(ApiError::bad_request(format!(
            "vcpus {} is out of range: give 1 to 256",
            spec.vcpus
        )));
    }
    if spec.kernel.is_none() && spec.disks.is_empty() {
        return Err(ApiError::bad_request(
            "the VM has nothing to boot: give a kernel (and initrd) or a disk",
        ));
    }
    if spec.disks.len() > 16 {
        return Err(ApiError::bad_request("at most 16 disks per VM"));
    }
    let files = [("kernel", spec.kernel.as_ref()), ("initrd", spec.initrd.as_ref())]
        .into_iter()
        .chain(spec.disks.iter().map(|d| ("disk", Some(d))));
    for (what, p) in files {
        if let Some(p) = p {
            if !Path::new(p).is_file() {
                return Err(ApiError::bad_request(format!(
                    "{what} {p:?} does not exist on host (paths are read by the agent)"
                )));
            }
        }
    }
    if let Some(w) = &spec.workload {
        if w.kind != "idle" && w.kind != "memwrite" {
            return Err(ApiError::bad_request(format!(
                "unknown workload {:?}: use idle or memwrite",
                w.kind
            )));
        }
        if w.wss_mib == 0 || w.wss_mib + 48 > spec.memory_mib {
            return Err(ApiError::bad_request(format!(
                "working set {} MiB does not fit in {} MiB of memory: leave at least 48 MiB \
                 for the guest kernel",
                w.wss_mib, spec.memory_mib
            )));
        }
        if !w.rate_mbps.is_finite() || w.rate_mbps < 0.0 || w.rate_mbps > 100_000.0 {
            return Err(ApiError::bad_request(format!(
                "write rate {} MB/s is out of range: give 0 to 100000",
                w.rate_mbps
            )));
        }
        for (what, f) in [("hot fraction", w.hot_fraction), ("hot share", w.hot_share)] {
            if !f.is_finite() || !(0.0..=1.0).contains(&f) {
                return Err(ApiError::bad_request(format!(
                    "{what} {f} is out of range: give 0 to 1"
                )));
            }
        }
    }
    Ok(())
}

/// The format of each disk; only raw and qcow2 are supported.
pub async fn disk_formats(spec: &VmSpec) -> ApiResult<Vec<String>> {
    let mut out = Vec::new();
    for d in &spec.disks {
        let info = pacer_qemu::image::image_info(Path::new(d))
            .await
            .map_err(|e| ApiError::bad_request(format!("disk {d:?}: {e}")))?;
        if info.format != "raw" && info.format != "qcow2" {
            return Err(ApiError::bad_request(format!(
                "disk {d:?} is {}: Pacer supports raw and qcow2 (convert with qemu-img convert)",
                info.format
            )));
        }
        out.push(info.format);
    }
    Ok(out)
}

/// Resolves `auto` by probing KVM once per agent.
pub async fn resolve_accel(agent: &Agent, spec: &VmSpec) -> ApiResult<Accel> {
    match spec.accel {
        AccelChoice::Tcg => Ok(Accel::Tcg),
        AccelChoice::Kvm => Ok(Accel::Kvm),
        AccelChoice::Auto => {
            let kernel = spec.kernel.as_ref().map(PathBuf::from);
            let probe = agent
                .kvm
                .get_or_init(|| async {
                    let p =
                        probe_kvm(&agent.cfg.qemu, kernel.as_deref(), Duration::from_secs(8)).await;
                    info!("KVM probe: {p:?}");
                    p
                })
                .await;
            Ok(if *probe == KvmProbe::Works { Accel::Kvm } else { Accel::Tcg })
        }
    }
}

/// The QEMU launch configuration for a spec.
pub fn launch_config(
    agent: &Agent,
    spec: &VmSpec,
    formats: &[String],
    accel: Accel,
    incoming: bool,
    start_paused: bool,
) -> LaunchConfig {
    let mut append = String::from("console=ttyS0 panic=-1");
    if let Some(w) = &spec.workload {
        append.push(' ');
        append.push_str(&w.kernel_args());
    }
    if let Some(a) = &spec.append {
        append.push(' ');
        append.push_str(a);
    }
    LaunchConfig {
        qemu: agent.cfg.qemu.clone(),
        name: spec.name.clone(),
        memory_mib: spec.memory_mib,
        vcpus: spec.vcpus,
        accel,
        kernel: spec.kernel.as_ref().map(PathBuf::from),
        initrd: spec.initrd.as_ref().map(PathBuf::from),
        append: spec.kernel.as_ref().map(|_| append),
        disks: spec.disks.iter().cloned().map(PathBuf::from).zip(formats.iter().cloned()).collect(),
        paths: VmPaths::in_dir(&agent.vm_dir(&spec.name)),
        incoming,
        start_paused,
    }
}

/// Reserves a name (so two requests cannot race) and returns a guard that frees it
/// unless committed.
fn reserve(agent: &Agent, spec: &VmSpec, origin: VmOrigin) -> ApiResult<()> {
    let mut vms = agent.vms.lock().unwrap();
    if vms.contains_key(&spec.name) {
        return Err(ApiError::conflict(
            "already_exists",
            format!("a VM named {:?} already exists on this host", spec.name),
        ));
    }
    let dir = agent.vm_dir(&spec.name);
    let paths = VmPaths::in_dir(&dir);
    vms.insert(
        spec.name.clone(),
        VmEntry {
            record: VmRecord {
                name: spec.name.clone(),
                pid: 0,
                memory_mib: spec.memory_mib,
                vcpus: spec.vcpus,
                accel: String::new(),
                origin,
                spec: Some(spec.clone()),
                qmp_socket: paths.qmp,
                serial_socket: Some(paths.serial),
                console_log: Some(paths.console_log),
                dir: Some(dir),
                created_disks: vec![],
            },
            qmp: None,
            migrating: None,
            lease: None,
            nbd_exports: vec![],
            measurements: Default::default(),
            measure_after: std::time::Instant::now() + crate::measure::BOOT_GRACE,
            guest_ram: None,
        },
    );
    Ok(())
}

/// Launches a VM from a spec (`incoming`: as a migration target, paused).
pub async fn launch(
    agent: &Arc<Agent>,
    spec: &VmSpec,
    accel: Option<Accel>,
    origin: VmOrigin,
    start_paused: bool,
) -> ApiResult<VmRecord> {
    validate_spec(spec)?;
    // Check memory and reserve the name under one lock so concurrent starts cannot
    // over-commit.
    agent.check_memory(spec.memory_mib)?;
    reserve(agent, spec, origin)?;
    let result = async {
        let accel = match accel {
            Some(a) => a,
            None => resolve_accel(agent, spec).await?,
        };
        let formats = disk_formats(spec).await?;
        let cfg =
            launch_config(agent, spec, &formats, accel, origin == VmOrigin::Incoming, start_paused);
        std::fs::create_dir_all(agent.vm_dir(&spec.name))
            .map_err(|e| ApiError::internal(format!("cannot create VM directory: {e}")))?;
        let pid = cfg.launch().await.map_err(|e| ApiError::upstream(e.to_string()))?;
        let qmp = QmpClient::connect(&cfg.paths.qmp).await;
        let qmp = match qmp {
            Ok(q) => q,
            Err(e) => {
                kill_and_wait(pid).await;
                return Err(e.into());
            }
        };
        let rec = {
            let mut vms = agent.vms.lock().unwrap();
            let e = vms.get_mut(&spec.name).expect("reserved");
            e.record.pid = pid;
            e.record.accel = accel.as_str().to_string();
            e.qmp = Some(qmp);
            if origin == VmOrigin::Incoming {
                e.lease = Some(std::time::Instant::now());
            }
            e.record.clone()
        };
        agent
            .persist(&rec)
            .map_err(|e| ApiError::internal(format!("cannot save VM record: {e}")))?;
        info!("launched VM {} (pid {pid}, {})", spec.name, accel.as_str());
        Ok(rec)
    }
    .await;
    if result.is_err() {
        agent.forget(&spec.name);
    }
    result
}

/// Takes over a QEMU that is already running, by its QMP socket.
pub async fn adopt(agent: &Arc<Agent>, req: &pacer_api::AdoptRequest) -> ApiResult<VmRecord> {
    validate_name(&req.name)?;
    if agent.vms.lock().unwrap().contains_key(&req.name) {
        return Err(ApiError::conflict(
            "already_exists",
            format!("a VM named {:?} already exists on this host", req.name),
        ));
    }
    let path = PathBuf::from(&req.qmp_socket);
    let qmp = QmpClient::connect(&path).await.map_err(|e| ApiError::bad_request(e.to_string()))?;
    let pid = qmp.peer_pid().ok_or_else(|| {
        ApiError::bad_request("cannot tell the QEMU pid from the QMP socket's credentials")
    })?;
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
        created_disks: vec![],
    };
    {
        let mut vms = agent.vms.lock().unwrap();
        if vms.contains_key(&req.name) {
            return Err(ApiError::conflict("already_exists", "name taken meanwhile"));
        }
        vms.insert(
            req.name.clone(),
            VmEntry {
                record: rec.clone(),
                qmp: Some(qmp),
                migrating: None,
                lease: None,
                nbd_exports: vec![],
                measurements: Default::default(),
                measure_after: std::time::Instant::now(),
                guest_ram: None,
            },
        );
    }
    agent.persist(&rec).map_err(|e| ApiError::internal(e.to_string()))?;
    info!("adopted VM {} (pid {pid})", req.name);
    Ok(rec)
}

/// Stops a VM: QMP `quit`, then SIGKILL if it lingers; forgets it.
pub async fn stop(agent: &Arc<Agent>, name: &str) -> ApiResult<()> {
    let rec = agent.record(name)?;
    if let Some(job) = agent.vms.lock().unwrap().get(name).and_then(|e| e.migrating.clone()) {
        return Err(ApiError::conflict(
            "migrating",
            format!("VM {name:?} is being migrated by job {job}; cancel the job first"),
        ));
    }
    if let Ok(q) = agent.qmp(name).await {
        let _ = q.execute_timeout("quit", None, Duration::from_secs(5)).await;
    }
    if !wait_exit(rec.pid, Duration::from_secs(5)).await {
        kill_and_wait(rec.pid).await;
    }
    agent.forget(name);
    info!("stopped VM {name}");
    Ok(())
}

/// The last `bytes` bytes of the VM's serial console.
pub fn console_tail(agent: &Agent, name: &str, bytes: u64) -> ApiResult<String> {
    let rec = agent.record(name)?;
    let Some(log) = rec.console_log else {
        return Err(ApiError::conflict(
            "no_console",
            format!("VM {name:?} has no known console log (adopt it with --console-log)"),
        ));
    };
    let data = std::fs::read(&log).unwrap_or_default();
    let start = data.len().saturating_sub(bytes as usize);
    Ok(String::from_utf8_lossy(&data[start..]).into_owned())
}

/// Asks the Pacer guest program to sweep its memory and returns its verdict.
pub async fn verify_guest(agent: &Agent, name: &str, timeout: Duration) -> ApiResult<IntegrityResult> {
    let rec = agent.record(name)?;
    let Some(sock) = rec.serial_socket else {
        return Err(ApiError::conflict("no_console", format!("VM {name:?} has no serial socket")));
    };
    let fut = async {
        let stream = tokio::net::UnixStream::connect(&sock)
            .await
            .map_err(|e| ApiError::upstream(format!("cannot open serial console: {e}")))?;
        let (r, mut w) = stream.into_split();
        w.write_all(b"verify\n").await.map_err(|e| ApiError::upstream(e.to_string()))?;
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let Some(json) = line.trim_end_matches('\r').split_once("PACER ").map(|(_, j)| j)
            else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else { continue };
            if v.get("kind").and_then(|k| k.as_str()) != Some("verify") {
                continue;
            }
            let n = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
            return Ok(IntegrityResult {
                ok: v.get("ok").and_then(|x| x.as_bool()).unwrap_or(false),
                pages_checked: n("pages_checked"),
                bad_pages: n("bad_pages"),
                errors_total: n("errors_total"),
                duration_ms: n("duration_ms"),
                disk_ok: v.get("disk_ok").and_then(|x| x.as_bool()).unwrap_or(true),
                disk_blocks_checked: n("disk_blocks_checked"),
                disk_bad_blocks: n("disk_bad_blocks"),
            });
        }
        Err(ApiError::upstream("serial console closed before the guest answered"))
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| {
        ApiError::upstream(format!(
            "the guest did not answer a memory check within {} s (is the Pacer guest program running?)",
            timeout.as_secs()
        ))
    })?
}
