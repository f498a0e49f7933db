//! What the predictor is given: samples of a running migration, its plan, and what was
//! known of the guest beforehand.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::dirty::{DirtyError, DirtyModel};

/// Why a plan, prior or estimate request is unusable.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PredictError {
    /// The downtime limit is zero.
    #[error("invalid downtime limit {0} ms: must be at least 1 ms, e.g. 300")]
    InvalidDowntimeLimit(u64),
    /// The bandwidth cap is not a positive finite rate.
    #[error("invalid bandwidth cap {0} B/s: must be a positive rate, e.g. 125e6 for 1 Gbit/s")]
    InvalidBandwidthCap(f64),
    /// The post-copy delay is negative or not finite.
    #[error("invalid post-copy delay {0} s: must be a finite number of seconds >= 0")]
    InvalidPostcopyDelay(f64),
    /// Guest RAM is empty.
    #[error("invalid guest RAM size 0: must be positive, e.g. 1073741824 for 1 GiB")]
    InvalidRamSize,
    /// The zero-page fraction is outside [0, 1].
    #[error("invalid zero-page fraction {0}: must be in [0, 1], e.g. 0.5")]
    InvalidZeroFraction(f64),
    /// The link rate is not a positive finite rate.
    #[error("invalid link rate {0} B/s: must be a positive rate, e.g. 125e6 for 1 Gbit/s")]
    InvalidLinkRate(f64),
    /// The dirty-rate figures are unusable.
    #[error(transparent)]
    Dirty(#[from] DirtyError),
}

/// Where the migration stands, in the model's words (the QEMU side maps its
/// status words to these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// No memory migration yet (e.g. disks still mirroring).
    #[default]
    None,
    /// Memory migration is being set up.
    Setup,
    /// Pre-copy is running.
    Active,
    /// Post-copy is running: the guest runs at the destination.
    PostcopyActive,
    /// The guest is stopped for switch-over (`device`, `pre-switchover`).
    Switchover,
    /// Done: the guest runs at the destination.
    Completed,
    /// QEMU gave up.
    Failed,
    /// Cancelled.
    Cancelled,
    /// Any other state (paused post-copy, COLO, ...): no prediction.
    Other,
}

impl Status {
    /// Whether memory is moving in this state.
    pub fn is_transferring(self) -> bool {
        matches!(
            self,
            Status::Active | Status::PostcopyActive | Status::Switchover
        )
    }
}

/// Progress of the disk mirrors (`query-block-jobs`, summed over disks).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct DiskSample {
    /// Bytes the mirrors have to copy so far (grows as the guest writes).
    pub len: u64,
    /// Bytes copied so far.
    pub offset: u64,
    /// Whether every mirror has finished its bulk copy.
    pub ready: bool,
    /// Rate at which the guest dirties disk, bytes/s.
    pub dirty_rate_bps: f64,
}

/// One `query-migrate` reading (field names follow QEMU's `ram` section).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the migration (job) started.
    pub t_s: f64,
    /// Migration status.
    pub status: Status,
    /// Guest RAM in bytes.
    pub ram_total: u64,
    /// Bytes sent on the wire so far.
    pub transferred: u64,
    /// Bytes of pages still dirty (zero pages included).
    pub remaining: u64,
    /// Zero pages sent so far.
    pub duplicate_pages: u64,
    /// Normal (full) pages sent so far.
    pub normal_pages: u64,
    /// Bytes of normal pages sent so far.
    pub normal_bytes: u64,
    /// Pages dirtied per second over QEMU's last dirty-rate period (>= 1 s).
    pub dirty_pages_rate: u64,
    /// Target page size in bytes.
    pub page_size: u64,
    /// Number of dirty-log syncs so far (1 after setup).
    pub dirty_sync_count: u64,
    /// Throughput over QEMU's last 100 ms, Mbit/s.
    pub mbps: f64,
    /// Bytes sent while the guest was running at the source.
    pub precopy_bytes: u64,
    /// Disk mirror progress, if disks are copied too.
    pub disk: Option<DiskSample>,
    /// How much auto-converge throttles the guest's vCPUs (QEMU's `cpu-throttle-percentage` / 100).
    #[serde(default)]
    pub throttle: f64,
}

/// How the migration will be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Iterative pre-copy until the dirty set fits the downtime limit.
    #[default]
    PreCopy,
    /// Pre-copy, then post-copy `after_s` seconds after memory migration started.
    PostCopy {
        /// Seconds of pre-copy before the switch.
        after_s: f64,
    },
    /// Pre-copy, switching to post-copy when pre-copy stops converging.
    Hybrid,
    /// Pause the guest, copy everything, resume at the destination.
    StopAndCopy,
}

/// The migration's fixed settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Strategy.
    pub strategy: Strategy,
    /// QEMU's downtime-limit in ms.
    pub downtime_limit_ms: u64,
    /// QEMU's max-bandwidth in bytes/s, if capped.
    pub bandwidth_cap_bps: Option<f64>,
    /// QEMU's auto-converge: the guest's vCPUs are throttled while pre-copy falls behind.
    #[serde(default)]
    pub auto_converge: bool,
}

impl Default for Plan {
    /// Pre-copy with QEMU's default 300 ms downtime limit, uncapped.
    fn default() -> Self {
        Plan {
            strategy: Strategy::PreCopy,
            downtime_limit_ms: 300,
            bandwidth_cap_bps: None,
            auto_converge: false,
        }
    }
}

impl Plan {
    /// Checks that every field holds a usable value.
    pub fn validate(&self) -> Result<(), PredictError> {
        if self.downtime_limit_ms == 0 {
            return Err(PredictError::InvalidDowntimeLimit(0));
        }
        if let Some(cap) = self.bandwidth_cap_bps {
            if !(cap.is_finite() && cap > 0.0) {
                return Err(PredictError::InvalidBandwidthCap(cap));
            }
        }
        if let Strategy::PostCopy { after_s } = self.strategy {
            if !(after_s.is_finite() && after_s >= 0.0) {
                return Err(PredictError::InvalidPostcopyDelay(after_s));
            }
        }
        Ok(())
    }

    pub(super) fn downtime_limit_s(&self) -> f64 {
        self.downtime_limit_ms as f64 / 1000.0
    }
}

/// What is known about the guest before its migration starts.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Prior {
    /// The guest's dirtying, e.g. from `calc-dirty-rate` probes ([`DirtyModel::fit`]).
    pub dirty: Option<DirtyModel>,
    /// Expected fraction of zero pages in guest RAM.
    pub zero_fraction: Option<f64>,
    /// Expected link rate in bytes/s, used until the bandwidth is measured.
    pub link_bps: Option<f64>,
}

impl Prior {
    /// Checks that every field holds a usable value.
    pub fn validate(&self) -> Result<(), PredictError> {
        if let Some(z) = self.zero_fraction {
            if !(0.0..=1.0).contains(&z) {
                return Err(PredictError::InvalidZeroFraction(z));
            }
        }
        if let Some(l) = self.link_bps {
            if !(l.is_finite() && l > 0.0) {
                return Err(PredictError::InvalidLinkRate(l));
            }
        }
        if let Some(d) = self.dirty {
            DirtyModel::new(d.rate_bps, d.wss_bytes)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transferring_states() {
        assert!(Status::Active.is_transferring() && !Status::Setup.is_transferring());
    }

    #[test]
    fn plan_validation() {
        let bad = Plan {
            downtime_limit_ms: 0,
            ..Plan::default()
        };
        assert!(bad.validate().is_err());
        let e = Plan {
            bandwidth_cap_bps: Some(0.0),
            ..Plan::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("bandwidth cap"), "{e}");
    }
}
