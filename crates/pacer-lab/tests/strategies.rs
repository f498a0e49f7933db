//! Every strategy moves a guest under memory write load between two test hosts,
//! and the guest's memory check passes at the destination.

mod common;

use common::{BedSpec, TestBed};
use pacer_api::{JobStatus, Strategy};

async fn migrate_with(strategy: Strategy, tweak: impl FnOnce(&mut pacer_api::MigrateRequest)) {
    let tb = TestBed::new(BedSpec::default());
    tb.start_guest("h1", "vm", 512, 192, 40.0).await;
    let job = tb.start_migration("h1", "h2", "vm", strategy, tweak).await;
    let r = tb.wait_job("h1", &job.id).await;
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    assert_eq!(r.strategy, strategy);
    assert_eq!(r.vm_location, "h2");
    assert!(r.bytes_transferred > 64 << 20, "{r:?}");
    let integrity = r.integrity.as_ref().expect("integrity result");
    assert!(integrity.ok && integrity.pages_checked >= 192 * 256, "{integrity:?}");
    // Gone from the source, running at the destination and still writing.
    assert!(tb.vms("h1").await.is_empty(), "source still lists the VM");
    tb.assert_runs_healthy("h2", "vm").await;
    match strategy {
        Strategy::PostCopy | Strategy::Hybrid => {}
        _ => assert_eq!(r.postcopy_bytes, 0, "{r:?}"),
    }
    if strategy == Strategy::PostCopy {
        assert!(r.postcopy_bytes > 0, "post-copy sent nothing in post-copy: {r:?}");
    }
    if strategy == Strategy::StopAndCopy {
        // The guest was stopped for the whole copy.
        assert!(r.downtime_ms.unwrap() * 10 >= r.total_time_ms * 5, "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn precopy_moves_a_writing_guest_intact() {
    migrate_with(Strategy::PreCopy, |_| {}).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postcopy_moves_a_writing_guest_intact() {
    migrate_with(Strategy::PostCopy, |r| r.postcopy_after_s = Some(1.0)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hybrid_moves_a_writing_guest_intact() {
    migrate_with(Strategy::Hybrid, |_| {}).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_and_copy_moves_a_writing_guest_intact() {
    migrate_with(Strategy::StopAndCopy, |_| {}).await;
}

/// Hybrid switches to post-copy when pre-copy cannot converge: the guest writes
/// faster than the (capped) link.
#[tokio::test(flavor = "multi_thread")]
async fn hybrid_switches_when_precopy_does_not_converge() {
    let tb = TestBed::new(BedSpec::default());
    tb.start_guest("h1", "vm", 512, 192, 40.0).await;
    let job = tb
        .start_migration("h1", "h2", "vm", Strategy::Hybrid, |r| r.bandwidth = Some(20_000_000))
        .await;
    let r = tb.wait_job("h1", &job.id).await;
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    assert!(r.postcopy_bytes > 0, "hybrid never switched to post-copy: {r:?}");
    let j = tb.client("h1").job(&job.id).await.unwrap();
    assert!(j.events.iter().any(|e| e.contains("not converging")), "{:?}", j.events);
    assert!(r.integrity.unwrap().ok);
}
