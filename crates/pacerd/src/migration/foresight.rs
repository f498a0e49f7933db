//! Prediction and finish-time control inside a migration (part of the
//! [controller](super::controller)): every sample goes
//! to the model's predictor; twice a second the prediction is recorded (with the
//! naive estimate beside it, so anyone can score both) and, when the job has a
//! finish target, the pacing controller picks the gentlest speed that still
//! makes it.

use pacer_api::{MigrateRequest, PredictionPoint, TargetStatus};
use pacer_model::pacing::pace;
use pacer_model::predict::{NaiveEstimator, Predictor, Prior, Sample, Status};

use crate::migration::plan::model_plan;

/// How often the pace is re-planned (s).
const EVERY_S: f64 = 1.0;
/// How often predictions are recorded (s): a changed link shows in the next one.
const RECORD_EVERY_S: f64 = 0.5;
/// Until the agent has seen a released migration end: how much later than the
/// model's flat-out end it ends (QEMU's check interval, the commit).
pub const DEFAULT_SWITCH_LAG_S: f64 = 0.5;

/// How much later than the model's end a migration really ends on a host (the
/// destination loading device state and resuming the guest, the agent's own
/// polling), and how much that varies: learned from the host's past migrations.
/// It is a few hundred ms, which is most of a short migration's error and its band.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndLag {
    /// Smoothed lag, s.
    pub mean_s: f64,
    /// Smoothed absolute deviation from the mean, s.
    pub dev_s: f64,
}

impl Default for EndLag {
    /// Before any migration ended here: what this kind of machine showed (0.2 s
    /// late, give or take 0.2 s), to be replaced by what this host shows.
    fn default() -> Self {
        EndLag { mean_s: 0.2, dev_s: 0.2 }
    }
}

impl EndLag {
    /// One more migration that ended `lag_s` after the model said (bounded: one odd
    /// migration must not skew the next ones).
    pub fn learn(&mut self, lag_s: f64) {
        let lag = lag_s.clamp(-0.5, 1.0);
        self.dev_s = 0.5 * self.dev_s + 0.5 * (lag - self.mean_s).abs();
        self.mean_s = 0.5 * self.mean_s + 0.5 * lag;
    }

    /// Half-width the lag's variation adds to each side of an 80% band (a mean
    /// absolute deviation is 0.8 standard deviations; 1.28 of them each side).
    pub fn half_width_s(&self) -> f64 {
        1.28 * self.dev_s / 0.8
    }
}
/// Predictions in a row that must say "does not converge" before it is said.
const STUCK_STREAK: u32 = 3;
/// ... each with less than this chance that the band's runs end.
const STUCK_BELOW_CHANCE: f64 = 0.5;
/// While held after the bulk copy, send this fraction of the link (at least 1 MB/s).
const TRICKLE_FRACTION: f64 = 0.01;

/// What the job should do after a tick.
pub struct Advice {
    /// A new speed to apply (bytes/s; 0 = flat out), when it changed.
    pub set_speed: Option<u64>,
    /// Hold pre-copy short of switching over (true) or let it switch (false).
    pub hold: Option<bool>,
    /// Something worth an event line.
    pub note: Option<String>,
}

/// The job's predictor, prediction history and pacing state.
pub struct Foresight {
    predictor: Predictor,
    prior: Prior,
    /// Recorded predictions.
    pub history: Vec<PredictionPoint>,
    last_record_s: f64,
    last_replan_s: f64,
    shifts_seen: u64,
    /// Target finish (s since the job started), if any.
    pub target_s: Option<f64>,
    /// Link capacity (bytes/s): probed, raised by what is seen when running flat out.
    pub capacity_bps: Option<f64>,
    cap_bps: Option<f64>,
    speed_bps: u64,
    feasible: Option<bool>,
    earliest_s: f64,
    holding: bool,
    released: bool,
    /// When the hold was released and when the model then said it would end (s
    /// since the job started).
    pub released_at: Option<(f64, f64)>,
    /// How much later than the model's end a released migration really ends
    /// (guest resumed at the destination), learned by the agent.
    pub switch_lag_s: f64,
    paced_bps: f64,
    /// The naive estimate, for comparison.
    naive: NaiveEstimator,
    /// When the guest's dirtying curve the predictor uses was measured.
    pub dirty_measured_at: Option<std::time::Instant>,
    /// Predictions in a row that said "does not converge".
    stuck_streak: u32,
    /// The last finite prediction (low, total, high).
    last_completing: Option<(f64, f64, f64)>,
    /// How much later than the model's end a migration really ends here, learned
    /// by the agent from its past migrations; added to every unpaced prediction
    /// and its spread to the band.
    pub end_lag: EndLag,
    /// The model's own total (without the end lag) of the latest prediction.
    pub last_model_total_s: Option<f64>,
}

impl Foresight {
    /// A predictor for this request, with what is known beforehand.
    pub fn new(req: &MigrateRequest, prior: Prior, target_s: Option<f64>) -> Foresight {
        let plan = model_plan(req);
        let predictor = Predictor::new(plan, prior)
            .or_else(|_| Predictor::new(plan, Prior::default()))
            .expect("validated plan");
        Foresight {
            predictor,
            prior,
            history: Vec::new(),
            last_record_s: f64::NEG_INFINITY,
            last_replan_s: f64::NEG_INFINITY,
            shifts_seen: 0,
            target_s,
            capacity_bps: prior.link_bps,
            cap_bps: req.bandwidth.map(|b| b as f64),
            speed_bps: 0,
            feasible: None,
            earliest_s: 0.0,
            holding: false,
            released: false,
            released_at: None,
            switch_lag_s: DEFAULT_SWITCH_LAG_S,
            paced_bps: 0.0,
            dirty_measured_at: None,
            naive: NaiveEstimator::default(),
            stuck_streak: 0,
            last_completing: None,
            end_lag: EndLag::default(),
            last_model_total_s: None,
        }
    }

    /// QEMU's downtime limit was raised to `ms` (the predictor plays the rest with it).
    pub fn set_downtime_limit_ms(&mut self, ms: u64) {
        self.predictor.set_downtime_limit_ms(ms);
    }

    /// The guest's dirtying as known before the start.
    pub fn prior_dirty(&self) -> Option<pacer_model::DirtyModel> {
        self.prior.dirty
    }

    /// Where the guest writes on its disks, for the disk copy's re-dirtied set.
    pub fn set_disk_regions(&mut self, regions: Option<std::sync::Arc<pacer_model::disk_regions::RegionWrites>>) {
        if regions.is_some() {
            self.predictor.set_disk_regions(regions);
        }
    }

    /// Takes a newer measurement of the guest (made at `at`): its dirtying and zero pages.
    /// `now_s` is the job's time, `window_s` the measurement's longest window.
    pub fn refresh_measurements(
        &mut self,
        dirty: Option<pacer_model::DirtyModel>,
        zero_fraction: Option<f64>,
        at: std::time::Instant,
        now_s: f64,
        window_s: f64,
    ) {
        // A guest that changed its ways (what it dirties in a second moved by half
        // or more): say so now, not at the next regular record.
        let per_s = |d: Option<pacer_model::DirtyModel>| d.map_or(0.0, |d| d.dirtied(1.0));
        let (before, after) = (per_s(self.prior.dirty), per_s(dirty));
        if dirty.is_some() && (after > 1.5 * before + 1e6 || before > 1.5 * after + 1e6) {
            self.last_record_s = f64::NEG_INFINITY;
        }
        self.prior.dirty = dirty.or(self.prior.dirty);
        self.prior.zero_fraction = zero_fraction.or(self.prior.zero_fraction);
        self.predictor.refresh_prior(dirty, zero_fraction, now_s, window_s);
        self.dirty_measured_at = Some(at);
    }

    /// The zero-page fraction as known before the start.
    pub fn prior_zero(&self) -> Option<f64> {
        self.prior.zero_fraction
    }

    /// The latest recorded prediction.
    pub fn latest(&self) -> Option<PredictionPoint> {
        self.history.last().copied()
    }

    /// The target's status, if there is a target.
    pub fn target_status(&self) -> Option<TargetStatus> {
        self.target_s.map(|t| TargetStatus {
            finish_ms: (t.max(0.0) * 1000.0) as u64,
            feasible: self.feasible.unwrap_or(true),
            earliest_finish_ms: (self.earliest_s * 1000.0) as u64,
            speed_bps: self.speed_bps,
        })
    }

    /// Changes the target; the next tick re-plans.
    pub fn retarget(&mut self, target_s: Option<f64>) {
        self.target_s = target_s;
        self.feasible = None;
        self.released = false;
        self.released_at = None;
        self.last_record_s = f64::NEG_INFINITY;
    }

    /// Seconds to wait before starting memory migration so that the gentlest pace
    /// still ends at the target (0 without a target or when there is no slack).
    pub fn start_delay_s(&self, state: &pacer_model::MigrationState) -> f64 {
        match (self.target_s, self.max_bps()) {
            (Some(t), Some(max)) => pace(state, max, t).map(|d| d.start_delay_s).unwrap_or(0.0),
            _ => 0.0,
        }
    }

    /// Feeds one sample; records a prediction twice a second and steers the pace.
    ///
    /// With a feasible target the migration is held short of its switch-over
    /// (a 1 ms downtime limit) so that QEMU cannot end early: the bulk copy runs
    /// at the gentlest speed the controller finds; after it, while finishing flat
    /// out from here would still end before the target, only a trickle is sent;
    /// when it would not, the hold is released and the rest goes flat out, timed
    /// by the model to end at the target.
    pub fn tick(&mut self, s: &Sample, achieved_bps: f64) -> Advice {
        self.predictor.observe(s);
        let naive = self.naive.observe(s);
        // Running flat out shows what the link can do.
        if self.speed_bps == 0 && achieved_bps > 0.0 && self.cap_bps.is_none() {
            self.capacity_bps = Some(self.capacity_bps.unwrap_or(0.0).max(achieved_bps));
        }
        let each_second = s.t_s - self.last_replan_s >= EVERY_S;
        if each_second {
            self.last_replan_s = s.t_s;
        }
        // A changed link is worth a prediction at once.
        let shifted = self.predictor.bandwidth_shifts() > self.shifts_seen;
        self.shifts_seen = self.predictor.bandwidth_shifts();
        // Paced first, so that the prediction recorded below already knows
        // whether the target is being met.
        let advice = self.pace_tick(s, each_second);
        if s.t_s - self.last_record_s >= RECORD_EVERY_S || shifted {
            self.last_record_s = s.t_s;
            if let Some(mut p) = self.predictor.predict() {
                // Under control the finish is the controller's, not the current pace's:
                // a held migration looks stuck to the model on purpose. Once released it
                // runs flat out, and a model that keeps saying it will not converge is
                // believed again.
                let paced = matches!((self.target_s, self.feasible), (Some(_), Some(true)));
                // Stuck is said when the model's own run does not end and most of
                // the band's runs do not either: a point just past the edge with
                // the band mostly ending is "on the edge", an open band.
                let stuck_now = p.stuck.is_some() && p.completes_chance < STUCK_BELOW_CHANCE;
                self.stuck_streak = match (stuck_now, paced && !self.released) {
                    (true, false) => self.stuck_streak + 1,
                    _ => 0,
                };
                let stuck_said = self.stuck_streak >= STUCK_STREAK;
                if let (Some(t), true, false) = (self.target_s, paced, stuck_said) {
                    let end = t.max(s.t_s);
                    let tol = (0.02 * t).max(1.0);
                    p.total_s = end;
                    p.low_s = (end - tol).max(s.t_s);
                    p.high_s = end + tol;
                    p.stuck = None;
                    p.edge = None;
                    p.completes_chance = 1.0;
                    if let (Some(state), Some(max)) = (self.predictor.state(), self.max_bps()) {
                        p.downtime_ms = state.finish(max).downtime_s * 1000.0;
                    }
                }
                // "Does not converge" is said once the model has said it for a second or
                // so (three predictions): near the edge one noisy measurement flips it.
                // Meanwhile the prediction is the finish if it converges, with an open band.
                if p.stuck.is_some() && !stuck_said {
                    if let Some((lo, mid, _)) = p.if_completes.or(self.last_completing) {
                        p.total_s = mid.max(s.t_s);
                        p.low_s = lo.clamp(s.t_s, p.total_s);
                        p.high_s = f64::INFINITY;
                        p.stuck = None;
                    }
                }
                if !paced && p.total_s.is_finite() {
                    self.last_model_total_s = Some(p.total_s);
                    // Never before now (a negative lag or a model end already past).
                    // The lag's own spread widens the band (independent of the
                    // model's: the two half-widths add in quadrature).
                    let lag = self.end_lag.mean_s;
                    let e = self.end_lag.half_width_s();
                    let below = (p.total_s - p.low_s).max(0.0);
                    let above = p.high_s - p.total_s;
                    p.total_s = (p.total_s + lag).max(s.t_s);
                    p.low_s = (p.total_s - below.hypot(e)).clamp(s.t_s, p.total_s);
                    p.high_s = p.total_s + above.hypot(e);
                }
                if p.total_s.is_finite() {
                    self.last_completing = Some((p.low_s, p.total_s, p.high_s));
                }
                let ms = |x: f64| (x.max(0.0) * 1000.0) as u64;
                let finite = |x: f64| x.is_finite().then(|| ms(x));
                self.history.push(PredictionPoint {
                    elapsed_ms: ms(s.t_s),
                    total_ms: finite(p.total_s),
                    low_ms: ms(p.low_s),
                    high_ms: finite(p.high_s),
                    downtime_ms: p.downtime_ms.max(0.0) as u64,
                    naive_total_ms: naive.map(ms),
                    completes_chance: p.completes_chance,
                    stuck: p.stuck.as_ref().map(crate::migration::plan::advice),
                    edge: p.edge.as_ref().map(|e| crate::migration::plan::edge_advice(e, self.predictor.plan().downtime_limit_ms)),
                });
            }
        }
        advice
    }

    /// The pacing half of a tick: the gentlest speed that makes the target, the
    /// hold and its release.
    fn pace_tick(&mut self, s: &Sample, each_second: bool) -> Advice {
        let mut advice = Advice { set_speed: None, hold: None, note: None };
        let steer = match (self.target_s, self.predictor.state(), self.max_bps()) {
            (Some(t), Some(state), Some(max)) if !self.released => Some((t, state, max)),
            _ => None,
        };
        let Some((target, state, max)) = steer else {
            self.steer(&mut advice, 0, false);
            return advice;
        };
        let after_bulk = s.status == Status::Active && s.dirty_sync_count >= 2;
        // Once feasible and past the bulk copy, the release rule below decides
        // (it releases at once if flat out would already be late): re-running the
        // pacer on a held state, whose dirty set grows on purpose, would flip the
        // verdict to infeasible and end the hold early.
        let settled = after_bulk && self.feasible == Some(true);
        if (each_second || self.feasible.is_none()) && !settled {
            if let Ok(d) = pace(&state, max, target) {
                self.earliest_s = d.earliest_finish_s;
                self.paced_bps = d.speed_bps;
                if self.feasible != Some(d.feasible) {
                    advice.note = Some(if d.feasible {
                        format!("finish target {target:.1} s is feasible: pacing to it")
                    } else {
                        format!(
                            "finish target {target:.1} s cannot be met: earliest finish {:.1} s; running flat out",
                            d.earliest_finish_s
                        )
                    });
                    self.feasible = Some(d.feasible);
                }
            }
        }
        if self.feasible != Some(true) {
            self.steer(&mut advice, 0, false);
            return advice;
        }
        if after_bulk {
            // Held with a trickle (well under the dirty rate, so the dirty set
            // grows and QEMU cannot find it empty and finish early); released flat
            // out, with the operator's downtime limit, when the model says the rest
            // takes until the target (corrected by what this agent learned of its
            // past releases).
            let fin = state.finish(max);
            if fin.total_s + self.switch_lag_s >= target {
                self.released = true;
                self.released_at = Some((s.t_s, fin.total_s));
                advice.note = Some(format!(
                    "released at {:.1} s: flat out ends about {:.1} s (target {target:.1} s)",
                    s.t_s,
                    fin.total_s + self.switch_lag_s
                ));
                self.steer(&mut advice, 0, false);
            } else {
                let trickle = (max * TRICKLE_FRACTION).max(1e6) as u64;
                self.steer(&mut advice, trickle, true);
            }
        } else {
            let v = self.paced_bps;
            let speed = if v > 0.0 && v < max * 0.98 { v.max(1e6) as u64 } else { 0 };
            self.steer(&mut advice, speed, true);
        }
        advice
    }

    /// Sets speed and hold in the advice when they change (speed changes under 3%
    /// are not worth a QMP round trip).
    fn steer(&mut self, advice: &mut Advice, speed: u64, hold: bool) {
        let changed = match (self.speed_bps, speed) {
            (0, 0) => false,
            (0, _) | (_, 0) => true,
            (a, b) => (a as f64 - b as f64).abs() > 0.03 * a as f64,
        };
        if changed {
            self.speed_bps = speed;
            advice.set_speed = Some(speed);
        }
        if hold != self.holding {
            self.holding = hold;
            advice.hold = Some(hold);
            self.predictor.set_held(hold);
        }
    }

    /// True close to the target, when the job should look more often than 5 Hz.
    pub fn near_target(&self, t_s: f64) -> bool {
        self.target_s.is_some_and(|t| self.feasible == Some(true) && !self.released && t_s > t - 8.0)
    }

    /// Sets what was known of the target's feasibility before the job began.
    pub fn set_feasible(&mut self, feasible: bool) {
        self.feasible = Some(feasible);
    }

    fn max_bps(&self) -> Option<f64> {
        match (self.capacity_bps, self.cap_bps) {
            (Some(c), Some(cap)) => Some(c.min(cap)),
            (c, cap) => c.or(cap),
        }
    }
}
