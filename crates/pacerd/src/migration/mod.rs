//! Migrations from this host: the job table (which VM each job moves, its
//! state for the API) and the pieces of a migration, each in its own room:
//!
//! - [`admission`]: the checks before anything changes (pure);
//! - [`driver`]: the migration as explicit steps — prepare, disks, memory,
//!   switch-over, finish — doing the I/O;
//! - [`controller`]: the decisions, sample in, actions out (pure): prediction,
//!   pacing to a target, the post-copy switch, the stall rule, phases;
//! - [`actuator`]: the controller's actions applied over QMP;
//! - [`outcome`]: the result and downtime accounting (pure);
//! - [`peer`]: the destination agent as typed calls;
//! - [`disks`]: the disk mirrors; [`predict`]: predictions before a start;
//! - [`plan`]: the request as the model's plan.

pub mod actuator;
pub mod admission;
pub mod controller;
pub mod disks;
pub mod driver;
pub mod foresight;
pub mod outcome;
pub mod peer;
pub mod plan;
pub mod predict;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pacer_api::{JobInfo, JobPhase};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::{AgentError, AgentResult};

/// One migration job.
pub struct Job {
    /// Job id.
    pub id: String,
    /// The VM it moves.
    pub vm: String,
    /// When the request came (the job's time zero).
    pub started: Instant,
    /// Cancelled by request, or by the agent shutting down.
    pub cancel: CancellationToken,
    info: Mutex<JobInfo>,
    /// A new finish target (s since the job started; None inside = flat out), set by
    /// a retarget request and taken by the job's loop.
    retarget: Mutex<Option<Option<f64>>>,
}

impl Job {
    /// The job as the API shows it.
    pub fn info(&self) -> JobInfo {
        self.info.lock().unwrap().clone()
    }

    /// Changes what the API shows.
    pub fn update(&self, f: impl FnOnce(&mut JobInfo)) {
        f(&mut self.info.lock().unwrap());
    }

    /// Adds an event line (and logs it).
    pub fn event(&self, msg: impl Into<String>) {
        let msg = msg.into();
        info!("job {}: {msg}", self.id);
        self.update(|i| i.events.push(msg));
    }

    /// Moves the job to `phase` if the transition is allowed (see [`JobPhase`]);
    /// a disallowed one is a bug, logged and ignored.
    pub fn set_phase(&self, phase: JobPhase) {
        let mut i = self.info.lock().unwrap();
        if i.progress.phase.can_go_to(phase) {
            i.progress.phase = phase;
        } else {
            warn!("job {}: phase {:?} cannot follow {:?}; kept {:?}", self.id, phase, i.progress.phase, i.progress.phase);
        }
    }

    /// Asks for a new finish target, `finish_in_s` from now (None: flat out).
    pub fn request_retarget(&self, finish_in_s: Option<f64>) -> AgentResult<()> {
        if let Some(s) = finish_in_s {
            admission::validate_finish_in(s)?;
        }
        let at = finish_in_s.map(|s| self.started.elapsed().as_secs_f64() + s);
        *self.retarget.lock().unwrap() = Some(at);
        Ok(())
    }

    /// A pending retarget request (s since the job started; None inside: flat out).
    pub fn take_retarget(&self) -> Option<Option<f64>> {
        self.retarget.lock().unwrap().take()
    }
}

#[derive(Default)]
struct Table {
    jobs: HashMap<String, Arc<Job>>,
    /// The job moving each VM.
    by_vm: HashMap<String, String>,
}

/// The migration jobs of this host, and what the agent learned from them.
pub struct JobTable {
    table: Mutex<Table>,
    /// Learned time from allowing a held switch-over to the guest running at the
    /// destination (s), smoothed over migrations.
    switch_lag_s: Mutex<f64>,
    end_lag: Mutex<foresight::EndLag>,
    /// Clean-ups of a failed migration's destination still being retried, by VM:
    /// a new migration of the VM stops them (a retry arriving late would abort
    /// the new migration's incoming VM, which has the same name).
    cleanups: Mutex<HashMap<String, CancellationToken>>,
}

impl Default for JobTable {
    fn default() -> Self {
        JobTable {
            table: Mutex::default(),
            switch_lag_s: Mutex::new(foresight::DEFAULT_SWITCH_LAG_S),
            end_lag: Mutex::default(),
            cleanups: Mutex::default(),
        }
    }
}

impl JobTable {
    /// Registers a job for `info.vm`, unless another job moves it already.
    pub fn insert(&self, info: JobInfo, started: Instant, cancel: CancellationToken) -> AgentResult<Arc<Job>> {
        let mut t = self.table.lock().unwrap();
        if let Some(other) = t.by_vm.get(&info.vm) {
            return Err(AgentError::AlreadyMigrating { vm: info.vm.clone(), job: other.clone() });
        }
        if let Some(c) = self.cleanups.lock().unwrap().remove(&info.vm) {
            c.cancel();
        }
        let job = Arc::new(Job {
            id: info.id.clone(),
            vm: info.vm.clone(),
            started,
            cancel,
            info: Mutex::new(info),
            retarget: Mutex::new(None),
        });
        t.by_vm.insert(job.vm.clone(), job.id.clone());
        t.jobs.insert(job.id.clone(), job.clone());
        Ok(job)
    }

    /// The job moving `vm` no longer does (it ended).
    pub fn release(&self, job: &Job) {
        let mut t = self.table.lock().unwrap();
        if t.by_vm.get(&job.vm) == Some(&job.id) {
            t.by_vm.remove(&job.vm);
        }
    }

    /// A job by id.
    pub fn get(&self, id: &str) -> AgentResult<Arc<Job>> {
        self.table.lock().unwrap().jobs.get(id).cloned().ok_or_else(|| AgentError::UnknownJob(id.into()))
    }

    /// Every job as the API shows it, by id.
    pub fn list(&self) -> Vec<JobInfo> {
        let jobs: Vec<Arc<Job>> = self.table.lock().unwrap().jobs.values().cloned().collect();
        let mut v: Vec<JobInfo> = jobs.iter().map(|j| j.info()).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// The job moving `vm`, if any.
    pub fn job_for(&self, vm: &str) -> Option<String> {
        self.table.lock().unwrap().by_vm.get(vm).cloned()
    }

    /// How much later than the model's end a released migration really ends here.
    pub fn switch_lag_s(&self) -> f64 {
        *self.switch_lag_s.lock().unwrap()
    }

    /// Learns from one more released migration that ended `lag_s` after the model said.
    pub fn learn_switch_lag(&self, lag_s: f64) {
        let mut l = self.switch_lag_s.lock().unwrap();
        *l = 0.5 * *l + 0.5 * lag_s.clamp(-2.0, 5.0);
    }

    /// The stop signal for retrying the clean-up of `vm`'s destination: the agent
    /// stopping, or a new migration of `vm` starting.
    pub fn cleanup_token(&self, vm: &str, shutdown: &CancellationToken) -> CancellationToken {
        let t = shutdown.child_token();
        if let Some(old) = self.cleanups.lock().unwrap().insert(vm.to_string(), t.clone()) {
            old.cancel();
        }
        t
    }

    /// How much later than the model's end an unpaced migration really ends here.
    pub fn end_lag(&self) -> foresight::EndLag {
        *self.end_lag.lock().unwrap()
    }

    /// Learns from one more unpaced migration that ended `lag_s` after the model's
    /// latest prediction said.
    pub fn learn_end_lag(&self, lag_s: f64) {
        self.end_lag.lock().unwrap().learn(lag_s);
    }
}

/// A short random job or group id.
pub fn short_id(prefix: &str) -> String {
    use rand::Rng;
    let n: u32 = rand::thread_rng().gen();
    format!("{prefix}-{n:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacer_api::{JobStatus, Progress, Strategy};

    fn info(id: &str, vm: &str) -> JobInfo {
        JobInfo {
            id: id.into(),
            vm: vm.into(),
            status: JobStatus::Running,
            strategy: Strategy::PreCopy,
            source: "h1".into(),
            destination: "h2".into(),
            progress: Progress::default(),
            result: None,
            events: vec![],
            prediction: None,
            predictions: vec![],
            target: None,
            started_unix_ms: 0,
        }
    }

    #[test]
    fn one_job_per_vm_and_phases_only_move_forward() {
        let t = JobTable::default();
        let j = t.insert(info("job-1", "vm"), Instant::now(), CancellationToken::new()).unwrap();
        let e = t.insert(info("job-2", "vm"), Instant::now(), CancellationToken::new()).err().unwrap();
        assert!(matches!(e, AgentError::AlreadyMigrating { .. }), "{e}");
        assert_eq!(t.job_for("vm").as_deref(), Some("job-1"));
        j.set_phase(JobPhase::PreCopy);
        j.set_phase(JobPhase::Setup);
        assert_eq!(j.info().progress.phase, JobPhase::PreCopy);
        t.release(&j);
        assert_eq!(t.job_for("vm"), None);
        assert!(t.insert(info("job-3", "vm"), Instant::now(), CancellationToken::new()).is_ok());
        assert_eq!(t.list().len(), 2);
        assert!(t.get("job-9").is_err());
    }

    #[test]
    fn retargets_are_checked_and_taken_once() {
        let t = JobTable::default();
        let j = t.insert(info("job-1", "vm"), Instant::now(), CancellationToken::new()).unwrap();
        assert!(j.request_retarget(Some(0.1)).is_err());
        j.request_retarget(Some(30.0)).unwrap();
        let at = j.take_retarget().unwrap().unwrap();
        assert!((29.0..31.0).contains(&at));
        assert_eq!(j.take_retarget(), None);
    }

    #[test]
    fn a_new_migration_of_a_vm_stops_the_retried_clean_up_of_its_last_one() {
        let t = JobTable::default();
        let shutdown = CancellationToken::new();
        let c = t.cleanup_token("vm", &shutdown);
        let other = t.cleanup_token("other", &shutdown);
        t.insert(info("job-1", "vm"), Instant::now(), CancellationToken::new()).unwrap();
        assert!(c.is_cancelled() && !other.is_cancelled());
        shutdown.cancel();
        assert!(other.is_cancelled());
    }

    #[test]
    fn the_switch_lag_is_learned_smoothly_and_bounded() {
        let t = JobTable::default();
        t.learn_switch_lag(100.0);
        assert!((t.switch_lag_s() - (0.5 * foresight::DEFAULT_SWITCH_LAG_S + 2.5)).abs() < 1e-9);
        // The end lag of unpaced migrations: learned the same way, bounded tighter.
        t.learn_end_lag(0.4);
        assert!((t.end_lag().mean_s - 0.3).abs() < 1e-9);
        assert!((t.end_lag().dev_s - 0.2).abs() < 1e-9);
        t.learn_end_lag(100.0);
        assert!((t.end_lag().mean_s - 0.65).abs() < 1e-9);
        // The same lag over and over: the spread shrinks toward none.
        for _ in 0..30 {
            t.learn_end_lag(0.25);
        }
        assert!((t.end_lag().mean_s - 0.25).abs() < 1e-6 && t.end_lag().dev_s < 1e-3);
    }
}
