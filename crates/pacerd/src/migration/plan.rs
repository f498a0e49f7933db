//! The model's plan for a migration request: the one place the API's request
//! becomes the model's input (the API crate does not know the model).

use pacer_api::{MigrateRequest, Strategy, StuckAdvice};
use pacer_model::predict::{Strategy as ModelStrategy, Stuck};
use pacer_model::Plan;

/// QEMU's default downtime limit (ms), used when the request sets none.
pub const DEFAULT_DOWNTIME_LIMIT_MS: u64 = 300;

/// The plan the model predicts and paces with.
pub fn model_plan(req: &MigrateRequest) -> Plan {
    Plan {
        strategy: match req.strategy {
            Strategy::PreCopy => ModelStrategy::PreCopy,
            Strategy::PostCopy => ModelStrategy::PostCopy { after_s: req.postcopy_after_s.unwrap_or(0.0) },
            Strategy::Hybrid => ModelStrategy::Hybrid,
            Strategy::StopAndCopy => ModelStrategy::StopAndCopy,
        },
        downtime_limit_ms: req.downtime_limit_ms.unwrap_or(DEFAULT_DOWNTIME_LIMIT_MS),
        bandwidth_cap_bps: req.bandwidth.map(|b| b as f64),
        auto_converge: req.auto_converge,
    }
}

/// The model's verdict on a pre-copy that does not converge, as the API says it.
pub fn advice(s: &Stuck) -> StuckAdvice {
    let ms = |x: f64| (x.max(0.0) * 1000.0).round() as u64;
    StuckAdvice {
        dirty_set_bytes: s.dirty_set_bytes.max(0.0) as u64,
        dirty_rate_bps: s.dirty_rate_bps,
        speed_bps: s.speed_bps,
        // In QEMU's own unit, rounded up to 10 ms.
        downtime_limit_ms: ((s.downtime_limit_s * 100.0).ceil() * 10.0) as u64,
        downtime_ms: ms(s.downtime_s),
        bandwidth_needed_bps: s.speed_needed_bps,
        postcopy_total_ms: ms(s.postcopy.total_s),
        auto_converge_total_ms: s.auto_converge.filter(|f| f.completes).map(|f| ms(f.total_s)),
    }
}

/// The API's view of rounds at the switch-over edge, for a downtime limit of `limit_ms`.
pub fn edge_advice(e: &pacer_model::predict::Edge, limit_ms: u64) -> pacer_api::EdgeAdvice {
    pacer_api::EdgeAdvice {
        missed_rounds: e.missed_rounds,
        round_ms: (e.round_s * 1000.0).round() as u64,
        least_left_bytes: e.least_left_bytes as u64,
        threshold_bytes: e.threshold_bytes as u64,
        downtime_limit_ms: ((e.limit_to_end_ms(limit_ms as f64) / 10.0).ceil() * 10.0) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacer_api::PeerRef;

    #[test]
    fn request_options_become_the_plan() {
        let peer = PeerRef { name: "h2".into(), url: "http://x:1".into(), token: "t".into() };
        let mut req = MigrateRequest::new(peer, Strategy::PostCopy);
        req.postcopy_after_s = Some(2.0);
        req.bandwidth = Some(1_000_000);
        let p = model_plan(&req);
        assert_eq!(p.strategy, ModelStrategy::PostCopy { after_s: 2.0 });
        assert_eq!((p.downtime_limit_ms, p.bandwidth_cap_bps), (300, Some(1e6)));
    }
}
