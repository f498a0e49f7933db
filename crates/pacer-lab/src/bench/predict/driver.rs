//! Running the benchmark: the plan of runs, each run, the results written.

use super::*;

/// The order of runs: repeats outermost, then the rows.
pub fn plan(rows: &[(Wl, Link)], repeats: u32) -> Vec<(u32, Wl, Link)> {
    let mut v = Vec::new();
    for r in 1..=repeats {
        for &(w, l) in rows {
            v.push((r, w, l));
        }
    }
    v
}

/// The run whose actual duration sets the change time of (w, l), if it has one:
/// the same guest over the starting link (phase: the idle guest). The edge
/// family's writer goes with its link, so none there.
pub fn reference_of(w: Wl, l: Link) -> Option<(Wl, Link)> {
    let changes = l.changes() || w == Wl::Phase;
    // The faster rate's run: a change timed by the slow run's duration would come
    // late in a rising link's (shorter) run, where every prediction before it is
    // bound to be wrong and little is left to score after it.
    let start = match l {
        Link::Changing | Link::Falling | Link::Rising => Link::Fast,
        l => l,
    };
    (changes && !matches!(w, Wl::Edge(_)))
        .then(|| (if w == Wl::Phase { Wl::Idle } else { w }, start))
}

/// Runs `pacer-lab bench predict`.
pub async fn run(opts: &PredictOpts) -> Result<i32> {
    opts.validate()?;
    prepare_out(&opts.out)?;
    let rows = opts.rows();
    let mut bed = LiveBed::up_shaped(BED, FAST)?;
    if rows.iter().any(|r| r.0 == Wl::Disk) {
        bed.check_room(room_for_disk(opts.disk_size)).await?;
    }
    let stop = stop_on_ctrl_c();
    let order = plan(&rows, opts.runs);
    let mut runs: Vec<PredictRun> = Vec::new();
    let mut actuals: HashMap<(Wl, Link), u64> = HashMap::new();
    for (i, &(repeat, w, l)) in order.iter().enumerate() {
        if *stop.borrow() {
            break;
        }
        let tag = format!(
            "[{}/{}] {} over {} (run {repeat} of {})",
            i + 1,
            order.len(),
            w.as_str(),
            l.as_str(),
            opts.runs
        );
        let write = w.write_mbps(opts, l);
        eprintln!(
            "{tag}: {}{}",
            w.describe(opts),
            match (w, write) {
                (Wl::Edge(_), Some(r)) => format!("; here {r:.1} MB/s"),
                _ => String::new(),
            }
        );
        let mut rec = PredictRun::new(w, l, repeat, i + 1, write);
        let name = format!("bp-{}", i + 1);
        let mut files = Vec::new();
        let t = Instant::now();
        let expected = reference_of(w, l).and_then(|k| actuals.get(&k).map(|&ms| (k, ms)));
        one_run(&mut bed, opts, &name, &mut rec, &mut files, expected, &stop).await;
        rec.run.mark_interrupted(&stop);
        bed.cleanup(&name, &files).await;
        if let Err(e) = bed.set_rate(crate::net::parse_rate(FAST)?) {
            eprintln!("warning: cannot reset the link rate: {e}");
        }
        rec.wall_ms = t.elapsed().as_millis() as u64;
        if let (true, Some(ms)) = (rec.completed(), rec.run.total_time_ms) {
            actuals.entry((w, l)).or_insert(ms);
        }
        if let Some(c) = chart(&rec, opts.memory << 20) {
            let file = plot_path(
                &opts.out,
                &format!(
                    "{}-{}{}",
                    w.as_str(),
                    l.file_part(),
                    if opts.runs > 1 {
                        format!("-{repeat}")
                    } else {
                        String::new()
                    }
                ),
            );
            rec.plot = write_svg(&file, &c.to_svg());
        }
        eprintln!("{tag}: {}", rec.outcome_line());
        runs.push(rec);
        save(opts, &rows, &bed, &runs)?;
    }
    bed.close("benchmark");
    print!("{}", render_table(&rows, &runs, opts));
    println!("\nall runs: {} (plots beside it)", opts.out.display());
    let rows_s: Vec<RowSummary> = rows.iter().map(|&(w, l)| summarize(w, l, &runs)).collect();
    let all_done = runs.len() == order.len() && runs.iter().all(|r| r.finished());
    Ok(if all_done && goals(&rows_s, &runs).met {
        0
    } else {
        1
    })
}

pub(super) fn save(opts: &PredictOpts, rows: &[(Wl, Link)], bed: &LiveBed, runs: &[PredictRun]) -> Result<()> {
    let summaries: Vec<RowSummary> = rows.iter().map(|&(w, l)| summarize(w, l, runs)).collect();
    let config = json!({
        "runs": opts.runs,
        "workloads": opts.workloads(),
        "links": opts.links(),
        "rows": rows.iter().map(|(w, l)| json!([w, l])).collect::<Vec<_>>(),
        "memory_mib": opts.memory,
        "wss_mib": opts.wss,
        "edge_wss_mib": Wl::edge_wss(opts),
        "write_rate_mbps": opts.write_rate,
        "skewed_hot_fraction": HOT_FRACTION,
        "skewed_hot_share": HOT_SHARE,
        "disk_size_bytes": opts.disk_size,
        "disk_write_rate_mbps": opts.disk_write_rate,
        "disk_memory_write_rate_mbps": DISK_MEM_RATE,
        "prior_wait_s": opts.prior_wait,
        "change_at": opts.change_at,
        "changed_rate": CHANGED,
        "link_rates": ALL_LINKS.iter().map(|l| json!({
            "link": l, "start": l.start_rate(), "end": l.end_rate(),
        })).collect::<Vec<_>>(),
        "fractions": FRACTIONS,
        "band_coverage": BAND_COVERAGE,
        "band_goal": BAND_GOAL,
        "band_from": super::super::score::BAND_FROM,
        "recognised_goal_ms": GOAL_RECOGNISED_MS,
        "before_goal": GOAL_BEFORE_ERROR,
        "give_up_after_ms": GIVE_UP_AFTER_MS,
        "stuck_limit_s": STUCK_LIMIT.as_secs(),
        "edge_limit_s": EDGE_LIMIT.as_secs(),
        "guest_has_apps": GUEST_HAS_APPS,
        "strategy": "pre-copy",
    });
    let body = json!({
        "summary": summaries,
        "goals": goals(&summaries, runs),
        "runs": runs,
    });
    write_results(&opts.out, "predict", bed, config, body)
}

/// The duration the change time is taken from: the reference run's actual total,
/// else Pacer's prediction before the start (its finish if it converges), else
/// one pass of the guest's memory over the starting link.
pub(super) fn expected_duration(
    expected: Option<((Wl, Link), u64)>,
    before: Option<&Before>,
    memory_mib: u64,
    l: Link,
) -> (u64, String) {
    if let Some(((rw, rl), ms)) = expected {
        return (ms, format!("{} over {}, actual", rw.as_str(), rl.as_str()));
    }
    if let Some(ms) = before.and_then(|b| b.finish_ms()) {
        return (ms, "Pacer's prediction before the start".into());
    }
    let pass_ms = ((memory_mib << 20) as f64 / (l.start_mbps() * 1e6) * 1000.0) as u64;
    (
        pass_ms.max(1000),
        format!(
            "one pass of memory over {} (no prediction of a finish)",
            l.start_rate()
        ),
    )
}

/// The time limit of a run: the usual one for a migration expected to converge;
/// a short one from the condition on for one that is not.
pub(super) fn limit_of(rec: &PredictRun, opts: &PredictOpts, disk_bytes: u64) -> Duration {
    let cond = if rec.over_at_start() {
        Duration::ZERO
    } else {
        rec.change
            .as_ref()
            .map_or(Duration::ZERO, |c| Duration::from_millis(c.planned_ms))
    };
    let usual = migration_limit(LIMIT_BASE, opts.memory, disk_bytes, rec.link.slowest_bps());
    match rec.expect {
        Expect::Converges => usual,
        // An application's writes are not known beforehand: the usual limit.
        Expect::Either if matches!(rec.workload, Wl::App(_)) => usual,
        Expect::DoesNotConverge => cond + STUCK_LIMIT,
        Expect::Either => cond + EDGE_LIMIT,
    }
}

/// Where the VM is after a cancelled migration: still running at the source in
/// the same QEMU (waited for up to 10 s), not at the destination.
pub(super) async fn source_check(bed: &LiveBed, name: &str, pid: i32) -> SourceCheck {
    let mut check = SourceCheck {
        ok: false,
        state: None,
        same_qemu: false,
        at_destination: false,
    };
    let t0 = Instant::now();
    loop {
        if let Ok(c) = bed.hosts.client("h1") {
            if let Ok(info) = c.vm(name).await {
                check.state = Some(info.state.as_str().to_string());
                check.same_qemu = info.pid == pid;
                if info.state == VmState::Running && info.migrating.is_none() {
                    break;
                }
            }
        }
        if t0.elapsed() > Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Ok(c) = bed.hosts.client("h2") {
        if let Ok(info) = c.vm(name).await {
            check.at_destination = info.state == VmState::Running;
        }
    }
    check.ok =
        check.state.as_deref() == Some("running") && check.same_qemu && !check.at_destination;
    check
}

/// One run: guest, prior, prediction before, migration with its change, scoring.
pub(super) async fn one_run(
    bed: &mut LiveBed,
    opts: &PredictOpts,
    name: &str,
    rec: &mut PredictRun,
    files: &mut Vec<PathBuf>,
    expected: Option<((Wl, Link), u64)>,
    stop: &watch::Receiver<bool>,
) {
    let (w, l) = (rec.workload, rec.link);
    let rate = match crate::net::parse_rate(l.start_rate()) {
        Ok(r) => r,
        Err(e) => {
            rec.run.reason = Some(e.to_string());
            return;
        }
    };
    if let Err(e) = bed.set_rate(rate) {
        rec.run.reason = Some(format!("cannot set the link rate: {e}"));
        return;
    }
    let g = match w.guest(opts, name, l) {
        Ok(g) => g,
        Err(e) => {
            rec.run.reason = Some(format!("{e:#}"));
            return;
        }
    };
    let info = match start_guest(bed, &g, files, stop).await {
        Ok(s) => s.info,
        Err(e) => {
            rec.run.reason = Some(format!("{e:#}"));
            return;
        }
    };
    eprintln!(
        "  letting it run {:.0} s so the agent measures it",
        opts.prior_wait
    );
    if !wait_prior(Duration::from_secs_f64(opts.prior_wait), stop).await {
        return;
    }
    rec.guest_write_mbps = guest_rates(&bed.hosts, name).await.0;
    match predict_before(bed, name).await {
        Ok(p) => rec.before = Some(Before::from(&p)),
        Err(e) => eprintln!("  (no prediction before the start: {e:#})"),
    }
    // When to change what.
    let mut what = Vec::new();
    if l.changes() {
        what.push(format!("link {} -> {}", l.start_rate(), l.end_rate()));
    }
    if w == Wl::Phase {
        what.push("writer resumed".to_string());
    }
    if !what.is_empty() {
        let (expected_ms, from) = expected_duration(expected, rec.before.as_ref(), opts.memory, l);
        rec.change = Some(Change {
            what,
            expected_ms,
            expected_from: from,
            planned_ms: (expected_ms as f64 * opts.change_at) as u64,
            made_ms: None,
            made_job_ms: None,
        });
    }
    let req = match precopy_request(bed) {
        Ok(r) => r,
        Err(e) => {
            rec.run.reason = Some(format!("{e:#}"));
            return;
        }
    };
    let limit = limit_of(rec, opts, g.disk_size.unwrap_or(0));
    rec.limit_s = limit.as_secs();
    eprintln!(
        "  migrating to h2 over {} (guest writes {} MB/s now{}; limit {} s)",
        l.start_rate(),
        rec.guest_write_mbps
            .map(|v| format!("{v:.1}"))
            .unwrap_or("?".into()),
        rec.before
            .as_ref()
            .map(|b| match b.total_ms {
                Some(t) => format!("; Pacer predicts {:.1} s", t as f64 / 1000.0),
                None => "; Pacer says pre-copy does not converge".into(),
            })
            .unwrap_or_default(),
        rec.limit_s
    );
    let end_bps = crate::net::parse_rate(l.end_rate()).unwrap_or(rate);
    let over_at_start = rec.over_at_start();
    let give_up = rec.expect == Expect::DoesNotConverge;
    let mut change = rec.change.clone();
    let mut link_error = None;
    let mut resume = None;
    let followed = {
        let bed_ref = &*bed;
        let qmp = info.qmp_socket.clone();
        follow_migration_until(bed_ref, name, &req, limit, stop, |at, j| {
            if let Some(c) = change.as_mut() {
                if c.made_ms.is_none() && at.as_millis() >= c.planned_ms as u128 {
                    if l.changes() {
                        if let Err(e) = bed_ref.bed.set_rate(None, end_bps) {
                            link_error = Some(format!("cannot change the link rate: {e}"));
                        }
                    }
                    if w == Wl::Phase {
                        let qmp = qmp.clone();
                        resume = Some(tokio::spawn(async move {
                            console_command(&qmp, Command::Resume, Duration::from_secs(5)).await
                        }));
                    }
                    c.made_ms = Some(at.as_millis() as u64);
                    c.made_job_ms = Some(j.progress.elapsed_ms);
                    eprintln!("  {:.1} s: {}", at.as_secs_f64(), c.what.join(" and "));
                }
            }
            if !give_up {
                return None;
            }
            let condition = if over_at_start {
                Some(0)
            } else {
                change.as_ref().and_then(|c| c.made_job_ms)
            };
            let first = give_up_at(&j.predictions, condition, j.progress.elapsed_ms)?;
            Some(format!(
                "Pacer said at {:.1} s that pre-copy does not converge; given up {} s later",
                first as f64 / 1000.0,
                GIVE_UP_AFTER_MS / 1000
            ))
        })
        .await
    };
    // The closure changed the link behind the bed's back: tell it.
    if change.as_ref().is_some_and(|c| c.made_ms.is_some()) && l.changes() {
        bed.rate_bps = end_bps;
    }
    rec.change = change;
    if let Some(h) = resume {
        match h.await {
            Ok(Ok(answered)) => rec.writer_resumed = Some(answered),
            Ok(Err(e)) => {
                link_error.get_or_insert(format!("cannot resume the guest's writer: {e:#}"));
            }
            Err(e) => {
                link_error.get_or_insert(format!("cannot resume the guest's writer: {e}"));
            }
        }
    }
    let cancelled_by_bench = (followed.given_up || followed.timed_out)
        && followed
            .result
            .as_ref()
            .is_some_and(|r| r.status == JobStatus::Cancelled);
    rec.run.reason = link_error;
    rec.take(followed, opts.memory);
    if cancelled_by_bench {
        let check = source_check(bed, name, info.pid).await;
        if !check.ok {
            rec.run.status = "failed".into();
            rec.run.reason = Some(format!(
                "cancelled as not converging, but the VM is not running at the source as before \
                 (state {}, same QEMU: {}, running at the destination: {})",
                check.state.as_deref().unwrap_or("unknown"),
                check.same_qemu,
                check.at_destination
            ));
        }
        rec.source_check = Some(check);
    }
}
