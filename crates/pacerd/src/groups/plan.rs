//! The group's decisions, pure: the common finish from the members'
//! predictions, when to move the group's target, and the outcome figures.

use pacer_api::{GroupResult, JobStatus, MigrationResult, PredictResponse};
use pacer_model::predict::DiskState;
use pacer_model::{plan_group, DirtyModel, GroupError, MigrationState, Plan};

/// Extra time given to a planned group finish: preparing destinations and the
/// first samples take a little, and pacing aims early anyway.
pub const SLACK: f64 = 1.15;
/// A group's target moves only if a member says it cannot make it by more than this (s).
pub const RETARGET_MARGIN_S: f64 = 1.0;
/// ... and not more often than this (s).
pub const RETARGET_EVERY_S: f64 = 3.0;

/// The earliest time (s from now) every member can finish when they share the link.
pub fn earliest_common_finish(preds: &[PredictResponse], plan: Plan) -> Result<f64, GroupError> {
    let states: Vec<MigrationState> = preds
        .iter()
        .map(|p| {
            let dirty = DirtyModel::new(p.dirty_rate_bps, p.wss_bytes.unwrap_or(f64::INFINITY))
                .unwrap_or(DirtyModel::IDLE)
                .with_hot(p.hot_bytes);
            let mut s = MigrationState::before(p.ram_bytes, p.zero_fraction, dirty, plan);
            if p.disk_bytes > 0 {
                s.disk = Some(DiskState {
                    bulk_left_bytes: p.disk_bytes as f64,
                    dirty_set_bytes: None,
                    dirty_rate_bps: 0.0,
                    ready: false,
                    ..Default::default()
                });
            }
            s
        })
        .collect();
    let capacity = preds.iter().map(|p| p.link_bps).fold(f64::INFINITY, f64::min);
    let g = plan_group(&states, capacity)?;
    // A member that does not converge (and may switch) counts with its post-copy finish.
    let alone = preds
        .iter()
        .map(|p| p.total_ms.or(p.stuck.map(|a| a.postcopy_total_ms)).map_or(f64::INFINITY, |t| t as f64 / 1000.0))
        .fold(0.0, f64::max);
    Ok(g.finish_s.max(alone))
}

/// The group's target (s after its start): the operator's, unless the group
/// cannot make it, then the earliest it can. Returns the target and, when the
/// operator's was moved, why.
pub fn choose_target(user_s: Option<f64>, earliest_s: f64) -> (f64, Option<String>) {
    match user_s {
        Some(t) if t < earliest_s => (
            earliest_s,
            Some(format!(
                "the target ({t:.1} s) is earlier than the group can make it ({earliest_s:.1} s): aiming at {earliest_s:.1} s"
            )),
        ),
        Some(t) => (t, None),
        None => (earliest_s, None),
    }
}

/// Whether to move the group's target, given the latest finish a member says it
/// can make (s after the group's start), now, and when it last moved. Returns
/// the new target. Only a member that says it cannot make the target (its
/// flat-out finish is later) moves the group: a paced member's forecast at its
/// deliberately low speed says nothing about when it can end.
pub fn retarget(target_s: f64, latest_possible_s: f64, now_s: f64, last_move_s: f64, any_finished: bool) -> Option<f64> {
    (latest_possible_s > target_s + RETARGET_MARGIN_S && !any_finished && now_s - last_move_s >= RETARGET_EVERY_S)
        .then_some(latest_possible_s + 0.5)
}

/// The group's outcome from its members' results and finish times.
pub fn outcome(results: &[Option<MigrationResult>], finish_s: &[Option<f64>], target_s: Option<f64>, end_s: f64) -> GroupResult {
    let all_completed = results.iter().all(|r| r.as_ref().is_some_and(|r| r.status == JobStatus::Completed));
    let done: Vec<f64> = results
        .iter()
        .zip(finish_s)
        .filter(|(r, _)| r.as_ref().is_some_and(|r| r.status == JobStatus::Completed))
        .filter_map(|(_, f)| *f)
        .collect();
    let lo = done.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = done.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let spread_s = if done.is_empty() { 0.0 } else { hi - lo };
    // Split: from the first member running at the destination until the last does;
    // if some never got there, until the group ended.
    let split_s = match (done.is_empty(), all_completed) {
        (true, _) => 0.0,
        (false, true) => spread_s,
        (false, false) => (end_s - lo).max(0.0),
    };
    GroupResult {
        results: results.to_vec(),
        finish_s: finish_s.to_vec(),
        target_s,
        spread_s,
        split_s,
        all_completed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pred(total_ms: u64, ram: u64, rate: f64) -> PredictResponse {
        PredictResponse {
            total_ms: Some(total_ms),
            low_ms: total_ms,
            high_ms: Some(total_ms),
            completes_chance: 1.0,
            if_it_converges: None,
            stuck: None,
            downtime_ms: 300,
            converges: true,
            link_bps: 125e6,
            dirty_rate_bps: rate,
            wss_bytes: Some(256e6),
            hot_bytes: 0.0,
            zero_fraction: 0.5,
            ram_bytes: ram,
            disk_bytes: 0,
            dirty_source: "content".into(),
            content_dirty_rate_bps: None,
            rehearsal: None,
            dirty_log: None,
        }
    }

    #[test]
    fn sharing_the_link_takes_longer_than_the_slowest_alone() {
        let plan = Plan::default();
        let alone = earliest_common_finish(&[pred(5_000, 1 << 30, 20e6)], plan).unwrap();
        let both = earliest_common_finish(&[pred(5_000, 1 << 30, 20e6), pred(3_000, 512 << 20, 5e6)], plan).unwrap();
        assert!(alone >= 5.0 && both > alone, "alone {alone}, both {both}");
    }

    #[test]
    fn an_early_target_is_moved_to_what_the_group_can_make() {
        assert_eq!(choose_target(Some(30.0), 12.0), (30.0, None));
        let (t, why) = choose_target(Some(5.0), 12.0);
        assert_eq!(t, 12.0);
        assert!(why.unwrap().contains("earlier than the group can make it"));
        assert_eq!(choose_target(None, 12.0).0, 12.0);
    }

    #[test]
    fn the_target_moves_only_for_a_member_that_cannot_make_it() {
        assert_eq!(retarget(10.0, 12.0, 5.0, 0.0, false), Some(12.5));
        assert_eq!(retarget(10.0, 10.5, 5.0, 0.0, false), None, "within the margin");
        assert_eq!(retarget(10.0, 12.0, 5.0, 4.0, false), None, "moved a moment ago");
        assert_eq!(retarget(10.0, 12.0, 5.0, 0.0, true), None, "someone already finished");
    }

    #[test]
    fn spread_and_split_count_completed_members() {
        let peer = pacer_api::PeerRef { name: "h2".into(), url: "u".into(), token: "t".into() };
        let req = pacer_api::MigrateRequest::new(peer, pacer_api::Strategy::PreCopy);
        let mut ok = crate::migration::outcome::new_result("a", &req, "h1");
        ok.status = JobStatus::Completed;
        let failed = crate::migration::outcome::new_result("b", &req, "h1");
        let g = outcome(&[Some(ok.clone()), Some(ok.clone())], &[Some(10.0), Some(10.4)], Some(10.0), 11.0);
        assert!(g.all_completed && (g.spread_s - 0.4).abs() < 1e-9 && (g.split_s - 0.4).abs() < 1e-9);
        let g = outcome(&[Some(ok), Some(failed), None], &[Some(10.0), Some(8.0), None], Some(10.0), 12.0);
        assert!(!g.all_completed);
        assert_eq!((g.spread_s, g.split_s), (0.0, 2.0));
    }
}
