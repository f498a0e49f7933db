//! Unit tests of the prediction benchmark (no QEMU). (About 840 lines: the
//! scoring, table and goal tests share one set of fabricated runs; split, each
//! part would rebuild them.)

use super::*;
use pacer_api::{JobPhase, MigrationResult, PredictionPoint, StuckAdvice};

fn opts() -> PredictOpts {
    PredictOpts {
        runs: 1,
        out: "x.json".into(),
        quick: false,
        scenarios: None,
        links: None,
        memory: 1024,
        wss: 256,
        app_mib: 128,
        write_rate: 15.0,
        disk_size: 1 << 30,
        disk_write_rate: 10.0,
        prior_wait: 20.0,
        change_at: 0.4,
    }
}

fn pt(elapsed_ms: u64, total_ms: u64, naive: Option<u64>) -> PredictionPoint {
    PredictionPoint {
        elapsed_ms,
        total_ms: Some(total_ms),
        low_ms: total_ms.saturating_sub(500),
        high_ms: Some(total_ms + 500),
        downtime_ms: 100,
        naive_total_ms: naive,
        ..Default::default()
    }
}

fn stuck_pt(elapsed_ms: u64) -> PredictionPoint {
    PredictionPoint {
        elapsed_ms,
        total_ms: None,
        low_ms: elapsed_ms + 1000,
        high_ms: None,
        downtime_ms: 100,
        naive_total_ms: Some(elapsed_ms + 60_000),
        completes_chance: 0.02,
        stuck: Some(StuckAdvice {
            dirty_set_bytes: 150 << 20,
            dirty_rate_bps: 30e6,
            speed_bps: 25e6,
            ..Default::default()
        }),
        edge: None,
    }
}

fn result(status: &str, actual: u64, points: &[PredictionPoint]) -> MigrationResult {
    serde_json::from_value(json!({
        "status": status, "vm": "v", "strategy": "pre-copy", "total_time_ms": actual,
        "downtime_ms": 200, "bytes_transferred": 300_000_000u64, "source": "h1",
        "destination": "h2", "vm_location": "h2", "reason": null, "qemu_total_time_ms": 1,
        "rounds": 4, "precopy_bytes": 1, "downtime_bytes": 1, "postcopy_bytes": 0,
        "integrity": {"ok": true, "pages_checked": 1, "bad_pages": 0, "errors_total": 0,
                      "duration_ms": 1},
        "predictions": points,
    }))
    .unwrap()
}

fn write_of(w: Wl, l: Link) -> Option<f64> {
    w.write_mbps(&opts(), l)
}

fn done(w: Wl, l: Link, repeat: u32, actual: u64, points: Vec<PredictionPoint>) -> PredictRun {
    let mut r = PredictRun::new(w, l, repeat, 0, write_of(w, l));
    r.run.fill(&result("completed", actual, &points));
    r.score(1024);
    r
}

/// A run the bench cancelled: given up on, as the follower reports it.
fn cut(w: Wl, l: Link, change_job_ms: Option<u64>, points: Vec<PredictionPoint>) -> PredictRun {
    let mut r = PredictRun::new(w, l, 1, 0, write_of(w, l));
    r.change = change_job_ms.map(|ms| Change {
        what: vec!["link".into()],
        expected_ms: 10_000,
        expected_from: "test".into(),
        planned_ms: ms,
        made_ms: Some(ms),
        made_job_ms: Some(ms),
    });
    let f = Followed {
        result: Some(result("cancelled", 0, &points)),
        reason: Some(
            "Pacer said at 2.0 s that pre-copy does not converge; given up 20 s later".into(),
        ),
        given_up: true,
        ..Followed::default()
    };
    r.take(f, 1024);
    r.source_check = Some(SourceCheck {
        ok: true,
        state: Some("running".into()),
        same_qemu: true,
        at_destination: false,
    });
    r
}

fn before(total: Option<u64>, chance: f64) -> Before {
    Before {
        total_ms: total,
        low_ms: 0,
        high_ms: total,
        converges: total.is_some(),
        completes_chance: chance,
        if_it_converges_ms: Some(40_000),
        dirty_rate_bps: 0.0,
        wss_bytes: None,
        hot_bytes: 0.0,
        zero_fraction: 0.0,
        link_bps: 0.0,
        rehearsal: None,
        dirty_log: None,
    }
}

#[test]
fn option_parsing_and_filters() {
    assert_eq!(parse_wl("bursty"), Ok(Wl::Skewed));
    assert_eq!(parse_wl("edge-0.8"), Ok(Wl::Edge(Edge::Below)));
    assert_eq!(parse_wl("edge-1"), Ok(Wl::Edge(Edge::At)));
    assert_eq!(parse_wl(" edge-1.2 "), Ok(Wl::Edge(Edge::Above)));
    assert_eq!(parse_wl("stress-ng"), Ok(Wl::App(AppKind::Stress)));
    assert_eq!(parse_wl("redis"), Ok(Wl::App(AppKind::Redis)));
    assert!(parse_wl("edge-1.5").unwrap_err().contains("edge-1.2"));
    assert!(parse_wl("spiky").unwrap_err().contains("unknown scenario"));
    assert!(parse_wl("").is_err());
    assert_eq!(parse_link("changing"), Ok(Link::Changing));
    assert_eq!(parse_link("rising"), Ok(Link::Rising));
    assert_eq!(parse_link("1gbit->200mbit"), Ok(Link::Falling));
    assert!(parse_link("10gbit").unwrap_err().contains("rising"));
    assert!(parse_fraction("0.4").is_ok());
    assert!(parse_fraction("1.5").is_err());
    assert!(parse_disk_size("100K").is_err());
    assert_eq!(parse_disk_size("1G"), Ok(1 << 30));
    assert!(parse_disk_rate("0").is_err());
    // Every name round-trips.
    for w in ALL_WL {
        assert_eq!(parse_wl(w.as_str()), Ok(w));
    }
    for l in ALL_LINKS {
        assert_eq!(parse_link(l.as_str()), Ok(l));
        assert_eq!(parse_link(l.file_part()), Ok(l));
    }
    let mut o = opts();
    // By default: the five workloads over four links, the four applications
    // over two, the edge family over 200mbit and edge-1.2 also over the falling link.
    assert_eq!(o.workloads().len(), 12);
    assert!(o.workloads().contains(&Wl::App(AppKind::Redis)));
    let rows = o.rows();
    assert_eq!(rows.len(), 5 * 4 + 3 + 1 + 4 * 2);
    assert!(rows.contains(&(Wl::App(AppKind::Redis), Link::Slow)));
    assert!(rows.contains(&(Wl::Edge(Edge::Above), Link::Falling)));
    assert!(rows.contains(&(Wl::Steady, Link::Rising)));
    assert!(!rows.contains(&(Wl::Steady, Link::Falling)));
    assert!(!rows.contains(&(Wl::Edge(Edge::Below), Link::Fast)));
    assert_eq!(o.links(), ALL_LINKS);
    o.quick = true;
    assert_eq!(
        o.workloads(),
        [Wl::Steady, Wl::Phase, Wl::Edge(Edge::Above)]
    );
    assert_eq!(o.links(), [Link::Fast, Link::Slow, Link::Changing]);
    assert_eq!(o.rows().len(), 5);
    o.scenarios = Some(vec![Wl::Disk, Wl::Idle, Wl::Disk]);
    assert_eq!(o.workloads(), [Wl::Idle, Wl::Disk]);
    assert!(o.validate().is_ok());
    // Named links go for every workload, the edge family too.
    let mut o = opts();
    o.scenarios = Some(vec![Wl::Edge(Edge::Above), Wl::Steady]);
    o.links = Some(vec![Link::Slow]);
    assert_eq!(
        o.rows(),
        [
            (Wl::Steady, Link::Slow),
            (Wl::Edge(Edge::Above), Link::Slow)
        ]
    );
    assert!(o.validate().is_ok());
    let mut o = opts();
    o.write_rate = 30.0;
    assert!(o
        .validate()
        .unwrap_err()
        .to_string()
        .contains("would not converge"));
    o.links = Some(vec![Link::Fast]);
    assert!(o.validate().is_ok());
    // Only the edge family: the write rate is not theirs.
    o.links = None;
    o.scenarios = Some(vec![Wl::Edge(Edge::At)]);
    assert!(o.validate().is_ok());
    let mut o = opts();
    o.wss = 1000;
    assert!(o
        .validate()
        .unwrap_err()
        .to_string()
        .contains("does not fit"));
    o = opts();
    o.scenarios = Some(vec![]);
    assert!(o.validate().is_err());
    o = opts();
    o.links = Some(vec![]);
    assert!(o.validate().is_err());
    // Applications are workloads like the others.
    o = opts();
    o.scenarios = Some(vec![Wl::Steady, Wl::App(AppKind::Zstd)]);
    o.validate().unwrap();
}

#[test]
fn guests_rates_and_expectations() {
    let o = opts();
    // The edge family writes a ratio of the link's (final) rate over half the memory.
    let g = Wl::Edge(Edge::Above).guest(&o, "v", Link::Slow).unwrap();
    assert_eq!(
        (g.workload.kind.as_str(), g.workload.wss_mib),
        ("memwrite", 512)
    );
    assert!((g.workload.rate_mbps - 30.0).abs() < 1e-9);
    let g = Wl::Edge(Edge::Below).guest(&o, "v", Link::Slow).unwrap();
    assert!((g.workload.rate_mbps - 20.0).abs() < 1e-9);
    let g = Wl::Edge(Edge::Above).guest(&o, "v", Link::Falling).unwrap();
    assert!(
        (g.workload.rate_mbps - 30.0).abs() < 1e-9,
        "1.2x of 200mbit"
    );
    let g = Wl::Edge(Edge::Below).guest(&o, "v", Link::Rising).unwrap();
    assert!((g.workload.rate_mbps - 100.0).abs() < 1e-9, "0.8x of 1gbit");
    // The phase workload starts paused; the others do not.
    assert!(
        Wl::Phase
            .guest(&o, "v", Link::Fast)
            .unwrap()
            .workload
            .paused
    );
    assert!(
        !Wl::Steady
            .guest(&o, "v", Link::Fast)
            .unwrap()
            .workload
            .paused
    );
    let g = Wl::Skewed.guest(&o, "v", Link::Fast).unwrap();
    assert_eq!(
        (g.workload.hot_fraction, g.workload.hot_share),
        (HOT_FRACTION, HOT_SHARE)
    );
    assert!(Wl::Disk
        .guest(&o, "v", Link::Fast)
        .unwrap()
        .disk_size
        .is_some());
    assert_eq!(
        Wl::Idle.guest(&o, "v", Link::Fast).unwrap().workload.kind,
        "idle"
    );
    // An application: the app in the workload, the program's own pages a canary.
    let g = Wl::App(AppKind::Redis).guest(&o, "v", Link::Fast).unwrap();
    let app = g.workload.app.clone().unwrap();
    assert_eq!((app.kind.as_str(), app.mib, app.rate), ("redis", 128, 15.0));
    assert_eq!((g.workload.kind.as_str(), g.workload.wss_mib), ("idle", APP_CANARY_MIB));
    let s = AppKind::Stress.spec(&o);
    assert_eq!((s.kind, s.mib, s.rate), ("stress-ng", 128, 15.0));
    assert_eq!(write_of(Wl::App(AppKind::Zstd), Link::Fast), None);
    // Expectations.
    let ex = |w, l| Expect::of(write_of(w, l), l);
    assert_eq!(ex(Wl::Steady, Link::Slow), Expect::Converges);
    assert_eq!(ex(Wl::Edge(Edge::Below), Link::Slow), Expect::Converges);
    assert_eq!(ex(Wl::Edge(Edge::At), Link::Slow), Expect::Either);
    assert_eq!(
        ex(Wl::Edge(Edge::Above), Link::Slow),
        Expect::DoesNotConverge
    );
    assert_eq!(
        ex(Wl::Edge(Edge::Above), Link::Falling),
        Expect::DoesNotConverge
    );
    assert_eq!(ex(Wl::Edge(Edge::Below), Link::Rising), Expect::Converges);
    assert_eq!(ex(Wl::App(AppKind::Redis), Link::Fast), Expect::Either);
    // Where the condition comes: the start, or the falling link's change.
    let r = PredictRun::new(Wl::Edge(Edge::Above), Link::Slow, 1, 1, Some(30.0));
    assert!(r.over_at_start() && r.unchanged());
    assert_eq!(r.condition_job_ms(), Some(0));
    let mut r = PredictRun::new(Wl::Edge(Edge::Above), Link::Falling, 1, 1, Some(30.0));
    assert!(!r.over_at_start() && !r.unchanged());
    assert_eq!(r.condition_job_ms(), None, "the link has not fallen yet");
    r.change = Some(Change {
        what: vec![],
        expected_ms: 10_000,
        expected_from: String::new(),
        planned_ms: 4000,
        made_ms: Some(4100),
        made_job_ms: Some(4050),
    });
    assert_eq!(r.condition_job_ms(), Some(4050));
    // Limits: short for a run bound not to converge, from the condition on.
    assert_eq!(
        limit_of(&r, &o, 0),
        Duration::from_millis(4000) + STUCK_LIMIT
    );
    let r = PredictRun::new(Wl::Edge(Edge::At), Link::Slow, 1, 1, Some(25.0));
    assert_eq!(limit_of(&r, &o, 0), EDGE_LIMIT);
    let r = PredictRun::new(Wl::Steady, Link::Slow, 1, 1, Some(15.0));
    assert!(limit_of(&r, &o, 0) > EDGE_LIMIT);
    let r = PredictRun::new(Wl::App(AppKind::Redis), Link::Slow, 1, 1, None);
    assert_eq!(r.expect, Expect::Either);
    assert!(
        limit_of(&r, &o, 0) > EDGE_LIMIT,
        "the usual limit for an application"
    );
}

#[test]
fn references_and_plan() {
    assert_eq!(reference_of(Wl::Steady, Link::Fast), None);
    assert_eq!(
        reference_of(Wl::Steady, Link::Changing),
        Some((Wl::Steady, Link::Fast))
    );
    assert_eq!(
        reference_of(Wl::Steady, Link::Rising),
        Some((Wl::Steady, Link::Fast))
    );
    assert_eq!(
        reference_of(Wl::Disk, Link::Falling),
        Some((Wl::Disk, Link::Fast))
    );
    assert_eq!(
        reference_of(Wl::Phase, Link::Slow),
        Some((Wl::Idle, Link::Slow))
    );
    assert_eq!(
        reference_of(Wl::Phase, Link::Changing),
        Some((Wl::Idle, Link::Fast))
    );
    // The edge family's writer depends on the link: no reference.
    assert_eq!(reference_of(Wl::Edge(Edge::Above), Link::Falling), None);
    let rows = [
        (Wl::Idle, Link::Fast),
        (Wl::Idle, Link::Changing),
        (Wl::Edge(Edge::At), Link::Slow),
    ];
    let p = plan(&rows, 2);
    assert_eq!(p.len(), 6);
    assert_eq!(p[1], (1, Wl::Idle, Link::Changing));
    assert_eq!(p[3], (2, Wl::Idle, Link::Fast));
    // Durations to time a change by.
    let b = before(Some(20_000), 0.99);
    assert_eq!(
        expected_duration(
            Some(((Wl::Idle, Link::Fast), 9000)),
            Some(&b),
            1024,
            Link::Fast
        )
        .0,
        9000
    );
    assert_eq!(
        expected_duration(None, Some(&b), 1024, Link::Fast).0,
        20_000
    );
    // Does not converge at the start: one pass of 1 GiB over 25 MB/s.
    let b = before(None, 0.0);
    let (ms, from) = expected_duration(None, Some(&b), 1024, Link::Rising);
    assert_eq!(ms, 42_949);
    assert!(from.contains("one pass"), "{from}");
}

#[test]
fn before_the_start_in_words() {
    let b = before(Some(20_000), 0.97);
    assert_eq!((b.said(), b.finish_ms()), (Said::Converges, Some(20_000)));
    let b = before(None, 0.03);
    assert_eq!((b.said(), b.finish_ms()), (Said::DoesNotConverge, None));
    // Near the edge both outcomes: its finish if it converges.
    let b = before(None, 0.4);
    assert_eq!((b.said(), b.finish_ms()), (Said::Either, Some(40_000)));
    let v = BeforeVerdict::of(&b, true);
    assert_eq!((v.matched, v.leaned_right), (true, Some(false)));
    assert_eq!(v.happened, "completed");
    let v = BeforeVerdict::of(&before(None, 0.03), true);
    assert!(!v.matched);
    let v = BeforeVerdict::of(&before(None, 0.03), false);
    assert!(v.matched && v.leaned_right.is_none());
    assert!(!BeforeVerdict::of(&before(Some(1), 0.95), false).matched);
    // A completed run scored against a "does not converge" before: never.
    let mut r = done(
        Wl::Edge(Edge::At),
        Link::Slow,
        1,
        50_000,
        vec![pt(5000, 50_000, None)],
    );
    r.before = Some(before(None, 0.05));
    r.score(1024);
    assert_eq!(pct(r.before_error), "never");
    assert!(!r.before_verdict.as_ref().unwrap().matched);
}

#[test]
fn giving_up_once_recognised() {
    let points = [pt(1000, 50_000, None), stuck_pt(2000), stuck_pt(3000)];
    assert_eq!(give_up_at(&points, Some(0), 21_999), None);
    assert_eq!(give_up_at(&points, Some(0), 22_000), Some(2000));
    // Not before the condition is true, and only verdicts made after it count.
    assert_eq!(give_up_at(&points, None, 60_000), None);
    assert_eq!(give_up_at(&points, Some(2500), 22_500), None);
    assert_eq!(give_up_at(&points, Some(2500), 23_000), Some(3000));
}

#[test]
fn bench_naive_from_progress() {
    let s = |elapsed_ms, phase, remaining, rate_bps, disk: Option<(u64, f64)>| Sample {
        at_ms: elapsed_ms,
        elapsed_ms,
        phase,
        transferred: 0,
        remaining,
        rate_bps,
        disk_remaining: disk.map(|d| d.0),
        disk_rate_bps: disk.map(|d| d.1),
        prediction: None,
        target: None,
    };
    let samples = [
        s(0, JobPhase::Preparing, 0, 0.0, None),
        s(
            1000,
            JobPhase::DiskBulkCopy,
            0,
            0.0,
            Some((900_000_000, 100e6)),
        ),
        s(20_000, JobPhase::PreCopy, 50_000_000, 100e6, None),
    ];
    // Records write the phase in words.
    let written = serde_json::to_value(&samples[1]).unwrap();
    assert_eq!(written["phase"], "disk bulk copy");
    assert!(samples[1].copying_disks() && !samples[2].copying_disks());
    let e = bench_naive(&samples, 100_000_000);
    assert_eq!(e.len(), 2);
    assert_eq!(
        e[0],
        Estimate {
            at_ms: 1000,
            total_ms: 11_000
        }
    );
    assert_eq!(
        e[1],
        Estimate {
            at_ms: 20_000,
            total_ms: 20_500
        }
    );
}

#[test]
fn not_converged_and_wrong_verdicts() {
    // edge-1.2 over 200mbit: said at 2 s, stays said; cancelled.
    let r = cut(
        Wl::Edge(Edge::Above),
        Link::Slow,
        None,
        vec![
            stuck_pt(2000),
            stuck_pt(3000),
            pt(4000, 90_000, None),
            stuck_pt(5000),
        ],
    );
    assert!(r.not_converged() && r.finished() && !r.completed());
    assert_eq!((r.condition_ms, r.recognised_ms), (Some(0), Some(2000)));
    assert_eq!(r.relapsed_ms, Some(1000));
    assert_eq!(r.wrong_stuck_ms, 0);
    assert!(r.cut.as_deref().unwrap().contains("given up"));
    assert!(
        r.outcome_line().contains("2.0 s after"),
        "{}",
        r.outcome_line()
    );
    // No accuracy scores for it.
    assert_eq!((r.pacer_errors, r.band.is_some()), ([None; 4], false));
    // The falling edge: the condition at the link's fall (4 s); a verdict
    // before it was wrong, the first after it 1.5 s later.
    let r = cut(
        Wl::Edge(Edge::Above),
        Link::Falling,
        Some(4000),
        vec![
            pt(1000, 9000, None),
            stuck_pt(2000),
            pt(3000, 9000, None),
            stuck_pt(5500),
        ],
    );
    assert_eq!((r.condition_ms, r.recognised_ms), (Some(4000), Some(1500)));
    assert_eq!((r.wrong_stuck_ms, r.wrong_stuck_predictions), (1000, 1));
    // Never recognised.
    let r = cut(
        Wl::Edge(Edge::At),
        Link::Slow,
        None,
        vec![pt(1000, 90_000, None)],
    );
    assert_eq!((r.recognised_ms, r.relapsed_ms), (None, None));
    assert!(r.outcome_line().contains("never said"));
    // A time-limit cancel is not-converged too; an interrupt is not.
    let mut t = PredictRun::new(Wl::Edge(Edge::At), Link::Slow, 1, 1, Some(25.0));
    t.take(
        Followed {
            result: Some(result("cancelled", 0, &[])),
            reason: Some("not done after 180 s".into()),
            timed_out: true,
            ..Followed::default()
        },
        1024,
    );
    assert_eq!(t.run.status, NOT_CONVERGED);
    let mut t = PredictRun::new(Wl::Steady, Link::Slow, 1, 1, Some(15.0));
    t.take(
        Followed {
            result: Some(result("cancelled", 0, &[])),
            reason: Some("interrupted".into()),
            ..Followed::default()
        },
        1024,
    );
    assert_eq!(t.run.status, "cancelled");
    // A completed run with a wrong verdict: an infinite error while in force.
    let r = done(
        Wl::Edge(Edge::At),
        Link::Slow,
        1,
        10_000,
        vec![
            pt(1000, 10_000, None),
            stuck_pt(2000),
            pt(6000, 10_000, None),
        ],
    );
    assert_eq!((r.wrong_stuck_ms, r.wrong_stuck_predictions), (4000, 1));
    assert_eq!(pct(r.pacer_errors[1]), "never");
    assert_eq!(pct(r.pacer_errors[2]), "never");
    assert_eq!(pct(r.pacer_errors[3]), "0.0%");
    // A rising link with the writer above its starting rate: "does not
    // converge" is right until the rise (at 3 s).
    let mut r = PredictRun::new(Wl::Edge(Edge::Below), Link::Rising, 1, 1, Some(100.0));
    r.change = Some(Change {
        what: vec![],
        expected_ms: 0,
        expected_from: String::new(),
        planned_ms: 3000,
        made_ms: Some(3000),
        made_job_ms: Some(3000),
    });
    let points = [
        stuck_pt(1000),
        stuck_pt(2000),
        stuck_pt(4000),
        pt(5000, 9000, None),
    ];
    r.run.fill(&result("completed", 9000, &points));
    r.score(1024);
    assert_eq!((r.wrong_stuck_ms, r.wrong_stuck_predictions), (2000, 2));
}

#[test]
fn json_names() {
    assert_eq!(
        serde_json::to_value(Wl::Edge(Edge::Above)).unwrap(),
        "edge-1.2"
    );
    assert_eq!(
        serde_json::to_value(Wl::App(AppKind::Stress)).unwrap(),
        "stress"
    );
    assert_eq!(serde_json::to_value(Wl::Skewed).unwrap(), "skewed");
    assert_eq!(
        serde_json::to_value(Link::Rising).unwrap(),
        "200mbit->1gbit"
    );
    assert_eq!(
        serde_json::to_value(Link::Falling).unwrap(),
        "1gbit->200mbit"
    );
    let r = cut(
        Wl::Edge(Edge::Above),
        Link::Slow,
        None,
        vec![stuck_pt(2000)],
    );
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["status"], "not-converged");
    assert_eq!(v["expect"], "does-not-converge");
    assert_eq!(v["recognised_ms"], 2000);
    assert_eq!(v["source_check"]["ok"], true);
    assert!(v["write_target_mbps"].as_f64().is_some());
    let d = done(
        Wl::Steady,
        Link::Fast,
        1,
        10_000,
        vec![pt(2000, 10_000, None)],
    );
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["band"]["inside"], 1);
    assert_eq!(v["wrong_stuck_ms"], 0);
    assert!(v["pacer_errors"].is_array() && v["naive_errors"].is_array());
}

#[test]
fn table_and_goals() {
    let good = vec![
        pt(1000, 11000, Some(20000)),
        pt(2000, 10300, Some(16000)),
        pt(5000, 10100, Some(12000)),
        pt(7000, 10000, Some(10500)),
        pt(10000, 10000, Some(10000)),
    ];
    let bad = vec![
        pt(1000, 30000, Some(12000)),
        pt(3000, 20000, Some(11000)),
        pt(6000, 15000, Some(10500)),
    ];
    let mut runs = vec![
        done(Wl::Steady, Link::Fast, 1, 10000, good.clone()),
        done(Wl::Steady, Link::Changing, 1, 10000, bad),
    ];
    let mut failed = PredictRun::new(Wl::Idle, Link::Fast, 1, 3, Some(0.0));
    failed.run.status = "failed".into();
    failed.run.reason = Some("boom".into());
    runs.push(failed);
    runs.push(cut(
        Wl::Edge(Edge::Above),
        Link::Slow,
        None,
        vec![pt(1000, 50_000, None), stuck_pt(2000), stuck_pt(3000)],
    ));
    runs.push(cut(
        Wl::Edge(Edge::Above),
        Link::Falling,
        Some(4000),
        vec![pt(1000, 9000, None), stuck_pt(11_000)],
    ));
    let order = [
        (Wl::Idle, Link::Fast),
        (Wl::Steady, Link::Fast),
        (Wl::Steady, Link::Changing),
        (Wl::Edge(Edge::Above), Link::Slow),
        (Wl::Edge(Edge::Above), Link::Falling),
    ];
    let t = render_table(&order, &runs, &opts());
    let lines: Vec<&str> = t.lines().collect();
    assert!(lines[0].contains("Pacer |error| at"), "{t}");
    assert!(lines[0].trim_end().ends_with("80% band"), "{t}");
    assert!(
        lines[1].starts_with("workload link            actual    10%    25%"),
        "{t}"
    );
    assert!(
        lines[1].contains("before   cover  width  recog   goal"),
        "{t}"
    );
    assert!(lines[2].starts_with("idle     1gbit           -"), "{t}");
    assert!(lines[2].ends_with("FAILED"), "{t}");
    // steady 1gbit: at 1 s 10%, 2.5 s 3%, 5 s 1%, 7.5 s 0%; naive 100% 60% 20% 5%;
    // every band (+-0.5 s) from 1 s on held 10 s but the first: 4 of 5, 10% wide.
    assert_eq!(
        lines[3],
        "steady   1gbit           10.00 s   10.0%  3.0%   1.0%   0.0%     100%   60.0%  20.0%  5.0%     1.0%    20.0%   -        80.0%  10.0%  -       ok"
    );
    assert!(lines[4].contains("MISSED both"), "{t}");
    assert!(
        lines[5].starts_with("edge-1.2 200mbit         not conv. -"),
        "{t}"
    );
    assert!(lines[5].contains("2.0 s   ok"), "{t}");
    // The falling edge: said 7 s after the link fell.
    assert!(
        lines[6].starts_with("edge-1.2 1gbit->200mbit  not conv."),
        "{t}"
    );
    assert!(lines[6].ends_with("7.0 s   MISSED 5 s"), "{t}");
    assert!(lines[7].starts_with("median   (all runs)"), "{t}");
    assert!(
        t.contains("goals (issue 9): NOT MET (without real applications: none was run)"),
        "{t}"
    );
    assert!(
        t.contains("1. median |error| at most 5% from 25% of the duration on, in every scenario (real applications included): NOT MET"),
        "{t}"
    );
    assert!(t.contains("not met: steady 1gbit->300mbit (100%)"), "{t}");
    assert!(t.contains("not met: idle 1gbit (no run finished)"), "{t}");
    assert!(t.contains("not met: real applications"), "{t}");
    assert!(
        t.contains("2. below the naive estimate's in every scenario: NOT MET"),
        "{t}"
    );
    assert!(
        t.contains("3. a non-converging migration recognised within 5 s of the condition, in every such run: NOT MET (2 run(s) did not converge; recognised at the latest 7.0 s after the condition)"),
        "{t}"
    );
    assert!(
        t.contains("not met: edge-1.2 1gbit->200mbit run 1 (7.0 s)"),
        "{t}"
    );
    assert!(
        t.contains("4. 80% bands covering 70-90% of outcomes"),
        "{t}"
    );
    assert!(
        t.contains("5. predictions before the start within 10%"),
        "{t}"
    );
    assert!(
        t.contains("not scored: no prediction before the start was made"),
        "{t}"
    );
    assert!(t.contains("runs that did not converge:"), "{t}");
    assert!(
        t.contains("edge-1.2 200mbit run 1: condition at 0.0 s (the start), Pacer said it does not converge 2.0 s after"),
        "{t}"
    );
    assert!(t.contains("the link's change to 200mbit"), "{t}");
    assert!(t.contains("the VM stayed at the source"), "{t}");
    assert!(t.contains("idle 1gbit run 1: failed: boom"), "{t}");
    assert!(
        !t.contains("edge-1.2 200mbit run 1: not-converged"),
        "not a failure: {t}"
    );
    assert!(t.contains("real applications: none run"), "{t}");
    // Only the good row and a recognised run: the accuracy, naive and
    // recognition goals hold; the band's 80% is within 70-90%.
    let rows = [
        summarize(Wl::Steady, Link::Fast, &runs),
        summarize(Wl::Edge(Edge::Above), Link::Slow, &runs),
    ];
    let some = [runs[0].clone(), runs[3].clone()];
    let g = goals(&rows, &some);
    assert!(g.within_5pct_everywhere && g.below_naive_everywhere);
    assert_eq!(g.overall_pacer, Some(0.01));
    assert_eq!(g.list[2].met, Some(true));
    assert_eq!(g.recognised_max_ms, Some(2000));
    assert_eq!(g.band.coverage, Some(0.8));
    assert_eq!(g.list[3].met, Some(true));
    // No prediction before the start was made: not scored.
    assert_eq!(g.list[4].met, None);
    assert!(g.met, "{:?}", g.list);
    // The plot of the good run.
    let c = chart(&runs[0], 1 << 30).unwrap().to_svg();
    assert!(c.contains("actual total 10.00 s"));
    assert!(c.contains("<polygon"));
    assert!(chart(&runs[2], 1 << 30).is_none());
    // The plot of a run that did not converge: its verdicts at the top.
    let c = chart(&runs[3], 1 << 30).unwrap().to_svg();
    assert!(c.contains("did not converge"), "{c}");
    assert!(
        c.contains("Pacer: does not converge (marked at the top)"),
        "{c}"
    );
    assert!(c.contains("open top"), "{c}");
    assert!(!c.contains("actual total"), "{c}");
}

#[test]
fn band_and_before_goals() {
    // A wide band that always holds: 100% is outside 70-90%.
    let wide: Vec<PredictionPoint> = (1..=9)
        .map(|i| PredictionPoint {
            elapsed_ms: i * 1000,
            total_ms: Some(10_000),
            low_ms: 1000,
            high_ms: Some(30_000),
            ..Default::default()
        })
        .collect();
    let mut a = done(Wl::Steady, Link::Slow, 1, 10_000, wide);
    a.before = Some(before(Some(12_500), 0.99));
    a.score(1024);
    let runs = vec![a];
    let rows = [summarize(Wl::Steady, Link::Slow, &runs)];
    assert_eq!(rows[0].band.coverage, Some(1.0));
    assert!((rows[0].band.mean_width.unwrap() - 2.9).abs() < 1e-9);
    assert!(rows[0].before_scored);
    assert_eq!(rows[0].before_ok, Some(false), "25% off");
    let g = goals(&rows, &runs);
    assert_eq!(g.list[3].met, Some(false));
    assert_eq!(g.list[3].not_met_in, ["steady 200mbit (100%)"]);
    assert_eq!(g.list[4].met, Some(false));
    assert_eq!(g.list[4].not_met_in, ["steady 200mbit (25.0%)"]);
    assert_eq!(g.before_unchanged, Some(0.25));
    assert!(!g.met);
    // A changing link: the prediction before is not scored for the goal.
    let mut b = done(
        Wl::Steady,
        Link::Changing,
        1,
        10_000,
        vec![pt(2000, 10_000, None)],
    );
    b.before = Some(before(Some(20_000), 0.99));
    b.score(1024);
    assert!(b.before_verdict.is_none() && b.before_error == Some(1.0));
    let row = summarize(Wl::Steady, Link::Changing, &[b]);
    assert!(!row.before_scored && row.before_ok.is_none());
    // A not-converged run that Pacer called converging before the start.
    let mut s = cut(
        Wl::Edge(Edge::Above),
        Link::Slow,
        None,
        vec![stuck_pt(1000)],
    );
    s.before = Some(before(Some(30_000), 0.95));
    s.score(1024);
    let runs = vec![s];
    let rows = [summarize(Wl::Edge(Edge::Above), Link::Slow, &runs)];
    assert_eq!(rows[0].before_ok, Some(false));
    let g = goals(&rows, &runs);
    assert!(
        g.list[4].not_met_in[0].contains("said converges and it not-converged"),
        "{:?}",
        g.list[4]
    );
    let t = render_table(&[(Wl::Edge(Edge::Above), Link::Slow)], &runs, &opts());
    assert!(
        t.contains("said converges (chance it ends 95%) and it not-converged: WRONG"),
        "{t}"
    );
}
