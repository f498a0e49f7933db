//! The actuator: applies the controller's actions to the source QEMU over QMP.
//! The only place a decision becomes a QMP command.

use pacer_qemu::migration::set_parameters;
use pacer_qemu::QmpClient;
use serde_json::json;

use crate::migration::controller::Action;
use crate::migration::disks::DiskCopy;

/// Applies one action. Errors are returned for the driver to decide on: a
/// speed that could not be set is worth a warning, a switch-over that could not
/// continue ends the migration.
pub async fn apply(qmp: &QmpClient, disk: Option<&mut DiskCopy>, action: &Action) -> Result<(), String> {
    match action {
        Action::SetSpeed { memory_bps, disk_bps } => {
            set_parameters(qmp, json!({"max-bandwidth": memory_bps}))
                .await
                .map_err(|e| format!("cannot set migration speed: {e}"))?;
            if let Some(d) = disk {
                d.set_speed(qmp, *disk_bps).await.map_err(|e| format!("cannot set disk copy speed: {e}"))?;
            }
            Ok(())
        }
        Action::SetSwitchover { downtime_limit_ms, switchover_bps } => set_parameters(
            qmp,
            json!({"downtime-limit": downtime_limit_ms, "avail-switchover-bandwidth": switchover_bps}),
        )
        .await
        .map_err(|e| format!("cannot set the downtime limit: {e}")),
        Action::StartPostcopy => qmp
            .execute("migrate-start-postcopy", None)
            .await
            .map(|_| ())
            .map_err(|e| format!("could not switch to post-copy: {e}")),
        Action::FinishDisksAndContinue => {
            if let Some(d) = disk {
                d.complete(qmp).await?;
            }
            qmp.execute("migrate-continue", Some(json!({"state": "pre-switchover"})))
                .await
                .map(|_| ())
                .map_err(|e| format!("QEMU refused to continue at switch-over: {e}"))
        }
    }
}
