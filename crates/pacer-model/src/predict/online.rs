//! The live predictor: estimates the model's inputs from `query-migrate` samples.

use std::collections::VecDeque;

use super::band::{band, Prediction, Spread};
use super::edge::EdgeRounds;
use super::forward::{DiskState, MigrationState, Phase, MIN_SPEED_BPS};
use super::inputs::{Plan, PredictError, Prior, Sample, Status};
use super::syncs::SyncPoints;
use crate::convergence::ConvergenceDetector;
use crate::dirty::DirtyModel;
use crate::disk_regions::RegionWrites;
use crate::ewma::Ewma;

/// Sync windows shorter than this are too blurred by the sample interval to fit on.
const MIN_POINT_WINDOW_S: f64 = 0.8;
/// Dirtying observations kept for fitting.
const MAX_POINTS: usize = 4;
/// Time constant of the bandwidth average, seconds.
const BANDWIDTH_TAU_S: f64 = 3.0;
/// Time constant of the short bandwidth average that detects a changed link, seconds.
const BANDWIDTH_FAST_TAU_S: f64 = 0.25;
/// Relative gap between the short and the long average that means the rate changed.
const BANDWIDTH_SHIFT: f64 = 0.2;
/// How long the gap must last, seconds (a round's end or a burst of zero pages is shorter).
const BANDWIDTH_SHIFT_HOLD_S: f64 = 0.4;
/// Windows at which a measured dirtying curve is weighed against the migration's rounds.
const PRIOR_WINDOWS_S: [f64; 6] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0];
/// Weight of one round's dirty set against one point of a measured curve.
const ROUND_WEIGHT: f64 = 3.0;
/// Share of RAM below which a measured curve and a round's dirty set always agree.
const PRIOR_SLACK: f64 = 0.002;
/// Pages that must have been re-sent before their zero fraction is trusted.
const MIN_ZERO_SAMPLE_PAGES: u64 = 1024;

/// Predicts a running migration from its `query-migrate` samples.
#[derive(Debug, Clone)]
pub struct Predictor {
    plan: Plan,
    prior: Prior,
    last: Option<Sample>,
    memory_start_s: Option<f64>,
    bandwidth: Option<f64>,
    bandwidth_var: Option<f64>,
    bandwidth_time_s: f64,
    /// Where the guest writes on its disks, if measured.
    disk_regions: Option<std::sync::Arc<RegionWrites>>,
    /// When the guest changed its ways (s), as a refreshed measurement showed.
    dirty_changed_s: Option<f64>,
    /// The last dirty model fitted, with what it was fitted from (fitting is costly).
    dirty_memo: std::cell::RefCell<Option<(Vec<f64>, Option<DirtyModel>)>>,
    /// Short-term bandwidth average and how long it has disagreed with the long one.
    bandwidth_fast: Option<f64>,
    shifted_for_s: f64,
    bandwidth_shifts: u64,
    first_round_zero: Option<f64>,
    /// Round one's unsent tail at the first sync: (bytes, pages sent so far then).
    round_one_tail: Option<(f64, u64)>,
    /// Zero and normal pages sent when round three began (re-dirtied pages only after that).
    round_three_start: Option<(u64, u64)>,
    syncs: SyncPoints,
    /// Rounds that came within reach of QEMU's threshold and missed.
    edge: EdgeRounds,
    /// The switch-over is held: rounds miss on purpose.
    held: bool,
    points: VecDeque<(f64, f64)>,
    dirty_err: Ewma,
    convergence: ConvergenceDetector,
    final_downtime_ms: Option<f64>,
}

impl Predictor {
    /// Creates a predictor for a migration carried out under `plan`, knowing `prior` beforehand.
    pub fn new(plan: Plan, prior: Prior) -> Result<Self, PredictError> {
        plan.validate()?;
        prior.validate()?;
        Ok(Predictor {
            plan,
            prior,
            last: None,
            memory_start_s: None,
            bandwidth: None,
            bandwidth_var: None,
            bandwidth_time_s: 0.0,
            bandwidth_fast: None,
            shifted_for_s: 0.0,
            bandwidth_shifts: 0,
            dirty_memo: Default::default(),
            disk_regions: None,
            dirty_changed_s: None,
            first_round_zero: None,
            round_one_tail: None,
            round_three_start: None,
            syncs: SyncPoints::new(MIN_POINT_WINDOW_S),
            edge: EdgeRounds::default(),
            held: false,
            points: VecDeque::with_capacity(MAX_POINTS),
            dirty_err: Ewma::new(0.3).expect("valid alpha"),
            convergence: ConvergenceDetector::default(),
            final_downtime_ms: None,
        })
    }

    /// The plan predictions are made for.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// QEMU's downtime limit was changed (ms, at least 1) while the migration runs.
    pub fn set_downtime_limit_ms(&mut self, ms: u64) {
        self.plan.downtime_limit_ms = ms.max(1);
        // Misses counted against the old threshold say nothing of the new one.
        self.edge = EdgeRounds::default();
    }

    /// The switch-over is held (a finish target: QEMU may not switch yet) or no longer:
    /// rounds that miss on purpose are not rounds at the edge.
    pub fn set_held(&mut self, held: bool) {
        self.held = held;
        self.edge = EdgeRounds::default();
    }

    /// How many times the bandwidth estimate has jumped to a changed link rate.
    pub fn bandwidth_shifts(&self) -> u64 {
        self.bandwidth_shifts
    }

    /// Smoothed wire bandwidth in bytes/s, once measured.
    pub fn bandwidth_bps(&self) -> Option<f64> {
        self.bandwidth
    }

    /// Folds in the rate `x` seen over `dt` seconds: a running mean at first, then an
    /// average with a [`BANDWIDTH_TAU_S`] time constant; also the relative variance.
    ///
    /// A link whose rate changes (other traffic, a re-shaped link) would take the long
    /// average several seconds to follow: when a short average ([`BANDWIDTH_FAST_TAU_S`])
    /// stays more than [`BANDWIDTH_SHIFT`] away from it for [`BANDWIDTH_SHIFT_HOLD_S`], the
    /// rate has shifted and the long average starts over.
    fn update_bandwidth(&mut self, x: f64, dt: f64) {
        self.bandwidth_time_s += dt;
        let alpha = (-(-dt / BANDWIDTH_TAU_S).exp_m1()).max(dt / self.bandwidth_time_s);
        let fast_alpha = (-(-dt / BANDWIDTH_FAST_TAU_S).exp_m1()).max(dt / self.bandwidth_time_s);
        let fast = self.bandwidth_fast.map_or(x, |f| f + fast_alpha * (x - f));
        self.bandwidth_fast = Some(fast);
        let Some(m) = self.bandwidth else {
            self.bandwidth = Some(x);
            return;
        };
        if m > 0.0 {
            let dev = ((x - m) / m).powi(2);
            let var = self.bandwidth_var.map_or(dev, |v| v + alpha * (dev - v));
            self.bandwidth_var = Some(var);
        }
        let mut next = m + alpha * (x - m);
        if m > 0.0 && ((fast - m) / m).abs() > BANDWIDTH_SHIFT {
            self.shifted_for_s += dt;
            if self.shifted_for_s >= BANDWIDTH_SHIFT_HOLD_S - 1e-9 {
                // Start over from the latest interval (the short average still holds
                // some of the old rate), unless it is far off the short average too: one
                // interval alone may be a mirror's stall, and the prediction made at once
                // on a shift would carry it. Then a running mean of what comes next,
                // until the long average takes over.
                next = if (x - fast).abs() <= 0.5 * fast { x } else { fast };
                self.bandwidth_time_s = dt;
                self.shifted_for_s = 0.0;
                self.bandwidth_shifts += 1;
            }
        } else {
            self.shifted_for_s = 0.0;
        }
        self.bandwidth = Some(next);
    }

    /// Feeds one sample; out-of-order or non-finite times are ignored, a counter reset starts over.
    pub fn observe(&mut self, s: &Sample) {
        if !s.t_s.is_finite() {
            return;
        }
        if let Some(last) = &self.last {
            if s.t_s < last.t_s {
                return;
            }
            if s.transferred < last.transferred || s.dirty_sync_count < last.dirty_sync_count {
                let held = self.held;
                *self = Predictor::new(self.plan, self.prior).expect("validated before");
                self.held = held;
            }
        }
        if s.status == Status::Completed && self.final_downtime_ms.is_none() {
            self.final_downtime_ms = Some(self.predict().map_or(0.0, |p| p.downtime_ms));
        }
        if self.memory_start_s.is_none() && s.status != Status::None {
            self.memory_start_s = Some(s.t_s);
        }
        let ps = s.page_size.max(1) as f64;
        if let Some(last) = &self.last {
            let dt = s.t_s - last.t_s;
            // A disk copy that just reached sync sent only its tail in this interval:
            // not the link's rate (and memory has not begun).
            let disk_moving = matches!((last.disk, s.disk), (Some(d), Some(e)) if !d.ready && !e.ready);
            if dt > 0.0
                && (last.status.is_transferring() || disk_moving)
                && s.status != Status::Completed
            {
                let disk = match (last.disk, s.disk) {
                    (Some(a), Some(b)) => b.offset.saturating_sub(a.offset),
                    _ => 0,
                };
                let x = (s.transferred - last.transferred + disk) as f64 / dt;
                self.update_bandwidth(x, dt);
            }
        }
        let pages = s.duplicate_pages + s.normal_pages;
        if s.dirty_sync_count <= 1 {
            if pages > 0 {
                let seen = s.duplicate_pages as f64 / pages as f64;
                // QEMU sends memory in address order, and guests keep their data low:
                // the zero share among pages sent so far says little about the rest.
                // With a measured zero fraction for the whole of RAM, the rest holds
                // whatever zero pages have not been sent yet.
                let total_pages = s.ram_total as f64 / ps;
                let rest = match self.prior.zero_fraction {
                    Some(z) if total_pages > pages as f64 => {
                        ((z * total_pages - s.duplicate_pages as f64) / (total_pages - pages as f64))
                            .clamp(0.0, 1.0)
                    }
                    _ => seen,
                };
                self.first_round_zero = Some(rest);
            }
        } else if self.round_one_tail.is_none() {
            // QEMU's cursor carries on where round one stopped: every page sent since the
            // previous sample came from round one's tail first.
            let tail = self.last.as_ref().map_or(0.0, |l| {
                let sent = pages.saturating_sub(l.duplicate_pages + l.normal_pages);
                (l.remaining as f64 - sent as f64 * ps).max(0.0)
            });
            self.round_one_tail = Some((tail, pages));
        }
        if s.dirty_sync_count >= 3 && self.round_three_start.is_none() {
            self.round_three_start = Some((s.duplicate_pages, s.normal_pages));
        }
        if let Some((window, new)) = self.syncs.observe(s) {
            self.record_point(window, new, s.ram_total);
        }
        if let Some(last) = self.last.as_ref().filter(|l| s.dirty_sync_count > l.dirty_sync_count) {
            if s.status == Status::Active && s.dirty_sync_count >= 3 && !self.held {
                // QEMU's threshold stands on its own rate estimate; the sync is where
                // `syncs` placed it, and what was sent since it is added back.
                let v = if s.mbps > 0.0 { s.mbps * 1e6 / 8.0 } else { self.bandwidth.unwrap_or(0.0) };
                let at = self.syncs.last_sync_s().unwrap_or(s.t_s);
                let left = s.remaining as f64 + v * (s.t_s - at);
                let syncs = s.dirty_sync_count - last.dirty_sync_count;
                self.edge.observe(syncs, at, left, v * self.plan.downtime_limit_s());
            }
        }
        if s.status == Status::Active {
            self.convergence
                .observe(s.dirty_sync_count, s.remaining, s.transferred, s.ram_total);
        }
        self.last = Some(s.clone());
    }

    fn record_point(&mut self, window: f64, bytes: f64, ram_total: u64) {
        if let Some(m) = self.dirty_model(ram_total) {
            let expected = m.dirtied(window);
            let scale = expected.max(bytes).max(1.0);
            self.dirty_err.update(((bytes - expected) / scale).powi(2));
        }
        if self.points.len() == MAX_POINTS {
            self.points.pop_front();
        }
        self.points.push_back((window, bytes));
    }

    /// Where the guest writes on its disks (measured before or during the copy).
    pub fn set_disk_regions(&mut self, regions: Option<std::sync::Arc<RegionWrites>>) {
        self.disk_regions = regions;
    }

    /// Replaces what was known of the guest before the start (its dirtying, its zero
    /// fraction) with a newer measurement, e.g. one made while the first round runs;
    /// invalid figures are ignored.
    ///
    /// A measurement (over windows up to `window_s`, ending at `now_s`) that differs more than
    /// 2x from the last one means the guest changed its ways, most likely during the previous
    /// measurement: the pages dirty at the next sync are then only those written since about
    /// `now_s - 1.5 window_s`, not since the last sync.
    pub fn refresh_prior(
        &mut self,
        dirty: Option<DirtyModel>,
        zero_fraction: Option<f64>,
        now_s: f64,
        window_s: f64,
    ) {
        if let Some(d) = dirty.filter(|d| DirtyModel::new(d.rate_bps, d.wss_bytes).is_ok()) {
            if let (Some(old), Some(ram)) = (self.prior.dirty, self.last.as_ref().map(|s| s.ram_total)) {
                let slack = PRIOR_SLACK * ram as f64;
                let (a, b) = (old.dirtied(window_s), d.dirtied(window_s));
                if a > 2.0 * b + slack || b > 2.0 * a + slack {
                    self.dirty_changed_s = Some(now_s - 1.5 * window_s);
                }
            }
            self.prior.dirty = Some(d);
        }
        if let Some(z) = zero_fraction.filter(|z| (0.0..=1.0).contains(z)) {
            self.prior.zero_fraction = Some(z);
        }
    }

    /// The fitted dirty model, or `None` while nothing is known about the guest's writes.
    ///
    /// Rounds of the migration (exact dirty sets) and the measured curve are fitted together,
    /// the rounds weighing more; a measured curve off by more than 2x at the latest round's
    /// window describes a guest that has changed its ways, and is left out.
    pub fn dirty_model(&self, ram_total: u64) -> Option<DirtyModel> {
        let mut key = vec![ram_total as f64, self.first_round_zero.unwrap_or(-1.0)];
        if let Some(d) = self.prior.dirty {
            key.extend([d.rate_bps, d.wss_bytes, d.hot_bytes]);
        }
        key.extend(self.points.iter().flat_map(|p| [p.0, p.1]));
        if let Some((k, m)) = self.dirty_memo.borrow().as_ref() {
            if *k == key {
                return *m;
            }
        }
        let m = self.fit_dirty(ram_total);
        *self.dirty_memo.borrow_mut() = Some((key, m));
        m
    }

    fn fit_dirty(&self, ram_total: u64) -> Option<DirtyModel> {
        let ram = ram_total.max(1) as f64;
        let prior = self.prior.dirty.map(|d| d.capped(ram));
        let Some(&latest) = self.points.back() else {
            return prior;
        };
        let slack = PRIOR_SLACK * ram;
        let prior = prior.filter(|d| {
            let e = d.dirtied(latest.0);
            e <= 2.0 * latest.1 + slack && latest.1 <= 2.0 * e + slack
        });
        let mut pts: Vec<(f64, f64, f64)> = self
            .points
            .iter()
            .map(|p| (p.0, p.1, ROUND_WEIGHT))
            .collect();
        if let Some(d) = prior {
            pts.extend(PRIOR_WINDOWS_S.iter().map(|w| (*w, d.dirtied(*w), 1.0)));
        }
        let longest = self.points.iter().map(|p| p.0).fold(0.0, f64::max);
        let windows_differ = pts.iter().any(|p| p.0 < longest / 1.5);
        let fitted = if windows_differ {
            DirtyModel::fit_points(&pts)
        } else {
            let long = self
                .points
                .iter()
                .copied()
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .expect("non-empty");
            let z = self
                .first_round_zero
                .or(self.prior.zero_fraction)
                .unwrap_or(0.0);
            DirtyModel::from_probe(long.1, long.0, Some((ram * (1.0 - z)).max(1.0)))
        };
        fitted.ok().map(|d| d.capped(ram)).or(prior)
    }

    /// The current state of the migration, or `None` before a usable sample.
    pub fn state(&self) -> Option<MigrationState> {
        let s = self.last.as_ref()?;
        let ram_total = if s.ram_total > 0 {
            s.ram_total
        } else {
            return None;
        };
        let phase = match s.status {
            Status::None | Status::Setup => Phase::NotStarted,
            Status::Active | Status::Switchover => Phase::PreCopy,
            Status::PostcopyActive => Phase::PostCopy,
            Status::Completed => Phase::Done,
            Status::Failed | Status::Cancelled | Status::Other => return None,
        };
        let first_round = s.dirty_sync_count <= 1;
        let zero_first = self
            .first_round_zero
            .or(self.prior.zero_fraction)
            .unwrap_or(0.0);
        // Pages the guest re-dirtied are data unless rounds >= 3 show zero pages among them.
        let dirty_zero = match self.round_three_start {
            Some((d0, n0)) => {
                let dd = s.duplicate_pages.saturating_sub(d0);
                let dn = s.normal_pages.saturating_sub(n0);
                if dd + dn >= MIN_ZERO_SAMPLE_PAGES {
                    dd as f64 / (dd + dn) as f64
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        let pending = s.remaining as f64;
        let ps = if s.page_size > 0 { s.page_size } else { 4096 };
        let pending_zero = match (first_round, self.round_one_tail) {
            (true, _) => zero_first,
            (false, Some((tail, pages0))) if s.dirty_sync_count == 2 && pending > 0.0 => {
                let sent = (s.duplicate_pages + s.normal_pages).saturating_sub(pages0) as f64;
                let tail = (tail - sent * ps as f64).clamp(0.0, pending.max(0.0));
                (tail * zero_first + (pending - tail) * dirty_zero) / pending
            }
            _ => dirty_zero,
        };
        Some(MigrationState {
            now_s: s.t_s,
            phase,
            plan: self.plan,
            ram_total,
            page_size: ps,
            pending_bytes: pending,
            pending_zero_fraction: pending_zero,
            dirty_zero_fraction: dirty_zero,
            since_sync_s: self.syncs.last_sync_s().map_or(0.0, |t0| {
                // A guest that changed its ways since the last sync: only writes since count.
                let from = self.dirty_changed_s.map_or(t0, |c| c.max(t0));
                (s.t_s - from).max(0.0)
            }),
            sent_bytes: s.transferred as f64,
            sync_count: s.dirty_sync_count,
            memory_start_s: self.memory_start_s,
            dirty: self.dirty_model(ram_total).unwrap_or(DirtyModel::IDLE),
            disk: s.disk.map(|d| DiskState {
                bulk_left_bytes: d.len.saturating_sub(d.offset) as f64,
                copied_bytes: d.offset as f64,
                regions: self.disk_regions.clone(),
                dirty_set_bytes: None,
                dirty_rate_bps: d.dirty_rate_bps.max(0.0),
                ready: d.ready,
            }),
            convergence: self.convergence.clone(),
            throttle: s.throttle.clamp(0.0, 1.0),
        })
    }

    /// The current prediction, or `None` before the bandwidth and RAM size are known.
    pub fn predict(&self) -> Option<Prediction> {
        let state = self.state()?;
        if state.phase == Phase::Done {
            return Some(Prediction::done(
                state.now_s,
                self.final_downtime_ms.unwrap_or(0.0),
            ));
        }
        let v = self
            .bandwidth
            .filter(|v| *v > 0.0)
            .or(self.prior.link_bps)
            .or(self.plan.bandwidth_cap_bps)?
            .max(MIN_SPEED_BPS);
        let cv = self.bandwidth_var.unwrap_or(0.0).sqrt();
        let dirty_known = self.dirty_model(state.ram_total).is_some();
        let dirty_spread = match self.dirty_err.value() {
            Some(e2) => e2.sqrt(),
            None if self.prior.dirty.is_some() => 0.2,
            None => 0.5,
        };
        let unknown = (!dirty_known).then_some(DirtyModel {
            rate_bps: 0.5 * v,
            wss_bytes: state.ram_total as f64 * (1.0 - state.pending_zero_fraction),
            hot_bytes: 0.0,
        });
        let mut p = band(
            &state,
            v,
            Spread {
                bandwidth: (0.03 + cv / 2.0).min(0.5),
                dirty: dirty_spread.clamp(0.1, 1.0),
            },
            unknown,
        );
        // Rounds keep missing the threshold where the model has the next one switch:
        // the rest is the rounds still to miss ([`super::edge`]), on top of the model's end.
        if let Some(e) = self.edge.edge().filter(|_| state.phase == Phase::PreCopy && p.completes && p.total_s.is_finite()) {
            let tail = (1.0 - super::band::BAND_COVERAGE) / 2.0;
            p.low_s += e.extra_s(tail);
            p.total_s += e.extra_s(0.5);
            p.high_s += e.extra_s(1.0 - tail);
            p.remaining_s = p.total_s - state.now_s;
            p.if_completes = Some((p.low_s, p.total_s, p.high_s));
            p.edge = Some(e);
        }
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::{DiskSample, Strategy};

    const MB: f64 = 1e6;
    const GIB: u64 = 1 << 30;

    #[test]
    fn new_validates_plan_and_prior() {
        let bad = Plan {
            strategy: Strategy::PostCopy { after_s: -1.0 },
            ..Plan::default()
        };
        assert!(Predictor::new(bad, Prior::default()).is_err());
        let prior = Prior {
            zero_fraction: Some(2.0),
            ..Prior::default()
        };
        assert!(Predictor::new(Plan::default(), prior).is_err());
    }

    #[test]
    fn bandwidth_follows_a_changed_link_but_not_a_dip() {
        let mut p = Predictor::new(Plan::default(), Prior::default()).unwrap();
        let mut sent = 0u64;
        let mut feed = |p: &mut Predictor, t: f64, rate: f64| {
            sent += (rate * 0.2) as u64;
            p.observe(&Sample {
                t_s: t,
                status: Status::Active,
                ram_total: GIB,
                transferred: sent,
                remaining: GIB / 2,
                page_size: 4096,
                dirty_sync_count: 1,
                ..Sample::default()
            });
        };
        let mut t = 0.0;
        for _ in 0..30 {
            t += 0.2;
            feed(&mut p, t, 100.0 * MB);
        }
        // A 0.2 s dip (a round ending) barely moves it.
        t += 0.2;
        feed(&mut p, t, 30.0 * MB);
        for _ in 0..2 {
            t += 0.2;
            feed(&mut p, t, 100.0 * MB);
            let bw = p.bandwidth_bps().unwrap();
            assert!(bw > 85.0 * MB, "{bw}");
        }
        // The link drops to 30 MB/s: followed within 1.6 s.
        for _ in 0..8 {
            t += 0.2;
            feed(&mut p, t, 30.0 * MB);
        }
        let bw = p.bandwidth_bps().unwrap();
        assert!((bw / (30.0 * MB) - 1.0).abs() < 0.05, "{bw}");
        assert!(p.bandwidth_shifts() >= 1);
    }

    #[test]
    fn predictor_needs_data_and_collapses_when_done() {
        let mut p = Predictor::new(Plan::default(), Prior::default()).unwrap();
        assert!(p.predict().is_none());
        let mut s = Sample {
            t_s: 0.0,
            status: Status::Active,
            ram_total: GIB,
            remaining: GIB,
            page_size: 4096,
            dirty_sync_count: 1,
            ..Sample::default()
        };
        p.observe(&s);
        assert!(p.predict().is_none(), "no bandwidth yet");
        s.t_s = 1.0;
        s.transferred = 100_000_000;
        s.normal_pages = 100_000_000 / 4104;
        s.remaining = GIB - s.normal_pages * 4096;
        p.observe(&s);
        let pr = p.predict().unwrap();
        assert!(pr.low_s <= pr.total_s && pr.total_s <= pr.high_s && pr.total_s > 1.0);
        s.t_s = 12.0;
        s.status = Status::Completed;
        s.transferred = GIB + GIB / 100;
        s.remaining = 0;
        p.observe(&s);
        let done = p.predict().unwrap();
        assert_eq!(
            (done.total_s, done.low_s, done.high_s, done.remaining_s),
            (12.0, 12.0, 12.0, 0.0)
        );
        // A counter reset (new migration) starts over.
        s.t_s = 13.0;
        s.status = Status::Setup;
        s.transferred = 0;
        s.dirty_sync_count = 0;
        p.observe(&s);
        assert!(p.predict().is_none());
    }

    #[test]
    fn learns_the_working_set_from_syncs() {
        use crate::sim::{simulate_precopy, SimParams};
        let p = SimParams::default();
        let run = simulate_precopy(&p).unwrap();
        let mut pr = Predictor::new(Plan::default(), Prior::default()).unwrap();
        for s in &run.samples {
            pr.observe(s);
        }
        let m = pr.dirty_model(p.ram_bytes).unwrap();
        assert!((m.rate_bps / p.write_rate_bps - 1.0).abs() < 0.15, "{m:?}");
        assert!(
            (m.wss_bytes / p.wss_bytes as f64 - 1.0).abs() < 0.25,
            "{m:?}"
        );
        let bw = pr.bandwidth_bps().unwrap();
        assert!((bw / p.link_bps - 1.0).abs() < 0.02, "{bw}");
    }

    #[test]
    fn rounds_that_keep_missing_the_threshold_push_the_end_out() {
        // A guest the model has converging at once (2 MB/s), and rounds that come back
        // to 9 MB after each sync against a 7.2 MB threshold (24 MB/s x 300 ms).
        let prior = Prior { dirty: Some(DirtyModel::new(2.0 * MB, 64.0 * MB).unwrap()), zero_fraction: Some(0.5), link_bps: Some(24.0 * MB) };
        let mut pr = Predictor::new(Plan::default(), prior).unwrap();
        let mut s = Sample {
            t_s: 20.0,
            status: Status::Active,
            ram_total: GIB,
            page_size: 4096,
            dirty_sync_count: 2,
            remaining: 9_000_000,
            mbps: 24.0 * MB * 8.0 / 1e6,
            ..Sample::default()
        };
        pr.observe(&s);
        let mut ends = vec![];
        for i in 1..=20u64 {
            s.t_s = 20.0 + 0.3 * i as f64;
            s.dirty_sync_count = 2 + i;
            s.transferred += (0.3 * 24.0 * MB) as u64;
            s.normal_pages += (0.3 * 24.0 * MB / 4096.0) as u64;
            s.remaining = 9_000_000 - (0.15 * 24.0 * MB) as u64;
            pr.observe(&s);
            let p = pr.predict().unwrap();
            ends.push((p.edge.map(|e| e.missed_rounds), p.remaining_s));
        }
        let p = pr.predict().unwrap();
        let e = p.edge.expect("at the edge after 20 misses");
        assert!(e.missed_rounds >= 19 && (e.round_s - 0.3).abs() < 0.01, "{e:?}");
        assert!((e.least_left_bytes - 9e6).abs() < 0.5e6, "the sent bytes added back: {e:?}");
        // Median: as many rounds again as have missed; the band from a ninth to nine times.
        assert!((p.remaining_s - 0.3 * (e.missed_rounds + 1) as f64).abs() < 1.0, "{p:?}");
        assert!(p.low_s < p.total_s && p.high_s > p.total_s + 8.0 * 0.3 * e.missed_rounds as f64, "{p:?}");
        // The first few misses say nothing yet; then the end moves out as they add up.
        assert_eq!(ends[1].0, None, "{ends:?}");
        assert!(ends.windows(2).skip(6).all(|w| w[1].1 >= w[0].1 - 0.01), "{ends:?}");
        // A sync that leaves far more (a new phase) starts the count over.
        s.t_s += 0.3;
        s.dirty_sync_count += 1;
        s.remaining = 60_000_000;
        pr.observe(&s);
        assert_eq!(pr.predict().unwrap().edge, None);
        // Rounds that miss because the switch-over is held (a finish target) do not count.
        let mut miss = |pr: &mut Predictor, n: u64| {
            for _ in 0..n {
                s.t_s += 0.3;
                s.dirty_sync_count += 1;
                s.transferred += (0.3 * 24.0 * MB) as u64;
                s.normal_pages += (0.3 * 24.0 * MB / 4096.0) as u64;
                s.remaining = 5_000_000;
                pr.observe(&s);
            }
        };
        pr.set_held(true);
        miss(&mut pr, 20);
        assert_eq!(pr.predict().unwrap().edge, None);
        pr.set_held(false);
        miss(&mut pr, 3);
        assert_eq!(pr.predict().unwrap().edge, None, "counted from the release");
        miss(&mut pr, 5);
        assert!(pr.predict().unwrap().edge.is_some());
        // A new downtime limit: a new threshold, the count starts over.
        pr.set_downtime_limit_ms(500);
        assert_eq!(pr.predict().unwrap().edge, None);
    }

    #[test]
    fn disk_phase_then_memory() {
        let mut pr = Predictor::new(Plan::default(), Prior::default()).unwrap();
        let disk = |t: f64| DiskSample {
            len: 10_000_000_000,
            offset: (t * 100e6) as u64,
            ready: false,
            dirty_rate_bps: 0.0,
        };
        for k in 0..=10 {
            let t = k as f64;
            pr.observe(&Sample {
                t_s: t,
                status: Status::None,
                ram_total: GIB,
                page_size: 4096,
                disk: Some(disk(t)),
                ..Sample::default()
            });
        }
        let p = pr.predict().unwrap();
        // 9 GB of disk left at 100 MB/s, then 1 GiB of memory (no zero pages known).
        let mem = GIB as f64 / 4096.0 * 4104.0 / 100e6;
        assert!((p.total_s - (10.0 + 90.0 + mem)).abs() < 0.5, "{p:?}");
        assert!(p.low_s <= p.total_s && p.total_s <= p.high_s);
    }
}
