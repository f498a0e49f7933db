//! `pacer-lab bench control` answers "does a migration finish when it is told to, and
//! how gently?": it migrates a fresh guest flat out (no target) to learn the
//! fastest time, then with finish targets at multiples of it (1.2x, 1.5x, 2x by
//! default), and once with a target it cannot meet (0.5x). For each target: how
//! far from it the migration finished, whether within max(2%, 1 s), and the bytes
//! sent and mean rate (bytes / total time) against the flat-out run. For the
//! infeasible one: whether it was reported infeasible at once, and how it ended.
//!
//! (About 650 lines outside tests: one benchmark, its runs, table, JSON and plots,
//! read together.)

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use pacer_api::MigrationResult;
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;

use super::harness::{
    follow_migration, migration_limit, parse_prior_wait, plot_path, precopy_request,
    prediction_chart, wait_prior, write_svg, Sample, LIMIT_BASE,
};
use super::plot::{Chart, Rule, PALETTE};
use super::record::MigrationRecord;
use super::{
    check_fits, fmt_downtime, fmt_sent, fmt_total, parse_link_rate, parse_mib, parse_write_rate,
    prepare_out, push_list, stop_on_ctrl_c, unix_ms, write_results,
};
use crate::live::{guest_rates, start_guest, GuestPlan, LiveBed};

/// Test bed name.
const BED: &str = "bctl";
/// A finish counts as on target within this share of the target...
const TOLERANCE_SHARE: f64 = 0.02;
/// ...or this many ms, whichever is larger.
const TOLERANCE_MIN_MS: f64 = 1000.0;

fn parse_factor(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f.is_finite() && (1.0..=10.0).contains(&f) => Ok(f),
        Ok(f) if f.is_finite() && f > 0.0 && f < 1.0 => Err(format!(
            "{s:?} is below 1: such a target is infeasible; use --infeasible-factor for that run"
        )),
        _ => Err(format!(
            "{s:?} is not a factor of the flat-out time from 1 to 10 (e.g. 1.5)"
        )),
    }
}

fn parse_infeasible(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f == 0.0 || (0.05..1.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "{s:?}: give a factor of the flat-out time below 1 (e.g. 0.5), or 0 for no such run"
        )),
    }
}

/// Options of `pacer-lab bench control`.
#[derive(Debug, Clone, clap::Args)]
pub struct ControlOpts {
    /// Where to write every run as JSON (plots go beside it).
    #[arg(long, default_value = "bench-results/control.json")]
    pub out: PathBuf,
    /// Link rate between the two test hosts.
    #[arg(long, default_value = "1gbit", value_parser = parse_link_rate)]
    pub rate: String,
    /// Guest memory.
    #[arg(long, default_value = "1G", value_parser = parse_mib)]
    pub memory: u64,
    /// Working set of the guest's memory writer.
    #[arg(long, default_value = "256M", value_parser = parse_mib)]
    pub wss: u64,
    /// Guest memory write rate, uniform over the working set (0 = idle).
    #[arg(long, default_value = "30MB/s", value_parser = parse_write_rate)]
    pub write_rate: f64,
    /// Finish targets, as factors of the flat-out time, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_factor, default_value = "1.2,1.5,2")]
    pub factors: Vec<f64>,
    /// One run with a target this factor of the flat-out time (0 = none).
    #[arg(long, default_value = "0.5", value_parser = parse_infeasible)]
    pub infeasible_factor: f64,
    /// How long each guest runs before it is migrated (the agent measures it meanwhile).
    #[arg(long, default_value = "20s", value_parser = parse_prior_wait)]
    pub prior_wait: f64,
}

impl ControlOpts {
    fn validate(&self) -> Result<()> {
        if self.factors.is_empty() && self.infeasible_factor == 0.0 {
            bail!("nothing to run: give --factors or an --infeasible-factor");
        }
        check_fits(self.wss, self.memory)?;
        let link = crate::net::parse_rate(&self.rate)? as f64 / 8e6;
        if link > 0.0 && self.write_rate >= 0.8 * link {
            bail!(
                "--write-rate {} MB/s is too close to the link ({link:.1} MB/s): pre-copy would \
                 not converge",
                self.write_rate
            );
        }
        Ok(())
    }

    /// The runs in order: flat out, the targets (ascending), the infeasible one.
    fn plan(&self) -> Vec<Kind> {
        let mut f = self.factors.clone();
        f.sort_by(|a, b| a.total_cmp(b));
        f.dedup();
        let mut v = vec![Kind::Flat];
        v.extend(f.into_iter().map(Kind::Target));
        if self.infeasible_factor > 0.0 {
            v.push(Kind::Infeasible(self.infeasible_factor));
        }
        v
    }
}

/// What a run aims at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "factor")]
pub enum Kind {
    /// No target.
    Flat,
    /// A target this factor of the flat-out time.
    Target(f64),
    /// A target below what is possible.
    Infeasible(f64),
}

impl Kind {
    fn label(self) -> String {
        match self {
            Kind::Flat => "flat out".into(),
            Kind::Target(f) => format!("{f}x"),
            Kind::Infeasible(f) => format!("{f}x"),
        }
    }

    fn factor(self) -> Option<f64> {
        match self {
            Kind::Flat => None,
            Kind::Target(f) | Kind::Infeasible(f) => Some(f),
        }
    }

    fn file_part(self) -> String {
        match self {
            Kind::Flat => "flat".into(),
            k => format!("{}x", k.factor().unwrap_or(0.0)).replace('.', "_"),
        }
    }
}

/// One migration.
#[derive(Debug, Clone, Serialize)]
pub struct ControlRun {
    /// What it aimed at.
    pub kind: Kind,
    /// Position (1-based).
    pub seq: usize,
    /// How it went.
    #[serde(flatten)]
    pub run: MigrationRecord,
    /// The finish target asked for, seconds from the request.
    pub target_s: Option<f64>,
    /// Actual minus target, ms.
    pub deviation_ms: Option<f64>,
    /// Within max(2%, 1 s) of the target.
    pub within: Option<bool>,
    /// Bytes sent / total time, bytes/s.
    pub mean_rate_bps: Option<f64>,
    /// Bytes sent, as a ratio to the flat-out run's.
    pub bytes_vs_flat: Option<f64>,
    /// Mean rate, as a ratio to the flat-out run's.
    pub rate_vs_flat: Option<f64>,
    /// The answer to the request already said the target cannot be met.
    pub infeasible_in_answer: Option<bool>,
    /// That note.
    pub answer_note: Option<String>,
    /// The target's feasibility at the first poll that showed it, and when (ms).
    pub first_feasible: Option<(bool, u64)>,
    /// Whether the target ever showed as feasible.
    pub ever_feasible: Option<bool>,
    /// The target's status at the end.
    pub final_target: Option<pacer_api::TargetStatus>,
    /// The guest's write rate just before the migration (MB/s).
    pub guest_write_mbps: Option<f64>,
    /// What every poll saw.
    pub samples: Vec<Sample>,
    /// The plot.
    pub plot: Option<String>,
    /// Start, Unix ms.
    pub started_unix_ms: u64,
    /// The whole run, ms.
    pub wall_ms: u64,
}

impl ControlRun {
    fn new(kind: Kind, seq: usize) -> Self {
        ControlRun {
            kind,
            seq,
            run: MigrationRecord::default(),
            target_s: None,
            deviation_ms: None,
            within: None,
            mean_rate_bps: None,
            bytes_vs_flat: None,
            rate_vs_flat: None,
            infeasible_in_answer: None,
            answer_note: None,
            first_feasible: None,
            ever_feasible: None,
            final_target: None,
            guest_write_mbps: None,
            samples: Vec::new(),
            plot: None,
            started_unix_ms: unix_ms(),
            wall_ms: 0,
        }
    }

    fn completed(&self) -> bool {
        self.run.completed()
    }

    /// Measures the result against the target and the flat-out run (`flat`:
    /// its bytes and mean rate); the shared record already took the result.
    fn measure(&mut self, r: &MigrationResult, flat: Option<(f64, f64)>) {
        self.final_target = r.target;
        let (Some(total), Some(bytes)) = (self.run.total_time_ms, self.run.bytes_transferred)
        else {
            return;
        };
        if total > 0 {
            self.mean_rate_bps = Some(bytes as f64 / (total as f64 / 1000.0));
        }
        if let Some(t) = self.target_s {
            let dev = total as f64 - t * 1000.0;
            self.deviation_ms = Some(dev);
            self.within = Some(dev.abs() <= tolerance_ms(t));
        }
        if let Some((b, rate)) = flat {
            self.bytes_vs_flat = (b > 0.0).then(|| bytes as f64 / b);
            self.rate_vs_flat = match self.mean_rate_bps {
                Some(m) if rate > 0.0 => Some(m / rate),
                _ => None,
            };
        }
    }

    /// Feasibility as the job showed it.
    fn read_feasibility(&mut self, answer_events: &[String]) {
        let note = answer_events.iter().find(|e| e.contains("cannot be met"));
        self.infeasible_in_answer = Some(note.is_some());
        self.answer_note = note.cloned();
        self.first_feasible = self
            .samples
            .iter()
            .find_map(|s| s.target.map(|t| (t.feasible, s.at_ms)));
        let seen: Vec<bool> = self
            .samples
            .iter()
            .filter_map(|s| s.target.map(|t| t.feasible))
            .collect();
        self.ever_feasible = (!seen.is_empty()).then(|| seen.iter().any(|f| *f));
    }

    fn outcome_line(&self) -> String {
        if let Some(f) = self.run.failure() {
            return f;
        }
        let mut s = format!(
            "completed in {}, sent {}",
            fmt_total(self.run.total_time_ms.map(|v| v as f64)),
            fmt_sent(self.run.bytes_transferred.map(|v| v as f64))
        );
        if let (Some(t), Some(d)) = (self.target_s, self.deviation_ms) {
            s.push_str(&format!(
                "; target {t:.2} s, {}{}",
                fmt_deviation(d, t),
                if self.within == Some(true) {
                    " (on target)"
                } else {
                    " (OFF target)"
                }
            ));
        }
        s
    }
}

/// The tolerance around a target of `target_s`: max(2%, 1 s), in ms.
pub fn tolerance_ms(target_s: f64) -> f64 {
    (TOLERANCE_SHARE * target_s * 1000.0).max(TOLERANCE_MIN_MS)
}

fn fmt_deviation(dev_ms: f64, target_s: f64) -> String {
    format!(
        "{:+.2} s ({:+.1}%)",
        dev_ms / 1000.0,
        dev_ms / (target_s * 10.0)
    )
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.3}")).unwrap_or_else(|| "-".into())
}

fn fmt_rate(bps: Option<f64>) -> String {
    bps.map(|b| format!("{:.1} MB/s", b / 1e6))
        .unwrap_or_else(|| "-".into())
}

/// The table printed at the end.
pub fn render_table(runs: &[ControlRun], opts: &ControlOpts) -> String {
    let mut out = String::new();
    let row = |c: [&str; 11]| {
        format!(
            "{:<10}{:<10}{:<10}{:<20}{:<13}{:<12}{:<9}{:<12}{:<9}{:<10}{}",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10]
        )
        .trim_end()
        .to_string()
            + "\n"
    };
    out.push_str(&row([
        "target",
        "at",
        "actual",
        "deviation",
        "within",
        "sent",
        "vs flat",
        "mean rate",
        "vs flat",
        "downtime",
        "status",
    ]));
    for r in runs {
        let target = r
            .target_s
            .map(|t| format!("{t:.2} s"))
            .unwrap_or_else(|| "-".into());
        let dev = match (r.deviation_ms, r.target_s) {
            (Some(d), Some(t)) => fmt_deviation(d, t),
            _ => "-".into(),
        };
        let within = match (r.kind, r.within) {
            (_, None) => "-".to_string(),
            (Kind::Infeasible(_), Some(w)) => format!("{} (infeas.)", if w { "yes" } else { "no" }),
            (_, Some(true)) => "ok".into(),
            (_, Some(false)) => "MISSED".into(),
        };
        let label = r.kind.label();
        let total = fmt_total(r.run.total_time_ms.map(|v| v as f64));
        let sent = fmt_sent(r.run.bytes_transferred.map(|v| v as f64));
        let bvf = fmt_ratio(r.bytes_vs_flat);
        let rate = fmt_rate(r.mean_rate_bps);
        let rvf = fmt_ratio(r.rate_vs_flat);
        let down = fmt_downtime(r.run.downtime_ms.map(|v| v as f64), false);
        let status = if r.completed() && r.run.integrity_ok == Some(false) {
            "guest check FAILED".to_string()
        } else {
            r.run.status.clone()
        };
        out.push_str(&row([
            &label, &target, &total, &dev, &within, &sent, &bvf, &rate, &rvf, &down, &status,
        ]));
    }
    out.push_str(&format!(
        "\n{} guest writing {} MB/s uniformly over {}, pre-copy over {}; a fresh guest every run, \
         migrated after {:.0} s. target = factor x the flat-out time, from the request; \
         within = |deviation| <= max(2% of the target, 1 s); mean rate = bytes sent / total time.\n",
        pacer_model::format_bytes(opts.memory << 20),
        opts.write_rate,
        pacer_model::format_bytes(opts.wss << 20),
        opts.rate,
        opts.prior_wait
    ));
    let feasible: Vec<&ControlRun> = runs
        .iter()
        .filter(|r| matches!(r.kind, Kind::Target(_)))
        .collect();
    let ok = feasible.iter().filter(|r| r.within == Some(true)).count();
    out.push_str(&format!(
        "goal: finish within max(2%, 1 s) of every feasible target: {} ({ok} of {})\n",
        if !feasible.is_empty() && ok == feasible.len() {
            "MET"
        } else {
            "NOT MET"
        },
        feasible.len()
    ));
    if let Some(f) = runs.iter().find(|r| r.kind == Kind::Flat) {
        if !f.completed() {
            out.push_str(&format!(
                "the flat-out run did not complete, so no target could be set: {}\n",
                f.run.why()
            ));
        }
    }
    for r in runs
        .iter()
        .filter(|r| matches!(r.kind, Kind::Infeasible(_)))
    {
        let Some(t) = r.target_s else { continue };
        out.push_str(&format!(
            "infeasible target {} ({t:.2} s):\n",
            r.kind.label()
        ));
        out.push_str(&format!(
            "  reported infeasible at once: {}\n",
            match (r.infeasible_in_answer, &r.answer_note) {
                (Some(true), Some(n)) => format!("yes, in the answer to the request: \"{n}\""),
                (Some(false), _) => "NO: the answer to the request did not say so".into(),
                _ => "unknown (no answer)".into(),
            }
        ));
        out.push_str(&format!(
            "  target status: {}\n",
            match (r.first_feasible, r.ever_feasible) {
                (Some((false, at)), Some(false)) => {
                    format!(
                        "infeasible from the first poll that showed it ({:.1} s) to the end",
                        at as f64 / 1000.0
                    )
                }
                (Some((f, at)), Some(true)) => format!(
                    "first shown {} at {:.1} s, and feasible at some point (it should never be)",
                    if f { "feasible" } else { "infeasible" },
                    at as f64 / 1000.0
                ),
                _ => "never shown".into(),
            }
        ));
        let flat = runs
            .iter()
            .find(|x| x.kind == Kind::Flat)
            .and_then(|x| x.run.total_time_ms);
        out.push_str(&format!(
            "  finished: {}\n",
            match (r.completed(), r.run.total_time_ms, r.deviation_ms) {
                (true, Some(tot), Some(d)) => format!(
                    "completed in {:.2} s ({}), {:.2} s after the target{}",
                    tot as f64 / 1000.0,
                    flat.map(|f| format!("{:.2}x the flat-out time", tot as f64 / f as f64))
                        .unwrap_or_default(),
                    d / 1000.0,
                    r.final_target
                        .map(|t| format!(
                            "; earliest finish the agent reported {:.2} s",
                            t.earliest_finish_ms as f64 / 1000.0
                        ))
                        .unwrap_or_default()
                ),
                _ => format!("{}: {}", r.run.status, r.run.why()),
            }
        ));
    }
    let with_events: Vec<&ControlRun> = runs
        .iter()
        .filter(|r| r.kind != Kind::Flat && !r.run.events.is_empty())
        .collect();
    if !with_events.is_empty() {
        out.push_str("\nwhat the agent did (job events):\n");
        for r in with_events {
            for e in
                r.run.events.iter().filter(|e| {
                    !e.starts_with("destination ready") && !e.starts_with("guest running")
                })
            {
                out.push_str(&format!("  {:<9}{e}\n", r.kind.label()));
            }
        }
    }
    let failures: Vec<String> = runs
        .iter()
        .filter_map(|r| Some(format!("  {}: {}", r.kind.label(), r.run.failure()?)))
        .collect();
    push_list(&mut out, "failed runs", &failures);
    out
}

/// The plot of one run.
pub fn chart(r: &ControlRun) -> Option<Chart> {
    let title = match r.target_s {
        Some(t) => format!(
            "control: target {} of flat out ({t:.2} s): predicted vs actual",
            r.kind.label()
        ),
        None => "control: flat out: predicted vs actual".into(),
    };
    let actual_ms = r.run.total_time_ms?;
    let mut c = prediction_chart(
        title,
        &r.run.predictions,
        actual_ms,
        "naive: elapsed + left / rate",
    );
    if let Some(t) = r.target_s {
        c.hrules
            .push(Rule::new(&format!("target {t:.2} s"), PALETTE[2], true, t));
        c.y_max = Some((actual_ms as f64 / 1000.0).max(t) * 3.0);
    }
    Some(c)
}

/// Runs `pacer-lab bench control`.
pub async fn run(opts: &ControlOpts) -> Result<i32> {
    opts.validate()?;
    prepare_out(&opts.out)?;
    let mut bed = LiveBed::up_shaped(BED, &opts.rate)?;
    let stop = stop_on_ctrl_c();
    let plan = opts.plan();
    let mut runs: Vec<ControlRun> = Vec::new();
    let mut flat: Option<(u64, f64, f64)> = None; // total ms, bytes, mean rate
    for (i, &kind) in plan.iter().enumerate() {
        if *stop.borrow() {
            break;
        }
        let mut rec = ControlRun::new(kind, i + 1);
        let tag = format!("[{}/{}] {}", i + 1, plan.len(), kind.label());
        if let Some(f) = kind.factor() {
            match flat {
                Some((ms, _, _)) => rec.target_s = Some(f * ms as f64 / 1000.0),
                None => {
                    rec.run.reason = Some("no target: the flat-out run did not complete".into());
                    eprintln!("{tag}: skipped ({})", rec.run.why());
                    runs.push(rec);
                    continue;
                }
            }
        }
        eprintln!(
            "{tag}: {}",
            rec.target_s
                .map(|t| format!("finish target {t:.2} s"))
                .unwrap_or_else(|| "no target (flat out)".into())
        );
        let name = format!("bc-{}", i + 1);
        let t = Instant::now();
        one_run(
            &mut bed,
            opts,
            &name,
            &mut rec,
            flat.map(|f| (f.1, f.2)),
            &stop,
        )
        .await;
        rec.run.mark_interrupted(&stop);
        bed.cleanup(&name, &[]).await;
        rec.wall_ms = t.elapsed().as_millis() as u64;
        if kind == Kind::Flat && rec.completed() {
            if let (Some(ms), Some(b), Some(r)) = (
                rec.run.total_time_ms,
                rec.run.bytes_transferred,
                rec.mean_rate_bps,
            ) {
                flat = Some((ms, b as f64, r));
                rec.bytes_vs_flat = Some(1.0);
                rec.rate_vs_flat = Some(1.0);
            }
        }
        if let Some(c) = chart(&rec) {
            let file = plot_path(&opts.out, &kind.file_part());
            rec.plot = write_svg(&file, &c.to_svg());
        }
        eprintln!("{tag}: {}", rec.outcome_line());
        runs.push(rec);
        save(opts, &bed, &runs)?;
    }
    bed.close("benchmark");
    print!("{}", render_table(&runs, opts));
    println!("\nall runs: {} (plots beside it)", opts.out.display());
    let ok = runs.len() == plan.len()
        && runs.iter().all(|r| r.completed())
        && runs
            .iter()
            .filter(|r| matches!(r.kind, Kind::Target(_)))
            .all(|r| r.within == Some(true));
    Ok(if ok { 0 } else { 1 })
}

fn save(opts: &ControlOpts, bed: &LiveBed, runs: &[ControlRun]) -> Result<()> {
    let config = json!({
        "link_rate": opts.rate,
        "memory_mib": opts.memory,
        "wss_mib": opts.wss,
        "write_rate_mbps": opts.write_rate,
        "factors": opts.factors,
        "infeasible_factor": opts.infeasible_factor,
        "prior_wait_s": opts.prior_wait,
        "tolerance": "max(2% of the target, 1 s)",
        "strategy": "pre-copy",
    });
    write_results(&opts.out, "control", bed, config, json!({"runs": runs}))
}

async fn one_run(
    bed: &mut LiveBed,
    opts: &ControlOpts,
    name: &str,
    rec: &mut ControlRun,
    flat: Option<(f64, f64)>,
    stop: &watch::Receiver<bool>,
) {
    let g = GuestPlan::memory(name, opts.memory, opts.wss, opts.write_rate);
    if let Err(e) = start_guest(bed, &g, &mut Vec::new(), stop).await {
        rec.run.reason = Some(format!("{e:#}"));
        return;
    }
    eprintln!(
        "  letting it run {:.0} s so the agent measures it",
        opts.prior_wait
    );
    if !wait_prior(Duration::from_secs_f64(opts.prior_wait), stop).await {
        return;
    }
    rec.guest_write_mbps = guest_rates(&bed.hosts, name).await.0;
    let mut req = match precopy_request(bed) {
        Ok(r) => r,
        Err(e) => {
            rec.run.reason = Some(format!("{e:#}"));
            return;
        }
    };
    req.finish_in_s = rec.target_s;
    let limit = migration_limit(LIMIT_BASE, opts.memory, 0, bed.rate_bps)
        + Duration::from_secs_f64(rec.target_s.unwrap_or(0.0));
    let f = follow_migration(bed, name, &req, limit, stop, |_, _| {}).await;
    rec.run.take(&f);
    rec.samples = f.samples.clone();
    let answer: Vec<String> = f
        .first
        .as_ref()
        .map(|j| j.events.clone())
        .unwrap_or_default();
    if rec.target_s.is_some() {
        rec.read_feasibility(&answer);
    }
    if let Some(r) = &f.result {
        rec.measure(r, flat);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacer_api::{PredictionPoint, TargetStatus};

    /// Takes a result as the bench does: the shared record, then the measures.
    fn fill(rec: &mut ControlRun, r: &MigrationResult, flat: Option<(f64, f64)>) {
        rec.run.fill(r);
        rec.measure(r, flat);
    }

    fn opts() -> ControlOpts {
        ControlOpts {
            out: "x.json".into(),
            rate: "1gbit".into(),
            memory: 1024,
            wss: 256,
            write_rate: 30.0,
            factors: vec![2.0, 1.2, 1.5, 1.5],
            infeasible_factor: 0.5,
            prior_wait: 20.0,
        }
    }

    fn result(total: u64, bytes: u64, target: Option<TargetStatus>) -> MigrationResult {
        serde_json::from_value(json!({
            "status": "completed", "vm": "v", "strategy": "pre-copy", "total_time_ms": total,
            "downtime_ms": 250, "bytes_transferred": bytes, "source": "h1",
            "destination": "h2", "vm_location": "h2", "reason": null, "qemu_total_time_ms": 1,
            "rounds": 4, "precopy_bytes": 1, "downtime_bytes": 1, "postcopy_bytes": 0,
            "integrity": {"ok": true, "pages_checked": 1, "bad_pages": 0, "errors_total": 0,
                          "duration_ms": 1},
            "target": target,
        }))
        .unwrap()
    }

    fn sample(at_ms: u64, feasible: bool) -> Sample {
        Sample {
            at_ms,
            elapsed_ms: at_ms,
            phase: pacer_api::JobPhase::PreCopy,
            transferred: 0,
            remaining: 0,
            rate_bps: 0.0,
            disk_remaining: None,
            disk_rate_bps: None,
            prediction: None,
            target: Some(TargetStatus {
                finish_ms: 2000,
                feasible,
                earliest_finish_ms: 4000,
                speed_bps: 0,
            }),
        }
    }

    #[test]
    fn options_and_plan() {
        let o = opts();
        assert_eq!(
            o.plan(),
            [
                Kind::Flat,
                Kind::Target(1.2),
                Kind::Target(1.5),
                Kind::Target(2.0),
                Kind::Infeasible(0.5)
            ]
        );
        assert!(o.validate().is_ok());
        let mut o2 = opts();
        o2.write_rate = 110.0;
        assert!(o2.validate().unwrap_err().to_string().contains("converge"));
        o2 = opts();
        o2.factors.clear();
        o2.infeasible_factor = 0.0;
        assert!(o2.validate().is_err());
        assert!(parse_factor("0.5").unwrap_err().contains("infeasible"));
        assert_eq!(parse_factor("1.5"), Ok(1.5));
        assert!(parse_factor("x").is_err());
        assert_eq!(parse_infeasible("0"), Ok(0.0));
        assert!(parse_infeasible("1.2").is_err());
        assert_eq!(Kind::Target(1.5).file_part(), "1_5x");
        assert_eq!(Kind::Flat.file_part(), "flat");
        assert_eq!(tolerance_ms(10.0), 1000.0);
        assert_eq!(tolerance_ms(100.0), 2000.0);
    }

    #[test]
    fn deviations_ratios_and_table() {
        let mut flat = ControlRun::new(Kind::Flat, 1);
        fill(&mut flat, &result(4000, 400_000_000, None), None);
        flat.bytes_vs_flat = Some(1.0);
        flat.rate_vs_flat = Some(1.0);
        assert_eq!(flat.mean_rate_bps, Some(100e6));
        let f = Some((400e6, 100e6));
        let mut a = ControlRun::new(Kind::Target(1.5), 2);
        a.target_s = Some(6.0);
        fill(&mut a, &result(6300, 420_000_000, None), f);
        assert_eq!(a.deviation_ms, Some(300.0));
        assert_eq!(a.within, Some(true));
        assert!((a.bytes_vs_flat.unwrap() - 1.05).abs() < 1e-9);
        assert!((a.rate_vs_flat.unwrap() - 420.0 / 6.3 / 100.0).abs() < 1e-9);
        let mut b = ControlRun::new(Kind::Target(2.0), 3);
        b.target_s = Some(8.0);
        fill(&mut b, &result(6500, 400_000_000, None), f);
        assert_eq!(b.within, Some(false));
        let mut c = ControlRun::new(Kind::Infeasible(0.5), 4);
        c.target_s = Some(2.0);
        c.samples = vec![sample(500, false), sample(900, false)];
        c.read_feasibility(&[
            "finish target 2.0 s cannot be met: the earliest feasible finish is 4.1 s from now"
                .into(),
        ]);
        fill(
            &mut c,
            &result(
                4100,
                400_000_000,
                Some(TargetStatus {
                    finish_ms: 2000,
                    feasible: false,
                    earliest_finish_ms: 4000,
                    speed_bps: 0,
                }),
            ),
            f,
        );
        assert_eq!(c.first_feasible, Some((false, 500)));
        assert_eq!(c.ever_feasible, Some(false));
        let t = render_table(&[flat, a, b, c], &opts());
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("target    at        actual    deviation"),
            "{t}"
        );
        assert_eq!(
            lines[1],
            "flat out  -         4.00 s    -                   -            381.5 MiB   1.000    100.0 MB/s  1.000    250 ms    completed"
        );
        assert!(
            lines[2].starts_with("1.5x      6.00 s    6.30 s    +0.30 s (+5.0%)     ok "),
            "{t}"
        );
        assert!(lines[3].contains("-1.50 s (-18.8%)    MISSED"), "{t}");
        assert!(lines[4].contains("no (infeas.)"), "{t}");
        assert!(t.contains("every feasible target: NOT MET (1 of 2)"), "{t}");
        assert!(
            t.contains("reported infeasible at once: yes, in the answer to the request"),
            "{t}"
        );
        assert!(
            t.contains("infeasible from the first poll that showed it (0.5 s) to the end"),
            "{t}"
        );
        assert!(
            t.contains("completed in 4.10 s (1.02x the flat-out time), 2.10 s after the target"),
            "{t}"
        );
    }

    #[test]
    fn plot_shows_the_target() {
        let mut a = ControlRun::new(Kind::Target(1.5), 2);
        a.target_s = Some(6.0);
        a.run.status = "completed".into();
        a.run.predictions = vec![PredictionPoint {
            elapsed_ms: 1000,
            total_ms: Some(5700),
            low_ms: 5000,
            high_ms: Some(6500),
            downtime_ms: 1,
            naive_total_ms: Some(3000),
            ..Default::default()
        }];
        a.run.total_time_ms = Some(6100);
        let svg = chart(&a).unwrap().to_svg();
        assert!(svg.contains("target 6.00 s"));
        assert!(svg.contains("actual total 6.10 s"));
    }
}
