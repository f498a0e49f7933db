//! Progress management with real QEMU: a finish target met, an infeasible target
//! reported at once (or refused with strict), a target changed mid-flight, and two
//! VMs moved as a group finishing together. Timing figures are measured by
//! `pacer-lab bench control|group`; these tests check the behaviour with tolerances
//! wide enough for a busy machine.

// The lock only serialises tests (each has its own runtime): holding it across
// awaits is the point.
#![allow(clippy::await_holding_lock)]

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::{BedSpec, TestBed};
use pacer_api::{GroupInfo, GroupStatus, JobStatus, Strategy};

/// One at a time: the timing of one must not suffer from another's guests.
static SERIAL: Mutex<()> = Mutex::new(());

#[tokio::test(flavor = "multi_thread")]
async fn finish_in_target_is_met() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = TestBed::new(BedSpec::default());
    tb.start_guest("h1", "vm", 512, 128, 20.0).await;
    let job = tb.start_migration("h1", "h2", "vm", Strategy::PreCopy, |r| r.finish_in_s = Some(15.0)).await;
    let r = tb.wait_job("h1", &job.id).await;
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    let t = r.target.expect("target status");
    assert!(t.feasible, "{t:?}");
    let dev = r.total_time_ms as f64 - 15_000.0;
    assert!(dev.abs() <= 2_000.0, "finished {dev} ms off a 15 s target: {r:?}");
    assert!(r.integrity.as_ref().unwrap().ok);
    // The target needed the link's rate: what probing it cost is reported apart.
    assert!(r.probe_bytes >= 4 << 20, "{r:?}");
    // Every prediction is there to be scored, with the naive estimate beside it.
    assert!(r.predictions.len() >= 5, "{:?}", r.predictions);
    // Under a feasible target every prediction is the controller's finish, with a
    // closed band, and none says the (deliberately held) migration is stuck.
    let odd: Vec<_> = r
        .predictions
        .iter()
        .filter(|p| !matches!((p.total_ms, p.high_ms), (Some(t), Some(h)) if p.low_ms <= t && t <= h) || p.stuck.is_some())
        .collect();
    assert!(odd.is_empty(), "predictions without a closed band: {odd:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn predict_measures_the_guest_without_migrating_it() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = TestBed::new(BedSpec::default());
    let before = tb.start_guest("h1", "vm", 512, 128, 20.0).await;
    // Let the guest's writer fill its working set first: its start-up is not its work.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let p = tb.client("h1").predict("vm", &tb.precopy_prediction("h2")).await.unwrap();
    // 20 MB/s over 128 MiB, read from guest memory: rate and working set both show.
    let rate = p.dirty_rate_bps / 20e6;
    assert!((0.6..1.4).contains(&rate), "dirty rate {} B/s: {p:?}", p.dirty_rate_bps);
    let wss = p.wss_bytes.expect("a bounded working set") / (128u64 << 20) as f64;
    assert!((0.5..2.0).contains(&wss), "working set: {p:?}");
    // QEMU's dirty log was asked too (a probe into a sink): it counts about what
    // hashing saw for a guest that writes new bytes, so the content curve stands.
    assert_eq!(p.dirty_source, "content", "{p:?}");
    assert!(p.zero_fraction > 0.2 && p.zero_fraction < 0.95, "{p:?}");
    let (t, h) = (p.total_ms.expect("it converges"), p.high_ms.expect("a bounded band"));
    assert!(p.low_ms <= t && t <= h && p.converges && p.completes_chance > 0.9, "{p:?}");
    // Nothing moved.
    assert!(tb.vms("h2").await.is_empty());
    let info = tb.client("h1").vm("vm").await.unwrap();
    assert_eq!((info.pid, info.migrating), (before.pid, None));
}

#[tokio::test(flavor = "multi_thread")]
async fn infeasible_target_is_reported_at_once_or_refused() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = TestBed::new(BedSpec::default());
    let before = tb.start_guest("h1", "vm", 512, 128, 20.0).await;
    // Strict: refused before anything starts, with the earliest feasible finish.
    let mut req = pacer_api::MigrateRequest::new(tb.peer("h2"), Strategy::PreCopy);
    req.finish_in_s = Some(0.5);
    req.strict = true;
    let e = tb.client("h1").migrate("vm", &req).await.unwrap_err();
    assert_eq!(e.code(), Some(pacer_api::ErrorCode::TargetInfeasible), "{e}");
    assert!(e.to_string().contains("earliest feasible finish"), "{e}");
    assert!(tb.vms("h2").await.is_empty());
    let info = tb.client("h1").vm("vm").await.unwrap();
    assert_eq!((info.pid, info.migrating), (before.pid, None));
    // Not strict: reported in the job at once, then run flat out.
    let job = tb.start_migration("h1", "h2", "vm", Strategy::PreCopy, |r| r.finish_in_s = Some(0.5)).await;
    assert!(job.events.first().is_some_and(|e| e.contains("cannot be met")), "{:?}", job.events);
    let r = tb.wait_job("h1", &job.id).await;
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    assert!(!r.target.unwrap().feasible);
}

#[tokio::test(flavor = "multi_thread")]
async fn retarget_mid_flight_takes_effect() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = TestBed::new(BedSpec::default());
    tb.start_guest("h1", "vm", 512, 128, 20.0).await;
    let job = tb.start_migration("h1", "h2", "vm", Strategy::PreCopy, |r| r.finish_in_s = Some(60.0)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    tb.client("h1").retarget_job(&job.id, Some(8.0)).await.unwrap();
    let r = tb.wait_job("h1", &job.id).await;
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    // About 12 s instead of 60 s.
    assert!(r.total_time_ms < 20_000, "the new target was ignored: {r:?}");
    assert!(r.total_time_ms > 8_000, "it did not wait for the new target: {r:?}");
    let j = tb.client("h1").job(&job.id).await.unwrap();
    assert!(j.events.iter().any(|e| e.contains("finish target changed")), "{:?}", j.events);
}

#[test]
fn two_vm_group_finishes_together() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = TestBed::new(BedSpec::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        tb.start_guest("h1", "small", 384, 64, 10.0).await;
        tb.start_guest("h1", "big", 768, 256, 30.0).await;
    });
    let out = tb.pacer(&["migrate-group", "small", "big", "--to", "h2", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let g: GroupInfo = serde_json::from_slice(out.stdout.trim_ascii()).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(g.status, GroupStatus::Completed, "{g:?}");
    let result = g.result.as_ref().expect("the group's result");
    assert!(result.all_completed, "{g:?}");
    let spread = result.spread_s;
    assert!(spread <= 2.0, "finish spread {spread} s: {g:?}\n{stderr}");
    rt.block_on(async {
        assert_eq!(tb.vms("h2").await.len(), 2);
        assert!(tb.vms("h1").await.is_empty());
    });
}
