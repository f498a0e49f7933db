//! The migration controller: every decision a running migration takes, as a
//! function from an observation to actions. It holds the predictor and the
//! pacing state ([`Foresight`]), the strategy's post-copy switch, the stall
//! rule, the phase and the percentage shown; it does no I/O. The driver feeds it
//! what QEMU and the measurements say, and the [actuator](super::actuator)
//! applies what it returns.

use std::time::Duration;

use pacer_api::{
    ConvergeAction, ConvergePolicy, ConvergeStep, DiskProgress, JobPhase, MigrateRequest, PredictionPoint, Progress,
    Strategy, TargetStatus,
};
use pacer_model::predict::DiskSample;
use pacer_model::{ConvergenceDetector, DirtyModel, MigrationState, MonotonicProgress, RateEstimator, StallDetector, Verdict as Convergence};
use pacer_qemu::migration::{model_sample, MigrationInfo, MigrationStatus};

use crate::measure::Measurements;
use crate::migration::foresight::Foresight;
use crate::migration::plan::{model_plan, DEFAULT_DOWNTIME_LIMIT_MS};

/// How often QEMU is polled.
const POLL: Duration = Duration::from_millis(200);
/// Polling while the guest is stopped for switch-over.
const POLL_SWITCHING: Duration = Duration::from_millis(20);
/// Polling close to a finish target.
const POLL_NEAR_TARGET: Duration = Duration::from_millis(50);
/// "Unlimited" for QEMU's max-bandwidth (its default is 128 MiB/s, too low to mean none).
pub const UNLIMITED_BPS: u64 = 1 << 40;
/// Default stall timeout (s): no byte moved for this long ends a pre-copy.
pub const DEFAULT_STALL_S: f64 = 10.0;
/// Pre-copy judged not to converge for this long (s) is acted on, if the policy allows.
const STUCK_FOR_S: f64 = 3.0;
/// ... when it is at most this likely to end on its own.
const STUCK_CHANCE: f64 = 0.2;
/// A step waits for the next round's end, or this long (s).
const STEP_WAIT_S: f64 = 15.0;

/// What the controller asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Set the memory migration's and the disk mirrors' speeds (bytes/s; a disk
    /// speed of 0 is unlimited).
    SetSpeed {
        /// QEMU `max-bandwidth`.
        memory_bps: u64,
        /// Every mirror's speed together.
        disk_bps: u64,
    },
    /// Set when QEMU may switch over: a `downtime-limit` (ms) and the bandwidth it
    /// assumes for the switch-over (`avail-switchover-bandwidth`, 0 = measured).
    SetSwitchover {
        /// `downtime-limit`, ms.
        downtime_limit_ms: u64,
        /// `avail-switchover-bandwidth`, bytes/s.
        switchover_bps: u64,
    },
    /// Switch to post-copy now.
    StartPostcopy,
    /// The guest is stopped before switch-over: end the mirrors with a
    /// consistent copy, then let QEMU send the rest.
    FinishDisksAndContinue,
}

/// What the controller saw: the disk mirrors alone, or memory migration (with
/// the mirrors following the guest's writes, if there are disks).
#[derive(Debug, Clone, Copy)]
pub enum Observed<'a> {
    /// Disks are copied; memory has not started.
    Disks(&'a DiskProgress),
    /// Memory migration is running.
    Memory {
        /// `query-migrate`.
        info: &'a MigrationInfo,
        /// The mirrors, if any (not read while the guest is stopped).
        disk: Option<&'a DiskProgress>,
    },
}

/// Where the migration stands after a tick.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Keep going.
    Continue,
    /// Every disk is in sync: start memory.
    DisksInSync,
    /// QEMU completed.
    Completed,
    /// Give up, with the reason (the guest is still whole at the source).
    Failed(String),
}

/// The result of one tick.
#[derive(Debug, Clone)]
pub struct Tick {
    /// To apply, in order.
    pub actions: Vec<Action>,
    /// Worth an event line each.
    pub events: Vec<String>,
    /// What the API shows.
    pub progress: Progress,
    /// What to do next.
    pub verdict: Verdict,
}

/// The decisions of one migration.
pub struct Controller {
    foresight: Foresight,
    strategy: Strategy,
    postcopy_after_s: f64,
    bandwidth: Option<u64>,
    disk_bandwidth: Option<u64>,
    downtime_limit_ms: u64,
    ram_bytes: u64,
    plan: pacer_model::Plan,
    memory_stall: StallDetector,
    disk_stall: StallDetector,
    convergence: ConvergenceDetector,
    rate: RateEstimator,
    progress: MonotonicProgress,
    memory_started_s: Option<f64>,
    postcopy_asked: bool,
    switching: bool,
    postcopy_at_s: Option<f64>,
    last_disk: Option<DiskProgress>,
    start_held_announced: bool,
    policy: ConvergePolicy,
    /// QEMU's downtime limit now, ms.
    limit_ms: u64,
    /// Since when pre-copy is judged not to converge (s).
    stuck_since: Option<f64>,
    /// The last step: when (s) and at which sync.
    last_step: Option<(f64, u64)>,
    steps: Vec<ConvergeStep>,
}

impl Controller {
    /// A controller for `req` moving a guest of `ram_bytes`, with what was measured
    /// before the start (`measured`), the target's feasibility as judged at
    /// admission, and the switch lag the agent learned.
    pub fn new(
        req: &MigrateRequest,
        ram_bytes: u64,
        measured: &Measurements,
        link_bps: Option<f64>,
        feasible_at_start: Option<bool>,
        switch_lag_s: f64,
    ) -> Controller {
        let mut foresight = Foresight::new(req, measured.prior(link_bps), req.finish_in_s);
        foresight.dirty_measured_at = measured.curve_at();
        foresight.set_disk_regions(measured.disk_regions.clone().map(|(r, _)| r));
        foresight.switch_lag_s = switch_lag_s;
        if let Some(f) = feasible_at_start {
            foresight.set_feasible(f);
        }
        let stall_s = req.stall_timeout_s.unwrap_or(DEFAULT_STALL_S);
        Controller {
            foresight,
            strategy: req.strategy,
            postcopy_after_s: req.postcopy_after_s.unwrap_or(0.0),
            bandwidth: req.bandwidth,
            disk_bandwidth: req.disk_bandwidth,
            downtime_limit_ms: req.downtime_limit_ms.unwrap_or(DEFAULT_DOWNTIME_LIMIT_MS),
            ram_bytes,
            plan: model_plan(req),
            memory_stall: StallDetector::new(stall_s).expect("validated at admission"),
            disk_stall: StallDetector::new(stall_s).expect("validated at admission"),
            convergence: ConvergenceDetector::default(),
            rate: RateEstimator::default(),
            progress: MonotonicProgress::new(),
            memory_started_s: None,
            postcopy_asked: false,
            switching: false,
            postcopy_at_s: None,
            last_disk: None,
            start_held_announced: false,
            policy: req.converge,
            limit_ms: req.downtime_limit_ms.unwrap_or(DEFAULT_DOWNTIME_LIMIT_MS),
            stuck_since: None,
            last_step: None,
            steps: Vec::new(),
        }
    }

    /// What the controller did because pre-copy did not converge.
    pub fn converge_steps(&self) -> &[ConvergeStep] {
        &self.steps
    }

    /// Every prediction made so far.
    pub fn predictions(&self) -> &[PredictionPoint] {
        &self.foresight.history
    }

    /// The latest prediction.
    pub fn prediction(&self) -> Option<PredictionPoint> {
        self.foresight.latest()
    }

    /// The finish target and how it stands, if there is one.
    pub fn target(&self) -> Option<TargetStatus> {
        self.foresight.target_status()
    }

    /// Whether the migration has a finish target.
    pub fn has_target(&self) -> bool {
        self.foresight.target_s.is_some()
    }

    /// When post-copy began (s since the job started), if it did.
    pub fn postcopy_at_s(&self) -> Option<f64> {
        self.postcopy_at_s
    }

    /// When the hold was released and when the model then said it would end.
    pub fn released_at(&self) -> Option<(f64, f64)> {
        self.foresight.released_at
    }

    /// Sets the end lag the agent learned (see [`Foresight::end_lag`]).
    pub fn set_end_lag(&mut self, lag: super::foresight::EndLag) {
        self.foresight.end_lag = lag;
    }

    /// The model's own end (s since the job started) in the latest unpaced prediction.
    pub fn model_end_s(&self) -> Option<f64> {
        self.foresight.last_model_total_s
    }

    /// How long to wait before looking again.
    pub fn poll_interval(&self, t_s: f64) -> Duration {
        if self.switching {
            POLL_SWITCHING
        } else if self.foresight.near_target(t_s) {
            POLL_NEAR_TARGET
        } else {
            POLL
        }
    }

    /// Takes a retarget request (s since the job started; None: flat out).
    pub fn retarget(&mut self, at_s: Option<f64>) -> String {
        self.foresight.retarget(at_s);
        match at_s {
            Some(t) => format!("finish target changed to {t:.1} s"),
            None => "finish target removed: running flat out".into(),
        }
    }

    /// Before memory migration starts (disks in sync): how long to hold the start
    /// so that the gentlest converging pace still ends at the target (re-asked
    /// every second). Returns the wait and, the first time, an event.
    pub fn start_delay(&mut self, t_s: f64) -> (Duration, Option<String>) {
        let mut state = MigrationState::before(
            self.ram_bytes,
            self.foresight.prior_zero().unwrap_or(0.0),
            self.foresight.prior_dirty().unwrap_or(DirtyModel::IDLE),
            self.plan,
        );
        state.now_s = t_s;
        let delay = self.foresight.start_delay_s(&state);
        if delay < 1.0 {
            return (Duration::ZERO, None);
        }
        let note = (!self.start_held_announced)
            .then(|| format!("holding the start {delay:.1} s: the gentlest pace still ends early"));
        self.start_held_announced = true;
        (Duration::from_secs_f64((delay - 0.5).clamp(0.2, 1.0)), note)
    }

    /// The memory migration started at `t_s`.
    pub fn memory_started(&mut self, t_s: f64) {
        self.memory_started_s = Some(t_s);
    }

    /// A post-copy switch asked for could not be made: ask again next time.
    pub fn postcopy_refused(&mut self) {
        self.postcopy_asked = false;
    }

    /// One observation at `t_s` (s since the job started), with the latest
    /// measurements of the guest.
    pub fn tick(&mut self, t_s: f64, seen: Observed<'_>, measured: &Measurements) -> Tick {
        let mut events = Vec::new();
        self.refresh(measured, t_s);
        let (status, info, disk) = match seen {
            Observed::Disks(d) => (None, None, Some(d)),
            Observed::Memory { info, disk } => (Some(&info.status), Some(info), disk),
        };
        if let Some(d) = disk {
            self.last_disk = Some(d.clone());
        }
        // The predictor and the pacing.
        let ram = info.map(MigrationInfo::ram).unwrap_or_default();
        let achieved = match (info, disk) {
            (Some(_), _) => {
                self.rate.observe(t_s, ram.transferred);
                self.rate.rate().unwrap_or(0.0)
            }
            (None, Some(d)) => d.rate_bps,
            (None, None) => 0.0,
        };
        let disk_sample = disk.map(|d| DiskSample {
            len: d.total,
            offset: d.transferred,
            ready: d.ready,
            dirty_rate_bps: d.write_rate_bps,
        });
        let sample = model_sample(t_s, self.ram_bytes, info, disk_sample);
        let advice = self.foresight.tick(&sample, achieved);
        events.extend(advice.note);
        let mut actions = Vec::new();
        if let Some(hold) = advice.hold {
            // QEMU switches over once the dirty set fits `switch-over bandwidth x
            // downtime limit`. Holding makes that 1 byte (1 kB/s x 1 ms), so a live
            // guest never fits; releasing restores the operator's limit and the
            // measured bandwidth (0). Not a 0-byte threshold: QEMU 10 then completes
            // whenever its cheap pending estimate reads 0, at every round's end.
            actions.push(if hold {
                Action::SetSwitchover { downtime_limit_ms: 1, switchover_bps: 1000 }
            } else {
                Action::SetSwitchover { downtime_limit_ms: self.downtime_limit_ms, switchover_bps: 0 }
            });
        }
        if let Some(speed) = advice.set_speed {
            actions.push(if speed == 0 {
                Action::SetSpeed {
                    memory_bps: self.bandwidth.unwrap_or(UNLIMITED_BPS),
                    disk_bps: self.disk_bandwidth.unwrap_or(0),
                }
            } else {
                Action::SetSpeed { memory_bps: speed, disk_bps: speed }
            });
        }
        let completed = status == Some(&MigrationStatus::Completed);
        let percent = self.percent(t_s, completed);
        let Some(status) = status else {
            // Disks alone.
            let d = disk.expect("a disk observation");
            self.disk_stall.observe(t_s, d.transferred);
            let verdict = if d.ready {
                events.push("disks in sync: starting memory migration".into());
                Verdict::DisksInSync
            } else if self.disk_stall.is_stalled(t_s) {
                Verdict::Failed(format!(
                    "no disk data moved for {:.0} s (link down or destination unreachable)",
                    self.disk_stall.timeout_s()
                ))
            } else {
                Verdict::Continue
            };
            let progress = Progress {
                elapsed_ms: ms(t_s),
                phase: if d.ready { JobPhase::DiskSync } else { JobPhase::DiskBulkCopy },
                percent,
                transferred: d.transferred,
                remaining: d.remaining,
                total: d.total,
                rate_bps: d.rate_bps,
                dirty_rate_bps: d.dirty_rate_bps,
                rounds: 0,
                expected_downtime_ms: None,
                disk: Some(d.clone()),
            };
            return Tick { actions, events, progress, verdict };
        };
        let info = info.expect("memory observation");
        if *status == MigrationStatus::PostcopyActive && self.postcopy_at_s.is_none() {
            self.postcopy_at_s = Some(t_s);
        }
        self.memory_stall.observe(t_s, ram.transferred);
        let progress = Progress {
            elapsed_ms: ms(t_s),
            phase: phase_of(status, ram.dirty_sync_count),
            percent,
            transferred: ram.transferred,
            remaining: ram.remaining,
            total: ram.total,
            rate_bps: self.rate.rate().unwrap_or(0.0),
            dirty_rate_bps: info.dirty_rate_bps(),
            rounds: ram.dirty_sync_count,
            expected_downtime_ms: info.expected_downtime,
            disk: self.last_disk.clone(),
        };
        let verdict = match status {
            MigrationStatus::PreSwitchover if !self.switching => {
                // Guest stopped: end each mirror with a consistent copy, then let
                // QEMU send the last memory pages and device state.
                self.switching = true;
                actions.push(Action::FinishDisksAndContinue);
                Verdict::Continue
            }
            MigrationStatus::Completed => Verdict::Completed,
            MigrationStatus::Failed => Verdict::Failed(format!(
                "QEMU migration failed: {}",
                info.error_desc.as_deref().unwrap_or("no reason given")
            )),
            MigrationStatus::Cancelled => Verdict::Failed("QEMU cancelled the migration".into()),
            MigrationStatus::PostcopyPaused => {
                Verdict::Failed("post-copy was interrupted (link or destination lost)".into())
            }
            // A stalled pre-copy (cut link, hung destination) is safe to cancel: the
            // source still has the whole VM. In post-copy it is not, so leave it be.
            s if s.is_precopy() && self.memory_stall.is_stalled(t_s) => Verdict::Failed(format!(
                "no data moved for {:.0} s (link down or destination unreachable)",
                self.memory_stall.timeout_s()
            )),
            _ => Verdict::Continue,
        };
        if *status == MigrationStatus::Active && !self.postcopy_asked && verdict == Verdict::Continue {
            if let Some(why) = self.postcopy_reason(t_s, info) {
                self.postcopy_asked = true;
                actions.push(Action::StartPostcopy);
                events.push(why);
            } else if let Some((action, step)) = self.converge_step(t_s, ram.dirty_sync_count) {
                events.push(step.why.clone());
                actions.push(action);
                self.steps.push(step);
            }
        }
        Tick { actions, events, progress, verdict }
    }

    /// When pre-copy has not converged for a while and the policy allows: the next
    /// step. The downtime limit goes up at most once a round, straight to what the
    /// model says lets QEMU switch over (at least doubling), up to the policy's maximum;
    /// post-copy comes when even the maximum would not do, or no raise is allowed.
    fn converge_step(&mut self, t_s: f64, syncs: u64) -> Option<(Action, ConvergeStep)> {
        let latest = self.foresight.latest();
        let stuck = latest.and_then(|p| p.stuck.filter(|_| p.completes_chance <= STUCK_CHANCE));
        let Some(advice) = stuck else {
            self.stuck_since = None;
            return self.edge_step(t_s, syncs, latest.and_then(|p| p.edge));
        };
        let since = *self.stuck_since.get_or_insert(t_s);
        if t_s - since < STUCK_FOR_S {
            return None;
        }
        // A raised limit counts only at the next round's end.
        if let Some((at, sync)) = self.last_step {
            if syncs <= sync && t_s - at < STEP_WAIT_S {
                return None;
            }
        }
        let at_ms = ms(t_s);
        let why = format!(
            "pre-copy does not converge: {} stays dirty at each round's end, and {} ms of downtime would send it",
            pacer_model::format_bytes(advice.dirty_set_bytes),
            advice.downtime_limit_ms
        );
        let room = self.policy.max_downtime_ms.filter(|m| *m > self.limit_ms);
        let enough = room.is_some_and(|m| advice.downtime_limit_ms <= m);
        match room {
            Some(max) if enough || !self.policy.allow_postcopy => {
                let new = advice.downtime_limit_ms.max(2 * self.limit_ms).min(max);
                self.limit_ms = new;
                self.last_step = Some((t_s, syncs));
                self.stuck_since = None;
                self.foresight.set_downtime_limit_ms(new);
                Some((
                    Action::SetSwitchover { downtime_limit_ms: new, switchover_bps: 0 },
                    ConvergeStep { at_ms, action: ConvergeAction::DowntimeLimit { ms: new }, why: format!("{why}: downtime limit raised to {new} ms") },
                ))
            }
            _ if self.policy.allow_postcopy => {
                self.postcopy_asked = true;
                Some((
                    Action::StartPostcopy,
                    ConvergeStep { at_ms, action: ConvergeAction::Postcopy, why: format!("{why}: switched to post-copy") },
                ))
            }
            _ => None,
        }
    }

    /// Rounds that have kept missing QEMU's threshold for [`STUCK_FOR_S`] (pre-copy at
    /// the switch-over edge, converging on average) and a policy that allows a higher
    /// downtime limit: the limit at which the closest of them would have switched (a
    /// nudge, not a doubling: the dirty set is known). Never post-copy: left alone it ends.
    fn edge_step(&mut self, t_s: f64, syncs: u64, edge: Option<pacer_api::EdgeAdvice>) -> Option<(Action, ConvergeStep)> {
        let e = edge.filter(|e| e.missed_rounds.saturating_mul(e.round_ms) as f64 >= STUCK_FOR_S * 1000.0)?;
        let max = self.policy.max_downtime_ms.filter(|m| *m > self.limit_ms)?;
        // The rounds go on missing for a while after a raise only by chance: not a
        // round's end, a wait, before the next.
        if self.last_step.is_some_and(|(at, _)| t_s - at < STEP_WAIT_S) {
            return None;
        }
        let new = e.downtime_limit_ms.max(self.limit_ms + 10).min(max);
        self.limit_ms = new;
        self.last_step = Some((t_s, syncs));
        self.foresight.set_downtime_limit_ms(new);
        let why = format!(
            "at the switch-over edge: {} rounds in a row came back to within reach of QEMU's threshold ({}) and missed, \
             the closest leaving {}: downtime limit raised to {new} ms",
            e.missed_rounds,
            pacer_model::format_bytes(e.threshold_bytes),
            pacer_model::format_bytes(e.least_left_bytes)
        );
        Some((
            Action::SetSwitchover { downtime_limit_ms: new, switchover_bps: 0 },
            ConvergeStep { at_ms: ms(t_s), action: ConvergeAction::DowntimeLimit { ms: new }, why },
        ))
    }

    /// Why to switch to post-copy now, if the strategy says so.
    fn postcopy_reason(&mut self, t_s: f64, info: &MigrationInfo) -> Option<String> {
        let ram = info.ram();
        match self.strategy {
            Strategy::PostCopy => {
                let after = self.postcopy_after_s;
                let running = t_s - self.memory_started_s.unwrap_or(t_s);
                (running >= after && ram.transferred > 0)
                    .then(|| format!("switched to post-copy after {after} s of pre-copy"))
            }
            Strategy::Hybrid => {
                self.convergence.observe(ram.dirty_sync_count, ram.remaining, ram.transferred, ram.total);
                match self.convergence.is_converging() {
                    Convergence::NotConverging { reason } => {
                        Some(format!("pre-copy is not converging ({reason}): switched to post-copy"))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// A newer measurement of the guest (the sampler keeps measuring while it
    /// migrates) replaces what the predictor knew.
    fn refresh(&mut self, m: &Measurements, t_s: f64) {
        let known = self.foresight.dirty_measured_at;
        let Some(at) = m.curve_at().filter(|at| known.is_none_or(|k| *at > k)) else { return };
        let zero = m.zero_fraction.map(|(z, _)| z);
        // Measured over windows up to this long, ending now.
        let window = m
            .curve
            .as_ref()
            .and_then(|(c, _)| c.iter().map(|p| p.0).reduce(f64::max))
            .unwrap_or(4.0)
            .min(4.0);
        self.foresight.refresh_measurements(m.dirty_model(), zero, at, t_s, window);
        self.foresight.set_disk_regions(m.disk_regions.clone().map(|(r, _)| r));
    }

    /// Percent done as elapsed time over the predicted total: bytes are a poor
    /// measure (zero pages cost nothing, dirty pages are sent again), time is what
    /// the operator waits for. Never decreases; 0 until the first prediction.
    fn percent(&mut self, t_s: f64, completed: bool) -> f64 {
        let elapsed = ms(t_s);
        match self.foresight.latest() {
            Some(PredictionPoint { total_ms: Some(total), .. }) => {
                self.progress.update(elapsed, total.saturating_sub(elapsed), completed)
            }
            // A migration that does not end on its own is not any further along: its
            // percentage stays where it was (the display says why, in words).
            Some(_) if !completed => self.progress.percent(),
            _ => self.progress.update(0, 1, completed),
        }
    }
}

/// The job phase for a QEMU status.
pub fn phase_of(status: &MigrationStatus, syncs: u64) -> JobPhase {
    match status {
        MigrationStatus::Active if syncs <= 1 => JobPhase::BulkCopy,
        MigrationStatus::Active => JobPhase::PreCopy,
        s if s.is_postcopy() => JobPhase::PostCopy,
        s if s.is_switchover() || *s == MigrationStatus::Completed => JobPhase::SwitchOver,
        _ => JobPhase::Setup,
    }
}

fn ms(t_s: f64) -> u64 {
    (t_s.max(0.0) * 1000.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacer_api::PeerRef;
    use pacer_qemu::migration::RamStats;

    const GIB: u64 = 1 << 30;

    fn req(strategy: Strategy) -> MigrateRequest {
        MigrateRequest::new(PeerRef { name: "h2".into(), url: "http://x:1".into(), token: "t".into() }, strategy)
    }

    fn ctl(r: &MigrateRequest, link: Option<f64>) -> Controller {
        Controller::new(r, GIB, &Measurements::default(), link, None, 0.5)
    }

    fn info(status: &str, transferred: u64, remaining: u64, syncs: u64) -> MigrationInfo {
        MigrationInfo {
            status: MigrationStatus::from(status),
            ram: Some(RamStats {
                transferred,
                remaining,
                total: GIB,
                normal: transferred / 4096,
                normal_bytes: transferred,
                page_size: 4096,
                dirty_sync_count: syncs,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn disk(transferred: u64, total: u64, ready: bool) -> DiskProgress {
        DiskProgress { total, transferred, remaining: total - transferred, ready, rate_bps: 50e6, ..Default::default() }
    }

    fn memory<'a>(i: &'a MigrationInfo) -> Observed<'a> {
        Observed::Memory { info: i, disk: None }
    }

    #[test]
    fn disks_are_followed_until_in_sync_or_stalled() {
        let r = req(Strategy::PreCopy);
        let mut c = ctl(&r, None);
        let m = Measurements::default();
        let t = c.tick(0.2, Observed::Disks(&disk(10, 100, false)), &m);
        assert_eq!((t.verdict, t.progress.phase), (Verdict::Continue, JobPhase::DiskBulkCopy));
        let t = c.tick(0.4, Observed::Disks(&disk(100, 100, true)), &m);
        assert_eq!((t.verdict, t.progress.phase), (Verdict::DisksInSync, JobPhase::DiskSync));
        assert!(t.events.iter().any(|e| e.contains("disks in sync")));
        let mut c = ctl(&r, None);
        for i in 0..60 {
            let t = c.tick(i as f64 * 0.2, Observed::Disks(&disk(10, 100, false)), &m);
            if i as f64 * 0.2 > DEFAULT_STALL_S + 0.5 {
                assert!(matches!(t.verdict, Verdict::Failed(ref w) if w.contains("no disk data moved")), "{:?}", t.verdict);
                return;
            }
        }
        panic!("a stalled disk copy was not given up");
    }

    #[test]
    fn qemu_endings_become_verdicts() {
        let r = req(Strategy::PreCopy);
        let m = Measurements::default();
        let mut c = ctl(&r, None);
        assert_eq!(c.tick(1.0, memory(&info("completed", GIB, 0, 5)), &m).verdict, Verdict::Completed);
        let mut failed = info("failed", 1, 1, 1);
        failed.error_desc = Some("Unable to write to socket".into());
        let v = ctl(&r, None).tick(1.0, memory(&failed), &m).verdict;
        assert_eq!(v, Verdict::Failed("QEMU migration failed: Unable to write to socket".into()));
        let v = ctl(&r, None).tick(1.0, memory(&info("postcopy-paused", 1, 1, 1)), &m).verdict;
        assert!(matches!(v, Verdict::Failed(w) if w.contains("post-copy was interrupted")));
    }

    #[test]
    fn a_stalled_precopy_is_given_up_but_a_stalled_postcopy_is_not() {
        let r = req(Strategy::PreCopy);
        let m = Measurements::default();
        let mut pre = ctl(&r, None);
        let mut post = ctl(&r, None);
        let (mut pre_failed, mut post_failed) = (false, false);
        for i in 0..70 {
            let t = i as f64 * 0.2;
            pre_failed |= matches!(pre.tick(t, memory(&info("active", 100 << 20, 500 << 20, 1)), &m).verdict, Verdict::Failed(_));
            post_failed |= matches!(post.tick(t, memory(&info("postcopy-active", 100 << 20, 500 << 20, 2)), &m).verdict, Verdict::Failed(_));
        }
        assert!(pre_failed && !post_failed);
    }

    #[test]
    fn postcopy_switches_after_its_delay_once_and_again_if_refused() {
        let mut r = req(Strategy::PostCopy);
        r.postcopy_after_s = Some(2.0);
        let m = Measurements::default();
        let mut c = ctl(&r, None);
        c.memory_started(1.0);
        let switches = |t: &Tick| t.actions.iter().filter(|a| **a == Action::StartPostcopy).count();
        assert_eq!(switches(&c.tick(2.0, memory(&info("active", 10 << 20, 900 << 20, 1)), &m)), 0);
        let t = c.tick(3.1, memory(&info("active", 20 << 20, 900 << 20, 1)), &m);
        assert_eq!(switches(&t), 1);
        assert!(t.events[0].contains("after 2 s of pre-copy"), "{:?}", t.events);
        assert_eq!(switches(&c.tick(3.3, memory(&info("active", 30 << 20, 900 << 20, 1)), &m)), 0);
        c.postcopy_refused();
        assert_eq!(switches(&c.tick(3.5, memory(&info("active", 40 << 20, 900 << 20, 1)), &m)), 1);
        let t = c.tick(3.7, memory(&info("postcopy-active", 50 << 20, 800 << 20, 2)), &m);
        assert_eq!((t.progress.phase, c.postcopy_at_s()), (JobPhase::PostCopy, Some(3.7)));
    }

    #[test]
    fn precopy_never_switches_and_switch_over_finishes_the_disks_once() {
        let r = req(Strategy::PreCopy);
        let m = Measurements::default();
        let mut c = ctl(&r, None);
        c.memory_started(0.0);
        let t = c.tick(30.0, memory(&info("active", 10 << 20, 900 << 20, 1)), &m);
        assert!(!t.actions.contains(&Action::StartPostcopy));
        let t = c.tick(30.2, memory(&info("pre-switchover", GIB, 1 << 20, 6)), &m);
        assert!(t.actions.contains(&Action::FinishDisksAndContinue));
        assert_eq!(t.progress.phase, JobPhase::SwitchOver);
        assert_eq!(c.poll_interval(30.2), POLL_SWITCHING);
        let t = c.tick(30.25, memory(&info("pre-switchover", GIB, 1 << 20, 6)), &m);
        assert!(!t.actions.contains(&Action::FinishDisksAndContinue));
    }

    #[test]
    fn a_feasible_target_paces_the_copy_and_holds_the_switch_over() {
        let mut r = req(Strategy::PreCopy);
        r.finish_in_s = Some(60.0);
        let mut c = Controller::new(&r, GIB, &Measurements::default(), Some(125e6), Some(true), 0.5);
        let m = Measurements::default();
        let t = c.tick(1.0, memory(&info("active", 50 << 20, 900 << 20, 1)), &m);
        let speed = t.actions.iter().find_map(|a| match a {
            Action::SetSpeed { memory_bps, .. } => Some(*memory_bps),
            _ => None,
        });
        assert!(speed.is_some_and(|s| s < 100_000_000), "a gentle speed: {:?}", t.actions);
        assert!(t.actions.contains(&Action::SetSwitchover { downtime_limit_ms: 1, switchover_bps: 1000 }), "{:?}", t.actions);
        let target = c.target().unwrap();
        assert!(target.feasible && target.finish_ms == 60_000, "{target:?}");
        // Retargeted to flat out: the operator's limits come back.
        c.retarget(None);
        let t = c.tick(2.0, memory(&info("active", 60 << 20, 890 << 20, 1)), &m);
        assert!(t.actions.contains(&Action::SetSpeed { memory_bps: UNLIMITED_BPS, disk_bps: 0 }), "{:?}", t.actions);
        assert!(t.actions.contains(&Action::SetSwitchover { downtime_limit_ms: 300, switchover_bps: 0 }), "{:?}", t.actions);
    }

    #[test]
    fn percent_done_never_goes_back_and_reaches_100_only_at_the_end() {
        let r = req(Strategy::PreCopy);
        let m = Measurements::default();
        let mut c = ctl(&r, None);
        let mut last = 0.0;
        for i in 1..40u64 {
            let sent = (i * 25) << 20;
            let t = c.tick(i as f64 * 0.2, memory(&info("active", sent, GIB.saturating_sub(sent), 1 + i / 20)), &m);
            assert!(t.progress.percent >= last && t.progress.percent < 100.0, "{} after {last}", t.progress.percent);
            last = t.progress.percent;
        }
        assert_eq!(c.tick(8.2, memory(&info("completed", GIB, 0, 3)), &m).progress.percent, 100.0);
    }

    /// Measured before the start: `rate` over `wss` (a curve as the sampler makes it).
    fn measured(rate: f64, wss: f64) -> Measurements {
        let d = pacer_model::DirtyModel::new(rate, wss).unwrap();
        let now = std::time::Instant::now();
        Measurements {
            curve: Some(([0.5, 1.0, 2.0, 4.0, 8.0].iter().map(|w| (*w, d.dirtied(*w))).collect(), now)),
            zero_fraction: Some((0.3, now)),
            disk_regions: None,
            dirty_log: None,
        }
    }

    /// Ticks a first round at 25 MB/s from `from` to `to` s; the actions taken.
    fn first_round(c: &mut Controller, m: &Measurements, from: f64, to: f64) -> (Vec<Action>, Vec<String>) {
        let (mut actions, mut events) = (Vec::new(), Vec::new());
        let mut t = from;
        while t < to {
            let sent = (t * 25e6) as u64;
            let t2 = c.tick(t, memory(&info("active", sent, GIB - sent, 1)), m);
            actions.extend(t2.actions);
            events.extend(t2.events);
            t += 0.2;
        }
        (actions, events)
    }

    #[test]
    fn a_guest_faster_than_the_link_is_reported_stuck_within_seconds() {
        // 60 MB/s over 512 MB through 25 MB/s: known from the measurement before the start.
        let r = req(Strategy::PreCopy);
        let m = measured(60e6, 512e6);
        let mut c = Controller::new(&r, GIB, &m, Some(25e6), None, 0.5);
        c.memory_started(0.5);
        let (actions, _) = first_round(&mut c, &m, 0.5, 3.0);
        let p = c.prediction().expect("predictions");
        assert!(p.total_ms.is_none() && p.completes_chance < 0.2, "{p:?}");
        let a = p.stuck.expect("advice");
        assert!(a.downtime_limit_ms > 10_000 && a.postcopy_total_ms > 0, "{a:?}");
        assert!(a.bandwidth_needed_bps.is_some_and(|b| b > 50e6), "{a:?}");
        // Nothing allowed: nothing done.
        assert!(actions.iter().all(|a| !matches!(a, Action::StartPostcopy | Action::SetSwitchover { .. })), "{actions:?}");
        assert!(c.converge_steps().is_empty());
    }

    #[test]
    fn the_policy_raises_the_limit_to_what_converges_or_switches_to_postcopy() {
        let m = measured(60e6, 512e6);
        // Room enough: the limit goes to what the model says lets QEMU switch over.
        let mut r = req(Strategy::PreCopy);
        r.converge = ConvergePolicy { max_downtime_ms: Some(60_000), allow_postcopy: true };
        let mut c = Controller::new(&r, GIB, &m, Some(25e6), None, 0.5);
        c.memory_started(0.5);
        let (actions, events) = first_round(&mut c, &m, 0.5, 6.0);
        let raised = actions.iter().find_map(|a| match a {
            Action::SetSwitchover { downtime_limit_ms, switchover_bps: 0 } => Some(*downtime_limit_ms),
            _ => None,
        });
        assert!(raised.is_some_and(|ms| (10_000..=60_000).contains(&ms)), "{actions:?}");
        assert!(!actions.contains(&Action::StartPostcopy), "{actions:?}");
        assert_eq!(c.converge_steps().len(), 1, "{:?}", c.converge_steps());
        assert!(events.iter().any(|e| e.contains("downtime limit raised")), "{events:?}");
        // With the raised limit, the model expects it to end.
        assert!(c.prediction().unwrap().total_ms.is_some(), "{:?}", c.prediction());
        // A maximum that cannot do it: straight to post-copy.
        r.converge.max_downtime_ms = Some(2_000);
        let mut c = Controller::new(&r, GIB, &m, Some(25e6), None, 0.5);
        c.memory_started(0.5);
        let (actions, _) = first_round(&mut c, &m, 0.5, 6.0);
        assert_eq!(actions.iter().filter(|a| **a == Action::StartPostcopy).count(), 1, "{actions:?}");
        assert_eq!(c.converge_steps()[0].action, ConvergeAction::Postcopy);
    }

    #[test]
    fn rounds_at_the_edge_get_the_limit_that_ends_them_when_the_policy_allows() {
        // The model has the guest converging (2 MB/s); the rounds keep coming back to
        // about 9 MB after each sync against a 7.5 MB threshold (25 MB/s x 300 ms).
        let run = |policy: ConvergePolicy| {
            let mut r = req(Strategy::PreCopy);
            r.converge = policy;
            let m = measured(2e6, 64e6);
            let mut c = Controller::new(&r, GIB, &m, Some(25e6), None, 0.5);
            c.memory_started(0.5);
            let (mut actions, mut events) = first_round(&mut c, &m, 0.5, 3.0);
            let mut t = 20.0;
            for sync in 2..40u64 {
                let mut i = info("active", (t * 25e6) as u64, 9_000_000 - 2_500_000, sync);
                if let Some(ram) = i.ram.as_mut() {
                    ram.mbps = 200.0;
                }
                let tick = c.tick(t, memory(&i), &m);
                actions.extend(tick.actions);
                events.extend(tick.events);
                t += 0.3;
            }
            (c, actions, events)
        };
        let (c, actions, _) = run(ConvergePolicy::default());
        let edge = c.prediction().and_then(|p| p.edge).expect("at the edge");
        assert!(edge.missed_rounds >= 20 && (290..=310).contains(&edge.round_ms), "{edge:?}");
        assert!((400..=500).contains(&edge.downtime_limit_ms), "9 MB of a 7.5 MB threshold at 300 ms, and a tenth: {edge:?}");
        assert!(actions.iter().all(|a| !matches!(a, Action::SetSwitchover { .. } | Action::StartPostcopy)), "nothing allowed, nothing done: {actions:?}");
        let (c, actions, events) = run(ConvergePolicy { max_downtime_ms: Some(2_000), allow_postcopy: true });
        let raised: Vec<u64> = actions
            .iter()
            .filter_map(|a| match a {
                Action::SetSwitchover { downtime_limit_ms, .. } => Some(*downtime_limit_ms),
                _ => None,
            })
            .collect();
        assert_eq!(raised, vec![edge.downtime_limit_ms], "{actions:?}");
        assert!(!actions.contains(&Action::StartPostcopy), "{actions:?}");
        assert!(events.iter().any(|e| e.contains("switch-over edge")), "{events:?}");
        assert_eq!(c.converge_steps().len(), 1);
    }

    #[test]
    fn qemu_statuses_map_to_phases() {
        assert_eq!(phase_of(&MigrationStatus::Setup, 0), JobPhase::Setup);
        assert_eq!(phase_of(&MigrationStatus::Active, 1), JobPhase::BulkCopy);
        assert_eq!(phase_of(&MigrationStatus::Active, 2), JobPhase::PreCopy);
        assert_eq!(phase_of(&MigrationStatus::PostcopyPaused, 2), JobPhase::PostCopy);
        assert_eq!(phase_of(&MigrationStatus::Device, 4), JobPhase::SwitchOver);
        assert_eq!(phase_of(&MigrationStatus::Completed, 4), JobPhase::SwitchOver);
    }
}
