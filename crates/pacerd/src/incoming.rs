//! The destination side of a migration: prepare an incoming QEMU matching the
//! source, then either commit it (it becomes this host's VM) or abort it. An
//! incoming VM holds a lease the source renews; if the source goes silent (link
//! cut, source agent dead) the lease expires and the VM is dropped, unless it is
//! already running here (post-copy or completed), in which case it is kept.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pacer_api::{IncomingDisk, IncomingReady, IncomingRequest, NbdTarget, VmInfo, VmOrigin};
use pacer_qemu::storage;
use pacer_qemu::launch::kill_and_wait;
use pacer_qemu::migration::set_capabilities;
use pacer_qemu::Accel;
use serde_json::json;
use tracing::{info, warn};

use crate::error::{ApiError, ApiResult};
use crate::state::Agent;
use crate::vms;

const ALLOWED_CAPS: &[&str] =
    &["postcopy-ram", "late-block-activate", "events", "return-path", "postcopy-preempt"];

/// Starts an incoming QEMU and has it listen for the migration stream.
pub async fn prepare(agent: &Arc<Agent>, req: &IncomingRequest) -> ApiResult<IncomingReady> {
    let accel = match req.accel.as_str() {
        "kvm" => Accel::Kvm,
        "tcg" => Accel::Tcg,
        other => return Err(ApiError::bad_request(format!("unknown accelerator {other:?}"))),
    };
    for c in &req.capabilities {
        if !ALLOWED_CAPS.contains(&c.as_str()) {
            return Err(ApiError::bad_request(format!("capability {c:?} is not allowed here")));
        }
    }
    vms::validate_spec(&req.spec)?;
    let mut spec = req.spec.clone();
    let copying = !req.disks.is_empty();
    let created = if copying {
        if req.disks.len() != spec.disks.len() {
            return Err(ApiError::bad_request(format!(
                "{} disks to copy for a VM with {} disks",
                req.disks.len(),
                spec.disks.len()
            )));
        }
        let paths = create_disks(agent, &spec.name, &req.disks).await?;
        spec.disks = paths.iter().map(|p| p.display().to_string()).collect();
        paths
    } else {
        Vec::new()
    };
    // A storage-migration target starts paused (-S): its NBD exports must be gone
    // before the guest writes to its disks.
    let rec = match vms::launch(agent, &spec, Some(accel), VmOrigin::Incoming, copying).await {
        Ok(r) => r,
        Err(e) => {
            remove_files(&created);
            return Err(e);
        }
    };
    let name = rec.name.clone();
    let result = async {
        let qmp = agent.qmp(&name).await?;
        let caps: Vec<(&str, bool)> = req.capabilities.iter().map(|c| (c.as_str(), true)).collect();
        if !caps.is_empty() {
            set_capabilities(&qmp, &caps).await?;
        }
        let addr = agent.cfg.migration_address.clone();
        let nbd = if copying {
            let port = free_port(&addr)?;
            storage::nbd_server_start(&qmp, &addr, port)
                .await
                .map_err(|e| ApiError::upstream(e.to_string()))?;
            let mut exports = Vec::new();
            for i in 0..created.len() {
                let export = format!("pacer-{name}-disk{i}");
                storage::export_disk(&qmp, &crate::disk_copy::disk_node(i), &export)
                    .await
                    .map_err(|e| ApiError::upstream(e.to_string()))?;
                exports.push(export);
            }
            let rec = {
                let mut vms = agent.vms.lock().unwrap();
                let e = vms.get_mut(&name).ok_or_else(|| crate::state::unknown_vm(&name))?;
                e.nbd_exports = exports.clone();
                e.record.created_disks = created.clone();
                e.record.clone()
            };
            agent.persist(&rec).map_err(|e| ApiError::internal(e.to_string()))?;
            Some(NbdTarget { host: addr.clone(), port, exports })
        } else {
            None
        };
        let port = free_port(&addr)?;
        let uri = format!("tcp:{addr}:{port}");
        qmp.execute("migrate-incoming", Some(json!({ "uri": uri }))).await?;
        info!("VM {name} waiting for migration on {uri}");
        Ok(IncomingReady { uri, nbd })
    }
    .await;
    if result.is_err() {
        kill_and_wait(rec.pid).await;
        agent.forget(&name);
        remove_files(&created);
    }
    result
}

/// Creates the images a storage migration copies into, after checking that they
/// fit; on any failure removes the ones already made.
async fn create_disks(
    agent: &Agent,
    vm: &str,
    disks: &[IncomingDisk],
) -> ApiResult<Vec<std::path::PathBuf>> {
    let dir = agent.disk_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| ApiError::internal(format!("cannot create {}: {e}", dir.display())))?;
    let needed: u64 = disks.iter().map(|d| d.needed_bytes).sum::<u64>() + (64 << 20);
    let free = pacer_qemu::image::free_space(&dir).unwrap_or(0);
    if needed > free {
        return Err(ApiError::conflict(
            "insufficient_space",
            format!(
                "host {} has {} MiB free in {} but the disks need about {} MiB: free space                  there, or choose another host",
                agent.cfg.host_name,
                free >> 20,
                dir.display(),
                needed >> 20
            ),
        ));
    }
    let mut made = Vec::new();
    for (i, d) in disks.iter().enumerate() {
        if d.format != "raw" && d.format != "qcow2" {
            remove_files(&made);
            return Err(ApiError::bad_request(format!(
                "disk format {:?} is not supported: raw or qcow2",
                d.format
            )));
        }
        if let Some(b) = &d.backing {
            if !std::path::Path::new(b).is_file() {
                remove_files(&made);
                return Err(ApiError::conflict(
                    "missing_backing",
                    format!(
                        "incremental copy needs the base image {b:?} on host {}, and it is not                          there: copy the base image first or use a full copy",
                        agent.cfg.host_name
                    ),
                ));
            }
        }
        let path = dir.join(format!("{vm}-disk{i}.{}", d.format));
        if path.exists() {
            remove_files(&made);
            return Err(ApiError::conflict(
                "already_exists",
                format!("{} already exists on {}", path.display(), agent.cfg.host_name),
            ));
        }
        let backing = d.backing.as_deref().map(|b| (b, d.backing_format.as_deref().unwrap_or("qcow2")));
        if let Err(e) = pacer_qemu::image::create_image(&path, &d.format, d.virtual_size, backing).await {
            remove_files(&made);
            return Err(ApiError::upstream(e.to_string()));
        }
        made.push(path);
    }
    Ok(made)
}

fn remove_files(paths: &[std::path::PathBuf]) {
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}

fn free_port(addr: &str) -> ApiResult<u16> {
    let l = std::net::TcpListener::bind((addr, 0)).map_err(|e| {
        ApiError::internal(format!("cannot bind a migration port on {addr}: {e}"))
    })?;
    Ok(l.local_addr().map_err(|e| ApiError::internal(e.to_string()))?.port())
}

fn incoming_pid(agent: &Agent, name: &str) -> ApiResult<i32> {
    let vms = agent.vms.lock().unwrap();
    let e = vms.get(name).ok_or_else(|| crate::state::unknown_vm(name))?;
    if e.record.origin != VmOrigin::Incoming {
        return Err(ApiError::conflict(
            "not_incoming",
            format!("VM {name:?} is not an incoming migration here"),
        ));
    }
    Ok(e.record.pid)
}

/// Renews the lease of an incoming VM.
pub fn heartbeat(agent: &Agent, name: &str) -> ApiResult<()> {
    incoming_pid(agent, name)?;
    if let Some(e) = agent.vms.lock().unwrap().get_mut(name) {
        e.lease = Some(Instant::now());
    }
    Ok(())
}

/// Makes the incoming VM this host's own, once QEMU has finished loading it, and
/// resumes it if it arrived paused (stop-and-copy).
pub async fn commit(agent: &Arc<Agent>, name: &str) -> ApiResult<VmInfo> {
    incoming_pid(agent, name)?;
    let qmp = agent.qmp(name).await?;
    let exports = agent.vms.lock().unwrap().get(name).map(|e| e.nbd_exports.clone()).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = qmp.run_state().await?;
        match state.as_str() {
            "running" => break,
            "paused" | "postmigrate" => {
                if !exports.is_empty() {
                    // The copy is complete; nobody may write through NBD any more.
                    let names: Vec<&str> = exports.iter().map(String::as_str).collect();
                    storage::force_remove_exports(&qmp, &names)
                        .await
                        .map_err(|e| ApiError::upstream(e.to_string()))?;
                    let _ = storage::nbd_server_stop(&qmp).await;
                    if let Some(e) = agent.vms.lock().unwrap().get_mut(name) {
                        e.nbd_exports.clear();
                    }
                }
                qmp.execute("cont", None).await?;
                break;
            }
            "inmigrate" | "prelaunch" | "finish-migrate" | "restore-vm" => {}
            other => {
                return Err(ApiError::upstream(format!(
                    "incoming VM {name:?} is in state {other:?}, cannot commit"
                )))
            }
        }
        if Instant::now() > deadline {
            return Err(ApiError::upstream(format!(
                "incoming VM {name:?} did not finish loading within 60 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    mark_migrated_in(agent, name)?;
    info!("VM {name} committed: it now runs here");
    agent.vm_info(name).await
}

fn mark_migrated_in(agent: &Agent, name: &str) -> ApiResult<()> {
    let rec = {
        let mut vms = agent.vms.lock().unwrap();
        let e = vms.get_mut(name).ok_or_else(|| crate::state::unknown_vm(name))?;
        e.record.origin = VmOrigin::MigratedIn;
        e.lease = None;
        e.record.clone()
    };
    agent.persist(&rec).map_err(|e| ApiError::internal(e.to_string()))
}

/// Throws an incoming VM away.
pub async fn abort(agent: &Arc<Agent>, name: &str) -> ApiResult<()> {
    let pid = incoming_pid(agent, name)?;
    let created = agent.record(name)?.created_disks;
    kill_and_wait(pid).await;
    agent.forget(name);
    remove_files(&created);
    info!("incoming VM {name} aborted and removed");
    Ok(())
}

/// Drops incoming VMs whose source stopped renewing their lease.
pub async fn lease_watchdog(agent: Arc<Agent>) {
    let lease = Duration::from_secs(agent.cfg.incoming_lease_s);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let expired: Vec<String> = agent
            .vms
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| {
                e.record.origin == VmOrigin::Incoming
                    && e.lease.is_some_and(|t| t.elapsed() > lease)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in expired {
            let running = match agent.qmp(&name).await {
                Ok(q) => q.run_state().await.map(|s| s == "running").unwrap_or(false),
                Err(_) => false,
            };
            if running {
                warn!("source of {name} went silent but the VM already runs here: keeping it");
                let _ = mark_migrated_in(&agent, &name);
            } else {
                warn!("source of incoming VM {name} went silent for {lease:?}: dropping it");
                let _ = abort(&agent, &name).await;
            }
        }
    }
}
