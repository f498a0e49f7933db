//! Group migrations are jobs of the coordinating agent (the destination's), with
//! real QEMU: the CLI that submitted a group can die and the group still
//! finishes together; the coordinating agent can crash and restart mid-group
//! and it picks the group up again.

// The lock only serialises tests (each has its own runtime): holding it across
// awaits is the point.
#![allow(clippy::await_holding_lock)]

mod common;

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{BedSpec, TestBed};
use pacer_api::{GroupInfo, GroupMemberRequest, GroupRequest, GroupStatus, MemberState, MigrateRequest, Strategy};

/// One at a time: the finish spread of one must not suffer from another's guests.
static SERIAL: Mutex<()> = Mutex::new(());

/// The group on `host` once `done` holds for it.
async fn wait_group(tb: &TestBed, host: &str, id: Option<&str>, limit: Duration, done: impl Fn(&GroupInfo) -> bool) -> GroupInfo {
    let t0 = Instant::now();
    loop {
        let groups = tb.client(host).groups().await.unwrap_or_default();
        if let Some(g) = groups.into_iter().find(|g| id.is_none_or(|id| g.id == id)) {
            if done(&g) {
                return g;
            }
            assert!(t0.elapsed() < limit, "group not there after {limit:?}: {g:#?}");
        } else {
            assert!(t0.elapsed() < limit, "no group on {host} after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn all_running(g: &GroupInfo) -> bool {
    g.members.iter().all(|m| m.state == MemberState::Running && m.progress.is_some())
}

async fn assert_moved_together(tb: &TestBed, g: &GroupInfo) {
    assert_eq!(g.status, GroupStatus::Completed, "{g:#?}");
    let r = g.result.as_ref().expect("a result");
    assert!(r.all_completed, "{g:#?}");
    assert!(r.spread_s <= 1.0, "finish spread {:.2} s: {g:#?}", r.spread_s);
    for m in &g.members {
        assert_eq!(m.fate, "runs on h2", "{g:#?}");
        tb.assert_runs_healthy("h2", &m.vm).await;
    }
    assert!(tb.vms("h1").await.is_empty(), "the sources kept a copy");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_killed_mid_group_and_the_group_still_finishes_together() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tb = TestBed::new(BedSpec::default());
    tb.start_guest("h1", "small", 384, 64, 10.0).await;
    tb.start_guest("h1", "big", 768, 256, 30.0).await;
    let mut cli = Command::new(common::bin_dir().join("pacer"))
        .arg("--hosts-file")
        .arg(tb.hosts_file())
        .args(["migrate-group", "small", "big", "--to", "h2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Both members migrating, then the CLI dies without a word.
    let g = wait_group(&tb, "h2", None, Duration::from_secs(180), all_running).await;
    cli.kill().unwrap();
    cli.wait().unwrap();
    let g = wait_group(&tb, "h2", Some(&g.id), Duration::from_secs(300), |g| g.status.is_terminal()).await;
    assert_moved_together(&tb, &g).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_coordinating_agent_restarted_mid_group_picks_the_group_up() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut tb = TestBed::new(BedSpec::default());
    tb.start_guest("h1", "small", 384, 64, 10.0).await;
    tb.start_guest("h1", "big", 768, 256, 30.0).await;
    // A target far enough out that the members are still migrating when the
    // coordinator goes down.
    let mut migration = MigrateRequest::new(tb.peer("h2"), Strategy::PreCopy);
    migration.finish_in_s = Some(75.0);
    let req = GroupRequest {
        members: ["small", "big"].iter().map(|v| GroupMemberRequest { vm: v.to_string(), source: tb.peer("h1") }).collect(),
        migration,
        coordinate: true,
    };
    let g = tb.client("h2").submit_group(&req).await.unwrap();
    wait_group(&tb, "h2", Some(&g.id), Duration::from_secs(180), all_running).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The coordinator (also the destination, with both incoming VMs) crashes.
    tb.bed.kill_agent("h2").unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    tb.bed.start_agent("h2").unwrap();
    let g = wait_group(&tb, "h2", Some(&g.id), Duration::from_secs(300), |g| g.status.is_terminal()).await;
    assert!(g.events.iter().any(|e| e.contains("picked up again")), "{:#?}", g.events);
    assert_moved_together(&tb, &g).await;
    let t = g.target_s.unwrap();
    let last = g.members.iter().filter_map(|m| m.finish_s).fold(0.0, f64::max);
    assert!((last - t).abs() <= 3.0, "finished at {last:.1} s for a {t:.1} s target: {g:#?}");
}
