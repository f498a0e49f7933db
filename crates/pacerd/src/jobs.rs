//! Migration jobs on the source host: prepare the destination, drive QEMU's
//! migration over QMP with the chosen strategy, watch it, and finish in one of
//! two ways only: the VM runs at the destination (completed) or it still runs here
//! (failed or cancelled, destination cleaned up).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pacer_api::{
    AgentClient, CopyStorage, IncomingDisk, IncomingReady, IncomingRequest, IntegrityResult,
    JobInfo, JobStatus, MigrateRequest, MigrationResult, Progress, Strategy, VmInfo, VmSpec,
};
use pacer_qemu::storage::MirrorSync;

use crate::disk_copy::DiskCopy;
use crate::foresight::Foresight;
use pacer_model::{ConvergenceDetector, MonotonicProgress, RateEstimator, StallDetector, Verdict};
use pacer_qemu::migration::{query_migrate, set_capabilities, set_parameters, MigrationInfo};
use pacer_qemu::QmpClient;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::{ApiError, ApiResult};
use crate::state::Agent;

/// How often QEMU is polled.
const POLL: Duration = Duration::from_millis(200);
/// "Unlimited" for QEMU's max-bandwidth (its default is 128 MiB/s, too low to mean none).
const UNLIMITED_BPS: u64 = 1 << 40;

/// One migration job.
pub struct Job {
    /// What the API shows.
    pub info: Mutex<JobInfo>,
    /// Cancelled by request.
    pub cancel: CancellationToken,
    /// A new finish target (s since the job started; None inside = flat out), set by
    /// a retarget request and taken by the job's loop.
    pub retarget: Mutex<Option<Option<f64>>>,
    /// When the job started.
    pub started: Instant,
}

impl Job {
    fn update(&self, f: impl FnOnce(&mut JobInfo)) {
        f(&mut self.info.lock().unwrap());
    }
    fn event(&self, msg: impl Into<String>) {
        let msg = msg.into();
        info!("job {}: {msg}", self.info.lock().unwrap().id);
        self.update(|i| i.events.push(msg));
    }
}

/// Checks a migrate request for nonsense.
pub fn validate(req: &MigrateRequest) -> ApiResult<()> {
    if let Some(b) = req.bandwidth {
        if !(1_000..=125_000_000_000).contains(&b) {
            return Err(ApiError::bad_request(format!(
                "bandwidth {b} B/s is out of range: give 1 KB/s to 1 Tbit/s, or none for unlimited"
            )));
        }
    }
    if let Some(b) = req.disk_bandwidth {
        if !(1_000..=125_000_000_000).contains(&b) {
            return Err(ApiError::bad_request(format!(
                "disk bandwidth {b} B/s is out of range: give 1 KB/s to 1 Tbit/s, or none for unlimited"
            )));
        }
    }
    if let Some(d) = req.downtime_limit_ms {
        if !(1..=600_000).contains(&d) {
            return Err(ApiError::bad_request(format!(
                "downtime limit {d} ms is out of range: give 1 ms to 10 min"
            )));
        }
    }
    if let Some(s) = req.postcopy_after_s {
        if !s.is_finite() || !(0.0..=86_400.0).contains(&s) {
            return Err(ApiError::bad_request(format!(
                "post-copy delay {s} s is out of range: give 0 to 86400"
            )));
        }
        if req.strategy != Strategy::PostCopy {
            return Err(ApiError::bad_request(
                "a post-copy delay only applies to --strategy post-copy",
            ));
        }
    }
    if let Some(s) = req.finish_in_s {
        validate_finish_in(s)?;
    }
    if req.strict && req.finish_in_s.is_none() {
        return Err(ApiError::bad_request("--strict needs a finish target (--finish-in or --finish-at)"));
    }
    if let Some(s) = req.stall_timeout_s {
        if !s.is_finite() || !(1.0..=3600.0).contains(&s) {
            return Err(ApiError::bad_request(format!(
                "stall timeout {s} s is out of range: give 1 to 3600"
            )));
        }
    }
    Ok(())
}

/// Checks a finish target: seconds from now.
pub fn validate_finish_in(s: f64) -> ApiResult<()> {
    if !s.is_finite() || !(0.5..=86_400.0).contains(&s) {
        return Err(ApiError::bad_request(format!(
            "finish target {s} s from now is out of range: give 0.5 s to 1 day"
        )));
    }
    Ok(())
}

/// Validates, checks the destination, registers the job and starts it.
pub async fn start(agent: &Arc<Agent>, vm: &str, req: MigrateRequest) -> ApiResult<JobInfo> {
    validate(&req)?;
    let rec = agent.record(vm)?;
    if rec.spec.is_none() {
        return Err(ApiError::conflict(
            "unsupported",
            format!("VM {vm:?} was adopted: Pacer does not know its full configuration, so it cannot prepare a matching destination"),
        ));
    }
    if req.destination.name == agent.cfg.host_name {
        return Err(ApiError::bad_request(format!(
            "VM {vm:?} already runs on {}: choose another destination host",
            agent.cfg.host_name
        )));
    }
    if let Some(other) = agent.vms.lock().unwrap().get(vm).and_then(|e| e.migrating.clone()) {
        return Err(ApiError::conflict(
            "already_migrating",
            format!("VM {vm:?} is already being migrated by job {other}"),
        ));
    }
    let state = agent.qmp(vm).await?.run_state().await?;
    if state != "running" {
        return Err(ApiError::conflict(
            "not_running",
            format!("VM {vm:?} is {state}, not running: only a running VM can be migrated"),
        ));
    }
    // Ask the destination before changing anything: reachable, token good, room.
    let dest = AgentClient::new(&req.destination.url, &req.destination.token)
        .with_timeout(Duration::from_secs(10));
    let host: pacer_api::HostInfo = dest.get("/v1/host").await.map_err(|e| {
        ApiError::upstream(format!("destination {} is not usable: {e}", req.destination.name))
    })?;
    if host.memory_committed_mib + rec.memory_mib > host.memory_capacity_mib {
        return Err(ApiError::conflict(
            "insufficient_memory",
            format!(
                "destination {} cannot take {} MiB: {} of {} MiB already given to VMs",
                host.name, rec.memory_mib, host.memory_committed_mib, host.memory_capacity_mib
            ),
        ));
    }
    let disks = describe_disks(rec.spec.as_ref().expect("checked"), req.copy_storage).await?;
    let needed: u64 = disks.iter().map(|d| d.needed_bytes).sum();
    if needed > 0 && needed + (64 << 20) > host.disk_free_bytes {
        return Err(ApiError::conflict(
            "insufficient_space",
            format!(
                "destination {} has {} MiB free for disks but this VM's disks need about {} MiB: \
                 free space there or choose another host",
                host.name,
                host.disk_free_bytes >> 20,
                needed >> 20
            ),
        ));
    }
    // What is known before starting: the guest's dirtying and zero pages, and the
    // link (probed only when a target needs a maximum rate).
    let started = Instant::now();
    let measurements = agent.vms.lock().unwrap().get(vm).map(|e| e.measurements.clone()).unwrap_or_default();
    let link = if req.finish_in_s.is_some() {
        Some(crate::measure::link_rate_cached(agent, &req.destination).await.map_err(ApiError::upstream)?)
    } else {
        None
    };
    let link_bps = link.map(|l| l.rate_bps);
    let probe_bytes = link.map_or(0, |l| l.probe_bytes);
    let prior = measurements.prior(link_bps);
    let mut initial_note = None;
    let mut feasible_at_start = None;
    if let (Some(target), Some(link)) = (req.finish_in_s, link_bps) {
        let mut state = pacer_model::MigrationState::before(
            rec.memory_mib << 20,
            prior.zero_fraction.unwrap_or(0.0),
            prior.dirty.unwrap_or(pacer_model::DirtyModel::IDLE),
            crate::foresight::plan_for(&req),
        );
        if needed > 0 {
            state.disk = Some(pacer_model::predict::DiskState {
                bulk_left_bytes: needed as f64,
                dirty_set_bytes: None,
                dirty_rate_bps: measurements.disk_regions.as_ref().map_or(0.0, |(r, _)| r.write_rate_bps()),
                ready: false,
                regions: measurements.disk_regions.clone().map(|(r, _)| r),
                ..Default::default()
            });
        }
        let max = req.bandwidth.map_or(link, |b| (b as f64).min(link));
        if let Ok(d) = pacer_model::pace(&state, max, target) {
            feasible_at_start = Some(d.feasible);
            if !d.feasible {
                let msg = format!(
                    "finish target {target:.1} s cannot be met: the earliest feasible finish is {:.1} s \
                     from now ({} to {}, link {:.0} Mbit/s)",
                    d.earliest_finish_s,
                    agent.cfg.host_name,
                    req.destination.name,
                    link * 8.0 / 1e6
                );
                if req.strict {
                    return Err(ApiError::conflict("target_infeasible", msg));
                }
                initial_note = Some(format!("{msg}; running flat out"));
            }
        }
    }
    let id = format!("job-{}", short_id());
    let info = JobInfo {
        id: id.clone(),
        vm: vm.to_string(),
        status: JobStatus::Running,
        strategy: req.strategy,
        source: agent.cfg.host_name.clone(),
        destination: req.destination.name.clone(),
        progress: Progress { phase: "preparing".into(), ..Default::default() },
        result: None,
        events: initial_note.into_iter().collect(),
        prediction: None,
        predictions: Vec::new(),
        target: None,
    };
    {
        let mut vms = agent.vms.lock().unwrap();
        let e = vms.get_mut(vm).ok_or_else(|| crate::state::unknown_vm(vm))?;
        if let Some(other) = &e.migrating {
            return Err(ApiError::conflict(
                "already_migrating",
                format!("VM {vm:?} is already being migrated by job {other}"),
            ));
        }
        e.migrating = Some(id.clone());
    }
    let job = Arc::new(Job {
        info: Mutex::new(info.clone()),
        cancel: CancellationToken::new(),
        retarget: Mutex::new(None),
        started,
    });
    agent.jobs.lock().unwrap().insert(id.clone(), job.clone());
    let agent = agent.clone();
    let vm = vm.to_string();
    tokio::spawn(async move {
        let mut foresight = Foresight::new(&req, prior, req.finish_in_s);
        foresight.dirty_measured_at = measurements.curve_at();
        foresight.set_disk_regions(measurements.disk_regions.clone().map(|(r, _)| r));
        foresight.switch_lag_s = *agent.switch_lag_s.lock().unwrap();
        if let Some(f) = feasible_at_start {
            foresight.set_feasible(f);
        }
        let mut result = run(&agent, &job, &vm, &req, &mut foresight).await;
        result.predictions = foresight.history.clone();
        result.probe_bytes = probe_bytes;
        result.target = foresight.target_status();
        info!("job {id} ended: {:?} {:?}", result.status, result.reason);
        if let Some(e) = agent.vms.lock().unwrap().get_mut(&vm) {
            e.migrating = None;
        }
        job.update(|i| {
            i.status = result.status;
            if result.status == JobStatus::Completed {
                i.progress.percent = 100.0;
                i.progress.phase = "done".into();
            }
            i.result = Some(result);
        });
    });
    Ok(info)
}

fn short_id() -> String {
    use rand::Rng;
    let n: u32 = rand::thread_rng().gen();
    format!("{n:08x}")
}

/// What the monitor loop ended with.
enum Outcome {
    /// QEMU's final figures, and when post-copy began (s since the job started).
    Completed(Box<MigrationInfo>, Option<f64>),
    Failed(String),
    Cancelled(String),
}

async fn run(
    agent: &Arc<Agent>,
    job: &Arc<Job>,
    vm: &str,
    req: &MigrateRequest,
    foresight: &mut Foresight,
) -> MigrationResult {
    let start = job.started;
    let dest = AgentClient::new(&req.destination.url, &req.destination.token)
        .with_timeout(Duration::from_secs(90));
    let mut result = MigrationResult {
        status: JobStatus::Failed,
        vm: vm.to_string(),
        strategy: req.strategy,
        total_time_ms: 0,
        downtime_ms: None,
        bytes_transferred: 0,
        source: agent.cfg.host_name.clone(),
        destination: req.destination.name.clone(),
        vm_location: agent.cfg.host_name.clone(),
        reason: None,
        qemu_total_time_ms: None,
        integrity: None,
        rounds: 0,
        precopy_bytes: 0,
        downtime_bytes: 0,
        postcopy_bytes: 0,
        memory_bytes: 0,
        disk_bytes: 0,
        probe_bytes: 0,
        predictions: Vec::new(),
        target: None,
    };
    let rec = match agent.record(vm) {
        Ok(r) => r,
        Err(e) => {
            result.reason = Some(e.message);
            return result;
        }
    };
    let qmp = match agent.qmp(vm).await {
        Ok(q) => q,
        Err(e) => {
            result.reason = Some(e.message);
            return result;
        }
    };
    let spec = rec.spec.clone().expect("checked at start");
    let postcopy = matches!(req.strategy, Strategy::PostCopy | Strategy::Hybrid);
    let disks = match describe_disks(&spec, req.copy_storage).await {
        Ok(d) => d,
        Err(e) => {
            result.reason = Some(e.message);
            return result;
        }
    };
    let mut dest_caps = vec!["events".to_string()];
    if postcopy {
        dest_caps.push("postcopy-ram".into());
    }
    if !disks.is_empty() {
        dest_caps.push("late-block-activate".into());
    }
    // 1. Destination: an incoming QEMU with the same configuration (and, for a
    // storage copy, empty disks exported over NBD).
    let incoming =
        IncomingRequest { spec, accel: rec.accel.clone(), capabilities: dest_caps, disks };
    let prepared: Result<IncomingReady, _> = tokio::select! {
        r = dest.post("/v1/incoming", &incoming) => r,
        _ = job.cancel.cancelled() => {
            // The destination may have launched before it heard us go: clean it up.
            cleanup_destination(&dest, vm).await;
            result.status = JobStatus::Cancelled;
            result.reason = Some("cancelled while preparing the destination".into());
            result.total_time_ms = start.elapsed().as_millis() as u64;
            return result;
        }
    };
    let ready = match prepared {
        Ok(r) => r,
        Err(e) => {
            result.reason = Some(format!("destination could not prepare the VM: {e}"));
            result.total_time_ms = start.elapsed().as_millis() as u64;
            return result;
        }
    };
    job.event(format!("destination ready, migrating to {}", ready.uri));
    let heartbeat = spawn_heartbeat(dest.clone(), vm.to_string(), job.cancel.child_token());

    // 2. Disks first: mirror every disk until all are in sync. One progress
    // figure spans both phases, so it never runs backwards between them.
    let mut progress = MonotonicProgress::new();
    let mut disk: Option<DiskCopy> = None;
    let mut early = None;
    if let Some(nbd) = &ready.nbd {
        let sync = match req.copy_storage {
            CopyStorage::Incremental => MirrorSync::Top,
            _ => MirrorSync::Full,
        };
        match DiskCopy::start(&qmp, nbd, sync, req.disk_bandwidth.unwrap_or(0)).await {
            Ok(d) => {
                job.event(format!("copying {} disk(s) ({})", nbd.exports.len(), sync.as_str()));
                let d = disk.insert(d);
                let memory = rec.memory_mib << 20;
                let mut pacer = Pace { foresight, qmp: &qmp, req, agent, vm };
                early = mirror_until_ready(job, start, d, &mut progress, memory, &mut pacer)
                    .await
                    .err();
            }
            Err(e) => early = Some(Outcome::Failed(e)),
        }
    }

    // 3. Memory: if finishing at the target leaves slack even at the gentlest
    // pace, start later rather than run the guest's migration longer.
    if early.is_none() && foresight.target_s.is_some() {
        early = delay_start(job, foresight, &rec, req, start).await.err();
    }
    let mut stopped_at = None;
    let outcome = match early {
        Some(o) => o,
        None => match begin(&qmp, req, &ready.uri, start, disk.is_some(), &mut stopped_at).await {
            Err(e) => Outcome::Failed(format!("QEMU refused to start the migration: {e}")),
            Ok(()) => {
                let mut pacer = Pace { foresight, qmp: &qmp, req, agent, vm };
                monitor(&qmp, job, req, start, &mut disk, &mut progress, &mut pacer).await
            }
        },
    };
    heartbeat.cancel();

    match outcome {
        Outcome::Completed(info, postcopy_at) => {
            job.update(|i| i.progress.phase = "switch-over".into());
            let completed_at = start.elapsed();
            // The destination resumes the guest; only then is the move done.
            let committed: Result<VmInfo, _> =
                dest.post(&format!("/v1/incoming/{vm}/commit"), &json!({})).await;
            let done_at = start.elapsed();
            let ram = info.ram.clone().unwrap_or_default();
            result.memory_bytes = ram.transferred;
            result.disk_bytes = disk.as_ref().map(|d| d.transferred()).unwrap_or(0);
            result.bytes_transferred = result.memory_bytes + result.disk_bytes;
            result.rounds = ram.dirty_sync_count;
            result.precopy_bytes = ram.precopy_bytes;
            result.downtime_bytes = ram.downtime_bytes;
            result.postcopy_bytes = ram.postcopy_bytes;
            result.qemu_total_time_ms = info.total_time;
            result.total_time_ms = done_at.as_millis() as u64;
            result.downtime_ms = match stopped_at {
                // Stop-and-copy: the guest was stopped from the start of the copy.
                Some(t0) => Some((done_at - t0).as_millis() as u64),
                // A storage target resumes only once its exports are gone: the
                // guest stays stopped until the commit returns.
                None if disk.is_some() => {
                    info.downtime.map(|d| d + (done_at - completed_at).as_millis() as u64)
                }
                None => match (info.downtime, postcopy_at) {
                    // QEMU 10 keeps a post-copy switch's downtime only if it is at
                    // least 1 ms; otherwise it reports the whole post-copy phase.
                    (Some(d), Some(pc))
                        if d >= 100 && d as f64 >= 0.8 * (completed_at.as_secs_f64() - pc) * 1000.0 =>
                    {
                        job.event(format!(
                            "QEMU reported the whole post-copy phase ({d} ms) as downtime: its \
                             switch-over took under 1 ms; reporting 1 ms"
                        ));
                        Some(1)
                    }
                    (d, _) => d,
                },
            };
            if let Err(e) = committed {
                // The stream completed but the destination did not take the VM: the
                // source copy is intact (stopped), so resume it rather than lose it.
                warn!("destination failed to commit {vm}: {e}; resuming at source");
                let _ = qmp.execute("cont", None).await;
                cleanup_destination(&dest, vm).await;
                result.status = JobStatus::Failed;
                result.reason = Some(format!("destination failed to resume the VM: {e}"));
                return result;
            }
            job.event("guest running at the destination");
            if let Some((_, predicted_end)) = foresight.released_at {
                // Learn how much later than the model a release ends here.
                let lag = (done_at.as_secs_f64() - predicted_end).clamp(-2.0, 5.0);
                let mut l = agent.switch_lag_s.lock().unwrap();
                *l = 0.5 * *l + 0.5 * lag;
            }
            // The source copy is now stale: stop it and forget it.
            let _ = qmp.execute_timeout("quit", None, Duration::from_secs(5)).await;
            if !pacer_qemu::launch::wait_exit(rec.pid, Duration::from_secs(5)).await {
                pacer_qemu::launch::kill_and_wait(rec.pid).await;
            }
            agent.forget(vm);
            result.status = JobStatus::Completed;
            result.vm_location = req.destination.name.clone();
            if req.verify_guest && rec.spec.as_ref().is_some_and(|s| s.workload.is_some()) {
                job.update(|i| i.progress.phase = "verifying".into());
                let v: Result<IntegrityResult, _> =
                    dest.post(&format!("/v1/vms/{vm}/verify"), &json!({})).await;
                match v {
                    Ok(r) => {
                        job.event(format!("guest memory check: ok={}", r.ok));
                        result.integrity = Some(r);
                    }
                    Err(e) => job.event(format!("guest memory check failed to run: {e}")),
                }
            }
            result
        }
        Outcome::Failed(reason) | Outcome::Cancelled(reason) => {
            let cancelled = job.cancel.is_cancelled();
            if let Some(d) = disk.as_mut() {
                d.abort(&qmp).await;
            }
            let still_here = recover_source(&qmp, stopped_at.is_some()).await;
            cleanup_destination(&dest, vm).await;
            result.total_time_ms = start.elapsed().as_millis() as u64;
            result.status = if cancelled { JobStatus::Cancelled } else { JobStatus::Failed };
            result.reason = Some(match still_here {
                Ok(()) => format!("{reason}; the VM keeps running on {}", agent.cfg.host_name),
                Err(e) => format!("{reason}; WARNING: {e}"),
            });
            result
        }
    }
}

async fn begin(
    qmp: &QmpClient,
    req: &MigrateRequest,
    uri: &str,
    start: Instant,
    with_disks: bool,
    stopped_at: &mut Option<Duration>,
) -> Result<(), pacer_qemu::QmpError> {
    let postcopy = matches!(req.strategy, Strategy::PostCopy | Strategy::Hybrid);
    set_capabilities(
        qmp,
        &[
            ("events", true),
            ("postcopy-ram", postcopy),
            ("auto-converge", req.auto_converge),
            // With disks, stop at switch-over to end the mirrors consistently.
            ("pause-before-switchover", with_disks),
        ],
    )
    .await?;
    let bw = req.bandwidth.unwrap_or(UNLIMITED_BPS);
    let mut params = json!({
        "max-bandwidth": if req.strategy == Strategy::StopAndCopy { UNLIMITED_BPS } else { bw },
        "downtime-limit": req.downtime_limit_ms.unwrap_or(300),
    });
    if postcopy {
        params["max-postcopy-bandwidth"] = json!(req.bandwidth.unwrap_or(0));
    }
    set_parameters(qmp, params).await?;
    if req.strategy == Strategy::StopAndCopy {
        qmp.execute("stop", None).await?;
        *stopped_at = Some(start.elapsed());
    }
    qmp.execute("migrate", Some(json!({ "uri": uri }))).await?;
    Ok(())
}

async fn monitor(
    qmp: &QmpClient,
    job: &Job,
    req: &MigrateRequest,
    start: Instant,
    disk: &mut Option<DiskCopy>,
    progress: &mut MonotonicProgress,
    pacer: &mut Pace<'_>,
) -> Outcome {
    let mut rate = RateEstimator::default();
    let mut stall =
        StallDetector::new(req.stall_timeout_s.unwrap_or(10.0)).expect("validated timeout");
    let mut convergence = ConvergenceDetector::default();
    let migrate_started = Instant::now();
    let mut switched = false;
    let mut failures = 0;
    let mut switching = false;
    let mut postcopy_at = None;
    loop {
        // Near the end (guest stopped, or a target to hit) look more often.
        let poll = if switching {
            Duration::from_millis(20)
        } else if pacer.foresight.near_target(start.elapsed().as_secs_f64()) {
            Duration::from_millis(50)
        } else {
            POLL
        };
        tokio::select! {
            _ = job.cancel.cancelled() => {
                return Outcome::Cancelled("cancelled by request".into());
            }
            _ = tokio::time::sleep(poll) => {}
        }
        let info = match query_migrate(qmp).await {
            Ok(i) => {
                failures = 0;
                i
            }
            Err(e) => {
                failures += 1;
                if failures >= 10 {
                    return Outcome::Failed(format!("lost contact with the source QEMU: {e}"));
                }
                continue;
            }
        };
        let t = start.elapsed().as_secs_f64();
        let ram = info.ram.clone().unwrap_or_default();
        let status = info.status().to_string();
        if status == "postcopy-active" && postcopy_at.is_none() {
            postcopy_at = Some(t);
        }
        let completed = status == "completed";
        rate.observe(t, ram.transferred);
        stall.observe(t, ram.transferred);
        let disk_progress = match disk.as_mut() {
            Some(d) if !switching => match d.sample(qmp, t).await {
                Ok(p) => Some(p),
                Err(e) => return Outcome::Failed(e),
            },
            _ => None,
        };
        let memory_total = ram.total;
        let s = crate::foresight::sample(t, memory_total, Some(&info), disk_progress.as_ref());
        pacer.tick(job, &s, rate.rate().unwrap_or(0.0), disk.as_ref()).await;
        let pct = time_progress(progress, pacer.foresight, t, completed);
        let phase = match status.as_str() {
            "setup" => "setup",
            "active" if ram.dirty_sync_count <= 1 => "bulk copy",
            "active" => "pre-copy",
            "postcopy-active" => "post-copy",
            "device" | "pre-switchover" | "completed" => "switch-over",
            other => other,
        }
        .to_string();
        job.update(|i| {
            i.progress = Progress {
                elapsed_ms: (t * 1000.0) as u64,
                phase,
                percent: pct,
                transferred: ram.transferred,
                remaining: ram.remaining,
                total: ram.total,
                rate_bps: rate.rate().unwrap_or(0.0),
                dirty_rate_bps: (ram.dirty_pages_rate * ram.page_size.max(4096)) as f64,
                rounds: ram.dirty_sync_count,
                expected_downtime_ms: info.expected_downtime,
                disk: disk_progress.or_else(|| i.progress.disk.take()),
            }
        });
        if status == "pre-switchover" && !switching {
            // Guest stopped: end each mirror with a consistent copy, then let
            // QEMU send the last memory pages and device state.
            switching = true;
            if let Some(d) = disk.as_mut() {
                if let Err(e) = d.complete(qmp).await {
                    return Outcome::Failed(e);
                }
            }
            if let Err(e) = qmp
                .execute("migrate-continue", Some(json!({"state": "pre-switchover"})))
                .await
            {
                return Outcome::Failed(format!("QEMU refused to continue at switch-over: {e}"));
            }
            continue;
        }
        match status.as_str() {
            "completed" => return Outcome::Completed(Box::new(info), postcopy_at),
            "failed" => {
                return Outcome::Failed(format!(
                    "QEMU migration failed: {}",
                    info.error_desc.as_deref().unwrap_or("no reason given")
                ))
            }
            "cancelled" => return Outcome::Failed("QEMU cancelled the migration".into()),
            "postcopy-paused" => {
                return Outcome::Failed(
                    "post-copy was interrupted (link or destination lost)".into(),
                )
            }
            _ => {}
        }
        if status == "active" && !switched {
            let switch_reason = match req.strategy {
                Strategy::PostCopy => {
                    let after = req.postcopy_after_s.unwrap_or(0.0);
                    (migrate_started.elapsed().as_secs_f64() >= after && ram.transferred > 0)
                        .then(|| format!("switched to post-copy after {after} s of pre-copy"))
                }
                Strategy::Hybrid => {
                    convergence.observe(
                        ram.dirty_sync_count,
                        ram.remaining,
                        ram.transferred,
                        ram.total,
                    );
                    match convergence.is_converging() {
                        Verdict::NotConverging { reason } => {
                            Some(format!("pre-copy is not converging ({reason}): switched to post-copy"))
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            if let Some(msg) = switch_reason {
                match qmp.execute("migrate-start-postcopy", None).await {
                    Ok(_) => {
                        switched = true;
                        job.event(msg);
                    }
                    Err(e) => job.event(format!("could not switch to post-copy: {e}")),
                }
            }
        }
        // A stalled pre-copy (cut link, hung destination) is safe to cancel: the
        // source still has the whole VM. In post-copy it is not, so leave it be.
        if matches!(status.as_str(), "active" | "setup") && stall.is_stalled(t) {
            return Outcome::Failed(format!(
                "no data moved for {:.0} s (link down or destination unreachable)",
                stall.timeout_s()
            ));
        }
    }
}

/// Cancels QEMU's migration if it still runs and makes sure the guest runs here.
async fn recover_source(qmp: &QmpClient, we_stopped_it: bool) -> Result<(), String> {
    let _ = qmp.execute("migrate_cancel", None).await;
    let mut status = String::new();
    for _ in 0..100 {
        match query_migrate(qmp).await {
            Ok(i) => status = i.status().to_string(),
            Err(e) => return Err(format!("source QEMU unreachable after failure: {e}")),
        }
        if !matches!(status.as_str(), "cancelling" | "active" | "setup" | "device") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if status.starts_with("postcopy") {
        return Err(format!(
            "migration is in {status}: the guest's state is split between the hosts"
        ));
    }
    let state = qmp.run_state().await.map_err(|e| e.to_string())?;
    if state != "running" && (we_stopped_it || state == "postmigrate" || state == "paused") {
        qmp.execute("cont", None).await.map_err(|e| format!("cannot resume the VM here: {e}"))?;
    }
    Ok(())
}

/// Tells the destination to drop the incoming VM, retrying in the background for a
/// while if it cannot be reached (its lease expires anyway).
async fn cleanup_destination(dest: &AgentClient, vm: &str) {
    let dest = dest.clone().with_timeout(Duration::from_secs(3));
    let path = format!("/v1/incoming/{vm}/abort");
    let first: Result<serde_json::Value, _> = dest.post(&path, &json!({})).await;
    match first {
        Ok(_) => {}
        Err(e) if e.code() == Some("not_found") => {}
        Err(e) => {
            warn!("could not abort incoming {vm} at destination: {e}; retrying in background");
            tokio::spawn(async move {
                for _ in 0..20 {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let r: Result<serde_json::Value, _> = dest.post(&path, &json!({})).await;
                    match r {
                        Ok(_) => return,
                        Err(e) if e.code().is_some() => return,
                        Err(_) => {}
                    }
                }
            });
        }
    }
}

fn spawn_heartbeat(dest: AgentClient, vm: String, stop: CancellationToken) -> CancellationToken {
    let dest = dest.with_timeout(Duration::from_secs(2));
    let token = stop.clone();
    tokio::spawn(async move {
        let path = format!("/v1/incoming/{vm}/heartbeat");
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let _: Result<serde_json::Value, _> = dest.post(&path, &json!({})).await;
        }
    });
    token
}

/// Looks a job up.
pub fn get(agent: &Agent, id: &str) -> ApiResult<Arc<Job>> {
    agent.jobs.lock().unwrap().get(id).cloned().ok_or_else(|| {
        ApiError::not_found(format!("no job {id:?} on this host; `pacer jobs` lists them"))
    })
}

/// Mirrors until every disk is in sync, with progress; a cancel, a failed mirror
/// or a stall ends it.
async fn mirror_until_ready(
    job: &Job,
    start: Instant,
    disk: &mut DiskCopy,
    progress: &mut MonotonicProgress,
    memory_bytes: u64,
    pacer: &mut Pace<'_>,
) -> Result<(), Outcome> {
    let (qmp, req) = (pacer.qmp, pacer.req);
    let mut stall =
        StallDetector::new(req.stall_timeout_s.unwrap_or(10.0)).expect("validated timeout");
    loop {
        tokio::select! {
            _ = job.cancel.cancelled() => {
                return Err(Outcome::Cancelled("cancelled by request during the disk copy".into()));
            }
            _ = tokio::time::sleep(POLL) => {}
        }
        let t = start.elapsed().as_secs_f64();
        let p = disk.sample(qmp, t).await.map_err(Outcome::Failed)?;
        stall.observe(t, p.transferred);
        let s = crate::foresight::sample(t, memory_bytes, None, Some(&p));
        pacer.tick(job, &s, p.rate_bps, Some(&*disk)).await;
        let pct = time_progress(progress, pacer.foresight, t, false);
        let ready = p.ready;
        job.update(|i| {
            i.progress = Progress {
                elapsed_ms: (t * 1000.0) as u64,
                phase: if ready { "disk sync" } else { "disk bulk copy" }.into(),
                percent: pct,
                transferred: p.transferred,
                remaining: p.remaining,
                total: p.total,
                rate_bps: p.rate_bps,
                dirty_rate_bps: p.dirty_rate_bps,
                rounds: 0,
                expected_downtime_ms: None,
                disk: Some(p),
            }
        });
        if ready {
            job.event("disks in sync: starting memory migration");
            return Ok(());
        }
        if stall.is_stalled(t) {
            return Err(Outcome::Failed(format!(
                "no disk data moved for {:.0} s (link down or destination unreachable)",
                stall.timeout_s()
            )));
        }
    }
}

/// What the destination must create for each disk, or why it cannot be copied.
pub async fn describe_disks(spec: &VmSpec, mode: CopyStorage) -> ApiResult<Vec<IncomingDisk>> {
    if mode == CopyStorage::None {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for d in &spec.disks {
        let info = pacer_qemu::image::image_info(std::path::Path::new(d))
            .await
            .map_err(|e| ApiError::bad_request(format!("disk {d:?}: {e}")))?;
        if info.format != "raw" && info.format != "qcow2" {
            return Err(ApiError::bad_request(format!(
                "disk {d:?} is {}: Pacer copies raw and qcow2 disks",
                info.format
            )));
        }
        let disk = match mode {
            CopyStorage::Incremental => {
                let Some(backing) = info.backing.clone() else {
                    return Err(ApiError::bad_request(format!(
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
                    match pacer_qemu::image::image_info(std::path::Path::new(&b)).await {
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

/// Feeds the predictor and applies the pacing controller's speed.
struct Pace<'a> {
    foresight: &'a mut Foresight,
    qmp: &'a QmpClient,
    req: &'a MigrateRequest,
    agent: &'a Agent,
    vm: &'a str,
}

impl Pace<'_> {
    async fn tick(&mut self, job: &Job, s: &pacer_model::Sample, achieved_bps: f64, disk: Option<&DiskCopy>) {
        apply_retarget(job, self.foresight);
        // The sampler keeps measuring the guest while it migrates: a newer dirtying
        // curve replaces what was known at the start.
        let known = self.foresight.dirty_measured_at;
        let newer = self.agent.vms.lock().unwrap().get(self.vm).and_then(|e| {
            let m = &e.measurements;
            let at = m.curve_at().filter(|at| known.is_none_or(|k| *at > k))?;
            Some((m.clone(), at))
        });
        if let Some((m, at)) = newer {
            // Fitted outside the lock: fitting takes a few milliseconds.
            let zero = m.zero_fraction.map(|(z, _)| z);
            // Measured over windows up to this long, ending now.
            let window = m
                .curve
                .as_ref()
                .and_then(|(c, _)| c.iter().map(|p| p.0).reduce(f64::max))
                .unwrap_or(4.0)
                .min(4.0);
            self.foresight.refresh_measurements(m.dirty_model(), zero, at, s.t_s, window);
            self.foresight.set_disk_regions(m.disk_regions.map(|(r, _)| r));
        }
        let advice = self.foresight.tick(s, achieved_bps);
        if let Some(n) = advice.note {
            job.event(n);
        }
        if let Some(hold) = advice.hold {
            // QEMU switches over once the dirty set fits `switch-over bandwidth x
            // downtime limit`. Holding makes that 1 byte (1 kB/s x 1 ms), so a live
            // guest never fits; releasing restores the operator's limit and the
            // measured bandwidth (0). Not a 0-byte threshold: QEMU 10 then completes
            // whenever its cheap pending estimate reads 0, at every round's end.
            let params = if hold {
                json!({"downtime-limit": 1, "avail-switchover-bandwidth": 1000})
            } else {
                json!({
                    "downtime-limit": self.req.downtime_limit_ms.unwrap_or(300),
                    "avail-switchover-bandwidth": 0
                })
            };
            if let Err(e) = set_parameters(self.qmp, params).await {
                warn!("cannot set the downtime limit: {e}");
            }
        }
        if let Some(speed) = advice.set_speed {
            let (mem, dsk) = if speed == 0 {
                (self.req.bandwidth.unwrap_or(UNLIMITED_BPS), self.req.disk_bandwidth.unwrap_or(0))
            } else {
                (speed, speed)
            };
            if let Err(e) = set_parameters(self.qmp, json!({"max-bandwidth": mem})).await {
                warn!("cannot set migration speed: {e}");
            }
            if let Some(d) = disk {
                if let Err(e) = d.set_speed(self.qmp, dsk).await {
                    warn!("cannot set disk copy speed: {e}");
                }
            }
        }
        let (latest, history, target) =
            (self.foresight.latest(), self.foresight.history.clone(), self.foresight.target_status());
        job.update(|i| {
            i.prediction = latest;
            i.predictions = history;
            i.target = target;
        });
    }
}

/// Takes a pending retarget request into the job's foresight, with an event.
fn apply_retarget(job: &Job, foresight: &mut Foresight) {
    if let Some(t) = job.retarget.lock().unwrap().take() {
        foresight.retarget(t);
        job.event(match t {
            Some(t) => format!("finish target changed to {t:.1} s"),
            None => "finish target removed: running flat out".into(),
        });
    }
}

/// Sets a new finish target on a running job.
pub fn retarget(job: &Job, finish_in_s: Option<f64>) -> ApiResult<()> {
    if let Some(s) = finish_in_s {
        validate_finish_in(s)?;
    }
    let at = finish_in_s.map(|s| job.started.elapsed().as_secs_f64() + s);
    *job.retarget.lock().unwrap() = Some(at);
    Ok(())
}

/// Waits before starting memory migration while the pacing controller says there
/// is slack even at the gentlest converging pace (re-planned every second).
async fn delay_start(
    job: &Job,
    foresight: &mut Foresight,
    rec: &crate::state::VmRecord,
    req: &MigrateRequest,
    start: Instant,
) -> Result<(), Outcome> {
    let prior_dirty = foresight.prior_dirty();
    let mut announced = false;
    loop {
        apply_retarget(job, foresight);
        let mut state = pacer_model::MigrationState::before(
            rec.memory_mib << 20,
            foresight.prior_zero().unwrap_or(0.0),
            prior_dirty.unwrap_or(pacer_model::DirtyModel::IDLE),
            crate::foresight::plan_for(req),
        );
        state.now_s = start.elapsed().as_secs_f64();
        let delay = foresight.start_delay_s(&state);
        job.update(|i| i.target = foresight.target_status());
        if delay < 1.0 {
            return Ok(());
        }
        if !announced {
            job.event(format!("holding the start {delay:.1} s: the gentlest pace still ends early"));
            announced = true;
        }
        job.update(|i| i.progress.phase = "waiting to start".into());
        tokio::select! {
            _ = job.cancel.cancelled() => {
                return Err(Outcome::Cancelled("cancelled by request before memory migration started".into()));
            }
            _ = tokio::time::sleep(Duration::from_secs_f64((delay - 0.5).clamp(0.2, 1.0))) => {}
        }
    }
}

/// Percent done as elapsed time over the predicted total: bytes are a poor
/// measure (zero pages cost nothing, dirty pages are sent again), time is what
/// the operator waits for. Never decreases; 0 until the first prediction.
fn time_progress(progress: &mut MonotonicProgress, foresight: &Foresight, t_s: f64, completed: bool) -> f64 {
    let elapsed = (t_s * 1000.0) as u64;
    match foresight.latest() {
        Some(p) => progress.update(elapsed, p.total_ms.saturating_sub(elapsed), completed),
        None => progress.update(0, 1, completed),
    }
}
