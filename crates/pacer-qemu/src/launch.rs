//! Building QEMU command lines and starting QEMU detached from the agent, so a VM
//! outlives the agent that launched it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Which accelerator QEMU runs the guest with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl Accel {
    /// QEMU's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Everything needed to start one QEMU process.
#[derive(Debug, Clone)]
pub struct LaunchConfig {
    /// QEMU binary.
    pub qemu: PathBuf,
    /// VM name.
    pub name: String,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Accelerator (already resolved from `auto`).
    pub accel: Accel,
    /// Direct kernel boot: bzImage.
    pub kernel: Option<PathBuf>,
    /// Direct kernel boot: initramfs.
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub append: Option<String>,
    /// Disk images (virtio-blk), with their format (`raw` or `qcow2`).
    pub disks: Vec<(PathBuf, String)>,
    /// Runtime files of this VM.
    pub paths: VmPaths,
    /// Start as a migration target (`-incoming defer`).
    pub incoming: bool,
    /// Do not run the guest until `cont` (`-S`): a storage-migration target must
    /// drop its NBD exports before the guest writes to its disks.
    pub start_paused: bool,
}

/// The runtime files of one VM, all under one directory.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct VmPaths {
    /// QMP socket.
    pub qmp: PathBuf,
    /// Serial console socket (read and write).
    pub serial: PathBuf,
    /// Everything the serial console printed.
    pub console_log: PathBuf,
    /// QEMU's pid file.
    pub pidfile: PathBuf,
    /// QEMU's own log (errors before and after daemonizing).
    pub qemu_log: PathBuf,
}

impl VmPaths {
    /// The standard layout inside `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        VmPaths {
            qmp: dir.join("qmp.sock"),
            serial: dir.join("serial.sock"),
            console_log: dir.join("console.log"),
            pidfile: dir.join("qemu.pid"),
            qemu_log: dir.join("qemu.log"),
        }
    }
}

/// Errors starting QEMU.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// QEMU could not be executed.
    #[error("cannot run {qemu}: {source} (install qemu-system-x86 or pass --qemu)")]
    Spawn { qemu: PathBuf, source: std::io::Error },
    /// QEMU exited with an error while starting.
    #[error("QEMU failed to start: {0}")]
    Failed(String),
    /// Files could not be prepared.
    #[error("cannot prepare VM files: {0}")]
    Io(#[from] std::io::Error),
}

impl LaunchConfig {
    /// The argument vector (without the binary).
    pub fn args(&self) -> Vec<String> {
        let p = &self.paths;
        let mut a: Vec<String> = vec![
            "-name".into(),
            format!("guest={},process=qemu-{}", self.name, self.name),
            "-machine".into(),
            "q35".into(),
            "-accel".into(),
            self.accel.as_str().into(),
            "-cpu".into(),
            if self.accel == Accel::Kvm { "host".into() } else { "max".into() },
            "-m".into(),
            format!("{}M", self.memory_mib),
            "-smp".into(),
            self.vcpus.to_string(),
            "-nodefaults".into(),
            "-no-user-config".into(),
            "-display".into(),
            "none".into(),
            "-chardev".into(),
            format!(
                "socket,id=ser0,path={},server=on,wait=off,logfile={},logappend=on",
                p.serial.display(),
                p.console_log.display()
            ),
            "-serial".into(),
            "chardev:ser0".into(),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", p.qmp.display()),
            "-pidfile".into(),
            p.pidfile.display().to_string(),
            "-D".into(),
            p.qemu_log.display().to_string(),
            "-daemonize".into(),
        ];
        if let Some(k) = &self.kernel {
            a.extend(["-kernel".into(), k.display().to_string()]);
        }
        if let Some(i) = &self.initrd {
            a.extend(["-initrd".into(), i.display().to_string()]);
        }
        if let Some(app) = &self.append {
            a.extend(["-append".into(), app.clone()]);
        }
        for (i, (path, format)) in self.disks.iter().enumerate() {
            a.extend([
                "-blockdev".into(),
                format!(
                    "driver=file,filename={},node-name=file{i},cache.direct=off",
                    path.display()
                ),
                "-blockdev".into(),
                format!("driver={format},file=file{i},node-name={}", disk_node(i)),
                "-device".into(),
                format!("virtio-blk-pci,drive=disk{i},id=vblk{i},serial=pacer-disk{i}"),
            ]);
        }
        if self.incoming {
            a.extend(["-incoming".into(), "defer".into()]);
        }
        if self.start_paused {
            a.push("-S".into());
        }
        a
    }

    /// Starts QEMU detached (it daemonizes and is re-parented to init) and returns its pid.
    pub async fn launch(&self) -> Result<i32, LaunchError> {
        for f in [&self.paths.qmp, &self.paths.serial, &self.paths.pidfile] {
            let _ = std::fs::remove_file(f);
        }
        let mut cmd = tokio::process::Command::new(&self.qemu);
        cmd.args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false);
        // A new session: signals to the agent's process group never reach the VM.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let out = cmd
            .output()
            .await
            .map_err(|source| LaunchError::Spawn { qemu: self.qemu.clone(), source })?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(LaunchError::Failed(if err.is_empty() {
                format!("exit status {}", out.status)
            } else {
                err
            }));
        }
        let pid = read_pidfile(&self.paths.pidfile)
            .ok_or_else(|| LaunchError::Failed("QEMU wrote no pid file".into()))?;
        // The QMP socket exists before QEMU daemonizes, but give it a moment anyway.
        for _ in 0..50 {
            if self.paths.qmp.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(pid)
    }
}

/// The block node name of the VM's disk `i`, as launched (mirrors and exports name it).
pub fn disk_node(i: usize) -> String {
    format!("disk{i}")
}

/// Reads a pid file.
pub fn read_pidfile(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// True if a process with this pid exists (and is not a zombie).
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // state is the field after the parenthesised command name
            let state = stat.rsplit(')').next().and_then(|s| s.split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

/// Sends SIGKILL to a process and waits (up to 5 s) for it to disappear.
pub async fn kill_and_wait(pid: i32) {
    if pid_alive(pid) {
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    for _ in 0..100 {
        if !pid_alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits up to `timeout` for a process to exit by itself.
pub async fn wait_exit(pid: i32, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if !pid_alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    !pid_alive(pid)
}

/// Reads a process's command line.
pub fn process_argv(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_have_incoming_and_disks() {
        let cfg = LaunchConfig {
            qemu: "qemu-system-x86_64".into(),
            name: "vm1".into(),
            memory_mib: 512,
            vcpus: 2,
            accel: Accel::Tcg,
            kernel: Some("/k".into()),
            initrd: None,
            append: Some("console=ttyS0".into()),
            disks: vec![("/d.qcow2".into(), "qcow2".into())],
            paths: VmPaths::in_dir(Path::new("/run/x")),
            incoming: true,
            start_paused: true,
        };
        let a = cfg.args().join(" ");
        assert!(a.contains("-m 512M"));
        assert!(a.contains("-accel tcg"));
        assert!(a.contains("-incoming defer"));
        assert!(a.ends_with(" -S"));
        assert!(a.contains("driver=qcow2,file=file0,node-name=disk0"));
        assert!(a.contains("-qmp unix:/run/x/qmp.sock"));
    }

    #[test]
    fn pid_alive_self_and_bogus() {
        assert!(pid_alive(std::process::id() as i32));
        assert!(!pid_alive(0));
        assert!(!pid_alive(i32::MAX));
    }
}
