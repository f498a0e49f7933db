//! Typed QMP commands for storage migration without shared storage: an NBD
//! export of each disk on the destination, a `blockdev-mirror` into it on the
//! source, and the counters that measure how fast the guest dirties its disks.
//!
//! The sequence (what libvirt does; see the design notes in qemu.md):
//! 1. destination: [`nbd_server_start`], then [`export_disk`] per disk;
//! 2. source: [`add_nbd_target`] per disk, then [`start_mirror`]; follow with
//!    [`query_block_jobs`] until every job is `ready`;
//! 3. at the switchover (CPUs stopped): [`cancel_mirror`] on each ready job
//!    (it completes with a consistent copy and does NOT pivot the source onto
//!    the target), [`wait_job_concluded`], [`job_dismiss`], [`blockdev_del`];
//! 4. destination, before its CPUs run: [`remove_exports`], [`nbd_server_stop`].
//!
//! [`query_disk_nodes`] tells the destination which images to create (with
//! [`crate::image::create_image`]: same virtual size, same backing file for
//! `sync: top`) before it starts.
//!
//! (About 700 lines outside tests: NBD exports, mirrors and bitmaps are one QMP
//! protocol whose steps depend on each other's node names; apart they would share
//! every private helper.)

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::qmp::{QmpClient, QmpError};
use crate::BlockJobStatus;

/// Errors of the storage-migration commands.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// QMP failed or QEMU refused the command.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// QEMU's answer did not have the expected shape.
    #[error("unexpected answer to {command}: {detail}")]
    Parse { command: String, detail: String },
    /// The named dirty bitmap does not exist on that node.
    #[error("no dirty bitmap {name:?} on block node {node:?}")]
    NoBitmap { node: String, name: String },
    /// The block job is not (or no longer) known to QEMU.
    #[error("no block job {0:?}")]
    NoJob(String),
    /// The block job ended with an error.
    #[error("block job {id} failed: {error}")]
    JobFailed { id: String, error: String },
    /// Something did not happen in time.
    #[error("{what} did not happen within {secs} s")]
    Timeout { what: String, secs: u64 },
}

type Result<T> = std::result::Result<T, StorageError>;

/// Parses a QMP answer into `T`.
fn parse<T: serde::de::DeserializeOwned>(command: &str, v: Value) -> Result<T> {
    serde_json::from_value(v)
        .map_err(|e| StorageError::Parse { command: command.to_string(), detail: e.to_string() })
}

// ---------------------------------------------------------------------------
// Destination: NBD server and exports

/// Starts QEMU's NBD server listening on `addr:port` (TCP).
pub async fn nbd_server_start(qmp: &QmpClient, addr: &str, port: u16) -> Result<()> {
    qmp.execute(
        "nbd-server-start",
        Some(json!({
            "addr": {"type": "inet", "data": {"host": addr, "port": port.to_string()}}
        })),
    )
    .await?;
    Ok(())
}

/// Stops the NBD server (and drops any exports still on it).
pub async fn nbd_server_stop(qmp: &QmpClient) -> Result<()> {
    qmp.execute("nbd-server-stop", None).await?;
    Ok(())
}

/// Exports block node `node` writable over NBD under `export_name`; the
/// export's id is the export name too.
pub async fn export_disk(qmp: &QmpClient, node: &str, export_name: &str) -> Result<()> {
    qmp.execute(
        "block-export-add",
        Some(json!({
            "type": "nbd",
            "id": export_name,
            "node-name": node,
            "writable": true,
            "name": export_name,
        })),
    )
    .await?;
    Ok(())
}

/// One entry of `query-block-exports`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", default)]
pub struct BlockExportInfo {
    /// Export id.
    pub id: String,
    /// `nbd`, `fuse`, `vhost-user-blk`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The exported node.
    pub node_name: String,
    /// True while a deletion waits for clients to go.
    pub shutting_down: bool,
}

/// Reads `query-block-exports`.
pub async fn query_exports(qmp: &QmpClient) -> Result<Vec<BlockExportInfo>> {
    let v = qmp.execute("query-block-exports", None).await?;
    parse("query-block-exports", v)
}

/// Deletes the exports with these ids and waits (up to 10 s) until QEMU has
/// really dropped them. Ids that do not exist are ignored. Fails (QEMU: "still
/// in use") while an NBD client is connected to one of them: the source must
/// have removed its NBD node ([`blockdev_del`]) first, or use
/// [`force_remove_exports`].
pub async fn remove_exports(qmp: &QmpClient, names: &[&str]) -> Result<()> {
    remove_exports_mode(qmp, names, "safe").await
}

/// [`remove_exports`] that drops connected NBD clients (`mode: hard`); for
/// tearing down after the mirrors have ended or after a failed migration.
pub async fn force_remove_exports(qmp: &QmpClient, names: &[&str]) -> Result<()> {
    remove_exports_mode(qmp, names, "hard").await
}

async fn remove_exports_mode(qmp: &QmpClient, names: &[&str], mode: &str) -> Result<()> {
    let existing = query_exports(qmp).await?;
    for name in names {
        if !existing.iter().any(|e| e.id == *name && !e.shutting_down) {
            continue;
        }
        if let Err(e) =
            qmp.execute("block-export-del", Some(json!({ "id": name, "mode": mode }))).await
        {
            // Fine if it went away (or started going) meanwhile.
            let now = query_exports(qmp).await?;
            if now.iter().any(|x| x.id == *name && !x.shutting_down) {
                return Err(e.into());
            }
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = query_exports(qmp).await?;
        if !left.iter().any(|e| names.contains(&e.id.as_str())) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StorageError::Timeout {
                what: format!("removal of NBD exports {names:?}"),
                secs: 10,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// Source: NBD client node and mirror jobs

/// Adds block node `node_name`: an NBD client of `export` on `host:port`.
pub async fn add_nbd_target(
    qmp: &QmpClient,
    node_name: &str,
    host: &str,
    port: u16,
    export: &str,
) -> Result<()> {
    qmp.execute(
        "blockdev-add",
        Some(json!({
            "driver": "nbd",
            "node-name": node_name,
            "server": {"type": "inet", "host": host, "port": port.to_string()},
            "export": export,
        })),
    )
    .await?;
    Ok(())
}

/// What a mirror copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MirrorSync {
    /// The whole disk, backing chain included.
    Full,
    /// Only the top image (the destination has the same backing chain).
    Top,
}

impl MirrorSync {
    /// QEMU's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            MirrorSync::Full => "full",
            MirrorSync::Top => "top",
        }
    }
}

/// How a mirror treats guest writes while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopyMode {
    /// Copy dirty areas in the background (QEMU's default).
    Background,
    /// Guest writes also go to the target before they complete, so the
    /// mirror converges whatever the guest's write rate (slows the guest).
    WriteBlocking,
}

/// Options of a mirror job beyond the required ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorOptions {
    /// What to copy.
    pub sync: MirrorSync,
    /// Bytes per second; 0 = unlimited.
    pub speed_bps: u64,
    /// `None`: QEMU's default (background).
    pub copy_mode: Option<CopyMode>,
    /// Dirty-tracking granularity in bytes (power of 2, 512 B..64 MiB);
    /// `None`: QEMU's choice (the cluster size, at least 4 KiB).
    pub granularity: Option<u32>,
}

impl Default for MirrorOptions {
    fn default() -> Self {
        MirrorOptions { sync: MirrorSync::Full, speed_bps: 0, copy_mode: None, granularity: None }
    }
}

/// Starts `blockdev-mirror` of `device_node` into `target_node` as job
/// `job_id`, at most `speed_bps` bytes/s (0 = unlimited), auto-finalize on,
/// auto-dismiss off (so its end state can be read; dismiss it with
/// [`job_dismiss`]).
pub async fn start_mirror(
    qmp: &QmpClient,
    job_id: &str,
    device_node: &str,
    target_node: &str,
    sync: MirrorSync,
    speed_bps: u64,
) -> Result<()> {
    start_mirror_with(
        qmp,
        job_id,
        device_node,
        target_node,
        &MirrorOptions { sync, speed_bps, ..MirrorOptions::default() },
    )
    .await
}

/// [`start_mirror`] with every option.
pub async fn start_mirror_with(
    qmp: &QmpClient,
    job_id: &str,
    device_node: &str,
    target_node: &str,
    opts: &MirrorOptions,
) -> Result<()> {
    let mut args = json!({
        "job-id": job_id,
        "device": device_node,
        "target": target_node,
        "sync": opts.sync.as_str(),
        "speed": opts.speed_bps,
        "auto-finalize": true,
        "auto-dismiss": false,
    });
    if let Some(m) = opts.copy_mode {
        args["copy-mode"] = serde_json::to_value(m).expect("enum to JSON");
    }
    if let Some(g) = opts.granularity {
        args["granularity"] = json!(g);
    }
    qmp.execute("blockdev-mirror", Some(args)).await?;
    Ok(())
}

/// Changes a block job's speed limit (bytes/s, 0 = unlimited).
pub async fn set_job_speed(qmp: &QmpClient, job_id: &str, bps: u64) -> Result<()> {
    qmp.execute("block-job-set-speed", Some(json!({"device": job_id, "speed": bps}))).await?;
    Ok(())
}

/// One entry of `query-block-jobs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", default)]
pub struct BlockJobInfo {
    /// Job id (QMP calls it `device`).
    #[serde(rename = "device")]
    pub id: String,
    /// `mirror`, `stream`, `commit`, `backup`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Bytes to copy in all, so far: grows as the guest writes.
    pub len: u64,
    /// Bytes copied; `len - offset` is what remains.
    pub offset: u64,
    /// True once source and target are in sync (a mirror can be completed).
    pub ready: bool,
    /// Speed limit in bytes/s (0 = none).
    pub speed: u64,
    /// Job state.
    pub status: crate::BlockJobStatus,
    /// True while the job is doing I/O.
    pub busy: bool,
    /// True if paused.
    pub paused: bool,
    /// `ok`, `failed` or `nospace`.
    pub io_status: String,
    /// Why the job failed, once concluded.
    pub error: Option<String>,
    /// Whether the job finalizes by itself.
    pub auto_finalize: bool,
    /// Whether the job disappears by itself when concluded.
    pub auto_dismiss: bool,
}

impl BlockJobInfo {
    /// Bytes still to copy.
    pub fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.offset)
    }
}

/// Reads `query-block-jobs`.
pub async fn query_block_jobs(qmp: &QmpClient) -> Result<Vec<BlockJobInfo>> {
    let v = qmp.execute("query-block-jobs", None).await?;
    parse("query-block-jobs", v)
}

/// One job from `query-block-jobs`.
pub async fn query_block_job(qmp: &QmpClient, job_id: &str) -> Result<BlockJobInfo> {
    query_block_jobs(qmp)
        .await?
        .into_iter()
        .find(|j| j.id == job_id)
        .ok_or_else(|| StorageError::NoJob(job_id.to_string()))
}

/// Ends a mirror without pivoting (`block-job-cancel`, force false). On a
/// ready mirror the job then completes with the target a consistent copy of
/// the source at that moment; the guest keeps using the source. The job
/// ends asynchronously: see [`wait_job_concluded`].
pub async fn cancel_mirror(qmp: &QmpClient, job_id: &str) -> Result<()> {
    qmp.execute("block-job-cancel", Some(json!({"device": job_id, "force": false}))).await?;
    Ok(())
}

/// Removes a concluded job (`job-dismiss`).
pub async fn job_dismiss(qmp: &QmpClient, job_id: &str) -> Result<()> {
    qmp.execute("job-dismiss", Some(json!({ "id": job_id }))).await?;
    Ok(())
}

/// Removes a block node added with `blockdev-add` (`blockdev-del`).
pub async fn blockdev_del(qmp: &QmpClient, node: &str) -> Result<()> {
    qmp.execute("blockdev-del", Some(json!({ "node-name": node }))).await?;
    Ok(())
}

/// Polls the job every `poll` until `done(job)` holds; fails if the job
/// disappears, concludes with an error, or `timeout` passes.
async fn wait_job(
    qmp: &QmpClient,
    job_id: &str,
    what: &str,
    timeout: Duration,
    poll: Duration,
    done: impl Fn(&BlockJobInfo) -> bool,
) -> Result<BlockJobInfo> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let job = query_block_job(qmp, job_id).await?;
        if done(&job) {
            return Ok(job);
        }
        if let Some(error) = &job.error {
            if matches!(job.status, BlockJobStatus::Concluded | BlockJobStatus::Aborting) {
                return Err(StorageError::JobFailed { id: job.id, error: error.clone() });
            }
        }
        if job.status.has_ended() {
            return Err(StorageError::JobFailed {
                id: job.id,
                error: format!("ended ({}) before {what}", job.status),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StorageError::Timeout {
                what: format!(
                    "{what} of block job {job_id} (now {}: {}/{} bytes)",
                    job.status, job.offset, job.len
                ),
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(poll).await;
    }
}

/// Waits until the mirror is `ready` (source and target in sync).
pub async fn wait_job_ready(
    qmp: &QmpClient,
    job_id: &str,
    timeout: Duration,
) -> Result<BlockJobInfo> {
    wait_job(qmp, job_id, "ready", timeout, Duration::from_millis(100), |j| j.ready).await
}

/// Waits until the job has `concluded` (after [`cancel_mirror`]) and
/// returns its final state; a job that concluded with an error is an error.
pub async fn wait_job_concluded(
    qmp: &QmpClient,
    job_id: &str,
    timeout: Duration,
) -> Result<BlockJobInfo> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let job = query_block_job(qmp, job_id).await?;
        if job.status == BlockJobStatus::Concluded {
            return match &job.error {
                Some(error) => Err(StorageError::JobFailed { id: job.id, error: error.clone() }),
                None => Ok(job),
            };
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StorageError::Timeout {
                what: format!("conclusion of block job {job_id} (now {})", job.status),
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// Measurement: dirty bitmaps and I/O counters

/// Adds a (non-persistent) dirty bitmap `name` on `node`, tracking guest
/// writes at `granularity` bytes (a power of 2, 512 B .. 2 GiB).
pub async fn add_dirty_bitmap(
    qmp: &QmpClient,
    node: &str,
    name: &str,
    granularity: u32,
) -> Result<()> {
    qmp.execute(
        "block-dirty-bitmap-add",
        Some(json!({"node": node, "name": name, "granularity": granularity})),
    )
    .await?;
    Ok(())
}

/// Clears a dirty bitmap (starts a new measuring window).
pub async fn clear_dirty_bitmap(qmp: &QmpClient, node: &str, name: &str) -> Result<()> {
    qmp.execute("block-dirty-bitmap-clear", Some(json!({"node": node, "name": name}))).await?;
    Ok(())
}

/// Removes a dirty bitmap.
pub async fn remove_dirty_bitmap(qmp: &QmpClient, node: &str, name: &str) -> Result<()> {
    qmp.execute("block-dirty-bitmap-remove", Some(json!({"node": node, "name": name}))).await?;
    Ok(())
}

/// One dirty bitmap of a block node.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", default)]
pub struct DirtyBitmapInfo {
    /// Name (`None` for QEMU's internal bitmaps, e.g. a mirror's).
    pub name: Option<String>,
    /// Dirty bytes (a multiple of the granularity).
    pub count: u64,
    /// Bytes per bit.
    pub granularity: u64,
    /// True while it records writes.
    pub recording: bool,
    /// True while a job uses it.
    pub busy: bool,
    /// Stored in the image (qcow2) across restarts.
    pub persistent: bool,
}

/// A block node from `query-named-block-nodes` (only the fields used here).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct NamedNode {
    /// Node name (`#blockNNN` for nodes QEMU made itself).
    pub node_name: String,
    /// Driver: `qcow2`, `raw`, `file`, `nbd`, `mirror_top`, ...
    pub drv: String,
    /// File name (or a URI such as `nbd://host:port/export`).
    pub file: String,
    /// Its dirty bitmaps.
    pub dirty_bitmaps: Vec<DirtyBitmapInfo>,
}

/// Reads `query-named-block-nodes` (flat: without nested backing info).
pub async fn query_named_nodes(qmp: &QmpClient) -> Result<Vec<NamedNode>> {
    let v = qmp.execute("query-named-block-nodes", Some(json!({"flat": true}))).await?;
    parse("query-named-block-nodes", v)
}

/// Dirty bytes recorded by bitmap `name` on `node`.
pub async fn dirty_bitmap_count(qmp: &QmpClient, node: &str, name: &str) -> Result<u64> {
    query_named_nodes(qmp)
        .await?
        .iter()
        .filter(|n| n.node_name == node)
        .flat_map(|n| n.dirty_bitmaps.iter())
        .find(|b| b.name.as_deref() == Some(name))
        .map(|b| b.count)
        .ok_or_else(|| StorageError::NoBitmap { node: node.to_string(), name: name.to_string() })
}

/// I/O counters of one block device (one `query-blockstats` entry). These
/// count the guest's requests; mirror and NBD-export traffic is not in them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStat {
    /// The root node's name (empty for devices configured with `-drive` and
    /// no node name).
    pub node_name: String,
    /// The legacy drive name (empty for `-blockdev` disks).
    pub device: String,
    /// The guest device's QOM path, e.g. `/machine/peripheral/vblk0/virtio-backend`.
    pub qdev: String,
    /// Bytes written.
    pub wr_bytes: u64,
    /// Bytes read.
    pub rd_bytes: u64,
    /// Write requests.
    pub wr_operations: u64,
    /// Read requests.
    pub rd_operations: u64,
    /// Flush requests.
    pub flush_operations: u64,
}

impl BlockStat {
    /// A name for the device: the node name, else the drive name, else the QOM path.
    pub fn name(&self) -> &str {
        [&self.node_name, &self.device, &self.qdev]
            .into_iter()
            .find(|s| !s.is_empty())
            .map(String::as_str)
            .unwrap_or("")
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawBlockStats {
    device: String,
    #[serde(rename = "node-name")]
    node_name: String,
    qdev: String,
    stats: RawCounters,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawCounters {
    wr_bytes: u64,
    rd_bytes: u64,
    wr_operations: u64,
    rd_operations: u64,
    flush_operations: u64,
}

/// Reads `query-blockstats`: one entry per guest block device.
pub async fn blockstats(qmp: &QmpClient) -> Result<Vec<BlockStat>> {
    let v = qmp.execute("query-blockstats", None).await?;
    let raw: Vec<RawBlockStats> = parse("query-blockstats", v)?;
    Ok(raw
        .into_iter()
        .map(|r| BlockStat {
            node_name: r.node_name,
            device: r.device,
            qdev: r.qdev,
            wr_bytes: r.stats.wr_bytes,
            rd_bytes: r.stats.rd_bytes,
            wr_operations: r.stats.wr_operations,
            rd_operations: r.stats.rd_operations,
            flush_operations: r.stats.flush_operations,
        })
        .collect())
}

// ---------------------------------------------------------------------------
// The VM's disks

/// A guest disk: its top block node and image, as the destination must
/// recreate it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskNode {
    /// The top node's name (what to mirror from, and what the destination
    /// exports), e.g. `disk0`.
    pub node_name: String,
    /// The legacy drive name (empty for `-blockdev` disks).
    pub device: String,
    /// The guest device's QOM path.
    pub qdev: String,
    /// Image format: `qcow2`, `raw`, ... (`mirror_top` while a mirror runs:
    /// read the disks before starting mirrors).
    pub format: String,
    /// Image file name.
    pub file: String,
    /// Virtual size in bytes.
    pub virtual_size: u64,
    /// Backing file, as recorded in the image.
    pub backing_file: Option<String>,
    /// Format of the backing file, if the image records it.
    pub backing_format: Option<String>,
    /// Read-only.
    pub read_only: bool,
}

impl DiskNode {
    /// The backing file and its format, as [`crate::image::create_image`]
    /// takes them to create a matching image over the same (shared) base for
    /// `sync: top`; `None` without a backing file or when the image does not
    /// record the backing format.
    pub fn backing(&self) -> Option<(&str, &str)> {
        Some((self.backing_file.as_deref()?, self.backing_format.as_deref()?))
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawBlockInfo {
    device: String,
    qdev: String,
    inserted: Option<RawInserted>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawInserted {
    #[serde(rename = "node-name")]
    node_name: String,
    drv: String,
    file: String,
    ro: bool,
    backing_file: Option<String>,
    image: RawImage,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case")]
struct RawImage {
    virtual_size: u64,
    format: String,
    filename: String,
    backing_filename: Option<String>,
    backing_filename_format: Option<String>,
}

/// The VM's disks (devices with a medium) from `query-block`.
pub async fn query_disk_nodes(qmp: &QmpClient) -> Result<Vec<DiskNode>> {
    let v = qmp.execute("query-block", None).await?;
    disk_nodes(v)
}

/// Turns a `query-block` answer into [`DiskNode`]s.
fn disk_nodes(v: Value) -> Result<Vec<DiskNode>> {
    let raw: Vec<RawBlockInfo> = parse("query-block", v)?;
    Ok(raw
        .into_iter()
        .filter_map(|b| {
            let i = b.inserted?;
            Some(DiskNode {
                node_name: i.node_name,
                device: b.device,
                qdev: b.qdev,
                format: if i.drv.is_empty() { i.image.format } else { i.drv },
                file: if i.file.is_empty() { i.image.filename } else { i.file },
                virtual_size: i.image.virtual_size,
                backing_file: i.backing_file.or(i.image.backing_filename),
                backing_format: i.image.backing_filename_format,
                read_only: i.ro,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::{Accel, LaunchConfig, VmPaths};
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn job_info_parses_qemu_10_answer() {
        let v = json!([{"auto-finalize": true, "io-status": "ok", "device": "mirror-disk0",
            "auto-dismiss": false, "busy": false, "len": 33554432, "offset": 16777216,
            "status": "running", "paused": false, "speed": 8388608, "ready": false,
            "type": "mirror", "actively-synced": false}]);
        let jobs: Vec<BlockJobInfo> = parse("query-block-jobs", v).unwrap();
        assert_eq!(jobs[0].id, "mirror-disk0");
        assert_eq!(jobs[0].kind, "mirror");
        assert_eq!(
            (jobs[0].len, jobs[0].offset, jobs[0].remaining()),
            (32 << 20, 16 << 20, 16 << 20)
        );
        assert_eq!(jobs[0].speed, 8 << 20);
        assert!(!jobs[0].ready && !jobs[0].auto_dismiss && jobs[0].auto_finalize);
        assert_eq!(jobs[0].error, None);
        // Missing fields are tolerated.
        let j: BlockJobInfo =
            parse("x", json!({"device": "j", "status": "concluded", "error": "EIO"})).unwrap();
        assert_eq!(j.error.as_deref(), Some("EIO"));
    }

    #[test]
    fn disk_node_backing() {
        let mut d = DiskNode {
            backing_file: Some("/base.qcow2".into()),
            backing_format: Some("qcow2".into()),
            ..DiskNode::default()
        };
        assert_eq!(d.backing(), Some(("/base.qcow2", "qcow2")));
        d.backing_format = None;
        assert_eq!(d.backing(), None);
    }

    #[test]
    fn disk_nodes_from_query_block() {
        let v = json!([{"io-status": "ok", "device": "", "locked": false, "removable": false,
            "inserted": {"node-name": "disk0", "drv": "qcow2", "file": "/a.qcow2", "ro": false,
                "backing_file": "/b.qcow2", "backing_file_depth": 1,
                "image": {"virtual-size": 33554432, "filename": "/a.qcow2", "format": "qcow2",
                    "backing-filename": "/b.qcow2", "backing-filename-format": "raw"}},
            "qdev": "/machine/peripheral/vblk0/virtio-backend", "type": "unknown"},
            {"device": "cd0", "qdev": "x", "removable": true}]);
        let d = disk_nodes(v).unwrap();
        assert_eq!(
            d,
            vec![DiskNode {
                node_name: "disk0".into(),
                device: "".into(),
                qdev: "/machine/peripheral/vblk0/virtio-backend".into(),
                format: "qcow2".into(),
                file: "/a.qcow2".into(),
                virtual_size: 32 << 20,
                backing_file: Some("/b.qcow2".into()),
                backing_format: Some("raw".into()),
                read_only: false,
            }]
        );
        assert_eq!(d[0].backing(), Some(("/b.qcow2", "raw")));
    }

    /// A QEMU started for a test, killed (SIGKILL) when dropped.
    struct Vm {
        pid: i32,
        qmp: Option<Arc<QmpClient>>,
    }

    impl Vm {
        async fn start(dir: &Path, name: &str, disk: &Path, incoming: bool) -> Vm {
            let vm_dir = dir.join(name);
            std::fs::create_dir_all(&vm_dir).unwrap();
            let cfg = LaunchConfig {
                qemu: "qemu-system-x86_64".into(),
                name: name.into(),
                memory_mib: 64,
                vcpus: 1,
                accel: Accel::Tcg,
                kernel: None,
                initrd: None,
                append: None,
                disks: vec![(disk.to_path_buf(), "qcow2".into())],
                paths: VmPaths::in_dir(&vm_dir),
                incoming,
                start_paused: false,
            };
            let pid = cfg.launch().await.expect("QEMU 10.0 (qemu-system-x86_64) must start");
            let mut vm = Vm { pid, qmp: None };
            vm.qmp = Some(QmpClient::connect(&cfg.paths.qmp).await.expect("QMP"));
            vm
        }

        fn qmp(&self) -> &QmpClient {
            self.qmp.as_ref().unwrap()
        }

        /// `quit`s QEMU and waits for the process to end.
        async fn quit(mut self) {
            let _ = self.qmp().execute("quit", None).await;
            self.qmp = None;
            assert!(
                crate::launch::wait_exit(self.pid, Duration::from_secs(10)).await,
                "QEMU {} did not quit",
                self.pid
            );
        }
    }

    impl Drop for Vm {
        fn drop(&mut self) {
            if crate::launch::pid_alive(self.pid) {
                unsafe {
                    libc::kill(self.pid, libc::SIGKILL);
                }
            }
        }
    }

    fn run(cmd: &mut Command) -> std::process::Output {
        let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (install qemu-utils)"));
        assert!(
            out.status.success(),
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn compare(a: &Path, b: &Path) -> std::process::Output {
        Command::new("qemu-img")
            // -U: the first comparison runs while QEMU holds the images.
            .args(["compare", "-U", "-f", "qcow2", "-F", "qcow2"])
            .arg(a)
            .arg(b)
            .output()
            .expect("qemu-img")
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    /// Two QEMUs on loopback: the destination exports an empty disk over
    /// NBD, the source mirrors its disk into it at a limited speed, the
    /// mirror gets ready, a write during the mirror is tracked by the dirty
    /// bitmap and copied, the mirror is cancelled without pivoting, and the
    /// two images are then identical.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mirror_disk_over_nbd_between_two_qemus() {
        const MIB: u64 = 1 << 20;
        let t0 = Instant::now();
        let tmp = tempfile::tempdir().unwrap();
        let src_img: PathBuf = tmp.path().join("src.qcow2");
        let dst_img: PathBuf = tmp.path().join("dst.qcow2");
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&src_img)
            .arg("32M"));
        run(Command::new("qemu-io")
            .args(["-f", "qcow2"])
            .args(["-c", "write -P 0xa5 0 4M"])
            .args(["-c", "write -P 0x3c 8M 4M"])
            .args(["-c", "write -P 0x11 30M 2M"])
            .arg(&src_img));
        // The destination image is created the way an agent would: from the
        // source's disk description (filled in below once the source runs).
        let src = Vm::start(tmp.path(), "src", &src_img, false).await;
        src.qmp().execute("stop", None).await.unwrap();

        let disks = query_disk_nodes(src.qmp()).await.unwrap();
        assert_eq!(disks.len(), 1, "{disks:?}");
        let d = &disks[0];
        assert_eq!(d.node_name, "disk0");
        assert_eq!(d.format, "qcow2");
        assert_eq!(d.file, src_img.display().to_string());
        assert_eq!(d.virtual_size, 32 * MIB);
        assert_eq!(d.backing_file, None);
        assert!(d.qdev.contains("vblk0"), "{d:?}");
        crate::image::create_image(&dst_img, "qcow2", d.virtual_size, d.backing()).await.unwrap();
        assert_eq!(compare(&src_img, &dst_img).status.code(), Some(1), "images differ at first");
        let dst = Vm::start(tmp.path(), "dst", &dst_img, true).await;
        assert_eq!(dst.qmp().run_state().await.unwrap(), crate::RunState::Inmigrate);
        eprintln!("[{:5.2}s] both QEMUs up", t0.elapsed().as_secs_f64());

        // Measurement before anything moves.
        add_dirty_bitmap(src.qmp(), "disk0", "pacer-dirty", 65536).await.unwrap();
        assert_eq!(dirty_bitmap_count(src.qmp(), "disk0", "pacer-dirty").await.unwrap(), 0);
        assert!(matches!(
            dirty_bitmap_count(src.qmp(), "disk0", "nope").await,
            Err(StorageError::NoBitmap { .. })
        ));
        let stats = blockstats(src.qmp()).await.unwrap();
        assert_eq!(stats.len(), 1, "{stats:?}");
        assert_eq!(stats[0].name(), "disk0");
        assert_eq!(stats[0].wr_bytes, 0);

        // Destination: NBD server and export.
        let port = free_port();
        nbd_server_start(dst.qmp(), "127.0.0.1", port).await.unwrap();
        export_disk(dst.qmp(), "disk0", "disk0").await.unwrap();
        let exports = query_exports(dst.qmp()).await.unwrap();
        assert_eq!(exports.len(), 1);
        assert_eq!((exports[0].id.as_str(), exports[0].node_name.as_str()), ("disk0", "disk0"));

        // Source: NBD client node and a mirror at 4 MiB/s.
        add_nbd_target(src.qmp(), "mig-disk0", "127.0.0.1", port, "disk0").await.unwrap();
        let t_mirror = Instant::now();
        start_mirror(src.qmp(), "mirror-disk0", "disk0", "mig-disk0", MirrorSync::Full, 4 * MIB)
            .await
            .unwrap();
        let jobs = query_block_jobs(src.qmp()).await.unwrap();
        assert_eq!(jobs.len(), 1);
        let j = &jobs[0];
        assert_eq!((j.id.as_str(), j.kind.as_str()), ("mirror-disk0", "mirror"));
        assert_eq!(j.speed, 4 * MIB);
        assert!(!j.auto_dismiss && j.auto_finalize);
        assert!(!j.ready);
        assert_eq!(j.len, 32 * MIB);
        // Progress under the limit: after 1 s, well short of the whole disk.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let j = query_block_job(src.qmp(), "mirror-disk0").await.unwrap();
        eprintln!(
            "[{:5.2}s] after 1 s at 4 MiB/s: {} {}/{} ready={}",
            t0.elapsed().as_secs_f64(),
            j.status,
            j.offset,
            j.len,
            j.ready
        );
        assert!(!j.ready, "{j:?}");
        assert!(j.offset < j.len, "{j:?}");
        // Speed it up and wait for ready.
        set_job_speed(src.qmp(), "mirror-disk0", 256 * MIB).await.unwrap();
        assert_eq!(query_block_job(src.qmp(), "mirror-disk0").await.unwrap().speed, 256 * MIB);
        let j = wait_job_ready(src.qmp(), "mirror-disk0", Duration::from_secs(60)).await.unwrap();
        let ready_secs = t_mirror.elapsed().as_secs_f64();
        eprintln!(
            "[{:5.2}s] mirror ready after {ready_secs:.2}s: {j:?}",
            t0.elapsed().as_secs_f64()
        );
        assert_eq!(j.status, BlockJobStatus::Ready);
        assert_eq!((j.offset, j.len), (32 * MIB, 32 * MIB));
        assert_eq!(j.remaining(), 0);

        // A write while the mirror is ready: the bitmap counts it, the mirror
        // copies it (len and offset grow by as much).
        let hmp = |line: &str| {
            let line = line.to_string();
            let qmp = src.qmp();
            async move {
                let out = qmp
                    .execute("human-monitor-command", Some(json!({"command-line": line})))
                    .await
                    .unwrap();
                assert_eq!(out, json!(""), "HMP said {out}");
            }
        };
        hmp(r#"qemu-io -d /machine/peripheral/vblk0/virtio-backend "write -P 0x77 20M 1M""#).await;
        assert_eq!(dirty_bitmap_count(src.qmp(), "disk0", "pacer-dirty").await.unwrap(), MIB);
        let deadline = Instant::now() + Duration::from_secs(10);
        let j = loop {
            let j = query_block_job(src.qmp(), "mirror-disk0").await.unwrap();
            if j.len >= 33 * MIB && j.remaining() == 0 && j.ready {
                break j;
            }
            assert!(Instant::now() < deadline, "mirror did not copy the new write: {j:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        eprintln!(
            "[{:5.2}s] after a 1 MiB write: {}/{}",
            t0.elapsed().as_secs_f64(),
            j.offset,
            j.len
        );
        clear_dirty_bitmap(src.qmp(), "disk0", "pacer-dirty").await.unwrap();
        assert_eq!(dirty_bitmap_count(src.qmp(), "disk0", "pacer-dirty").await.unwrap(), 0);

        // End the mirror without pivoting.
        let t_cancel = Instant::now();
        cancel_mirror(src.qmp(), "mirror-disk0").await.unwrap();
        let j =
            wait_job_concluded(src.qmp(), "mirror-disk0", Duration::from_secs(10)).await.unwrap();
        assert_eq!(j.status, BlockJobStatus::Concluded);
        job_dismiss(src.qmp(), "mirror-disk0").await.unwrap();
        assert!(query_block_jobs(src.qmp()).await.unwrap().is_empty());
        // The source's NBD client still holds the export open.
        let e = remove_exports(dst.qmp(), &["disk0"]).await.unwrap_err();
        assert!(e.to_string().contains("in use"), "{e}");
        blockdev_del(src.qmp(), "mig-disk0").await.unwrap();
        let cancel_ms = t_cancel.elapsed().as_millis();
        // No pivot: the guest still uses the source image.
        let disks = query_disk_nodes(src.qmp()).await.unwrap();
        assert_eq!(
            (disks[0].node_name.as_str(), disks[0].file.as_str()),
            ("disk0", src_img.to_str().unwrap())
        );
        assert!(query_named_nodes(src.qmp())
            .await
            .unwrap()
            .iter()
            .all(|n| n.node_name != "mig-disk0"));
        remove_dirty_bitmap(src.qmp(), "disk0", "pacer-dirty").await.unwrap();

        // Destination: drop the export and the server.
        remove_exports(dst.qmp(), &["disk0"]).await.unwrap();
        assert!(query_exports(dst.qmp()).await.unwrap().is_empty());
        nbd_server_stop(dst.qmp()).await.unwrap();
        // Removing what is gone is fine.
        remove_exports(dst.qmp(), &["disk0"]).await.unwrap();

        src.quit().await;
        dst.quit().await;
        let out = compare(&src_img, &dst_img);
        assert!(
            out.status.success(),
            "images differ: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "mirror of 32 MiB ready in {ready_secs:.2}s (1 s at 4 MiB/s, then 256 MiB/s); \
             cancel+dismiss+del {cancel_ms} ms; whole test {:.2}s",
            t0.elapsed().as_secs_f64()
        );
    }
}
