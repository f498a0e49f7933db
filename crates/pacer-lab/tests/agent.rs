//! The agent: token, refusals of bad input (nothing changed), restart with VMs
//! re-adopted, adopting a QEMU started by someone else, and the CLI's errors.

mod common;

use std::time::Duration;

use common::{BedSpec, TestBed};
use pacer_api::routes;
use pacer_api::{AgentClient, ClientError, ErrorCode, MigrateRequest, Strategy, VmSpec, VmState, Workload};
use serde_json::json;

fn api_code(e: ClientError) -> (u16, ErrorCode, String) {
    match e {
        ClientError::Api { status, code, message } => (status, code, message),
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_the_right_token_get_401() {
    let tb = TestBed::new(BedSpec { hosts: 1, ..Default::default() });
    let good = tb.client("h1");
    good.host().await.unwrap();
    for token in ["", "wrong", "0000"] {
        let bad = AgentClient::new(good.url(), token);
        let e = bad.host().await.unwrap_err();
        assert!(matches!(e, ClientError::Unauthorized { .. }), "{e}");
        // Refused for the token before the body is looked at.
        let e = bad.raw_json("POST", routes::VMS, Some(&json!({}))).await.unwrap_err();
        assert!(matches!(e, ClientError::Unauthorized { .. }), "{e}");
    }
    // The token file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tb.bed.hosts[0].state_dir.join("token")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_vm_specs_are_refused_and_change_nothing() {
    let tb = TestBed::new(BedSpec { hosts: 1, memory_capacity: Some("2G"), ..Default::default() });
    let c = tb.client("h1");
    let good = VmSpec {
        workload: Some(Workload {
            kind: "idle".into(),
            wss_mib: 64,
            rate_mbps: 0.0,
            hot_fraction: 0.0,
            hot_share: 0.0,
            disk: None,
            paused: false,
            app: None,
            unique: 0.0,
        }),
        ..common::plain_spec("vm", 256)
    };
    let base = serde_json::to_value(&good).unwrap();
    let cases: Vec<(serde_json::Value, u16, &str)> = vec![
        (json!({"memory_mib": -1}), 400, "invalid request body"),
        (json!({"memory_mib": 1u64 << 40}), 400, "out of range"),
        (json!({"memory_mib": 8192}), 409, "cannot give"),
        (json!({"vcpus": 0}), 400, "vcpus"),
        (json!({"name": "../etc"}), 400, "invalid VM name"),
        (json!({"kernel": "/nonexistent/vmlinuz"}), 400, "does not exist"),
        (json!({"workload": {"kind": "fork-bomb"}}), 400, "unknown workload"),
        (json!({"workload": {"kind": "memwrite", "wss_mib": 4096}}), 400, "does not fit"),
        (json!({"workload": {"kind": "memwrite", "wss_mib": 64, "rate_mbps": -5.0}}), 400, "out of range"),
        (json!({"bogus": 1}), 400, "unknown field"),
        (
            json!({"workload": {"kind": "idle", "wss_mib": 4, "app": {"kind": "mysql", "mib": 64, "rate": 10.0}}}),
            400,
            "unknown application \"mysql\": use redis, memcached, stress-ng, zstd",
        ),
        (
            json!({"workload": {"kind": "idle", "wss_mib": 4, "app": {"kind": "redis", "mib": 512, "rate": 10.0}}}),
            400,
            "give more memory or a smaller data set",
        ),
    ];
    for (patch, status, text) in cases {
        let mut spec = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let e = c.raw_json("POST", routes::VMS, Some(&spec)).await.unwrap_err();
        let (s, _, msg) = api_code(e);
        assert_eq!(s, status, "{patch}: {msg}");
        assert!(msg.contains(text), "{patch}: {msg:?} should mention {text:?}");
        assert!(tb.vms("h1").await.is_empty(), "{patch} left a VM behind");
    }
    // A good spec works, and a second VM of the same name is refused.
    c.start_vm(&good).await.unwrap();
    let (s, code, _) = api_code(c.start_vm(&good).await.unwrap_err());
    assert_eq!((s, code), (409, ErrorCode::AlreadyExists));
    assert_eq!(tb.vms("h1").await.len(), 1);
    let (s, code, msg) = api_code(c.vm("nope").await.unwrap_err());
    assert_eq!((s, code), (404, ErrorCode::NotFound), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_migrations_are_refused_and_change_nothing() {
    let tb = TestBed::new(BedSpec { memory_capacity: Some("768M"), ..Default::default() });
    let vm = tb.start_guest("h1", "vm", 512, 128, 10.0).await;
    let c = tb.client("h1");
    let req = |f: &dyn Fn(&mut MigrateRequest)| {
        let mut r = MigrateRequest::new(tb.peer("h2"), Strategy::PreCopy);
        f(&mut r);
        r
    };
    let cases: Vec<(MigrateRequest, &str)> = vec![
        (req(&|r| r.bandwidth = Some(0)), "out of range"),
        (req(&|r| r.downtime_limit_ms = Some(0)), "out of range"),
        (req(&|r| r.postcopy_after_s = Some(-1.0)), "out of range"),
        (req(&|r| r.postcopy_after_s = Some(f64::MAX)), "out of range"),
        (req(&|r| r.destination.token = "bad".into()), "refused the token"),
        (req(&|r| r.destination.url = "http://127.0.0.1:1".into()), "not usable"),
        (req(&|r| r.destination = tb.peer("h1")), "already runs on h1"),
    ];
    for (r, text) in cases {
        let e = c.migrate("vm", &r).await.unwrap_err();
        assert!(e.to_string().contains(text), "{e} should mention {text:?}");
    }
    let e = c.migrate("ghost", &req(&|_| {})).await.unwrap_err();
    assert_eq!(api_code(e).1, ErrorCode::NotFound);
    // The destination cannot give more than 768 MiB: a second 512 MiB VM there
    // leaves no room for this one.
    tb.client("h2").start_vm(&common::plain_spec("filler", 512)).await.unwrap();
    let e = c.migrate("vm", &req(&|_| {})).await.unwrap_err();
    let (s, code, msg) = api_code(e);
    assert_eq!((s, code), (409, ErrorCode::InsufficientMemory), "{msg}");
    tb.client("h2").stop_vm("filler").await.unwrap();
    // Nothing changed: the VM runs on h1, the same process, no job is running.
    let info = c.vm("vm").await.unwrap();
    assert_eq!((info.state, info.pid, info.migrating.clone()), (VmState::Running, vm.pid, None));
    assert!(tb.vms("h2").await.is_empty());
    // A VM already migrating is refused a second migration.
    let slow = req(&|r| r.bandwidth = Some(5_000_000));
    let job = c.migrate("vm", &slow).await.unwrap();
    let (s, code, _) = api_code(c.migrate("vm", &slow).await.unwrap_err());
    assert_eq!((s, code), (409, ErrorCode::AlreadyMigrating));
    // Stopping a migrating VM is refused too.
    let (s, code, _) = api_code(c.stop_vm("vm").await.unwrap_err());
    assert_eq!((s, code), (409, ErrorCode::Migrating));
    c.cancel_job(&job.id).await.unwrap();
    let r = tb.wait_job("h1", &job.id).await;
    assert_eq!(r.status, pacer_api::JobStatus::Cancelled);
}

#[tokio::test(flavor = "multi_thread")]
async fn restarted_agent_readopts_its_vms() {
    let tb = TestBed::new(BedSpec { hosts: 1, ..Default::default() });
    let before = tb.start_guest("h1", "vm", 384, 64, 10.0).await;
    let mut bed = tb.bed.clone();
    bed.kill_agent("h1").unwrap();
    assert!(tb.client("h1").vms().await.is_err(), "agent still answers");
    // The VM did not die with its agent.
    assert!(common::process_running(before.pid));
    bed.start_agent("h1").unwrap();
    let vms = tb.vms("h1").await;
    assert_eq!(vms.len(), 1, "{vms:?}");
    assert_eq!((vms[0].pid, vms[0].state), (before.pid, VmState::Running));
    tb.assert_runs_healthy("h1", "vm").await;
    tb.client("h1").stop_vm("vm").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!common::process_running(before.pid), "stop left QEMU running");
}

#[tokio::test(flavor = "multi_thread")]
async fn adopts_a_qemu_started_elsewhere() {
    let tb = TestBed::new(BedSpec { hosts: 1, ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let qmp = dir.path().join("qmp.sock");
    let log = dir.path().join("console.log");
    let img = common::image();
    let status = std::process::Command::new("qemu-system-x86_64")
        .args(["-machine", "q35", "-accel", "tcg", "-m", "256M", "-nodefaults", "-display", "none", "-daemonize"])
        .arg("-kernel").arg(&img.kernel).arg("-initrd").arg(&img.initrd)
        .args(["-append", "console=ttyS0 pacer.workload=idle pacer.wss_mib=32"])
        .arg("-chardev").arg(format!("file,id=c0,path={}", log.display()))
        .args(["-serial", "chardev:c0"])
        .arg("-qmp").arg(format!("unix:{},server=on,wait=off", qmp.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let out = tb.pacer(&["vm", "adopt", "ext", "--host", "h1", "--qmp-socket", qmp.to_str().unwrap(), "--console-log", log.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info = tb.client("h1").vm("ext").await.unwrap();
    assert_eq!((info.memory_mib, info.origin), (256, pacer_api::VmOrigin::Adopted));
    assert_eq!(info.state, VmState::Running, "{info:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = tb.pacer(&["vm", "console", "ext"]);
    assert!(out.status.success());
    let out = tb.pacer(&["vm", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("ext"));
    let out = tb.pacer(&["vm", "stop", "ext"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!common::process_running(info.pid));
}

#[test]
fn cli_reports_bad_input_clearly() {
    let tb = TestBed::new(BedSpec { hosts: 2, ..Default::default() });
    let cases: &[(&[&str], &str)] = &[
        (&["migrate", "ghost", "--to", "h2"], "no host runs a VM named \"ghost\""),
        (&["migrate", "vm", "--to", "mars"], "unknown host \"mars\""),
        (&["migrate", "vm", "--to", "h2", "--bandwidth=-5"], "bandwidth"),
        (&["migrate", "vm", "--to", "h2", "--bandwidth", "0"], "unlimited"),
        (&["migrate", "vm", "--to", "h2", "--strategy", "teleport"], "unknown strategy"),
        (&["migrate", "vm", "--to", "h2", "--downtime-limit", "soon"], "downtime-limit"),
        (&["vm", "start", "x", "--host", "h1", "--memory", "lots"], "memory"),
        (&["vm", "show", "ghost"], "no host runs a VM named"),
    ];
    for (args, text) in cases {
        let out = tb.pacer(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(text), "{args:?}: {err:?} should mention {text:?}");
    }
}
