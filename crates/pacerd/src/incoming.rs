//! The destination side of a migration: prepare an incoming QEMU matching the
//! source, then either commit it (it becomes this host's VM) or abort it. An
//! incoming VM holds a lease the source renews; if the source goes silent (link
//! cut, source agent dead) the lease expires and the VM is dropped, unless it is
//! already running here (post-copy or completed), in which case it is kept.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pacer_api::{IncomingReady, IncomingRequest, VmInfo, VmOrigin};
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
    let rec = vms::launch(agent, &req.spec, Some(accel), VmOrigin::Incoming).await?;
    let name = rec.name.clone();
    let result = async {
        let qmp = agent.qmp(&name).await?;
        let caps: Vec<(&str, bool)> = req.capabilities.iter().map(|c| (c.as_str(), true)).collect();
        if !caps.is_empty() {
            set_capabilities(&qmp, &caps).await?;
        }
        let addr = agent.cfg.migration_address.clone();
        let port = free_port(&addr)?;
        let uri = format!("tcp:{addr}:{port}");
        qmp.execute("migrate-incoming", Some(json!({ "uri": uri }))).await?;
        info!("VM {name} waiting for migration on {uri}");
        Ok(IncomingReady { uri })
    }
    .await;
    if result.is_err() {
        kill_and_wait(rec.pid).await;
        agent.forget(&name);
    }
    result
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
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = qmp.run_state().await?;
        match state.as_str() {
            "running" => break,
            "paused" | "postmigrate" => {
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
    kill_and_wait(pid).await;
    agent.forget(name);
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
