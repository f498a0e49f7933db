//! The background sampler: keeps every running VM's measurements fresh, one VM
//! at a time; a VM migrating away is followed by its job instead
//! ([`MeasureStore::follow`], every half second).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pacer_api::VmOrigin;
use pacer_qemu::RunState;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::measure::{MeasureStore, BOOT_GRACE};
use crate::vms::Registry;

/// Pause between two rounds of the background sampler.
const SAMPLE_PAUSE: Duration = Duration::from_secs(4);

/// Runs until `stop` is cancelled.
pub async fn run(store: Arc<MeasureStore>, vms: Arc<Registry>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SAMPLE_PAUSE) => {}
        }
        let records = vms.records();
        store.retain(&records.iter().map(|r| r.name.clone()).collect::<Vec<_>>());
        for rec in records {
            if stop.is_cancelled() {
                return;
            }
            // Incoming VMs are their source's to measure; a VM this agent just
            // launched is booting, and its boot is not its work.
            if rec.origin == VmOrigin::Incoming
                || vms.launched_at(&rec.name).is_some_and(|t| t.elapsed() < BOOT_GRACE)
            {
                continue;
            }
            let name = rec.name;
            let _one = store.one_at_a_time.lock().await;
            if vms.run_state(&name).await.ok() != Some(RunState::Running) {
                continue;
            }
            // A migrating VM is followed by its job's own task.
            if store.is_migrating(&name) {
                continue;
            }
            // A job may start meanwhile: QEMU's own sampling then fails, harmlessly.
            let t0 = Instant::now();
            let r = tokio::select! {
                _ = stop.cancelled() => return,
                r = store.measure_locked(&vms, &name) => r,
            };
            debug!("measured {name} in {:?}: {r:?}", t0.elapsed());
        }
    }
}
