//! `pacer predict VM VM... --to HOST [--dedup]`: a gang's migration predicted before
//! anything moves. Each source host's agent predicts the VMs it holds (they share
//! its link to the destination and, with dedup, its relay); hosts are independent.

use anyhow::{bail, Result};
use pacer_api::{PeerRef, PredictGangRequest, PredictGangResponse, Strategy};
use pacer_model::format_bytes;

use crate::hosts::Hosts;

/// What to predict.
#[derive(Debug, Clone)]
pub struct GangAsk {
    /// The VMs, wherever they are.
    pub vms: Vec<String>,
    /// Destination host.
    pub to: String,
    /// Strategy for every VM.
    pub strategy: Strategy,
    /// Per-VM bandwidth cap, bytes/s.
    pub bandwidth: Option<u64>,
    /// Through the relays with dedup.
    pub dedup: bool,
}

/// Asks each source host for its part: `(source host, its prediction)`, hosts in the
/// order their first VM was named.
pub async fn predict(hosts: &Hosts, ask: &GangAsk) -> Result<Vec<(String, PredictGangResponse)>> {
    let mut by_host: Vec<(String, Vec<String>)> = Vec::new();
    for vm in &ask.vms {
        let (src, _) = hosts.locate(vm).await?;
        if src == ask.to {
            bail!("VM {vm:?} is already on {}: name VMs on other hosts", ask.to);
        }
        match by_host.iter_mut().find(|(h, _)| *h == src) {
            Some((_, v)) if v.contains(vm) => bail!("VM {vm:?} is named twice: name each VM once"),
            Some((_, v)) => v.push(vm.clone()),
            None => by_host.push((src, vec![vm.clone()])),
        }
    }
    let dest = hosts.get(&ask.to)?;
    let destination = PeerRef { name: dest.name.clone(), url: dest.peer_url().into(), token: dest.token.clone() };
    let mut out = Vec::new();
    for (src, vms) in by_host {
        let req = PredictGangRequest {
            vms,
            destination: destination.clone(),
            strategy: ask.strategy,
            bandwidth: ask.bandwidth,
            dedup: ask.dedup,
            copy_storage: pacer_api::CopyStorage::All,
        };
        let p = hosts.client(&src)?.predict_gang(&req).await?;
        out.push((src, p));
    }
    Ok(out)
}

fn secs(ms: Option<u64>) -> String {
    ms.map(|m| format!("{:.1} s", m as f64 / 1000.0)).unwrap_or_else(|| "never".into())
}

/// The prediction in words and a table per source host.
pub fn render(to: &str, parts: &[(String, PredictGangResponse)]) -> String {
    let mut s = String::new();
    for (src, p) in parts {
        let how = if p.dedup { "through the relays with dedup" } else { "directly" };
        match p.total_ms {
            Some(_) => s += &format!(
                "gang of {} VMs {src} -> {to} {how}: would take {} ({}-{}), {} on the link for {} of QEMU streams\n",
                p.vms.len(),
                secs(p.total_ms),
                secs(p.low_ms),
                secs(p.high_ms),
                p.wire_bytes.map(format_bytes).unwrap_or_default(),
                p.stream_bytes.map(format_bytes).unwrap_or_default(),
            ),
            None => s += &format!(
                "gang of {} VMs {src} -> {to} {how}: would NOT finish: pre-copy does not converge for {} at their share of the link\n",
                p.vms.len(),
                p.not_converging.join(", ")
            ),
        }
        if let Some(w) = &p.why_direct {
            s += &format!("  dedup not used: {w}\n");
        }
        s += &format!(
            "  link {:.0} Mbit/s; {} of non-zero memory holds {} of distinct content ({:.0}% copies){}\n",
            p.link_bps * 8.0 / 1e6,
            format_bytes(p.nonzero_bytes),
            format_bytes(p.distinct_bytes),
            if p.nonzero_bytes > 0 { 100.0 * (1.0 - p.distinct_bytes as f64 / p.nonzero_bytes as f64) } else { 0.0 },
            if p.sampled_one_in > 1 { format!(", counted on one content in {}", p.sampled_one_in) } else { String::new() }
        );
        s += &format!(
            "  {:<12} {:>9} {:>9} {:>10} {:>10} {:>8} {:>10}\n",
            "VM", "ends", "downtime", "stream", "link", "shared", "dirties"
        );
        for v in &p.vms {
            s += &format!(
                "  {:<12} {:>9} {:>9} {:>10} {:>10} {:>7.0}% {:>10}\n",
                v.vm,
                secs(v.total_ms),
                v.downtime_ms.map(|d| format!("{d} ms")).unwrap_or_else(|| "-".into()),
                v.stream_bytes.map(format_bytes).unwrap_or_else(|| "-".into()),
                v.wire_bytes.map(format_bytes).unwrap_or_else(|| "-".into()),
                v.shared_fraction * 100.0,
                pacer_model::format_rate(v.dirty_rate_bps),
            );
        }
        for n in &p.notes {
            s += &format!("  note: {n}\n");
        }
    }
    s
}
