//! What Pacer knows about a guest before migrating it: how it dirties memory
//! (QEMU's `calc-dirty-rate` over a short and a long window, refreshed in the
//! background), what fraction of its memory is zero pages (sampled with
//! `pmemsave`), and how fast the link to a destination is (a timed upload to
//! the destination agent).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pacer_api::AgentClient;
use pacer_model::{DirtyModel, Prior};
use pacer_qemu::QmpClient;
use serde_json::json;
use tracing::debug;

use crate::state::Agent;

/// Short and long dirty-rate windows (s): their ratio reveals the working set.
pub const WINDOWS_S: [u64; 2] = [1, 4];
/// How often the background sampler visits each VM.
const SAMPLE_EVERY: Duration = Duration::from_secs(8);
/// Measurements older than this are not used (the sampler refreshes each window
/// every 16 s; a stale one may show the guest's start-up, not its work).
const FRESH: Duration = Duration::from_secs(30);
/// A link rate measured this recently is reused.
const LINK_FRESH: Duration = Duration::from_secs(60);
/// Pages sampled for the zero-page fraction.
const ZERO_SAMPLES: usize = 384;

/// Latest measurements of one VM.
#[derive(Debug, Clone, Default)]
pub struct Measurements {
    /// Distinct bytes dirtied in each window of [`WINDOWS_S`], when measured.
    pub dirtied: [Option<(f64, Instant)>; 2],
    /// Fraction of guest memory that is zero pages.
    pub zero_fraction: Option<(f64, Instant)>,
    /// Which window the sampler measures next.
    next: usize,
}

impl Measurements {
    /// The guest's dirtying, from fresh measurements.
    pub fn dirty_model(&self) -> Option<DirtyModel> {
        let fresh = |m: &Option<(f64, Instant)>| m.filter(|(_, t)| t.elapsed() < FRESH).map(|(b, _)| b);
        match (fresh(&self.dirtied[0]), fresh(&self.dirtied[1])) {
            (Some(s), Some(l)) => {
                DirtyModel::fit((WINDOWS_S[0] as f64, s), (WINDOWS_S[1] as f64, l)).ok()
            }
            (Some(s), None) => DirtyModel::from_probe(s, WINDOWS_S[0] as f64, None).ok(),
            (None, Some(l)) => DirtyModel::from_probe(l, WINDOWS_S[1] as f64, None).ok(),
            (None, None) => None,
        }
    }

    /// The prior for a migration starting now.
    pub fn prior(&self, link_bps: Option<f64>) -> Prior {
        Prior {
            dirty: self.dirty_model(),
            zero_fraction: self.zero_fraction.filter(|(_, t)| t.elapsed() < FRESH).map(|(z, _)| z),
            link_bps,
        }
    }
}

/// Distinct bytes the guest dirties in `secs` (QEMU page sampling).
pub async fn dirtied_bytes(qmp: &QmpClient, secs: u64) -> Result<f64, String> {
    qmp.execute("calc-dirty-rate", Some(json!({"calc-time": secs, "mode": "page-sampling"})))
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(secs + 5);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = qmp.execute("query-dirty-rate", None).await.map_err(|e| e.to_string())?;
        if r.get("status").and_then(|s| s.as_str()) == Some("measured") {
            // QEMU reports MiB/s over the window.
            let mib_s = r.get("dirty-rate").and_then(|v| v.as_f64()).unwrap_or(0.0);
            return Ok(mib_s * (1 << 20) as f64 * secs as f64);
        }
        if Instant::now() > deadline {
            return Err("QEMU did not finish measuring the dirty rate".into());
        }
    }
}

/// Fraction of guest RAM that is zero pages, from `ZERO_SAMPLES` random pages.
pub async fn zero_fraction(qmp: &QmpClient, ram_bytes: u64, scratch: &std::path::Path) -> Result<f64, String> {
    use rand::Rng;
    // q35 puts up to 2 GiB (all of it below 2.75 GiB) under 4 GiB, the rest above.
    let low = if ram_bytes >= 0xb000_0000 { 0x8000_0000 } else { ram_bytes };
    let pages = ram_bytes / 4096;
    let mut zero = 0usize;
    let picks: Vec<u64> = {
        let mut rng = rand::thread_rng();
        (0..ZERO_SAMPLES).map(|_| rng.gen_range(0..pages) * 4096).collect()
    };
    for p in picks {
        let addr = if p < low { p } else { (4u64 << 30) + (p - low) };
        qmp.execute(
            "pmemsave",
            Some(json!({"val": addr, "size": 4096, "filename": scratch.display().to_string()})),
        )
        .await
        .map_err(|e| e.to_string())?;
        let page = std::fs::read(scratch).map_err(|e| e.to_string())?;
        if page.iter().all(|b| *b == 0) {
            zero += 1;
        }
    }
    let _ = std::fs::remove_file(scratch);
    Ok(zero as f64 / ZERO_SAMPLES as f64)
}

/// Measures one VM now: both dirty windows and the zero fraction.
pub async fn measure_now(agent: &Agent, vm: &str) -> Result<Measurements, String> {
    let _one = agent.measuring.lock().await;
    let qmp = agent.qmp(vm).await.map_err(|e| e.message)?;
    let rec = agent.record(vm).map_err(|e| e.message)?;
    let mut m = Measurements::default();
    for (i, w) in WINDOWS_S.iter().enumerate() {
        m.dirtied[i] = Some((dirtied_bytes(&qmp, *w).await?, Instant::now()));
    }
    let scratch = agent.vm_dir(vm).join("page.sample");
    m.zero_fraction = Some((zero_fraction(&qmp, rec.memory_mib << 20, &scratch).await?, Instant::now()));
    if let Some(e) = agent.vms.lock().unwrap().get_mut(vm) {
        e.measurements = m.clone();
    }
    Ok(m)
}

/// Keeps every running VM's measurements fresh, one window at a time.
pub async fn sampler(agent: Arc<Agent>) {
    loop {
        tokio::time::sleep(SAMPLE_EVERY).await;
        let names: Vec<(String, usize)> = agent
            .vms
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, e)| e.migrating.is_none() && e.record.origin != pacer_api::VmOrigin::Incoming)
            .map(|(n, e)| (n.clone(), e.measurements.next))
            .collect();
        for (name, next) in names {
            let _one = agent.measuring.lock().await;
            let Ok(qmp) = agent.qmp(&name).await else { continue };
            if qmp.run_state().await.ok().as_deref() != Some("running") {
                continue;
            }
            // Another job may have started meanwhile: QEMU refuses dirty-rate
            // sampling during a migration anyway, so a failure is harmless.
            let r = dirtied_bytes(&qmp, WINDOWS_S[next]).await;
            let z = if next == 0 {
                let ram = agent.record(&name).map(|r| r.memory_mib << 20).unwrap_or(0);
                let scratch = agent.vm_dir(&name).join("page.sample");
                if ram > 0 { zero_fraction(&qmp, ram, &scratch).await.ok() } else { None }
            } else {
                None
            };
            debug!("measured {name}: window {} s -> {r:?}, zero {z:?}", WINDOWS_S[next]);
            if let Some(e) = agent.vms.lock().unwrap().get_mut(&name) {
                if let Ok(b) = r {
                    e.measurements.dirtied[next] = Some((b, Instant::now()));
                }
                if let Some(z) = z {
                    e.measurements.zero_fraction = Some((z, Instant::now()));
                }
                e.measurements.next = (next + 1) % WINDOWS_S.len();
            }
        }
    }
}

/// The link rate to a destination, measured at most once a minute.
pub async fn link_rate_cached(agent: &Agent, dest: &pacer_api::PeerRef) -> Result<f64, String> {
    if let Some((r, t)) = agent.link_rates.lock().unwrap().get(&dest.url) {
        if t.elapsed() < LINK_FRESH {
            return Ok(*r);
        }
    }
    let client = AgentClient::new(&dest.url, &dest.token).with_timeout(Duration::from_secs(30));
    let r = link_rate(&client).await?;
    agent.link_rates.lock().unwrap().insert(dest.url.clone(), (r, Instant::now()));
    Ok(r)
}

/// Bytes per second a timed upload to the destination agent achieves.
pub async fn link_rate(dest: &AgentClient) -> Result<f64, String> {
    // Grow the upload until it takes long enough to say something about the link.
    let mut size = 4usize << 20;
    loop {
        let body = vec![0x5au8; size];
        let t0 = Instant::now();
        let _: serde_json::Value = dest
            .post_bytes("/v1/probe", body)
            .await
            .map_err(|e| format!("link probe failed: {e}"))?;
        let secs = t0.elapsed().as_secs_f64();
        if secs >= 0.2 || size >= 256 << 20 {
            return Ok(size as f64 / secs);
        }
        size *= 4;
    }
}
