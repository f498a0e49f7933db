//! What a migration ended with, and the accounting of its result: bytes per
//! phase, total time, and downtime — measured from when the guest stopped to
//! when it runs at the destination, correcting what QEMU reports where QEMU is
//! known to be wrong. Pure: figures in, result out.

use std::time::Duration;

use pacer_api::{JobStatus, MigrateRequest, MigrationResult};
use pacer_qemu::migration::MigrationInfo;

/// How the memory phase of a migration ended.
#[derive(Debug)]
pub enum Outcome {
    /// QEMU completed; with its final figures and when post-copy began (s since
    /// the job started), if it did.
    Completed(Box<MigrationInfo>, Option<f64>),
    /// Failed, with the reason.
    Failed(String),
    /// Cancelled by request (or by the agent stopping), with the reason.
    Cancelled(String),
}

/// A result for a migration that has not got anywhere yet (failed, until it does).
pub fn new_result(vm: &str, req: &MigrateRequest, source: &str) -> MigrationResult {
    MigrationResult {
        status: JobStatus::Failed,
        vm: vm.to_string(),
        strategy: req.strategy,
        total_time_ms: 0,
        downtime_ms: None,
        bytes_transferred: 0,
        source: source.to_string(),
        destination: req.destination.name.clone(),
        vm_location: source.to_string(),
        reason: None,
        qemu_total_time_ms: None,
        integrity: None,
        rounds: 0,
        precopy_bytes: 0,
        downtime_bytes: 0,
        postcopy_bytes: 0,
        memory_bytes: 0,
        disk_bytes: 0,
        probe_bytes: 0,
        predictions: Vec::new(),
        target: None,
        converge_steps: Vec::new(),
        relay: None,
    }
}

/// When the end of a completed migration happened (times since the job started).
#[derive(Debug, Clone, Copy)]
pub struct Ending {
    /// QEMU reported `completed`.
    pub completed_at: Duration,
    /// The destination said the guest runs there.
    pub running_at: Duration,
    /// Stop-and-copy: when the guest was stopped, before the copy.
    pub stopped_at: Option<Duration>,
    /// When post-copy began (s).
    pub postcopy_at_s: Option<f64>,
    /// Disks were copied: the destination resumes only after dropping its exports.
    pub with_disks: bool,
    /// The stream went through the relays: QEMU's "completed" means the source
    /// relay has the bytes, not that the destination does.
    pub relayed: bool,
    /// The source QEMU's STOP event of this migration, µs since the epoch.
    pub stopped_unix_us: Option<u64>,
    /// The destination QEMU's RESUME event, µs since the epoch (its host's clock).
    pub resumed_unix_us: Option<u64>,
}

/// Fills in a completed migration's figures. Returns a note when QEMU's own
/// downtime figure was corrected.
pub fn account_completed(r: &mut MigrationResult, info: &MigrationInfo, disk_bytes: u64, e: &Ending) -> Option<String> {
    let ram = info.ram();
    r.memory_bytes = ram.transferred;
    r.disk_bytes = disk_bytes;
    r.bytes_transferred = r.memory_bytes + r.disk_bytes;
    r.rounds = ram.dirty_sync_count;
    r.precopy_bytes = ram.precopy_bytes;
    r.downtime_bytes = ram.downtime_bytes;
    r.postcopy_bytes = ram.postcopy_bytes;
    r.qemu_total_time_ms = info.total_time;
    r.total_time_ms = e.running_at.as_millis() as u64;
    let (downtime, note) = downtime_ms(info.downtime, e);
    r.downtime_ms = downtime;
    note
}

/// The guest's downtime, and a note when QEMU's figure was replaced.
pub fn downtime_ms(qemu_downtime: Option<u64>, e: &Ending) -> (Option<u64>, Option<String>) {
    // Measured the same way for every strategy and path: from the source's stop to
    // the destination's resume, as QEMU stamped the two events. (Hosts' clocks are
    // taken to agree to a millisecond or so, as NTP keeps them.)
    if let (Some(s), Some(r)) = (e.stopped_unix_us, e.resumed_unix_us) {
        if r >= s {
            return (Some((r - s) / 1000), None);
        }
    }
    if let Some(t0) = e.stopped_at {
        // Stop-and-copy: the guest was stopped from the start of the copy.
        return (Some((e.running_at.saturating_sub(t0)).as_millis() as u64), None);
    }
    if e.with_disks || e.relayed {
        // A storage target resumes only once its exports are gone, and a relayed
        // stream is still on its way when QEMU says completed: the guest stays
        // stopped until the destination says it runs.
        let after = e.running_at.saturating_sub(e.completed_at).as_millis() as u64;
        return (qemu_downtime.map(|d| d + after), None);
    }
    match (qemu_downtime, e.postcopy_at_s) {
        // QEMU 10 keeps a post-copy switch's downtime only if it is at least 1 ms;
        // otherwise it reports the whole post-copy phase.
        (Some(d), Some(pc)) if d >= 100 && d as f64 >= 0.8 * (e.completed_at.as_secs_f64() - pc) * 1000.0 => (
            Some(1),
            Some(format!(
                "QEMU reported the whole post-copy phase ({d} ms) as downtime: its switch-over took \
                 under 1 ms; reporting 1 ms"
            )),
        ),
        (d, _) => (d, None),
    }
}

/// The reason a failed or cancelled migration gives, saying where the VM is.
pub fn rollback_reason(reason: &str, still_here: &Result<(), String>, host: &str) -> String {
    match still_here {
        Ok(()) => format!("{reason}; the VM keeps running on {host}"),
        Err(e) => format!("{reason}; WARNING: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacer_qemu::migration::RamStats;

    fn ending(completed_ms: u64, running_ms: u64) -> Ending {
        Ending {
            completed_at: Duration::from_millis(completed_ms),
            running_at: Duration::from_millis(running_ms),
            stopped_at: None,
            postcopy_at_s: None,
            with_disks: false,
            relayed: false,
            stopped_unix_us: None,
            resumed_unix_us: None,
        }
    }

    #[test]
    fn precopy_downtime_is_qemus() {
        assert_eq!(downtime_ms(Some(280), &ending(9_000, 9_050)), (Some(280), None));
    }

    #[test]
    fn stamped_stop_and_resume_give_the_downtime_whatever_the_path() {
        let stamped = |e: Ending| Ending { stopped_unix_us: Some(1_000_000), resumed_unix_us: Some(1_345_600), ..e };
        assert_eq!(downtime_ms(Some(280), &stamped(ending(9_000, 9_050))), (Some(345), None));
        assert_eq!(downtime_ms(Some(280), &stamped(Ending { relayed: true, ..ending(9_000, 9_500) })).0, Some(345));
        // A resume stamped before the stop (a clock gone back) is not believed.
        let e = Ending { resumed_unix_us: Some(900_000), ..stamped(ending(9_000, 9_050)) };
        assert_eq!(downtime_ms(Some(280), &e).0, Some(280));
    }

    #[test]
    fn stop_and_copy_downtime_runs_from_the_stop() {
        let e = Ending { stopped_at: Some(Duration::from_millis(200)), ..ending(5_400, 5_500) };
        assert_eq!(downtime_ms(Some(5_100), &e).0, Some(5_300));
    }

    #[test]
    fn through_a_relay_the_downtime_runs_to_the_destinations_resume() {
        let e = Ending { relayed: true, ..ending(20_000, 20_120) };
        assert_eq!(downtime_ms(Some(300), &e).0, Some(420));
    }

    #[test]
    fn with_disks_the_guest_waits_for_the_exports_to_go() {
        let e = Ending { with_disks: true, ..ending(20_000, 20_120) };
        assert_eq!(downtime_ms(Some(300), &e).0, Some(420));
    }

    #[test]
    fn qemu_10_postcopy_downtime_quirk_is_corrected() {
        // Switched at 1.5 s, completed at 5.5 s; QEMU says 4 s of downtime.
        let e = Ending { postcopy_at_s: Some(1.5), ..ending(5_500, 5_520) };
        let (d, note) = downtime_ms(Some(4_000), &e);
        assert_eq!(d, Some(1));
        assert!(note.unwrap().contains("under 1 ms"));
        // A real post-copy switch figure stays.
        assert_eq!(downtime_ms(Some(3), &e), (Some(3), None));
    }

    #[test]
    fn a_completed_result_adds_memory_and_disk_bytes() {
        let peer = pacer_api::PeerRef { name: "h2".into(), url: "u".into(), token: "t".into() };
        let req = MigrateRequest::new(peer, pacer_api::Strategy::PreCopy);
        let mut r = new_result("vm", &req, "h1");
        assert_eq!((r.status, r.vm_location.as_str()), (JobStatus::Failed, "h1"));
        let info = MigrationInfo {
            downtime: Some(250),
            total_time: Some(8_000),
            ram: Some(RamStats { transferred: 900, dirty_sync_count: 7, precopy_bytes: 800, downtime_bytes: 100, ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(account_completed(&mut r, &info, 100, &ending(8_100, 8_200)), None);
        assert_eq!((r.bytes_transferred, r.memory_bytes, r.disk_bytes, r.rounds), (1000, 900, 100, 7));
        assert_eq!((r.total_time_ms, r.downtime_ms, r.qemu_total_time_ms), (8_200, Some(250), Some(8_000)));
    }

    #[test]
    fn rollback_says_where_the_vm_is() {
        assert_eq!(rollback_reason("cancelled", &Ok(()), "h1"), "cancelled; the VM keeps running on h1");
        assert!(rollback_reason("x", &Err("split".into()), "h1").contains("WARNING: split"));
    }
}
