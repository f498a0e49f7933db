//! Admission: the checks a migration request passes before anything changes.
//! Each is pure (facts in, verdict out), so every refusal and its words are
//! unit-tested without QEMU or peers; the driver gathers the facts.

use pacer_api::{HostInfo, MigrateRequest, Strategy};
use pacer_model::disk_regions::RegionWrites;
use pacer_model::predict::DiskState;
use pacer_model::{DirtyModel, MigrationState, Prior};
use pacer_qemu::RunState;

use crate::error::{AgentError, AgentResult};
use crate::migration::plan::model_plan;
use crate::vms::VmRecord;

/// Room kept free on the destination's disk beyond what the copies need.
pub const DISK_HEADROOM: u64 = 64 << 20;

/// Checks a migrate request for nonsense.
pub fn validate(req: &MigrateRequest) -> AgentResult<()> {
    if let Some(b) = req.bandwidth {
        if !(1_000..=125_000_000_000).contains(&b) {
            return Err(AgentError::Invalid(format!(
                "bandwidth {b} B/s is out of range: give 1 KB/s to 1 Tbit/s, or none for unlimited"
            )));
        }
    }
    if let Some(b) = req.disk_bandwidth {
        if !(1_000..=125_000_000_000).contains(&b) {
            return Err(AgentError::Invalid(format!(
                "disk bandwidth {b} B/s is out of range: give 1 KB/s to 1 Tbit/s, or none for unlimited"
            )));
        }
    }
    if let Some(d) = req.downtime_limit_ms {
        if !(1..=600_000).contains(&d) {
            return Err(AgentError::Invalid(format!(
                "downtime limit {d} ms is out of range: give 1 ms to 10 min"
            )));
        }
    }
    if let Some(s) = req.postcopy_after_s {
        if !s.is_finite() || !(0.0..=86_400.0).contains(&s) {
            return Err(AgentError::Invalid(format!(
                "post-copy delay {s} s is out of range: give 0 to 86400"
            )));
        }
        if req.strategy != Strategy::PostCopy {
            return Err(AgentError::Invalid("a post-copy delay only applies to --strategy post-copy".into()));
        }
    }
    if let Some(s) = req.finish_in_s {
        validate_finish_in(s)?;
    }
    if req.strict && req.finish_in_s.is_none() {
        return Err(AgentError::Invalid("--strict needs a finish target (--finish-in or --finish-at)".into()));
    }
    if let Some(m) = req.converge.max_downtime_ms {
        let limit = req.downtime_limit_ms.unwrap_or(crate::migration::plan::DEFAULT_DOWNTIME_LIMIT_MS);
        if !(limit..=600_000).contains(&m) {
            return Err(AgentError::Invalid(format!(
                "maximum downtime {m} ms is out of range: give the downtime limit ({limit} ms) to 10 min"
            )));
        }
    }
    if (req.converge.max_downtime_ms.is_some() || req.converge.allow_postcopy) && req.strategy == Strategy::StopAndCopy {
        return Err(AgentError::Invalid(
            "--max-downtime and --allow-postcopy apply to pre-copy; stop-and-copy always finishes".into(),
        ));
    }
    if let Some(s) = req.stall_timeout_s {
        if !s.is_finite() || !(1.0..=3600.0).contains(&s) {
            return Err(AgentError::Invalid(format!(
                "stall timeout {s} s is out of range: give 1 to 3600"
            )));
        }
    }
    Ok(())
}

/// Checks a finish target: seconds from now.
pub fn validate_finish_in(s: f64) -> AgentResult<()> {
    if !s.is_finite() || !(0.5..=86_400.0).contains(&s) {
        return Err(AgentError::Invalid(format!(
            "finish target {s} s from now is out of range: give 0.5 s to 1 day"
        )));
    }
    Ok(())
}

/// Checks that this VM, here, can be migrated to `dest_name`.
pub fn check_source(host: &str, rec: &VmRecord, state: &RunState, dest_name: &str) -> AgentResult<()> {
    let vm = &rec.name;
    if rec.spec.is_none() {
        return Err(AgentError::Unsupported(format!(
            "VM {vm:?} was adopted: Pacer does not know its full configuration, so it cannot \
             prepare a matching destination"
        )));
    }
    if dest_name == host {
        return Err(AgentError::Invalid(format!("VM {vm:?} already runs on {host}: choose another destination host")));
    }
    if *state != RunState::Running {
        return Err(AgentError::NotRunning { vm: vm.clone(), state: state.to_string() });
    }
    Ok(())
}

/// Checks that the destination has room for the VM's memory and disk copies.
pub fn check_destination(rec: &VmRecord, dest: &HostInfo, disk_bytes: u64) -> AgentResult<()> {
    if dest.memory_committed_mib + rec.memory_mib > dest.memory_capacity_mib {
        return Err(AgentError::InsufficientMemory(format!(
            "destination {} cannot take {} MiB: {} of {} MiB already given to VMs",
            dest.name, rec.memory_mib, dest.memory_committed_mib, dest.memory_capacity_mib
        )));
    }
    if disk_bytes > 0 && disk_bytes + DISK_HEADROOM > dest.disk_free_bytes {
        return Err(AgentError::InsufficientSpace(format!(
            "destination {} has {} MiB free for disks but this VM's disks need about {} MiB: \
             free space there or choose another host",
            dest.name,
            dest.disk_free_bytes >> 20,
            disk_bytes >> 20
        )));
    }
    Ok(())
}

/// What is known of the migration before it starts, for judging a target.
pub struct Before<'a> {
    /// Guest RAM, bytes.
    pub ram_bytes: u64,
    /// The guest as measured.
    pub prior: &'a Prior,
    /// Disk bytes to copy first.
    pub disk_bytes: u64,
    /// Where the guest writes on its disks, if measured.
    pub disk_regions: Option<std::sync::Arc<RegionWrites>>,
    /// The link's rate, bytes/s.
    pub link_bps: f64,
}

/// A finish target judged before the start.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetVerdict {
    /// Whether it can be met (None: the model could not tell).
    pub feasible: Option<bool>,
    /// What to tell the operator when it cannot.
    pub note: Option<String>,
}

/// Judges `target_s` (s from now) for a migration from `source` to `dest`: an
/// infeasible target is refused when the request is strict, else reported and
/// run flat out.
pub fn judge_target(req: &MigrateRequest, target_s: f64, b: &Before, source: &str) -> AgentResult<TargetVerdict> {
    let mut state = MigrationState::before(
        b.ram_bytes,
        b.prior.zero_fraction.unwrap_or(0.0),
        b.prior.dirty.unwrap_or(DirtyModel::IDLE),
        model_plan(req),
    );
    if b.disk_bytes > 0 {
        state.disk = Some(DiskState {
            bulk_left_bytes: b.disk_bytes as f64,
            dirty_set_bytes: None,
            dirty_rate_bps: b.disk_regions.as_ref().map_or(0.0, |r| r.write_rate_bps()),
            ready: false,
            regions: b.disk_regions.clone(),
            ..Default::default()
        });
    }
    let max = req.bandwidth.map_or(b.link_bps, |cap| (cap as f64).min(b.link_bps));
    let Ok(d) = pacer_model::pace(&state, max, target_s) else {
        return Ok(TargetVerdict { feasible: None, note: None });
    };
    if d.feasible {
        return Ok(TargetVerdict { feasible: Some(true), note: None });
    }
    let msg = format!(
        "finish target {target_s:.1} s cannot be met: the earliest feasible finish is {:.1} s \
         from now ({source} to {}, link {:.0} Mbit/s)",
        d.earliest_finish_s,
        req.destination.name,
        b.link_bps * 8.0 / 1e6
    );
    if req.strict {
        return Err(AgentError::TargetInfeasible(msg));
    }
    Ok(TargetVerdict { feasible: Some(false), note: Some(format!("{msg}; running flat out")) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacer_api::{PeerRef, VmOrigin, VmSpec};

    fn req() -> MigrateRequest {
        MigrateRequest::new(PeerRef { name: "h2".into(), url: "http://x:1".into(), token: "t".into() }, Strategy::PreCopy)
    }

    fn rec(spec: bool) -> VmRecord {
        VmRecord {
            name: "vm".into(),
            pid: 1,
            memory_mib: 1024,
            vcpus: 1,
            accel: "tcg".into(),
            origin: VmOrigin::Launched,
            spec: spec.then(|| VmSpec {
                name: "vm".into(),
                memory_mib: 1024,
                vcpus: 1,
                kernel: None,
                initrd: None,
                append: None,
                disks: vec![],
                workload: None,
                accel: Default::default(),
            }),
            qmp_socket: "/q".into(),
            serial_socket: None,
            console_log: None,
            dir: None,
        }
    }

    fn host(cap: u64, used: u64, disk_free: u64) -> HostInfo {
        HostInfo {
            name: "h2".into(),
            version: "0".into(),
            memory_capacity_mib: cap,
            memory_committed_mib: used,
            migration_address: "127.0.0.1".into(),
            kvm: None,
            disk_free_bytes: disk_free,
        }
    }

    #[test]
    fn nonsense_options_are_refused_with_the_range_to_use() {
        type Case = (fn(&mut MigrateRequest), &'static str);
        let cases: [Case; 6] = [
            (|r| r.bandwidth = Some(10), "give 1 KB/s to 1 Tbit/s"),
            (|r| r.downtime_limit_ms = Some(0), "give 1 ms to 10 min"),
            (|r| r.postcopy_after_s = Some(1.0), "only applies to --strategy post-copy"),
            (|r| r.finish_in_s = Some(f64::NAN), "give 0.5 s to 1 day"),
            (|r| r.strict = true, "--strict needs a finish target"),
            (|r| r.stall_timeout_s = Some(0.1), "give 1 to 3600"),
        ];
        for (tweak, words) in cases {
            let mut r = req();
            tweak(&mut r);
            let e = validate(&r).unwrap_err();
            assert!(e.to_string().contains(words), "{e}");
            assert_eq!(e.code(), pacer_api::ErrorCode::BadRequest);
        }
        assert!(validate(&req()).is_ok());
    }

    #[test]
    fn the_source_must_know_the_vm_run_it_and_not_be_the_destination() {
        let e = check_source("h1", &rec(false), &RunState::Running, "h2").unwrap_err();
        assert_eq!(e.code(), pacer_api::ErrorCode::Unsupported);
        let e = check_source("h2", &rec(true), &RunState::Running, "h2").unwrap_err();
        assert!(e.to_string().contains("already runs on h2"), "{e}");
        let e = check_source("h1", &rec(true), &RunState::Paused, "h2").unwrap_err();
        assert_eq!(e.to_string(), "VM \"vm\" is paused, not running: only a running VM can be migrated");
        assert!(check_source("h1", &rec(true), &RunState::Running, "h2").is_ok());
    }

    #[test]
    fn the_destination_must_have_room() {
        let e = check_destination(&rec(true), &host(2048, 1536, 0), 0).unwrap_err();
        assert_eq!(e.code(), pacer_api::ErrorCode::InsufficientMemory);
        let e = check_destination(&rec(true), &host(4096, 0, 100 << 20), 1 << 30).unwrap_err();
        assert!(e.to_string().contains("need about 1024 MiB"), "{e}");
        assert!(check_destination(&rec(true), &host(4096, 0, 2 << 30), 1 << 30).is_ok());
    }

    #[test]
    fn an_impossible_target_is_reported_or_refused_when_strict() {
        let prior = Prior { dirty: Some(DirtyModel::new(10e6, 256e6).unwrap()), zero_fraction: Some(0.5), link_bps: None };
        let b = Before { ram_bytes: 1 << 30, prior: &prior, disk_bytes: 0, disk_regions: None, link_bps: 125e6 };
        let mut r = req();
        let v = judge_target(&r, 0.5, &b, "h1").unwrap();
        assert_eq!(v.feasible, Some(false));
        assert!(v.note.unwrap().contains("running flat out"));
        assert_eq!(judge_target(&r, 60.0, &b, "h1").unwrap(), TargetVerdict { feasible: Some(true), note: None });
        r.strict = true;
        let e = judge_target(&r, 0.5, &b, "h1").unwrap_err();
        assert_eq!(e.code(), pacer_api::ErrorCode::TargetInfeasible);
        assert!(e.to_string().contains("h1 to h2, link 1000 Mbit/s"), "{e}");
    }
}
