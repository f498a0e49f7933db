//! `pacer migrate-group` and `pacer group`: move several VMs (from one or
//! several source hosts) to one destination so that they finish together.
//!
//! The CLI only submits the group and follows it: the destination's agent
//! coordinates it (predicts each member, plans a common finish, paces every
//! migration to it and moves the target if one falls behind) and journals it,
//! so the group goes on if the CLI dies and resumes if that agent restarts.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pacer_api::{AgentClient, GroupInfo, GroupMemberRequest, GroupRequest, MemberState};

use crate::hosts::Hosts;
use crate::migrate::{peer_of, MigrateOpts};

/// Submits a group migration to the destination's agent. `coordinate = false`
/// starts every member flat out at once (for comparison).
pub async fn submit(hosts: &Hosts, vms: &[String], opts: &MigrateOpts, coordinate: bool) -> Result<(AgentClient, GroupInfo)> {
    if vms.is_empty() {
        bail!("give at least one VM");
    }
    let mut seen = HashSet::new();
    for v in vms {
        if !seen.insert(v) {
            bail!("VM {v:?} is listed twice");
        }
    }
    let dest = hosts.get(&opts.to)?.clone();
    let mut members = Vec::new();
    for v in vms {
        let (h, _) = hosts.locate(v).await?;
        if h == dest.name {
            bail!("VM {v:?} already runs on {}", dest.name);
        }
        members.push(GroupMemberRequest { vm: v.clone(), source: peer_of(hosts.get(&h)?) });
    }
    let req = GroupRequest { members, migration: opts.request(peer_of(&dest))?, coordinate };
    let coordinator = hosts.client(&dest.name)?;
    let info = coordinator.submit_group(&req).await.context("submitting the group")?;
    Ok((coordinator, info))
}

/// Follows a group until it ends, printing its events and a line a second on
/// stderr. Ctrl-C cancels the group (members not yet switched over stay where
/// they are); any other way of ending the CLI leaves the group running.
pub async fn follow(coordinator: &AgentClient, id: &str) -> Result<GroupInfo> {
    let mut seen_events = 0;
    let mut last_line = Instant::now() - Duration::from_secs(5);
    let mut cancel_sent = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let g = coordinator.group(id).await.context("following the group")?;
        for e in &g.events[seen_events.min(g.events.len())..] {
            eprintln!("  {e}");
        }
        seen_events = g.events.len();
        if g.status.is_terminal() {
            return Ok(g);
        }
        if last_line.elapsed() >= Duration::from_secs(1) {
            let elapsed = crate::unix_ms().saturating_sub(g.started_unix_ms) as f64 / 1000.0;
            let line: Vec<String> = g
                .members
                .iter()
                .map(|m| match (&m.progress, m.state) {
                    (Some(p), MemberState::Running) => format!("{} {:.0}% {}", m.vm, p.percent, p.phase),
                    (_, s) => format!("{} {}", m.vm, format!("{s:?}").to_lowercase()),
                })
                .collect();
            eprintln!("  {elapsed:6.1} s  {}", line.join("  "));
            last_line = Instant::now();
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = &mut ctrl_c, if !cancel_sent => {
                eprintln!("  cancelling the group (Ctrl-C): members not yet moved stay where they are");
                let _ = coordinator.cancel_group(id).await;
                cancel_sent = true;
            }
        }
    }
}

/// The agents of the hosts file that coordinate groups, with their groups.
pub async fn all_groups(hosts: &Hosts) -> Vec<(String, GroupInfo)> {
    let mut out = Vec::new();
    for h in &hosts.file.hosts {
        if let Ok(c) = hosts.client(&h.name) {
            if let Ok(gs) = c.groups().await {
                out.extend(gs.into_iter().map(|g| (h.name.clone(), g)));
            }
        }
    }
    out
}

/// A human summary of a group.
pub fn summary(g: &GroupInfo) -> String {
    let mut s = format!("group {} (coordinated by {}): {:?}\n", g.id, g.coordinator, g.status);
    for m in &g.members {
        match &m.result {
            Some(r) => s.push_str(&format!(
                "{:<12} {:?}: {}; total {:.2} s, finished at {:.2} s, downtime {} ms, sent {}\n",
                m.vm,
                r.status,
                m.fate,
                r.total_time_ms as f64 / 1000.0,
                m.finish_s.unwrap_or(0.0),
                r.downtime_ms.unwrap_or(0),
                pacer_model::format_bytes(r.bytes_transferred)
            )),
            None => s.push_str(&format!("{:<12} {}\n", m.vm, m.fate)),
        }
    }
    let relayed: Vec<&pacer_api::RelayReport> =
        g.members.iter().filter_map(|m| m.result.as_ref()?.relay.as_ref()).filter(|r| r.relayed).collect();
    if !relayed.is_empty() {
        let (stream, wire) = relayed.iter().fold((0, 0), |a, r| (a.0 + r.stream_bytes, a.1 + r.wire_bytes));
        s.push_str(&format!(
            "through the relays: {} of streams crossed as {} ({:.0}% less)\n",
            pacer_model::format_bytes(stream),
            pacer_model::format_bytes(wire),
            (1.0 - wire as f64 / stream.max(1) as f64) * 100.0
        ));
    }
    if let Some(t) = g.target_s {
        s.push_str(&format!("group target {t:.2} s; "));
    }
    if let Some(r) = &g.result {
        s.push_str(&format!("finish spread {:.2} s; split across hosts for {:.2} s", r.spread_s, r.split_s));
    }
    s
}
