//! `pacer migrate-group`: move several VMs (from one or several source hosts) to
//! one destination so that they finish together. Each VM's migration is predicted
//! first; the group gets a common finish time (the earliest the shared link
//! allows, or the operator's), every migration is paced to it, and while they run
//! the group is re-targeted if one of them falls behind, so none finishes alone.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use pacer_api::{JobInfo, MigrationResult, PredictRequest, PredictResponse};
use pacer_model::predict::DiskState;
use pacer_model::{plan_group, DirtyModel, MigrationState};
use serde::Serialize;

use crate::hosts::Hosts;
use crate::migrate::MigrateOpts;

/// Extra time given to a planned group finish: preparing destinations and the
/// first samples take a little, and pacing aims early anyway.
const SLACK: f64 = 1.15;

/// What `migrate-group --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct GroupResult {
    /// Every VM's result, in the order given.
    pub results: Vec<MigrationResult>,
    /// When each finished, seconds after the group started.
    pub finish_s: Vec<f64>,
    /// The common target aimed at, seconds after the group started (None: uncoordinated).
    pub target_s: Option<f64>,
    /// Last finish minus first finish, seconds.
    pub spread_s: f64,
    /// Time during which some VMs ran at the destination and others at their source, seconds.
    pub split_s: f64,
    /// Whether every migration completed.
    pub all_completed: bool,
}

/// Runs a group migration. `coordinate = false` starts them all flat out (for comparison).
pub async fn migrate_group(hosts: &Hosts, vms: &[String], opts: &MigrateOpts, coordinate: bool) -> Result<GroupResult> {
    if vms.is_empty() {
        bail!("give at least one VM");
    }
    let mut seen = std::collections::HashSet::new();
    for v in vms {
        if !seen.insert(v) {
            bail!("VM {v:?} is listed twice");
        }
    }
    let dest = hosts.get(&opts.to)?.clone();
    let peer = crate::migrate::peer_of(&dest);
    let mut sources = Vec::new();
    for v in vms {
        let (h, _) = hosts.locate(v).await?;
        if h == dest.name {
            bail!("VM {v:?} already runs on {}", dest.name);
        }
        sources.push(h);
    }
    let t0 = Instant::now();
    let user_target = opts.finish_in_s()?;
    let target = if coordinate {
        eprintln!("predicting each migration...");
        let mut preds = Vec::new();
        for (v, h) in vms.iter().zip(&sources) {
            let req = PredictRequest {
                destination: peer.clone(),
                strategy: opts.strategy,
                bandwidth: opts.bandwidth,
                downtime_limit_ms: opts.downtime_limit,
                postcopy_after_s: opts.postcopy_after,
                copy_storage: opts.copy_storage,
            };
            let p: PredictResponse = hosts.client(h)?.post(&format!("/v1/vms/{v}/predict"), &req).await?;
            eprintln!(
                "  {v} on {h}: {:.1} s alone ({:.1}-{:.1}), link {:.0} Mbit/s",
                p.total_ms as f64 / 1000.0,
                p.low_ms as f64 / 1000.0,
                p.high_ms as f64 / 1000.0,
                p.link_bps * 8.0 / 1e6
            );
            preds.push(p);
        }
        let plan = opts.request(peer.clone())?.model_plan();
        let earliest = earliest_common_finish(&preds, plan)? * SLACK + t0.elapsed().as_secs_f64();
        Some(match user_target {
            Some(t) if t + 0.0 < earliest => {
                eprintln!(
                    "  the target ({t:.1} s) is earlier than the group can make it ({earliest:.1} s): aiming at {earliest:.1} s"
                );
                earliest
            }
            Some(t) => t,
            None => earliest,
        })
    } else {
        user_target
    };
    if let Some(t) = target {
        eprintln!("group target: all finish {:.1} s from the start", t);
    }
    // Start every migration with the common target.
    let mut jobs = Vec::new();
    for (v, h) in vms.iter().zip(&sources) {
        let mut req = opts.request(peer.clone())?;
        req.finish_in_s = target.map(|t| (t - t0.elapsed().as_secs_f64()).max(0.5));
        let started = t0.elapsed().as_secs_f64();
        let job: JobInfo = hosts.client(h)?.post(&format!("/v1/vms/{v}/migrate"), &req).await?;
        jobs.push((h.clone(), job.id, started));
    }
    // Follow them; keep the group together if one falls behind.
    let mut results: Vec<Option<MigrationResult>> = vec![None; jobs.len()];
    let mut finish = vec![0.0; jobs.len()];
    let mut target_now = target;
    let mut last_line = Instant::now() - Duration::from_secs(5);
    let mut last_retarget = Instant::now();
    while results.iter().any(Option::is_none) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut latest_prediction: f64 = 0.0;
        let mut line = Vec::new();
        for (i, (h, id, started)) in jobs.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            let j: JobInfo = hosts.client(h)?.get(&format!("/v1/jobs/{id}")).await?;
            if let Some(r) = j.result {
                finish[i] = started + r.total_time_ms as f64 / 1000.0;
                eprintln!("  {} finished ({:?}) at {:.2} s", vms[i], r.status, finish[i]);
                results[i] = Some(r);
                continue;
            }
            // Only a migration that says it cannot make the target (its flat-out
            // finish is later) moves the group; a paced one's forecast at its
            // current, deliberately low speed says nothing about when it can end.
            if let Some(t) = j.target.filter(|t| !t.feasible) {
                latest_prediction = latest_prediction.max(started + t.earliest_finish_ms as f64 / 1000.0);
            }
            line.push(format!("{} {:.0}%", vms[i], j.progress.percent));
        }
        if let Some(t) = target_now {
            // Someone cannot make it: move everyone's target to when it can.
            if latest_prediction > t + 1.0
                && results.iter().all(Option::is_none)
                && last_retarget.elapsed() >= Duration::from_secs(3)
            {
                last_retarget = Instant::now();
                let new_t = latest_prediction + 0.5;
                eprintln!("  a migration predicts {latest_prediction:.1} s: moving the group target to {new_t:.1} s");
                for (i, (h, id, _)) in jobs.iter().enumerate() {
                    if results[i].is_none() {
                        let body = pacer_api::RetargetRequest {
                            finish_in_s: Some((new_t - t0.elapsed().as_secs_f64()).max(0.5)),
                        };
                        let _: Result<JobInfo, _> = hosts.client(h)?.post(&format!("/v1/jobs/{id}/target"), &body).await;
                    }
                }
                target_now = Some(new_t);
            }
        }
        if last_line.elapsed() >= Duration::from_secs(1) && !line.is_empty() {
            eprintln!("  {:6.1} s  {}", t0.elapsed().as_secs_f64(), line.join("  "));
            last_line = Instant::now();
        }
    }
    let results: Vec<MigrationResult> = results.into_iter().map(|r| r.expect("all done")).collect();
    let lo = finish.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = finish.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    Ok(GroupResult {
        all_completed: results.iter().all(|r| r.status == pacer_api::JobStatus::Completed),
        results,
        spread_s: hi - lo,
        split_s: hi - lo,
        finish_s: finish,
        target_s: target_now,
    })
}

/// The earliest time (s from now) every VM can finish when they share the link.
fn earliest_common_finish(preds: &[PredictResponse], plan: pacer_model::Plan) -> Result<f64> {
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
    let alone = preds.iter().map(|p| p.total_ms as f64 / 1000.0).fold(0.0, f64::max);
    Ok(g.finish_s.max(alone))
}

/// A human summary of a group.
pub fn summary(g: &GroupResult, vms: &[String]) -> String {
    let mut s = String::new();
    for (i, r) in g.results.iter().enumerate() {
        s.push_str(&format!(
            "{:<12} {:?} on {}: total {:.2} s, finished at {:.2} s, downtime {} ms, sent {}\n",
            vms[i],
            r.status,
            r.vm_location,
            r.total_time_ms as f64 / 1000.0,
            g.finish_s[i],
            r.downtime_ms.unwrap_or(0),
            pacer_model::format_bytes(r.bytes_transferred)
        ));
    }
    if let Some(t) = g.target_s {
        s.push_str(&format!("group target {t:.2} s; "));
    }
    s.push_str(&format!("finish spread {:.2} s; split across hosts for {:.2} s", g.spread_s, g.split_s));
    s
}
