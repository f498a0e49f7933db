//! `/metrics` during a real migration: the series operators' tools scrape, in
//! a format `promtool check metrics` accepts, before and after the migration.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BedSpec, TestBed};
use pacer_api::Strategy;

/// `promtool check metrics` on `text`: its verdict, or its complaint.
fn promtool(text: &str) -> Result<(), String> {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("promtool (Debian package prometheus, installed by scripts/setup.sh): {e}"))?;
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_scraped_during_a_real_migration_and_pass_promtool() {
    let tb = TestBed::new(BedSpec::default());
    tb.start_guest("h1", "vm", 512, 128, 20.0).await;
    let job = tb.start_migration("h1", "h2", "vm", Strategy::PreCopy, |r| r.finish_in_s = Some(15.0)).await;
    // Once the memory migration runs and has a prediction.
    let t0 = Instant::now();
    let j = loop {
        let j = tb.client("h1").job(&job.id).await.unwrap();
        assert!(j.result.is_none(), "ended before it was scraped: {:?}", j.result);
        if j.prediction.is_some() && j.progress.phase.memory_started() {
            break j;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{j:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let text = tb.client("h1").metrics_text().await.unwrap();
    let labels = format!("job=\"{}\",vm=\"vm\",destination=\"h2\"", job.id);
    for series in [
        format!("pacer_migration_eta_seconds{{{labels}}} "),
        format!("pacer_migration_predicted_total_seconds{{{labels}}} "),
        format!("pacer_migration_predicted_total_low_seconds{{{labels}}} "),
        format!("pacer_migration_predicted_total_high_seconds{{{labels}}} "),
        format!("pacer_migration_remaining_bytes{{{labels},part=\"memory\"}} "),
        format!("pacer_migration_transferred_bytes{{{labels},part=\"memory\"}} "),
        format!("pacer_migration_dirty_rate_bytes_per_second{{{labels}}} "),
        format!("pacer_migration_phase{{job=\"{}\",vm=\"vm\",phase=\"{}\"}} 1", job.id, j.progress.phase.as_str()),
        "pacer_vms 1".to_string(),
    ] {
        assert!(text.contains(&series), "no {series:?} in:\n{text}");
    }
    let eta: f64 = text
        .lines()
        .find(|l| l.starts_with("pacer_migration_eta_seconds{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(eta > 0.0 && eta < 20.0, "ETA {eta} s of a 15 s target:\n{text}");
    promtool(&text).unwrap_or_else(|e| panic!("promtool refused the scrape: {e}\n{text}"));

    let r = tb.wait_job("h1", &job.id).await;
    assert_eq!(r.status, pacer_api::JobStatus::Completed, "{r:?}");
    let text = tb.client("h1").metrics_text().await.unwrap();
    for series in [
        "pacer_migrations_total{result=\"completed\",strategy=\"pre-copy\"} 1",
        "pacer_migration_downtime_seconds_count{strategy=\"pre-copy\"} 1",
        "pacer_migration_duration_seconds_count{strategy=\"pre-copy\"} 1",
    ] {
        assert!(text.contains(series), "no {series:?} in:\n{text}");
    }
    assert!(!text.contains(&job.id), "a finished job's series stayed:\n{text}");
    promtool(&text).unwrap_or_else(|e| panic!("promtool refused the scrape: {e}\n{text}"));
}
