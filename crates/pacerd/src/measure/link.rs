//! The link to a destination: its rate from a timed upload to the destination
//! agent's probe endpoint, remembered for a minute per destination.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pacer_api::{AgentClient, PeerRef};

/// A link rate measured this recently is reused.
const LINK_FRESH: Duration = Duration::from_secs(60);

/// A link rate, and the bytes sent to measure it now (0 when a recent figure was reused).
#[derive(Debug, Clone, Copy)]
pub struct LinkRate {
    /// Bytes per second.
    pub rate_bps: f64,
    /// Bytes the probe put on the link for this answer.
    pub probe_bytes: u64,
}

/// Link rates to destinations (bytes/s), and when they were measured.
#[derive(Default)]
pub struct LinkProbe {
    rates: Mutex<HashMap<String, (f64, Instant)>>,
}

impl LinkProbe {
    /// The link rate to a destination, measured now (and remembered).
    pub async fn fresh(&self, dest: &PeerRef) -> Result<LinkRate, String> {
        self.rates.lock().unwrap().remove(&dest.url);
        self.cached(dest).await
    }

    /// The link rate to a destination, measured at most once a minute.
    pub async fn cached(&self, dest: &PeerRef) -> Result<LinkRate, String> {
        if let Some((r, t)) = self.rates.lock().unwrap().get(&dest.url) {
            if t.elapsed() < LINK_FRESH {
                return Ok(LinkRate { rate_bps: *r, probe_bytes: 0 });
            }
        }
        let client = AgentClient::new(&dest.url, &dest.token).with_timeout(Duration::from_secs(30));
        let r = measure(&client).await?;
        self.rates.lock().unwrap().insert(dest.url.clone(), (r.rate_bps, Instant::now()));
        Ok(r)
    }
}

/// Bytes per second a timed upload to the destination agent achieves.
async fn measure(dest: &AgentClient) -> Result<LinkRate, String> {
    // Grow the upload until it takes long enough to say something about the link.
    let mut size = 4usize << 20;
    let mut sent = 0u64;
    loop {
        let body = vec![0x5au8; size];
        let t0 = Instant::now();
        dest.probe(body).await.map_err(|e| format!("link probe failed: {e}"))?;
        let secs = t0.elapsed().as_secs_f64();
        sent += size as u64;
        if secs >= 0.2 || size >= 256 << 20 {
            return Ok(LinkRate { rate_bps: size as f64 / secs, probe_bytes: sent });
        }
        size *= 4;
    }
}
