//! QEMU's status words as enums: migration status (`query-migrate`), run state
//! (`query-status`) and block-job status (`query-block-jobs`).
//!
//! QEMU adds values over the versions (`postcopy-recover-setup` came in 9.1,
//! `wait-unplug` in 5.x): each enum keeps an unknown word as `Other(word)`
//! instead of failing, so a newer QEMU is reported, not refused.

use std::fmt;

/// Defines an enum of QAPI words with an `Other(String)` fallback, with
/// `as_str`, `Display`, `From<&str>` and serde as the word.
macro_rules! qapi_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $word:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A word this version of Pacer does not know (a newer QEMU).
            Other(String),
        }

        impl $name {
            /// QEMU's word for it.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $word,)+
                    $name::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($word => $name::$variant,)+
                    other => $name::Other(other.to_string()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Ok($name::from(s.as_ref()))
            }
        }
    };
}

qapi_enum! {
    /// `query-migrate` status (QAPI `MigrationStatus`).
    #[derive(Default)]
    MigrationStatus {
        /// No migration has run.
        #[default]
        None = "none",
        /// Setting up.
        Setup = "setup",
        /// Being cancelled.
        Cancelling = "cancelling",
        /// Cancelled: the guest still runs here.
        Cancelled = "cancelled",
        /// Pre-copy running.
        Active = "active",
        /// Post-copy running: the guest runs at the destination.
        PostcopyActive = "postcopy-active",
        /// Post-copy interrupted (link or destination lost): recoverable only by resuming.
        PostcopyPaused = "postcopy-paused",
        /// Setting up a post-copy recovery (QEMU 9.1).
        PostcopyRecoverSetup = "postcopy-recover-setup",
        /// Recovering post-copy.
        PostcopyRecover = "postcopy-recover",
        /// Done.
        Completed = "completed",
        /// Failed: see `error-desc`.
        Failed = "failed",
        /// COLO fault tolerance.
        Colo = "colo",
        /// Stopped before switch-over (capability `pause-before-switchover`).
        PreSwitchover = "pre-switchover",
        /// Sending device state, guest stopped.
        Device = "device",
        /// Waiting for unplug of failover devices.
        WaitUnplug = "wait-unplug",
    }
}

impl MigrationStatus {
    /// Pre-copy can still be cancelled with the guest intact here.
    pub fn is_precopy(&self) -> bool {
        matches!(self, MigrationStatus::Setup | MigrationStatus::Active | MigrationStatus::WaitUnplug)
    }

    /// Any post-copy state: the guest's state is split between the hosts.
    pub fn is_postcopy(&self) -> bool {
        matches!(
            self,
            MigrationStatus::PostcopyActive
                | MigrationStatus::PostcopyPaused
                | MigrationStatus::PostcopyRecoverSetup
                | MigrationStatus::PostcopyRecover
        )
    }

    /// The guest is stopped for switch-over.
    pub fn is_switchover(&self) -> bool {
        matches!(self, MigrationStatus::Device | MigrationStatus::PreSwitchover)
    }

    /// Still winding down after `migrate_cancel` (or not yet ended).
    pub fn is_settling(&self) -> bool {
        matches!(
            self,
            MigrationStatus::Cancelling | MigrationStatus::Setup | MigrationStatus::Active | MigrationStatus::Device
        )
    }
}

qapi_enum! {
    /// `query-status` run state (QAPI `RunState`).
    RunState {
        /// Debugger stop.
        Debug = "debug",
        /// Waiting for an incoming migration.
        Inmigrate = "inmigrate",
        /// Internal error.
        InternalError = "internal-error",
        /// I/O error on a disk.
        IoError = "io-error",
        /// Paused (`stop`, or `-S` at start).
        Paused = "paused",
        /// Finishing an outgoing migration.
        FinishMigrate = "finish-migrate",
        /// Created with `-S`, never run.
        Prelaunch = "prelaunch",
        /// Loading a snapshot.
        RestoreVm = "restore-vm",
        /// Running.
        Running = "running",
        /// Saving a snapshot.
        SaveVm = "save-vm",
        /// Guest shut down (with `-no-shutdown`).
        Shutdown = "shutdown",
        /// Guest suspended (S3).
        Suspended = "suspended",
        /// Watchdog fired.
        Watchdog = "watchdog",
        /// Guest panicked.
        GuestPanicked = "guest-panicked",
        /// COLO.
        Colo = "colo",
        /// After an outgoing migration completed: the guest lives elsewhere now.
        Postmigrate = "postmigrate",
    }
}

impl RunState {
    /// Still loading an incoming migration.
    pub fn is_loading(&self) -> bool {
        matches!(self, RunState::Inmigrate | RunState::Prelaunch | RunState::FinishMigrate | RunState::RestoreVm)
    }

    /// Stopped in a way `cont` resumes.
    pub fn is_resumable(&self) -> bool {
        matches!(self, RunState::Paused | RunState::Postmigrate | RunState::Prelaunch)
    }
}

qapi_enum! {
    /// A block job's state (QAPI `JobStatus`).
    #[derive(Default)]
    BlockJobStatus {
        /// Created, not started.
        Created = "created",
        /// Running.
        Running = "running",
        /// Paused.
        Paused = "paused",
        /// In sync (mirror): can be completed.
        Ready = "ready",
        /// Paused while ready.
        Standby = "standby",
        /// Waiting for other jobs of a transaction.
        Waiting = "waiting",
        /// Waiting to be finalized.
        Pending = "pending",
        /// Aborting.
        Aborting = "aborting",
        /// Ended: to be dismissed.
        Concluded = "concluded",
        /// Gone.
        #[default]
        Null = "null",
    }
}

impl BlockJobStatus {
    /// The job has ended (with or without an error).
    pub fn has_ended(&self) -> bool {
        matches!(self, BlockJobStatus::Concluded | BlockJobStatus::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_words_round_trip_and_unknown_ones_are_kept() {
        for w in ["none", "active", "postcopy-active", "pre-switchover", "completed"] {
            let s = MigrationStatus::from(w);
            assert!(!matches!(s, MigrationStatus::Other(_)), "{w}");
            assert_eq!(s.as_str(), w);
            let j = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<MigrationStatus>(&j).unwrap(), s);
        }
        let newer: MigrationStatus = serde_json::from_str("\"postcopy-teleport\"").unwrap();
        assert_eq!(newer, MigrationStatus::Other("postcopy-teleport".into()));
        assert_eq!(newer.to_string(), "postcopy-teleport");
        assert_eq!(RunState::from("postmigrate"), RunState::Postmigrate);
        assert!(RunState::from("postmigrate").is_resumable());
        assert!(RunState::from("inmigrate").is_loading());
        assert_eq!(BlockJobStatus::from("concluded"), BlockJobStatus::Concluded);
    }

    #[test]
    fn status_classes() {
        assert!(MigrationStatus::Active.is_precopy());
        assert!(MigrationStatus::PostcopyPaused.is_postcopy());
        assert!(MigrationStatus::Device.is_switchover());
        assert!(!MigrationStatus::Completed.is_settling());
    }
}
