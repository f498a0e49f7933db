//! VM specs: checks before anything is started, and the QEMU launch
//! configuration a spec makes.

use std::path::{Path, PathBuf};

use pacer_api::VmSpec;
use pacer_qemu::{Accel, LaunchConfig, VmPaths};

use crate::error::{AgentError, AgentResult};

/// Largest VM memory accepted (MiB): anything above is a typo.
const MAX_MEMORY_MIB: u64 = 4 * 1024 * 1024;

/// Checks a VM name: 1-32 of [A-Za-z0-9_-], not starting with '-'.
pub fn validate_name(name: &str) -> AgentResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(AgentError::Invalid(format!(
            "invalid VM name {name:?}: use 1-32 letters, digits, '-' or '_'"
        )))
    }
}

/// Checks a spec for nonsense before anything is started.
pub fn validate_spec(spec: &VmSpec) -> AgentResult<()> {
    validate_name(&spec.name)?;
    if spec.memory_mib < 64 || spec.memory_mib > MAX_MEMORY_MIB {
        return Err(AgentError::Invalid(format!(
            "memory {} MiB is out of range: give 64 MiB to 4 TiB (e.g. --memory 1G)",
            spec.memory_mib
        )));
    }
    if spec.vcpus == 0 || spec.vcpus > 256 {
        return Err(AgentError::Invalid(format!(
            "vcpus {} is out of range: give 1 to 256",
            spec.vcpus
        )));
    }
    if spec.kernel.is_none() && spec.disks.is_empty() {
        return Err(AgentError::Invalid(
            "the VM has nothing to boot: give a kernel (and initrd) or a disk".into(),
        ));
    }
    if spec.disks.len() > 16 {
        return Err(AgentError::Invalid("at most 16 disks per VM".into()));
    }
    let files = [("kernel", spec.kernel.as_ref()), ("initrd", spec.initrd.as_ref())]
        .into_iter()
        .chain(spec.disks.iter().map(|d| ("disk", Some(d))));
    for (what, p) in files {
        if let Some(p) = p {
            if !Path::new(p).is_file() {
                return Err(AgentError::Invalid(format!(
                    "{what} {p:?} does not exist on host (paths are read by the agent)"
                )));
            }
        }
    }
    if let Some(w) = &spec.workload {
        if w.kind != "idle" && w.kind != "memwrite" {
            return Err(AgentError::Invalid(format!(
                "unknown workload {:?}: use idle or memwrite",
                w.kind
            )));
        }
        if w.wss_mib == 0 || w.wss_mib + 48 > spec.memory_mib {
            return Err(AgentError::Invalid(format!(
                "working set {} MiB does not fit in {} MiB of memory: leave at least 48 MiB \
                 for the guest kernel",
                w.wss_mib, spec.memory_mib
            )));
        }
        if !w.rate_mbps.is_finite() || w.rate_mbps < 0.0 || w.rate_mbps > 100_000.0 {
            return Err(AgentError::Invalid(format!(
                "write rate {} MB/s is out of range: give 0 to 100000",
                w.rate_mbps
            )));
        }
        for (what, f) in [("hot fraction", w.hot_fraction), ("hot share", w.hot_share)] {
            if !f.is_finite() || !(0.0..=1.0).contains(&f) {
                return Err(AgentError::Invalid(format!(
                    "{what} {f} is out of range: give 0 to 1"
                )));
            }
        }
        if let Some(a) = &w.app {
            a.check().map_err(AgentError::Invalid)?;
            let need = a.memory_mib() + w.wss_mib + 48;
            if need > spec.memory_mib {
                return Err(AgentError::Invalid(format!(
                    "application {} with a {} MiB data set needs about {need} MiB of guest \
                     memory ({} MiB given): give more memory or a smaller data set",
                    a.kind, a.mib, spec.memory_mib
                )));
            }
        }
    }
    Ok(())
}

/// A disk image's facts, if it is one Pacer supports (raw or qcow2).
pub async fn disk_info(path: &str) -> AgentResult<pacer_qemu::image::ImageInfo> {
    let info = pacer_qemu::image::image_info(Path::new(path))
        .await
        .map_err(|e| AgentError::Invalid(format!("disk {path:?}: {e}")))?;
    if info.format != "raw" && info.format != "qcow2" {
        return Err(AgentError::Invalid(format!(
            "disk {path:?} is {}: Pacer supports raw and qcow2 (convert with qemu-img convert)",
            info.format
        )));
    }
    Ok(info)
}

/// The format of each disk.
pub async fn disk_formats(spec: &VmSpec) -> AgentResult<Vec<String>> {
    let mut out = Vec::new();
    for d in &spec.disks {
        out.push(disk_info(d).await?.format);
    }
    Ok(out)
}

/// The QEMU launch configuration for a spec, with its runtime files in `dir`.
pub fn launch_config(
    qemu: &Path,
    dir: &Path,
    spec: &VmSpec,
    formats: &[String],
    accel: Accel,
    incoming: bool,
    start_paused: bool,
) -> LaunchConfig {
    let mut append = String::from("console=ttyS0 panic=-1");
    if let Some(w) = &spec.workload {
        append.push(' ');
        append.push_str(&w.kernel_args());
    }
    if let Some(a) = &spec.append {
        append.push(' ');
        append.push_str(a);
    }
    LaunchConfig {
        qemu: qemu.to_path_buf(),
        name: spec.name.clone(),
        memory_mib: spec.memory_mib,
        vcpus: spec.vcpus,
        accel,
        kernel: spec.kernel.as_ref().map(PathBuf::from),
        initrd: spec.initrd.as_ref().map(PathBuf::from),
        append: spec.kernel.as_ref().map(|_| append),
        disks: spec.disks.iter().cloned().map(PathBuf::from).zip(formats.iter().cloned()).collect(),
        paths: VmPaths::in_dir(dir),
        incoming,
        start_paused,
    }
}

