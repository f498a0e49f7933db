//! Convergence judged, not assumed, with real QEMU: a guest dirtying faster than
//! its link is reported as not converging within seconds (and, with post-copy
//! allowed and a target, finished by switching); a guest that starts writing in
//! the middle of a migration moves the prediction within seconds.

// The lock only serialises tests (each has its own runtime): holding it across
// awaits is the point.
#![allow(clippy::await_holding_lock)]

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{BedSpec, TestBed};
use pacer_api::{ConvergeAction, ConvergePolicy, JobInfo, JobStatus, Strategy};
use tokio::io::AsyncWriteExt;

/// One at a time: each judges rates, which another's guests would disturb.
static SERIAL: Mutex<()> = Mutex::new(());

/// 200 Mbit/s between the hosts: 25 MB/s, well under what the writer dirties.
fn slow_bed() -> TestBed {
    TestBed::new(BedSpec { rate: "200mbit", ..Default::default() })
}

/// Polls a job until `done` holds for it (or it ends, or `limit` passes).
async fn watch(tb: &TestBed, id: &str, limit: Duration, done: impl Fn(&JobInfo) -> bool) -> JobInfo {
    let t0 = Instant::now();
    loop {
        let j = tb.client("h1").job(id).await.unwrap();
        if done(&j) || j.result.is_some() || t0.elapsed() > limit {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The first prediction saying pre-copy does not converge, if any.
fn first_stuck(j: &JobInfo) -> Option<&pacer_api::PredictionPoint> {
    j.predictions.iter().find(|p| p.total_ms.is_none() && p.stuck.is_some())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_dirtying_faster_than_the_link_is_reported_not_converging_within_seconds() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = slow_bed();
    let before = tb.start_guest("h1", "vm", 512, 256, 60.0).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Before the start: it would not converge, and Pacer says what would end it.
    let p = tb.client("h1").predict("vm", &tb.precopy_prediction("h2")).await.unwrap();
    assert!(p.total_ms.is_none() && !p.converges && p.completes_chance < 0.2, "{p:?}");
    let advice = p.stuck.expect("what would end it");
    assert!(advice.downtime_limit_ms > 1000 && advice.bandwidth_needed_bps.is_some_and(|b| b > 30e6), "{advice:?}");
    // Running: said within 5 s of the start, and it stays said.
    let job = tb.start_migration("h1", "h2", "vm", Strategy::PreCopy, |_| {}).await;
    let j = watch(&tb, &job.id, Duration::from_secs(30), |j| first_stuck(j).is_some_and(|p| p.elapsed_ms > 0)).await;
    let first = first_stuck(&j).unwrap_or_else(|| panic!("never said it does not converge: {j:?}"));
    assert!(first.elapsed_ms <= 5_000, "said at {} ms: {:?}", first.elapsed_ms, j.predictions);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let j = tb.client("h1").job(&job.id).await.unwrap();
    let last = j.prediction.unwrap();
    assert!(last.total_ms.is_none() && last.stuck.is_some(), "{last:?}");
    assert!(j.progress.percent < 90.0, "a stuck migration at {}%", j.progress.percent);
    // Nothing was allowed, so nothing was done; cancelled, the guest stays.
    tb.client("h1").cancel_job(&job.id).await.unwrap();
    let r = tb.wait_job("h1", &job.id).await;
    assert_eq!(r.status, JobStatus::Cancelled, "{r:?}");
    assert!(r.converge_steps.is_empty(), "{r:?}");
    let info = tb.client("h1").vm("vm").await.unwrap();
    assert_eq!(info.pid, before.pid);
    tb.assert_runs_healthy("h1", "vm").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_postcopy_allowed_and_a_target_a_stuck_migration_finishes_by_switching() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = slow_bed();
    tb.start_guest("h1", "vm", 512, 256, 60.0).await;
    // Measured first (a prediction measures the guest afresh).
    tokio::time::sleep(Duration::from_secs(5)).await;
    tb.client("h1").predict("vm", &tb.precopy_prediction("h2")).await.unwrap();
    let job = tb
        .start_migration("h1", "h2", "vm", Strategy::PreCopy, |r| {
            r.finish_in_s = Some(90.0);
            r.converge = ConvergePolicy { max_downtime_ms: Some(2_000), allow_postcopy: true };
        })
        .await;
    let r = tb.wait_job("h1", &job.id).await;
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    let step = r.converge_steps.iter().find(|s| s.action == ConvergeAction::Postcopy);
    let step = step.unwrap_or_else(|| panic!("no post-copy switch: {:?}", r.converge_steps));
    assert!(step.at_ms <= 15_000, "switched at {} ms: {r:?}", step.at_ms);
    assert!(r.postcopy_bytes > 0 && r.downtime_ms.unwrap_or(u64::MAX) < 1_000, "{r:?}");
    assert!(r.total_time_ms < 90_000, "{r:?}");
    assert!(r.integrity.as_ref().is_some_and(|i| i.ok), "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_starts_writing_mid_migration_moves_the_prediction_within_seconds() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = slow_bed();
    // Its writer is paused: the agent measures an idle guest.
    let vm = tb.start_guest_paused("h1", "vm", 768, 384, 20.0).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    tb.client("h1").predict("vm", &tb.precopy_prediction("h2")).await.unwrap();
    let job = tb.start_migration("h1", "h2", "vm", Strategy::PreCopy, |_| {}).await;
    let j = watch(&tb, &job.id, Duration::from_secs(30), |j| j.predictions.len() >= 4).await;
    let idle = j
        .prediction
        .and_then(|p| p.total_ms)
        .unwrap_or_else(|| panic!("an idle guest converges: {:?}", j.predictions));
    // The writer starts.
    let serial = std::path::Path::new(&vm.qmp_socket).with_file_name("serial.sock");
    let mut s = tokio::net::UnixStream::connect(&serial).await.unwrap();
    s.write_all(pacer_guest_proto::Command::Resume.line().as_bytes()).await.unwrap();
    let resumed_ms = tb.client("h1").job(&job.id).await.unwrap().progress.elapsed_ms;
    let j = watch(&tb, &job.id, Duration::from_secs(20), |j| {
        j.predictions
            .iter()
            .any(|p| p.elapsed_ms > resumed_ms && p.total_ms.is_none_or(|t| t as f64 > idle as f64 * 1.15))
    })
    .await;
    let moved = j
        .predictions
        .iter()
        .find(|p| p.elapsed_ms > resumed_ms && p.total_ms.is_none_or(|t| t as f64 > idle as f64 * 1.15))
        .unwrap_or_else(|| panic!("the prediction did not move (idle {idle} ms, resumed at {resumed_ms} ms): {:?}", j.predictions));
    assert!(moved.elapsed_ms - resumed_ms <= 3_000, "moved {} ms after the writer started: {:?}", moved.elapsed_ms - resumed_ms, j.predictions);
    drop(s);
    let r = tb.wait_job("h1", &job.id).await;
    let events = tb.client("h1").job(&job.id).await.unwrap().events;
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    assert!(r.integrity.as_ref().is_some_and(|i| i.ok), "{events:?}");
}
