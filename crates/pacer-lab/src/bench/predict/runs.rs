//! One run's record: what was expected, the prediction before the start, what
//! happened, and its scores.

use super::*;

/// What the bench expects of a run, from its writer's rate against the link's
/// rate at the end: it decides the time limit and whether the bench may give up
/// once Pacer says "does not converge"; the scoring goes by what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// The writer is well below the link.
    Converges,
    /// At the edge (or an application's writes: not known beforehand).
    Either,
    /// The writer is above the link.
    DoesNotConverge,
}

impl Expect {
    pub(super) fn of(write_mbps: Option<f64>, l: Link) -> Expect {
        match write_mbps.map(|d| d / l.end_mbps()) {
            None => Expect::Either,
            Some(r) if r < CONVERGES_BELOW => Expect::Converges,
            Some(r) if r > STUCK_ABOVE => Expect::DoesNotConverge,
            Some(_) => Expect::Either,
        }
    }
}

/// What changed during a run, and when.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// `link` (rate change) and/or `writer` (the guest starts writing).
    pub what: Vec<String>,
    /// The duration the change time was taken from, ms.
    pub expected_ms: u64,
    /// Where that duration came from.
    pub expected_from: String,
    /// When the change was planned, ms after the request.
    pub planned_ms: u64,
    /// When it was made, ms after the request (None: the migration ended first).
    pub made_ms: Option<u64>,
    /// The job's own elapsed time then, ms.
    pub made_job_ms: Option<u64>,
}

/// What `pacer predict` said before the start, in a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Said {
    /// It converges (a chance it completes of 0.9 or more).
    Converges,
    /// Both outcomes possible (a chance from 0.1 to 0.9).
    Either,
    /// It does not converge (a chance of 0.1 or less).
    DoesNotConverge,
}

impl Said {
    pub(super) fn words(self) -> &'static str {
        match self {
            Said::Converges => "converges",
            Said::Either => "either way",
            Said::DoesNotConverge => "does not converge",
        }
    }
}

/// Pacer's prediction before the start.
#[derive(Debug, Clone, Serialize)]
pub struct Before {
    /// Predicted total, ms (None: pre-copy would not converge).
    pub total_ms: Option<u64>,
    /// Its band, ms.
    pub low_ms: u64,
    /// See `low_ms` (None: no late end).
    pub high_ms: Option<u64>,
    /// Whether pre-copy converges on its own at the measured figures.
    pub converges: bool,
    /// How likely it ends on its own, 0 to 1.
    pub completes_chance: f64,
    /// The finish if it converges, ms (near the edge).
    pub if_it_converges_ms: Option<u64>,
    /// Measured dirty rate, bytes/s.
    pub dirty_rate_bps: f64,
    /// Working set, bytes.
    pub wss_bytes: Option<f64>,
    /// Hot set, bytes.
    pub hot_bytes: f64,
    /// Zero-page fraction.
    pub zero_fraction: f64,
    /// Link rate probed, bytes/s.
    pub link_bps: f64,
    /// The probe's rehearsal of the migration's end, if it ran.
    pub rehearsal: Option<pacer_api::RehearsalView>,
    /// What the dirty log counted, if the probe ran.
    pub dirty_log: Option<pacer_api::DirtyLogView>,
}

impl From<&PredictResponse> for Before {
    fn from(p: &PredictResponse) -> Self {
        Before {
            total_ms: p.total_ms,
            low_ms: p.low_ms,
            high_ms: p.high_ms,
            converges: p.converges,
            completes_chance: p.completes_chance,
            if_it_converges_ms: p.if_it_converges.map(|f| f.total_ms),
            dirty_rate_bps: p.dirty_rate_bps,
            wss_bytes: p.wss_bytes,
            hot_bytes: p.hot_bytes,
            zero_fraction: p.zero_fraction,
            link_bps: p.link_bps,
            rehearsal: p.rehearsal.clone(),
            dirty_log: p.dirty_log.clone(),
        }
    }
}

impl Before {
    /// What it said: both outcomes when the chance is strictly between 0.1 and 0.9.
    pub fn said(&self) -> Said {
        let c = self.completes_chance;
        if c > 0.1 && c < 0.9 {
            Said::Either
        } else if self.total_ms.is_none() || !self.converges || c <= 0.1 {
            Said::DoesNotConverge
        } else {
            Said::Converges
        }
    }

    /// The finish it predicted if the migration ends: its total, or near the edge
    /// the finish if it converges (None: it said it does not converge).
    pub fn finish_ms(&self) -> Option<u64> {
        self.total_ms.or(match self.said() {
            Said::DoesNotConverge => None,
            _ => self.if_it_converges_ms,
        })
    }
}

/// The prediction before the start against what happened, for a run in which
/// nothing changed after the start.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BeforeVerdict {
    /// What it said.
    pub said: Said,
    /// Its chance that the migration ends on its own.
    pub completes_chance: f64,
    /// `completed` or `not-converged`.
    pub happened: String,
    /// Whether what it said held: "converges" and it completed, "does not
    /// converge" and it did not; "either way" holds both ways.
    pub matched: bool,
    /// For "either way": whether it leaned the right way (a chance of 0.5 or
    /// more and it completed, or less and it did not).
    pub leaned_right: Option<bool>,
}

impl BeforeVerdict {
    pub(super) fn of(b: &Before, completed: bool) -> BeforeVerdict {
        let said = b.said();
        BeforeVerdict {
            said,
            completes_chance: b.completes_chance,
            happened: if completed {
                "completed"
            } else {
                "not-converged"
            }
            .into(),
            matched: match said {
                Said::Converges => completed,
                Said::DoesNotConverge => !completed,
                Said::Either => true,
            },
            leaned_right: (said == Said::Either)
                .then_some((b.completes_chance >= 0.5) == completed),
        }
    }
}

/// Where the VM was after the bench cancelled a migration that did not converge.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SourceCheck {
    /// It runs at the source in the same QEMU, and nothing runs it at the destination.
    pub ok: bool,
    /// Its state at the source, in the API's word (None: the source does not know it).
    pub state: Option<String>,
    /// The same QEMU process as before the migration.
    pub same_qemu: bool,
    /// The destination runs it (it should not).
    pub at_destination: bool,
}

/// The status of a run the bench cancelled because it did not converge.
pub const NOT_CONVERGED: &str = "not-converged";

/// One migration.
#[derive(Debug, Clone, Serialize)]
pub struct PredictRun {
    /// Workload.
    pub workload: Wl,
    /// Link.
    pub link: Link,
    /// Repetition (1-based).
    pub repeat: u32,
    /// Position in the order of runs (1-based).
    pub seq: usize,
    /// The guest's memory writer's rate once it writes, MB/s (None: an application's).
    pub write_target_mbps: Option<f64>,
    /// What the bench expected of it (from that rate against the link's).
    pub expect: Expect,
    /// Its time limit, s after the request.
    pub limit_s: u64,
    /// How it went (`status` is `not-converged` for a run the bench cancelled as
    /// not converging).
    #[serde(flatten)]
    pub run: MigrationRecord,
    /// Pacer's absolute error at 10, 25, 50, 75% of the actual duration (fraction of
    /// it; a "does not converge" prediction in force is an infinite error, written
    /// as a number above 1e9).
    pub pacer_errors: [Option<f64>; 4],
    /// The naive estimate's.
    pub naive_errors: [Option<f64>; 4],
    /// Which naive errors come from the bench's own estimate (no agent one then).
    pub naive_from_bench: [bool; 4],
    /// Pacer's band against the actual total (completed runs).
    pub band: Option<BandScore>,
    /// Pacer's prediction before the start.
    pub before: Option<Before>,
    /// Its absolute error (fraction of the actual; completed runs).
    pub before_error: Option<f64>,
    /// It against what happened, where nothing changed after the start.
    pub before_verdict: Option<BeforeVerdict>,
    /// The change made mid-migration.
    pub change: Option<Change>,
    /// Whether the guest answered the command resuming its writer (phase).
    pub writer_resumed: Option<bool>,
    /// When the condition (dirty rate above the link) became true, job ms: the
    /// start, or the link's change (runs that did not converge).
    pub condition_ms: Option<u64>,
    /// How long after it Pacer first said "does not converge", ms (None: never).
    pub recognised_ms: Option<u64>,
    /// After that, how long a converging prediction was in force again, ms.
    pub relapsed_ms: Option<u64>,
    /// How long a "does not converge" prediction was in force while the migration
    /// was converging, ms: in a completed run (from the start, or from a rising
    /// link's change when the writer was above the starting rate), or in one that
    /// did not converge, before the condition.
    pub wrong_stuck_ms: u64,
    /// How many such predictions there were.
    pub wrong_stuck_predictions: usize,
    /// Why the bench cancelled the migration (gave up, or its time limit).
    pub cut: Option<String>,
    /// Where the VM was after that.
    pub source_check: Option<SourceCheck>,
    /// The guest's memory write rate just before the migration (MB/s).
    pub guest_write_mbps: Option<f64>,
    /// What the bench saw at every poll.
    pub samples: Vec<Sample>,
    /// The plot.
    pub plot: Option<String>,
    /// Start, Unix ms.
    pub started_unix_ms: u64,
    /// The whole run, ms.
    pub wall_ms: u64,
}

impl PredictRun {
    pub(super) fn new(workload: Wl, link: Link, repeat: u32, seq: usize, write: Option<f64>) -> Self {
        PredictRun {
            workload,
            link,
            repeat,
            seq,
            write_target_mbps: write,
            expect: Expect::of(write, link),
            limit_s: 0,
            run: MigrationRecord::default(),
            pacer_errors: [None; 4],
            naive_errors: [None; 4],
            naive_from_bench: [false; 4],
            band: None,
            before: None,
            before_error: None,
            before_verdict: None,
            change: None,
            writer_resumed: None,
            condition_ms: None,
            recognised_ms: None,
            relapsed_ms: None,
            wrong_stuck_ms: 0,
            wrong_stuck_predictions: 0,
            cut: None,
            source_check: None,
            guest_write_mbps: None,
            samples: Vec::new(),
            plot: None,
            started_unix_ms: unix_ms(),
            wall_ms: 0,
        }
    }

    pub(super) fn completed(&self) -> bool {
        self.run.completed()
    }

    pub(super) fn not_converged(&self) -> bool {
        self.run.status == NOT_CONVERGED
    }

    /// Completed, or cut short as not converging: an outcome to score.
    pub(super) fn finished(&self) -> bool {
        self.completed() || self.not_converged()
    }

    /// Nothing changes after the start (no link change, no phase change).
    pub(super) fn unchanged(&self) -> bool {
        !self.link.changes() && self.workload != Wl::Phase
    }

    /// The writer is at or above the starting link's rate: the condition holds
    /// from the start.
    pub(super) fn over_at_start(&self) -> bool {
        self.write_target_mbps
            .is_some_and(|d| d >= CONVERGES_BELOW * self.link.start_mbps())
    }

    /// When the condition became true, job ms: the start when the writer is over
    /// the starting rate (or nothing else explains it), else the link's change.
    pub(super) fn condition_job_ms(&self) -> Option<u64> {
        if self.over_at_start() || !self.link.changes() {
            Some(0)
        } else {
            self.change.as_ref().and_then(|c| c.made_job_ms)
        }
    }

    /// Takes the followed migration and scores it. A migration the bench
    /// cancelled (it gave up, or the time limit came) is `not-converged`.
    pub(super) fn take(&mut self, f: Followed, memory_mib: u64) {
        self.run.take(&f);
        let cancelled = f
            .result
            .as_ref()
            .is_some_and(|r| r.status == JobStatus::Cancelled);
        if cancelled && (f.given_up || f.timed_out) {
            self.run.status = NOT_CONVERGED.into();
            self.cut = f.reason.clone();
        }
        self.samples = f.samples;
        self.score(memory_mib);
    }

    /// Scores a completed run's predictions, the naive estimate's, the band and
    /// the one before the start against the actual total; a run that did not
    /// converge by when Pacer said so.
    pub(super) fn score(&mut self, memory_mib: u64) {
        let predictions = &self.run.predictions;
        if self.not_converged() {
            let end = predictions
                .iter()
                .map(|p| p.elapsed_ms)
                .chain(self.samples.iter().map(|s| s.elapsed_ms))
                .max()
                .unwrap_or(0);
            self.condition_ms = self.condition_job_ms();
            if let Some(c) = self.condition_ms {
                self.recognised_ms = recognised_after(predictions, c);
                self.relapsed_ms = self
                    .recognised_ms
                    .map(|r| in_force_ms(predictions, c + r, end + 1, |p| !is_stuck(p)).0);
                let (ms, n) = in_force_ms(predictions, 0, c, is_stuck);
                self.wrong_stuck_ms = ms;
                self.wrong_stuck_predictions = n;
            }
            if self.unchanged() {
                self.before_verdict = self.before.as_ref().map(|b| BeforeVerdict::of(b, false));
            }
            return;
        }
        let Some(actual) = self.run.total_time_ms.filter(|_| self.completed()) else {
            return;
        };
        self.pacer_errors = errors_at_fractions(&pacer_estimates(predictions), actual);
        let fallback = bench_naive(&self.samples, memory_mib << 20);
        let (n, flagged) = naive_errors(predictions, &fallback, actual);
        self.naive_errors = n;
        self.naive_from_bench = flagged;
        self.band = Some(band_score(predictions, actual));
        // "Does not converge" is right only while a rising link had not risen yet.
        let justified = match (&self.change, self.over_at_start() && self.link.changes()) {
            (Some(c), true) => c.made_job_ms.unwrap_or(actual),
            _ => 0,
        };
        let (ms, count) = in_force_ms(predictions, justified, actual, is_stuck);
        self.wrong_stuck_ms = ms;
        self.wrong_stuck_predictions = count;
        self.before_error = self
            .before
            .as_ref()
            .and_then(|b| rel_error(b.finish_ms().unwrap_or(NEVER_MS), actual));
        if self.unchanged() {
            self.before_verdict = self.before.as_ref().map(|b| BeforeVerdict::of(b, true));
        }
    }

    pub(super) fn tag(&self) -> String {
        format!(
            "{} {} run {}",
            self.workload.as_str(),
            self.link.as_str(),
            self.repeat
        )
    }

    pub(super) fn outcome_line(&self) -> String {
        if self.not_converged() {
            return format!(
                "did not converge: {}; cancelled ({})",
                self.recognition_words(),
                self.cut.as_deref().unwrap_or("no reason given")
            );
        }
        if let Some(f) = self.run.failure() {
            return f;
        }
        let cells = |e: &[Option<f64>; 4]| e.map(pct).join(" ");
        format!(
            "completed in {}; error at 10/25/50/75%: Pacer {}, naive {}; band held it in {}",
            fmt_total(self.run.total_time_ms.map(|v| v as f64)),
            cells(&self.pacer_errors),
            cells(&self.naive_errors),
            pct(self.band.as_ref().and_then(|b| b.coverage()))
        )
    }

    /// `condition at 0.0 s (the start), Pacer said so 2.1 s after`.
    pub(super) fn recognition_words(&self) -> String {
        let Some(c) = self.condition_ms else {
            return "the condition (dirty rate above the link) never came: the link did not change"
                .into();
        };
        let when = if c == 0 && self.over_at_start() {
            "the start".to_string()
        } else if c == 0 {
            "the start (unexpected: the writer is below the link)".to_string()
        } else {
            format!("the link's change to {}", self.link.end_rate())
        };
        let said = match self.recognised_ms {
            Some(r) => format!(
                "Pacer said it does not converge {:.1} s after",
                r as f64 / 1000.0
            ),
            None => "Pacer never said it does not converge".into(),
        };
        format!("condition at {:.1} s ({when}), {said}", c as f64 / 1000.0)
    }
}

/// The naive estimate as the bench can make it from the job's progress: elapsed +
/// bytes left / current rate, the disk's and all of memory while disks are copied.
pub fn bench_naive(samples: &[Sample], ram_bytes: u64) -> Vec<Estimate> {
    samples
        .iter()
        .filter_map(|s| {
            let (left, rate) = if s.copying_disks() {
                (s.disk_remaining? + ram_bytes, s.disk_rate_bps?)
            } else {
                (s.remaining, s.rate_bps)
            };
            (rate > 0.0 && s.elapsed_ms > 0).then(|| Estimate {
                at_ms: s.elapsed_ms,
                total_ms: s.elapsed_ms + (left as f64 / rate * 1000.0) as u64,
            })
        })
        .collect()
}

/// When the bench gives up on a migration expected not to converge: once the
/// first "does not converge" prediction made at or after the condition
/// (`condition_ms`, job time; None: not yet true) is [`GIVE_UP_AFTER_MS`] old at
/// `now_ms`. Returns that prediction's time.
pub fn give_up_at(
    points: &[pacer_api::PredictionPoint],
    condition_ms: Option<u64>,
    now_ms: u64,
) -> Option<u64> {
    let first = condition_ms.and_then(|c| {
        points
            .iter()
            .filter(|p| p.elapsed_ms >= c && is_stuck(p))
            .map(|p| p.elapsed_ms)
            .min()
    })?;
    (now_ms >= first + GIVE_UP_AFTER_MS).then_some(first)
}
