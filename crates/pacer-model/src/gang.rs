//! Predicting a gang: several migrations from one host to another started together,
//! sharing one link, optionally through relays that send each distinct page once.
//!
//! Each VM's migration is played forward by its own [`MigrationState`]; what they share is
//! the link. The relay's sender takes the VMs' streams in turns of equal size, so every VM
//! still moving gets the same stream speed `s`, and the link carries `s x w_i` for VM `i`,
//! where `w_i` is the wire bytes its stream costs per stream byte (1 direct or relayed
//! without dedup; below 1 with dedup, for the pages whose content was already sent). Direct
//! migrations' TCP connections share the link the same way (equal stream speeds, `w = 1`).
//! So the link's capacity `C` gives `s = C / sum(w_i)` over the VMs still moving, and the
//! gang is a processor-sharing queue: the VM with the least stream left ends first, the
//! rest speed up.
//!
//! How many stream bytes a VM needs depends on its speed (a slower pre-copy has more pages
//! re-dirtied behind it), and its speed on when the others end, so the two are solved
//! together: a few rounds of "bytes at the average speed of the last round".
//!
//! Dedup saves bytes only on content sent before (by this VM or another of the gang):
//! each VM's `first_pass_saved_bytes` is its share of the gang's duplicate content (a
//! content held `k` times costs `1/k` to each holder). Pages re-dirtied during the move are
//! taken to be new content.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::predict::{MigrationState, SWITCHOVER_S};

/// Rounds of the speed/bytes fixed point.
const ROUNDS: usize = 6;

/// One VM of a gang, not started yet.
#[derive(Debug, Clone)]
pub struct GangMember {
    /// Its migration before the start ([`MigrationState::before`]).
    pub state: MigrationState,
    /// Wire bytes the relay saves on its stream (its share of duplicate content).
    pub first_pass_saved_bytes: f64,
}

/// One VM's predicted migration within the gang.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MemberFinish {
    /// When it ends (running at the destination), seconds from the gang's start.
    pub total_s: f64,
    /// Its downtime, seconds.
    pub downtime_s: f64,
    /// Its QEMU stream, bytes.
    pub stream_bytes: f64,
    /// What its stream costs on the link, bytes.
    pub wire_bytes: f64,
    /// Its average stream speed, bytes/s.
    pub speed_bps: f64,
}

/// The gang's predicted migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GangFinish {
    /// When the last VM ends, seconds from the start (infinite: some VM does not end).
    pub total_s: f64,
    /// Per VM, in input order.
    pub members: Vec<MemberFinish>,
    /// The VMs (input indexes) whose pre-copy does not converge at their share of the link.
    pub not_converging: Vec<usize>,
    /// Every stream, summed, bytes.
    pub stream_bytes: f64,
    /// The link's bytes, summed.
    pub wire_bytes: f64,
}

/// Why a gang cannot be predicted.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GangError {
    /// No VMs.
    #[error("empty gang: give at least one VM")]
    Empty,
    /// The link rate is not a positive finite rate.
    #[error("invalid link rate {0} B/s: must be a positive rate, e.g. 125e6 for 1 Gbit/s")]
    InvalidLink(f64),
    /// A saving is negative or not finite.
    #[error("VM {0} of the gang: saved bytes {1} must be a finite number >= 0")]
    InvalidSaving(usize, f64),
}

/// Predicts the gang's migration over a link of `link_bps` (bytes/s), each VM ending
/// `end_lag_s` after the model's end (the agent's learned lag to the guest running).
pub fn predict_gang(members: &[GangMember], link_bps: f64, end_lag_s: f64) -> Result<GangFinish, GangError> {
    if members.is_empty() {
        return Err(GangError::Empty);
    }
    if !(link_bps.is_finite() && link_bps > 0.0) {
        return Err(GangError::InvalidLink(link_bps));
    }
    for (i, m) in members.iter().enumerate() {
        if !(m.first_pass_saved_bytes.is_finite() && m.first_pass_saved_bytes >= 0.0) {
            return Err(GangError::InvalidSaving(i, m.first_pass_saved_bytes));
        }
    }
    let n = members.len();
    let mut speed = vec![link_bps / n as f64; n];
    let mut out = Vec::new();
    let mut stuck = Vec::new();
    for _ in 0..ROUNDS {
        // Bytes each needs at its current speed, and what they cost on the link.
        let mut bytes = vec![0.0; n];
        let mut weight = vec![1.0; n];
        let mut tail = vec![0.0; n];
        let mut downtime = vec![0.0; n];
        stuck.clear();
        for (i, m) in members.iter().enumerate() {
            let f = m.state.finish(speed[i]);
            if !f.completes || !f.total_s.is_finite() {
                stuck.push(i);
                continue;
            }
            let moving = (f.total_s - m.state.now_s - SWITCHOVER_S).max(0.0);
            bytes[i] = speed[i] * moving;
            tail[i] = f.total_s - m.state.now_s - moving;
            downtime[i] = f.downtime_s;
            if bytes[i] > 0.0 {
                let saved = m.first_pass_saved_bytes.min(0.99 * bytes[i]);
                weight[i] = (bytes[i] - saved) / bytes[i];
            }
        }
        if !stuck.is_empty() {
            break;
        }
        // Processor sharing at equal stream speeds.
        let mut left = bytes.clone();
        let mut ends = vec![0.0; n];
        let mut active: Vec<usize> = (0..n).collect();
        let mut t = 0.0;
        while !active.is_empty() {
            let s = link_bps / active.iter().map(|&i| weight[i]).sum::<f64>();
            let (k, _) = active
                .iter()
                .enumerate()
                .min_by(|a, b| left[*a.1].total_cmp(&left[*b.1]))
                .expect("active is not empty");
            let first = active[k];
            let dt = left[first] / s;
            t += dt;
            for &i in &active {
                left[i] = (left[i] - s * dt).max(0.0);
            }
            ends[first] = t;
            active.swap_remove(k);
            active.retain(|&i| {
                if left[i] <= 1e-6 * bytes[i].max(1.0) {
                    ends[i] = t;
                    false
                } else {
                    true
                }
            });
        }
        out = (0..n)
            .map(|i| MemberFinish {
                total_s: members[i].state.now_s + ends[i] + tail[i] + end_lag_s,
                downtime_s: downtime[i],
                stream_bytes: bytes[i],
                wire_bytes: bytes[i] * weight[i],
                speed_bps: speed[i],
            })
            .collect();
        for i in 0..n {
            if ends[i] > 0.0 {
                speed[i] = (bytes[i] / ends[i]).max(1.0);
            }
        }
    }
    if !stuck.is_empty() {
        return Ok(GangFinish {
            total_s: f64::INFINITY,
            members: Vec::new(),
            not_converging: stuck,
            stream_bytes: f64::INFINITY,
            wire_bytes: f64::INFINITY,
        });
    }
    Ok(GangFinish {
        total_s: out.iter().map(|m| m.total_s).fold(0.0, f64::max),
        stream_bytes: out.iter().map(|m| m.stream_bytes).sum(),
        wire_bytes: out.iter().map(|m| m.wire_bytes).sum(),
        members: out,
        not_converging: Vec::new(),
    })
}

/// Each holder's share of the wire bytes dedup saves, from the multiplicities of the
/// gang's contents: for every VM, `(pages it holds, pages of it that are copies)`, where a
/// content held `k` times over the gang counts `(k - 1) / k` of a copy to each holder.
/// `multiplicity(h)` gives the gang's count of content `h`.
pub fn copies_per_holder<'a>(
    holders: impl IntoIterator<Item = &'a [u64]>,
    multiplicity: impl Fn(u64) -> u32,
) -> Vec<(u64, f64)> {
    holders
        .into_iter()
        .map(|pages| {
            let copies: f64 = pages
                .iter()
                .map(|&h| {
                    let k = multiplicity(h).max(1) as f64;
                    (k - 1.0) / k
                })
                .sum();
            (pages.len() as u64, copies)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::Plan;
    use crate::DirtyModel;
    use proptest::prelude::*;

    const GIB: u64 = 1 << 30;

    fn vm(zero: f64, rate: f64, wss: f64) -> MigrationState {
        MigrationState::before(GIB, zero, DirtyModel::new(rate, wss).unwrap(), Plan::default())
    }

    #[test]
    fn one_vm_alone_is_its_own_prediction() {
        let s = vm(0.5, 2e6, 300e6);
        let alone = s.finish(125e6);
        let g = predict_gang(&[GangMember { state: s, first_pass_saved_bytes: 0.0 }], 125e6, 0.0).unwrap();
        assert!((g.total_s - alone.total_s).abs() < 0.02 * alone.total_s, "{g:?} vs {alone:?}");
    }

    #[test]
    fn identical_vms_take_n_times_as_long_and_dedup_shortens_it() {
        let m = |saved| GangMember { state: vm(0.5, 2e6, 300e6), first_pass_saved_bytes: saved };
        let one = predict_gang(&[m(0.0)], 125e6, 0.0).unwrap();
        let four = predict_gang(&[m(0.0), m(0.0), m(0.0), m(0.0)], 125e6, 0.0).unwrap();
        assert!(four.total_s > 3.8 * one.total_s && four.total_s < 4.6 * one.total_s, "{} vs {}", four.total_s, one.total_s);
        // They end together.
        let spread = four.members.iter().map(|m| m.total_s).fold(0.0, f64::max)
            - four.members.iter().map(|m| m.total_s).fold(f64::INFINITY, f64::min);
        assert!(spread < 0.01, "{four:?}");
        let saved = 200e6;
        let dedup = predict_gang(&[m(saved), m(saved), m(saved), m(saved)], 125e6, 0.0).unwrap();
        assert!(dedup.wire_bytes < four.wire_bytes - 3.5 * saved, "{} vs {}", dedup.wire_bytes, four.wire_bytes);
        assert!(dedup.total_s < four.total_s * 0.8, "{} vs {}", dedup.total_s, four.total_s);
    }

    #[test]
    fn a_small_vm_ends_first_and_the_rest_speed_up() {
        let small = GangMember { state: MigrationState::before(GIB / 8, 0.0, DirtyModel::IDLE, Plan::default()), first_pass_saved_bytes: 0.0 };
        let big = GangMember { state: vm(0.0, 0.0, 1.0), first_pass_saved_bytes: 0.0 };
        let g = predict_gang(&[small, big.clone()], 100e6, 0.0).unwrap();
        assert!(g.members[0].total_s < g.members[1].total_s);
        // Idle guests: the link carries both RAMs back to back, 1.125 GiB in all.
        let all = (GIB + GIB / 8) as f64 * 4104.0 / 4096.0 / 100e6;
        assert!((g.total_s - all).abs() < 0.05 * all, "{} vs {all}", g.total_s);
    }

    #[test]
    fn a_guest_dirtying_faster_than_its_share_does_not_converge() {
        let hot = GangMember { state: vm(0.0, 60e6, 800e6), first_pass_saved_bytes: 0.0 };
        let g = predict_gang(&[hot.clone(), hot], 100e6, 0.0).unwrap();
        assert!(g.total_s.is_infinite() && g.not_converging == vec![0, 1], "{g:?}");
    }

    #[test]
    fn bad_input_is_refused() {
        assert_eq!(predict_gang(&[], 1e6, 0.0).unwrap_err(), GangError::Empty);
        let m = GangMember { state: vm(0.5, 0.0, 1.0), first_pass_saved_bytes: 0.0 };
        assert!(matches!(predict_gang(std::slice::from_ref(&m), 0.0, 0.0), Err(GangError::InvalidLink(_))));
        let bad = GangMember { first_pass_saved_bytes: -1.0, ..m };
        assert!(matches!(predict_gang(&[bad], 1e6, 0.0), Err(GangError::InvalidSaving(0, _))));
    }

    #[test]
    fn copies_are_shared_among_holders() {
        let a = [1u64, 2, 3, 3];
        let b = [1u64, 4];
        let count = |h| match h {
            1 => 2,
            3 => 2,
            _ => 1,
        };
        let c = copies_per_holder([&a[..], &b[..]], count);
        // Content 1: one copy split between a and b; content 3: one copy, both in a.
        assert_eq!(c[0].0, 4);
        assert!((c[0].1 - 1.5).abs() < 1e-9 && (c[1].1 - 0.5).abs() < 1e-9, "{c:?}");
    }

    /// Against the page-level simulator: three guests of different write rates share a
    /// link at equal speeds (each capped at its share, the share growing as others end).
    #[test]
    fn agrees_with_the_simulator_sharing_a_link() {
        use crate::sim::{PrecopySim, SimParams};
        let link = 40e6;
        let params: Vec<SimParams> = [0.0, 2e6, 4e6]
            .iter()
            .enumerate()
            .map(|(i, &w)| SimParams {
                ram_bytes: GIB / 4,
                zero_fraction: 0.5,
                wss_bytes: 60_000_000,
                write_rate_bps: w,
                link_bps: 1e12,
                seed: i as u64 + 1,
                ..SimParams::default()
            })
            .collect();
        let mut sims: Vec<PrecopySim> = params.iter().map(|p| PrecopySim::new(p).unwrap()).collect();
        let mut t = 0.0;
        while sims.iter().any(|s| s.finished().is_none()) && t < 600.0 {
            let active = sims.iter().filter(|s| s.finished().is_none()).count().max(1);
            t += 0.05;
            for s in sims.iter_mut() {
                s.run_until(t, link / active as f64);
            }
        }
        let simulated = sims.iter().map(|s| s.finished().unwrap().0).fold(0.0, f64::max);
        let members: Vec<GangMember> = params
            .iter()
            .map(|p| GangMember {
                state: MigrationState::before(
                    p.ram_bytes,
                    p.zero_fraction,
                    DirtyModel::new(p.write_rate_bps, p.wss_bytes as f64).unwrap(),
                    Plan::default(),
                ),
                first_pass_saved_bytes: 0.0,
            })
            .collect();
        let g = predict_gang(&members, link, 0.0).unwrap();
        assert!((g.total_s - simulated).abs() < 0.1 * simulated, "model {} s, simulator {simulated} s", g.total_s);
    }

    proptest! {
        /// The link's bytes never exceed the streams', nor cross faster than the link.
        #[test]
        fn wire_bytes_never_exceed_stream_bytes_and_time_covers_them(
            n in 1usize..6, saved_mb in 0.0f64..300.0, rate_mb in 0.0f64..5.0, link_mb in 20.0f64..200.0,
        ) {
            // Guests that converge at their share of the link (else the total is infinite,
            // which its own test covers).
            prop_assume!(rate_mb * n as f64 * 3.0 < link_mb);
            let ms: Vec<GangMember> = (0..n)
                .map(|_| GangMember { state: vm(0.4, rate_mb * 1e6, 200e6), first_pass_saved_bytes: saved_mb * 1e6 })
                .collect();
            let g = predict_gang(&ms, link_mb * 1e6, 0.0).unwrap();
            prop_assert!(g.total_s.is_finite());
            prop_assert!(g.wire_bytes <= g.stream_bytes + 1.0);
            // The link cannot carry the gang's wire bytes faster than its rate.
            prop_assert!(g.total_s * link_mb * 1e6 >= 0.98 * g.wire_bytes, "{g:?}");
        }
    }
}
