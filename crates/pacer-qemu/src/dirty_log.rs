//! What QEMU's own dirty log says a guest dirties, before any migration: a
//! pre-copy migration into a local sink that is never allowed to switch over.
//!
//! Content hashing (`guest_ram`) cannot see a page rewritten with the bytes it
//! held, and real programs do that (stress-ng's passes, zstd's buffers); QEMU's
//! dirty log counts every write, and it is what QEMU will resend. Under KVM
//! `calc-dirty-rate` in dirty-bitmap mode reads that log; under TCG it reads
//! zero. So the probe runs the real thing: QEMU migrates into a socket whose far
//! end discards everything, with `switchover-ack` on and the acknowledgement
//! never sent, so QEMU cannot stop the guest however little is left (it waits
//! for the ack; checked by hand and by the test); each sync of the dirty log
//! after round one gives a point of the dirtying curve, then the probe cancels.
//! The guest keeps running throughout, and the capabilities and parameters it
//! changed are put back.
//!
//! Given the link a migration would take and its downtime limit, the probe then
//! rehearses the end of that migration: QEMU is paced at the link's rate with that
//! limit, and the probe watches whether QEMU's own switch-over rule would fire (it
//! cannot: the acknowledgement is withheld). Near the convergence edge this is the
//! answer no curve fitted at long windows gives: the short windows of the last
//! rounds, and what QEMU makes of them.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pacer_model::predict::{Status, SyncPoints};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use crate::migration::{model_sample, query_migrate, set_capabilities, set_parameters, MigrationStatus};
use crate::qmp::QmpClient;

/// How often the probe samples `query-migrate`: local rounds last a fraction of a second.
const POLL: Duration = Duration::from_millis(40);
/// Windows shorter than this are blurred by the sampling.
const MIN_WINDOW_S: f64 = 0.25;
/// The downtime limit during the probe: small, so that QEMU syncs only once a round is
/// sent, not on every pass once little is left (with its acknowledgement never coming,
/// it would never stop anyway).
const PROBE_DOWNTIME_MS: u64 = 1;
/// QEMU's largest `max-bandwidth` short of its own default cap: as fast as it goes.
const UNLIMITED_BPS: u64 = 1 << 40;
/// Rounds after round one run at local speed, a fraction of a second each; then the
/// probe slows QEMU so that one round lasts about this long, for a point at a window
/// as long as a migration's later rounds (the working set shows only there).
const LONG_WINDOW_S: f64 = 8.0;
/// The slowest the probe makes QEMU go (a guest that dirties almost nothing).
const MIN_SLOW_BPS: f64 = 256.0 * 1024.0;
/// Capabilities the probe sets (and puts back).
const CAPS: [&str; 4] = ["return-path", "switchover-ack", "auto-converge", "events"];

/// The sink reads this much at a time (a fraction of a millisecond of a fast link, so
/// that pacing it is smooth).
const SINK_READ: usize = 64 << 10;
/// The longest a rehearsal runs.
const REHEARSAL_S: f64 = 8.0;
/// Windows this short are kept in a rehearsal (the last rounds are this short).
const REHEARSAL_MIN_WINDOW_S: f64 = 0.12;
/// QEMU would have switched over: at [`BELOW_POLLS`] polls in a row a sync had happened
/// and `remaining` was below its threshold. Once the dirty set after a sync is below
/// the threshold, QEMU (waiting for the acknowledgement) syncs on every pass, finding
/// only what a pass lets the guest dirty; above it, each sync puts `remaining` back
/// over the threshold and the next comes only once that much more is sent.
const BELOW_POLLS: usize = 3;
/// A rehearsal ends early once this many syncs all left more than this many times the
/// threshold: the guest is nowhere near converging at that rate.
const FAR_SYNCS: usize = 3;
const FAR_FACTOR: f64 = 3.0;

/// The end of a migration to rehearse: QEMU paced at `link_bps` with `downtime_limit_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rehearsal {
    pub link_bps: f64,
    pub downtime_limit_ms: u64,
}

/// What a rehearsal saw.
#[derive(Debug, Clone, PartialEq)]
pub struct RehearsalOutcome {
    pub link_bps: f64,
    pub downtime_limit_ms: u64,
    /// How long it ran, s.
    pub ran_s: f64,
    /// When QEMU's switch-over rule would have fired, s after the rehearsal began
    /// (`None`: not while it ran).
    pub switched_after_s: Option<f64>,
    /// The least `remaining` QEMU reported just after a sync (the dirty set it kept
    /// coming back to), bytes; `None` if no sync was placed.
    pub least_after_sync: Option<u64>,
    /// `(window s, bytes dirtied)` at the rehearsal's syncs: the short windows.
    pub points: Vec<(f64, f64)>,
    /// Every sync's finds together: [`SyncPoints::span`].
    pub span: Option<(f64, f64)>,
}

/// What the probe saw.
#[derive(Debug, Clone, PartialEq)]
pub struct DirtyLogProbe {
    /// `(window s, bytes dirtied)` from each sync QEMU made after round one.
    pub points: Vec<(f64, f64)>,
    /// The seconds from the probe's first sync (round one's start) to its last, and the
    /// bytes all syncs in them found ([`SyncPoints::span`]), the rehearsal's included: the
    /// rate QEMU resends at over many seconds, which a guest writing in bursts shows only here.
    pub span: Option<(f64, f64)>,
    /// How long the probe ran, and how much it copied into the sink.
    pub elapsed: Duration,
    pub sunk_bytes: u64,
    /// The rehearsal, if one was asked for and there was time.
    pub rehearsal: Option<RehearsalOutcome>,
}

/// Runs the probe on the guest behind `qmp`: at most `limit` in all, and `after_round_one`
/// once round one has ended (a point at a short window, then one at about
/// [`LONG_WINDOW_S`], ends it sooner), then, with `rehearsal`, up to [`REHEARSAL_S`]
/// more; `abort` is asked every poll (a migration about to start). The sink socket
/// lives in `dir`. An error names what failed; the guest is left running either way.
pub async fn probe(
    qmp: &QmpClient,
    dir: &Path,
    limit: Duration,
    after_round_one: Duration,
    rehearsal: Option<Rehearsal>,
    abort: impl Fn() -> bool,
) -> Result<DirtyLogProbe, String> {
    let before = query_migrate(qmp).await.map_err(|e| e.to_string())?;
    if matches!(
        before.status,
        MigrationStatus::Setup | MigrationStatus::Active | MigrationStatus::PostcopyActive | MigrationStatus::Device
    ) {
        return Err("a migration is under way".into());
    }
    // A stopped guest would not wait for the acknowledgement (QEMU switches over at
    // once when the guest is not running): only a running guest is probed.
    let st = qmp.execute("query-status", None).await.map_err(|e| e.to_string())?;
    match st.get("status").and_then(Value::as_str) {
        Some("running") => {}
        other => return Err(format!("the guest is not running ({})", other.unwrap_or("unknown"))),
    }
    let caps = qmp.execute("query-migrate-capabilities", None).await.map_err(|e| e.to_string())?;
    let saved_caps: Vec<(&str, bool)> = CAPS.iter().map(|c| (*c, cap_state(&caps, c))).collect();
    let params = qmp.execute("query-migrate-parameters", None).await.map_err(|e| e.to_string())?;
    let saved_params = json!({
        "downtime-limit": params.get("downtime-limit").cloned().unwrap_or(json!(300)),
        "max-bandwidth": params.get("max-bandwidth").cloned().unwrap_or(json!(0)),
    });
    let sock = dir.join("dirty-log.sock");
    let _ = std::fs::remove_file(&sock);
    let listener = tokio::net::UnixListener::bind(&sock).map_err(|e| format!("sink {}: {e}", sock.display()))?;
    // The sink reads as fast as it can, or at the rate in `pace` (bytes/s, 0: as fast):
    // a rehearsal paces the stream like the link would, so that QEMU meets the same
    // backpressure (QEMU's own rate limit sends in 100 ms bursts, which changes when
    // it checks its switch-over rule).
    let pace = Arc::new(AtomicU64::new(0));
    let sink_pace = pace.clone();
    let sink = tokio::spawn(async move {
        let Ok((mut c, _)) = listener.accept().await else { return 0u64 };
        let (mut buf, mut n) = (vec![0u8; SINK_READ], 0u64);
        // Since when, from which byte, at which rate the sink has been pacing.
        let mut paced_from: Option<(Instant, u64, u64)> = None;
        while let Ok(k) = c.read(&mut buf).await {
            if k == 0 {
                break;
            }
            n += k as u64;
            let rate = sink_pace.load(Ordering::Relaxed);
            match paced_from {
                _ if rate == 0 => paced_from = None,
                Some((t0, n0, r)) if r == rate => {
                    let due = t0 + Duration::from_secs_f64((n - n0) as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                _ => paced_from = Some((Instant::now(), n, rate)),
            }
        }
        n
    });
    let run = run_probe(qmp, &sock, limit, after_round_one, rehearsal, &pace, &abort).await;
    // Whatever happened, the guest must not stay in a migration or paused. The sink
    // reads flat out again, so that QEMU is not left blocked on a paced socket.
    pace.store(0, Ordering::Relaxed);
    let _ = qmp.execute("migrate_cancel", None).await;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        match query_migrate(qmp).await {
            Ok(i) if matches!(i.status, MigrationStatus::Cancelling | MigrationStatus::Active | MigrationStatus::Setup) => {}
            _ => break,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sink.abort();
    let _ = std::fs::remove_file(&sock);
    let restored = async {
        set_capabilities(qmp, &saved_caps).await?;
        set_parameters(qmp, saved_params).await
    }
    .await;
    resume_if_stopped(qmp).await;
    let run = run?;
    restored.map_err(|e| format!("putting back the migration settings: {e}"))?;
    Ok(run)
}

/// The rate at which `dirty` bytes take about [`LONG_WINDOW_S`] to send.
fn slow_bps(dirty: f64) -> u64 {
    (dirty / LONG_WINDOW_S).max(MIN_SLOW_BPS) as u64
}

fn cap_state(caps: &Value, name: &str) -> bool {
    caps.as_array()
        .and_then(|a| a.iter().find(|c| c.get("capability").and_then(Value::as_str) == Some(name)))
        .and_then(|c| c.get("state").and_then(Value::as_bool))
        .unwrap_or(false)
}

/// A guest the probe found stopped for migration (it cannot happen with the ack
/// withheld; if it ever does, the guest runs again at once).
async fn resume_if_stopped(qmp: &QmpClient) {
    let Ok(st) = qmp.execute("query-status", None).await else { return };
    let status = st.get("status").and_then(Value::as_str).unwrap_or("");
    if matches!(status, "postmigrate" | "finish-migrate") {
        tracing::warn!("the dirty-log probe found the guest {status}: resuming it");
        let _ = qmp.execute("cont", None).await;
    }
}

async fn run_probe(
    qmp: &QmpClient,
    sock: &Path,
    limit: Duration,
    after_round_one: Duration,
    rehearsal: Option<Rehearsal>,
    pace: &AtomicU64,
    abort: &impl Fn() -> bool,
) -> Result<DirtyLogProbe, String> {
    let e = |e: crate::qmp::QmpError| e.to_string();
    set_capabilities(
        qmp,
        &[("events", false), ("auto-converge", false), ("return-path", true), ("switchover-ack", true)],
    )
    .await
    .map_err(e)?;
    set_parameters(qmp, json!({"downtime-limit": PROBE_DOWNTIME_MS, "max-bandwidth": UNLIMITED_BPS}))
        .await
        .map_err(e)?;
    let t0 = Instant::now();
    qmp.execute("migrate", Some(json!({"uri": format!("unix:{}", sock.display())})))
        .await
        .map_err(e)?;
    let mut syncs = SyncPoints::new(MIN_WINDOW_S);
    let (mut points, mut round_one_end, mut sunk) = (Vec::new(), None, 0);
    let mut slowed = false;
    while t0.elapsed() < limit && round_one_end.is_none_or(|t: Instant| t.elapsed() < after_round_one) {
        if abort() {
            return Err("a migration of this VM is starting".into());
        }
        let info = query_migrate(qmp).await.map_err(e)?;
        let s = model_sample(t0.elapsed().as_secs_f64(), 0, Some(&info), None);
        match s.status {
            Status::Setup | Status::Active => {}
            _ => {
                let why = info.error_desc.unwrap_or_else(|| format!("{:?}", info.status));
                return Err(format!("the probe's migration ended: {why}"));
            }
        }
        if s.dirty_sync_count >= 2 && round_one_end.is_none() {
            round_one_end = Some(Instant::now());
        }
        if let Some(p) = syncs.observe(&s) {
            points.push(p);
            if slowed && p.0 >= 0.75 * LONG_WINDOW_S {
                break;
            }
            if slowed {
                set_parameters(qmp, json!({"max-bandwidth": slow_bps(p.1)})).await.map_err(e)?;
            }
        }
        // Round one is in: at local speed the next rounds would shrink until QEMU
        // syncs on every pass (no window to measure); slowed so that the next round
        // sends round one's dirty set in about the long window, then each next one
        // what the last round found.
        if !slowed && s.dirty_sync_count >= 2 {
            set_parameters(qmp, json!({"max-bandwidth": slow_bps(s.remaining as f64)})).await.map_err(e)?;
            slowed = true;
        }
        sunk = s.transferred;
        tokio::time::sleep(POLL).await;
    }
    let rehearsal = match rehearsal {
        Some(r) if round_one_end.is_some() && t0.elapsed() < limit => {
            let left = limit.saturating_sub(t0.elapsed()).as_secs_f64().min(REHEARSAL_S);
            Some(rehearse(qmp, t0, r, left, pace, abort).await?)
        }
        _ => None,
    };
    if let Some(r) = &rehearsal {
        sunk = sunk.max(query_migrate(qmp).await.map(|i| i.ram.map_or(0, |r| r.transferred)).unwrap_or(0));
        tracing::debug!("dirty-log rehearsal: {r:?}");
    }
    let span = [syncs.span(), rehearsal.as_ref().and_then(|r| r.span)]
        .into_iter()
        .flatten()
        .reduce(|a, b| (a.0 + b.0, a.1 + b.1));
    Ok(DirtyLogProbe { points, span, elapsed: t0.elapsed(), sunk_bytes: sunk, rehearsal })
}

/// Paces the probe's migration like the one to come and watches QEMU's switch-over
/// rule for up to `for_s`: `remaining` below the threshold after a sync, poll after poll.
async fn rehearse(
    qmp: &QmpClient,
    t0: Instant,
    r: Rehearsal,
    for_s: f64,
    pace: &AtomicU64,
    abort: &impl Fn() -> bool,
) -> Result<RehearsalOutcome, String> {
    let e = |e: crate::qmp::QmpError| e.to_string();
    let link = r.link_bps.max(MIN_SLOW_BPS);
    pace.store(link as u64, Ordering::Relaxed);
    set_parameters(qmp, json!({"max-bandwidth": UNLIMITED_BPS, "downtime-limit": r.downtime_limit_ms.max(1)}))
        .await
        .map_err(e)?;
    let start = Instant::now();
    let mut syncs = SyncPoints::new(REHEARSAL_MIN_WINDOW_S);
    let (mut points, mut below, mut least, mut switched) = (Vec::new(), 0usize, None::<u64>, None);
    let (mut last_sync, mut rate, mut after_syncs) = (None, 0.0f64, 0usize);
    while start.elapsed().as_secs_f64() < for_s {
        if abort() {
            return Err("a migration of this VM is starting".into());
        }
        let info = query_migrate(qmp).await.map_err(e)?;
        let s = model_sample(t0.elapsed().as_secs_f64(), 0, Some(&info), None);
        if !matches!(s.status, Status::Active) {
            let why = info.error_desc.unwrap_or_else(|| format!("{:?}", info.status));
            return Err(format!("the probe's migration ended: {why}"));
        }
        // QEMU's threshold stands on its own measured rate (not the pace it was given),
        // as it was while sending flat out: once below the threshold QEMU sends little
        // and its rate falls, which a migration allowed to switch never gets to.
        if s.mbps > 0.0 {
            rate = rate.max((s.mbps * 1e6 / 8.0).min(link));
        }
        let threshold = if rate > 0.0 { rate } else { link } * r.downtime_limit_ms as f64 / 1000.0;
        tracing::trace!(
            "rehearsal poll t={:.3} sync={} remaining={} transferred={} mbps={:.1} threshold={threshold:.0}",
            s.t_s, s.dirty_sync_count, s.remaining, s.transferred, s.mbps
        );
        if let Some(p) = syncs.observe(&s) {
            points.push(p);
        }
        let synced = last_sync.is_some_and(|c| s.dirty_sync_count > c);
        if synced {
            least = Some(least.map_or(s.remaining, |l: u64| l.min(s.remaining)));
            after_syncs += 1;
            // Far from the edge: nothing more to learn here.
            if after_syncs >= FAR_SYNCS && least.is_some_and(|l| l as f64 > FAR_FACTOR * threshold) {
                break;
            }
        }
        last_sync = Some(s.dirty_sync_count);
        below = if synced && (s.remaining as f64) < threshold { below + 1 } else { 0 };
        if below >= BELOW_POLLS {
            switched = Some((start.elapsed().as_secs_f64() - BELOW_POLLS as f64 * POLL.as_secs_f64()).max(0.0));
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(RehearsalOutcome {
        link_bps: r.link_bps,
        downtime_limit_ms: r.downtime_limit_ms,
        ran_s: start.elapsed().as_secs_f64(),
        switched_after_s: switched,
        least_after_sync: least,
        points,
        span: syncs.span(),
    })
}
