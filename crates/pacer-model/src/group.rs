//! Coordinated migration of a group of VMs so that they all finish together (COMMA).
//!
//! While some VMs of an application have moved and others have not, their traffic crosses
//! the slow link between sites. COMMA's answer is to make them all finish at the same time.
//!
//! The VMs share one link of capacity `C`. For a common finish time `T`, each VM needs at
//! least the speed [`pace`] finds for target `T`; the group can make `T` if those speeds add
//! up to at most `C`. Each VM's speed only falls as `T` moves later, so the earliest common
//! `T` is found by bisection on `T`, starting from the latest of the VMs' finishes when each
//! runs alone at full speed. Every VM then runs at its own pace towards the same `T`: they
//! all start at once and end together, the slow (big, busy) ones at high speed and the quick
//! ones throttled. A VM that cannot go slower without pre-copy ceasing to converge would end
//! early: if it has not started yet, its start is delayed by the difference. Re-plan at every
//! tick with fresh states (start a delayed VM once its delay is under a tick); finished VMs
//! drop out.
//!
//! States come from each VM's [`Predictor::state`](crate::Predictor::state); for a VM not
//! started yet use [`MigrationState::before`] with `now_s` set to the current time.
//!
//! If some VM cannot finish at all (pre-copy that never converges even with the whole link),
//! no common finish exists: the plan is then a fair share, `C / n` each, and says so.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::pacing::{finish_time, pace, PaceDecision};
use crate::predict::{MigrationState, Phase};

/// Bisection steps on the common finish time.
const STEPS: usize = 50;
/// Times the search horizon may double while looking for a feasible finish.
const MAX_DOUBLINGS: usize = 40;

/// Why a group cannot be planned.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GroupError {
    /// No VMs were given.
    #[error("empty group: give at least one migration to plan")]
    Empty,
    /// The link capacity is not a positive finite rate.
    #[error("invalid link capacity {0} B/s: must be a positive rate, e.g. 125e6 for 1 Gbit/s")]
    InvalidCapacity(f64),
}

/// Speeds that make a group of migrations end together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupPlan {
    /// The common finish time aimed at, seconds (latest predicted finish if infeasible).
    pub finish_s: f64,
    /// Speed cap per VM, bytes/s, in input order (0 for VMs already done).
    pub speeds_bps: Vec<f64>,
    /// Seconds to wait before starting each VM's migration (only for VMs not started yet).
    pub start_delays_s: Vec<f64>,
    /// Predicted finish per VM at its speed after its delay, seconds.
    pub predicted_finish_s: Vec<f64>,
    /// Whether every VM can finish and a common finish exists.
    pub feasible: bool,
}

impl GroupPlan {
    /// Seconds between the first and the last predicted finish (the time the group is split).
    pub fn spread_s(&self) -> f64 {
        let (lo, hi) = self
            .predicted_finish_s
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &t| {
                (lo.min(t), hi.max(t))
            });
        if hi >= lo {
            hi - lo
        } else {
            0.0
        }
    }
}

/// Plans speeds for migrations sharing a link of `capacity_bps` so they end together, earliest.
pub fn plan_group(states: &[MigrationState], capacity_bps: f64) -> Result<GroupPlan, GroupError> {
    if states.is_empty() {
        return Err(GroupError::Empty);
    }
    if !(capacity_bps.is_finite() && capacity_bps > 0.0) {
        return Err(GroupError::InvalidCapacity(capacity_bps));
    }
    let active: Vec<usize> = (0..states.len())
        .filter(|&i| states[i].phase != Phase::Done)
        .collect();
    if active.is_empty() {
        return Ok(GroupPlan {
            finish_s: states.iter().map(|s| s.now_s).fold(0.0, f64::max),
            speeds_bps: vec![0.0; states.len()],
            start_delays_s: vec![0.0; states.len()],
            predicted_finish_s: states.iter().map(|s| s.now_s).collect(),
            feasible: true,
        });
    }
    // Speeds that make every active VM end by `target`, if they fit in the link.
    let fits = |target: f64| -> Option<Vec<PaceDecision>> {
        let mut total = 0.0;
        let mut out = Vec::with_capacity(active.len());
        for &i in &active {
            let d = pace(&states[i], capacity_bps, target).ok()?;
            total += d.speed_bps;
            if !d.feasible || total > capacity_bps * (1.0 + 1e-9) {
                return None;
            }
            out.push(d);
        }
        Some(out)
    };
    let alone = active
        .iter()
        .map(|&i| finish_time(&states[i], capacity_bps))
        .fold(f64::NEG_INFINITY, f64::max);
    let now = active
        .iter()
        .map(|&i| states[i].now_s)
        .fold(f64::NEG_INFINITY, f64::max);
    let found = if alone.is_finite() {
        search(fits, alone, (alone - now).max(1.0))
    } else {
        None
    };
    let mut speeds = vec![0.0; states.len()];
    let mut delays = vec![0.0; states.len()];
    let mut predicted: Vec<f64> = states.iter().map(|s| s.now_s).collect();
    let Some((finish_s, decisions)) = found else {
        let share = capacity_bps / active.len() as f64;
        for &i in &active {
            speeds[i] = share;
            predicted[i] = states[i].finish(share).total_s;
        }
        let finish_s = active
            .iter()
            .map(|&i| predicted[i])
            .fold(f64::NEG_INFINITY, f64::max);
        return Ok(GroupPlan {
            finish_s,
            speeds_bps: speeds,
            start_delays_s: delays,
            predicted_finish_s: predicted,
            feasible: false,
        });
    };
    for (&i, d) in active.iter().zip(&decisions) {
        speeds[i] = d.speed_bps;
        delays[i] = d.start_delay_s;
        predicted[i] = d.predicted_finish_s;
    }
    let last = active
        .iter()
        .map(|&i| predicted[i])
        .fold(f64::NEG_INFINITY, f64::max);
    for &i in &active {
        if states[i].phase == Phase::NotStarted {
            delays[i] += last - predicted[i];
            predicted[i] = last;
        }
    }
    Ok(GroupPlan {
        finish_s,
        speeds_bps: speeds,
        start_delays_s: delays,
        predicted_finish_s: predicted,
        feasible: true,
    })
}

/// The earliest target from `lo` on at which `fits` holds, looking up to `lo + span * 2^40`.
fn search<F>(fits: F, lo: f64, span: f64) -> Option<(f64, Vec<PaceDecision>)>
where
    F: Fn(f64) -> Option<Vec<PaceDecision>>,
{
    if let Some(d) = fits(lo) {
        return Some((lo, d));
    }
    let mut lo = lo;
    let mut step = span;
    let (mut hi, mut best) = loop {
        let hi = lo + step;
        if let Some(d) = fits(hi) {
            break (hi, d);
        }
        lo = hi;
        step *= 2.0;
        if step > span * 2f64.powi(MAX_DOUBLINGS as i32) {
            return None;
        }
    };
    for _ in 0..STEPS {
        let mid = 0.5 * (lo + hi);
        match fits(mid) {
            Some(d) => (hi, best) = (mid, d),
            None => lo = mid,
        }
        if hi - lo < 1e-3 {
            break;
        }
    }
    Some((hi, best))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dirty::DirtyModel;
    use crate::predict::Plan;
    use crate::sim::{probe_dirty_bytes, PrecopySim, SimParams, SAMPLE_INTERVAL_S};
    use proptest::prelude::*;

    const MB: f64 = 1e6;

    fn vm(ram_mib: u64, zero: f64, rate: f64, wss: f64) -> MigrationState {
        MigrationState::before(
            ram_mib << 20,
            zero,
            DirtyModel::new(rate, wss).unwrap(),
            Plan::default(),
        )
    }

    #[test]
    fn equal_vms_split_the_link() {
        let a = vm(1024, 0.0, 0.0, f64::INFINITY);
        let p = plan_group(&[a.clone(), a], 100.0 * MB).unwrap();
        assert!(p.feasible);
        assert!((p.speeds_bps[0] - p.speeds_bps[1]).abs() < 1e-6 * p.speeds_bps[0]);
        assert!(p.speeds_bps.iter().sum::<f64>() <= 100.0 * MB * (1.0 + 1e-9));
        assert!(p.spread_s() < 0.01, "{p:?}");
        // About twice the time one VM takes alone.
        let alone = finish_time(&vm(1024, 0.0, 0.0, f64::INFINITY), 100.0 * MB);
        assert!(
            p.finish_s > 1.9 * alone && p.finish_s < 2.2 * alone,
            "{p:?} vs {alone}"
        );
    }

    #[test]
    fn small_vm_is_slowed_to_end_with_the_big_one() {
        let big = vm(4096, 0.2, 20.0 * MB, 400.0 * MB);
        let small = vm(512, 0.5, 1.0 * MB, 50.0 * MB);
        let p = plan_group(&[big, small], 125.0 * MB).unwrap();
        assert!(p.feasible);
        assert!(p.speeds_bps[0] > 5.0 * p.speeds_bps[1], "{p:?}");
        assert!(p.spread_s() < 1e-9, "{p:?}");
        assert!(
            p.start_delays_s.iter().all(|d| *d >= 0.0 && *d < 0.5),
            "{p:?}"
        );
    }

    #[test]
    fn done_vms_drop_out_and_hopeless_ones_get_a_fair_share() {
        let mut done = vm(1024, 0.0, 0.0, f64::INFINITY);
        done.phase = Phase::Done;
        let p = plan_group(
            &[done.clone(), vm(1024, 0.0, 0.0, f64::INFINITY)],
            100.0 * MB,
        )
        .unwrap();
        assert_eq!(p.speeds_bps[0], 0.0);
        assert!(p.feasible && p.speeds_bps[1] > 90.0 * MB);
        let hopeless = vm(1024, 0.0, 500.0 * MB, 1000.0 * MB);
        let q = plan_group(&[hopeless, vm(1024, 0.0, 0.0, f64::INFINITY)], 100.0 * MB).unwrap();
        assert!(!q.feasible);
        assert_eq!(q.speeds_bps, vec![50.0 * MB, 50.0 * MB]);
        assert!(plan_group(&[], 1.0).is_err());
        assert!(plan_group(&[done], 0.0).is_err());
        let all_done = plan_group(
            &[vm(1, 0.0, 0.0, 1.0)].map(|mut s| {
                s.phase = Phase::Done;
                s
            }),
            1.0,
        )
        .unwrap();
        assert_eq!(all_done.speeds_bps, vec![0.0]);
    }

    /// Runs each VM in the simulator at its planned speed; returns the true finish times.
    fn run_planned(params: &[SimParams], capacity: f64) -> (GroupPlan, Vec<f64>) {
        let states: Vec<MigrationState> = params
            .iter()
            .map(|p| {
                let fit = DirtyModel::fit(
                    (1.0, probe_dirty_bytes(p, 1.0).unwrap()),
                    (10.0, probe_dirty_bytes(p, 10.0).unwrap()),
                )
                .unwrap();
                let plan = Plan {
                    downtime_limit_ms: p.downtime_limit_ms,
                    ..Plan::default()
                };
                MigrationState::before(p.ram_bytes, p.zero_fraction, fit, plan)
            })
            .collect();
        let plan = plan_group(&states, capacity).unwrap();
        let finishes = params
            .iter()
            .zip(&plan.speeds_bps)
            .zip(&plan.start_delays_s)
            .map(|((p, &v), &delay)| {
                let mut sim = PrecopySim::new(&SimParams {
                    link_bps: capacity,
                    ..*p
                })
                .unwrap();
                let mut t = 0.0;
                while sim.finished().is_none() && t < 600.0 {
                    t += SAMPLE_INTERVAL_S;
                    sim.run_until(t, v);
                }
                delay + sim.finished().map_or(f64::INFINITY, |(end, _)| end)
            })
            .collect();
        (plan, finishes)
    }

    fn any_vm() -> impl Strategy<Value = SimParams> {
        (
            64u64..1024,
            0.0f64..0.8,
            0.05f64..0.5,
            0.0f64..15e6,
            any::<u64>(),
        )
            .prop_map(|(mib, zero, wss_frac, rate, seed)| {
                let ram = mib << 20;
                SimParams {
                    ram_bytes: ram,
                    zero_fraction: zero,
                    wss_bytes: (ram as f64 * (1.0 - zero) * wss_frac) as u64,
                    write_rate_bps: rate,
                    seed,
                    ..SimParams::default()
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn planned_group_ends_together_in_the_simulator(
            vms in prop::collection::vec(any_vm(), 2..5),
            capacity in 60e6f64..125e6,
        ) {
            let (plan, finishes) = run_planned(&vms, capacity);
            prop_assume!(plan.feasible);
            prop_assert!(plan.speeds_bps.iter().sum::<f64>() <= capacity * (1.0 + 1e-9));
            let lo = finishes.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = finishes.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(hi - lo <= 1.0, "finishes {finishes:?}, plan {plan:?}, vms {vms:?}");
        }
    }
}
