//! The destination side of a migration: prepare an incoming QEMU matching the
//! source, then either commit it (it becomes this host's VM) or abort it.
//!
//! The incoming table owns what only an incoming VM has: its lease (the source
//! renews it every second; if the source goes silent — link cut, source agent
//! dead — the lease expires and the VM is dropped, unless it already runs here,
//! in which case it is kept), the disk copies made for it (deleted if it is
//! aborted) and its NBD exports. Entries are journaled, so an agent restarted
//! mid-migration keeps its incoming VMs and gives their sources a fresh lease.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pacer_api::{IncomingDisk, IncomingReady, IncomingRequest, NbdTarget, VmOrigin};
use pacer_qemu::launch::kill_and_wait;
use pacer_qemu::migration::set_capabilities;
use pacer_qemu::storage;
use pacer_qemu::{Accel, RunState};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::error::{AgentError, AgentResult};
use crate::journal::Journal;
use crate::relay::Relays;
use crate::vms::spec::validate_spec;
use crate::vms::{LaunchMode, Launcher, Registry, VmRecord};

/// Capabilities a source may ask the destination QEMU to turn on.
const ALLOWED_CAPS: &[&str] = &["postcopy-ram", "late-block-activate", "events", "return-path", "postcopy-preempt"];

/// What is journaled about an incoming VM.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct IncomingRecord {
    name: String,
    /// Disk copies made for it: deleted if it is aborted.
    created_disks: Vec<PathBuf>,
    /// NBD exports serving its storage migration.
    nbd_exports: Vec<String>,
}

struct Entry {
    record: IncomingRecord,
    /// Last word from the source.
    heard: Instant,
}

/// Incoming migrations on this host.
pub struct IncomingTable {
    host_name: String,
    migration_address: String,
    disk_dir: PathBuf,
    lease: Duration,
    journal: Journal,
    entries: Mutex<HashMap<String, Entry>>,
}

impl IncomingTable {
    /// The table kept in `state_dir/incoming`.
    pub fn open(cfg: &Config) -> std::io::Result<IncomingTable> {
        Ok(IncomingTable {
            host_name: cfg.host_name.clone(),
            migration_address: cfg.migration_address.clone(),
            disk_dir: cfg.disk_dir(),
            lease: Duration::from_secs(cfg.incoming_lease_s),
            journal: Journal::open(cfg.state_dir.join("incoming"))?,
            entries: Mutex::default(),
        })
    }

    /// After a restart: incoming VMs still running get a fresh lease (their
    /// sources may still be sending); an incoming VM without an entry, or an
    /// entry without a VM, is removed with the disks made for it.
    pub async fn restore(&self, vms: &Registry) {
        let records: HashMap<String, IncomingRecord> =
            self.journal.read_all::<IncomingRecord>().into_iter().map(|r| (r.name.clone(), r)).collect();
        for rec in vms.records().into_iter().filter(|r| r.origin == VmOrigin::Incoming) {
            match records.get(&rec.name) {
                Some(r) => {
                    info!("incoming VM {} kept across the restart: its source has {:?} to be heard", rec.name, self.lease);
                    self.entries
                        .lock()
                        .unwrap()
                        .insert(rec.name.clone(), Entry { record: r.clone(), heard: Instant::now() });
                }
                None => {
                    warn!("dropping incoming VM {} with no incoming record", rec.name);
                    kill_and_wait(rec.pid).await;
                    vms.forget(&rec.name);
                }
            }
        }
        for (name, r) in records {
            if !vms.contains(&name) {
                remove_files(&r.created_disks);
                self.journal.remove(&name);
            }
        }
    }

    fn save(&self, rec: &IncomingRecord) -> AgentResult<()> {
        self.journal
            .write(&rec.name, rec)
            .map_err(|e| AgentError::Internal(format!("cannot save the incoming record of {}: {e}", rec.name)))
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut IncomingRecord)) -> AgentResult<()> {
        let rec = {
            let mut entries = self.entries.lock().unwrap();
            let e = entries.get_mut(name).ok_or_else(|| AgentError::NotIncoming(name.into()))?;
            f(&mut e.record);
            e.record.clone()
        };
        self.save(&rec)
    }

    fn remove(&self, name: &str) -> Option<IncomingRecord> {
        let e = self.entries.lock().unwrap().remove(name);
        self.journal.remove(name);
        e.map(|e| e.record)
    }

    /// Starts an incoming QEMU and has it listen for the migration stream.
    pub async fn prepare(
        &self,
        vms: &Registry,
        launcher: &Launcher,
        relays: &Relays,
        req: &IncomingRequest,
    ) -> AgentResult<IncomingReady> {
        let accel = match req.accel.as_str() {
            "kvm" => Accel::Kvm,
            "tcg" => Accel::Tcg,
            other => return Err(AgentError::Invalid(format!("unknown accelerator {other:?}: kvm or tcg"))),
        };
        for c in &req.capabilities {
            if !ALLOWED_CAPS.contains(&c.as_str()) {
                return Err(AgentError::Invalid(format!("capability {c:?} is not allowed here")));
            }
        }
        validate_spec(&req.spec)?;
        let name = req.spec.name.clone();
        if vms.contains(&name) || self.entries.lock().unwrap().contains_key(&name) {
            return Err(AgentError::VmExists(name));
        }
        let mut spec = req.spec.clone();
        let copying = !req.disks.is_empty();
        if copying && req.disks.len() != spec.disks.len() {
            return Err(AgentError::Invalid(format!(
                "{} disks to copy for a VM with {} disks",
                req.disks.len(),
                spec.disks.len()
            )));
        }
        // Journaled before anything is made, so a crash cannot leak the disk copies.
        let planned: Vec<PathBuf> =
            req.disks.iter().enumerate().map(|(i, d)| self.disk_dir.join(format!("{name}-disk{i}.{}", d.format))).collect();
        let record = IncomingRecord { name: name.clone(), created_disks: planned.clone(), nbd_exports: Vec::new() };
        self.entries.lock().unwrap().insert(name.clone(), Entry { record: record.clone(), heard: Instant::now() });
        let result = async {
            self.save(&record)?;
            if copying {
                self.create_disks(&req.disks, &planned).await?;
                spec.disks = planned.iter().map(|p| p.display().to_string()).collect();
            }
            // A storage-migration target starts paused (-S): its NBD exports must be
            // gone before the guest writes to its disks.
            let rec = launcher.launch(vms, &spec, Some(accel), LaunchMode::Incoming { paused: copying }).await?;
            let listen = self.listen(vms, relays, &rec, req, copying).await;
            if listen.is_err() {
                kill_and_wait(rec.pid).await;
                vms.forget(&name);
            }
            listen
        }
        .await;
        if result.is_err() {
            if let Some(r) = self.remove(&name) {
                remove_files(&r.created_disks);
            }
        }
        result
    }

    /// Sets the incoming QEMU's capabilities, exports its disks, and starts listening.
    async fn listen(
        &self,
        vms: &Registry,
        relays: &Relays,
        rec: &VmRecord,
        req: &IncomingRequest,
        copying: bool,
    ) -> AgentResult<IncomingReady> {
        let name = &rec.name;
        let qmp = vms.qmp(name).await?;
        let caps: Vec<(&str, bool)> = req.capabilities.iter().map(|c| (c.as_str(), true)).collect();
        if !caps.is_empty() {
            set_capabilities(&qmp, &caps).await?;
        }
        let addr = self.migration_address.clone();
        let nbd = if copying {
            let port = free_port(&addr)?;
            storage::nbd_server_start(&qmp, &addr, port).await.map_err(|e| AgentError::Upstream(e.to_string()))?;
            let mut exports = Vec::new();
            for i in 0..req.disks.len() {
                let export = format!("pacer-{name}-disk{i}");
                storage::export_disk(&qmp, &pacer_qemu::launch::disk_node(i), &export)
                    .await
                    .map_err(|e| AgentError::Upstream(e.to_string()))?;
                exports.push(export);
            }
            self.update(name, |r| r.nbd_exports = exports.clone())?;
            Some(NbdTarget { host: addr.clone(), port, exports })
        } else {
            None
        };
        if req.relay {
            // The relay connects when the VM's stream arrives, never before: an
            // incoming QEMU exits on a connection that is not a migration.
            let socket = vms.vm_dir(name).join("incoming.sock");
            let uri = format!("unix:{}", socket.display());
            qmp.execute("migrate-incoming", Some(json!({ "uri": uri }))).await?;
            let relay = relays.expect(name, &socket).await?;
            info!("VM {name} waiting for migration through the relay at {relay}");
            return Ok(IncomingReady { uri, nbd, relay: Some(relay) });
        }
        let port = free_port(&addr)?;
        let uri = format!("tcp:{addr}:{port}");
        qmp.execute("migrate-incoming", Some(json!({ "uri": uri }))).await?;
        info!("VM {name} waiting for migration on {uri}");
        Ok(IncomingReady { uri, nbd, relay: None })
    }

    /// Creates the images a storage migration copies into, after checking that they
    /// fit; on any failure removes the ones already made.
    async fn create_disks(&self, disks: &[IncomingDisk], paths: &[PathBuf]) -> AgentResult<()> {
        let dir = &self.disk_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| AgentError::Internal(format!("cannot create {}: {e}", dir.display())))?;
        let needed: u64 = disks.iter().map(|d| d.needed_bytes).sum::<u64>() + (64 << 20);
        let free = pacer_qemu::image::free_space(dir).unwrap_or(0);
        if needed > free {
            return Err(AgentError::InsufficientSpace(format!(
                "host {} has {} MiB free in {} but the disks need about {} MiB: free space \
                 there, or choose another host",
                self.host_name,
                free >> 20,
                dir.display(),
                needed >> 20
            )));
        }
        let mut made: Vec<PathBuf> = Vec::new();
        let result = async {
            for (d, path) in disks.iter().zip(paths) {
                if d.format != "raw" && d.format != "qcow2" {
                    return Err(AgentError::Invalid(format!(
                        "disk format {:?} is not supported: raw or qcow2",
                        d.format
                    )));
                }
                if let Some(b) = &d.backing {
                    if !Path::new(b).is_file() {
                        return Err(AgentError::MissingBacking(format!(
                            "incremental copy needs the base image {b:?} on host {}, and it is not \
                             there: copy the base image first or use a full copy",
                            self.host_name
                        )));
                    }
                }
                if path.exists() {
                    return Err(AgentError::FileExists(path.display().to_string(), self.host_name.clone()));
                }
                let backing = d.backing.as_deref().map(|b| (b, d.backing_format.as_deref().unwrap_or("qcow2")));
                pacer_qemu::image::create_image(path, &d.format, d.virtual_size, backing)
                    .await
                    .map_err(|e| AgentError::Upstream(e.to_string()))?;
                made.push(path.clone());
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            remove_files(&made);
        }
        result
    }

    fn check(&self, vms: &Registry, name: &str) -> AgentResult<VmRecord> {
        let rec = vms.record(name)?;
        if rec.origin != VmOrigin::Incoming || !self.entries.lock().unwrap().contains_key(name) {
            return Err(AgentError::NotIncoming(name.into()));
        }
        Ok(rec)
    }

    /// Renews the lease of an incoming VM.
    pub fn heartbeat(&self, vms: &Registry, name: &str) -> AgentResult<()> {
        self.check(vms, name)?;
        if let Some(e) = self.entries.lock().unwrap().get_mut(name) {
            e.heard = Instant::now();
        }
        Ok(())
    }

    /// Makes the incoming VM this host's own, once QEMU has finished loading it,
    /// and resumes it if it arrived paused (stop-and-copy, storage targets).
    /// Returns when the guest resumed (QEMU's RESUME event, µs since the epoch).
    pub async fn commit(&self, vms: &Registry, name: &str) -> AgentResult<Option<u64>> {
        self.check(vms, name)?;
        let qmp = vms.qmp(name).await?;
        let exports = self.entries.lock().unwrap().get(name).map(|e| e.record.nbd_exports.clone()).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state = qmp.run_state().await?;
            match state {
                RunState::Running => break,
                RunState::Paused | RunState::Postmigrate => {
                    if !exports.is_empty() {
                        // The copy is complete; nobody may write through NBD any more.
                        let names: Vec<&str> = exports.iter().map(String::as_str).collect();
                        storage::force_remove_exports(&qmp, &names)
                            .await
                            .map_err(|e| AgentError::Upstream(e.to_string()))?;
                        let _ = storage::nbd_server_stop(&qmp).await;
                        self.update(name, |r| r.nbd_exports.clear())?;
                    }
                    qmp.execute("cont", None).await?;
                    break;
                }
                s if s.is_loading() => {}
                other => {
                    return Err(AgentError::Upstream(format!(
                        "incoming VM {name:?} is in state {other}, cannot commit"
                    )))
                }
            }
            if Instant::now() > deadline {
                return Err(AgentError::Upstream(format!("incoming VM {name:?} did not finish loading within 60 s")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.adopt_as_own(vms, name)?;
        info!("VM {name} committed: it now runs here");
        Ok(qmp.last_event_us("RESUME"))
    }

    /// The incoming VM becomes an ordinary VM of this host.
    fn adopt_as_own(&self, vms: &Registry, name: &str) -> AgentResult<()> {
        vms.update(name, |r| r.origin = VmOrigin::MigratedIn)?;
        self.remove(name);
        Ok(())
    }

    /// Throws an incoming VM away, with the disks made for it.
    pub async fn abort(&self, vms: &Registry, name: &str) -> AgentResult<()> {
        let rec = self.check(vms, name)?;
        kill_and_wait(rec.pid).await;
        vms.forget(name);
        if let Some(r) = self.remove(name) {
            remove_files(&r.created_disks);
        }
        info!("incoming VM {name} aborted and removed");
        Ok(())
    }

    /// Drops incoming VMs whose source stopped renewing their lease, until `stop`.
    pub async fn watchdog(self: Arc<Self>, vms: Arc<Registry>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let expired: Vec<String> = self
                .entries
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, e)| e.heard.elapsed() > self.lease)
                .map(|(n, _)| n.clone())
                .collect();
            for name in expired {
                let running = vms.run_state(&name).await.ok() == Some(RunState::Running);
                if running {
                    warn!("source of {name} went silent but the VM already runs here: keeping it");
                    let _ = self.adopt_as_own(&vms, &name);
                } else {
                    warn!("source of incoming VM {name} went silent for {:?}: dropping it", self.lease);
                    let _ = self.abort(&vms, &name).await;
                }
            }
        }
    }
}

fn remove_files(paths: &[PathBuf]) {
    for p in paths {
        let _ = std::fs::remove_file(p);
    }
}

fn free_port(addr: &str) -> AgentResult<u16> {
    let l = std::net::TcpListener::bind((addr, 0))
        .map_err(|e| AgentError::Internal(format!("cannot bind a migration port on {addr}: {e}")))?;
    Ok(l.local_addr().map_err(AgentError::internal)?.port())
}
