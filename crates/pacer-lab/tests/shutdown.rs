//! An agent told to stop (SIGTERM) in the middle of a migration rolls it back:
//! the guest keeps running where it was, the destination is cleaned up, and the
//! restarted agent has the VM, unharmed.

mod common;

use std::time::{Duration, Instant};

use common::{process_running, wait_destination_clean, BedSpec, TestBed};
use pacer_api::Strategy;

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_stopped_mid_migration_rolls_it_back_and_the_vm_stays() {
    let mut tb = TestBed::new(BedSpec::default());
    let before = tb.start_guest("h1", "vm", 512, 128, 20.0).await;
    let job = tb.start_migration("h1", "h2", "vm", Strategy::PreCopy, |r| r.bandwidth = Some(15_000_000)).await;
    tb.wait_transferred("h1", &job.id, 40 << 20).await;
    let agent = tb.bed.host("h1").unwrap().pid;
    unsafe {
        libc::kill(agent, libc::SIGTERM);
    }
    let t0 = Instant::now();
    while process_running(agent) {
        assert!(t0.elapsed() < Duration::from_secs(70), "the agent did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The guest never left: same QEMU, and the destination has nothing left.
    assert!(process_running(before.pid), "the source QEMU is gone");
    wait_destination_clean(&tb, "h2").await;
    tb.bed.start_agent("h1").unwrap();
    let info = tb.client("h1").vm("vm").await.unwrap();
    assert_eq!((info.pid, info.migrating.as_deref()), (before.pid, None), "{info:?}");
    tb.assert_runs_healthy("h1", "vm").await;
}
