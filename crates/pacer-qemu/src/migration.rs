//! Typed views of QEMU's migration QMP commands (`query-migrate` and friends).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use pacer_model::predict::{DiskSample, Sample, Status};

use crate::qmp::{QmpClient, QmpError};
pub use crate::status::MigrationStatus;

/// The `ram` part of `query-migrate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct RamStats {
    /// Bytes sent so far.
    pub transferred: u64,
    /// Bytes still to send (counts zero pages too).
    pub remaining: u64,
    /// Guest RAM size.
    pub total: u64,
    /// Zero pages seen.
    pub duplicate: u64,
    /// Full pages sent.
    pub normal: u64,
    /// Bytes of full pages sent.
    pub normal_bytes: u64,
    /// Dirty pages per second over the last bitmap sync.
    pub dirty_pages_rate: u64,
    /// Throughput in Mbit/s.
    pub mbps: f64,
    /// Number of dirty bitmap syncs (pre-copy rounds).
    pub dirty_sync_count: u64,
    /// Pages requested by the destination in post-copy.
    pub postcopy_requests: u64,
    /// Target page size.
    pub page_size: u64,
    /// Bytes sent during pre-copy.
    pub precopy_bytes: u64,
    /// Bytes sent while the guest was stopped.
    pub downtime_bytes: u64,
    /// Bytes sent during post-copy.
    pub postcopy_bytes: u64,
}

/// `query-migrate`'s answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct MigrationInfo {
    /// Where the migration stands.
    pub status: MigrationStatus,
    /// Milliseconds since the migration started.
    pub total_time: Option<u64>,
    /// Expected downtime in ms.
    pub expected_downtime: Option<u64>,
    /// Actual downtime in ms, once completed.
    pub downtime: Option<u64>,
    /// Setup time in ms.
    pub setup_time: Option<u64>,
    /// RAM statistics.
    pub ram: Option<RamStats>,
    /// Why the migration failed.
    pub error_desc: Option<String>,
    /// How much auto-converge throttles the guest's vCPUs, percent.
    pub cpu_throttle_percentage: Option<u64>,
}

impl MigrationInfo {
    /// The RAM figures, zero before memory migration has started.
    pub fn ram(&self) -> RamStats {
        self.ram.clone().unwrap_or_default()
    }

    /// Dirty rate over the last bitmap sync, bytes/s.
    pub fn dirty_rate_bps(&self) -> f64 {
        let ram = self.ram.as_ref();
        ram.map_or(0.0, |r| (r.dirty_pages_rate * r.page_size.max(4096)) as f64)
    }
}

/// The model's view of QEMU's status: the model has no QEMU words of its own.
impl From<&MigrationStatus> for Status {
    fn from(s: &MigrationStatus) -> Status {
        use MigrationStatus as M;
        match s {
            M::None => Status::None,
            M::Setup | M::WaitUnplug => Status::Setup,
            M::Active => Status::Active,
            M::PostcopyActive => Status::PostcopyActive,
            M::Device | M::PreSwitchover => Status::Switchover,
            M::Completed => Status::Completed,
            M::Failed => Status::Failed,
            M::Cancelled | M::Cancelling => Status::Cancelled,
            _ => Status::Other,
        }
    }
}

/// A predictor sample at `t_s` from `query-migrate` (`None`: memory migration has not
/// started, e.g. disks are still mirroring), for a guest of `ram_total` bytes.
pub fn model_sample(t_s: f64, ram_total: u64, info: Option<&MigrationInfo>, disk: Option<DiskSample>) -> Sample {
    let ram = info.map(MigrationInfo::ram).unwrap_or_default();
    Sample {
        t_s,
        status: info.map_or(Status::None, |i| Status::from(&i.status)),
        ram_total: if ram.total > 0 { ram.total } else { ram_total },
        transferred: ram.transferred,
        remaining: if info.is_some() { ram.remaining } else { ram_total },
        duplicate_pages: ram.duplicate,
        normal_pages: ram.normal,
        normal_bytes: ram.normal_bytes,
        dirty_pages_rate: ram.dirty_pages_rate,
        page_size: if ram.page_size > 0 { ram.page_size } else { 4096 },
        dirty_sync_count: ram.dirty_sync_count,
        mbps: ram.mbps,
        precopy_bytes: ram.precopy_bytes,
        disk,
        throttle: info.and_then(|i| i.cpu_throttle_percentage).unwrap_or(0) as f64 / 100.0,
    }
}

/// Reads `query-migrate`.
pub async fn query_migrate(qmp: &QmpClient) -> Result<MigrationInfo, QmpError> {
    let v = qmp.execute("query-migrate", None).await?;
    serde_json::from_value(v).map_err(|e| QmpError::Protocol(e.to_string()))
}

/// Turns migration capabilities on or off.
pub async fn set_capabilities(qmp: &QmpClient, caps: &[(&str, bool)]) -> Result<(), QmpError> {
    let list: Vec<Value> =
        caps.iter().map(|(c, on)| json!({"capability": c, "state": on})).collect();
    qmp.execute("migrate-set-capabilities", Some(json!({ "capabilities": list })))
        .await
        .map(|_| ())
}

/// Sets migration parameters (a JSON object of QMP parameter names).
pub async fn set_parameters(qmp: &QmpClient, params: Value) -> Result<(), QmpError> {
    qmp.execute("migrate-set-parameters", Some(params)).await.map(|_| ())
}
