//! The record of one migration that every benchmark keeps: how it ended, its
//! times and bytes, the guest's check, Pacer's predictions and the job's events.
//! Each benchmark's run record embeds it (flattened in the JSON) beside what that
//! benchmark adds.

use pacer_api::{JobStatus, MigrationResult, PredictionPoint};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use super::harness::Followed;
use super::{fmt_downtime, fmt_sent, fmt_total};

/// One migration as a benchmark saw it.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationRecord {
    /// `completed`, `failed`, `cancelled` or `error` (the run could not be made).
    pub status: String,
    /// Why it failed (or a note on a completed run).
    pub reason: Option<String>,
    /// Total time: Pacer's from its request to the guest running at the destination.
    pub total_time_ms: Option<u64>,
    /// Downtime as reported.
    pub downtime_ms: Option<u64>,
    /// Bytes sent (memory and disks).
    pub bytes_transferred: Option<u64>,
    /// QEMU's own time for the memory migration.
    pub qemu_total_time_ms: Option<u64>,
    /// Pre-copy rounds of memory.
    pub rounds: Option<u64>,
    /// The guest's check at the destination (memory, and disks when it has some).
    pub integrity_ok: Option<bool>,
    /// Pacer's predictions during the migration.
    pub predictions: Vec<PredictionPoint>,
    /// The migration job's events.
    pub events: Vec<String>,
    /// The driver's own result: Pacer's MigrationResult (or another driver's JSON).
    pub detail: Value,
}

impl Default for MigrationRecord {
    fn default() -> Self {
        MigrationRecord {
            status: "error".into(),
            reason: None,
            total_time_ms: None,
            downtime_ms: None,
            bytes_transferred: None,
            qemu_total_time_ms: None,
            rounds: None,
            integrity_ok: None,
            predictions: Vec::new(),
            events: Vec::new(),
            detail: Value::Null,
        }
    }
}

/// `completed`, `failed` or `cancelled`.
pub fn status_word(s: JobStatus) -> &'static str {
    match s {
        JobStatus::Completed => "completed",
        JobStatus::Cancelled => "cancelled",
        _ => "failed",
    }
}

impl MigrationRecord {
    /// Whether the migration completed.
    pub fn completed(&self) -> bool {
        self.status == "completed"
    }

    /// The reason, or a word saying there is none.
    pub fn why(&self) -> &str {
        self.reason.as_deref().unwrap_or("no reason given")
    }

    /// Takes Pacer's result: the status, and the figures when it completed. A
    /// reason already set stays.
    pub fn fill(&mut self, r: &MigrationResult) {
        self.status = status_word(r.status).into();
        if self.reason.is_none() {
            self.reason = r.reason.clone();
        }
        self.predictions = r.predictions.clone();
        self.detail = serde_json::to_value(r).unwrap_or(Value::Null);
        if r.status != JobStatus::Completed {
            return;
        }
        self.total_time_ms = Some(r.total_time_ms);
        self.downtime_ms = r.downtime_ms;
        self.bytes_transferred = Some(r.bytes_transferred);
        self.qemu_total_time_ms = r.qemu_total_time_ms;
        self.rounds = Some(r.rounds);
        // `ok` covers memory and disks.
        self.integrity_ok = r.integrity.as_ref().map(|i| i.ok);
        if self.integrity_ok.is_none() && self.reason.is_none() {
            self.reason = Some("the guest check did not run".into());
        }
    }

    /// Takes a followed migration: its events, and its result if it has one. A
    /// migration cancelled for taking too long counts as failed; the follower's
    /// reason (why it cancelled, or why there is no result) comes before the
    /// result's own.
    pub fn take(&mut self, f: &Followed) {
        self.events = f.events.clone();
        let own = self.reason.take();
        let theirs = match &f.result {
            None => {
                self.status = "error".into();
                None
            }
            Some(r) => {
                self.fill(r);
                if f.timed_out && r.status == JobStatus::Cancelled {
                    self.status = "failed".into();
                }
                self.reason.take()
            }
        };
        let followed = match (f.reason.clone(), theirs) {
            (Some(why), Some(r)) => Some(format!("{why} ({r})")),
            (why, r) => why.or(r),
        };
        self.reason = own.or(followed);
    }

    /// After a run that Ctrl-C stopped before it got anywhere: `cancelled`.
    pub fn mark_interrupted(&mut self, stop: &watch::Receiver<bool>) {
        if *stop.borrow() && self.status == "error" {
            self.status = "cancelled".into();
            self.reason = Some("interrupted".into());
        }
    }

    /// `status: reason` of a run that did not complete.
    pub fn failure(&self) -> Option<String> {
        (!self.completed()).then(|| format!("{}: {}", self.status, self.why()))
    }

    /// `total T, downtime D, sent B` of a completed run.
    pub fn figures(&self) -> String {
        let f = |v: Option<u64>| v.map(|v| v as f64);
        format!(
            "total {}, downtime {}, sent {}",
            fmt_total(f(self.total_time_ms)),
            fmt_downtime(f(self.downtime_ms), false),
            fmt_sent(f(self.bytes_transferred))
        )
    }
}

/// Runs of one table row: those made, and those of them that completed.
pub struct Row<'a, T> {
    /// Every run of the row.
    pub all: Vec<&'a T>,
    /// The completed ones.
    pub done: Vec<&'a T>,
}

impl<'a, T> Row<'a, T> {
    /// The runs `mine` picks, split by `record`'s completion.
    pub fn of(
        runs: &'a [T],
        mine: impl Fn(&T) -> bool,
        record: impl Fn(&T) -> &MigrationRecord,
    ) -> Self {
        let all: Vec<&T> = runs.iter().filter(|r| mine(r)).collect();
        let done = all
            .iter()
            .copied()
            .filter(|r| record(r).completed())
            .collect();
        Row { all, done }
    }

    /// The median of a figure over the completed runs.
    pub fn median(&self, f: impl Fn(&T) -> Option<u64>) -> Option<f64> {
        super::median(
            &self
                .done
                .iter()
                .filter_map(|r| f(r))
                .map(|v| v as f64)
                .collect::<Vec<_>>(),
        )
    }

    /// How many completed runs' `check` said `want`.
    pub fn count(&self, check: impl Fn(&T) -> Option<bool>, want: bool) -> usize {
        self.done.iter().filter(|r| check(r) == Some(want)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(status: &str, reason: Option<&str>) -> MigrationResult {
        serde_json::from_value(json!({
            "status": status, "vm": "v", "strategy": "pre-copy", "total_time_ms": 9000,
            "downtime_ms": 280, "bytes_transferred": 1_000_000_000u64, "source": "h1",
            "destination": "h2", "vm_location": "h2", "reason": reason, "qemu_total_time_ms": 8800,
            "rounds": 9, "precopy_bytes": 1, "downtime_bytes": 1, "postcopy_bytes": 0,
            "integrity": {"ok": true, "pages_checked": 1, "bad_pages": 0, "errors_total": 0,
                          "duration_ms": 1},
        }))
        .unwrap()
    }

    #[test]
    fn fills_from_a_result() {
        let mut r = MigrationRecord::default();
        assert_eq!(r.failure().as_deref(), Some("error: no reason given"));
        r.fill(&result("completed", None));
        assert!(r.completed());
        assert_eq!(
            (r.total_time_ms, r.rounds, r.integrity_ok),
            (Some(9000), Some(9), Some(true))
        );
        assert_eq!(r.figures(), "total 9.00 s, downtime 280 ms, sent 953.7 MiB");
        assert_eq!(r.failure(), None);
        let mut r = MigrationRecord::default();
        r.fill(&result("failed", Some("boom")));
        assert_eq!(r.failure().as_deref(), Some("failed: boom"));
        assert_eq!(r.total_time_ms, None);
    }

    #[test]
    fn takes_a_followed_migration() {
        // Cancelled for taking too long: failed, with both reasons.
        let f = Followed {
            result: Some(result("cancelled", Some("cancelled by request"))),
            reason: Some("not done after 154 s".into()),
            timed_out: true,
            events: vec!["destination ready".into()],
            ..Followed::default()
        };
        let mut r = MigrationRecord::default();
        r.take(&f);
        assert_eq!(r.status, "failed");
        assert_eq!(r.why(), "not done after 154 s (cancelled by request)");
        assert_eq!(r.events, ["destination ready"]);
        // Interrupted: cancelled; a reason set before stays.
        let f = Followed {
            result: Some(result("cancelled", None)),
            reason: Some("interrupted".into()),
            ..Followed::default()
        };
        let mut r = MigrationRecord {
            reason: Some("cannot change the link rate".into()),
            ..Default::default()
        };
        r.take(&f);
        assert_eq!(
            (r.status.as_str(), r.why()),
            ("cancelled", "cannot change the link rate")
        );
        // No result at all.
        let f = Followed {
            reason: Some("the migration was refused: no".into()),
            ..Followed::default()
        };
        let mut r = MigrationRecord::default();
        r.take(&f);
        assert_eq!(
            (r.status.as_str(), r.why()),
            ("error", "the migration was refused: no")
        );
        let (tx, rx) = watch::channel(true);
        r.mark_interrupted(&rx);
        assert_eq!((r.status.as_str(), r.why()), ("cancelled", "interrupted"));
        drop(tx);
    }

    #[test]
    fn rows_and_medians() {
        let mut a = MigrationRecord::default();
        a.fill(&result("completed", None));
        let mut b = a.clone();
        b.total_time_ms = Some(11000);
        let c = MigrationRecord::default();
        let runs = [(1, a), (1, b), (1, c), (2, MigrationRecord::default())];
        let row = Row::of(&runs, |r| r.0 == 1, |r| &r.1);
        assert_eq!((row.all.len(), row.done.len()), (3, 2));
        assert_eq!(row.median(|r| r.1.total_time_ms), Some(10000.0));
        assert_eq!(row.count(|r| r.1.integrity_ok, true), 2);
    }
}
