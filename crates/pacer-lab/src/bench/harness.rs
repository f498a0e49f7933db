//! What the benchmarks share while a migration runs: the wait for the agent's
//! background measurements, Pacer's prediction before the start, the one
//! follower of a migration job (polled, with something done to it on the way: a
//! link rate change, the guest's writer resumed; cancelled on Ctrl-C, when it
//! takes too long, or when the caller gives up on it), a command to the guest's
//! console, and where plots go.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pacer_api::{
    JobInfo, JobPhase, MigrateRequest, MigrationResult, PredictRequest, PredictResponse,
    PredictionPoint, Strategy, TargetStatus,
};
use pacer_guest_proto::{parse_line, Command, GuestLine};
use pacer_model::format_bytes;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use super::plot::{Band, Chart, Line, Rule, PALETTE};
use crate::live::LiveBed;

/// Every how often the job is polled.
const POLL: Duration = Duration::from_millis(250);
/// Every how often a progress line is printed while a migration runs.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// The usual base of a migration's time limit, see [`migration_limit`].
pub const LIMIT_BASE: Duration = Duration::from_secs(120);

/// Sleeps `d` (the agent measures the guest in the background meanwhile); false if
/// interrupted.
pub async fn wait_prior(d: Duration, stop: &watch::Receiver<bool>) -> bool {
    let mut stop = stop.clone();
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

/// Pacer's prediction before the start (`POST /v1/vms/NAME/predict`).
pub async fn predict_before(bed: &LiveBed, name: &str) -> Result<PredictResponse> {
    let req = PredictRequest {
        destination: bed.peer("h2")?,
        strategy: Strategy::PreCopy,
        bandwidth: None,
        downtime_limit_ms: None,
        postcopy_after_s: None,
        copy_storage: pacer_api::CopyStorage::All,
        dirty_log: true,
    };
    Ok(bed.hosts.client("h1")?.predict(name, &req).await?)
}

/// One look at a running job, as the benchmark saw it.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// When, ms since the request was sent (the bench's clock).
    pub at_ms: u64,
    /// The job's own elapsed time, ms.
    pub elapsed_ms: u64,
    /// Phase (written in words, `disk bulk copy`).
    #[serde(serialize_with = "in_words")]
    pub phase: JobPhase,
    /// Memory bytes sent.
    pub transferred: u64,
    /// Memory bytes left (QEMU's count).
    pub remaining: u64,
    /// Smoothed rate, bytes/s.
    pub rate_bps: f64,
    /// Disk bytes left, when disks are copied.
    pub disk_remaining: Option<u64>,
    /// Disk copy rate, bytes/s.
    pub disk_rate_bps: Option<f64>,
    /// The latest prediction.
    pub prediction: Option<PredictionPoint>,
    /// The finish target's status.
    pub target: Option<TargetStatus>,
}

/// A job phase in its words (`disk bulk copy`), as benchmark records write it.
fn in_words<S: serde::Serializer>(phase: &JobPhase, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(phase.words())
}

impl Sample {
    /// Whether the job was copying disks (memory not yet started).
    pub fn copying_disks(&self) -> bool {
        matches!(self.phase, JobPhase::DiskBulkCopy | JobPhase::DiskSync)
    }

    fn of(at: Duration, j: &JobInfo) -> Sample {
        let p = &j.progress;
        Sample {
            at_ms: at.as_millis() as u64,
            elapsed_ms: p.elapsed_ms,
            phase: p.phase,
            transferred: p.transferred,
            remaining: p.remaining,
            rate_bps: p.rate_bps,
            disk_remaining: p.disk.as_ref().map(|d| d.remaining),
            disk_rate_bps: p.disk.as_ref().map(|d| d.rate_bps),
            prediction: j.prediction,
            target: j.target,
        }
    }
}

/// A followed migration.
#[derive(Debug, Clone, Default)]
pub struct Followed {
    /// The job as the request's answer showed it.
    pub first: Option<JobInfo>,
    /// The result, when the job ended.
    pub result: Option<MigrationResult>,
    /// The job's events.
    pub events: Vec<String>,
    /// What every poll saw.
    pub samples: Vec<Sample>,
    /// Why there is no result, or why it was cancelled.
    pub reason: Option<String>,
    /// It was cancelled for taking longer than its limit.
    pub timed_out: bool,
    /// It was cancelled because the caller's `on_poll` gave up on it.
    pub given_up: bool,
}

/// Starts a migration of `name` from h1 and follows it until it ends; `on_poll`
/// is called after every poll with the time since the request and the job. On
/// Ctrl-C or after `limit` the job is cancelled (and still followed to its end).
pub async fn follow_migration(
    bed: &LiveBed,
    name: &str,
    req: &MigrateRequest,
    limit: Duration,
    stop: &watch::Receiver<bool>,
    mut on_poll: impl FnMut(Duration, &JobInfo),
) -> Followed {
    follow_migration_until(bed, name, req, limit, stop, |at, j| {
        on_poll(at, j);
        None
    })
    .await
}

/// [`follow_migration`] whose `on_poll` may also give up on the migration: when
/// it returns a reason, the job is cancelled with it (and still followed to its
/// end; [`Followed::given_up`] says so).
pub async fn follow_migration_until(
    bed: &LiveBed,
    name: &str,
    req: &MigrateRequest,
    limit: Duration,
    stop: &watch::Receiver<bool>,
    mut on_poll: impl FnMut(Duration, &JobInfo) -> Option<String>,
) -> Followed {
    let mut out = Followed::default();
    let client = match bed.hosts.client("h1") {
        Ok(c) => c,
        Err(e) => {
            out.reason = Some(format!("{e:#}"));
            return out;
        }
    };
    let t0 = Instant::now();
    let job = match client.migrate(name, req).await {
        Ok(j) => j,
        Err(e) => {
            out.reason = Some(format!("the migration was refused: {e}"));
            return out;
        }
    };
    out.first = Some(job.clone());
    let mut stop = stop.clone();
    let mut cancelled: Option<String> = None;
    let mut last_note = Instant::now();
    let mut lost = 0;
    loop {
        let j = match client.job(&job.id).await {
            Ok(j) => {
                lost = 0;
                j
            }
            Err(e) => {
                lost += 1;
                if lost >= 20 {
                    out.reason = Some(format!("lost the job {}: {e}", job.id));
                    return out;
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        let at = t0.elapsed();
        out.events = j.events.clone();
        if let Some(r) = j.result.clone() {
            if let Some(why) = cancelled {
                out.reason = Some(why);
            }
            out.result = Some(r);
            return out;
        }
        out.samples.push(Sample::of(at, &j));
        let give_up = on_poll(at, &j);
        if last_note.elapsed() >= PROGRESS_EVERY {
            last_note = Instant::now();
            let pred = j
                .prediction
                .map(|p| match p.total_ms {
                    Some(t) => format!(", Pacer predicts {:.1} s", t as f64 / 1000.0),
                    None => ", Pacer says pre-copy does not converge".into(),
                })
                .unwrap_or_default();
            eprintln!("  {}{pred}", progress_line(&j));
        }
        if cancelled.is_none() {
            let why = if *stop.borrow() {
                Some("interrupted".to_string())
            } else if let Some(why) = give_up {
                out.given_up = true;
                Some(why)
            } else if at > limit {
                out.timed_out = true;
                Some(format!("not done after {} s", limit.as_secs()))
            } else {
                None
            };
            if let Some(why) = why {
                eprintln!("  cancelling the migration: {why}");
                let _ = client.cancel_job(&job.id).await;
                cancelled = Some(why);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed(), if cancelled.is_none() => {}
        }
    }
}

/// A progress line of a running migration.
pub fn progress_line(j: &JobInfo) -> String {
    let p = &j.progress;
    let mut s = format!(
        "{:.0} s: {} {:.0}%",
        p.elapsed_ms as f64 / 1000.0,
        p.phase,
        p.percent
    );
    if let Some(d) = &p.disk {
        s.push_str(&format!(
            ", disk {} of {}{}",
            format_bytes(d.transferred),
            format_bytes(d.total),
            if d.ready { " (in sync)" } else { "" }
        ));
    }
    if p.phase.memory_started() {
        s.push_str(&format!(", memory {}", format_bytes(p.transferred)));
    }
    s
}

/// The usual request: pre-copy to h2 with the CLI's defaults.
pub fn precopy_request(bed: &LiveBed) -> Result<MigrateRequest> {
    Ok(MigrateRequest::new(bed.peer("h2")?, Strategy::PreCopy))
}

/// Sends one command to the guest program on its serial console (next to its QMP
/// socket) and waits up to `answer_within` for its answer (a status line, or a
/// verify line for `verify`); the connection is closed at once after, so the
/// console stays free. Ok(false): sent, but no answer came in time.
pub async fn console_command(
    qmp_socket: &str,
    cmd: Command,
    answer_within: Duration,
) -> Result<bool> {
    let serial = serial_socket(Path::new(qmp_socket));
    let stream = tokio::net::UnixStream::connect(&serial)
        .await
        .with_context(|| {
            format!(
                "cannot open the guest's serial console {}",
                serial.display()
            )
        })?;
    let (r, mut w) = stream.into_split();
    w.write_all(cmd.line().as_bytes())
        .await
        .with_context(|| format!("cannot write {:?} to the guest's console", cmd.as_str()))?;
    let mut lines = BufReader::new(r).lines();
    let answer = async {
        while let Ok(Some(l)) = lines.next_line().await {
            match (cmd, parse_line(&l)) {
                (Command::Verify, Some(GuestLine::Verify(_))) => return true,
                (Command::Verify, _) => {}
                (_, Some(GuestLine::Status(_))) => return true,
                _ => {}
            }
        }
        false
    };
    Ok(tokio::time::timeout(answer_within, answer)
        .await
        .unwrap_or(false))
}

/// The serial console socket beside a VM's QMP socket (the agent's layout).
pub fn serial_socket(qmp: &Path) -> PathBuf {
    qmp.with_file_name("serial.sock")
}

/// A migration's time limit: `base` plus four times what the link needs for
/// memory and disk at `link_bps`.
pub fn migration_limit(
    base: Duration,
    memory_mib: u64,
    disk_bytes: u64,
    link_bps: u64,
) -> Duration {
    let bytes = (memory_mib << 20) + disk_bytes;
    let link_s = if link_bps == 0 {
        0.0
    } else {
        bytes as f64 * 8.0 / link_bps as f64
    };
    base + Duration::from_secs_f64(4.0 * link_s)
}

/// Where the plot of `scenario` goes: beside the results file, named after it
/// (`bench-results/predict.json` -> `bench-results/predict-<scenario>.svg`).
pub fn plot_path(out: &Path, scenario: &str) -> PathBuf {
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bench".into());
    dir.join(format!("{stem}-{scenario}.svg"))
}

/// The chart of one migration: Pacer's predicted total with its band and the
/// naive estimate (labelled `naive_label`) over the time since the request,
/// against the actual total.
pub fn prediction_chart(
    title: String,
    predictions: &[PredictionPoint],
    actual_ms: u64,
    naive_label: &str,
) -> Chart {
    prediction_chart_of(title, predictions, Some(actual_ms), naive_label)
}

/// [`prediction_chart`] of a migration that may have no actual total (it did
/// not end): "does not converge" predictions are marks at the top edge, and a
/// band without a late end reaches it.
pub fn prediction_chart_of(
    title: String,
    predictions: &[PredictionPoint],
    actual_ms: Option<u64>,
    naive_label: &str,
) -> Chart {
    let s = |ms: u64| ms as f64 / 1000.0;
    let pacer = predictions
        .iter()
        .filter_map(|p| Some((s(p.elapsed_ms), s(p.total_ms?))))
        .collect();
    let band: Vec<(f64, f64, f64)> = predictions
        .iter()
        .map(|p| {
            let high = p.high_ms.map_or(f64::INFINITY, s);
            (s(p.elapsed_ms), s(p.low_ms), high)
        })
        .collect();
    let naive = predictions
        .iter()
        .filter_map(|p| p.naive_total_ms.map(|n| (s(p.elapsed_ms), s(n))))
        .collect();
    let never: Vec<(f64, f64)> = predictions
        .iter()
        .filter(|p| p.total_ms.is_none())
        .map(|p| (s(p.elapsed_ms), f64::INFINITY))
        .collect();
    let mut lines = vec![
        Line::new("Pacer: predicted total", PALETTE[0], pacer),
        Line::new(naive_label, PALETTE[1], naive).dashed(),
    ];
    let mut notes = Vec::new();
    if !never.is_empty() {
        lines.push(
            Line::new(
                "Pacer: does not converge (marked at the top)",
                PALETTE[5],
                never,
            )
            .marks(),
        );
    }
    if band.iter().any(|b| b.2.is_infinite()) {
        notes.push("where the band has no late end (an open top) it reaches the top edge".into());
    }
    let (hrules, y_max) = match actual_ms {
        Some(a) => (
            vec![Rule::new(
                &format!("actual total {:.2} s", s(a)),
                "#000000",
                false,
                s(a),
            )],
            Some(s(a) * 3.0),
        ),
        None => {
            let last = predictions
                .iter()
                .map(|p| p.elapsed_ms)
                .max()
                .unwrap_or(1000);
            (vec![], Some(s(last) * 3.0))
        }
    };
    Chart {
        title,
        x_label: "elapsed since the request (s)".into(),
        y_label: "total migration time (s)".into(),
        lines,
        bands: vec![Band {
            label: "Pacer's band (80%)".into(),
            color: PALETTE[0].into(),
            points: band,
        }],
        hrules,
        vrules: vec![],
        y_max,
        notes,
    }
}

/// Writes an SVG file; a failure is reported, not fatal.
pub fn write_svg(path: &Path, svg: &str) -> Option<String> {
    match std::fs::write(path, svg) {
        Ok(()) => Some(path.display().to_string()),
        Err(e) => {
            eprintln!("warning: cannot write {}: {e}", path.display());
            None
        }
    }
}

/// Parses a duration of 0 to 600 s (the wait for the background prior).
pub fn parse_prior_wait(s: &str) -> Result<f64, String> {
    let d = pacer_model::parse_duration(s).map_err(|e| e.to_string())?;
    let secs = d.as_secs_f64();
    if secs > 600.0 {
        return Err(format!("{s:?} is more than 10 minutes"));
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_beside_qmp() {
        assert_eq!(
            serial_socket(Path::new("/s/h1/vms/v/qmp.sock")),
            PathBuf::from("/s/h1/vms/v/serial.sock")
        );
    }

    #[test]
    fn limits_and_parsers() {
        // 1 GiB over 1 Gbit/s is ~8.6 s: four times that on top of 120 s.
        let base = Duration::from_secs(120);
        assert_eq!(migration_limit(base, 1024, 0, 1_000_000_000).as_secs(), 154);
        assert_eq!(migration_limit(base, 1024, 0, 0).as_secs(), 120);
        // 2.5 GiB over 1 Gbit/s is ~21.5 s; four times that on top of the base.
        assert_eq!(
            migration_limit(Duration::from_secs(600), 512, 2 << 30, 1_000_000_000).as_secs(),
            685
        );
        assert_eq!(parse_prior_wait("20s"), Ok(20.0));
        assert_eq!(parse_prior_wait("0s"), Ok(0.0));
        assert!(parse_prior_wait("11m").is_err());
        assert!(parse_prior_wait("soon").is_err());
        assert_eq!(
            plot_path(Path::new("r.json"), "x"),
            PathBuf::from("./r-x.svg")
        );
        assert_eq!(
            plot_path(Path::new("a/control.json"), "1_5x"),
            PathBuf::from("a/control-1_5x.svg")
        );
    }
}
