use super::*;

/// Consoles of the guest as it was before this crate (its hand-written JSON writer), run on
/// the host: with a disk workload (plus an unknown cmdline key and an unknown command), and
/// an idle one without a disk.
const OLD_DISK: &str = include_str!("../testdata/old-guest-disk.txt");
const OLD_NODISK: &str = include_str!("../testdata/old-guest-nodisk.txt");

/// What the image's init prints when the guest program exits (guest_image.rs).
const INIT_ERROR: &str = r#"PACER {"kind":"error","message":"pacer-guest exited with status 1"}"#;

fn ready(disk: bool) -> ReadyLine {
    let mut r = ReadyLine {
        workload: "memwrite".into(),
        wss_mib: 256,
        rate_mbps: 20.5,
        hot_fraction: 0.1,
        hot_share: 0.9,
        status_ms: 1000,
        pages: 65536,
        fill_ms: 80,
        uptime_ms: 95,
        ..ReadyLine::default()
    };
    if disk {
        r.disk = Some("/dev/vda".into());
        r.disk_dev_bytes = Some(1 << 30);
        r.disk_span_bytes = Some(1 << 29);
        r.disk_bs = Some(65536);
        r.disk_pattern = Some("hot".into());
        r.disk_rate_mbps = Some(10.0);
        r.disk_direct = Some(true);
        r.disk_fill = Some(false);
    }
    r
}

fn status(disk: bool) -> StatusLine {
    let mut s = StatusLine {
        uptime_ms: 5000,
        pages_written: 12345,
        write_mbps: 19.99,
        errors: 2,
        workload: "memwrite".into(),
        ..StatusLine::default()
    };
    if disk {
        s.disk_written_bytes = 1 << 20;
        s.disk_write_mbps = 2.03;
        s.disk_errors = 1;
        s.disk_phase = DiskPhase::Fill;
        s.disk_fill_bytes = Some(1 << 19);
        s.disk_fill_total = Some(1 << 29);
    }
    s
}

fn verify(disk: bool) -> VerifyLine {
    let mut v = VerifyLine {
        seq: 3,
        ok: false,
        mem_ok: false,
        disk_ok: !disk,
        pages_checked: 65536,
        bad_pages: 2,
        first_bad: vec![7, 4096],
        stale_pages: 1,
        mem_duration_ms: 210,
        duration_ms: 230,
        errors_total: 3,
        write_path_bad: vec![12],
        ..VerifyLine::default()
    };
    if disk {
        v.disk_blocks_checked = 131072;
        v.disk_bad_blocks = 1;
        v.disk_stale_blocks = Some(1);
        v.disk_unknown_blocks = Some(0);
        v.disk_first_bad = Some(vec![99]);
        v.disk_read_errors = Some(0);
        v.disk_duration_ms = Some(20);
        v.disk_errors_total = Some(1);
    }
    v
}

fn every_variant() -> Vec<GuestLine> {
    vec![
        GuestLine::Ready(ready(false)),
        GuestLine::Ready(ready(true)),
        GuestLine::Status(status(false)),
        GuestLine::Status(status(true)),
        GuestLine::Verify(verify(false)),
        GuestLine::Verify(verify(true)),
        GuestLine::DiskFilled(DiskFilledLine {
            bytes: 1 << 29,
            fill_ms: 7000,
            fill_mbps: 76.7,
        }),
        GuestLine::error("disk /dev/vda does not exist; no disk workload"),
        GuestLine::Ready(ReadyLine {
            app: Some("redis".into()),
            app_mib: Some(64),
            app_rate_mbps: Some(15.0),
            ..ready(false)
        }),
        GuestLine::Status(StatusLine {
            app: Some("redis".into()),
            app_phase: Some(AppPhase::Run),
            app_alive: Some(true),
            app_ops: Some(4242),
            app_write_mbps: Some(14.87),
            ..status(false)
        }),
        GuestLine::Verify(app_verify()),
    ]
}

fn app_verify() -> VerifyLine {
    VerifyLine {
        ok: false,
        mem_ok: true,
        app: Some("memcached".into()),
        app_ok: Some(false),
        app_detail: Some("key mc:7: value of generation 2, expected 3".into()),
        ..verify(false)
    }
}

/// The application's fields come only with an application, and a line
/// without them (an older guest, or no application) reads as "app ok".
#[test]
fn app_fields() {
    let plain = GuestLine::Status(status(false)).to_line();
    assert!(!plain.contains("app"), "{plain}");
    let v = verify(false);
    assert!(v.app_is_ok());
    assert!(!GuestLine::Verify(v).to_line().contains("app"));
    let bad = app_verify();
    assert!(!bad.app_is_ok());
    let text = GuestLine::Verify(bad.clone()).to_line();
    assert!(text.ends_with(r#""app":"memcached","app_ok":false,"app_detail":"key mc:7: value of generation 2, expected 3"}"#), "{text}");
    let s = r#"PACER {"kind":"status","uptime_ms":1,"app":"zstd","app_phase":"compress-harder","app_alive":true}"#;
    match parse_line(s) {
        Some(GuestLine::Status(st)) => {
            assert_eq!(st.app_phase, Some(AppPhase::Other));
            assert_eq!(st.app_alive, Some(true));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(AppPhase::Run.as_str(), "run");
}

#[test]
fn every_variant_round_trips() {
    for line in every_variant() {
        let text = line.to_line();
        let head = format!("PACER {{\"kind\":\"{}\",", line.kind());
        assert!(text.starts_with(&head), "{text}");
        assert!(!text.contains('\n'), "{text}");
        assert_eq!(parse_line(&text).as_ref(), Some(&line), "{text}");
    }
}

#[test]
fn optional_fields_are_left_out() {
    let text = GuestLine::Status(status(false)).to_line();
    assert_eq!(
        text,
        r#"PACER {"kind":"status","uptime_ms":5000,"pages_written":12345,"write_mbps":19.99,"errors":2,"workload":"memwrite","disk_written_bytes":0,"disk_write_mbps":0,"disk_errors":0,"disk_phase":"none"}"#
    );
    let text = GuestLine::Ready(ready(false)).to_line();
    assert!(!text.contains("disk"), "{text}");
    let text = GuestLine::Verify(verify(false)).to_line();
    assert!(!text.contains("disk_stale_blocks"), "{text}");
    assert!(text.contains(r#""disk_ok":true,"disk_blocks_checked":0,"disk_bad_blocks":0,"#));
}

#[test]
fn the_old_guests_lines_decode_and_are_written_back_the_same() {
    for text in [OLD_DISK, OLD_NODISK] {
        for raw in text.lines() {
            let line = parse_line(raw).unwrap_or_else(|| panic!("does not parse: {raw}"));
            assert_eq!(line.to_line(), raw);
        }
    }
    assert_eq!(scan(OLD_DISK).count(), OLD_DISK.lines().count());
}

#[test]
fn the_old_guests_fields() {
    let lines: Vec<GuestLine> = scan(OLD_DISK).collect();
    assert_eq!(
        lines[0],
        GuestLine::error("cmdline: pacer.bogus: unknown key; using the default")
    );
    let GuestLine::Ready(r) = &lines[1] else {
        panic!("{:?}", lines[1])
    };
    assert_eq!(
        (r.workload.as_str(), r.wss_mib, r.rate_mbps),
        ("memwrite", 16, 20.0)
    );
    assert_eq!(r.disk.as_deref(), Some("/tmp/oldguest/disk.img"));
    assert_eq!(
        (r.disk_bs, r.disk_rate_mbps, r.disk_fill),
        (Some(16384), Some(2.0), Some(true))
    );
    let GuestLine::DiskFilled(f) = &lines[2] else {
        panic!("{:?}", lines[2])
    };
    assert_eq!((f.bytes, f.fill_ms, f.fill_mbps), (8388608, 19, 429.03));
    let v = lines
        .iter()
        .find_map(|l| match l {
            GuestLine::Verify(v) => Some(v),
            _ => None,
        })
        .unwrap();
    assert!(v.ok && v.mem_ok && v.disk_ok);
    assert_eq!(
        (v.seq, v.pages_checked, v.disk_blocks_checked),
        (1, 4096, 2048)
    );
    assert_eq!(v.disk_first_bad.as_deref(), Some(&[][..]));
    assert_eq!(v.disk_duration_ms, Some(11));
    let s = latest_status(OLD_DISK).unwrap();
    assert_eq!((s.uptime_ms, s.disk_phase), (2711, DiskPhase::Write));
    assert_eq!(s.disk_fill_total, Some(8388608));
    assert_eq!(status_count(OLD_DISK), 10);
    assert!(lines.contains(&GuestLine::error(
        r#"unknown command "frobnicate" (verify|status)"#
    )));

    let s = latest_status(OLD_NODISK).unwrap();
    assert_eq!(
        (s.disk_phase, s.disk_fill_bytes, s.write_mbps),
        (DiskPhase::None, None, 0.0)
    );
    let GuestLine::Verify(v) = scan(OLD_NODISK).nth(3).unwrap() else {
        panic!()
    };
    assert_eq!(
        (v.disk_ok, v.disk_stale_blocks, v.pages_checked),
        (true, None, 2048)
    );
}

#[test]
fn init_scripts_error_line() {
    assert_eq!(
        parse_line(INIT_ERROR),
        Some(GuestLine::error("pacer-guest exited with status 1"))
    );
}

#[test]
fn lines_of_the_first_guest_without_newer_fields() {
    // The guest before it had a disk workload wrote fewer fields.
    let v = parse_line(
        r#"PACER {"kind":"verify","seq":1,"ok":true,"pages_checked":2048,"bad_pages":0,"first_bad":[],"stale_pages":0,"duration_ms":4,"errors_total":0,"write_path_bad":[]}"#,
    );
    let Some(GuestLine::Verify(v)) = v else {
        panic!("{v:?}")
    };
    assert!(v.ok && v.disk_ok && !v.mem_ok);
    assert_eq!(
        (v.pages_checked, v.disk_blocks_checked, v.mem_duration_ms),
        (2048, 0, 0)
    );
    let s = parse_line(
        r#"PACER {"kind":"status","uptime_ms":404,"pages_written":0,"write_mbps":0,"errors":0,"workload":"idle"}"#,
    );
    let Some(GuestLine::Status(s)) = s else {
        panic!("{s:?}")
    };
    assert_eq!(
        (s.workload.as_str(), s.disk_phase),
        ("idle", DiskPhase::None)
    );
}

#[test]
fn old_writer_escapes_and_numbers() {
    // The old writer's own test object (fields of no kind are ignored).
    let old = r#"PACER {"kind":"verify","seq":1,"ok":true,"first_bad":[1,2],"hot":0.1,"mbps":60,"message":"a \"b\"\\\n\u0001"}"#;
    let Some(GuestLine::Verify(v)) = parse_line(old) else {
        panic!()
    };
    assert_eq!((v.seq, v.ok, v.first_bad), (1, true, vec![1, 2]));
    // Its escapes, read and written back.
    let e = r#"PACER {"kind":"error","message":"a \"b\"\\\n\r\t\u0001"}"#;
    let line = parse_line(e).unwrap();
    assert_eq!(line, GuestLine::error("a \"b\"\\\n\r\t\u{1}"));
    assert_eq!(line.to_line(), e);
    // Non-finite floats were written as null.
    let r = r#"PACER {"kind":"ready","workload":"idle","wss_mib":8,"rate_mbps":null,"hot_fraction":0.1,"hot_share":0.9,"status_ms":400,"pages":2048,"fill_ms":4,"uptime_ms":4}"#;
    let line = parse_line(r).unwrap();
    let GuestLine::Ready(ready) = &line else {
        panic!()
    };
    assert!(ready.rate_mbps.is_nan());
    assert_eq!(line.to_line(), r);
}

#[test]
fn console_noise() {
    let console = concat!(
        "SeaBIOS (version 1.16)\r\n",
        "[    1.234567] virtio_blk virtio1: [vda] 2097152 512-byte logical blocks\r\n",
        "pacer-init: starting /bin/pacer-guest\r\n",
        "[    2.000001] PACER {\"kind\":\"disk_filled\",\"bytes\":4096,\"fill_ms\":1,\"fill_mbps\":4.1}\r\n",
        "PACER {broken\r\n",
        "PACER \r\n",
        "PACER\r\n",
        "PACER {\"kind\":\"reboot\",\"in_ms\":5}\r\n",
        "PACER {\"no_kind\":1}\r\n",
        "PACER [1,2]\r\n",
        "PACER {\"kind\":\"status\",\"uptime_ms\":\"soon\"}\r\n",
        "2026-12-01T10:00:00Z PACER {\"kind\":\"status\",\"uptime_ms\":1000,\"disk_phase\":\"idle\"}\r\r\n",
        "progress 10%\rPACER {\"kind\":\"status\",\"uptime_ms\":2000,\"disk_phase\":\"trim\",\"new_field\":[1]}\n",
        "PACER PACER {\"kind\":\"error\",\"message\":\"twice\"}  \n",
        "PACER {\"kind\":\"error\",\"message\":\"cut off",
    );
    let lines: Vec<GuestLine> = scan(console).collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_eq!(lines[0].kind(), "disk_filled");
    let GuestLine::Status(s) = &lines[1] else {
        panic!()
    };
    assert_eq!((s.uptime_ms, s.disk_phase), (1000, DiskPhase::Idle));
    let GuestLine::Status(s) = &lines[2] else {
        panic!()
    };
    assert_eq!((s.uptime_ms, s.disk_phase), (2000, DiskPhase::Other));
    assert_eq!(lines[3], GuestLine::error("twice"));
    assert_eq!(latest_status(console).map(|s| s.uptime_ms), Some(2000));
    assert_eq!(status_count(console), 2);
    assert_eq!(latest_status("no guest here\n"), None);
    assert_eq!(status_count(""), 0);
}

#[test]
fn one_line_with_a_prefix_and_carriage_return() {
    let raw = "[  5.1] PACER {\"kind\":\"error\",\"message\":\"x\"}\r";
    assert_eq!(parse_line(raw), Some(GuestLine::error("x")));
    assert_eq!(
        parse_line("PACER {\"kind\":\"error\",\"message\":\"x\"} trailing noise"),
        Some(GuestLine::error("x"))
    );
    assert_eq!(
        parse_line("{\"kind\":\"error\",\"message\":\"x\"}"),
        None,
        "no marker"
    );
    assert_eq!(
        parse_line("pacer {\"kind\":\"error\",\"message\":\"x\"}"),
        None
    );
}
