//! The source side of storage migration: one mirror job per disk into the
//! destination's NBD exports, measured while it runs (copy rate, guest write
//! throughput, dirty-bitmap growth), and ended at switch-over without pivoting
//! (the guest keeps its source disks until the destination takes over).

use std::path::Path;
use std::time::Duration;

use pacer_api::{CopyStorage, DiskProgress, IncomingDisk, NbdTarget, VmSpec};
use pacer_model::RateEstimator;
use pacer_qemu::launch::disk_node;
use pacer_qemu::storage::{self, MirrorSync};
use pacer_qemu::QmpClient;

use crate::error::{AgentError, AgentResult};

/// Name of the measuring bitmap Pacer adds to each disk.
const BITMAP: &str = "pacer-dirty";

/// Mirrors of every disk of one VM.
pub struct DiskCopy {
    devices: Vec<String>,
    jobs: Vec<String>,
    targets: Vec<String>,
    bitmaps: bool,
    copy_rate: RateEstimator,
    write_rate: RateEstimator,
    dirty_rate: RateEstimator,
    last: DiskProgress,
}

impl DiskCopy {
    /// Connects to the destination's exports and starts one mirror per disk.
    /// On failure removes whatever it had set up.
    pub async fn start(
        qmp: &QmpClient,
        target: &NbdTarget,
        sync: MirrorSync,
        speed_bps: u64,
    ) -> Result<DiskCopy, String> {
        let mut copy = DiskCopy {
            devices: Vec::new(),
            jobs: Vec::new(),
            targets: Vec::new(),
            bitmaps: false,
            copy_rate: RateEstimator::default(),
            write_rate: RateEstimator::default(),
            dirty_rate: RateEstimator::default(),
            last: DiskProgress::default(),
        };
        let r = copy.start_inner(qmp, target, sync, speed_bps).await;
        if let Err(e) = r {
            copy.abort(qmp).await;
            return Err(e);
        }
        Ok(copy)
    }

    async fn start_inner(
        &mut self,
        qmp: &QmpClient,
        target: &NbdTarget,
        sync: MirrorSync,
        speed_bps: u64,
    ) -> Result<(), String> {
        for (i, export) in target.exports.iter().enumerate() {
            let device = disk_node(i);
            storage::add_dirty_bitmap(qmp, &device, BITMAP, 1 << 16)
                .await
                .map_err(|e| format!("cannot track writes on {device}: {e}"))?;
            self.bitmaps = true;
            self.devices.push(device.clone());
            let node = format!("pacer-nbd{i}");
            storage::add_nbd_target(qmp, &node, &target.host, target.port, export)
                .await
                .map_err(|e| format!("cannot reach the destination's export {export}: {e}"))?;
            self.targets.push(node.clone());
            let job = format!("pacer-mirror{i}");
            storage::start_mirror(qmp, &job, &device, &node, sync, speed_bps)
                .await
                .map_err(|e| format!("cannot start mirroring {device}: {e}"))?;
            self.jobs.push(job);
        }
        Ok(())
    }

    /// Changes every mirror's speed (bytes/s, 0 = unlimited), split evenly.
    pub async fn set_speed(&self, qmp: &QmpClient, bps: u64) -> Result<(), String> {
        let each = if bps == 0 { 0 } else { (bps / self.jobs.len().max(1) as u64).max(1) };
        for j in &self.jobs {
            storage::set_job_speed(qmp, j, each).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Reads the mirrors and counters; an error if a mirror failed.
    pub async fn sample(&mut self, qmp: &QmpClient, t_s: f64) -> Result<DiskProgress, String> {
        let jobs = storage::query_block_jobs(qmp).await.map_err(|e| e.to_string())?;
        let mut p = DiskProgress { ready: true, ..Default::default() };
        for id in &self.jobs {
            let Some(j) = jobs.iter().find(|j| &j.id == id) else {
                return Err(format!("disk mirror {id} disappeared"));
            };
            if let Some(err) = &j.error {
                return Err(format!("disk mirror {id} failed: {err}"));
            }
            if j.status == pacer_qemu::BlockJobStatus::Concluded || j.io_status != "ok" && !j.io_status.is_empty() {
                return Err(format!("disk mirror {id} stopped ({}, I/O {})", j.status, j.io_status));
            }
            p.total += j.len;
            p.transferred += j.offset;
            p.remaining += j.remaining();
            p.ready &= j.ready;
        }
        let written: u64 = storage::blockstats(qmp)
            .await
            .map(|v| v.iter().map(|s| s.wr_bytes).sum())
            .unwrap_or(0);
        let mut dirty = 0;
        for d in &self.devices {
            dirty += storage::dirty_bitmap_count(qmp, d, BITMAP).await.unwrap_or(0);
        }
        self.copy_rate.observe(t_s, p.transferred);
        self.write_rate.observe(t_s, written);
        self.dirty_rate.observe(t_s, dirty);
        p.rate_bps = self.copy_rate.rate().unwrap_or(0.0);
        p.write_rate_bps = self.write_rate.rate().unwrap_or(0.0);
        p.dirty_bytes = dirty;
        p.dirty_rate_bps = self.dirty_rate.rate().unwrap_or(0.0);
        self.last = p.clone();
        Ok(p)
    }

    /// Bytes copied so far (last sample).
    pub fn transferred(&self) -> u64 {
        self.last.transferred
    }

    /// At switch-over (guest stopped): end every mirror with a consistent copy,
    /// without pivoting, and drop the NBD client nodes.
    pub async fn complete(&mut self, qmp: &QmpClient) -> Result<(), String> {
        // Final figures before the jobs go away.
        let _ = self.sample(qmp, f64::MAX).await;
        for j in &self.jobs {
            storage::cancel_mirror(qmp, j).await.map_err(|e| e.to_string())?;
        }
        for j in &self.jobs {
            storage::wait_job_concluded(qmp, j, Duration::from_secs(60))
                .await
                .map_err(|e| format!("disk mirror {j} did not finish cleanly: {e}"))?;
            let _ = storage::job_dismiss(qmp, j).await;
        }
        self.jobs.clear();
        self.cleanup_nodes(qmp).await;
        Ok(())
    }

    /// Stops every mirror at once and removes what was added (failure path).
    pub async fn abort(&mut self, qmp: &QmpClient) {
        for j in &self.jobs {
            let _ = qmp
                .execute("block-job-cancel", Some(serde_json::json!({"device": j, "force": true})))
                .await;
        }
        for j in &self.jobs {
            let _ = storage::wait_job_concluded(qmp, j, Duration::from_secs(20)).await;
            let _ = storage::job_dismiss(qmp, j).await;
        }
        self.jobs.clear();
        self.cleanup_nodes(qmp).await;
    }

    async fn cleanup_nodes(&mut self, qmp: &QmpClient) {
        for n in self.targets.drain(..) {
            let _ = storage::blockdev_del(qmp, &n).await;
        }
        if self.bitmaps {
            for d in &self.devices {
                let _ = storage::remove_dirty_bitmap(qmp, d, BITMAP).await;
            }
            self.bitmaps = false;
        }
    }
}

/// What the destination must create for each disk, or why it cannot be copied.
pub async fn describe_disks(spec: &VmSpec, mode: CopyStorage) -> AgentResult<Vec<IncomingDisk>> {
    if mode == CopyStorage::None {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for d in &spec.disks {
        let info = crate::vms::spec::disk_info(d).await?;
        let disk = match mode {
            CopyStorage::Incremental => {
                let Some(backing) = info.backing.clone() else {
                    return Err(AgentError::Invalid(format!(
                        "disk {d:?} has no base image: an incremental copy needs disks over a \
                         base image both hosts have (use a full copy)"
                    )));
                };
                IncomingDisk {
                    format: info.format.clone(),
                    virtual_size: info.virtual_size,
                    needed_bytes: info.actual_size,
                    backing: Some(backing),
                    backing_format: info.backing_format.clone(),
                }
            }
            _ => {
                // A full copy holds what the whole chain has allocated.
                let mut needed = info.actual_size;
                let mut next = info.backing.clone();
                for _ in 0..16 {
                    let Some(b) = next else { break };
                    match pacer_qemu::image::image_info(Path::new(&b)).await {
                        Ok(bi) => {
                            needed += bi.actual_size;
                            next = bi.backing;
                        }
                        Err(_) => break,
                    }
                }
                IncomingDisk {
                    format: info.format.clone(),
                    virtual_size: info.virtual_size,
                    needed_bytes: needed.min(info.virtual_size + (16 << 20)),
                    backing: None,
                    backing_format: None,
                }
            }
        };
        out.push(disk);
    }
    Ok(out)
}
