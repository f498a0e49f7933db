//! A live test bed, the one setup the demo and every benchmark use: the guest
//! image, two test hosts joined by a shaped link with an agent each (removed when
//! the bed is dropped, unless kept), guests started on h1 and waited for until
//! their program runs, and the cleanup after each run.
//!
//! (About 630 lines outside tests: the one test-bed setup and migration follower every
//! benchmark shares; split, each bench would again need all of it.)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pacer_api::{AccelChoice, AppWorkload, DiskWorkload, PeerRef, VmInfo, VmSpec, Workload};
use pacer_cli::hosts::Hosts;
use pacer_cli::vm;
use pacer_guest_proto::{latest_status, scan, AppPhase, DiskPhase, GuestLine, StatusLine};
use pacer_model::format_bytes;
use serde::Serialize;
use tokio::sync::watch;

use crate::{bed, guest_image, net};

/// Longest wait for a guest to boot and report (a disk fill adds to it).
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// Slowest guest disk fill allowed for, bytes/s (the fill adds size / this to the
/// boot timeout).
const SLOWEST_FILL_BPS: f64 = 4e6;
/// Every how often the wait for a guest's steady state says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// Free space kept beside disk images (the agent itself keeps 64 MiB).
pub const SPACE_MARGIN: u64 = 1 << 30;

/// Room a guest's disk of `size` bytes needs: its image at the source, its copy
/// at the destination, a little qcow2 metadata, and the margin.
pub fn room_for_disk(size: u64) -> u64 {
    2 * size + size / 16 + SPACE_MARGIN
}

fn note(msg: &str) {
    eprintln!("==> {msg}");
}

/// A test bed with two hosts and the guest image, removed on drop unless kept.
pub struct LiveBed {
    /// The test bed.
    pub bed: bed::Bed,
    /// Its agents.
    pub hosts: Hosts,
    /// Guest kernel.
    pub kernel: String,
    /// Guest initramfs.
    pub initrd: String,
    /// The initramfs with the applications, for guests that run one.
    pub initrd_apps: String,
    /// Its version.
    pub kernel_version: String,
    /// Where disk images are made.
    pub image_dir: PathBuf,
    /// Where the destination agent makes its disk copies.
    pub dest_disk_dir: PathBuf,
    /// The accelerator the agent chose (learnt from the first guest).
    pub accel: Option<String>,
    /// The link rate now, bits/s.
    pub rate_bps: u64,
    /// When the bed came up, Unix ms.
    pub started_unix_ms: u64,
    since: Instant,
    keep: bool,
}

impl LiveBed {
    /// Builds the guest image (cached) and a two-host bed `name` joined by
    /// `rate`, clearing a leftover of the same name. Unshaped links (not root) are
    /// only warned about: see [`LiveBed::up_shaped`].
    pub fn up(name: &str, rate: &str, keep: bool) -> Result<LiveBed> {
        let since = Instant::now();
        note("building the guest image (cached after the first run)");
        let mut img_opts = guest_image::ImageOptions::from_env();
        img_opts.progress = true;
        let img = guest_image::ensure_guest_image(&img_opts)?;
        note(&format!("creating two test hosts joined by a {rate} link"));
        let rate_bps = net::parse_rate(rate)?;
        let root = bed::default_root();
        // A leftover from an interrupted run is ours to clear.
        let _ = bed::down(&root, name);
        let b = bed::up(&bed::BedOptions {
            name: name.into(),
            hosts: 2,
            rate_bps,
            pacerd: bed::find_pacerd(),
            root: root.clone(),
            memory_capacity: None,
            incoming_lease_s: None,
        })?;
        let hosts = match Hosts::load(Some(b.hosts_file())) {
            Ok(h) => h,
            Err(e) => {
                let _ = bed::down(&root, name);
                return Err(e);
            }
        };
        // From here on, dropping `live` removes the bed.
        let live = LiveBed {
            hosts,
            kernel: img.kernel.display().to_string(),
            initrd: img.initrd.display().to_string(),
            initrd_apps: img.initrd_apps.display().to_string(),
            kernel_version: img.kernel_version.clone(),
            image_dir: b.dir.join("bench-images"),
            dest_disk_dir: b.hosts[1].state_dir.join("vms"),
            accel: None,
            rate_bps,
            started_unix_ms: crate::bench::unix_ms(),
            since,
            keep,
            bed: b,
        };
        if !live.bed.shaped {
            eprintln!("warning: not root: test hosts share loopback and links are NOT shaped");
        }
        std::fs::create_dir_all(&live.image_dir)
            .with_context(|| format!("cannot create {}", live.image_dir.display()))?;
        Ok(live)
    }

    /// [`LiveBed::up`] for a benchmark: removed when dropped, and refused when
    /// its links are not shaped (link rates would mean nothing).
    pub fn up_shaped(name: &str, rate: &str) -> Result<LiveBed> {
        let live = LiveBed::up(name, rate, false)?;
        if !live.bed.shaped {
            bail!(
                "the test bed's links are not shaped (run as root): link rates would mean nothing"
            );
        }
        Ok(live)
    }

    /// Removes the bed and says how long `what` took since it came up.
    pub fn close(self, what: &str) {
        let took = self.since.elapsed().as_secs_f64();
        let kept = self.keep.then(|| self.bed.name.clone());
        drop(self);
        match kept {
            Some(n) => eprintln!("test bed {n} kept ({what} took {took:.0} s; remove it with `pacer-lab testbed down --name {n}`)\n"),
            None => eprintln!("test bed removed ({what} took {took:.0} s)\n"),
        }
    }

    /// Changes the rate of every link of the bed (no-op if it is already that).
    pub fn set_rate(&mut self, bps: u64) -> Result<()> {
        if bps != self.rate_bps {
            self.bed.set_rate(None, bps)?;
            self.rate_bps = bps;
        }
        Ok(())
    }

    /// Checks there is room for `need` bytes of disk images beside the bed.
    pub async fn check_room(&self, need: u64) -> Result<()> {
        tool_present("qemu-img").await?;
        if let Some(free) = free_bytes(&self.image_dir) {
            if free < need {
                bail!(
                    "{} has {} free but the disk images need about {}: free space there or give a \
                     smaller --disk-size",
                    self.image_dir.display(),
                    format_bytes(free),
                    format_bytes(need)
                );
            }
        }
        Ok(())
    }

    /// Stops a guest wherever it is and deletes its images, the destination's
    /// copy included (also one left behind by a failed run).
    pub async fn cleanup(&self, name: &str, files: &[PathBuf]) {
        for h in ["h1", "h2"] {
            let _ = vm::stop(&self.hosts, name, Some(h)).await;
        }
        for f in files {
            let _ = std::fs::remove_file(f);
        }
        let prefix = format!("{name}-disk");
        if let Ok(dir) = std::fs::read_dir(&self.dest_disk_dir) {
            for e in dir.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// How the source agent reaches `host`.
    pub fn peer(&self, host: &str) -> Result<PeerRef> {
        Ok(pacer_cli::migrate::peer_of(self.hosts.get(host)?))
    }
}

impl Drop for LiveBed {
    fn drop(&mut self) {
        if !self.keep {
            let _ = bed::down(&bed::default_root(), &self.bed.name);
        }
    }
}

/// A guest to start on h1.
#[derive(Debug, Clone, Serialize)]
pub struct GuestPlan {
    /// VM name.
    pub name: String,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// The guest program's workload (its disk writer included).
    pub workload: Workload,
    /// Size of a fresh qcow2 disk to attach, bytes.
    pub disk_size: Option<u64>,
    /// The image that disk is a top layer over (none: a standalone image).
    pub backing: Option<PathBuf>,
}

impl GuestPlan {
    /// A memory-writing guest (`rate_mbps` 0 = idle) without a disk.
    pub fn memory(name: &str, memory_mib: u64, wss_mib: u64, rate_mbps: f64) -> GuestPlan {
        GuestPlan {
            name: name.into(),
            memory_mib,
            workload: Workload {
                kind: if rate_mbps > 0.0 { "memwrite" } else { "idle" }.into(),
                wss_mib,
                rate_mbps,
                hot_fraction: 0.0,
                hot_share: 0.0,
                disk: None,
                paused: false,
                app: None,
                unique: 0.0,
            },
            disk_size: None,
            backing: None,
        }
    }

    /// Adds a disk of `size` bytes the guest fills at boot and then writes at
    /// `rate_mbps` (uniform 64 KiB writes).
    pub fn with_disk(self, size: u64, rate_mbps: f64) -> GuestPlan {
        self.with_disk_workload(size, uniform_disk_writer(rate_mbps, true))
    }

    /// Adds a disk of `size` bytes and the guest's disk workload on it.
    pub fn with_disk_workload(mut self, size: u64, disk: DiskWorkload) -> GuestPlan {
        self.disk_size = Some(size);
        self.workload.disk = Some(disk);
        self
    }

    /// Runs a real application (`kind` of `pacer_api::APP_KINDS`) over a `mib`
    /// data set, its load aiming at `rate` MB/s.
    pub fn with_app(mut self, kind: &str, mib: u64, rate: f64) -> GuestPlan {
        self.workload.app = Some(AppWorkload {
            kind: kind.into(),
            mib,
            rate,
        });
        self
    }

    /// Makes the disk a top layer over `base`.
    pub fn over(mut self, base: &Path) -> GuestPlan {
        self.backing = Some(base.to_path_buf());
        self
    }

    fn disk_rate(&self) -> f64 {
        self.workload.disk.as_ref().map_or(0.0, |d| d.rate_mbps)
    }

    /// What to wait for: the steady state when it has a disk, else its first report.
    fn ready_when(&self) -> Want {
        if self.workload.app.is_some() {
            return Want::AppRunning;
        }
        match self.disk_size {
            None => Want::Status,
            Some(_) => Want::Steady {
                disk_rate: self.disk_rate(),
                mem_rate: if self.workload.kind == "memwrite" {
                    self.workload.rate_mbps
                } else {
                    0.0
                },
            },
        }
    }

    /// How long the guest may take to get ready: the boot, and the disk fill.
    fn ready_timeout(&self) -> Duration {
        let fills = self.workload.disk.as_ref().is_some_and(|d| d.fill);
        let fill_s = match self.disk_size {
            Some(size) if fills => size as f64 / SLOWEST_FILL_BPS,
            _ => 0.0,
        };
        // A key-value store loads about 1 MiB/s under TCG.
        let app_s = self.workload.app.as_ref().map_or(0, |a| a.mib);
        BOOT_TIMEOUT + Duration::from_secs_f64(fill_s) + Duration::from_secs(app_s)
    }
}

/// The guest's disk writer: uniform 64 KiB writes to /dev/vda at `rate_mbps`,
/// after filling the whole disk at boot if `fill`.
pub fn uniform_disk_writer(rate_mbps: f64, fill: bool) -> DiskWorkload {
    DiskWorkload {
        device: "/dev/vda".into(),
        rate_mbps,
        bs_kib: 64,
        pattern: "uniform".into(),
        hot_fraction: 0.1,
        span_mib: None,
        fill,
    }
}

/// A started guest.
#[derive(Debug, Clone)]
pub struct Started {
    /// The agent's record.
    pub info: VmInfo,
    /// Its disk image, if it has one.
    pub disk: Option<PathBuf>,
    /// Making the disk image, ms.
    pub images_ms: u64,
    /// From the start request to the guest being ready, ms.
    pub ready_ms: u64,
    /// What the guest said when it got ready.
    pub ready: Ready,
}

/// Starts a guest on h1 and waits until its program runs (disk filled and
/// writers writing, when it has a disk). Every file made is pushed to `files`
/// before it is written.
pub async fn start_guest(
    bed: &mut LiveBed,
    g: &GuestPlan,
    files: &mut Vec<PathBuf>,
    stop: &watch::Receiver<bool>,
) -> Result<Started> {
    let t = Instant::now();
    let mut disk = None;
    if let Some(size) = g.disk_size {
        let img = bed.image_dir.join(format!("{}.qcow2", g.name));
        files.push(img.clone());
        qemu_tool(
            "qemu-img",
            &qcow2_create_args(&img, size, g.backing.as_deref()),
        )
        .await
        .context("cannot make the disk image")?;
        disk = Some(img);
    }
    let images_ms = t.elapsed().as_millis() as u64;
    let spec = VmSpec {
        name: g.name.clone(),
        memory_mib: g.memory_mib,
        vcpus: 1,
        kernel: Some(bed.kernel.clone()),
        initrd: Some(if g.workload.app.is_some() {
            bed.initrd_apps.clone()
        } else {
            bed.initrd.clone()
        }),
        append: None,
        disks: disk.iter().map(|d| d.display().to_string()).collect(),
        workload: Some(g.workload.clone()),
        accel: AccelChoice::Auto,
    };
    let info = bed
        .hosts
        .client("h1")?
        .start_vm(&spec)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the guest: {e}"))?;
    bed.accel.get_or_insert(info.accel.clone());
    let t = Instant::now();
    let ready = wait_guest(
        &bed.hosts,
        &g.name,
        "h1",
        g.ready_when(),
        g.ready_timeout(),
        stop,
    )
    .await?;
    let fill = match (ready.fill_ms, ready.fill_mbps) {
        (Some(ms), Some(r)) => {
            format!(" (disk filled in {:.1} s, {r:.0} MB/s)", ms as f64 / 1000.0)
        }
        _ => String::new(),
    };
    eprintln!(
        "  {} ready after {:.1} s{fill}",
        g.name,
        t.elapsed().as_secs_f64()
    );
    Ok(Started {
        info,
        disk,
        images_ms,
        ready_ms: t.elapsed().as_millis() as u64,
        ready,
    })
}

/// What a guest is waited for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Want {
    /// Its program's first status line (its working set is filled).
    Status,
    /// Its application loaded and under its load.
    AppRunning,
    /// Its steady state: the disk filled, the disk writer writing at `disk_rate`
    /// (or idle when that is 0), the memory writer writing (when `mem_rate` > 0).
    Steady {
        /// Disk write rate, MB/s.
        disk_rate: f64,
        /// Memory write rate, MB/s.
        mem_rate: f64,
    },
}

/// What the guest said when it got ready.
#[derive(Debug, Clone, Default)]
pub struct Ready {
    /// The guest's fill of its disk, ms (from its `disk_filled` line).
    pub fill_ms: Option<u64>,
    /// Its rate, MB/s.
    pub fill_mbps: Option<f64>,
    /// What the guest's error lines said.
    pub errors: Vec<String>,
}

impl Ready {
    /// What a console text says: the disk fill (its last `disk_filled` line) and
    /// every error line.
    fn of(text: &str) -> Ready {
        let mut ready = Ready::default();
        for line in scan(text) {
            match line {
                GuestLine::DiskFilled(f) => {
                    ready.fill_ms = Some(f.fill_ms);
                    ready.fill_mbps = Some(f.fill_mbps);
                }
                GuestLine::Error(e) => ready.errors.push(e.message),
                _ => {}
            }
        }
        ready
    }
}

/// Waits until the guest on `host` is ready as `want` says, saying how a disk
/// fill goes meanwhile; an error on Ctrl-C (`stop`) or after `timeout`.
pub async fn wait_guest(
    hosts: &Hosts,
    name: &str,
    host: &str,
    want: Want,
    timeout: Duration,
    stop: &watch::Receiver<bool>,
) -> Result<Ready> {
    let t0 = Instant::now();
    let mut last_note = Instant::now();
    loop {
        if *stop.borrow() {
            bail!("interrupted");
        }
        let text = vm::console(hosts, name, Some(host), 64 * 1024).await?;
        let status = latest_status(&text);
        let ready = match want {
            Want::Status => status.is_some(),
            Want::AppRunning => {
                let phase = status.as_ref().and_then(|s| s.app_phase);
                if phase == Some(AppPhase::Failed) {
                    bail!(
                        "guest {name}'s application failed: {:?}",
                        Ready::of(&text).errors
                    );
                }
                phase == Some(AppPhase::Run)
            }
            Want::Steady {
                disk_rate,
                mem_rate,
            } => status
                .as_ref()
                .is_some_and(|s| is_steady(s, disk_rate, mem_rate)),
        };
        if ready {
            return Ok(Ready::of(&text));
        }
        if t0.elapsed() > timeout {
            let tail: String = text
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let what = match want {
                Want::Status => "report",
                Want::AppRunning => "run its application",
                Want::Steady { .. } => "reach its steady state",
            };
            bail!(
                "guest {name} did not {what} within {} s; console:\n{tail}",
                timeout.as_secs()
            );
        }
        if matches!(want, Want::Steady { .. }) && last_note.elapsed() >= PROGRESS_EVERY {
            last_note = Instant::now();
            eprintln!(
                "  {:.0} s: guest {}",
                t0.elapsed().as_secs_f64(),
                fill_progress(status.as_ref())
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How far a guest got towards its steady state, from its last status line.
fn fill_progress(status: Option<&StatusLine>) -> String {
    let fill = status.and_then(|s| {
        let (done, total) = (s.disk_fill_bytes?, s.disk_fill_total?);
        (s.disk_phase == DiskPhase::Fill && total > 0).then(|| {
            format!(
                "filling its disk: {} of {} ({:.0}%)",
                format_bytes(done),
                format_bytes(total),
                done as f64 * 100.0 / total as f64
            )
        })
    });
    fill.unwrap_or_else(|| {
        if status.is_some() {
            "running, not steady yet".into()
        } else {
            "booting".into()
        }
    })
}

/// Whether a status line shows the steady state: the disk filled, the disk writer
/// writing (or idle when it has no rate), the memory writer writing.
pub fn is_steady(status: &StatusLine, disk_rate: f64, mem_rate: f64) -> bool {
    let disk = if disk_rate > 0.0 {
        status.disk_phase == DiskPhase::Write && status.disk_write_mbps > 0.0
    } else {
        status.disk_phase == DiskPhase::Idle
    };
    disk && (mem_rate <= 0.0 || status.write_mbps > 0.0)
}

/// The guest's own memory and disk write rates (MB/s) from its last status line.
pub async fn guest_rates(hosts: &Hosts, name: &str) -> (Option<f64>, Option<f64>) {
    let Ok(text) = vm::console(hosts, name, Some("h1"), 16 * 1024).await else {
        return (None, None);
    };
    let Some(s) = latest_status(&text) else {
        return (None, None);
    };
    // A rate the guest could not give is written as null, read as NaN.
    let known = |v: f64| v.is_finite().then_some(v);
    // An application's load is the guest's memory writer when one runs.
    let memory = s.app_write_mbps.and_then(known).or(known(s.write_mbps));
    (memory, known(s.disk_write_mbps))
}

/// Errors unless `tool` runs (`tool --version`).
pub async fn tool_present(tool: &str) -> Result<()> {
    let ok = tokio::process::Command::new(tool)
        .arg("--version")
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    if !ok {
        bail!("{tool} is needed to make the disk images and was not found on PATH (install qemu-utils)");
    }
    Ok(())
}

/// Free bytes of the file system holding `p`.
pub fn free_bytes(p: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
    // SAFETY: a zeroed statvfs is a valid out-parameter; `c` is NUL-terminated.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}

/// Runs a qemu tool to completion; an error with its stderr if it fails.
pub async fn qemu_tool(tool: &str, args: &[String]) -> Result<()> {
    let out = tokio::process::Command::new(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {tool}"))?;
    if !out.status.success() {
        bail!(
            "{tool} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// `qemu-img` arguments that make a qcow2 image of `size` bytes (over `backing`).
pub fn qcow2_create_args(path: &Path, size: u64, backing: Option<&Path>) -> Vec<String> {
    let mut a: Vec<String> = ["create", "-q", "-f", "qcow2"].map(String::from).into();
    if let Some(b) = backing {
        a.extend([
            "-b".into(),
            b.display().to_string(),
            "-F".into(),
            "qcow2".into(),
        ]);
    }
    a.push(path.display().to_string());
    a.push(size.to_string());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_plans() {
        let g = GuestPlan::memory("v", 1024, 256, 0.0);
        assert_eq!(g.workload.kind, "idle");
        assert_eq!(g.ready_when(), Want::Status);
        assert_eq!(g.ready_timeout(), BOOT_TIMEOUT);
        let g = GuestPlan::memory("v", 1024, 256, 15.0).with_disk(1 << 30, 10.0);
        assert_eq!(g.workload.kind, "memwrite");
        assert_eq!(g.disk_rate(), 10.0);
        assert!(g.workload.disk.as_ref().unwrap().fill);
        assert_eq!(
            g.ready_when(),
            Want::Steady {
                disk_rate: 10.0,
                mem_rate: 15.0
            }
        );
        // 1 GiB at the slowest fill rate: ~268 s on top of the boot.
        assert_eq!(g.ready_timeout().as_secs(), 180 + 268);
        let top = GuestPlan::memory("v", 512, 128, 20.0)
            .with_disk_workload(2 << 30, uniform_disk_writer(10.0, false))
            .over(Path::new("/i/b.qcow2"));
        assert_eq!(
            top.ready_timeout(),
            BOOT_TIMEOUT,
            "a top layer is not filled"
        );
        assert_eq!(top.backing.as_deref(), Some(Path::new("/i/b.qcow2")));
    }

    #[test]
    fn steady_state_rule() {
        let s = |phase, disk, mem| StatusLine {
            disk_phase: phase,
            disk_write_mbps: disk,
            write_mbps: mem,
            ..StatusLine::default()
        };
        use DiskPhase::{Fill, Idle, Write};
        assert!(!is_steady(&s(Fill, 0.0, 20.0), 0.0, 20.0));
        assert!(is_steady(&s(Idle, 0.0, 20.0), 0.0, 20.0));
        assert!(!is_steady(&s(Idle, 0.0, 0.0), 0.0, 20.0));
        assert!(is_steady(&s(Idle, 0.0, 0.0), 0.0, 0.0));
        assert!(!is_steady(&s(Write, 0.0, 20.0), 10.0, 20.0));
        assert!(is_steady(&s(Write, 9.8, 20.0), 10.0, 20.0));
        assert!(!is_steady(&s(Write, f64::NAN, 20.0), 10.0, 20.0));
        assert!(!is_steady(&StatusLine::default(), 10.0, 0.0));
    }

    #[test]
    fn guest_console_lines() {
        let text = "boot noise\nPACER {\"kind\":\"status\",\"disk_phase\":\"fill\"}\n\
                    PACER {\"kind\":\"disk_filled\",\"fill_ms\":30000,\"fill_mbps\":71.5}\n\
                    PACER {broken\n  PACER {\"kind\":\"status\",\"disk_phase\":\"idle\"}\n\
                    PACER {\"kind\":\"error\",\"message\":\"disk slow\"}\n";
        assert_eq!(latest_status(text).unwrap().disk_phase, DiskPhase::Idle);
        let ready = Ready::of(text);
        assert_eq!((ready.fill_ms, ready.fill_mbps), (Some(30000), Some(71.5)));
        assert_eq!(ready.errors, ["disk slow"]);
        let none = Ready::of("boot noise\n");
        assert_eq!((none.fill_ms, none.errors.len()), (None, 0));
        let filling = StatusLine {
            disk_phase: DiskPhase::Fill,
            disk_fill_bytes: Some(1 << 30),
            disk_fill_total: Some(2 << 30),
            ..StatusLine::default()
        };
        assert_eq!(
            fill_progress(Some(&filling)),
            "filling its disk: 1.00 GiB of 2.00 GiB (50%)"
        );
        assert_eq!(
            fill_progress(Some(&StatusLine::default())),
            "running, not steady yet"
        );
        assert_eq!(fill_progress(None), "booting");
    }

    #[test]
    fn image_commands() {
        let a = qcow2_create_args(
            Path::new("/i/top.qcow2"),
            2 << 30,
            Some(Path::new("/i/b.qcow2")),
        );
        assert_eq!(
            a.join(" "),
            "create -q -f qcow2 -b /i/b.qcow2 -F qcow2 /i/top.qcow2 2147483648"
        );
    }
}
