//! `pacer-lab bench group` answers "do coordinated migrations finish together?": two
//! (or three) guests of different sizes and write rates on h1 are migrated to h2
//! together, once started together flat out (uncoordinated) and once through
//! `migrate-group`'s coordination (a common finish target every migration is
//! paced to). For each: when each VM finished, the spread between the first and
//! the last finish, the time the group was split across the hosts, and the
//! whole group's time. The goal: a coordinated spread of at most 1 s.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use pacer_api::Strategy;
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;

use super::harness::{parse_prior_wait, plot_path, wait_prior, write_svg};
use super::plot::{Chart, Line, Rule, PALETTE};
use super::record::MigrationRecord;
use super::{
    fmt_sent, fmt_total, parse_link_rate, prepare_out, push_list, stop_on_ctrl_c, unix_ms,
    write_results,
};
use crate::live::{start_guest, GuestPlan, LiveBed};
use pacer_api::GroupResult;
use pacer_cli::migrate::MigrateOpts;

/// Test bed name.
const BED: &str = "bgrp";
/// The goal: the last VM finishes at most this long after the first, seconds.
const GOAL_SPREAD_S: f64 = 1.0;
/// Longest a group may take before it is given up.
const GROUP_TIMEOUT: Duration = Duration::from_secs(600);

/// The group's members: (role, memory MiB, working set MiB, write rate MB/s).
const MEMBERS: [(&str, u64, u64, f64); 3] = [
    ("big", 1024, 256, 20.0),
    ("small", 512, 64, 5.0),
    ("idle", 768, 128, 0.0),
];

/// How the group is migrated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// All started at once, flat out.
    Uncoordinated,
    /// A common finish target, every migration paced to it.
    Coordinated,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Uncoordinated => "uncoordinated",
            Mode::Coordinated => "coordinated",
        }
    }
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s.trim() {
        "uncoordinated" | "unco" => Ok(Mode::Uncoordinated),
        "coordinated" | "co" => Ok(Mode::Coordinated),
        "" => Err("empty mode: give coordinated, uncoordinated or both".into()),
        o => Err(format!(
            "unknown mode {o:?}: use coordinated or uncoordinated"
        )),
    }
}

fn parse_vms(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (2..=3).contains(&n) => Ok(n),
        _ => Err(format!("{s:?}: give 2 or 3 VMs")),
    }
}

/// Options of `pacer-lab bench group`.
#[derive(Debug, Clone, clap::Args)]
pub struct GroupOpts {
    /// Where to write the results as JSON (plots go beside it).
    #[arg(long, default_value = "bench-results/group.json")]
    pub out: PathBuf,
    /// Link rate between the two test hosts.
    #[arg(long, default_value = "1gbit", value_parser = parse_link_rate)]
    pub rate: String,
    /// VMs in the group: 2 (1 GiB writing 20 MB/s, 512 MiB writing 5 MB/s) or 3 (and an idle 768 MiB).
    #[arg(long, default_value = "2", value_parser = parse_vms)]
    pub vms: usize,
    /// Modes, comma-separated, in this order.
    #[arg(long, value_delimiter = ',', value_parser = parse_mode, default_value = "uncoordinated,coordinated")]
    pub modes: Vec<Mode>,
    /// How long the guests run before they are migrated (the agent measures them meanwhile).
    #[arg(long, default_value = "20s", value_parser = parse_prior_wait)]
    pub prior_wait: f64,
}

/// One VM of a group run.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    /// Role (`big`, `small`, `idle`).
    pub role: String,
    /// VM name.
    pub name: String,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Working set, MiB.
    pub wss_mib: u64,
    /// Write rate, MB/s.
    pub write_rate_mbps: f64,
    /// How its migration went.
    #[serde(flatten)]
    pub run: MigrationRecord,
    /// When its migration was started, s after the group started.
    pub start_s: Option<f64>,
    /// When it finished, s after the group started.
    pub finish_s: Option<f64>,
}

/// One migration of the group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupRun {
    /// Mode.
    pub mode: Mode,
    /// `completed` (all did), `failed` or `error`.
    pub status: String,
    /// Why it failed.
    pub reason: Option<String>,
    /// The VMs.
    pub members: Vec<Member>,
    /// The common target, s after the group started.
    pub target_s: Option<f64>,
    /// Last finish - first finish, s.
    pub spread_s: Option<f64>,
    /// Time some VMs ran at the destination and others at the source, s.
    pub split_s: Option<f64>,
    /// The last finish, s after the group started.
    pub total_s: Option<f64>,
    /// Spread within the goal.
    pub within_goal: Option<bool>,
    /// The plot.
    pub plot: Option<String>,
    /// Start, Unix ms.
    pub started_unix_ms: u64,
    /// The whole run, ms.
    pub wall_ms: u64,
}

impl GroupRun {
    fn new(mode: Mode) -> Self {
        GroupRun {
            mode,
            status: "error".into(),
            reason: None,
            members: Vec::new(),
            target_s: None,
            spread_s: None,
            split_s: None,
            total_s: None,
            within_goal: None,
            plot: None,
            started_unix_ms: unix_ms(),
            wall_ms: 0,
        }
    }

    /// Takes the group's result.
    fn fill(&mut self, g: &GroupResult) {
        for (m, (r, fin)) in self
            .members
            .iter_mut()
            .zip(g.results.iter().zip(&g.finish_s))
        {
            let (Some(r), Some(fin)) = (r, *fin) else {
                m.run.status = "not started".into();
                continue;
            };
            m.run.fill(r);
            m.finish_s = Some(fin);
            m.start_s = Some(fin - r.total_time_ms as f64 / 1000.0);
        }
        self.target_s = g.target_s;
        self.status = if g.all_completed {
            "completed"
        } else {
            "failed"
        }
        .into();
        if g.all_completed {
            self.spread_s = Some(g.spread_s);
            self.split_s = Some(g.split_s);
            self.total_s = g.finish_s.iter().flatten().copied().reduce(f64::max);
            self.within_goal = Some(g.spread_s <= GOAL_SPREAD_S);
        } else {
            self.reason = Some(
                self.members
                    .iter()
                    .filter(|m| !m.run.completed())
                    .map(|m| {
                        format!(
                            "{}: {}",
                            m.name,
                            m.run.reason.as_deref().unwrap_or(&m.run.status)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            );
        }
    }
}

fn members(n: usize, prefix: &str) -> Vec<Member> {
    MEMBERS
        .iter()
        .take(n)
        .map(|&(role, mem, wss, rate)| Member {
            role: role.into(),
            name: format!("{prefix}-{role}"),
            memory_mib: mem,
            wss_mib: wss,
            write_rate_mbps: rate,
            run: MigrationRecord::default(),
            start_s: None,
            finish_s: None,
        })
        .collect()
}

fn secs(v: Option<f64>) -> String {
    v.map(|s| format!("{s:.2} s")).unwrap_or_else(|| "-".into())
}

/// The table printed at the end.
pub fn render_table(runs: &[GroupRun], opts: &GroupOpts) -> String {
    let mut out = String::new();
    let roles: Vec<&str> = MEMBERS.iter().take(opts.vms).map(|m| m.0).collect();
    let mut head = format!("{:<15}", "mode");
    for r in &roles {
        head.push_str(&format!("{:<11}", format!("{r} done")));
    }
    head.push_str(&format!(
        "{:<10}{:<10}{:<10}{:<10}{}",
        "spread", "split", "total", "target", "goal (spread <= 1 s)"
    ));
    out.push_str(head.trim_end());
    out.push('\n');
    for g in runs {
        let mut line = format!("{:<15}", g.mode.as_str());
        for m in &g.members {
            line.push_str(&format!("{:<11}", secs(m.finish_s)));
        }
        for _ in g.members.len()..roles.len() {
            line.push_str(&format!("{:<11}", "-"));
        }
        let goal = match (g.mode, g.within_goal) {
            (_, None) => g.status.to_uppercase(),
            (Mode::Uncoordinated, Some(w)) => {
                format!("{} (reference)", if w { "within" } else { "over" })
            }
            (Mode::Coordinated, Some(true)) => "ok".into(),
            (Mode::Coordinated, Some(false)) => "MISSED".into(),
        };
        line.push_str(&format!(
            "{:<10}{:<10}{:<10}{:<10}{}",
            secs(g.spread_s),
            secs(g.split_s),
            secs(g.total_s),
            secs(g.target_s),
            goal
        ));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "\ntimes in s after the group started; done = that VM running at h2; spread = last done - \
         first done; split = time some VMs ran at h2 and others still at h1; total = last done. \
         pre-copy over {}, guests run {:.0} s before the group starts.\n",
        opts.rate, opts.prior_wait
    ));
    for (i, role) in roles.iter().enumerate() {
        let (_, mem, wss, rate) = MEMBERS[i];
        let mut s = format!(
            "  {role:<6} {} guest, {} working set, {}:",
            pacer_model::format_bytes(mem << 20),
            pacer_model::format_bytes(wss << 20),
            if rate > 0.0 {
                format!("writing {rate} MB/s")
            } else {
                "idle".into()
            }
        );
        for g in runs {
            if let Some(m) = g.members.get(i) {
                s.push_str(&format!(
                    " {} started {} took {} sent {};",
                    g.mode.as_str(),
                    secs(m.start_s),
                    fmt_total(m.run.total_time_ms.map(|v| v as f64)),
                    fmt_sent(m.run.bytes_transferred.map(|v| v as f64))
                ));
            }
        }
        out.push_str(s.trim_end_matches(';'));
        out.push('\n');
    }
    let co: Vec<&GroupRun> = runs
        .iter()
        .filter(|g| g.mode == Mode::Coordinated)
        .collect();
    if !co.is_empty() {
        let ok = co.iter().all(|g| g.within_goal == Some(true));
        out.push_str(&format!(
            "goal: coordinated finish spread at most {GOAL_SPREAD_S:.0} s: {}\n",
            if ok { "MET" } else { "NOT MET" }
        ));
        if let (Some(c), Some(u)) = (
            co[0].total_s,
            runs.iter()
                .find(|g| g.mode == Mode::Uncoordinated)
                .and_then(|g| g.total_s),
        ) {
            out.push_str(&format!(
                "cost: the coordinated group took {:.2} s to finish, the uncoordinated one {:.2} s ({:+.0}%)\n",
                c,
                u,
                (c / u - 1.0) * 100.0
            ));
        }
    }
    let checks: Vec<String> = runs
        .iter()
        .flat_map(|g| g.members.iter().map(move |m| (g, m)))
        .filter(|(_, m)| m.run.integrity_ok == Some(false))
        .map(|(g, m)| format!("  {} {}: guest check FAILED", g.mode.as_str(), m.name))
        .collect();
    let failures: Vec<String> = runs
        .iter()
        .filter(|g| g.status != "completed")
        .map(|g| {
            format!(
                "  {}: {}: {}",
                g.mode.as_str(),
                g.status,
                g.reason.as_deref().unwrap_or("no reason given")
            )
        })
        .chain(checks)
        .collect();
    push_list(&mut out, "failed runs", &failures);
    out
}

/// The plot of one group run: each VM's predicted finish (in group time) and
/// its actual finish, with the common target.
pub fn chart(g: &GroupRun) -> Option<Chart> {
    let mut lines = Vec::new();
    let mut hrules = Vec::new();
    let mut hi: f64 = 0.0;
    for (i, m) in g.members.iter().enumerate() {
        let start = m.start_s?;
        let color = PALETTE[i % PALETTE.len()];
        let pts: Vec<(f64, f64)> = m
            .run
            .predictions
            .iter()
            .filter_map(|p| Some((start + p.elapsed_ms as f64 / 1000.0, start + p.total_ms? as f64 / 1000.0)))
            .collect();
        lines.push(Line::new(
            &format!("{}: predicted finish", m.role),
            color,
            pts,
        ));
        if let Some(f) = m.finish_s {
            hrules.push(Rule::new(
                &format!("{}: done at {f:.2} s", m.role),
                color,
                true,
                f,
            ));
            hi = hi.max(f);
        }
    }
    if let Some(t) = g.target_s {
        hrules.push(Rule::new(
            &format!("group target {t:.2} s"),
            "#000000",
            false,
            t,
        ));
        hi = hi.max(t);
    }
    Some(Chart {
        title: format!(
            "group, {}: predicted and actual finish of each VM",
            g.mode.as_str()
        ),
        x_label: "time since the group started (s)".into(),
        y_label: "finish, s after the group started".into(),
        lines,
        bands: vec![],
        hrules,
        vrules: vec![],
        y_max: (hi > 0.0).then_some(hi * 3.0),
        notes: vec![],
    })
}

/// Runs `pacer-lab bench group`.
pub async fn run(opts: &GroupOpts) -> Result<i32> {
    if opts.modes.is_empty() {
        anyhow::bail!("--modes is empty: give coordinated, uncoordinated or both");
    }
    prepare_out(&opts.out)?;
    let mut bed = LiveBed::up_shaped(BED, &opts.rate)?;
    let stop = stop_on_ctrl_c();
    let mut runs: Vec<GroupRun> = Vec::new();
    for (i, &mode) in opts.modes.iter().enumerate() {
        if *stop.borrow() {
            break;
        }
        let tag = format!("[{}/{}] {}", i + 1, opts.modes.len(), mode.as_str());
        eprintln!("{tag}: starting {} guests on h1", opts.vms);
        let mut rec = GroupRun::new(mode);
        rec.members = members(opts.vms, &format!("bg{}", i + 1));
        let t = Instant::now();
        one_run(&mut bed, opts, &mut rec, &stop).await;
        if *stop.borrow() && rec.status == "error" {
            rec.status = "cancelled".into();
            rec.reason = Some("interrupted".into());
        }
        for m in &rec.members {
            bed.cleanup(&m.name, &[]).await;
        }
        rec.wall_ms = t.elapsed().as_millis() as u64;
        if let Some(c) = chart(&rec) {
            let file = plot_path(&opts.out, mode.as_str());
            rec.plot = write_svg(&file, &c.to_svg());
        }
        eprintln!(
            "{tag}: {}",
            match rec.spread_s {
                Some(s) => format!("all done; spread {s:.2} s, last at {}", secs(rec.total_s)),
                None => format!(
                    "{}: {}",
                    rec.status,
                    rec.reason.as_deref().unwrap_or("no reason given")
                ),
            }
        );
        runs.push(rec);
        save(opts, &bed, &runs)?;
    }
    bed.close("benchmark");
    print!("{}", render_table(&runs, opts));
    println!("\nall runs: {} (plots beside it)", opts.out.display());
    let ok = runs.len() == opts.modes.len()
        && runs.iter().all(|g| g.status == "completed")
        && runs
            .iter()
            .filter(|g| g.mode == Mode::Coordinated)
            .all(|g| g.within_goal == Some(true));
    Ok(if ok { 0 } else { 1 })
}

fn save(opts: &GroupOpts, bed: &LiveBed, runs: &[GroupRun]) -> Result<()> {
    let config = json!({
        "link_rate": opts.rate,
        "vms": opts.vms,
        "modes": opts.modes,
        "prior_wait_s": opts.prior_wait,
        "goal_spread_s": GOAL_SPREAD_S,
        "strategy": "pre-copy",
    });
    write_results(&opts.out, "group", bed, config, json!({"runs": runs}))
}

async fn one_run(
    bed: &mut LiveBed,
    opts: &GroupOpts,
    rec: &mut GroupRun,
    stop: &watch::Receiver<bool>,
) {
    let plans: Vec<GuestPlan> = rec
        .members
        .iter()
        .map(|m| GuestPlan::memory(&m.name, m.memory_mib, m.wss_mib, m.write_rate_mbps))
        .collect();
    for g in &plans {
        if let Err(e) = start_guest(bed, g, &mut Vec::new(), stop).await {
            rec.reason = Some(format!("{}: {e:#}", g.name));
            return;
        }
    }
    eprintln!(
        "  letting them run {:.0} s so the agent measures them",
        opts.prior_wait
    );
    if !wait_prior(Duration::from_secs_f64(opts.prior_wait), stop).await {
        return;
    }
    let names: Vec<String> = rec.members.iter().map(|m| m.name.clone()).collect();
    let mopts = MigrateOpts::new("h2", Strategy::PreCopy);
    let coordinate = rec.mode == Mode::Coordinated;
    let mut stop = stop.clone();
    let r = tokio::select! {
        r = tokio::time::timeout(GROUP_TIMEOUT, migrate_group(&bed.hosts, &names, &mopts, coordinate)) => r,
        _ = stop.wait_for(|s| *s) => {
            rec.reason = Some("interrupted (the test bed's removal stops the migrations)".into());
            rec.status = "cancelled".into();
            return;
        }
    };
    match r {
        Err(_) => rec.reason = Some(format!("not done after {} s", GROUP_TIMEOUT.as_secs())),
        Ok(Err(e)) => rec.reason = Some(format!("{e:#}")),
        Ok(Ok(g)) => rec.fill(&g),
    }
}

/// Submits the group to the destination's agent and waits for its result.
async fn migrate_group(hosts: &pacer_cli::hosts::Hosts, names: &[String], mopts: &MigrateOpts, coordinate: bool) -> Result<GroupResult> {
    let (coordinator, g) = pacer_cli::group::submit(hosts, names, mopts, coordinate).await?;
    let g = pacer_cli::group::follow(&coordinator, &g.id).await?;
    g.result.ok_or_else(|| anyhow::anyhow!("group {} ended without a result", g.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacer_api::{MigrationResult, PredictionPoint};

    fn opts() -> GroupOpts {
        GroupOpts {
            out: "x.json".into(),
            rate: "1gbit".into(),
            vms: 2,
            modes: vec![Mode::Uncoordinated, Mode::Coordinated],
            prior_wait: 20.0,
        }
    }

    fn result(total: u64, p: Vec<PredictionPoint>) -> MigrationResult {
        serde_json::from_value(json!({
            "status": "completed", "vm": "v", "strategy": "pre-copy", "total_time_ms": total,
            "downtime_ms": 250, "bytes_transferred": 100_000_000u64, "source": "h1",
            "destination": "h2", "vm_location": "h2", "reason": null, "qemu_total_time_ms": 1,
            "rounds": 4, "precopy_bytes": 1, "downtime_bytes": 1, "postcopy_bytes": 0,
            "integrity": {"ok": true, "pages_checked": 1, "bad_pages": 0, "errors_total": 0,
                          "duration_ms": 1},
            "predictions": p,
        }))
        .unwrap()
    }

    fn group(finish: [f64; 2], totals: [u64; 2], target: Option<f64>) -> GroupResult {
        let p = vec![PredictionPoint {
            elapsed_ms: 1000,
            total_ms: Some(5000),
            low_ms: 4000,
            high_ms: Some(6000),
            downtime_ms: 1,
            naive_total_ms: None,
            ..Default::default()
        }];
        GroupResult {
            results: vec![Some(result(totals[0], p.clone())), Some(result(totals[1], p))],
            finish_s: finish.iter().map(|f| Some(*f)).collect(),
            target_s: target,
            spread_s: (finish[0] - finish[1]).abs(),
            split_s: (finish[0] - finish[1]).abs(),
            all_completed: true,
        }
    }

    #[test]
    fn options() {
        assert_eq!(parse_vms("3"), Ok(3));
        assert!(parse_vms("4").is_err());
        assert_eq!(parse_mode("co"), Ok(Mode::Coordinated));
        assert!(parse_mode("both").is_err());
        assert_eq!(members(3, "bg1")[2].name, "bg1-idle");
        assert_eq!(members(2, "x").len(), 2);
    }

    #[test]
    fn table_and_goal() {
        let mut u = GroupRun::new(Mode::Uncoordinated);
        u.members = members(2, "bg1");
        u.fill(&group([4.2, 1.7], [4100, 1600], None));
        assert!((u.members[1].start_s.unwrap() - 0.1).abs() < 1e-9);
        assert_eq!(u.within_goal, Some(false));
        let mut c = GroupRun::new(Mode::Coordinated);
        c.members = members(2, "bg2");
        c.fill(&group([8.3, 8.0], [8000, 7600], Some(8.4)));
        assert_eq!(c.within_goal, Some(true));
        let t = render_table(&[u, c.clone()], &opts());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "mode           big done   small done spread    split     total     target    goal (spread <= 1 s)"
        );
        assert_eq!(
            lines[1],
            "uncoordinated  4.20 s     1.70 s     2.50 s    2.50 s    4.20 s    -         over (reference)"
        );
        assert!(
            lines[2].starts_with("coordinated    8.30 s     8.00 s     0.30 s"),
            "{t}"
        );
        assert!(lines[2].ends_with("8.40 s    ok"), "{t}");
        assert!(
            t.contains("coordinated finish spread at most 1 s: MET"),
            "{t}"
        );
        assert!(
            t.contains("took 8.30 s to finish, the uncoordinated one 4.20 s (+98%)"),
            "{t}"
        );
        let svg = chart(&c).unwrap().to_svg();
        assert!(svg.contains("group target 8.40 s"));
        assert!(svg.contains("small: done at 8.00 s"));
    }
}
