//! Typed views of QEMU's migration QMP commands (`query-migrate` and friends).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::qmp::{QmpClient, QmpError};

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
    /// `none`, `setup`, `active`, `postcopy-active`, `completed`, `failed`, ...
    pub status: Option<String>,
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
}

impl MigrationInfo {
    /// The status, or `none`.
    pub fn status(&self) -> &str {
        self.status.as_deref().unwrap_or("none")
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
