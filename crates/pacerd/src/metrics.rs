//! Metrics for the tools operators already run: `/metrics`, via the
//! `prometheus-client` crate, in OpenMetrics when the scraper asks for it
//! (Prometheus does) and otherwise in the Prometheus text format 0.0.4 (what
//! `promtool check metrics`, older scrapers and `curl` users get). Names follow
//! Prometheus conventions: base units, `_bytes`, `_seconds`, `_total`.
//!
//! Counters and histograms of ended migrations live here; the gauges of running
//! migrations are read from the job table at each scrape, so they have one
//! owner (the job) and a finished job's series simply disappear.

use std::sync::atomic::AtomicU64;

use pacer_api::{JobInfo, JobStatus, MigrationResult};
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Labels of a migration's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: String,
    vm: String,
    destination: String,
}

/// Labels of the byte counts of a migration: memory and disks apart.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartLabels {
    job: String,
    vm: String,
    destination: String,
    part: String,
}

/// Labels of the phase series: one per running job, value 1.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    job: String,
    vm: String,
    phase: String,
}

/// How migrations ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
    strategy: String,
}

/// Labels of the per-strategy histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StrategyLabels {
    strategy: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The agent's long-lived metrics.
pub struct Metrics {
    ended: Family<ResultLabels, Counter>,
    downtime: Family<StrategyLabels, Histogram>,
    duration: Family<StrategyLabels, Histogram>,
    sent: Counter,
}

impl Metrics {
    /// Fresh metrics.
    pub fn new() -> Metrics {
        Metrics {
            ended: Family::default(),
            // 1 ms to about 65 s.
            downtime: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 17))),
            // 0.5 s to about 4.5 h.
            duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.5, 2.0, 15))),
            sent: Counter::default(),
        }
    }

    /// Counts one ended migration.
    pub fn migration_ended(&self, r: &MigrationResult) {
        let result = match r.status {
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Running => "running",
        };
        let strategy = r.strategy.as_str().to_string();
        self.ended.get_or_create(&ResultLabels { result: result.into(), strategy: strategy.clone() }).inc();
        self.sent.inc_by(r.bytes_transferred + r.probe_bytes);
        if r.status == JobStatus::Completed {
            let s = StrategyLabels { strategy };
            self.duration.get_or_create(&s).observe(r.total_time_ms as f64 / 1000.0);
            if let Some(d) = r.downtime_ms {
                self.downtime.get_or_create(&s).observe(d as f64 / 1000.0);
            }
        }
    }

    /// The text a scrape gets, with the gauges of the `running` jobs and the number of VMs.
    pub fn render(&self, running: &[JobInfo], vms: usize, format: Format) -> String {
        let open = self.openmetrics(running, vms);
        match format {
            Format::OpenMetrics => open,
            Format::Text => to_text_format(&open),
        }
    }

    fn openmetrics(&self, running: &[JobInfo], vms: usize) -> String {
        let mut r = Registry::with_prefix("pacer");
        r.register("migrations", "Migrations from this host that ended, by result", self.ended.clone());
        r.register_with_unit(
            "migration_downtime",
            "Guest downtime of completed migrations (source stop to destination run)",
            Unit::Seconds,
            self.downtime.clone(),
        );
        r.register_with_unit(
            "migration_duration",
            "Total time of completed migrations, request to guest running at the destination",
            Unit::Seconds,
            self.duration.clone(),
        );
        r.register_with_unit(
            "migration_sent",
            "Bytes sent by migrations from this host that ended (memory, disks, link probes)",
            Unit::Bytes,
            self.sent.clone(),
        );
        let host_vms: FloatGauge = Gauge::default();
        host_vms.set(vms as f64);
        r.register("vms", "VMs on this host", host_vms);

        let gauge = || Family::<JobLabels, FloatGauge>::default();
        let part = || Family::<PartLabels, FloatGauge>::default();
        let (remaining, transferred) = (part(), part());
        let (total, rate, dirty) = (gauge(), gauge(), gauge());
        let (elapsed, eta, predicted, low, high, downtime, done, converges) =
            (gauge(), gauge(), gauge(), gauge(), gauge(), gauge(), gauge(), gauge());
        let phase = Family::<PhaseLabels, FloatGauge>::default();
        for j in running.iter().filter(|j| j.status == JobStatus::Running) {
            let l = JobLabels { job: j.id.clone(), vm: j.vm.clone(), destination: j.destination.clone() };
            let p = &j.progress;
            let of = |part: &str| PartLabels {
                job: j.id.clone(),
                vm: j.vm.clone(),
                destination: j.destination.clone(),
                part: part.into(),
            };
            if let Some(d) = &p.disk {
                remaining.get_or_create(&of("disk")).set(d.remaining as f64);
                transferred.get_or_create(&of("disk")).set(d.transferred as f64);
            }
            // Before memory migration starts, the progress figures are the disks'.
            if p.phase.memory_started() {
                remaining.get_or_create(&of("memory")).set(p.remaining as f64);
                transferred.get_or_create(&of("memory")).set(p.transferred as f64);
                total.get_or_create(&l).set(p.total as f64);
            }
            rate.get_or_create(&l).set(p.rate_bps);
            dirty.get_or_create(&l).set(p.dirty_rate_bps);
            elapsed.get_or_create(&l).set(p.elapsed_ms as f64 / 1000.0);
            done.get_or_create(&l).set(p.percent / 100.0);
            if let Some(pr) = &j.prediction {
                let s = |ms: u64| ms as f64 / 1000.0;
                // A migration that will not end on its own has no ETA: +Inf, as Prometheus writes it.
                let or_inf = |ms: Option<u64>| ms.map_or(f64::INFINITY, s);
                predicted.get_or_create(&l).set(or_inf(pr.total_ms));
                low.get_or_create(&l).set(s(pr.low_ms));
                high.get_or_create(&l).set(or_inf(pr.high_ms));
                eta.get_or_create(&l).set(or_inf(pr.total_ms.map(|t| t.saturating_sub(p.elapsed_ms))));
                converges.get_or_create(&l).set(pr.completes_chance);
                downtime.get_or_create(&l).set(s(pr.downtime_ms));
            }
            phase
                .get_or_create(&PhaseLabels { job: j.id.clone(), vm: j.vm.clone(), phase: p.phase.as_str().into() })
                .set(1.0);
        }
        let m = r.sub_registry_with_prefix("migration");
        m.register_with_unit("remaining", "Bytes still to send, memory (QEMU's count) and disks apart", Unit::Bytes, remaining);
        m.register_with_unit("transferred", "Bytes sent so far, memory and disks apart", Unit::Bytes, transferred);
        m.register_with_unit("memory", "Guest memory being migrated", Unit::Bytes, total);
        m.register("rate_bytes_per_second", "Current transfer rate", rate);
        m.register("dirty_rate_bytes_per_second", "Guest memory dirty rate over the last round", dirty);
        m.register_with_unit("elapsed", "Time since the migration was requested", Unit::Seconds, elapsed);
        m.register_with_unit("eta", "Predicted time left", Unit::Seconds, eta);
        m.register_with_unit("predicted_total", "Predicted total time", Unit::Seconds, predicted);
        m.register_with_unit("predicted_total_low", "Early end of the prediction's band", Unit::Seconds, low);
        m.register_with_unit("predicted_total_high", "Late end of the prediction's band", Unit::Seconds, high);
        m.register_with_unit("predicted_downtime", "Predicted guest downtime", Unit::Seconds, downtime);
        m.register("done_ratio", "Share of the predicted time that has passed (never decreases)", done);
        m.register(
            "completes_chance",
            "How likely the migration is to end on its own (0: pre-copy does not converge at this rate)",
            converges,
        );
        m.register("phase", "The phase each running migration is in (1 for its phase)", phase);
        let mut out = String::new();
        let _ = encode_registry(&mut out, &r);
        let _ = encode_eof(&mut out);
        out
    }
}

/// The two exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 (`application/openmetrics-text`).
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (`text/plain`).
    Text,
}

impl Format {
    /// The format a scraper's `Accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    /// Its content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// OpenMetrics as the Prometheus text format: a counter family is named with
/// its `_total` (as its samples are), and `# UNIT` and `# EOF` go.
/// `prometheus-client` writes only OpenMetrics, hence these few lines.
fn to_text_format(open: &str) -> String {
    let counters: std::collections::HashSet<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open.len());
    for line in open.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let name = if counters.contains(name) { format!("{name}_total") } else { name.to_string() };
                out.push_str(&format!("{p}{name} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacer_api::{JobPhase, PredictionPoint, Progress, Strategy};

    fn job() -> JobInfo {
        JobInfo {
            id: "job-1".into(),
            vm: "vm".into(),
            status: JobStatus::Running,
            strategy: Strategy::PreCopy,
            source: "h1".into(),
            destination: "h2".into(),
            progress: Progress {
                elapsed_ms: 2_000,
                phase: JobPhase::PreCopy,
                transferred: 500,
                remaining: 300,
                total: 1000,
                percent: 40.0,
                ..Default::default()
            },
            result: None,
            events: vec![],
            prediction: Some(PredictionPoint {
                elapsed_ms: 2_000,
                total_ms: Some(5_000),
                low_ms: 4_500,
                high_ms: Some(5_500),
                downtime_ms: 300,
                naive_total_ms: None,
                completes_chance: 1.0,
                stuck: None,
                edge: None,
            }),
            predictions: vec![],
            target: None,
            started_unix_ms: 0,
        }
    }

    #[test]
    fn running_jobs_and_ended_migrations_are_exposed_in_base_units() {
        let m = Metrics::new();
        let r: MigrationResult = serde_json::from_value(serde_json::json!({
            "status": "completed", "vm": "vm", "strategy": "pre-copy", "total_time_ms": 9000,
            "downtime_ms": 250, "bytes_transferred": 1048576, "source": "h1", "destination": "h2",
            "vm_location": "h2", "reason": null, "qemu_total_time_ms": null, "integrity": null,
            "rounds": 3, "precopy_bytes": 0, "downtime_bytes": 0, "postcopy_bytes": 0
        }))
        .unwrap();
        m.migration_ended(&r);
        let text = m.render(&[job()], 1, Format::OpenMetrics);
        for want in [
            "pacer_migrations_total{result=\"completed\",strategy=\"pre-copy\"} 1",
            "pacer_migration_eta_seconds{job=\"job-1\",vm=\"vm\",destination=\"h2\"} 3.0",
            "pacer_migration_remaining_bytes{job=\"job-1\",vm=\"vm\",destination=\"h2\",part=\"memory\"} 300.0",
            "pacer_migration_phase{job=\"job-1\",vm=\"vm\",phase=\"pre-copy\"} 1.0",
            "pacer_migration_downtime_seconds_bucket{le=\"0.256\",strategy=\"pre-copy\"} 1",
            "pacer_migration_sent_bytes_total 1048576",
            "# EOF",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        let plain = m.render(&[job()], 1, Format::Text);
        assert!(plain.contains("# TYPE pacer_migrations_total counter\npacer_migrations_total{"), "{plain}");
        assert!(plain.contains("# HELP pacer_migration_downtime_seconds Guest downtime"), "{plain}");
        assert!(!plain.contains("# EOF") && !plain.contains("# UNIT"), "{plain}");
        assert_eq!(Format::from_accept(Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")), Format::OpenMetrics);
        assert_eq!(Format::from_accept(None), Format::Text);
    }
}
