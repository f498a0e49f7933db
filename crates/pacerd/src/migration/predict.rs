//! `POST /v1/vms/NAME/predict`: how long a migration would take, without
//! starting it, from fresh measurements of the guest and of the link.

use std::time::Duration;

use std::collections::HashMap;

use pacer_api::{GangVmPrediction, MigrateRequest, PredictGangRequest, PredictGangResponse, PredictRequest, PredictResponse};
use pacer_model::gang::{copies_per_holder, predict_gang as model_gang, GangMember};
use pacer_model::predict::MigrationState;
use pacer_model::{predict_before_model, DirtyModel};

use crate::error::{AgentError, AgentResult};
use crate::measure::link::LinkProbe;
use crate::measure::{DirtySource, MeasureStore, Measurements};
use crate::migration::foresight::EndLag;
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
    // Probed now: a cached figure may date from before the link changed. First, so
    // that the dirty-log probe can rehearse the migration's end at the link's rate.
    let link = links.fresh(&req.destination).await.map_err(AgentError::Upstream)?.rate_bps;
    let plan = model_plan(&as_migration);
    let rehearsal = pacer_qemu::dirty_log::Rehearsal {
        link_bps: plan.bandwidth_cap_bps.map_or(link, |c| c.min(link)),
        downtime_limit_ms: plan.downtime_limit_ms,
    };
    let m = measure
        .fresh_with_dirty_log(vms, vm, FRESH_FOR_PREDICT, req.dirty_log, Some(rehearsal))
        .await
        .map_err(AgentError::Upstream)?;
    let prior = m.prior(Some(link));
    let dirty = prior.dirty.unwrap_or(pacer_model::DirtyModel::IDLE);
    let zero = prior.zero_fraction.unwrap_or(0.0);
    let ram = rec.memory_mib << 20;
    let wss = dirty.wss_bytes.is_finite().then_some(dirty.wss_bytes as u64);
    let (disk, disk_bytes) = disk_state(&spec, req.copy_storage, &m).await?;
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
        dirty_source: m.dirty_source().as_str().into(),
        content_dirty_rate_bps: m
            .dirty_log
            .as_ref()
            .filter(|d| d.content_blind && m.dirty_source() == DirtySource::DirtyLog)
            .map(|d| d.content_rate_bps),
        rehearsal: m.dirty_log.as_ref().and_then(|d| d.rehearsal.as_ref()).map(|r| pacer_api::RehearsalView {
            link_bps: r.link_bps,
            downtime_limit_ms: r.downtime_limit_ms,
            ran_ms: ms(r.ran_s),
            switched_after_ms: r.switched_after_s.map(ms),
            least_after_sync_bytes: r.least_after_sync,
        }),
        dirty_log: m.dirty_log.as_ref().map(|d| d.view()),
    })
}

/// The disks a migration would copy before memory, with what the guest writes behind
/// the copy (none when no disk is copied), and their bytes.
async fn disk_state(
    spec: &pacer_api::VmSpec,
    mode: pacer_api::CopyStorage,
    m: &Measurements,
) -> AgentResult<(Option<pacer_model::predict::DiskState>, u64)> {
    let disks = describe_disks(spec, mode).await?;
    let disk_bytes: u64 = disks.iter().map(|d| d.needed_bytes).sum();
    let regions = m.disk_regions.as_ref().map(|(r, _)| r.clone());
    let disk = (disk_bytes > 0).then(|| pacer_model::predict::DiskState {
        bulk_left_bytes: disk_bytes as f64,
        dirty_rate_bps: regions.as_ref().map_or(0.0, |r| r.write_rate_bps()),
        regions,
        ..Default::default()
    });
    Ok((disk, disk_bytes))
}

/// A gang's measurements may be this old: the background sampler takes each VM in
/// turn (about 10 s each), and re-measuring every VM of a big gang takes as long.
const FRESH_FOR_GANG: Duration = Duration::from_secs(90);
/// Content hashes kept per gang, about: beyond, pages are sampled by content.
const GANG_HASHES: u64 = 1 << 21;
const PAGE: u64 = 4096;

/// `POST /v1/predict-gang`: the VMs of this host leaving together for one destination.
pub async fn predict_gang(
    vms: &Registry,
    measure: &MeasureStore,
    links: &LinkProbe,
    end_lag: EndLag,
    req: &PredictGangRequest,
) -> AgentResult<PredictGangResponse> {
    if req.vms.is_empty() {
        return Err(AgentError::Invalid("a gang prediction needs at least one VM: give their names".into()));
    }
    for (i, v) in req.vms.iter().enumerate() {
        if req.vms[..i].contains(v) {
            return Err(AgentError::Invalid(format!("VM {v:?} is named twice: name each VM of the gang once")));
        }
    }
    let as_migration = MigrateRequest {
        bandwidth: req.bandwidth,
        copy_storage: req.copy_storage,
        dedup: req.dedup,
        ..MigrateRequest::new(req.destination.clone(), req.strategy)
    };
    admission::validate(&as_migration)?;
    let mut recs = Vec::new();
    for vm in &req.vms {
        let rec = vms.record(vm)?;
        let spec = rec
            .spec
            .clone()
            .ok_or_else(|| AgentError::Unsupported(format!("VM {vm:?} was adopted: Pacer cannot migrate it")))?;
        recs.push((rec, spec));
    }
    let why_direct = if req.dedup { crate::migration::driver::relay_refusal(&as_migration).map(str::to_string) } else { None };
    let dedup = req.dedup && why_direct.is_none();
    let measured = measure.fresh_many(vms, &req.vms, FRESH_FOR_GANG).await;
    let measured: Vec<Measurements> = measured
        .into_iter()
        .zip(&req.vms)
        .map(|(m, vm)| m.map_err(|e| AgentError::Upstream(format!("measuring VM {vm:?}: {e}"))))
        .collect::<AgentResult<_>>()?;
    let link = links.fresh(&req.destination).await.map_err(AgentError::Upstream)?.rate_bps;
    let plan = model_plan(&as_migration);
    let mut notes = Vec::new();

    // The gang's contents: each VM's non-zero pages, by content hash.
    let total_pages: u64 = recs.iter().map(|(r, _)| (r.memory_mib << 20) / PAGE).sum();
    let mut bits = 0u32;
    while total_pages >> bits > GANG_HASHES {
        bits += 1;
    }
    let mut hashes: Vec<Vec<u64>> = Vec::new();
    for vm in &req.vms {
        match measure.content_hashes(vms, vm, bits).await {
            Ok(h) => hashes.push(h),
            Err(e) => {
                notes.push(format!("{e}: its pages are taken to be all its own"));
                hashes.push(Vec::new());
            }
        }
    }
    let mut count: HashMap<u64, u32> = HashMap::new();
    for h in hashes.iter().flatten() {
        *count.entry(*h).or_default() += 1;
    }
    let scale = (1u64 << bits) as f64;
    let copies = copies_per_holder(hashes.iter().map(|h| h.as_slice()), |h| count.get(&h).copied().unwrap_or(1));
    let nonzero_bytes = (hashes.iter().map(|h| h.len() as f64).sum::<f64>() * scale) as u64 * PAGE;
    let distinct_bytes = (count.len() as f64 * scale) as u64 * PAGE;
    let store_bytes = crate::relay::STORE_PAGES as u64 * PAGE;
    if dedup && distinct_bytes > store_bytes {
        notes.push(format!(
            "the gang holds {} of distinct content and the relays keep the last {}: a copy is taken to go as a \
             reference, which holds when the gang's VMs send their copies close together (they start together)",
            pacer_model::format_bytes(distinct_bytes),
            pacer_model::format_bytes(store_bytes)
        ));
    }
    notes.push("pages the guests rewrite during the move are taken to be new content".into());

    let mut members = Vec::new();
    let mut out_vms = Vec::new();
    for (i, ((rec, spec), m)) in recs.iter().zip(&measured).enumerate() {
        let prior = m.prior(Some(link));
        let dirty = prior.dirty.unwrap_or(DirtyModel::IDLE);
        let zero = prior.zero_fraction.unwrap_or(0.0).clamp(0.0, 1.0);
        let ram = rec.memory_mib << 20;
        let mut state = MigrationState::before(ram, zero, dirty.capped(ram as f64), plan);
        state.disk = disk_state(spec, req.copy_storage, m).await?.0;
        let (held, copy) = copies[i];
        let saved = if dedup { copy * scale * (pacer_relay::wire::PAGE_COST - pacer_relay::wire::REF_COST) as f64 } else { 0.0 };
        let shared = hashes[i].iter().filter(|h| count.get(h).copied().unwrap_or(1) > 1).count();
        members.push(GangMember { state, first_pass_saved_bytes: saved });
        out_vms.push(GangVmPrediction {
            vm: rec.name.clone(),
            total_ms: None,
            downtime_ms: None,
            stream_bytes: None,
            wire_bytes: None,
            ram_bytes: ram,
            zero_fraction: zero,
            dirty_rate_bps: dirty.rate_bps,
            shared_fraction: if held > 0 { shared as f64 / held as f64 } else { 0.0 },
        });
    }
    let run = |link_bps: f64, dirty_by: f64| {
        let ms: Vec<GangMember> = members
            .iter()
            .map(|g| {
                let d = g.state.dirty;
                let d = DirtyModel::new(d.rate_bps * dirty_by, d.wss_bytes).map(|x| x.with_hot(d.hot_bytes)).unwrap_or(d);
                GangMember { state: g.state.with_dirty(d), ..g.clone() }
            })
            .collect();
        model_gang(&ms, link_bps, end_lag.mean_s).map_err(AgentError::internal)
    };
    let mid = run(link, 1.0)?;
    let low = run(link * 1.05, 0.75)?;
    let high = run(link * 0.95, 1.25)?;
    let ms = |s: f64| s.is_finite().then_some((s * 1000.0) as u64);
    let e = end_lag.half_width_s();
    for (v, f) in out_vms.iter_mut().zip(&mid.members) {
        v.total_ms = ms(f.total_s);
        v.downtime_ms = ms(f.downtime_s);
        v.stream_bytes = Some(f.stream_bytes as u64);
        v.wire_bytes = Some(f.wire_bytes as u64);
    }
    Ok(PredictGangResponse {
        total_ms: ms(mid.total_s),
        low_ms: ms(low.total_s - e).or(mid.total_s.is_finite().then_some(0)),
        high_ms: ms(high.total_s + e),
        dedup,
        why_direct,
        link_bps: link,
        stream_bytes: mid.stream_bytes.is_finite().then_some(mid.stream_bytes as u64),
        wire_bytes: mid.wire_bytes.is_finite().then_some(mid.wire_bytes as u64),
        nonzero_bytes,
        distinct_bytes,
        sampled_one_in: 1 << bits,
        not_converging: mid.not_converging.iter().map(|&i| req.vms[i].clone()).collect(),
        vms: out_vms,
        notes,
    })
}
