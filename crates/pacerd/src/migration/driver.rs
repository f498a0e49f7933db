//! The migration driver: admits a request, then runs the migration as explicit
//! steps — [prepare](Migration::prepare) the destination, copy the
//! [disks](Migration::disks), [wait](Migration::wait_to_start) if a target
//! leaves slack, move [memory](Migration::memory), and either
//! [switch over](Migration::switch_over) or [roll back](Migration::roll_back).
//! A migration ends in one of two ways only: the VM runs at the destination
//! (completed) or it still runs here (failed or cancelled, destination cleaned up).
//!
//! The driver does the I/O; every decision is the [controller](super::controller)'s
//! and every QMP command it asks for goes through the [actuator](super::actuator).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pacer_api::{CopyStorage, IncomingReady, IncomingRequest, JobInfo, JobPhase, JobStatus, MigrateRequest, MigrationResult, Progress, Strategy};
use pacer_qemu::migration::{query_migrate, set_capabilities, set_parameters};
use pacer_qemu::storage::MirrorSync;
use pacer_qemu::{MigrationStatus, QmpClient, RunState};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::error::{AgentError, AgentResult};
use crate::measure::link::LinkProbe;
use crate::measure::MeasureStore;
use crate::metrics::Metrics;
use crate::migration::admission::{self, Before};
use crate::migration::controller::{Controller, Observed, Verdict, UNLIMITED_BPS};
use crate::migration::disks::{describe_disks, DiskCopy};
use crate::migration::outcome::{self, Ending, Outcome};
use crate::migration::peer::Peer;
use crate::migration::{actuator, short_id, Job, JobTable};
use crate::vms::lifecycle::quit;
use crate::vms::{Registry, VmRecord};

/// What a migration needs of the agent.
pub struct Deps {
    /// This host's name.
    pub host_name: String,
    /// The VMs.
    pub vms: Arc<Registry>,
    /// Their measurements.
    pub measure: Arc<MeasureStore>,
    /// Link rates to destinations.
    pub links: Arc<LinkProbe>,
    /// The job table.
    pub jobs: Arc<JobTable>,
    /// Counters of ended migrations.
    pub metrics: Arc<Metrics>,
    /// Where tasks are spawned, so none outlives the agent.
    pub tasks: TaskTracker,
    /// Cancelled when the agent stops.
    pub shutdown: CancellationToken,
    /// This host's dedup relays.
    pub relays: Arc<crate::relay::Relays>,
}

/// Admits a migration request and starts the job.
pub async fn start(d: &Arc<Deps>, vm: &str, req: MigrateRequest) -> AgentResult<JobInfo> {
    if d.shutdown.is_cancelled() {
        return Err(AgentError::ShuttingDown);
    }
    admission::validate(&req)?;
    let rec = d.vms.record(vm)?;
    if let Some(job) = d.jobs.job_for(vm) {
        return Err(AgentError::AlreadyMigrating { vm: vm.into(), job });
    }
    let state = d.vms.run_state(vm).await?;
    admission::check_source(&d.host_name, &rec, &state, &req.destination.name)?;
    // Ask the destination before changing anything: reachable, token good, room.
    let peer = Peer::new(&req.destination);
    let host = peer.host().await?;
    let disks = describe_disks(rec.spec.as_ref().expect("checked"), req.copy_storage).await?;
    let disk_bytes: u64 = disks.iter().map(|d| d.needed_bytes).sum();
    admission::check_destination(&rec, &host, disk_bytes)?;
    // What is known before starting: the guest's dirtying and zero pages, and the
    // link (probed only when a target needs a maximum rate).
    let started = Instant::now();
    let measured = d.measure.latest(vm);
    let link = match req.finish_in_s {
        Some(_) => Some(d.links.cached(&req.destination).await.map_err(AgentError::Upstream)?),
        None => None,
    };
    let verdict = match (req.finish_in_s, link) {
        (Some(t), Some(l)) => {
            let prior = measured.prior(Some(l.rate_bps));
            let before = Before {
                ram_bytes: rec.memory_mib << 20,
                prior: &prior,
                disk_bytes,
                disk_regions: measured.disk_regions.as_ref().map(|(r, _)| r.clone()),
                link_bps: l.rate_bps,
            };
            Some(admission::judge_target(&req, t, &before, &d.host_name)?)
        }
        _ => None,
    };
    let info = JobInfo {
        id: short_id("job"),
        vm: vm.to_string(),
        status: JobStatus::Running,
        strategy: req.strategy,
        source: d.host_name.clone(),
        destination: req.destination.name.clone(),
        progress: Progress::default(),
        result: None,
        events: verdict.as_ref().and_then(|v| v.note.clone()).into_iter().collect(),
        prediction: None,
        predictions: Vec::new(),
        target: None,
        started_unix_ms: crate::unix_ms(),
    };
    let job = d.jobs.insert(info.clone(), started, d.shutdown.child_token())?;
    d.measure.set_migrating(vm, true);
    // A dirty-log probe is a migration of its own: it stops on seeing the flag.
    d.measure.probe_settled(vm).await;
    let following = job.cancel.child_token();
    d.tasks.spawn(d.measure.clone().follow(d.vms.clone(), vm.to_string(), following.clone()));
    let mut ctl = Controller::new(
        &req,
        rec.memory_mib << 20,
        &measured,
        link.map(|l| l.rate_bps),
        verdict.and_then(|v| v.feasible),
        d.jobs.switch_lag_s(),
    );
    ctl.set_end_lag(d.jobs.end_lag());
    let probe_bytes = link.map_or(0, |l| l.probe_bytes);
    let d = d.clone();
    d.tasks.clone().spawn(async move {
        let (vm, asked) = (rec.name.clone(), req.clone());
        // On a task of its own, so that a bug that panics in it is caught here
        // and the guest is not left stranded with a job that never ends.
        let driver = d.tasks.spawn(Migration::new(&d, job.clone(), req, rec, peer, ctl).run());
        let mut result = match driver.await {
            Ok(r) => r,
            Err(e) => after_panic(&d, &job, &vm, &asked, e).await,
        };
        following.cancel();
        result.probe_bytes = probe_bytes;
        info!("job {} ended: {:?} {:?}", job.id, result.status, result.reason);
        d.jobs.release(&job);
        d.measure.set_migrating(&job.vm, false);
        d.metrics.migration_ended(&result);
        job.set_phase(if result.status == JobStatus::Completed { JobPhase::Done } else { JobPhase::Ended });
        job.update(|i| {
            i.status = result.status;
            if result.status == JobStatus::Completed {
                i.progress.percent = 100.0;
            }
            i.result = Some(result);
        });
    });
    Ok(info)
}

/// One migration under way.
struct Migration {
    d: Arc<Deps>,
    job: Arc<Job>,
    req: MigrateRequest,
    rec: VmRecord,
    peer: Peer,
    ctl: Controller,
    result: MigrationResult,
    qmp: Option<Arc<QmpClient>>,
    disk: Option<DiskCopy>,
    /// Something may have been made at the destination that must go on failure.
    dest_touched: bool,
    /// Stop-and-copy: when the guest was stopped.
    stopped_at: Option<Duration>,
    /// Stops the destination's lease renewal.
    heartbeat: CancellationToken,
    /// The memory stream through the relays, when it goes that way.
    relayed: Option<crate::relay::StreamHandle>,
}

impl Migration {
    fn new(d: &Arc<Deps>, job: Arc<Job>, req: MigrateRequest, rec: VmRecord, peer: Peer, ctl: Controller) -> Migration {
        let result = outcome::new_result(&rec.name, &req, &d.host_name);
        let heartbeat = job.cancel.child_token();
        Migration {
            d: d.clone(),
            job,
            req,
            rec,
            peer,
            ctl,
            result,
            qmp: None,
            disk: None,
            dest_touched: false,
            stopped_at: None,
            heartbeat,
            relayed: None,
        }
    }

    fn t(&self) -> f64 {
        self.job.started.elapsed().as_secs_f64()
    }

    fn qmp(&self) -> &QmpClient {
        self.qmp.as_deref().expect("connected in prepare")
    }

    fn cancelled(&self, during: &str) -> Outcome {
        if self.d.shutdown.is_cancelled() {
            Outcome::Cancelled(format!("the agent is shutting down: cancelled {during}"))
        } else {
            Outcome::Cancelled(format!("cancelled by request {during}"))
        }
    }

    async fn run(mut self) -> MigrationResult {
        let outcome = match self.move_vm().await {
            Ok(o) | Err(o) => o,
        };
        self.heartbeat.cancel();
        let mut result = match outcome {
            Outcome::Completed(info, postcopy_at) => self.switch_over(*info, postcopy_at).await,
            Outcome::Failed(reason) => self.roll_back(reason, false).await,
            Outcome::Cancelled(reason) => self.roll_back(reason, true).await,
        };
        result.predictions = self.ctl.predictions().to_vec();
        result.target = self.ctl.target();
        result.converge_steps = self.ctl.converge_steps().to_vec();
        if let Some(h) = self.relayed.take() {
            result.relay = Some(h.report());
        } else if relay_asked(&self.req) {
            let why = relay_refusal(&self.req).unwrap_or("the migration ended before its stream started");
            result.relay = Some(crate::relay::direct(why));
        }
        result
    }

    /// Every step up to the end of the memory migration.
    async fn move_vm(&mut self) -> Result<Outcome, Outcome> {
        let ready = self.prepare().await?;
        self.job.event(format!("destination ready, migrating to {}", ready.uri));
        self.peer.keep_alive(&self.d.tasks, &self.rec.name, self.heartbeat.clone());
        if let Some(nbd) = &ready.nbd {
            self.disks(nbd).await?;
        }
        if self.ctl.has_target() {
            self.wait_to_start().await?;
        }
        let uri = match &ready.relay {
            Some(to) => {
                let h = self
                    .d
                    .relays
                    .send(to, &self.rec.name, &self.d.vms.vm_dir(&self.rec.name), self.req.dedup)
                    .await
                    .map_err(|e| Outcome::Failed(format!("cannot relay the stream: {e}")))?;
                self.job.event(format!("memory stream through the relays ({to})"));
                let uri = h.uri();
                self.relayed = Some(h);
                uri
            }
            None => ready.uri.clone(),
        };
        Ok(self.memory(&uri).await)
    }

    /// Step 1: an incoming QEMU at the destination with the same configuration
    /// (and, for a storage copy, empty disks exported over NBD).
    async fn prepare(&mut self) -> Result<IncomingReady, Outcome> {
        self.job.set_phase(JobPhase::Preparing);
        let vm = self.rec.name.clone();
        self.qmp = Some(self.d.vms.qmp(&vm).await.map_err(|e| Outcome::Failed(e.to_string()))?);
        let spec = self.rec.spec.clone().expect("checked at admission");
        let disks = describe_disks(&spec, self.req.copy_storage).await.map_err(|e| Outcome::Failed(e.to_string()))?;
        let mut capabilities = vec!["events".to_string()];
        if postcopy_possible(&self.req) {
            capabilities.push("postcopy-ram".into());
        }
        if !disks.is_empty() {
            capabilities.push("late-block-activate".into());
        }
        let relay = relay_asked(&self.req) && relay_refusal(&self.req).is_none();
        let incoming = IncomingRequest { spec, accel: self.rec.accel.clone(), capabilities, disks, relay };
        self.dest_touched = true;
        let cancel = self.job.cancel.clone();
        tokio::select! {
            r = self.peer.prepare(&incoming) => match r {
                Ok(ready) => Ok(ready),
                Err(e) => {
                    // An answer means the destination cleaned up after itself.
                    self.dest_touched = !matches!(e, AgentError::Peer { .. });
                    Err(Outcome::Failed(format!("destination could not prepare the VM: {e}")))
                }
            },
            // The destination may have launched before it heard us go: clean up after.
            _ = cancel.cancelled() => Err(self.cancelled("while preparing the destination")),
        }
    }

    /// Step 2: mirror every disk until all are in sync, paced by the controller.
    async fn disks(&mut self, nbd: &pacer_api::NbdTarget) -> Result<(), Outcome> {
        let sync = match self.req.copy_storage {
            CopyStorage::Incremental => MirrorSync::Top,
            _ => MirrorSync::Full,
        };
        let copy = DiskCopy::start(self.qmp(), nbd, sync, self.req.disk_bandwidth.unwrap_or(0))
            .await
            .map_err(Outcome::Failed)?;
        self.disk = Some(copy);
        self.job.event(format!("copying {} disk(s) ({})", nbd.exports.len(), sync.as_str()));
        self.job.set_phase(JobPhase::DiskBulkCopy);
        loop {
            let poll = self.ctl.poll_interval(self.t());
            tokio::select! {
                _ = self.job.cancel.cancelled() => return Err(self.cancelled("during the disk copy")),
                _ = tokio::time::sleep(poll) => {}
            }
            self.take_retarget();
            let t = self.t();
            let qmp = self.qmp.clone().expect("connected");
            let p = self.disk.as_mut().expect("started").sample(&qmp, t).await.map_err(Outcome::Failed)?;
            let measured = self.d.measure.latest(&self.rec.name);
            let tick = self.ctl.tick(t, Observed::Disks(&p), &measured);
            match self.apply(tick).await? {
                Verdict::DisksInSync => return Ok(()),
                Verdict::Failed(reason) => return Err(Outcome::Failed(reason)),
                _ => {}
            }
        }
    }

    /// Step 3: with a target that leaves slack even at the gentlest pace, start
    /// later rather than run the guest's migration longer.
    async fn wait_to_start(&mut self) -> Result<(), Outcome> {
        loop {
            self.take_retarget();
            let (wait, note) = self.ctl.start_delay(self.t());
            self.job.update(|i| i.target = self.ctl.target());
            if wait.is_zero() {
                return Ok(());
            }
            if let Some(n) = note {
                self.job.event(n);
            }
            self.job.set_phase(JobPhase::WaitingToStart);
            tokio::select! {
                _ = self.job.cancel.cancelled() => return Err(self.cancelled("before memory migration started")),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Step 4: memory. Sets QEMU up for the strategy, starts it, and follows it
    /// with the controller until QEMU completes or the controller gives up.
    async fn memory(&mut self, uri: &str) -> Outcome {
        self.job.set_phase(JobPhase::Setup);
        if let Err(e) = self.begin(uri).await {
            return Outcome::Failed(format!("QEMU refused to start the migration: {e}"));
        }
        self.ctl.memory_started(self.t());
        let mut failures = 0;
        let mut switching = false;
        loop {
            let poll = self.ctl.poll_interval(self.t());
            tokio::select! {
                _ = self.job.cancel.cancelled() => return self.cancelled(""),
                _ = tokio::time::sleep(poll) => {}
            }
            self.take_retarget();
            let info = match query_migrate(self.qmp()).await {
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
            let t = self.t();
            // The mirrors are not read once the guest is stopped for switch-over.
            switching |= info.status.is_switchover();
            let qmp = self.qmp.clone().expect("connected");
            let disk = match self.disk.as_mut() {
                Some(d) if !switching => match d.sample(&qmp, t).await {
                    Ok(p) => Some(p),
                    Err(e) => return Outcome::Failed(e),
                },
                _ => None,
            };
            let measured = self.d.measure.latest(&self.rec.name);
            #[cfg(debug_assertions)]
            test_fault(&self.d.vms.vm_dir(&self.rec.name), "memory");
            let tick = self.ctl.tick(t, Observed::Memory { info: &info, disk: disk.as_ref() }, &measured);
            match self.apply(tick).await {
                Err(o) => return o,
                Ok(Verdict::Completed) => return Outcome::Completed(Box::new(info), self.ctl.postcopy_at_s()),
                Ok(Verdict::Failed(reason)) => return Outcome::Failed(reason),
                Ok(_) => {}
            }
        }
    }

    /// Capabilities and parameters for the strategy, then `migrate`.
    async fn begin(&mut self, uri: &str) -> Result<(), pacer_qemu::QmpError> {
        let req = &self.req;
        let postcopy = postcopy_possible(req);
        let qmp = self.qmp.clone().expect("connected");
        set_capabilities(
            &qmp,
            &[
                ("events", true),
                // Left on by nothing of Pacer's (the dirty-log probe puts them back),
                // but a switch-over must never wait for an acknowledgement.
                ("switchover-ack", false),
                ("return-path", false),
                ("postcopy-ram", postcopy),
                ("auto-converge", req.auto_converge),
                // With disks, stop at switch-over to end the mirrors consistently.
                ("pause-before-switchover", self.disk.is_some()),
            ],
        )
        .await?;
        let bw = req.bandwidth.unwrap_or(UNLIMITED_BPS);
        let mut params = json!({
            "max-bandwidth": if req.strategy == Strategy::StopAndCopy { UNLIMITED_BPS } else { bw },
            "downtime-limit": req.downtime_limit_ms.unwrap_or(crate::migration::plan::DEFAULT_DOWNTIME_LIMIT_MS),
        });
        if postcopy {
            params["max-postcopy-bandwidth"] = json!(req.bandwidth.unwrap_or(0));
        }
        set_parameters(&qmp, params).await?;
        if req.strategy == Strategy::StopAndCopy {
            qmp.execute("stop", None).await?;
            self.stopped_at = Some(self.job.started.elapsed());
        }
        qmp.execute("migrate", Some(json!({ "uri": uri }))).await?;
        Ok(())
    }

    /// Publishes a tick and applies its actions; a failed switch-over ends the migration.
    async fn apply(&mut self, tick: crate::migration::controller::Tick) -> Result<Verdict, Outcome> {
        for e in tick.events {
            self.job.event(e);
        }
        let (prediction, target) = (self.ctl.prediction(), self.ctl.target());
        let predictions = self.ctl.predictions().to_vec();
        let phase = tick.progress.phase;
        self.job.update(|i| {
            let kept = i.progress.phase;
            i.progress = tick.progress;
            i.progress.phase = kept;
            i.prediction = prediction;
            i.predictions = predictions;
            i.target = target;
        });
        self.job.set_phase(phase);
        let qmp = self.qmp.clone().expect("connected");
        for a in &tick.actions {
            if let Err(e) = actuator::apply(&qmp, self.disk.as_mut(), a).await {
                match a {
                    crate::migration::controller::Action::FinishDisksAndContinue => return Err(Outcome::Failed(e)),
                    crate::migration::controller::Action::StartPostcopy => {
                        self.ctl.postcopy_refused();
                        self.job.event(e);
                    }
                    _ => warn!("job {}: {e}", self.job.id),
                }
            }
        }
        Ok(tick.verdict)
    }

    fn take_retarget(&mut self) {
        if let Some(at) = self.job.take_retarget() {
            let note = self.ctl.retarget(at);
            self.job.event(note);
        }
    }

    /// Step 5a: QEMU completed. The destination resumes the guest; only then is
    /// the move done. Then the stale source copy goes, and the guest is checked.
    async fn switch_over(&mut self, info: pacer_qemu::migration::MigrationInfo, postcopy_at_s: Option<f64>) -> MigrationResult {
        self.job.set_phase(JobPhase::SwitchOver);
        let vm = self.rec.name.clone();
        let completed_at = self.job.started.elapsed();
        let committed = self.peer.commit(&vm).await;
        let running_at = self.job.started.elapsed();
        // This migration's stop (a STOP from before the job is not it).
        let job_start_us = unix_us().saturating_sub(running_at.as_micros() as u64);
        let stopped_unix_us = self.qmp().last_event_us("STOP").filter(|&t| t >= job_start_us);
        let ending = Ending {
            stopped_unix_us,
            resumed_unix_us: committed.as_ref().ok().copied().flatten(),
            completed_at,
            running_at,
            stopped_at: self.stopped_at,
            postcopy_at_s,
            with_disks: self.disk.is_some(),
            relayed: self.relayed.is_some(),
        };
        let disk_bytes = self.disk.as_ref().map_or(0, |d| d.transferred());
        if let Some(note) = outcome::account_completed(&mut self.result, &info, disk_bytes, &ending) {
            self.job.event(note);
        }
        if let Err(e) = committed {
            // The stream completed but the destination did not take the VM: the
            // source copy is intact (stopped), so resume it rather than lose it.
            warn!("destination failed to commit {vm}: {e}; resuming at source");
            let _ = self.qmp().execute("cont", None).await;
            self.peer.clean_up(&self.d.tasks, &vm, self.d.jobs.cleanup_token(&vm, &self.d.shutdown)).await;
            self.result.status = JobStatus::Failed;
            self.result.reason = Some(format!("destination failed to resume the VM: {e}"));
            return self.result.clone();
        }
        self.job.event("guest running at the destination");
        if let Some((_, predicted_end)) = self.ctl.released_at() {
            self.d.jobs.learn_switch_lag(running_at.as_secs_f64() - predicted_end);
        } else if let (false, Some(end)) = (self.ctl.has_target(), self.ctl.model_end_s()) {
            self.d.jobs.learn_end_lag(running_at.as_secs_f64() - end);
        }
        // The source copy is now stale: stop it and forget it.
        quit(&self.d.vms, &self.rec).await;
        self.d.vms.forget(&vm);
        self.d.measure.forget(&vm);
        self.result.status = JobStatus::Completed;
        self.result.vm_location = self.req.destination.name.clone();
        if self.req.verify_guest && self.rec.spec.as_ref().is_some_and(|s| s.workload.is_some()) {
            self.job.set_phase(JobPhase::Verifying);
            match self.peer.verify(&vm).await {
                Ok(r) => {
                    self.job.event(format!("guest memory check: ok={}", r.ok));
                    self.result.integrity = Some(r);
                }
                Err(e) => self.job.event(format!("guest memory check failed to run: {e}")),
            }
        }
        self.result.clone()
    }

    /// Step 5b: failed or cancelled. The mirrors stop, QEMU's migration is
    /// cancelled, the guest is made to run here, and the destination cleaned up.
    async fn roll_back(&mut self, reason: String, cancelled: bool) -> MigrationResult {
        self.job.set_phase(JobPhase::RollingBack);
        let still_here = match self.qmp.clone() {
            Some(qmp) => {
                if let Some(d) = self.disk.as_mut() {
                    d.abort(&qmp).await;
                }
                recover_source(&qmp, self.stopped_at.is_some()).await
            }
            None => Ok(()),
        };
        if self.dest_touched {
            let stop = self.d.jobs.cleanup_token(&self.rec.name, &self.d.shutdown);
            self.peer.clean_up(&self.d.tasks, &self.rec.name, stop).await;
        }
        self.result.total_time_ms = self.job.started.elapsed().as_millis() as u64;
        self.result.status = if cancelled { JobStatus::Cancelled } else { JobStatus::Failed };
        self.result.reason = Some(outcome::rollback_reason(&reason, &still_here, &self.d.host_name));
        self.result.clone()
    }
}

/// The driver panicked (a bug). Before the destination was told to resume the guest,
/// the migration is cancelled, the guest resumed here and the destination cleaned up;
/// from the switch-over on the guest may already run there, so nothing is touched and
/// the result says to look.
async fn after_panic(d: &Arc<Deps>, job: &Job, vm: &str, req: &MigrateRequest, e: tokio::task::JoinError) -> MigrationResult {
    tracing::error!("job {}: the migration driver failed: {e}", job.id);
    let mut r = outcome::new_result(vm, req, &d.host_name);
    r.total_time_ms = job.started.elapsed().as_millis() as u64;
    let phase = job.info().progress.phase;
    if matches!(phase, JobPhase::SwitchOver | JobPhase::Verifying | JobPhase::Done) {
        r.reason = Some(format!(
            "internal error in the migration driver during the switch-over ({e}): the guest may be \
             running on {} or still here; check both hosts before acting",
            req.destination.name
        ));
        return r;
    }
    job.set_phase(JobPhase::RollingBack);
    let still_here = match d.vms.qmp(vm).await {
        Ok(qmp) => recover_source(&qmp, true).await,
        Err(e) => Err(e.to_string()),
    };
    Peer::new(&req.destination).clean_up(&d.tasks, vm, d.jobs.cleanup_token(vm, &d.shutdown)).await;
    r.reason = Some(outcome::rollback_reason(
        &format!("internal error in the migration driver ({e})"),
        &still_here,
        &d.host_name,
    ));
    r
}

/// Debug builds only: a test makes the driver panic at a step (the file
/// `fault-panic-at` in the VM's directory names it), to prove that a bug there
/// leaves the guest where it was.
#[cfg(debug_assertions)]
fn test_fault(vm_dir: &std::path::Path, step: &str) {
    if std::fs::read_to_string(vm_dir.join("fault-panic-at")).is_ok_and(|s| s.trim() == step) {
        panic!("test fault at {step}");
    }
}

/// Now, µs since the Unix epoch.
fn unix_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Whether the request asks for the relays (with dedup or without).
fn relay_asked(req: &MigrateRequest) -> bool {
    req.dedup || req.relay
}

/// Why a migration asked to dedup goes direct instead, if it does: the relay
/// understands plain pre-copy only, and post-copy needs QEMU's return path,
/// which it does not carry.
pub(crate) fn relay_refusal(req: &MigrateRequest) -> Option<&'static str> {
    match req.strategy {
        Strategy::PreCopy if !req.converge.allow_postcopy => None,
        Strategy::PreCopy => Some("post-copy is allowed, and it needs QEMU's return path, which the relay does not carry: migrated directly"),
        Strategy::StopAndCopy => Some("stop-and-copy is not relayed (the guest is paused for all of it): migrated directly"),
        _ => Some("post-copy needs QEMU's return path, which the relay does not carry: migrated directly"),
    }
}

/// Whether this migration may switch to post-copy (QEMU needs to know before it starts).
fn postcopy_possible(req: &MigrateRequest) -> bool {
    matches!(req.strategy, Strategy::PostCopy | Strategy::Hybrid) || req.converge.allow_postcopy
}

/// Cancels QEMU's migration if it still runs and makes sure the guest runs here.
async fn recover_source(qmp: &QmpClient, we_stopped_it: bool) -> Result<(), String> {
    let _ = qmp.execute("migrate_cancel", None).await;
    let mut status = MigrationStatus::None;
    for _ in 0..100 {
        match query_migrate(qmp).await {
            Ok(i) => status = i.status,
            Err(e) => return Err(format!("source QEMU unreachable after failure: {e}")),
        }
        if !status.is_settling() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if status.is_postcopy() {
        return Err(format!("migration is in {status}: the guest's state is split between the hosts"));
    }
    let state = qmp.run_state().await.map_err(|e| e.to_string())?;
    if state != RunState::Running && (we_stopped_it || matches!(state, RunState::Postmigrate | RunState::Paused)) {
        qmp.execute("cont", None).await.map_err(|e| format!("cannot resume the VM here: {e}"))?;
    }
    Ok(())
}
