//! A migration job's phase, and the transitions between phases.
//!
//! ```text
//! preparing ──► disk-bulk-copy ──► disk-sync ─┐
//!     │                                       ▼
//!     ├──────────────────────────────► waiting-to-start ─┐
//!     │                                                  ▼
//!     └─────────────────────────────────────────────► setup ──► bulk-copy ──► pre-copy
//!                                                        │          │   │         │
//!                                                        │          │   ▼         ▼
//!                                                        │          │ post-copy ◄─┘
//!                                                        ▼          ▼   │         │
//!                                                      switch-over ◄────┴─────────┘
//!                                                        │
//!                                                        ▼
//!                                                    verifying ──► done
//! ```
//! From every phase before `done` a job may go to `rolling-back` (a failure or
//! a cancel: the VM is made to run at the source again, the destination is
//! cleaned up) and from there to `ended`. `switch-over` may go straight to
//! `done` (nothing to verify). A phase never goes back.

use serde::{Deserialize, Serialize};

/// Where a migration job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobPhase {
    /// Checking and preparing the destination.
    #[default]
    Preparing,
    /// Copying disks front to back (mirror jobs not yet in sync).
    DiskBulkCopy,
    /// Disks in sync; the mirrors follow the guest's writes.
    DiskSync,
    /// Holding the start: even the gentlest pace would end before the target.
    WaitingToStart,
    /// QEMU is setting up the memory migration.
    Setup,
    /// Pre-copy's first round: every page once.
    BulkCopy,
    /// Pre-copy's later rounds: pages dirtied since.
    PreCopy,
    /// Post-copy: the guest runs at the destination, faulting pages in.
    PostCopy,
    /// The guest is stopped (or resuming) while the last state moves.
    SwitchOver,
    /// The guest program checks its memory at the destination.
    Verifying,
    /// Completed: the VM runs at the destination.
    Done,
    /// Failed or cancelled: making sure the VM runs at the source, cleaning up.
    RollingBack,
    /// Failed or cancelled, and rolled back.
    Ended,
}

impl JobPhase {
    /// The order phases come in; a job only moves forward in it.
    fn rank(self) -> u8 {
        use JobPhase::*;
        match self {
            Preparing => 0,
            DiskBulkCopy => 1,
            DiskSync => 2,
            WaitingToStart => 3,
            Setup => 4,
            BulkCopy => 5,
            PreCopy => 6,
            PostCopy => 7,
            SwitchOver => 8,
            Verifying => 9,
            Done => 10,
            RollingBack => 11,
            Ended => 12,
        }
    }

    /// Memory migration has started (the progress figures are memory's, not the disks').
    pub fn memory_started(self) -> bool {
        self.rank() >= JobPhase::Setup.rank() && self != JobPhase::Ended && self != JobPhase::RollingBack
    }

    /// The job has ended (`done` or `ended`).
    pub fn is_terminal(self) -> bool {
        matches!(self, JobPhase::Done | JobPhase::Ended)
    }

    /// Whether a job in this phase may move to `next` (staying is allowed).
    pub fn can_go_to(self, next: JobPhase) -> bool {
        use JobPhase::*;
        if self == next {
            return true;
        }
        match (self, next) {
            (Done | Ended, _) => false,
            (_, RollingBack) => true,
            (RollingBack, Ended) => true,
            (_, Ended) | (RollingBack, _) => false,
            // Post-copy ends with QEMU's completion, seen as switch-over.
            (PostCopy, SwitchOver) => true,
            (PostCopy, _) => false,
            // Only a switched-over guest is verified or done.
            (_, Verifying | Done) => matches!(self, SwitchOver | Verifying),
            (a, b) => b.rank() > a.rank(),
        }
    }

    /// Its word in the API (`disk-bulk-copy`).
    pub fn as_str(self) -> &'static str {
        use JobPhase::*;
        match self {
            Preparing => "preparing",
            DiskBulkCopy => "disk-bulk-copy",
            DiskSync => "disk-sync",
            WaitingToStart => "waiting-to-start",
            Setup => "setup",
            BulkCopy => "bulk-copy",
            PreCopy => "pre-copy",
            PostCopy => "post-copy",
            SwitchOver => "switch-over",
            Verifying => "verifying",
            Done => "done",
            RollingBack => "rolling-back",
            Ended => "ended",
        }
    }

    /// Human words for progress displays (`disk bulk copy`).
    pub fn words(self) -> &'static str {
        use JobPhase::*;
        match self {
            Preparing => "preparing",
            DiskBulkCopy => "disk bulk copy",
            DiskSync => "disk sync",
            WaitingToStart => "waiting to start",
            Setup => "setup",
            BulkCopy => "bulk copy",
            PreCopy => "pre-copy",
            PostCopy => "post-copy",
            SwitchOver => "switch-over",
            Verifying => "verifying",
            Done => "done",
            RollingBack => "rolling back",
            Ended => "ended",
        }
    }
}

impl std::fmt::Display for JobPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.words())
    }
}

#[cfg(test)]
mod tests {
    use super::JobPhase::{self, *};

    const ALL: [JobPhase; 13] = [
        Preparing, DiskBulkCopy, DiskSync, WaitingToStart, Setup, BulkCopy, PreCopy, PostCopy,
        SwitchOver, Verifying, Done, RollingBack, Ended,
    ];

    #[test]
    fn the_paths_of_each_strategy_are_allowed() {
        let paths: [&[JobPhase]; 5] = [
            &[Preparing, Setup, BulkCopy, PreCopy, SwitchOver, Verifying, Done],
            &[Preparing, DiskBulkCopy, DiskSync, WaitingToStart, Setup, BulkCopy, PostCopy, SwitchOver, Done],
            &[Preparing, Setup, BulkCopy, SwitchOver, Done],
            &[Preparing, DiskBulkCopy, RollingBack, Ended],
            &[Preparing, Setup, PreCopy, PostCopy, RollingBack, Ended],
        ];
        for p in paths {
            for w in p.windows(2) {
                assert!(w[0].can_go_to(w[1]), "{:?} -> {:?}", w[0], w[1]);
            }
        }
    }

    #[test]
    fn no_phase_goes_back_and_terminal_phases_stay() {
        for a in ALL {
            for b in ALL {
                if a.can_go_to(b) && a != b {
                    assert!(b.rank() > a.rank(), "{a:?} -> {b:?}");
                }
            }
            assert!(!Done.can_go_to(a) || a == Done);
            assert!(!Ended.can_go_to(a) || a == Ended);
        }
        assert!(!PreCopy.can_go_to(Done), "done only after switch-over");
        assert!(!PostCopy.can_go_to(PreCopy));
        assert!(!RollingBack.can_go_to(Done));
    }

    #[test]
    fn phases_serialize_in_kebab_case() {
        assert_eq!(serde_json::to_string(&DiskBulkCopy).unwrap(), "\"disk-bulk-copy\"");
        assert_eq!(DiskBulkCopy.to_string(), "disk bulk copy");
        for p in ALL {
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{}\"", p.as_str()));
        }
    }
}
