//! `pacer migrate`: start a migration on the source agent and follow it with a
//! live progress display until it ends.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use pacer_api::{
    AgentClient, CopyStorage, JobInfo, MigrateRequest, MigrationResult, PeerRef, Strategy,
};
use pacer_model::{format_bytes, format_duration_ms, format_rate};

use crate::hosts::Hosts;

/// Options of one migration, as the CLI takes them.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateOpts {
    /// Destination host (a name from the hosts file).
    #[arg(long)]
    pub to: String,
    /// pre-copy, post-copy, hybrid or stop-and-copy.
    #[arg(long, default_value = "pre-copy", value_parser = parse_strategy)]
    pub strategy: Strategy,
    /// Bandwidth cap, e.g. 100MiB/s or 500mbit (a bare number is MiB/s).
    #[arg(long, value_parser = parse_bw)]
    pub bandwidth: Option<u64>,
    /// Longest acceptable downtime, e.g. 300ms.
    #[arg(long, value_parser = parse_ms)]
    pub downtime_limit: Option<u64>,
    /// Throttle the guest's CPUs if pre-copy does not converge.
    #[arg(long)]
    pub auto_converge: bool,
    /// Post-copy: run pre-copy this long before switching (e.g. 2s; default at once).
    #[arg(long, value_parser = parse_secs)]
    pub postcopy_after: Option<f64>,
    /// Give up when no byte moves for this long (e.g. 10s).
    #[arg(long, value_parser = parse_secs)]
    pub stall_timeout: Option<f64>,
    /// Skip the guest memory check after the migration.
    #[arg(long)]
    pub no_verify: bool,
    /// Disks: all (copy them whole), incremental (only the top layer; the
    /// destination has the base images) or none (shared storage).
    #[arg(long, default_value = "all", value_parser = parse_copy_storage)]
    pub copy_storage: CopyStorage,
    /// Disk copy speed cap, e.g. 50MiB/s.
    #[arg(long, value_parser = parse_bw)]
    pub disk_bandwidth: Option<u64>,
    /// Finish this long from now (e.g. 90s, 5m), at the gentlest pace that makes it.
    #[arg(long, value_parser = parse_secs, conflicts_with = "finish_at")]
    pub finish_in: Option<f64>,
    /// Finish at this time: HH:MM[:SS] (local, today) or RFC 3339 (2026-11-25T14:05:00Z).
    #[arg(long, value_parser = crate::when::parse_finish_at)]
    pub finish_at: Option<std::time::SystemTime>,
    /// Refuse to start when the target cannot be met (default: report it, run flat out).
    #[arg(long)]
    pub strict: bool,
    /// If pre-copy does not converge: raise the downtime limit, a step a round, up to this (e.g. 2s).
    #[arg(long, value_parser = parse_ms)]
    pub max_downtime: Option<u64>,
    /// If pre-copy does not converge (and raising the limit is not enough): switch to post-copy.
    #[arg(long)]
    pub allow_postcopy: bool,
    /// Through the hosts' relays: each page's content crosses once, whichever of the
    /// VMs moving between the two hosts it comes from (plain pre-copy; others go direct).
    #[arg(long)]
    pub dedup: bool,
    /// Through the relays without dedup (to compare with --dedup).
    #[arg(long, conflicts_with = "dedup")]
    pub relay: bool,
}

impl MigrateOpts {
    /// The CLI's defaults for a migration to `to` (for callers other than clap).
    pub fn new(to: &str, strategy: Strategy) -> Self {
        MigrateOpts {
            to: to.into(),
            strategy,
            bandwidth: None,
            downtime_limit: None,
            auto_converge: false,
            postcopy_after: None,
            stall_timeout: None,
            no_verify: false,
            copy_storage: CopyStorage::All,
            disk_bandwidth: None,
            finish_in: None,
            finish_at: None,
            strict: false,
            max_downtime: None,
            allow_postcopy: false,
            dedup: false,
            relay: false,
        }
    }

    /// The request these options make, for a migration to `destination`.
    pub fn request(&self, destination: PeerRef) -> Result<MigrateRequest> {
        Ok(MigrateRequest {
            bandwidth: self.bandwidth,
            downtime_limit_ms: self.downtime_limit,
            auto_converge: self.auto_converge,
            postcopy_after_s: self.postcopy_after,
            stall_timeout_s: self.stall_timeout,
            verify_guest: !self.no_verify,
            copy_storage: self.copy_storage,
            disk_bandwidth: self.disk_bandwidth,
            finish_in_s: self.finish_in_s()?,
            strict: self.strict,
            converge: pacer_api::ConvergePolicy { max_downtime_ms: self.max_downtime, allow_postcopy: self.allow_postcopy },
            dedup: self.dedup,
            relay: self.relay,
            ..MigrateRequest::new(destination, self.strategy)
        })
    }

    /// The finish target in seconds from now, if any.
    pub fn finish_in_s(&self) -> Result<Option<f64>> {
        if let Some(s) = self.finish_in {
            return Ok(Some(s));
        }
        match self.finish_at {
            None => Ok(None),
            Some(t) => match t.duration_since(std::time::SystemTime::now()) {
                Ok(d) => Ok(Some(d.as_secs_f64())),
                Err(_) => anyhow::bail!("--finish-at is in the past: give a time still to come"),
            },
        }
    }
}

fn parse_copy_storage(s: &str) -> Result<CopyStorage, String> {
    match s {
        "all" | "full" => Ok(CopyStorage::All),
        "incremental" | "inc" => Ok(CopyStorage::Incremental),
        "none" | "shared" => Ok(CopyStorage::None),
        _ => Err(format!("unknown --copy-storage {s:?}: use all, incremental or none")),
    }
}

pub fn parse_strategy(s: &str) -> Result<Strategy, String> {
    match s {
        "pre-copy" | "precopy" => Ok(Strategy::PreCopy),
        "post-copy" | "postcopy" => Ok(Strategy::PostCopy),
        "hybrid" => Ok(Strategy::Hybrid),
        "stop-and-copy" | "stop-copy" => Ok(Strategy::StopAndCopy),
        _ => Err(format!(
            "unknown strategy {s:?}: use pre-copy, post-copy, hybrid or stop-and-copy"
        )),
    }
}

pub fn parse_bw(s: &str) -> Result<u64, String> {
    pacer_model::parse_bandwidth(s).map_err(|e| e.to_string())
}

fn parse_ms(s: &str) -> Result<u64, String> {
    let d = pacer_model::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be more than 0 ms".into());
    }
    Ok(d.as_millis() as u64)
}

pub fn parse_secs(s: &str) -> Result<f64, String> {
    Ok(pacer_model::parse_duration(s).map_err(|e| e.to_string())?.as_secs_f64())
}

/// How other agents reach a host.
pub fn peer_of(h: &pacer_api::HostEntry) -> PeerRef {
    PeerRef { name: h.name.clone(), url: h.peer_url().to_string(), token: h.token.clone() }
}

/// Starts a migration and waits for it, drawing progress on stderr. Returns the result.
pub async fn migrate(
    hosts: &Hosts,
    vm: &str,
    from: Option<&str>,
    opts: &MigrateOpts,
    show_progress: bool,
) -> Result<MigrationResult> {
    let dest = hosts.get(&opts.to)?.clone();
    let source = match from {
        Some(f) => f.to_string(),
        None => hosts.locate(vm).await?.0,
    };
    let client = hosts.client(&source)?;
    let req = opts.request(peer_of(&dest))?;
    let job = client.migrate(vm, &req).await?;
    follow(&client, &job.id, show_progress).await
}

/// Polls a job until it ends, with a progress display; Ctrl-C cancels the job.
pub async fn follow(client: &AgentClient, id: &str, show_progress: bool) -> Result<MigrationResult> {
    let mut display = Display::new(show_progress);
    let mut cancel_sent = false;
    let mut seen_events = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let job = client.job(id).await.context("following the job")?;
        for e in &job.events[seen_events..] {
            display.note(e);
        }
        seen_events = job.events.len();
        if let Some(r) = job.result {
            display.finish(&job.progress, &r);
            return Ok(r);
        }
        display.update(&job);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = &mut ctrl_c, if !cancel_sent => {
                display.note("cancelling (Ctrl-C): the VM stays where it is");
                let _ = client.cancel_job(id).await;
                cancel_sent = true;
            }
        }
    }
}

/// Progress output: a bar on a terminal, a line a second otherwise.
struct Display {
    bar: Option<ProgressBar>,
    plain: bool,
    last_line: Option<Instant>,
    /// The display has said that pre-copy does not converge.
    stuck_said: bool,
    edge_said: bool,
}

impl Display {
    fn new(enabled: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = (enabled && tty).then(|| {
            let b = ProgressBar::new(1000);
            b.set_style(
                ProgressStyle::with_template("{prefix:>12} [{bar:30}] {msg}")
                    .expect("template")
                    .progress_chars("=> "),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Display { bar, plain: enabled && !tty, last_line: None, stuck_said: false, edge_said: false }
    }

    fn line(job: &JobInfo) -> String {
        let p = &job.progress;
        let stuck = job.prediction.is_some_and(|pr| pr.stuck.is_some());
        let mut s = format!(
            "{}  {} / {}  {}  dirty {}  round {}  {}",
            if stuck { "  --  ".to_string() } else { format!("{:5.1}%", p.percent) },
            format_bytes(p.transferred),
            format_bytes(p.total),
            format_rate(p.rate_bps),
            format_rate(p.dirty_rate_bps),
            p.rounds,
            format_duration_ms(p.elapsed_ms)
        );
        if let Some(pr) = &job.prediction {
            s.push_str("  ");
            s.push_str(&eta_words(pr, p.elapsed_ms));
        }
        if let Some(t) = &job.target {
            s.push_str(&format!(
                "  target {}{}",
                format_duration_ms(t.finish_ms.saturating_sub(p.elapsed_ms)),
                if t.feasible { String::new() } else { " (infeasible)".into() }
            ));
        }
        s
    }

    fn update(&mut self, job: &JobInfo) {
        // Say it once when pre-copy is found not to converge, and what would end it.
        let stuck = job.prediction.and_then(|p| p.stuck);
        if stuck.is_some() != self.stuck_said {
            self.stuck_said = stuck.is_some();
            match stuck {
                Some(a) => self.note(&format!("pre-copy does not converge at this rate: {}", stuck_words(&a, job.progress.elapsed_ms))),
                None => self.note("pre-copy converges again"),
            }
        }
        // And once when rounds start missing the threshold, the end becoming chance.
        let edge = job.prediction.and_then(|p| p.edge.map(|e| (p, e)));
        if edge.is_some() != self.edge_said {
            self.edge_said = edge.is_some();
            if let Some((p, e)) = edge {
                self.note(&edge_words(&p, &e, job.progress.elapsed_ms));
            }
        }
        let phase = match (stuck.is_some(), edge.is_some()) {
            (true, _) => "not converging",
            (false, true) => "at the edge",
            _ => job.progress.phase.words(),
        };
        if let Some(b) = &self.bar {
            b.set_prefix(phase);
            b.set_position((job.progress.percent * 10.0) as u64);
            b.set_message(Self::line(job));
        } else if self.plain && self.last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            eprintln!("migrate {}: {:>11} {}", job.vm, phase, Self::line(job));
            self.last_line = Some(Instant::now());
        }
    }

    fn note(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(format!("  {msg}")),
            None if self.plain => eprintln!("  {msg}"),
            None => {}
        }
    }

    fn finish(&mut self, _p: &pacer_api::Progress, r: &MigrationResult) {
        if let Some(b) = self.bar.take() {
            if r.status == pacer_api::JobStatus::Completed {
                b.set_position(1000);
            }
            b.finish_and_clear();
        }
    }
}

/// The prediction as the progress line says it: time left and its band, or that it
/// will not end on its own.
pub fn eta_words(pr: &pacer_api::PredictionPoint, elapsed_ms: u64) -> String {
    let left = |ms: u64| format_duration_ms(ms.saturating_sub(elapsed_ms));
    match (pr.total_ms, pr.high_ms) {
        (None, _) => "does not converge at this rate".into(),
        (Some(t), Some(h)) => format!("ETA {} ({}-{})", left(t), left(pr.low_ms), left(h)),
        (Some(t), None) => format!(
            "ETA {} (or never: {:.0}% chance pre-copy does not converge)",
            left(t),
            (1.0 - pr.completes_chance) * 100.0
        ),
    }
}

/// Rounds at the switch-over edge, in words.
pub fn edge_words(pr: &pacer_api::PredictionPoint, e: &pacer_api::EdgeAdvice, elapsed_ms: u64) -> String {
    format!(
        "at the switch-over edge: {} rounds in a row (of about {} each) came within reach of QEMU's threshold \
         ({}) and missed, the least leaving {}; when one makes it is chance: {}; a downtime limit of {} \
         would end it at the next such round",
        e.missed_rounds,
        format_duration_ms(e.round_ms),
        format_bytes(e.threshold_bytes),
        format_bytes(e.least_left_bytes),
        eta_words(pr, elapsed_ms),
        format_duration_ms(e.downtime_limit_ms)
    )
}

/// A prediction before the start, in words: one outcome, or both with their chances.
pub fn predict_words(p: &pacer_api::PredictResponse) -> String {
    let secs = |ms: u64| ms as f64 / 1000.0;
    let band = |t: u64, lo: u64, hi: Option<u64>| match hi {
        Some(h) => format!("{:.1} s ({:.1}-{:.1} s)", secs(t), secs(lo), secs(h)),
        None => format!("{:.1} s (from {:.1} s)", secs(t), secs(lo)),
    };
    let chance = p.completes_chance;
    let stuck = p.stuck.as_ref().map(|a| stuck_words(a, 0));
    match p.total_ms {
        Some(t) if chance >= 0.9 => {
            format!("would take {}, downtime about {} ms", band(t, p.low_ms, p.high_ms), p.downtime_ms)
        }
        Some(t) => format!(
            "is on the edge of converging: {:.0}% likely to take {}, downtime about {} ms; \
             {:.0}% likely not to converge at all{}",
            chance * 100.0,
            band(t, p.low_ms, p.high_ms),
            p.downtime_ms,
            (1.0 - chance) * 100.0,
            stuck.map(|s| format!(" ({s})")).unwrap_or_default()
        ),
        None => {
            let maybe = match p.if_it_converges {
                Some(b) if chance >= 0.1 => format!(
                    "; {:.0}% likely to converge after all, then taking {}",
                    chance * 100.0,
                    band(b.total_ms, b.low_ms, Some(b.high_ms))
                ),
                _ => String::new(),
            };
            format!(
                "would NOT finish: pre-copy does not converge at this rate: {}{maybe}",
                stuck.unwrap_or_else(|| "the guest dirties memory faster than the link sends it".into())
            )
        }
    }
}

/// The probe's rehearsal of the migration's end, in words.
pub fn rehearsal_words(r: &pacer_api::RehearsalView) -> String {
    let at = format!(
        "rehearsed at {} with a {} downtime limit (QEMU's dirty log, not allowed to switch over): ",
        format_rate(r.link_bps),
        format_duration_ms(r.downtime_limit_ms)
    );
    match (r.switched_after_ms, r.least_after_sync_bytes) {
        (Some(t), _) => format!("{at}QEMU would have switched over {} in", format_duration_ms(t)),
        (None, Some(b)) => format!(
            "{at}QEMU would not have switched over in {}: at least {} dirty after each sync, over its threshold",
            format_duration_ms(r.ran_ms),
            format_bytes(b)
        ),
        (None, None) => format!("{at}no sync in {}: QEMU was still sending its first rounds", format_duration_ms(r.ran_ms)),
    }
}

/// A guest taken for one that writes in bursts or phases, in words.
pub fn burst_words(d: &pacer_api::DirtyLogView) -> String {
    format!(
        "writes in bursts or phases: QEMU's dirty log found {} in {} (up to {} at once), not one steady curve; \
         a round may meet a burst or a quiet spell, hence the wide band",
        format_bytes(d.span_bytes.unwrap_or(0.0) as u64),
        format_duration_ms((d.span_s.unwrap_or(0.0) * 1000.0) as u64),
        format_bytes(d.largest_find_bytes as u64)
    )
}

/// What would end a pre-copy that does not converge, in words.
pub fn stuck_words(a: &pacer_api::StuckAdvice, elapsed_ms: u64) -> String {
    let left = |ms: u64| format_duration_ms(ms.saturating_sub(elapsed_ms));
    let mut s = format!(
        "the guest dirties {} and {} stays dirty at each round's end, over {}; it would end with ",
        format_rate(a.dirty_rate_bps),
        format_bytes(a.dirty_set_bytes),
        format_rate(a.speed_bps)
    );
    let mut ways = vec![format!(
        "a downtime limit of {} (about {} of downtime)",
        format_duration_ms(a.downtime_limit_ms),
        format_duration_ms(a.downtime_ms)
    )];
    if let Some(b) = a.bandwidth_needed_bps {
        ways.push(format!("{} of bandwidth", format_rate(b)));
    }
    ways.push(format!("post-copy from now (done in {})", left(a.postcopy_total_ms)));
    if let Some(t) = a.auto_converge_total_ms {
        ways.push(format!("auto-converge from now (done in {}, the guest slowed)", left(t)));
    }
    s.push_str(&ways.join(", or "));
    s
}

/// What the relays did with a migration's stream (one line, leading newline).
pub fn relay_line(rl: &pacer_api::RelayReport) -> String {
    let mut s = if rl.relayed {
        let saved = 1.0 - rl.wire_bytes as f64 / rl.stream_bytes.max(1) as f64;
        format!(
            "\n  through the relays: stream {} crossed as {} ({:.0}% less; {} of {} pages sent as references)",
            format_bytes(rl.stream_bytes),
            format_bytes(rl.wire_bytes),
            saved * 100.0,
            rl.refs,
            rl.pages
        )
    } else {
        "\n  not through the relays".to_string()
    };
    if let Some(why) = &rl.why {
        s.push_str(&format!(": {why}"));
    }
    s
}

/// A human summary of a result.
pub fn summary(r: &MigrationResult) -> String {
    let mut s = format!(
        "{} {} {} -> {}: {:?}\n  strategy {}, total {}, downtime {}, sent {} in {} rounds\n  VM now runs on {}",
        "migration of",
        r.vm,
        r.source,
        r.destination,
        r.status,
        r.strategy.as_str(),
        format_duration_ms(r.total_time_ms),
        r.downtime_ms.map(format_duration_ms).unwrap_or_else(|| "n/a".into()),
        format_bytes(r.bytes_transferred),
        r.rounds,
        r.vm_location,
    );
    if let Some(reason) = &r.reason {
        s.push_str(&format!("\n  reason: {reason}"));
    }
    if r.probe_bytes > 0 {
        s.push_str(&format!("\n  link probe before the start: {}", format_bytes(r.probe_bytes)));
    }
    if let Some(t) = &r.target {
        let dev = r.total_time_ms as f64 - t.finish_ms as f64;
        s.push_str(&format!(
            "\n  target {}: finished {:.2} s {} it{}",
            format_duration_ms(t.finish_ms),
            dev.abs() / 1000.0,
            if dev > 0.0 { "after" } else { "before" },
            if t.feasible { "" } else { " (target was infeasible)" }
        ));
    }
    if let Some(first) = r.predictions.iter().find(|p| p.elapsed_ms > 0) {
        s.push_str(&format!(
            "\n  first prediction (at {}): {}",
            format_duration_ms(first.elapsed_ms),
            match (first.total_ms, first.high_ms) {
                (Some(t), Some(h)) => format!("{} ({}-{})", format_duration_ms(t), format_duration_ms(first.low_ms), format_duration_ms(h)),
                (Some(t), None) => format!("{} (or never: pre-copy may not converge)", format_duration_ms(t)),
                (None, _) => "does not converge at this rate".into(),
            }
        ));
    }
    for step in &r.converge_steps {
        s.push_str(&format!("\n  at {}: {}", format_duration_ms(step.at_ms), step.why));
    }
    if let Some(rl) = &r.relay {
        s.push_str(&relay_line(rl));
    }
    if let Some(i) = &r.integrity {
        s.push_str(&format!(
            "\n  guest memory check: {} ({} pages checked, {} bad, {} errors seen)",
            if i.ok { "PASSED" } else { "FAILED" },
            i.pages_checked,
            i.bad_pages,
            i.errors_total
        ));
        if i.disk_blocks_checked > 0 {
            s.push_str(&format!(
                "\n  guest disk check: {} ({} blocks checked, {} bad)",
                if i.disk_ok { "PASSED" } else { "FAILED" },
                i.disk_blocks_checked,
                i.disk_bad_blocks
            ));
        }
        if let Some(ok) = i.app_ok {
            s.push_str(&format!(
                "\n  guest application check: {} ({})",
                if ok { "PASSED" } else { "FAILED" },
                i.app_detail.as_deref().unwrap_or("no detail")
            ));
        }
    }
    if r.disk_bytes > 0 {
        s.push_str(&format!(
            "\n  disk {} + memory {}",
            format_bytes(r.disk_bytes),
            format_bytes(r.memory_bytes)
        ));
    }
    s
}
