//! `POST /v1/vms/NAME/predict`: how long a migration would take, without
//! starting it, from fresh measurements of the guest and of the link.

use std::time::Duration;

use pacer_api::{MigrateRequest, PredictRequest, PredictResponse};
use pacer_model::predict_before_model;

use crate::error::{AgentError, AgentResult};
use crate::measure::link::LinkProbe;
use crate::measure::MeasureStore;
use crate::migration::admission;
use crate::migration::disks::describe_disks;
use crate::migration::plan::model_plan;
use crate::vms::Registry;

/// A measurement at most this old is used; older ones may have caught the
/// guest starting up (filling its memory), not at its work.
const FRESH_FOR_PREDICT: Duration = Duration::from_secs(15);

/// Measures (if needed) and predicts.
pub async fn predict(
    vms: &Registry,
    measure: &MeasureStore,
    links: &LinkProbe,
    vm: &str,
    req: &PredictRequest,
) -> AgentResult<PredictResponse> {
    let rec = vms.record(vm)?;
    let spec = rec
        .spec
        .clone()
        .ok_or_else(|| AgentError::Unsupported(format!("VM {vm:?} was adopted: Pacer cannot migrate it")))?;
    let as_migration = MigrateRequest {
        bandwidth: req.bandwidth,
        downtime_limit_ms: req.downtime_limit_ms,
        postcopy_after_s: req.postcopy_after_s,
        copy_storage: req.copy_storage,
        ..MigrateRequest::new(req.destination.clone(), req.strategy)
    };
    admission::validate(&as_migration)?;
    let m = measure.fresh(vms, vm, FRESH_FOR_PREDICT).await.map_err(AgentError::Upstream)?;
    // Probed now: a cached figure may date from before the link changed.
    let link = links.fresh(&req.destination).await.map_err(AgentError::Upstream)?.rate_bps;
    let prior = m.prior(Some(link));
    let dirty = prior.dirty.unwrap_or(pacer_model::DirtyModel::IDLE);
    let zero = prior.zero_fraction.unwrap_or(0.0);
    let plan = model_plan(&as_migration);
    let ram = rec.memory_mib << 20;
    let wss = dirty.wss_bytes.is_finite().then_some(dirty.wss_bytes as u64);
    // Disks are copied before memory, with what the guest writes behind the copy.
    let disks = describe_disks(&spec, req.copy_storage).await?;
    let disk_bytes: u64 = disks.iter().map(|d| d.needed_bytes).sum();
    let regions = m.disk_regions.as_ref().map(|(r, _)| r.clone());
    let disk = (disk_bytes > 0).then(|| pacer_model::predict::DiskState {
        bulk_left_bytes: disk_bytes as f64,
        dirty_rate_bps: regions.as_ref().map_or(0.0, |r| r.write_rate_bps()),
        regions,
        ..Default::default()
    });
    let p = predict_before_model(ram, zero, dirty, disk, link, &plan)
        .map_err(AgentError::internal)?;
    let ms = |s: f64| (s * 1000.0) as u64;
    Ok(PredictResponse {
        total_ms: p.total_s.is_finite().then(|| ms(p.total_s)),
        low_ms: ms(p.low_s),
        high_ms: p.high_s.is_finite().then(|| ms(p.high_s)),
        completes_chance: p.completes_chance,
        if_it_converges: p.if_completes.map(|(lo, mid, hi)| pacer_api::FinishBand { low_ms: ms(lo), total_ms: ms(mid), high_ms: ms(hi) }),
        stuck: p.stuck.as_ref().map(crate::migration::plan::advice),
        downtime_ms: p.downtime_ms as u64,
        converges: p.converges,
        link_bps: link,
        dirty_rate_bps: dirty.rate_bps,
        wss_bytes: wss.map(|w| w as f64),
        hot_bytes: dirty.hot_bytes,
        zero_fraction: zero,
        ram_bytes: ram,
        disk_bytes,
    })
}
