//! Deciding whether KVM really runs a guest here: /dev/kvm can exist yet be unable
//! to run a stock kernel (a PVM host kernel, for one), so the probe boots one.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// Outcome of a KVM probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmProbe {
    /// A guest kernel printed its banner under KVM.
    Works,
    /// KVM is not usable, with the reason.
    Unusable(String),
}

/// Boots `kernel` under `-accel kvm` for at most `timeout` and reports whether the
/// guest kernel got as far as printing its version banner on the serial console.
pub async fn probe_kvm(qemu: &Path, kernel: Option<&Path>, timeout: Duration) -> KvmProbe {
    if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
        return KvmProbe::Unusable("/dev/kvm cannot be opened".into());
    }
    let Some(kernel) = kernel else {
        return KvmProbe::Unusable("no kernel to boot-test KVM with".into());
    };
    let mut child = match tokio::process::Command::new(qemu)
        .args(["-accel", "kvm", "-machine", "q35", "-m", "256M", "-nodefaults"])
        .args(["-display", "none", "-serial", "stdio", "-no-reboot", "-kernel"])
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return KvmProbe::Unusable(format!("cannot run {}: {e}", qemu.display())),
    };
    let mut out = child.stdout.take().expect("piped");
    let mut seen = Vec::new();
    let found = tokio::time::timeout(timeout, async {
        let mut buf = [0u8; 4096];
        loop {
            match out.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => {
                    seen.extend_from_slice(&buf[..n]);
                    if seen.windows(13).any(|w| w == b"Linux version") {
                        return true;
                    }
                }
            }
        }
    })
    .await
    .unwrap_or(false);
    let _ = child.kill().await;
    if found {
        KvmProbe::Works
    } else {
        KvmProbe::Unusable(format!(
            "a guest kernel printed nothing under KVM within {} s",
            timeout.as_secs()
        ))
    }
}
