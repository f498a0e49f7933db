//! Every route of the agent API, defined once: the agent's router mounts these
//! templates and the client fills them, so the two cannot drift apart.
//! Templates use axum's `{param}` syntax.

/// `GET`: the host and its capacity.
pub const HOST: &str = "/v1/host";
/// `GET`: list VMs; `POST`: start one from a spec.
pub const VMS: &str = "/v1/vms";
/// `POST`: take over a running QEMU by its QMP socket.
pub const VMS_ADOPT: &str = "/v1/vms/adopt";
/// `GET`: one VM; `DELETE`: stop it.
pub const VM: &str = "/v1/vms/{name}";
/// `GET ?bytes=N`: the end of the VM's serial console.
pub const VM_CONSOLE: &str = "/v1/vms/{name}/console";
/// `POST`: ask the guest program to check its memory (and disk).
pub const VM_VERIFY: &str = "/v1/vms/{name}/verify";
/// `POST`: start migrating the VM (answers with the job).
pub const VM_MIGRATE: &str = "/v1/vms/{name}/migrate";
/// `POST`: predict a migration without starting it.
pub const VM_PREDICT: &str = "/v1/vms/{name}/predict";
/// `POST`: predict a gang's migration (VMs of this host) without starting it.
pub const PREDICT_GANG: &str = "/v1/predict-gang";
/// `GET`: migration jobs.
pub const JOBS: &str = "/v1/jobs";
/// `GET`: one job.
pub const JOB: &str = "/v1/jobs/{id}";
/// `POST`: cancel a job (the VM stays where it is).
pub const JOB_CANCEL: &str = "/v1/jobs/{id}/cancel";
/// `POST`: change a job's finish target.
pub const JOB_TARGET: &str = "/v1/jobs/{id}/target";
/// `GET`: group migrations this agent coordinates; `POST`: submit one.
pub const GROUPS: &str = "/v1/groups";
/// `GET`: one group.
pub const GROUP: &str = "/v1/groups/{id}";
/// `POST`: cancel a group (members not yet switched over stay where they are).
pub const GROUP_CANCEL: &str = "/v1/groups/{id}/cancel";
/// `POST` raw bytes: the link probe (the answer says how many arrived).
pub const PROBE: &str = "/v1/probe";
/// `POST`: prepare an incoming VM (peer to peer).
pub const INCOMING: &str = "/v1/incoming";
/// `POST`: the incoming VM becomes this host's (peer to peer).
pub const INCOMING_COMMIT: &str = "/v1/incoming/{name}/commit";
/// `POST`: throw the incoming VM away (peer to peer).
pub const INCOMING_ABORT: &str = "/v1/incoming/{name}/abort";
/// `POST`: the source is still there (peer to peer).
pub const INCOMING_HEARTBEAT: &str = "/v1/incoming/{name}/heartbeat";
/// `GET`: Prometheus metrics (text format).
pub const METRICS: &str = "/metrics";

/// A template with its one `{param}` replaced by `value`, percent-encoded so a
/// strange name cannot reach another route.
pub fn fill(template: &str, value: &str) -> String {
    let (Some(open), Some(close)) = (template.find('{'), template.find('}')) else {
        return template.to_string();
    };
    let mut out = String::with_capacity(template.len() + value.len());
    out.push_str(&template[..open]);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(&template[close + 1..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_filled_and_names_escaped() {
        assert_eq!(fill(VM_MIGRATE, "vm-1"), "/v1/vms/vm-1/migrate");
        assert_eq!(fill(JOB, "job-0a"), "/v1/jobs/job-0a");
        assert_eq!(fill(VM, "../host"), "/v1/vms/..%2Fhost");
        assert_eq!(fill(HOST, "x"), "/v1/host");
    }
}
