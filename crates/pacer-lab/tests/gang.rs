//! Gang migration through the hosts' relays (issue 10): VMs booted from one image
//! migrate at once from h1 to h2 over one relay connection; each arrives intact,
//! and what they share crosses the link once.

mod common;

use common::{BedSpec, TestBed};
use pacer_api::{JobStatus, Strategy};

#[tokio::test(flavor = "multi_thread")]
async fn a_gang_of_two_migrates_through_the_relays_intact_with_shared_pages_sent_once() {
    let tb = TestBed::new(BedSpec::default());
    for vm in ["g1", "g2"] {
        tb.start_guest("h1", vm, 512, 64, 5.0).await;
    }
    let mut jobs = Vec::new();
    for vm in ["g1", "g2"] {
        jobs.push(tb.start_migration("h1", "h2", vm, Strategy::PreCopy, |r| r.dedup = true).await);
    }
    let (mut stream, mut wire, mut refs) = (0, 0, 0);
    for (vm, job) in ["g1", "g2"].iter().zip(&jobs) {
        let r = tb.wait_job("h1", &job.id).await;
        assert_eq!(r.status, JobStatus::Completed, "{r:?}");
        assert_eq!(r.vm_location, "h2");
        assert!(r.integrity.as_ref().is_some_and(|i| i.ok), "{vm}: {:?}", r.integrity);
        let rl = r.relay.clone().expect("a relay report");
        assert!(rl.relayed && rl.why.is_none(), "{vm}: {rl:?}");
        // The relay saw QEMU's whole stream.
        assert!(rl.stream_bytes >= r.memory_bytes, "{vm}: {rl:?} vs {} memory bytes", r.memory_bytes);
        eprintln!("{vm}: total {} ms, downtime {:?} ms, {rl:?}", r.total_time_ms, r.downtime_ms);
        stream += rl.stream_bytes;
        wire += rl.wire_bytes;
        refs += rl.refs;
        tb.assert_runs_healthy("h2", vm).await;
    }
    // Kernel, initramfs and what booted from them are the same in both.
    assert!(refs > 1000 && wire * 10 < stream * 9, "stream {stream} wire {wire} refs {refs}");
    // A post-copy asked to dedup goes direct, and says why.
    let job = tb.start_migration("h2", "h1", "g1", Strategy::PostCopy, |r| r.dedup = true).await;
    let r = tb.wait_job("h2", &job.id).await;
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    let rl = r.relay.expect("a relay report");
    assert!(!rl.relayed && rl.why.as_deref().unwrap().contains("return path"), "{rl:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destination_qemu_dying_mid_gang_leaves_every_guest_running_at_its_source() {
    let tb = TestBed::new(BedSpec::default());
    let mut pids = Vec::new();
    for vm in ["d1", "d2"] {
        pids.push(tb.start_guest("h1", vm, 512, 64, 5.0).await.pid);
    }
    // A low cap keeps the gang on the way long enough to break it.
    let mut jobs = Vec::new();
    for vm in ["d1", "d2"] {
        jobs.push(
            tb.start_migration("h1", "h2", vm, Strategy::PreCopy, |r| {
                r.dedup = true;
                r.bandwidth = Some(8_000_000);
            })
            .await,
        );
    }
    for j in &jobs {
        tb.wait_transferred("h1", &j.id, 16 << 20).await;
    }
    let victim = tb.client("h2").vm("d1").await.unwrap();
    unsafe {
        libc::kill(victim.pid, libc::SIGKILL);
    }
    for ((vm, job), pid) in ["d1", "d2"].iter().zip(&jobs).zip(&pids) {
        let r = tb.wait_job("h1", &job.id).await;
        assert_eq!(r.status, JobStatus::Failed, "{vm}: {r:?}");
        assert_eq!(r.vm_location, "h1", "{vm}: {r:?}");
        assert!(r.reason.is_some(), "{vm}: {r:?}");
        let info = tb.client("h1").vm(vm).await.unwrap();
        assert_eq!(info.pid, *pid, "{vm}: the source QEMU must be the same process");
        tb.assert_runs_healthy("h1", vm).await;
    }
    common::wait_destination_clean(&tb, "h2").await;
    // The relays start over: the gang migrates afterwards.
    for vm in ["d1", "d2"] {
        let job = tb.start_migration("h1", "h2", vm, Strategy::PreCopy, |r| r.dedup = true).await;
        let r = tb.wait_job("h1", &job.id).await;
        assert_eq!(r.status, JobStatus::Completed, "{vm}: {r:?}");
        assert!(r.relay.is_some_and(|rl| rl.relayed));
    }
}
