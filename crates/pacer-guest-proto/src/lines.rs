//! What each kind of guest line carries: one struct per kind, fields named as on the wire.
//!
//! Fields the guest writes only in some cases (with a disk workload, after a disk sweep)
//! are `Option`s, absent from the JSON when `None`. Readers are lenient: a field missing
//! from a line (a guest built before it existed) reads as zero, empty or `false`, except
//! [`VerifyLine::disk_ok`], which reads as `true` (such a guest had no disk to lose).

use serde::{Deserialize, Serialize};

use crate::num;

/// The guest program has filled its working set and starts its workload.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ReadyLine {
    /// Workload in use: `idle` or `memwrite`.
    pub workload: String,
    /// Working set, MiB.
    pub wss_mib: u64,
    /// Memory write rate asked for, MB/s.
    #[serde(with = "num")]
    pub rate_mbps: f64,
    /// Share of the working set that is hot.
    #[serde(with = "num")]
    pub hot_fraction: f64,
    /// Share of the writes that go to the hot part.
    #[serde(with = "num")]
    pub hot_share: f64,
    /// Interval between status lines, ms.
    pub status_ms: u64,
    /// Pages in the working set (4 KiB each).
    pub pages: u64,
    /// Time taken to fill the working set, ms.
    pub fill_ms: u64,
    /// Time since the program started, ms.
    pub uptime_ms: u64,
    /// Path of the disk the disk workload writes (only with a disk workload, as are the
    /// other `disk_*` fields).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    /// Size of the disk device, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_dev_bytes: Option<u64>,
    /// Part of the disk written and checked, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_span_bytes: Option<u64>,
    /// Size of one disk write, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_bs: Option<u64>,
    /// Where disk writes go: `seq`, `uniform` or `hot`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_pattern: Option<String>,
    /// Disk write rate asked for, MB/s.
    #[serde(with = "num::opt", skip_serializing_if = "Option::is_none")]
    pub disk_rate_mbps: Option<f64>,
    /// Whether disk I/O bypasses the guest's page cache (`O_DIRECT`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_direct: Option<bool>,
    /// Whether the whole span is written once at the start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_fill: Option<bool>,
    /// The real application the guest runs (`redis`, `memcached`, `stress-ng`, `zstd`;
    /// only with `pacer.app`, as are the other `app_*` fields).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The application's data set, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_mib: Option<u64>,
    /// The rate the application's load aims at, MB/s written.
    #[serde(with = "num::opt", skip_serializing_if = "Option::is_none")]
    pub app_rate_mbps: Option<f64>,
}

/// What the guest's application is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppPhase {
    /// Starting (the program is launched, not answering yet).
    #[default]
    Start,
    /// Loading its data set.
    Fill,
    /// Under its load.
    Run,
    /// It died or stopped answering; the guest's error lines say why.
    Failed,
    /// A phase this crate does not know (a newer guest); written as `other`.
    #[serde(other)]
    Other,
}

impl AppPhase {
    /// The phase's word on the wire (`"run"`).
    pub fn as_str(self) -> &'static str {
        match self {
            AppPhase::Start => "start",
            AppPhase::Fill => "fill",
            AppPhase::Run => "run",
            AppPhase::Failed => "failed",
            AppPhase::Other => "other",
        }
    }
}

/// What the disk workload is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskPhase {
    /// No disk workload.
    #[default]
    None,
    /// Writing every block of the span once.
    Fill,
    /// Writing at its rate.
    Write,
    /// Filled, and no rate to write at.
    Idle,
    /// A phase this crate does not know (a newer guest); written as `other`.
    #[serde(other)]
    Other,
}

impl DiskPhase {
    /// The phase's word on the wire (`"fill"`).
    pub fn as_str(self) -> &'static str {
        match self {
            DiskPhase::None => "none",
            DiskPhase::Fill => "fill",
            DiskPhase::Write => "write",
            DiskPhase::Idle => "idle",
            DiskPhase::Other => "other",
        }
    }
}

/// Periodic progress: every `status_ms`, and on the `status` command.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusLine {
    /// Time since the program started, ms.
    pub uptime_ms: u64,
    /// Pages rewritten by the workload so far (not counting the initial fill).
    pub pages_written: u64,
    /// Memory write rate since the previous status line, MB/s (2 decimals).
    #[serde(with = "num")]
    pub write_mbps: f64,
    /// Corrupt pages found so far (write-path checks and sweeps).
    pub errors: u64,
    /// Workload in use: `idle` or `memwrite`.
    pub workload: String,
    /// Bytes written to the disk by the workload so far, the fill not counted (0 without a disk).
    pub disk_written_bytes: u64,
    /// Disk write rate since the previous status line, MB/s (2 decimals).
    #[serde(with = "num")]
    pub disk_write_mbps: f64,
    /// Disk errors so far: I/O errors and bad blocks found by sweeps.
    pub disk_errors: u64,
    /// What the disk workload is doing.
    pub disk_phase: DiskPhase,
    /// Bytes of the initial fill written so far (only with a disk workload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_fill_bytes: Option<u64>,
    /// Bytes the initial fill writes in all, 0 without a fill (only with a disk workload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_fill_total: Option<u64>,
    /// The real application the guest runs (only with `pacer.app`, as are the other
    /// `app_*` fields).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// What it is doing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_phase: Option<AppPhase>,
    /// Whether its processes are alive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_alive: Option<bool>,
    /// Operations its load has done so far (sets; zstd: rounds; stress-ng: 100 ms ticks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_ops: Option<u64>,
    /// Bytes its load wrote (values set, compressed output) since the previous status
    /// line, MB/s (2 decimals); not what the application's memory really takes.
    #[serde(with = "num::opt", skip_serializing_if = "Option::is_none")]
    pub app_write_mbps: Option<f64>,
}

/// The answer to `verify`: a sweep of the whole working set, and of the disk if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VerifyLine {
    /// Number of this sweep (1, 2, ...).
    pub seq: u64,
    /// Whether memory and disk hold exactly what was written (no error ever, sweeps and
    /// write-path checks included).
    pub ok: bool,
    /// Whether memory is intact (no error so far).
    pub mem_ok: bool,
    /// Whether the disk is intact (`true` without a disk).
    pub disk_ok: bool,
    /// Disk blocks checked by this sweep (0 without a disk).
    pub disk_blocks_checked: u64,
    /// Disk blocks found lost, torn or corrupted by this sweep.
    pub disk_bad_blocks: u64,
    /// Of those, blocks holding an older generation (lost writes). This and the following
    /// `disk_*` fields come only with an answer from the disk sweep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_stale_blocks: Option<u64>,
    /// Blocks not checked because this run never wrote them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_unknown_blocks: Option<u64>,
    /// First bad blocks (at most 8), by index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_first_bad: Option<Vec<u64>>,
    /// Reads that failed during the sweep.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_read_errors: Option<u64>,
    /// Time the disk sweep took, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_duration_ms: Option<u64>,
    /// Disk errors so far, this sweep included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_errors_total: Option<u64>,
    /// Pages checked (the whole working set).
    pub pages_checked: u64,
    /// Pages found bad by this sweep (then rewritten, so each is counted once).
    pub bad_pages: u64,
    /// First bad pages (at most 8), by index.
    pub first_bad: Vec<u64>,
    /// Of the bad pages, those holding an older generation (lost writes).
    pub stale_pages: u64,
    /// Time the memory sweep took, ms.
    pub mem_duration_ms: u64,
    /// Time the whole sweep took, ms.
    pub duration_ms: u64,
    /// Corrupt pages found so far, this sweep included.
    pub errors_total: u64,
    /// First pages found bad by the writer's read-before-write checks (at most 8).
    pub write_path_bad: Vec<u64>,
    /// The application checked (only with `pacer.app`, as are `app_ok` and `app_detail`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Whether the application is alive and answers with what was stored in it (`ok`
    /// covers it too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_ok: Option<bool>,
    /// What was checked, or what was wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_detail: Option<String>,
}

impl VerifyLine {
    /// Whether the application checked out: `true` when the guest runs none (or is
    /// older than applications).
    pub fn app_is_ok(&self) -> bool {
        self.app_ok.unwrap_or(true)
    }
}

impl Default for VerifyLine {
    /// An empty sweep of a guest without a disk: nothing checked, nothing wrong with the disk.
    fn default() -> Self {
        VerifyLine {
            seq: 0,
            ok: false,
            mem_ok: false,
            disk_ok: true,
            disk_blocks_checked: 0,
            disk_bad_blocks: 0,
            disk_stale_blocks: None,
            disk_unknown_blocks: None,
            disk_first_bad: None,
            disk_read_errors: None,
            disk_duration_ms: None,
            disk_errors_total: None,
            pages_checked: 0,
            bad_pages: 0,
            first_bad: Vec::new(),
            stale_pages: 0,
            mem_duration_ms: 0,
            duration_ms: 0,
            errors_total: 0,
            write_path_bad: Vec::new(),
            app: None,
            app_ok: None,
            app_detail: None,
        }
    }
}

/// The disk workload has written every block of its span once.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DiskFilledLine {
    /// Bytes written (the span).
    pub bytes: u64,
    /// Time the fill took, ms.
    pub fill_ms: u64,
    /// Fill rate, MB/s (2 decimals).
    #[serde(with = "num")]
    pub fill_mbps: f64,
}

/// Something went wrong; the message says what and what happens next.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorLine {
    /// What went wrong, for a person.
    pub message: String,
}
