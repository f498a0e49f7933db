//! `pacer-lab bench gang`: several guests booted from one image, half of each
//! one's working set content they all hold and half its own, all migrated at once
//! h1 -> h2 (then back, and again), once directly by QEMU, once through the relays
//! without dedup, once with page dedup. For each: bytes on the link (the hosts'
//! own interface counters), the relays' wire bytes, the whole gang's time and
//! each VM's downtime. `pacer-lab bench relay-cost`: the codec's own cost per core.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pacer_api::{JobStatus, MigrateRequest, MigrationResult, Strategy};
use pacer_model::format_bytes;
use serde::Serialize;
use serde_json::json;

use super::{parse_link_rate, prepare_out, stop_on_ctrl_c, unix_ms, write_results};
use crate::live::{start_guest, GuestPlan, LiveBed};

const BED: &str = "bgang";
const GANG_TIMEOUT: Duration = Duration::from_secs(900);

/// How the gang moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum GangMode {
    /// Every VM's QEMU straight to its destination QEMU.
    Direct,
    /// Through the relays, each stream forwarded as it is.
    Relay,
    /// Through the relays, each page's content sent once.
    Dedup,
}

impl GangMode {
    fn as_str(self) -> &'static str {
        match self {
            GangMode::Direct => "direct",
            GangMode::Relay => "relay",
            GangMode::Dedup => "dedup",
        }
    }
}

/// Options of `pacer-lab bench gang`.
#[derive(Debug, Clone, clap::Args)]
pub struct GangOpts {
    /// Where to write the results as JSON.
    #[arg(long, default_value = "bench-results/gang.json")]
    pub out: PathBuf,
    /// Link rate between the two test hosts.
    #[arg(long, default_value = "1gbit", value_parser = parse_link_rate)]
    pub rate: String,
    /// Gang sizes, comma-separated (a fresh bed for each).
    #[arg(long, value_delimiter = ',', default_value = "4")]
    pub guests: Vec<usize>,
    /// Memory of each guest, MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory_mib: u64,
    /// Working set of each guest, MiB.
    #[arg(long, default_value_t = 512)]
    pub wss_mib: u64,
    /// Share of each working set that is the guest's own (the rest all guests hold).
    #[arg(long, default_value_t = 0.5)]
    pub unique: f64,
    /// Each guest's memory write rate, MB/s.
    #[arg(long, default_value_t = 2.0)]
    pub write_rate: f64,
    /// Modes, comma-separated, in this order.
    #[arg(long, value_delimiter = ',', default_value = "direct,relay,dedup")]
    pub modes: Vec<GangMode>,
}

/// One VM's migration in a gang run.
#[derive(Debug, Clone, Serialize)]
pub struct GangVm {
    pub name: String,
    pub status: String,
    pub total_ms: u64,
    pub downtime_ms: Option<u64>,
    pub bytes_transferred: u64,
    pub wire_bytes: Option<u64>,
    pub refs: Option<u64>,
    pub integrity_ok: Option<bool>,
    pub reason: Option<String>,
}

/// One gang migration.
#[derive(Debug, Clone, Serialize)]
pub struct GangRun {
    pub guests: usize,
    pub mode: GangMode,
    pub from: String,
    pub to: String,
    /// `completed` (every VM) or `failed`.
    pub status: String,
    /// From the first start to the last VM running at the destination, s.
    pub total_s: f64,
    /// Bytes the two hosts' interfaces sent while the gang moved.
    pub link_bytes: u64,
    /// QEMU's streams, summed.
    pub stream_bytes: u64,
    /// The relays' connection, summed over VMs (relayed modes).
    pub wire_bytes: Option<u64>,
    pub max_downtime_ms: Option<u64>,
    /// `pacer predict` for the gang just before it moved (none if it failed).
    pub predicted: Option<GangPredicted>,
    pub vms: Vec<GangVm>,
}

/// What the gang prediction said before the gang moved.
#[derive(Debug, Clone, Serialize)]
pub struct GangPredicted {
    pub total_s: Option<f64>,
    pub low_s: Option<f64>,
    pub high_s: Option<f64>,
    /// Predicted link bytes (QEMU's streams after dedup).
    pub wire_bytes: Option<u64>,
    pub stream_bytes: Option<u64>,
    pub distinct_bytes: u64,
    pub nonzero_bytes: u64,
    /// Seconds the prediction took to answer.
    pub took_s: f64,
}

/// Asks the source agent for the gang's prediction in this mode (the relay without
/// dedup is predicted as direct: it carries the same bytes).
async fn predict_gang(bed: &LiveBed, names: &[String], from: &str, to: &str, mode: GangMode) -> Result<GangPredicted> {
    let t0 = Instant::now();
    let req = pacer_api::PredictGangRequest {
        vms: names.to_vec(),
        destination: bed.peer(to)?,
        strategy: Strategy::PreCopy,
        bandwidth: None,
        dedup: mode == GangMode::Dedup,
        copy_storage: Default::default(),
    };
    let p = bed.hosts.client(from)?.predict_gang(&req).await.context("predict the gang")?;
    let s = |ms: Option<u64>| ms.map(|m| m as f64 / 1000.0);
    Ok(GangPredicted {
        total_s: s(p.total_ms),
        low_s: s(p.low_ms),
        high_s: s(p.high_ms),
        wire_bytes: p.wire_bytes,
        stream_bytes: p.stream_bytes,
        distinct_bytes: p.distinct_bytes,
        nonzero_bytes: p.nonzero_bytes,
        took_s: t0.elapsed().as_secs_f64(),
    })
}

fn tx_bytes(netns: Option<&str>) -> Result<u64> {
    let out = crate::net::command_in(netns, "cat")
        .arg("/sys/class/net/eth0/statistics/tx_bytes")
        .output()
        .context("cannot read the link counter")?;
    String::from_utf8_lossy(&out.stdout).trim().parse().context("link counter is not a number")
}

fn link_counter(bed: &LiveBed) -> Result<u64> {
    let mut sum = 0;
    for h in &bed.bed.hosts {
        sum += tx_bytes(h.netns.as_deref())?;
    }
    Ok(sum)
}

async fn migrate_gang(bed: &LiveBed, names: &[String], from: &str, to: &str, mode: GangMode) -> Result<(Vec<MigrationResult>, f64)> {
    let client = bed.hosts.client(from)?;
    let mut req = MigrateRequest::new(bed.peer(to)?, Strategy::PreCopy);
    req.dedup = mode == GangMode::Dedup;
    req.relay = mode == GangMode::Relay;
    let t0 = Instant::now();
    let mut jobs = Vec::new();
    for n in names {
        jobs.push(client.migrate(n, &req).await.with_context(|| format!("migrate {n}"))?.id);
    }
    let mut results: Vec<Option<MigrationResult>> = vec![None; jobs.len()];
    let mut last = 0.0;
    while results.iter().any(|r| r.is_none()) {
        if t0.elapsed() > GANG_TIMEOUT {
            bail!("the gang was not done after {} s", GANG_TIMEOUT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        for (i, id) in jobs.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            let j = client.job(id).await?;
            if let Some(r) = j.result {
                last = t0.elapsed().as_secs_f64();
                results[i] = Some(r);
            }
        }
    }
    Ok((results.into_iter().map(|r| r.unwrap()).collect(), last))
}

fn record(guests: usize, mode: GangMode, from: &str, to: &str, rs: &[MigrationResult], total_s: f64, link: u64) -> GangRun {
    let vms: Vec<GangVm> = rs
        .iter()
        .map(|r| GangVm {
            name: r.vm.clone(),
            status: format!("{:?}", r.status).to_lowercase(),
            total_ms: r.total_time_ms,
            downtime_ms: r.downtime_ms,
            bytes_transferred: r.bytes_transferred,
            wire_bytes: r.relay.as_ref().filter(|x| x.relayed).map(|x| x.wire_bytes),
            refs: r.relay.as_ref().filter(|x| x.relayed).map(|x| x.refs),
            integrity_ok: r.integrity.as_ref().map(|i| i.ok),
            reason: r.reason.clone(),
        })
        .collect();
    let all = rs.iter().all(|r| r.status == JobStatus::Completed);
    GangRun {
        guests,
        mode,
        from: from.into(),
        to: to.into(),
        status: if all { "completed" } else { "failed" }.into(),
        total_s,
        link_bytes: link,
        stream_bytes: rs.iter().map(|r| r.bytes_transferred).sum(),
        wire_bytes: vms.iter().map(|v| v.wire_bytes).sum(),
        max_downtime_ms: vms.iter().filter_map(|v| v.downtime_ms).max(),
        predicted: None,
        vms,
    }
}

/// The table printed at the end.
pub fn render_table(runs: &[GangRun], opts: &GangOpts) -> String {
    let mut out = format!(
        "{:<7}{:<8}{:<12}{:<12}{:<12}{:<10}{:<12}{:<14}{:<22}{}\n",
        "guests", "mode", "link", "streams", "relay wire", "total", "downtime", "vs direct", "predicted (error)", "checks"
    );
    for r in runs {
        let direct = runs.iter().find(|d| d.guests == r.guests && d.mode == GangMode::Direct);
        let vs = match direct {
            Some(d) if r.mode != GangMode::Direct && d.link_bytes > 0 => format!(
                "{:+.0}% / {:+.0}%",
                (r.link_bytes as f64 / d.link_bytes as f64 - 1.0) * 100.0,
                (r.total_s / d.total_s - 1.0) * 100.0
            ),
            _ => "-".into(),
        };
        let predicted = match &r.predicted {
            Some(GangPredicted { total_s: Some(t), wire_bytes: Some(w), .. }) => format!(
                "{:.1} s {:+.0}%, {:+.0}% B",
                t,
                (t / r.total_s - 1.0) * 100.0,
                (*w as f64 / r.link_bytes.max(1) as f64 - 1.0) * 100.0
            ),
            Some(_) => "does not end".into(),
            None => "-".into(),
        };
        let checks = if r.vms.iter().all(|v| v.integrity_ok == Some(true)) { "all ok".to_string() } else { r.status.to_uppercase() };
        out.push_str(&format!(
            "{:<7}{:<8}{:<12}{:<12}{:<12}{:<10}{:<12}{:<14}{:<22}{}\n",
            r.guests,
            r.mode.as_str(),
            format_bytes(r.link_bytes),
            format_bytes(r.stream_bytes),
            r.wire_bytes.map(format_bytes).unwrap_or_else(|| "-".into()),
            format!("{:.1} s", r.total_s),
            r.max_downtime_ms.map(|d| format!("{d} ms max")).unwrap_or_else(|| "-".into()),
            vs,
            predicted,
            checks
        ));
    }
    out.push_str(&format!(
        "\nlink = bytes both hosts' interfaces sent while the gang moved (QEMU's streams, the relays' \
         connection, agents' calls); vs direct = link bytes / total time against the direct run of the \
         same gang; predicted = `pacer predict` for the gang just before it moved: its time and error, \
         then its link bytes' error against the link counter. {} MiB guests, {} MiB working sets {:.0}% their own, writing {} MB/s each, pre-copy \
         over {}; each mode moves the gang the other way (h1 -> h2, back, again).\n",
        opts.memory_mib,
        opts.wss_mib,
        opts.unique * 100.0,
        opts.write_rate,
        opts.rate
    ));
    out
}

/// Runs `pacer-lab bench gang`.
pub async fn run(opts: &GangOpts) -> Result<i32> {
    if opts.modes.is_empty() || opts.guests.is_empty() {
        bail!("--modes and --guests must name at least one");
    }
    if !(0.0..=1.0).contains(&opts.unique) {
        bail!("--unique {} is not a fraction between 0 and 1", opts.unique);
    }
    prepare_out(&opts.out)?;
    let stop = stop_on_ctrl_c();
    let mut runs: Vec<GangRun> = Vec::new();
    for &n in &opts.guests {
        let mut bed = LiveBed::up_shaped(BED, &opts.rate)?;
        let names: Vec<String> = (1..=n).map(|i| format!("gang{i}")).collect();
        for name in &names {
            let mut g = GuestPlan::memory(name, opts.memory_mib, opts.wss_mib, opts.write_rate);
            g.workload.unique = opts.unique;
            start_guest(&mut bed, &g, &mut Vec::new(), &stop).await.with_context(|| format!("start {name}"))?;
        }
        let (mut from, mut to) = ("h1", "h2");
        for &mode in &opts.modes {
            if *stop.borrow() {
                break;
            }
            eprintln!("[{n} guests] {}: {from} -> {to}", mode.as_str());
            let predicted = match predict_gang(&bed, &names, from, to, mode).await {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("[{n} guests] {}: no prediction: {e:#}", mode.as_str());
                    None
                }
            };
            let before = link_counter(&bed)?;
            let (rs, total_s) = migrate_gang(&bed, &names, from, to, mode).await?;
            let link = link_counter(&bed)? - before;
            let mut r = record(n, mode, from, to, &rs, total_s, link);
            r.predicted = predicted;
            eprintln!(
                "[{n} guests] {}: {} in {:.1} s, link {}",
                mode.as_str(),
                r.status,
                r.total_s,
                format_bytes(r.link_bytes)
            );
            let failed = r.status != "completed";
            runs.push(r);
            save(opts, &bed, &runs)?;
            if failed {
                break;
            }
            std::mem::swap(&mut from, &mut to);
        }
        bed.close("gang");
    }
    print!("{}", render_table(&runs, opts));
    println!("\nall runs: {}", opts.out.display());
    Ok(if runs.iter().all(|r| r.status == "completed") { 0 } else { 1 })
}

fn save(opts: &GangOpts, bed: &LiveBed, runs: &[GangRun]) -> Result<()> {
    let config = json!({
        "link_rate": opts.rate,
        "guests": opts.guests,
        "memory_mib": opts.memory_mib,
        "wss_mib": opts.wss_mib,
        "unique": opts.unique,
        "write_rate_mbps": opts.write_rate,
        "modes": opts.modes,
        "strategy": "pre-copy",
        "started_unix_ms": unix_ms(),
    });
    write_results(&opts.out, "gang", bed, config, json!({"runs": runs}))
}

/// Options of `pacer-lab bench relay-cost`.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayCostOpts {
    /// Where to write the results as JSON.
    #[arg(long, default_value = "bench-results/relay-cost.json")]
    pub out: PathBuf,
    /// Pages per stream (4 streams).
    #[arg(long, default_value_t = 65536)]
    pub pages: u64,
}

/// The codec's cost on one core: four synthetic streams (half their pages held
/// by all four) tokenized, deduplicated and encoded, then decoded.
pub async fn run_cost(opts: &RelayCostOpts) -> Result<i32> {
    use pacer_qemu::stream::{synth, PAGE};
    prepare_out(&opts.out)?;
    let streams: Vec<Vec<u8>> = (0..4u64)
        .map(|s| {
            let round: synth::Round = (0..opts.pages)
                .map(|i| {
                    let shared = i % 2 == 0;
                    let seed = if shared { i } else { i ^ (s + 1) << 40 };
                    let mut p = vec![0u8; PAGE];
                    for (k, w) in p.chunks_mut(8).enumerate() {
                        w.copy_from_slice(&(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k as u64).to_le_bytes());
                    }
                    (i, Some(p))
                })
                .collect();
            synth::stream(opts.pages, &[round])
        })
        .collect();
    let total: usize = streams.iter().map(|s| s.len()).sum();
    let mut rows = Vec::new();
    // Frames as the agent's writer makes them: one buffer, reused per chunk.
    let encode = |dedup: bool, keep: Option<&mut Vec<u8>>| {
        let mut enc = pacer_relay::Encoder::new(1 << 20, dedup);
        let mut buf = Vec::with_capacity(1 << 20);
        let mut kept = keep;
        enc.preface(&mut buf);
        for (i, _) in streams.iter().enumerate() {
            enc.open(i as u32, &format!("vm{i}"), &mut buf);
        }
        let mut wire_len = 0;
        let mut at = 0;
        while at < streams[0].len() {
            for (i, s) in streams.iter().enumerate() {
                let end = (at + (64 << 10)).min(s.len());
                if at < end {
                    enc.feed(i as u32, &s[at..end], &mut buf);
                }
                wire_len += buf.len();
                if let Some(k) = kept.as_deref_mut() {
                    k.extend_from_slice(&buf);
                }
                buf.clear();
            }
            at += 64 << 10;
        }
        wire_len
    };
    for dedup in [false, true] {
        let mut wire = Vec::new();
        encode(dedup, Some(&mut wire));
        let t = Instant::now();
        let n = encode(dedup, None);
        assert_eq!(n, wire.len());
        let enc_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut dec = pacer_relay::Decoder::new();
        let mut out_bytes = 0usize;
        for c in wire.chunks(64 << 10) {
            dec.feed(c, |e| {
                if let pacer_relay::Event::Data { bytes, .. } = e {
                    out_bytes += bytes.len();
                }
            })
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let dec_s = t.elapsed().as_secs_f64();
        if out_bytes != total {
            bail!("decoded {out_bytes} bytes of {total}");
        }
        let gbit = |s: f64| total as f64 * 8.0 / s / 1e9;
        rows.push(json!({
            "dedup": dedup, "stream_bytes": total, "wire_bytes": wire.len(),
            "encode_s": enc_s, "decode_s": dec_s,
            "encode_gbit_per_core": gbit(enc_s), "decode_gbit_per_core": gbit(dec_s),
        }));
        println!(
            "{:<9} streams {} -> wire {}: encode {:.1} Gbit/s, decode {:.1} Gbit/s (one core)",
            if dedup { "dedup" } else { "forward" },
            format_bytes(total as u64),
            format_bytes(wire.len() as u64),
            gbit(enc_s),
            gbit(dec_s)
        );
    }
    let doc = json!({"benchmark": "relay-cost", "pages_per_stream": opts.pages, "streams": 4, "runs": rows});
    std::fs::write(&opts.out, serde_json::to_string_pretty(&doc)?)?;
    println!("results: {}", opts.out.display());
    Ok(0)
}
