//! The group coordinator: predicts every member, plans a common finish (the
//! earliest the shared link allows, or the operator's), starts every member's
//! migration on its source paced to it, and follows them; if one says it cannot
//! make the target, the group's target moves, so none finishes alone. If a
//! member fails before any has switched over, the rest are cancelled: the group
//! stays together, at its sources.
//!
//! It talks to every agent, itself included, through the API, and journals each
//! step, so a restarted agent picks the group up where it was: members already
//! started are followed, the others started. The group's clock is wall time
//! since it was submitted, which survives a restart.

use std::sync::Arc;
use std::time::Duration;

use pacer_api::{
    AgentClient, ClientError, ErrorCode, GroupInfo, GroupMemberInfo, GroupRequest, GroupStatus, JobInfo, JobStatus,
    MemberState, PeerRef, PredictRequest, VmState,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::error::{AgentError, AgentResult};
use crate::groups::plan::{choose_target, earliest_common_finish, outcome, retarget, SLACK};
use crate::groups::{Group, GroupTable};
use crate::migration::admission;
use crate::migration::plan::model_plan;
use crate::migration::short_id;
use crate::unix_ms;

/// How often the members are looked at.
const POLL: Duration = Duration::from_millis(250);

/// What the coordinator needs of the agent.
pub struct Deps {
    /// This host's name.
    pub host_name: String,
    /// The groups.
    pub groups: Arc<GroupTable>,
    /// Where tasks are spawned.
    pub tasks: TaskTracker,
    /// Cancelled when the agent stops: the coordinator stops following (the
    /// group is journaled), it does not cancel the group.
    pub shutdown: CancellationToken,
}

/// The coordinator was told to stop (the agent is shutting down).
struct Stopped;

/// Checks a group request and starts coordinating it.
pub fn submit(d: &Arc<Deps>, req: GroupRequest) -> AgentResult<GroupInfo> {
    if d.shutdown.is_cancelled() {
        return Err(AgentError::ShuttingDown);
    }
    validate(&req)?;
    let info = GroupInfo {
        id: short_id("group"),
        coordinator: d.host_name.clone(),
        destination: req.migration.destination.name.clone(),
        status: GroupStatus::Planning,
        members: req
            .members
            .iter()
            .map(|m| GroupMemberInfo {
                vm: m.vm.clone(),
                source: m.source.name.clone(),
                state: MemberState::Waiting,
                job_id: None,
                started_s: None,
                progress: None,
                result: None,
                finish_s: None,
                fate: format!("waiting: runs on {}", m.source.name),
            })
            .collect(),
        target_s: None,
        started_unix_ms: unix_ms(),
        events: Vec::new(),
        result: None,
    };
    let group = d.groups.insert(req, info.clone(), CancellationToken::new());
    spawn(d, group);
    Ok(info)
}

/// Checks a group request for nonsense.
pub fn validate(req: &GroupRequest) -> AgentResult<()> {
    if req.members.is_empty() {
        return Err(AgentError::Invalid("a group needs at least one VM".into()));
    }
    let mut seen = std::collections::HashSet::new();
    for m in &req.members {
        if !seen.insert(&m.vm) {
            return Err(AgentError::Invalid(format!("VM {:?} is listed twice", m.vm)));
        }
        if m.source.name == req.migration.destination.name {
            return Err(AgentError::Invalid(format!("VM {:?} already runs on {}", m.vm, m.source.name)));
        }
    }
    admission::validate(&req.migration)
}

/// Picks up the groups an earlier run of the agent left unfinished (and lists the
/// ended ones again).
pub fn resume(d: &Arc<Deps>) {
    for rec in d.groups.journaled() {
        let ended = rec.info.status.is_terminal();
        let group = d.groups.insert(rec.request, rec.info, CancellationToken::new());
        if !ended {
            group.event(format!("picked up again by {} after a restart", d.host_name));
            spawn(d, group);
        }
    }
}

fn spawn(d: &Arc<Deps>, group: Arc<Group>) {
    let d = d.clone();
    d.tasks.clone().spawn(async move {
        if coordinate(&d, &group).await.is_err() {
            info!("group {}: the agent stops; the group is journaled and resumes with it", group.id);
        }
    });
}

fn client(p: &PeerRef) -> AgentClient {
    AgentClient::new(&p.url, &p.token).with_timeout(Duration::from_secs(30))
}

/// Seconds since the group was submitted.
fn now_s(g: &Group) -> f64 {
    unix_ms().saturating_sub(g.info().started_unix_ms) as f64 / 1000.0
}

async fn coordinate(d: &Deps, g: &Group) -> Result<(), Stopped> {
    if g.info().status == GroupStatus::Planning {
        match plan(d, g).await? {
            Ok(()) => {}
            Err(why) => {
                g.event(format!("{why}; nothing moved"));
                return finish(g, GroupStatus::Failed);
            }
        }
    }
    start_members(d, g).await?;
    follow(d, g).await
}

/// Predicts every member and fixes the common target.
async fn plan(d: &Deps, g: &Group) -> Result<Result<(), String>, Stopped> {
    let req = &g.request;
    let user = req.migration.finish_in_s;
    let target = if req.coordinate {
        // One after another: predictions probe the link, and two probes at once
        // would each see half of it.
        g.event("predicting each migration");
        let mut preds = Vec::new();
        for m in &req.members {
            let p = PredictRequest {
                destination: req.migration.destination.clone(),
                strategy: req.migration.strategy,
                bandwidth: req.migration.bandwidth,
                downtime_limit_ms: req.migration.downtime_limit_ms,
                postcopy_after_s: req.migration.postcopy_after_s,
                copy_storage: req.migration.copy_storage,
                // Planning waits for every member: a probe of each (about 10 s) is
                // not worth it here; a recent reading is used.
                dirty_log: false,
            };
            let source = client(&m.source);
            let r = tokio::select! {
                _ = d.shutdown.cancelled() => return Err(Stopped),
                _ = g.cancel.cancelled() => return Ok(Err("cancelled while predicting".into())),
                r = source.predict(&m.vm, &p) => r,
            };
            match r {
                Ok(p) => {
                    g.event(format!(
                        "{} on {}: {} alone, link {:.0} Mbit/s",
                        m.vm,
                        m.source.name,
                        match (p.total_ms, p.high_ms) {
                            (Some(t), Some(h)) => format!("{:.1} s ({:.1}-{:.1})", t as f64 / 1e3, p.low_ms as f64 / 1e3, h as f64 / 1e3),
                            (Some(t), None) => format!("{:.1} s (or more: may not converge)", t as f64 / 1e3),
                            (None, _) => "does not converge".into(),
                        },
                        p.link_bps * 8.0 / 1e6
                    ));
                    preds.push(p);
                }
                Err(e) => return Ok(Err(format!("cannot predict {} on {}: {e}", m.vm, m.source.name))),
            }
        }
        // A member whose pre-copy would not converge cannot finish with the others,
        // unless it may switch to post-copy (then it counts with its post-copy finish).
        if let Some((m, p)) = req.members.iter().zip(&preds).find(|(_, p)| p.total_ms.is_none()) {
            if !req.migration.converge.allow_postcopy {
                let why = p.stuck.as_ref().map(|a| format!(
                    ": it dirties {:.1} MB/s and the link gives {:.1} MB/s; allow post-copy, or raise the bandwidth to {}",
                    a.dirty_rate_bps / 1e6,
                    a.speed_bps / 1e6,
                    a.bandwidth_needed_bps.map_or("more than 100x".into(), |b| format!("{:.1} MB/s", b / 1e6))
                ));
                return Ok(Err(format!("{} on {} would not converge{}", m.vm, m.source.name, why.unwrap_or_default())));
            }
        }
        let earliest = match earliest_common_finish(&preds, model_plan(&req.migration)) {
            Ok(f) => f * SLACK + now_s(g),
            Err(e) => return Ok(Err(format!("cannot plan the group: {e}"))),
        };
        let (t, why) = choose_target(user, earliest);
        if let Some(w) = why {
            g.event(w);
        }
        Some(t)
    } else {
        user
    };
    if let Some(t) = target {
        g.event(format!("group target: all finish {t:.1} s after the start"));
    }
    g.commit(|i| {
        i.target_s = target;
        i.status = GroupStatus::Running;
    });
    Ok(Ok(()))
}

/// Starts every member not started yet (after a restart, a member caught
/// starting is looked for on its source first). If one cannot be started, the
/// ones started are cancelled.
async fn start_members(d: &Deps, g: &Group) -> Result<(), Stopped> {
    let req = &g.request;
    for (i, m) in req.members.iter().enumerate() {
        if d.shutdown.is_cancelled() {
            return Err(Stopped);
        }
        let member = g.info().members[i].clone();
        if member.state == MemberState::Starting {
            if let Some(job) = find_job(&m.source, &m.vm, g.info().started_unix_ms).await {
                g.event(format!("{}: found its job {} on {} after the restart", m.vm, job.id, m.source.name));
                let started = job.started_unix_ms.saturating_sub(g.info().started_unix_ms) as f64 / 1000.0;
                g.commit(|info| set_running(&mut info.members[i], &job.id, started));
                continue;
            }
        }
        if member.state != MemberState::Waiting && member.state != MemberState::Starting {
            continue;
        }
        if g.cancel.is_cancelled() || g.info().members.iter().any(|x| x.state == MemberState::NotStarted) {
            g.commit(|info| not_started(&mut info.members[i], "the group was cancelled or failed first"));
            continue;
        }
        g.commit(|info| info.members[i].state = MemberState::Starting);
        let mut mreq = req.migration.clone();
        let started_s = now_s(g);
        mreq.finish_in_s = g.info().target_s.map(|t| (t - started_s).max(0.5));
        match client(&m.source).migrate(&m.vm, &mreq).await {
            Ok(job) => g.commit(|info| set_running(&mut info.members[i], &job.id, started_s)),
            Err(e) => {
                g.commit(|info| not_started(&mut info.members[i], &e.to_string()));
                g.event(format!("{} could not be started: {e}; cancelling the members started", m.vm));
                cancel_running(g).await;
            }
        }
    }
    Ok(())
}

fn set_running(m: &mut GroupMemberInfo, job: &str, started_s: f64) {
    m.state = MemberState::Running;
    m.job_id = Some(job.to_string());
    m.started_s = Some(started_s);
    m.fate = format!("migrating from {}", m.source);
}

fn not_started(m: &mut GroupMemberInfo, why: &str) {
    m.state = MemberState::NotStarted;
    m.fate = format!("not started ({why}): stays on {}", m.source);
}

/// The job a source runs (or ran) for `vm` since the group began.
async fn find_job(source: &PeerRef, vm: &str, since_unix_ms: u64) -> Option<JobInfo> {
    let jobs = client(source).jobs().await.ok()?;
    jobs.into_iter().filter(|j| j.vm == vm && j.started_unix_ms >= since_unix_ms).max_by_key(|j| j.started_unix_ms)
}

/// Cancels every member still migrating.
async fn cancel_running(g: &Group) {
    for (i, m) in g.request.members.iter().enumerate() {
        let member = g.info().members[i].clone();
        if member.state != MemberState::Running {
            continue;
        }
        if let Some(id) = &member.job_id {
            if let Err(e) = client(&m.source).cancel_job(id).await {
                if e.code() != Some(ErrorCode::Ended) {
                    warn!("group {}: cannot cancel {} on {}: {e}", g.id, id, m.source.name);
                }
            }
        }
    }
}

/// Follows the members until every one has ended.
async fn follow(d: &Deps, g: &Group) -> Result<(), Stopped> {
    let mut last_move_s = f64::NEG_INFINITY;
    let mut cancel_sent = false;
    loop {
        let members = g.info().members;
        if members.iter().all(|m| m.state.is_terminal()) {
            let status = if g.cancel.is_cancelled() {
                GroupStatus::Cancelled
            } else if members.iter().all(|m| m.state == MemberState::Completed) {
                GroupStatus::Completed
            } else {
                GroupStatus::Failed
            };
            return finish(g, status);
        }
        tokio::select! {
            _ = d.shutdown.cancelled() => return Err(Stopped),
            _ = g.cancel.cancelled(), if !cancel_sent => {
                cancel_sent = true;
                g.event("cancelled by request: members not yet switched over stay at their sources");
                cancel_running(g).await;
                continue;
            }
            _ = tokio::time::sleep(POLL) => {}
        }
        let mut latest_possible: f64 = 0.0;
        for (i, m) in g.request.members.iter().enumerate() {
            let member = g.info().members[i].clone();
            let (MemberState::Running, Some(id)) = (member.state, member.job_id.clone()) else { continue };
            let started = member.started_s.unwrap_or(0.0);
            match client(&m.source).job(&id).await {
                Ok(j) => {
                    if let Some(r) = j.result {
                        let finish = started + r.total_time_ms as f64 / 1000.0;
                        let (state, fate) = match r.status {
                            JobStatus::Completed => (MemberState::Completed, format!("runs on {}", r.vm_location)),
                            JobStatus::Cancelled => (MemberState::Cancelled, format!("cancelled: runs on {}", r.vm_location)),
                            _ => (MemberState::Failed, format!("failed: runs on {}", r.vm_location)),
                        };
                        g.event(format!("{} {} at {finish:.2} s", m.vm, fate));
                        let failed = state != MemberState::Completed && !g.cancel.is_cancelled();
                        g.commit(|info| {
                            let x = &mut info.members[i];
                            x.state = state;
                            x.fate = fate;
                            x.finish_s = Some(finish);
                            x.result = Some(r);
                            x.progress = None;
                        });
                        if failed && !g.info().members.iter().any(|x| x.state == MemberState::Completed) {
                            g.event(format!("{} did not move: cancelling the others so the group stays together", m.vm));
                            cancel_running(g).await;
                        }
                        continue;
                    }
                    // Only a member that says it cannot make the target moves the group.
                    if let Some(t) = j.target.filter(|t| !t.feasible) {
                        latest_possible = latest_possible.max(started + t.earliest_finish_ms as f64 / 1000.0);
                    }
                    g.update(|info| info.members[i].progress = Some(j.progress));
                }
                Err(ClientError::Api { code: ErrorCode::NotFound, .. }) => {
                    let fate = where_is(&m.vm, &m.source, &g.request.migration.destination).await;
                    g.event(format!("{}: its job {id} is gone from {} (agent restarted?): {fate}", m.vm, m.source.name));
                    g.commit(|info| {
                        info.members[i].state = MemberState::Lost;
                        info.members[i].fate = fate;
                        info.members[i].progress = None;
                    });
                }
                Err(e) => warn!("group {}: cannot reach {} for {}: {e}", g.id, m.source.name, m.vm),
            }
        }
        let info = g.info();
        if let Some(t) = info.target_s {
            let any_finished = info.members.iter().any(|m| m.state == MemberState::Completed);
            if let Some(new_t) = retarget(t, latest_possible, now_s(g), last_move_s, any_finished) {
                last_move_s = now_s(g);
                g.event(format!("a member predicts {latest_possible:.1} s: moving the group target to {new_t:.1} s"));
                for (i, m) in g.request.members.iter().enumerate() {
                    let member = &info.members[i];
                    if let (MemberState::Running, Some(id)) = (member.state, &member.job_id) {
                        let _ = client(&m.source).retarget_job(id, Some((new_t - now_s(g)).max(0.5))).await;
                    }
                }
                g.commit(|i| i.target_s = Some(new_t));
            }
        }
    }
}

/// Where a VM whose job was lost runs now, in words.
async fn where_is(vm: &str, source: &PeerRef, dest: &PeerRef) -> String {
    for p in [dest, source] {
        if let Ok(v) = client(p).vm(vm).await {
            if v.state == VmState::Running && v.origin != pacer_api::VmOrigin::Incoming {
                return format!("runs on {}", p.name);
            }
        }
    }
    format!("not found running on {} or {}", source.name, dest.name)
}

/// Ends the group with `status` and its outcome.
fn finish(g: &Group, status: GroupStatus) -> Result<(), Stopped> {
    let info = g.info();
    let results: Vec<_> = info.members.iter().map(|m| m.result.clone()).collect();
    let finish_s: Vec<_> = info.members.iter().map(|m| m.finish_s).collect();
    let result = outcome(&results, &finish_s, info.target_s, now_s(g));
    g.event(format!(
        "group ended ({status:?}): finish spread {:.2} s; {}",
        result.spread_s,
        info.members.iter().map(|m| format!("{} {}", m.vm, m.fate)).collect::<Vec<_>>().join(", ")
    ));
    g.commit(|i| {
        i.status = status;
        i.result = Some(result);
    });
    Ok(())
}

/// Asks a group to stop: members not yet switched over are cancelled.
pub fn cancel(groups: &GroupTable, id: &str) -> AgentResult<GroupInfo> {
    let g = groups.get(id)?;
    let info = g.info();
    if info.status.is_terminal() {
        return Err(AgentError::Ended { what: "group", id: id.into(), how: format!("{:?}", info.status), action: "cancel" });
    }
    g.cancel.cancel();
    Ok(info)
}
