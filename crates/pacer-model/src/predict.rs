//! Predicting when a live migration will finish and how long the guest will be paused.
//!
//! # The model
//!
//! A [`MigrationState`] is a snapshot of one migration: what is left of the disk bulk copy,
//! memory still dirty (QEMU's `remaining`), how much of it is zero pages, how long ago the
//! dirty log was last synced, and a [`DirtyModel`] of the guest's writes. Its
//! [`MigrationState::finish`] plays the rest of the migration forward at a given speed `v`:
//!
//! - **Wire cost.** A normal page costs `page + 8` bytes on the wire, a zero page 9 bytes (QEMU
//!   sends a header and one fill byte). `remaining` counts every page, so the fraction of zero
//!   pages among those not yet sent decides how fast the first round really goes: this is why
//!   the naive `remaining / rate` is far off early on.
//! - **Disk first** (as in the original Pacer): the bulk copy `S` takes `S / v`; what the guest
//!   dirties meanwhile (`DS`, by default `disk rate x bulk time`) takes `DS / (v - d_disk)`.
//!   Memory then gets `v - d_disk` while the mirror keeps following writes.
//! - **Pre-copy rounds, as QEMU runs them.** QEMU keeps sending dirty pages and syncs the dirty
//!   log once what is left drops below `threshold = bandwidth x downtime-limit`; after the sync,
//!   if the dirty set is still at or above the threshold it goes on, else it stops the guest and
//!   sends the rest (the downtime). QEMU checks every ~50 ms, so a round leaves on average
//!   `threshold - v x 25 ms` unsent. Round `i` sends `D_i - leftover` in `T_i`, the guest dirties
//!   `dirtied(window since the last sync)` distinct bytes, bounded by its working set, and the
//!   next dirty set is the union of the leftover and the new writes (round one's leftover is
//!   any part of RAM, later ones lie in the working set).
//! - **Non-convergence.** Pre-copy does not converge when the dirty set stops shrinking or the
//!   migration would send more than 3x guest RAM (Xen's rule, as in
//!   [`ConvergenceConfig`]). Plain pre-copy then reports
//!   `converges: false` and the finish if the guest were paused at that point; hybrid switches to
//!   post-copy when [`ConvergenceDetector`] would (as `pacerd` does); post-copy switches after
//!   its delay anyway.
//! - **Post-copy** sends each page still dirty at the switch once: `wire(D) / v`, with only
//!   the switch-over as downtime. **Stop-and-copy** sends all of memory with the guest paused
//!   from the start: downtime equals the total time.
//!
//! The live [`Predictor`] feeds on `query-migrate` samples and estimates the inputs: the
//! bandwidth (a 3 s average of transferred bytes per interval, starting over when a 0.25 s
//! average shows the link's rate has clearly changed), the zero fraction (duplicate vs normal pages in the
//! first round, then among re-sent pages), and the dirty model: each sync of the dirty log
//! reveals how many pages became dirty since the previous one (`remaining` after minus before,
//! plus pages sent in between), a point `(window, bytes)` on the guest's dirtying curve. These
//! points and the measured curve (the prior, refreshed while the migration runs) are fitted
//! together ([`DirtyModel::fit_points`]).
//!
//! The uncertainty band replays the model with the bandwidth and the dirty rate pushed each way
//! by their observed variability (smoothed squared relative error of bandwidth samples, and of
//! predicted vs observed dirty sets), plus 3% of the remaining time. It contains the point
//! estimate and narrows to nothing as the migration ends.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::convergence::{ConvergenceConfig, ConvergenceDetector, Verdict};
use crate::dirty::{union, DirtyError, DirtyModel};
use crate::disk_regions::RegionWrites;
use crate::ewma::Ewma;

/// Bytes of header QEMU sends with every page.
pub const PAGE_HEADER_BYTES: f64 = 8.0;
/// Bytes a zero page costs on the wire (header and one fill byte).
pub const ZERO_PAGE_WIRE_BYTES: f64 = 9.0;
/// How often QEMU checks whether to sync and switch over (its iteration time limit), seconds.
pub const CHECK_INTERVAL_S: f64 = 0.05;
/// Time to stop the guest and move device state at switch-over, seconds.
pub const SWITCHOVER_S: f64 = 0.01;

/// Slowest speed the model considers, bytes/s (keeps every figure finite).
const MIN_SPEED_BPS: f64 = 1.0;
/// Fastest speed the model considers, bytes/s (1 Pbit/s).
const MAX_SPEED_BPS: f64 = 1.25e14;
/// Upper bound on simulated rounds (each at least 25 ms long).
const MAX_ROUNDS: usize = 20_000;
/// Sync windows shorter than this are too blurred by the sample interval to fit on.
const MIN_POINT_WINDOW_S: f64 = 0.8;
/// Dirtying observations kept for fitting.
const MAX_POINTS: usize = 4;
/// Share of the remaining time always added to each side of the band.
const BASE_BAND: f64 = 0.03;
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

/// Why a plan, prior or estimate request is unusable.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PredictError {
    /// The downtime limit is zero.
    #[error("invalid downtime limit {0} ms: must be at least 1 ms, e.g. 300")]
    InvalidDowntimeLimit(u64),
    /// The bandwidth cap is not a positive finite rate.
    #[error("invalid bandwidth cap {0} B/s: must be a positive rate, e.g. 125e6 for 1 Gbit/s")]
    InvalidBandwidthCap(f64),
    /// The post-copy delay is negative or not finite.
    #[error("invalid post-copy delay {0} s: must be a finite number of seconds >= 0")]
    InvalidPostcopyDelay(f64),
    /// Guest RAM is empty.
    #[error("invalid guest RAM size 0: must be positive, e.g. 1073741824 for 1 GiB")]
    InvalidRamSize,
    /// The zero-page fraction is outside [0, 1].
    #[error("invalid zero-page fraction {0}: must be in [0, 1], e.g. 0.5")]
    InvalidZeroFraction(f64),
    /// The link rate is not a positive finite rate.
    #[error("invalid link rate {0} B/s: must be a positive rate, e.g. 125e6 for 1 Gbit/s")]
    InvalidLinkRate(f64),
    /// The dirty-rate figures are unusable.
    #[error(transparent)]
    Dirty(#[from] DirtyError),
}

/// Where QEMU's migration stands (`query-migrate` status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// No memory migration yet (e.g. disks still mirroring).
    #[default]
    None,
    /// Memory migration is being set up.
    Setup,
    /// Pre-copy is running.
    Active,
    /// Post-copy is running: the guest runs at the destination.
    PostcopyActive,
    /// The guest is stopped for switch-over (`device`, `pre-switchover`).
    Switchover,
    /// Done: the guest runs at the destination.
    Completed,
    /// QEMU gave up.
    Failed,
    /// Cancelled.
    Cancelled,
    /// Any other state (paused post-copy, COLO, ...): no prediction.
    Other,
}

impl Status {
    /// Maps QEMU's status string (`"postcopy-active"`, ...) to a status.
    pub fn from_qemu(status: &str) -> Status {
        match status {
            "none" => Status::None,
            "setup" | "wait-unplug" => Status::Setup,
            "active" => Status::Active,
            "postcopy-active" => Status::PostcopyActive,
            "device" | "pre-switchover" => Status::Switchover,
            "completed" => Status::Completed,
            "failed" => Status::Failed,
            "cancelled" | "cancelling" => Status::Cancelled,
            _ => Status::Other,
        }
    }

    /// Whether memory is moving in this state.
    pub fn is_transferring(self) -> bool {
        matches!(
            self,
            Status::Active | Status::PostcopyActive | Status::Switchover
        )
    }
}

/// Progress of the disk mirrors (`query-block-jobs`, summed over disks).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct DiskSample {
    /// Bytes the mirrors have to copy so far (grows as the guest writes).
    pub len: u64,
    /// Bytes copied so far.
    pub offset: u64,
    /// Whether every mirror has finished its bulk copy.
    pub ready: bool,
    /// Rate at which the guest dirties disk, bytes/s.
    pub dirty_rate_bps: f64,
}

/// One `query-migrate` reading (field names follow QEMU's `ram` section).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the migration (job) started.
    pub t_s: f64,
    /// Migration status.
    pub status: Status,
    /// Guest RAM in bytes.
    pub ram_total: u64,
    /// Bytes sent on the wire so far.
    pub transferred: u64,
    /// Bytes of pages still dirty (zero pages included).
    pub remaining: u64,
    /// Zero pages sent so far.
    pub duplicate_pages: u64,
    /// Normal (full) pages sent so far.
    pub normal_pages: u64,
    /// Bytes of normal pages sent so far.
    pub normal_bytes: u64,
    /// Pages dirtied per second over QEMU's last dirty-rate period (>= 1 s).
    pub dirty_pages_rate: u64,
    /// Target page size in bytes.
    pub page_size: u64,
    /// Number of dirty-log syncs so far (1 after setup).
    pub dirty_sync_count: u64,
    /// Throughput over QEMU's last 100 ms, Mbit/s.
    pub mbps: f64,
    /// Bytes sent while the guest was running at the source.
    pub precopy_bytes: u64,
    /// Disk mirror progress, if disks are copied too.
    pub disk: Option<DiskSample>,
}

/// How the migration will be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Iterative pre-copy until the dirty set fits the downtime limit.
    #[default]
    PreCopy,
    /// Pre-copy, then post-copy `after_s` seconds after memory migration started.
    PostCopy {
        /// Seconds of pre-copy before the switch.
        after_s: f64,
    },
    /// Pre-copy, switching to post-copy when pre-copy stops converging.
    Hybrid,
    /// Pause the guest, copy everything, resume at the destination.
    StopAndCopy,
}

/// The migration's fixed settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Strategy.
    pub strategy: Strategy,
    /// QEMU's downtime-limit in ms.
    pub downtime_limit_ms: u64,
    /// QEMU's max-bandwidth in bytes/s, if capped.
    pub bandwidth_cap_bps: Option<f64>,
}

impl Default for Plan {
    /// Pre-copy with QEMU's default 300 ms downtime limit, uncapped.
    fn default() -> Self {
        Plan {
            strategy: Strategy::PreCopy,
            downtime_limit_ms: 300,
            bandwidth_cap_bps: None,
        }
    }
}

impl Plan {
    /// Checks that every field holds a usable value.
    pub fn validate(&self) -> Result<(), PredictError> {
        if self.downtime_limit_ms == 0 {
            return Err(PredictError::InvalidDowntimeLimit(0));
        }
        if let Some(cap) = self.bandwidth_cap_bps {
            if !(cap.is_finite() && cap > 0.0) {
                return Err(PredictError::InvalidBandwidthCap(cap));
            }
        }
        if let Strategy::PostCopy { after_s } = self.strategy {
            if !(after_s.is_finite() && after_s >= 0.0) {
                return Err(PredictError::InvalidPostcopyDelay(after_s));
            }
        }
        Ok(())
    }

    fn downtime_limit_s(&self) -> f64 {
        self.downtime_limit_ms as f64 / 1000.0
    }
}

/// What is known about the guest before its migration starts.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Prior {
    /// The guest's dirtying, e.g. from `calc-dirty-rate` probes ([`DirtyModel::fit`]).
    pub dirty: Option<DirtyModel>,
    /// Expected fraction of zero pages in guest RAM.
    pub zero_fraction: Option<f64>,
    /// Expected link rate in bytes/s, used until the bandwidth is measured.
    pub link_bps: Option<f64>,
}

impl Prior {
    /// Checks that every field holds a usable value.
    pub fn validate(&self) -> Result<(), PredictError> {
        if let Some(z) = self.zero_fraction {
            if !(0.0..=1.0).contains(&z) {
                return Err(PredictError::InvalidZeroFraction(z));
            }
        }
        if let Some(l) = self.link_bps {
            if !(l.is_finite() && l > 0.0) {
                return Err(PredictError::InvalidLinkRate(l));
            }
        }
        if let Some(d) = self.dirty {
            DirtyModel::new(d.rate_bps, d.wss_bytes)?;
        }
        Ok(())
    }
}

/// Which part of the migration is under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Memory migration has not started (set-up, or disks still copying).
    NotStarted,
    /// Pre-copy rounds.
    PreCopy,
    /// Post-copy: each remaining page crosses once.
    PostCopy,
    /// Finished.
    Done,
}

/// What is left of the disk copy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DiskState {
    /// Bytes of the bulk copy still to send (mirror `len - offset`).
    pub bulk_left_bytes: f64,
    /// Bytes the copy has sent so far (mirror `offset`): in its first pass, how far it got.
    #[serde(default)]
    pub copied_bytes: f64,
    /// Predicted bytes dirtied during the bulk copy that must be re-sent (default: from
    /// `regions` if known, else rate x bulk time).
    pub dirty_set_bytes: Option<f64>,
    /// Where on the disks the guest writes, if measured.
    #[serde(skip)]
    pub regions: Option<std::sync::Arc<RegionWrites>>,
    /// Rate at which the guest dirties disk, bytes/s.
    pub dirty_rate_bps: f64,
    /// Whether the bulk copy is done (the mirror only follows writes).
    pub ready: bool,
}

/// Outcome of playing a migration forward at one speed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Finish {
    /// When the migration ends, seconds since it started.
    pub total_s: f64,
    /// How long the guest is paused, seconds.
    pub downtime_s: f64,
    /// False when pre-copy would not converge on its own (paused at the cap, or hybrid switched).
    pub converges: bool,
    /// False when the migration would not end by itself under its plan (pre-copy stuck at the
    /// cap: `total_s` is then the end if the guest were paused; or a disk that never gets ready).
    pub completes: bool,
}

/// A snapshot of one migration, enough to play the rest forward ([`MigrationState::finish`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationState {
    /// Current time, seconds since the migration started.
    pub now_s: f64,
    /// Which part is under way.
    pub phase: Phase,
    /// Strategy, downtime limit and cap.
    pub plan: Plan,
    /// Guest RAM in bytes.
    pub ram_total: u64,
    /// Page size in bytes.
    pub page_size: u64,
    /// Bytes of memory pages still dirty (QEMU's `remaining`).
    pub pending_bytes: f64,
    /// Fraction of the pending pages that are zero pages.
    pub pending_zero_fraction: f64,
    /// Fraction of re-dirtied pages that are zero pages.
    pub dirty_zero_fraction: f64,
    /// Seconds since the dirty log was last synced.
    pub since_sync_s: f64,
    /// Wire bytes sent so far.
    pub sent_bytes: f64,
    /// Dirty-log syncs so far.
    pub sync_count: u64,
    /// When memory migration started, if it has.
    pub memory_start_s: Option<f64>,
    /// How the guest dirties memory.
    pub dirty: DirtyModel,
    /// Disk copy, if any.
    pub disk: Option<DiskState>,
    /// The detector hybrid migrations use to decide on switching (fed with past rounds).
    pub convergence: ConvergenceDetector,
}

impl MigrationState {
    /// A migration about to start at t = 0: all of RAM to send, `zero_fraction` of it zero pages.
    pub fn before(ram_total: u64, zero_fraction: f64, dirty: DirtyModel, plan: Plan) -> Self {
        MigrationState {
            now_s: 0.0,
            phase: Phase::NotStarted,
            plan,
            ram_total,
            page_size: 4096,
            pending_bytes: ram_total as f64,
            pending_zero_fraction: zero_fraction.clamp(0.0, 1.0),
            dirty_zero_fraction: 0.0,
            since_sync_s: 0.0,
            sent_bytes: 0.0,
            sync_count: 0,
            memory_start_s: None,
            dirty,
            disk: None,
            convergence: ConvergenceDetector::default(),
        }
    }

    /// The same state with another dirty model.
    pub fn with_dirty(&self, dirty: DirtyModel) -> Self {
        MigrationState {
            dirty,
            ..self.clone()
        }
    }

    /// Wire bytes needed to send `bytes` of pages of which `zero` is the zero fraction.
    pub fn wire_bytes(&self, bytes: f64, zero: f64) -> f64 {
        let ps = self.page_size.max(1) as f64;
        bytes.max(0.0) / ps
            * (zero * ZERO_PAGE_WIRE_BYTES + (1.0 - zero) * (ps + PAGE_HEADER_BYTES))
    }

    /// When the migration ends (and its downtime) if it runs at `speed_bps` from now on.
    pub fn finish(&self, speed_bps: f64) -> Finish {
        let v = if speed_bps >= MIN_SPEED_BPS {
            speed_bps.min(MAX_SPEED_BPS)
        } else {
            MIN_SPEED_BPS
        };
        let mut t = self.now_s;
        let mut converges = true;
        let mut v_mem = v;
        if let Some(d) = &self.disk {
            let drain = v - d.dirty_rate_bps.max(0.0);
            if drain < 0.05 * v {
                converges = false;
            }
            let drain = drain.max(0.05 * v);
            if !d.ready && self.phase == Phase::NotStarted {
                let t1 = d.bulk_left_bytes.max(0.0) / v;
                let ds = d
                    .dirty_set_bytes
                    .or_else(|| {
                        d.regions.as_ref().map(|r| r.redirtied(d.copied_bytes, v))
                    })
                    .unwrap_or(d.dirty_rate_bps * t1)
                    .max(0.0);
                t += t1 + ds / drain;
            }
            v_mem = drain;
        }
        let mut out = match self.phase {
            Phase::Done => Finish {
                total_s: self.now_s,
                downtime_s: 0.0,
                converges: true,
                completes: true,
            },
            Phase::PostCopy => Finish {
                total_s: t + self.wire_bytes(self.pending_bytes, self.pending_zero_fraction)
                    / v_mem,
                downtime_s: SWITCHOVER_S,
                converges: true,
                completes: true,
            },
            Phase::NotStarted | Phase::PreCopy => {
                let mem_start = self.memory_start_s.unwrap_or(t).max(0.0);
                let (pending, since) = if self.phase == Phase::NotStarted {
                    (self.ram_total as f64, 0.0)
                } else {
                    (self.pending_bytes, self.since_sync_s)
                };
                let z = self.pending_zero_fraction;
                if self.plan.strategy == Strategy::StopAndCopy {
                    let end = t + self.wire_bytes(pending, z) / v_mem + SWITCHOVER_S;
                    Finish {
                        total_s: end,
                        downtime_s: end,
                        converges: true,
                        completes: true,
                    }
                } else {
                    self.precopy(t, v_mem, pending, since, mem_start)
                }
            }
        };
        out.converges &= converges;
        out.completes &= converges;
        out
    }

    /// Plays pre-copy rounds from time `t` at speed `v`.
    fn precopy(
        &self,
        mut t: f64,
        v: f64,
        mut pending: f64,
        mut since: f64,
        mem_start: f64,
    ) -> Finish {
        let ram = self.ram_total.max(1) as f64;
        let dirty = self.dirty.capped(ram);
        let thr = v * self.plan.downtime_limit_s();
        let leftover = (thr - v * CHECK_INTERVAL_S / 2.0).max(0.0);
        let cap_bytes = ConvergenceConfig::default().max_transfer_factor * ram;
        let dz = self.dirty_zero_fraction;
        let mut z = self.pending_zero_fraction;
        let mut sent = self.sent_bytes;
        let mut sync = self.sync_count;
        let mut detector =
            (self.plan.strategy == Strategy::Hybrid).then(|| self.convergence.clone());
        let switch_at = match self.plan.strategy {
            Strategy::PostCopy { after_s } => Some(mem_start + after_s),
            _ => None,
        };
        let mut prev = f64::INFINITY;
        for round in 0..MAX_ROUNDS {
            let to_send = (pending - leftover).max(0.0);
            let wire = self.wire_bytes(to_send, z);
            let dt = wire / v;
            if let Some(sw) = switch_at {
                if t + dt >= sw {
                    return self.postcopy_from(sw.max(t), t, v, pending, z, since, true);
                }
            }
            if sent + wire > cap_bytes {
                // Past 3x RAM: pre-copy is not converging.
                let tc = t + (cap_bytes - sent).max(0.0) / v;
                return self.give_up(tc, t, v, pending, z, since, switch_at);
            }
            t += dt;
            sent += wire;
            let new = dirty.dirtied(since + dt);
            let left = pending.min(leftover);
            // Round one's unsent tail is any part of RAM; later leftovers are re-dirtied pages.
            let universe = if sync <= 1 { ram } else { dirty.set_bytes() };
            let next = union(left, new, universe);
            z = if next > 0.0 {
                (left * z + (next - left) * dz) / next
            } else {
                dz
            };
            pending = next;
            since = 0.0;
            sync += 1;
            if pending <= thr {
                let downtime = self.wire_bytes(pending, z) / v + SWITCHOVER_S;
                return Finish {
                    total_s: t + downtime,
                    downtime_s: downtime,
                    converges: true,
                    completes: true,
                };
            }
            if let Some(det) = detector.as_mut() {
                det.observe(sync, pending as u64, sent as u64, self.ram_total);
                if matches!(det.is_converging(), Verdict::NotConverging { .. }) {
                    return self.postcopy_from(t, t, v, pending, z, 0.0, false);
                }
            }
            if round >= 3 && pending >= prev * 0.999 {
                return self.give_up(t, t, v, pending, z, 0.0, switch_at);
            }
            prev = pending;
        }
        self.give_up(t, t, v, pending, z, 0.0, switch_at)
    }

    /// Pre-copy did not converge by `tc`: pause the guest (pre-copy), switch (hybrid), or
    /// carry on until the planned switch (post-copy), with the dirty set as it stands.
    #[allow(clippy::too_many_arguments)]
    fn give_up(
        &self,
        tc: f64,
        t: f64,
        v: f64,
        pending: f64,
        z: f64,
        since: f64,
        switch_at: Option<f64>,
    ) -> Finish {
        match (self.plan.strategy, switch_at) {
            (Strategy::PostCopy { .. }, Some(sw)) if sw > tc => {
                self.postcopy_from(sw, sw, v, pending, z, 0.0, true)
            }
            (Strategy::PostCopy { .. }, _) => self.postcopy_from(tc, t, v, pending, z, since, true),
            (Strategy::Hybrid, _) => self.postcopy_from(tc, t, v, pending, z, since, false),
            _ => {
                let (at_pause, z) = self.dirty_at(tc, t, v, pending, z, since);
                let downtime = self.wire_bytes(at_pause, z) / v + SWITCHOVER_S;
                Finish {
                    total_s: tc + downtime,
                    downtime_s: downtime,
                    converges: false,
                    completes: false,
                }
            }
        }
    }

    /// The dirty set (and its zero fraction) at `ts` within a round that began at `t`.
    fn dirty_at(&self, ts: f64, t: f64, v: f64, pending: f64, z: f64, since: f64) -> (f64, f64) {
        let elapsed = (ts - t).max(0.0);
        let per_byte = self.wire_bytes(1.0, z).max(f64::MIN_POSITIVE);
        let left = (pending - elapsed * v / per_byte).max(0.0);
        let dirty = self.dirty.capped(self.ram_total.max(1) as f64);
        let d = union(left, dirty.dirtied(since + elapsed), dirty.set_bytes());
        let z = if d > 0.0 {
            (left * z + (d - left) * self.dirty_zero_fraction) / d
        } else {
            z
        };
        (d, z)
    }

    /// Switches to post-copy at `ts` (within a round that began at `t`) and sends the rest once.
    #[allow(clippy::too_many_arguments)]
    fn postcopy_from(
        &self,
        ts: f64,
        t: f64,
        v: f64,
        pending: f64,
        z: f64,
        since: f64,
        converges: bool,
    ) -> Finish {
        let (d, z) = self.dirty_at(ts, t, v, pending, z, since);
        Finish {
            total_s: ts + SWITCHOVER_S + self.wire_bytes(d, z) / v,
            downtime_s: SWITCHOVER_S,
            converges,
            completes: true,
        }
    }
}

/// A predicted finish with its uncertainty band.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Predicted total migration time, seconds from its start.
    pub total_s: f64,
    /// Early end of the band, seconds from the start.
    pub low_s: f64,
    /// Late end of the band, seconds from the start.
    pub high_s: f64,
    /// Predicted downtime, ms.
    pub downtime_ms: f64,
    /// Low end of the downtime band, ms.
    pub downtime_low_ms: f64,
    /// High end of the downtime band, ms.
    pub downtime_high_ms: f64,
    /// Predicted seconds still to go.
    pub remaining_s: f64,
    /// False when pre-copy would not converge on its own (see [`Finish::converges`]).
    pub converges: bool,
}

impl Prediction {
    /// A finished migration: everything collapses onto `t_s`.
    fn done(t_s: f64, downtime_ms: f64) -> Prediction {
        Prediction {
            total_s: t_s,
            low_s: t_s,
            high_s: t_s,
            downtime_ms,
            downtime_low_ms: downtime_ms,
            downtime_high_ms: downtime_ms,
            remaining_s: 0.0,
            converges: true,
        }
    }
}

/// How far the inputs may be off, as relative errors.
#[derive(Debug, Clone, Copy)]
struct Spread {
    bandwidth: f64,
    dirty: f64,
}

/// Replays `state` at `v` with the inputs pushed both ways and assembles the band.
fn band(
    state: &MigrationState,
    v: f64,
    spread: Spread,
    unknown_dirty: Option<DirtyModel>,
) -> Prediction {
    let point = state.finish(v);
    let (fast_dirty, slow_dirty) = match unknown_dirty {
        Some(guess) => (DirtyModel::IDLE, guess),
        None => (
            state.dirty.scaled(1.0 - spread.dirty),
            state.dirty.scaled(1.0 + spread.dirty),
        ),
    };
    let fast = state
        .with_dirty(fast_dirty)
        .finish(v * (1.0 + spread.bandwidth));
    let slow = state
        .with_dirty(slow_dirty)
        .finish(v * (1.0 - spread.bandwidth));
    let now = state.now_s;
    let total = point.total_s.max(now);
    let rem = total - now;
    let low = (fast.total_s.min(total) - BASE_BAND * rem).max(now);
    let high = slow.total_s.max(total) + BASE_BAND * rem;
    let ms = |f: &Finish| f.downtime_s * 1000.0;
    let dts = [ms(&point), ms(&fast), ms(&slow)];
    let dlo = dts.iter().cloned().fold(f64::INFINITY, f64::min);
    let dhi = dts.iter().cloned().fold(0.0, f64::max);
    let finite = |x: f64, fallback: f64| if x.is_finite() { x } else { fallback };
    let total = finite(total, now);
    Prediction {
        total_s: total,
        low_s: finite(low, total).min(total),
        high_s: finite(high, total).max(total),
        downtime_ms: finite(ms(&point), 0.0),
        downtime_low_ms: finite(dlo * 0.9, 0.0).min(ms(&point)),
        downtime_high_ms: finite(dhi * 1.1, 0.0).max(ms(&point)),
        remaining_s: total - now,
        converges: point.converges,
    }
}

/// The estimate operators get today: `elapsed + remaining / current rate` (`None` at rate 0).
pub fn naive_total(sample: &Sample) -> Option<f64> {
    let rate = sample.mbps * 1e6 / 8.0;
    (rate > 0.0 && rate.is_finite() && sample.t_s.is_finite())
        .then(|| sample.t_s + sample.remaining as f64 / rate)
}

/// The naive estimate over a whole migration, disks included: while disks are copied,
/// `elapsed + (disk left + all of memory) / the copy's rate over the last second`; then
/// [`naive_total`].
#[derive(Debug, Clone, Default)]
pub struct NaiveEstimator {
    disk: VecDeque<(f64, u64)>,
}

impl NaiveEstimator {
    /// Feeds one sample (every one, for the disk rate) and returns the estimate now.
    pub fn observe(&mut self, s: &Sample) -> Option<f64> {
        if s.status != Status::None {
            return naive_total(s);
        }
        let d = s.disk?;
        self.disk.push_back((s.t_s, d.offset));
        while self.disk.len() > 2 && self.disk.front().is_some_and(|(t, _)| *t < s.t_s - 1.0) {
            self.disk.pop_front();
        }
        let (t0, o0) = *self.disk.front()?;
        let dt = s.t_s - t0;
        let rate = d.offset.saturating_sub(o0) as f64 / dt;
        (dt > 0.0 && rate > 0.0 && rate.is_finite())
            .then(|| s.t_s + (d.len.saturating_sub(d.offset) + s.ram_total) as f64 / rate)
    }
}

/// Predicts a migration that has not started (`pacer predict`).
///
/// `dirty_rate_bps` is the short-window rate of distinct dirtied bytes (as `calc-dirty-rate`
/// reports), `wss_bytes` the writable working set if known (else unbounded up to RAM).
pub fn predict_before(
    ram_total: u64,
    zero_fraction_guess: f64,
    dirty_rate_bps: f64,
    wss_bytes: Option<u64>,
    link_bps: f64,
    plan: &Plan,
) -> Result<Prediction, PredictError> {
    let wss = wss_bytes.map_or(f64::INFINITY, |w| w as f64);
    let dirty = DirtyModel::new(dirty_rate_bps, wss)?;
    predict_before_model(ram_total, zero_fraction_guess, dirty, None, link_bps, plan)
}

/// [`predict_before`] with the guest's whole dirty model (hot set included) and the disks
/// to copy first, if any.
pub fn predict_before_model(
    ram_total: u64,
    zero_fraction_guess: f64,
    dirty: DirtyModel,
    disk: Option<DiskState>,
    link_bps: f64,
    plan: &Plan,
) -> Result<Prediction, PredictError> {
    plan.validate()?;
    if ram_total == 0 {
        return Err(PredictError::InvalidRamSize);
    }
    if !(0.0..=1.0).contains(&zero_fraction_guess) {
        return Err(PredictError::InvalidZeroFraction(zero_fraction_guess));
    }
    if !(link_bps.is_finite() && link_bps > 0.0) {
        return Err(PredictError::InvalidLinkRate(link_bps));
    }
    let dirty = DirtyModel::new(dirty.rate_bps, dirty.wss_bytes)?
        .with_hot(dirty.hot_bytes)
        .capped(ram_total as f64);
    let mut state = MigrationState::before(ram_total, zero_fraction_guess, dirty, *plan);
    state.disk = disk;
    let v = plan.bandwidth_cap_bps.map_or(link_bps, |c| c.min(link_bps));
    Ok(band(
        &state,
        v,
        Spread {
            bandwidth: 0.1,
            dirty: 0.5,
        },
        None,
    ))
}

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
    last_sync_count: u64,
    last_sync_s: Option<f64>,
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
            last_sync_count: 0,
            last_sync_s: None,
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
    /// rate has shifted and the long average starts over from the latest interval.
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
                // Start over from the latest interval (the first one after the change is
                // part old rate, the short average remembers the old one): a running mean
                // of what comes next, until the long average takes over.
                next = x;
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
                *self = Predictor::new(self.plan, self.prior).expect("validated before");
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
            let disk_moving = matches!((last.disk, s.disk), (Some(d), Some(_)) if !d.ready);
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
        if s.dirty_sync_count > self.last_sync_count {
            let est = self.last.as_ref().map_or(s.t_s, |l| 0.5 * (l.t_s + s.t_s));
            if let (Some(l), Some(t0)) = (&self.last, self.last_sync_s) {
                // One sync since the last sample, with the guest running (not the final one).
                let single = s.dirty_sync_count == self.last_sync_count + 1;
                if self.last_sync_count >= 1 && single && s.status == Status::Active {
                    let window = est - t0;
                    let sent = pages.saturating_sub(l.duplicate_pages + l.normal_pages) as f64;
                    let mut new = s.remaining as f64 - l.remaining as f64 + sent * ps;
                    if new < 0.0 {
                        new = s.dirty_pages_rate as f64 * ps * window;
                    }
                    if window >= MIN_POINT_WINDOW_S {
                        self.record_point(window, new, s.ram_total);
                    }
                }
            }
            self.last_sync_s = Some(est);
            self.last_sync_count = s.dirty_sync_count;
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
                let tail = (tail - sent * ps as f64).clamp(0.0, pending);
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
            since_sync_s: self.last_sync_s.map_or(0.0, |t0| {
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
        Some(band(
            &state,
            v,
            Spread {
                bandwidth: (0.03 + cv / 2.0).min(0.5),
                dirty: dirty_spread.clamp(0.1, 1.0),
            },
            unknown,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: f64 = 1e6;
    const GIB: u64 = 1 << 30;

    fn idle_state(ram: u64, zero: f64) -> MigrationState {
        MigrationState::before(ram, zero, DirtyModel::IDLE, Plan::default())
    }

    #[test]
    fn idle_guest_is_ram_over_rate() {
        let s = idle_state(GIB, 0.0);
        let f = s.finish(100.0 * MB);
        let wire = GIB as f64 / 4096.0 * 4104.0;
        // Everything is sent in the first round; the last < threshold goes during the downtime.
        assert!(
            (f.total_s - (wire / (100.0 * MB) + SWITCHOVER_S)).abs() < 1e-6,
            "{f:?}"
        );
        assert!(f.converges);
        assert!(
            f.downtime_s > 0.2 && f.downtime_s <= 0.3 + SWITCHOVER_S,
            "{f:?}"
        );
    }

    #[test]
    fn zero_pages_are_nearly_free() {
        let half = idle_state(GIB, 0.5).finish(100.0 * MB);
        let full = idle_state(GIB, 0.0).finish(100.0 * MB);
        assert!(half.total_s < 0.51 * full.total_s, "{half:?} vs {full:?}");
    }

    #[test]
    fn dirtying_adds_rounds_and_saturates() {
        let plan = Plan::default();
        let small = DirtyModel::new(10.0 * MB, 50.0 * MB).unwrap();
        let large = DirtyModel::new(10.0 * MB, 500.0 * MB).unwrap();
        let base = idle_state(GIB, 0.5).finish(25.0 * MB).total_s;
        let a = MigrationState::before(GIB, 0.5, small, plan).finish(25.0 * MB);
        let b = MigrationState::before(GIB, 0.5, large, plan).finish(25.0 * MB);
        assert!(a.converges && b.converges);
        assert!(
            base < a.total_s && a.total_s < b.total_s,
            "{base} {a:?} {b:?}"
        );
    }

    #[test]
    fn fast_writer_does_not_converge() {
        let dirty = DirtyModel::new(60.0 * MB, 900.0 * MB).unwrap();
        let s = MigrationState::before(GIB, 0.1, dirty, Plan::default());
        let f = s.finish(25.0 * MB);
        assert!(!f.converges && !f.completes, "{f:?}");
        assert!(f.total_s.is_finite() && f.downtime_s > 1.0);
        // Hybrid switches to post-copy: short downtime, finite total.
        let hybrid = Plan {
            strategy: Strategy::Hybrid,
            ..Plan::default()
        };
        let h = MigrationState::before(GIB, 0.1, dirty, hybrid).finish(25.0 * MB);
        assert!(
            !h.converges && h.completes && h.downtime_s == SWITCHOVER_S,
            "{h:?}"
        );
        assert!(h.total_s.is_finite());
        // Post-copy after 5 s: switches at 5 s, every page once after that.
        let pc = Plan {
            strategy: Strategy::PostCopy { after_s: 5.0 },
            ..Plan::default()
        };
        let p = MigrationState::before(GIB, 0.1, dirty, pc).finish(25.0 * MB);
        assert!(
            p.converges && p.total_s > 5.0 && p.downtime_s == SWITCHOVER_S,
            "{p:?}"
        );
    }

    #[test]
    fn stop_and_copy_downtime_is_total() {
        let plan = Plan {
            strategy: Strategy::StopAndCopy,
            ..Plan::default()
        };
        let dirty = DirtyModel::new(60.0 * MB, 900.0 * MB).unwrap();
        let f = MigrationState::before(GIB, 0.5, dirty, plan).finish(100.0 * MB);
        assert_eq!(f.total_s, f.downtime_s);
        assert!(f.converges);
    }

    #[test]
    fn disk_goes_first() {
        let mut s = idle_state(GIB, 0.0);
        let mem = s.finish(100.0 * MB).total_s;
        s.disk = Some(DiskState {
            bulk_left_bytes: 1000.0 * MB,
            dirty_set_bytes: None,
            dirty_rate_bps: 10.0 * MB,
            ready: false,
            ..Default::default()
        });
        let f = s.finish(100.0 * MB);
        // 10 s bulk, 100 MB dirtied meanwhile at 90 MB/s net, memory at 90 MB/s.
        let expect = 10.0 + 100.0 / 90.0 + (mem - SWITCHOVER_S) * 100.0 / 90.0 + SWITCHOVER_S;
        assert!(
            (f.total_s - expect).abs() < 0.05,
            "{} vs {expect}",
            f.total_s
        );
        // A disk written faster than the link never gets ready.
        s.disk.as_mut().unwrap().dirty_rate_bps = 200.0 * MB;
        let g = s.finish(100.0 * MB);
        assert!(!g.converges && !g.completes && g.total_s.is_finite());
    }

    #[test]
    fn finish_is_finite_for_any_speed() {
        let dirty = DirtyModel::new(10.0 * MB, 200.0 * MB).unwrap();
        let s = MigrationState::before(GIB, 0.5, dirty, Plan::default());
        for v in [0.0, -1.0, f64::NAN, 1.0, 1e3, 1e12, f64::INFINITY] {
            let f = s.finish(v);
            assert!(
                f.total_s.is_finite() && f.downtime_s.is_finite(),
                "{v}: {f:?}"
            );
        }
    }

    #[test]
    fn before_and_validation() {
        let p = predict_before(
            GIB,
            0.5,
            10.0 * MB,
            Some(200_000_000),
            25.0 * MB,
            &Plan::default(),
        )
        .unwrap();
        assert!(
            p.low_s <= p.total_s && p.total_s <= p.high_s && p.converges,
            "{p:?}"
        );
        assert!(p.total_s > 20.0 && p.total_s < 40.0, "{p:?}");
        assert!(predict_before(0, 0.5, 0.0, None, 1.0, &Plan::default()).is_err());
        assert!(predict_before(GIB, 1.5, 0.0, None, 1.0, &Plan::default()).is_err());
        assert!(predict_before(GIB, 0.5, -1.0, None, 1.0, &Plan::default()).is_err());
        assert!(predict_before(GIB, 0.5, 0.0, None, 0.0, &Plan::default()).is_err());
        let bad = Plan {
            downtime_limit_ms: 0,
            ..Plan::default()
        };
        assert!(bad.validate().is_err());
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
        let e = Plan {
            bandwidth_cap_bps: Some(0.0),
            ..Plan::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("bandwidth cap"), "{e}");
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
    fn status_strings() {
        assert_eq!(Status::from_qemu("postcopy-active"), Status::PostcopyActive);
        assert_eq!(Status::from_qemu("pre-switchover"), Status::Switchover);
        assert_eq!(Status::from_qemu("colo"), Status::Other);
        assert!(Status::Active.is_transferring() && !Status::Setup.is_transferring());
    }

    #[test]
    fn naive_during_disk_copy() {
        let mut n = NaiveEstimator::default();
        let s = |t: f64, offset: u64| Sample {
            t_s: t,
            ram_total: 1_000,
            disk: Some(DiskSample { len: 10_000, offset, ready: false, dirty_rate_bps: 0.0 }),
            ..Sample::default()
        };
        assert_eq!(n.observe(&s(0.0, 0)), None);
        n.observe(&s(0.5, 500));
        // 1000 B/s over the last second: 9000 of disk and 1000 of memory left.
        assert_eq!(n.observe(&s(1.0, 1000)), Some(1.0 + 10.0));
        let mem = Sample { status: Status::Active, t_s: 12.0, remaining: 500, mbps: 8e-6 * 1000.0, ..Sample::default() };
        assert_eq!(n.observe(&mem), naive_total(&mem));
    }

    #[test]
    fn naive() {
        let s = Sample {
            t_s: 10.0,
            remaining: 100_000_000,
            mbps: 800.0,
            ..Sample::default()
        };
        assert_eq!(naive_total(&s), Some(11.0));
        assert_eq!(naive_total(&Sample::default()), None);
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
