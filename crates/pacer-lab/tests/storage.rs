//! Storage migration without shared disks: the disk moves with the VM, a disk
//! over a shared base image copies only its top layer, and a cancelled or
//! refused storage migration leaves the VM running, unchanged, on its source disks.

mod common;

use std::path::PathBuf;

use common::{disk_files, disk_writer, fill_image, make_image, wait_destination_clean, BedSpec, TestBed};
use pacer_api::{CopyStorage, JobStatus, Strategy, VmSpec, VmState};

#[tokio::test(flavor = "multi_thread")]
async fn disk_and_memory_move_intact_under_write_load() {
    let tb = TestBed::new(BedSpec::default());
    let disk = tb.root.path().join("src.qcow2");
    make_image(&disk, "qcow2", "256M", None);
    tb.start_guest_with_disks("h1", "vm", 384, 20.0, vec![disk.display().to_string()], Some(disk_writer(5.0)))
        .await;
    let job = tb.start_migration("h1", "h2", "vm", Strategy::PreCopy, |_| {}).await;
    let r = tb.wait_job("h1", &job.id).await;
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    let i = r.integrity.as_ref().unwrap();
    assert!(i.ok && i.disk_ok && i.disk_blocks_checked >= 65536, "{i:?}");
    assert!(r.disk_bytes >= 256 << 20, "the filled disk must be copied: {r:?}");
    assert!(r.memory_bytes > 0 && r.bytes_transferred == r.disk_bytes + r.memory_bytes);
    // The destination runs on its own copy; the source image is left alone.
    let info = tb.client("h2").vm("vm").await.unwrap();
    let dest_disk = &info.spec.unwrap().disks[0];
    assert_ne!(dest_disk, &disk.display().to_string());
    assert!(disk.exists());
    tb.assert_runs_healthy("h2", "vm").await;
    let j = tb.client("h1").job(&job.id).await.unwrap();
    let d = j.progress.disk.expect("disk progress");
    assert!(d.write_rate_bps > 0.0 && d.dirty_bytes > 0, "disk writes were not measured: {d:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_copy_sends_only_the_top_layer() {
    let tb = TestBed::new(BedSpec::default());
    let base = tb.root.path().join("base.qcow2");
    make_image(&base, "qcow2", "256M", None);
    fill_image(&base, "qcow2", "0x5a", "192M");
    let mut sent = Vec::new();
    for (name, mode) in [("inc", CopyStorage::Incremental), ("full", CopyStorage::All)] {
        let top = tb.root.path().join(format!("{name}.qcow2"));
        make_image(&top, "qcow2", "256M", Some(&base));
        let mut w = disk_writer(2.0);
        w.fill = false;
        tb.start_guest_with_disks("h1", name, 256, 5.0, vec![top.display().to_string()], Some(w)).await;
        let job = tb.start_migration("h1", "h2", name, Strategy::PreCopy, |r| r.copy_storage = mode).await;
        let r = tb.wait_job("h1", &job.id).await;
        assert_eq!(r.status, JobStatus::Completed, "{r:?}");
        assert!(r.integrity.as_ref().unwrap().ok, "{r:?}");
        tb.assert_runs_healthy("h2", name).await;
        sent.push(r.disk_bytes);
        tb.client("h2").stop_vm(name).await.unwrap();
    }
    let (inc, full) = (sent[0], sent[1]);
    eprintln!("disk bytes: incremental {inc}, full {full}");
    assert!(full >= 192 << 20, "a full copy includes the base: {full}");
    assert!(inc * 4 < full, "incremental {inc} should be far below full {full}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_during_disk_copy_keeps_the_vm_at_the_source() {
    let tb = TestBed::new(BedSpec::default());
    let disk = tb.root.path().join("src.qcow2");
    make_image(&disk, "qcow2", "256M", None);
    let before = tb
        .start_guest_with_disks("h1", "vm", 256, 10.0, vec![disk.display().to_string()], Some(disk_writer(2.0)))
        .await;
    let job = tb
        .start_migration("h1", "h2", "vm", Strategy::PreCopy, |r| r.disk_bandwidth = Some(10_000_000))
        .await;
    tb.wait_transferred("h1", &job.id, 20 << 20).await;
    let j = tb.client("h1").job(&job.id).await.unwrap();
    assert!(!j.progress.phase.memory_started(), "{:?}", j.progress);
    tb.client("h1").cancel_job(&job.id).await.unwrap();
    let r = tb.wait_job("h1", &job.id).await;
    assert_eq!(r.status, JobStatus::Cancelled, "{r:?}");
    let info = tb.client("h1").vm("vm").await.unwrap();
    assert_eq!((info.pid, info.spec.unwrap().disks[0].clone()), (before.pid, disk.display().to_string()));
    wait_destination_clean(&tb, "h2").await;
    tb.assert_runs_healthy("h1", "vm").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn link_cut_during_disk_copy_keeps_the_vm_at_the_source() {
    let tb = TestBed::new(BedSpec { lease_s: Some(5), ..Default::default() });
    let disk = tb.root.path().join("src.qcow2");
    make_image(&disk, "qcow2", "256M", None);
    let before = tb
        .start_guest_with_disks("h1", "vm", 256, 10.0, vec![disk.display().to_string()], Some(disk_writer(2.0)))
        .await;
    let job = tb
        .start_migration("h1", "h2", "vm", Strategy::PreCopy, |r| {
            r.disk_bandwidth = Some(10_000_000);
            r.stall_timeout_s = Some(3.0);
        })
        .await;
    tb.wait_transferred("h1", &job.id, 20 << 20).await;
    tb.bed.set_link_up("h2", false).unwrap();
    let r = tb.wait_job("h1", &job.id).await;
    assert_eq!(r.status, JobStatus::Failed, "{r:?}");
    let info = tb.client("h1").vm("vm").await.unwrap();
    assert_eq!(info.pid, before.pid);
    wait_destination_clean(&tb, "h2").await;
    tb.assert_runs_healthy("h1", "vm").await;
    tb.bed.set_link_up("h2", true).unwrap();
}

/// Unmounts a tmpfs on drop.
struct Tmpfs(PathBuf);
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn destination_without_space_is_refused_and_nothing_changes() {
    let tb = TestBed::new(BedSpec::default());
    // h2 keeps incoming disks on a 32 MiB filesystem.
    let small = tb.root.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=32m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    let _umount = Tmpfs(small.clone());
    let mut bed = tb.bed.clone();
    bed.hosts[1].extra_args = vec!["--disk-dir".into(), small.display().to_string()];
    bed.kill_agent("h2").unwrap();
    bed.start_agent("h2").unwrap();

    let disk = tb.root.path().join("src.qcow2");
    make_image(&disk, "qcow2", "128M", None);
    let before = tb
        .start_guest_with_disks("h1", "vm", 256, 5.0, vec![disk.display().to_string()], Some(disk_writer(1.0)))
        .await;
    let c = tb.client("h1");
    let req = pacer_api::MigrateRequest::new(tb.peer("h2"), Strategy::PreCopy);
    let e = c.migrate("vm", &req).await.unwrap_err();
    assert_eq!(e.code(), Some(pacer_api::ErrorCode::InsufficientSpace), "{e}");
    assert!(e.to_string().contains("free"), "{e}");
    let info = c.vm("vm").await.unwrap();
    assert_eq!((info.pid, info.state, info.migrating), (before.pid, VmState::Running, None));
    assert!(tb.vms("h2").await.is_empty());
    assert!(disk_files(&small).is_empty());
    let jobs = c.jobs().await.unwrap();
    assert!(jobs.is_empty(), "{jobs:?}");
    // An unsupported format is refused before anything starts too.
    let raw = tb.root.path().join("x.vmdk");
    make_image(&raw, "vmdk", "16M", None);
    let spec = VmSpec { disks: vec![raw.display().to_string()], ..common::plain_spec("vmdk", 256) };
    let e = c.start_vm(&spec).await.unwrap_err();
    assert!(e.to_string().contains("raw and qcow2"), "{e}");
    tb.assert_runs_healthy("h1", "vm").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_disks_raw_and_qcow2_move_together() {
    let tb = TestBed::new(BedSpec::default());
    let a = tb.root.path().join("a.qcow2");
    make_image(&a, "qcow2", "128M", None);
    let b = tb.root.path().join("b.raw");
    make_image(&b, "raw", "64M", None);
    // Data on the second disk, which the guest does not touch: it must arrive as is.
    fill_image(&b, "raw", "0x6b", "48M");
    let disks = vec![a.display().to_string(), b.display().to_string()];
    tb.start_guest_with_disks("h1", "vm", 256, 5.0, disks, Some(disk_writer(2.0))).await;
    let job = tb.start_migration("h1", "h2", "vm", Strategy::PreCopy, |_| {}).await;
    let r = tb.wait_job("h1", &job.id).await;
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    assert!(r.integrity.as_ref().unwrap().ok && r.integrity.as_ref().unwrap().disk_ok, "{r:?}");
    assert!(r.disk_bytes >= (128 + 48) << 20, "both disks copied: {r:?}");
    let info = tb.client("h2").vm("vm").await.unwrap();
    let copies = info.spec.unwrap().disks;
    assert_eq!(copies.len(), 2);
    assert!(copies[1].ends_with(".raw"), "{copies:?}");
    // Stop the VM so the raw copy is settled, then compare it with the source.
    tb.client("h2").stop_vm("vm").await.unwrap();
    let cmp = std::process::Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(&b)
        .arg(&copies[1])
        .output()
        .unwrap();
    assert!(cmp.status.success(), "the raw disk changed in transit: {}", String::from_utf8_lossy(&cmp.stdout));
}
