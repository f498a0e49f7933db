//! The model's plan for a migration request: the one place the API's request
//! becomes the model's input (the API crate does not know the model).

use pacer_api::{MigrateRequest, Strategy};
use pacer_model::predict::Strategy as ModelStrategy;
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
