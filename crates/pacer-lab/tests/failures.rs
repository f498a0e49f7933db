//! A cancelled or failed migration leaves the guest running where it was, intact,
//! and the destination cleaned up.

mod common;

use common::{BedSpec, TestBed};
use pacer_api::{JobStatus, Strategy};

/// A guest on h1 migrating to h2 under a low cap (long enough on the way to
/// break it mid-way), once 20 MiB went: the guest as it was, and the job.
async fn slow_migration(tb: &TestBed) -> (pacer_api::VmInfo, pacer_api::JobInfo) {
    let before = tb.start_guest("h1", "vm", 512, 192, 40.0).await;
    let job = tb
        .start_migration("h1", "h2", "vm", Strategy::PreCopy, |r| r.bandwidth = Some(10_000_000))
        .await;
    tb.wait_transferred("h1", &job.id, 20 << 20).await;
    (before, job)
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_during_precopy_keeps_the_vm_at_the_source() {
    let tb = TestBed::new(BedSpec::default());
    let (before, job) = slow_migration(&tb).await;
    tb.client("h1").cancel_job(&job.id).await.unwrap();
    let r = tb.wait_job("h1", &job.id).await;
    assert_eq!(r.status, JobStatus::Cancelled, "{r:?}");
    assert_eq!(r.vm_location, "h1");
    assert!(r.reason.as_deref().unwrap().contains("cancel"), "{r:?}");
    let info = tb.client("h1").vm("vm").await.unwrap();
    assert_eq!(info.pid, before.pid, "the source QEMU must be the same process");
    assert!(info.migrating.is_none());
    common::wait_destination_clean(&tb, "h2").await;
    tb.assert_runs_healthy("h1", "vm").await;
    // And it can still be migrated afterwards.
    let job = tb.start_migration("h1", "h2", "vm", Strategy::PreCopy, |_| {}).await;
    let r = tb.wait_job("h1", &job.id).await;
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn link_cut_during_precopy_keeps_the_vm_at_the_source() {
    let tb = TestBed::new(BedSpec { lease_s: Some(5), ..Default::default() });
    let before = tb.start_guest("h1", "vm", 512, 192, 40.0).await;
    let job = tb
        .start_migration("h1", "h2", "vm", Strategy::PreCopy, |r| {
            r.bandwidth = Some(10_000_000);
            r.stall_timeout_s = Some(3.0);
        })
        .await;
    tb.wait_transferred("h1", &job.id, 20 << 20).await;
    tb.bed.set_link_up("h2", false).unwrap();
    let r = tb.wait_job("h1", &job.id).await;
    assert_eq!(r.status, JobStatus::Failed, "{r:?}");
    assert!(r.reason.as_deref().unwrap().contains("no data moved"), "{r:?}");
    assert_eq!(r.vm_location, "h1");
    let info = tb.client("h1").vm("vm").await.unwrap();
    assert_eq!(info.pid, before.pid);
    // The destination hears nothing more from the source: its lease runs out.
    common::wait_destination_clean(&tb, "h2").await;
    tb.assert_runs_healthy("h1", "vm").await;
    tb.bed.set_link_up("h2", true).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_destination_keeps_the_vm_at_the_source() {
    let tb = TestBed::new(BedSpec::default());
    let (before, job) = slow_migration(&tb).await;
    // The destination host dies: its agent and its QEMU.
    let incoming: Vec<pacer_api::VmInfo> = tb.vms("h2").await;
    assert_eq!(incoming.len(), 1);
    tb.bed.kill_agent("h2").unwrap();
    unsafe {
        libc::kill(incoming[0].pid, libc::SIGKILL);
    }
    let r = tb.wait_job("h1", &job.id).await;
    assert_eq!(r.status, JobStatus::Failed, "{r:?}");
    assert_eq!(r.vm_location, "h1");
    let info = tb.client("h1").vm("vm").await.unwrap();
    assert_eq!(info.pid, before.pid);
    tb.assert_runs_healthy("h1", "vm").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panic_in_the_migration_driver_rolls_back_and_keeps_the_vm_at_the_source() {
    let tb = TestBed::new(BedSpec::default());
    let (before, job) = slow_migration(&tb).await;
    // Debug builds of the agent panic in the driver's pre-copy loop on this file.
    let fault = tb.bed.hosts[0].state_dir.join("vms").join("vm").join("fault-panic-at");
    std::fs::write(&fault, "memory").unwrap();
    let r = tb.wait_job("h1", &job.id).await;
    std::fs::remove_file(&fault).unwrap();
    assert_eq!(r.status, JobStatus::Failed, "{r:?}");
    assert!(r.reason.as_deref().unwrap().contains("internal error"), "{r:?}");
    assert_eq!(r.vm_location, "h1");
    let info = tb.client("h1").vm("vm").await.unwrap();
    assert_eq!(info.pid, before.pid, "the source QEMU must be the same process");
    assert!(info.migrating.is_none());
    common::wait_destination_clean(&tb, "h2").await;
    tb.assert_runs_healthy("h1", "vm").await;
    // The agent goes on: the same VM migrates afterwards.
    let job = tb.start_migration("h1", "h2", "vm", Strategy::PreCopy, |_| {}).await;
    let r = tb.wait_job("h1", &job.id).await;
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
}
