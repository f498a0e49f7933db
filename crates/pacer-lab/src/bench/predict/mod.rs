//! `pacer-lab bench predict` answers "how good is Pacer's finish-time prediction?":
//! it migrates guests with different workloads over different links (some of
//! which change their rate mid-migration) and scores the total time Pacer
//! predicted, once a second, against the actual one, beside the naive estimate
//! (elapsed + bytes left / current rate) the agent records at the same moments;
//! how often Pacer's 80% band held the actual total and how wide it was; for a
//! migration that does not converge, how soon Pacer said so; and its prediction
//! before the start.
//!
//! Workloads (a 1 GiB guest, 256 MiB working set by default):
//! - `idle`: the working set filled once, then no writes;
//! - `steady`: uniform writes at `--write-rate`;
//! - `skewed`: the same rate, 80% of it to a hot 1% of the working set (the guest
//!   writes at a fixed rate, so "bursty" can only mean skewed in space);
//! - `phase`: the same writer, started paused and resumed (the guest's `resume`
//!   console command) at `--change-at` of the expected duration: the phase
//!   changes mid-migration;
//! - `disk`: a qcow2 disk the guest filled at boot and writes at
//!   `--disk-write-rate`, memory written at 5 MB/s;
//! - the convergence edge, `edge-0.8`, `edge-1.0`, `edge-1.2`: uniform writes at
//!   that ratio of the link's rate (after its change, if it changes) over half the
//!   guest's memory, far more than a downtime's worth: run over 200 Mbit/s
//!   (20, 25, 30 MB/s), and `edge-1.2` also over `falling` (1 Gbit/s, then
//!   200 Mbit/s: 30 MB/s converges on the fast link and does not once it falls);
//! - real applications, `redis`, `memcached`, `stress` (stress-ng), `zstd`, from the
//!   image's initrd-apps.img: the data set is `--wss`, the load aims at `--write-rate`
//!   (what each really dirties is in docs/guest.md); the guest program's own pages
//!   are then a 4 MiB idle canary.
//!
//! Links: 1 Gbit/s, 200 Mbit/s, 1 Gbit/s dropping to 300 Mbit/s (`changing`),
//! 200 Mbit/s rising to 1 Gbit/s (`rising`) and 1 Gbit/s dropping to 200 Mbit/s
//! (`falling`), each change at `--change-at` of the expected duration (the same
//! workload's run over 1 Gbit/s, the faster rate, so that the change comes early
//! in the run whichever way the link goes (phase: the idle guest's run over its
//! link); else Pacer's prediction before the
//! start, else one pass of the guest's memory over the starting link).
//!
//! A run whose migration is still going at its time limit is cancelled (the VM
//! stays at the source: checked) and recorded as `not-converged`; one that is
//! bound not to converge (dirty rate above the link) is cancelled 20 s after
//! Pacer said so, and has a short limit otherwise. Such a run is scored by when
//! Pacer first said "does not converge" after the condition became true.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use pacer_api::{JobStatus, PredictResponse, VmState};
use pacer_guest_proto::Command;
use serde::{Serialize, Serializer};
use serde_json::json;
use tokio::sync::watch;

use super::harness::{
    console_command, follow_migration_until, migration_limit, parse_prior_wait, plot_path,
    precopy_request, predict_before, prediction_chart_of, wait_prior, write_svg, Followed, Sample,
    LIMIT_BASE,
};
use super::plot::{Chart, Line, Rule, PALETTE};
use super::record::{MigrationRecord, Row};
use super::score::{
    band_score, errors_at_fractions, in_force_ms, is_stuck, naive_errors, pacer_estimates, pct,
    recognised_after, rel_error, BandPool, BandScore, Estimate, Verdict, BAND_COVERAGE, BAND_GOAL,
    FRACTIONS, GOAL_BEFORE_ERROR, GOAL_MAX_ERROR, GOAL_RECOGNISED_MS, NEVER_MS,
};
use super::{
    check_fits, fmt_total, median, parse_mib, parse_runs, parse_write_rate, prepare_out, push_list,
    stop_on_ctrl_c, unix_ms, write_results,
};
use crate::live::{guest_rates, room_for_disk, start_guest, GuestPlan, LiveBed};

mod driver;
mod runs;
mod scenarios;
mod summary;
mod table;
#[cfg(test)]
mod tests;

pub use driver::*;
pub use runs::*;
pub use scenarios::*;
pub use summary::*;
pub use table::*;
