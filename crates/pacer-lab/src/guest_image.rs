//! Guest image builder: a Debian cloud kernel plus an initramfs holding
//! busybox-static, the virtio modules and the `pacer-guest` workload program.
//!
//! Everything comes from Debian packages (`apt-get download`, `dpkg-deb -x`)
//! and from this workspace (the guest binary is built with cargo as a static
//! executable). Results are cached under [`ImageOptions::cache_dir`]:
//!
//! ```text
//! <cache>/kernel/current              name of the extracted kernel package
//! <cache>/kernel/<package>/           dpkg-deb -x of linux-image-<ver>-cloud-amd64
//! <cache>/busybox/<package>/          only if the host has no static /bin/busybox
//! <cache>/images/<id>/vmlinuz         the kernel (bzImage)
//! <cache>/images/<id>/initrd.img      gzip'd newc cpio
//! <cache>/images/<id>/initrd-apps.img initrd.img + the applications' archive (see [`apps`])
//! <cache>/apps/<set>/                 the applications' Debian packages
//! <cache>/images/<id>/manifest.txt    what went in
//! ```
//!
//! `<id>` is a hash of every input, so an image is rebuilt only when an input
//! changes; images are written to a temporary directory and renamed into
//! place, so a concurrent or interrupted build never leaves a half image.
//!
//! The guest's `/init` mounts proc, sysfs and devtmpfs, loads the modules,
//! turns off echo on ttyS0 and runs `/bin/pacer-guest` with stdin, stdout and
//! stderr on ttyS0. If it exits, init prints a `PACER {"kind":"error",...}`
//! line and keeps PID 1 alive (a shell on the console, restarted forever).
//!
//! The steps, each feeding the next, are in submodules: `debs` (the kernel
//! and busybox packages), `modules` (the kernel modules), `elf` (reading ELF
//! files) and `initramfs` (the init script and the cpio archive); the
//! applications are apart, in `apps`. This file ties them together.

mod apps;
mod debs;
mod elf;
mod initramfs;
mod modules;

pub use apps::{APP_PACKAGES, APP_PROGRAMS};
pub use elf::needed_libraries;

use debs::{ensure_busybox, ensure_kernel};
use elf::check_static_elf;
use initramfs::{init_script, Cpio};
use modules::resolve_modules;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

/// Kernel modules the initramfs loads, in this order, each after whatever
/// its `.modinfo` `depends=` names.
pub const GUEST_MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "virtio_balloon",
];

/// Host target the static guest binary is built for.
const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";
/// Bump when the image layout changes in a way the inputs do not show.
const IMAGE_FORMAT: &str = "pacer-guest-image v1";

/// Where and how to build the guest image.
#[derive(Debug, Clone)]
pub struct ImageOptions {
    /// Root of the cache (kernel packages, images).
    pub cache_dir: PathBuf,
    /// A prebuilt static `pacer-guest` binary; `None` builds it with cargo.
    pub guest_bin: Option<PathBuf>,
    /// Print what is being done to stderr.
    pub progress: bool,
}

impl ImageOptions {
    /// `cache_dir` = `$PACER_CACHE_DIR` or `~/.cache/pacer`;
    /// `guest_bin` = `$PACER_GUEST_BIN`; `progress` off.
    pub fn from_env() -> Self {
        let cache_dir = match std::env::var_os("PACER_CACHE_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => {
                let home = std::env::var_os("HOME")
                    .filter(|h| !h.is_empty())
                    .map(PathBuf::from)
                    .unwrap_or_else(std::env::temp_dir);
                home.join(".cache").join("pacer")
            }
        };
        let guest_bin = std::env::var_os("PACER_GUEST_BIN")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        ImageOptions {
            cache_dir,
            guest_bin,
            progress: false,
        }
    }
}

/// A bootable guest: pass `kernel` to `-kernel`, `initrd` (or `initrd_apps`)
/// to `-initrd` and [`guest_cmdline`] to `-append`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// `initrd` plus the real applications (redis, memcached, stress-ng,
    /// zstd) and their libraries, for guests started with `pacer.app=...`.
    pub initrd_apps: PathBuf,
    /// `uname -r` of the kernel, e.g. `6.1.0-56-cloud-amd64`.
    pub kernel_version: String,
    /// Hash of all inputs (16 hex digits); also the image's directory name.
    pub id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// An external program is missing or failed.
    #[error("{tool}: {message}")]
    Tool { tool: String, message: String },
    /// The kernel package is not what was expected.
    #[error("kernel: {0}")]
    Kernel(String),
    /// An input file (guest binary, busybox, module) is unusable.
    #[error("{0}")]
    Input(String),
}

type Result<T> = std::result::Result<T, ImageError>;

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
    let context = context.into();
    move |source| ImageError::Io { context, source }
}

/// The kernel command line for a guest: serial console, quiet kernel, and
/// the workload part (`pacer.*` keys), e.g.
/// `guest_cmdline("pacer.workload=memwrite pacer.wss_mib=256 pacer.rate_mbps=60")`.
///
/// `panic=-1` makes a guest panic reboot at once, so QEMU run with
/// `-no-reboot` exits instead of hanging.
pub fn guest_cmdline(workload: &str) -> String {
    let base = "console=ttyS0,115200 quiet loglevel=3 panic=-1 mitigations=off";
    let workload = workload.trim();
    if workload.is_empty() {
        base.to_string()
    } else {
        format!("{base} {workload}")
    }
}

/// Returns a bootable guest image, building whatever is missing.
pub fn ensure_guest_image(opts: &ImageOptions) -> Result<GuestImage> {
    let cache = &opts.cache_dir;
    fs::create_dir_all(cache).map_err(io_err(format!("create {}", cache.display())))?;

    let guest_bin = match &opts.guest_bin {
        Some(p) => p.clone(),
        None => build_guest_binary(opts.progress)?,
    };
    let guest = fs::read(&guest_bin)
        .map_err(io_err(format!("read guest binary {}", guest_bin.display())))?;
    check_static_elf(&guest, &guest_bin.display().to_string())?;

    let busybox_path = ensure_busybox(cache, opts.progress)?;
    let busybox =
        fs::read(&busybox_path).map_err(io_err(format!("read {}", busybox_path.display())))?;

    let kernel = ensure_kernel(cache, opts.progress)?;
    let vmlinuz =
        fs::read(&kernel.vmlinuz).map_err(io_err(format!("read {}", kernel.vmlinuz.display())))?;
    let modules = resolve_modules(&kernel.modules_dir, GUEST_MODULES)?;
    let module_names: Vec<String> = modules.iter().map(|m| m.name.clone()).collect();
    let init = init_script(&module_names);
    let app_files = apps::ensure_app_files(cache, opts.progress)?;

    // The id covers every input.
    let mut h = Sha256::new();
    let mut feed = |label: &str, data: &[u8]| {
        h.update(label.as_bytes());
        h.update((data.len() as u64).to_le_bytes());
        h.update(data);
    };
    feed("format", IMAGE_FORMAT.as_bytes());
    feed("kernel_version", kernel.version.as_bytes());
    feed("vmlinuz", &vmlinuz);
    feed("busybox", &busybox);
    feed("pacer-guest", &guest);
    feed("init", init.as_bytes());
    for m in &modules {
        feed(&format!("module {}", m.name), &m.data);
    }
    for (path, data) in &app_files.files {
        feed(&format!("app {path}"), data);
    }
    let id: String = hex(&h.finalize())[..16].to_string();

    let images = cache.join("images");
    let dir = images.join(&id);
    let image = GuestImage {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        initrd_apps: dir.join("initrd-apps.img"),
        kernel_version: kernel.version.clone(),
        id: id.clone(),
    };
    if image.kernel.is_file() && image.initrd.is_file() && image.initrd_apps.is_file() {
        say(
            opts.progress,
            format!("guest image {id} is cached in {}", dir.display()),
        );
        return Ok(image);
    }

    say(
        opts.progress,
        format!("building guest image {id} (kernel {})", kernel.version),
    );
    fs::create_dir_all(&images).map_err(io_err(format!("create {}", images.display())))?;
    clean_stale_temps(&images);
    let tmp = images.join(format!(".tmp-{id}-{}-{}", std::process::id(), nanos()));
    fs::create_dir_all(&tmp).map_err(io_err(format!("create {}", tmp.display())))?;
    let built = (|| -> Result<()> {
        // Share the kernel with the cache when possible (same file system).
        if fs::hard_link(&kernel.vmlinuz, tmp.join("vmlinuz")).is_err() {
            write_synced(&tmp.join("vmlinuz"), &vmlinuz)?;
        }
        let mut cpio = Cpio::default();
        for d in [
            "bin",
            "sbin",
            "usr",
            "usr/bin",
            "usr/sbin",
            "proc",
            "sys",
            "dev",
            "tmp",
            "root",
            "etc",
            "lib",
            "lib/modules",
        ] {
            cpio.dir(d);
        }
        cpio.char_dev("dev/console", 0o600, 5, 1);
        cpio.file("bin/busybox", 0o755, &busybox);
        cpio.symlink("bin/sh", "busybox");
        cpio.file("bin/pacer-guest", 0o755, &guest);
        for m in &modules {
            cpio.file(&format!("lib/modules/{}.ko", m.name), 0o644, &m.data);
        }
        cpio.file("init", 0o755, init.as_bytes());
        let cpio_path = tmp.join("initrd.cpio");
        write_synced(&cpio_path, &cpio.finish())?;
        gzip(&cpio_path, &tmp.join("initrd.img"))?;
        fs::remove_file(&cpio_path).map_err(io_err(format!("remove {}", cpio_path.display())))?;
        // The kernel unpacks concatenated archives one after the other.
        let apps_path = tmp.join("apps.cpio");
        write_synced(&apps_path, &apps::apps_cpio(&app_files))?;
        gzip(&apps_path, &tmp.join("apps.cpio.gz"))?;
        let mut both =
            fs::read(tmp.join("initrd.img")).map_err(io_err(format!("read {}", tmp.display())))?;
        both.extend(
            fs::read(tmp.join("apps.cpio.gz"))
                .map_err(io_err(format!("read {}", tmp.display())))?,
        );
        write_synced(&tmp.join("initrd-apps.img"), &both)?;
        for f in [&apps_path, &tmp.join("apps.cpio.gz")] {
            fs::remove_file(f).map_err(io_err(format!("remove {}", f.display())))?;
        }
        let manifest = format!(
            "{IMAGE_FORMAT}\nid {id}\nkernel_version {}\nkernel_package {}\nbusybox {}\npacer-guest {}\nmodules {}\n\n{init}\n{}",
            kernel.version,
            kernel.package,
            busybox_path.display(),
            guest_bin.display(),
            module_names.join(" "),
            app_files.manifest,
        );
        write_synced(&tmp.join("manifest.txt"), manifest.as_bytes())?;
        Ok(())
    })();
    if let Err(e) = built {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    publish_dir(&tmp, &dir, |d| {
        d.join("vmlinuz").is_file()
            && d.join("initrd.img").is_file()
            && d.join("initrd-apps.img").is_file()
    })?;
    say(
        opts.progress,
        format!("guest image ready: {}", dir.display()),
    );
    Ok(image)
}

fn say(progress: bool, msg: impl AsRef<str>) {
    if progress {
        eprintln!("[pacer-image] {}", msg.as_ref());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).map_err(io_err(format!("create {}", path.display())))?;
    f.write_all(data)
        .map_err(io_err(format!("write {}", path.display())))?;
    f.sync_all()
        .map_err(io_err(format!("sync {}", path.display())))
}

/// Renames the finished temporary directory `tmp` to `dest`. If another
/// build got there first (and `valid` accepts its result), keeps that one;
/// an invalid `dest` (not made by this code) is replaced.
fn publish_dir(tmp: &Path, dest: &Path, valid: impl Fn(&Path) -> bool) -> Result<()> {
    let mut result = fs::rename(tmp, dest);
    if result.is_err() && dest.exists() && !valid(dest) {
        let _ = fs::remove_dir_all(dest);
        result = fs::rename(tmp, dest);
    }
    match result {
        Ok(()) => Ok(()),
        Err(_) if valid(dest) => {
            let _ = fs::remove_dir_all(tmp);
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_dir_all(tmp);
            Err(ImageError::Io {
                context: format!("rename {} to {}", tmp.display(), dest.display()),
                source: e,
            })
        }
    }
}

/// Removes `.tmp-*` directories left by interrupted builds (older than 1 h).
fn clean_stale_temps(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        if !e.file_name().to_string_lossy().starts_with(".tmp-") {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if old {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Runs a command, capturing its output; a missing program or a non-zero
/// exit becomes an [`ImageError::Tool`] with the output's tail.
fn run(cmd: &mut Command, hint: &str) -> Result<Output> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ImageError::Tool {
            tool: tool.clone(),
            message: if e.kind() == io::ErrorKind::NotFound {
                format!(
                    "not found in PATH{}",
                    if hint.is_empty() {
                        String::new()
                    } else {
                        format!(" ({hint})")
                    }
                )
            } else {
                format!("cannot run: {e}")
            },
        })?;
    if !out.status.success() {
        return Err(ImageError::Tool {
            tool,
            message: format!("{:?} failed ({}): {}", cmd, out.status, tail(&out)),
        });
    }
    Ok(out)
}

fn tail(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stderr).into_owned();
    if s.trim().is_empty() {
        s = String::from_utf8_lossy(&out.stdout).into_owned();
    }
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn gzip(src: &Path, dest: &Path) -> Result<()> {
    let f = fs::File::create(dest).map_err(io_err(format!("create {}", dest.display())))?;
    run(
        Command::new("gzip")
            .args(["-n", "-6", "-c"])
            .arg(src)
            .stdout(f),
        "install gzip",
    )?;
    fs::File::open(dest)
        .and_then(|f| f.sync_all())
        .map_err(io_err(format!("sync {}", dest.display())))
}

// ---------------------------------------------------------------------------
// The guest binary

/// Root of this cargo workspace.
fn workspace_root() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

/// Builds `pacer-guest` as a static executable and returns its path.
fn build_guest_binary(progress: bool) -> Result<PathBuf> {
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    say(
        progress,
        format!("building pacer-guest (static) in {}", root.display()),
    );
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "-p",
            "pacer-guest",
            "--release",
            "--target",
            GUEST_TARGET,
            "--target-dir",
            "target/guest",
        ])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET");
    let hint = "install Rust (cargo), or set PACER_GUEST_BIN to a prebuilt static pacer-guest";
    if progress {
        // Let cargo's own progress through.
        let status = cmd
            .stdin(Stdio::null())
            .status()
            .map_err(|e| ImageError::Tool {
                tool: cargo.to_string_lossy().into_owned(),
                message: if e.kind() == io::ErrorKind::NotFound {
                    format!("not found ({hint})")
                } else {
                    e.to_string()
                },
            })?;
        if !status.success() {
            return Err(ImageError::Tool {
                tool: "cargo".into(),
                message: format!("building pacer-guest failed ({status})"),
            });
        }
    } else {
        run(&mut cmd, hint)?;
    }
    let bin = root
        .join("target/guest")
        .join(GUEST_TARGET)
        .join("release/pacer-guest");
    if !bin.is_file() {
        return Err(ImageError::Input(format!(
            "cargo succeeded but {} is missing",
            bin.display()
        )));
    }
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacer_guest_proto::{parse_line, Command as GuestCommand, DiskPhase, GuestLine};
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixStream;
    use std::process::Child;
    use std::time::Instant;

    #[test]
    fn cmdline_has_console_and_workload() {
        let c = guest_cmdline("pacer.workload=memwrite pacer.wss_mib=256 ");
        assert!(c.starts_with("console=ttyS0"));
        assert!(c.ends_with(" pacer.workload=memwrite pacer.wss_mib=256"));
        assert!(!guest_cmdline("").ends_with(' '));
    }

    /// Kills QEMU when the test ends, however it ends, and shows the
    /// console log on failure.
    struct Qemu {
        child: Child,
        log: PathBuf,
    }

    impl Drop for Qemu {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if std::thread::panicking() {
                let log = fs::read_to_string(&self.log).unwrap_or_default();
                let start = log.len().saturating_sub(4000);
                let start = (start..log.len())
                    .find(|&i| log.is_char_boundary(i))
                    .unwrap_or(log.len());
                eprintln!("---- console.log (tail) ----\n{}\n----", &log[start..]);
            }
        }
    }

    /// A booted test guest: QEMU plus its serial console.
    struct Guest {
        qemu: Qemu,
        reader: BufReader<UnixStream>,
        writer: UnixStream,
        buf: Vec<u8>,
        booted: Instant,
        deadline: Instant,
    }

    impl Guest {
        /// Boots `img` under TCG with `append` as the workload part of the
        /// kernel command line and `extra` QEMU arguments (disks); files go
        /// to `dir`. Everything must be done within `timeout` of the boot.
        fn boot(
            img: &GuestImage,
            dir: &Path,
            append: &str,
            extra: &[String],
            timeout: Duration,
        ) -> Guest {
            let sock = dir.join("console.sock");
            let log = dir.join("console.log");
            let append = guest_cmdline(append);
            let booted = Instant::now();
            let child = Command::new("qemu-system-x86_64")
                .args(["-machine", "q35", "-accel", "tcg", "-m", "512", "-smp", "1"])
                .args(["-nographic", "-no-reboot", "-nic", "none"])
                .arg("-kernel")
                .arg(&img.kernel)
                .arg("-initrd")
                .arg(&img.initrd)
                .args(["-append", &append])
                .arg("-chardev")
                .arg(format!(
                    "socket,id=ser0,path={},server=on,wait=off,logfile={}",
                    sock.display(),
                    log.display()
                ))
                .args([
                    "-serial",
                    "chardev:ser0",
                    "-monitor",
                    "none",
                    "-display",
                    "none",
                ])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(fs::File::create(dir.join("qemu.out")).unwrap())
                .stderr(fs::File::create(dir.join("qemu.err")).unwrap())
                .spawn()
                .expect("qemu-system-x86_64 must be installed (QEMU 10.0 from bookworm-backports)");
            let mut qemu = Qemu { child, log };

            let deadline = Instant::now() + timeout;
            let stream = loop {
                match UnixStream::connect(&sock) {
                    Ok(s) => break s,
                    Err(e) => {
                        if let Ok(Some(st)) = qemu.child.try_wait() {
                            let err = fs::read_to_string(dir.join("qemu.err")).unwrap_or_default();
                            panic!("qemu exited early ({st}): {err}");
                        }
                        assert!(
                            Instant::now() < deadline,
                            "cannot connect to {}: {e}",
                            sock.display()
                        );
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            };
            stream
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let writer = stream.try_clone().unwrap();
            Guest {
                qemu,
                reader: BufReader::new(stream),
                writer,
                buf: Vec::new(),
                booted,
                deadline,
            }
        }

        /// The next guest line (printed with its time since boot).
        /// Panics on a guest error line, a QEMU exit or the deadline.
        fn next(&mut self) -> GuestLine {
            loop {
                assert!(
                    Instant::now() < self.deadline,
                    "timed out waiting for the guest"
                );
                if let Ok(Some(st)) = self.qemu.child.try_wait() {
                    panic!("qemu exited ({st})");
                }
                match self.reader.read_until(b'\n', &mut self.buf) {
                    Ok(0) => panic!("console closed"),
                    Ok(_) if self.buf.ends_with(b"\n") => {}
                    Ok(_) => continue,
                    // A timeout keeps the partial line in `buf`; go on reading.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue
                    }
                    Err(e) => panic!("console read: {e}"),
                }
                let line = String::from_utf8_lossy(&self.buf).into_owned();
                self.buf.clear();
                let Some(l) = parse_line(&line) else { continue };
                eprintln!(
                    "[{:5.1}s] {}",
                    self.booted.elapsed().as_secs_f64(),
                    line.trim_end()
                );
                if let GuestLine::Error(e) = l {
                    panic!("guest reported an error: {}", e.message);
                }
                return l;
            }
        }

        fn send(&mut self, command: GuestCommand) {
            self.writer.write_all(command.line().as_bytes()).unwrap();
        }
    }

    fn image_for_tests() -> GuestImage {
        let mut opts = ImageOptions::from_env();
        opts.progress = true;
        let t = Instant::now();
        let img = ensure_guest_image(&opts).expect("building the guest image");
        eprintln!(
            "image {} ({}) ready in {:.1}s",
            img.id,
            img.kernel_version,
            t.elapsed().as_secs_f64()
        );
        img
    }

    /// Builds the image, boots it under TCG, waits for the workload, asks for
    /// a verify sweep and expects it to pass.
    #[test]
    fn guest_image_boots_and_verifies() {
        let opts = ImageOptions::from_env();
        let img = image_for_tests();
        let t = Instant::now();
        let again = ensure_guest_image(&ImageOptions {
            progress: false,
            ..opts.clone()
        })
        .unwrap();
        assert_eq!(again, img);
        eprintln!("cached image lookup took {:.2}s", t.elapsed().as_secs_f64());

        let tmp = tempfile::tempdir().unwrap();
        let mut g = Guest::boot(
            &img,
            tmp.path(),
            "pacer.workload=memwrite pacer.wss_mib=64 pacer.rate_mbps=20 pacer.status_ms=1000",
            &[],
            Duration::from_secs(90),
        );
        let mut ready_at = None;
        let mut verify_sent = false;
        let verify = loop {
            match g.next() {
                GuestLine::Ready(r) => {
                    assert_eq!((r.workload.as_str(), r.wss_mib), ("memwrite", 64));
                    ready_at = Some(g.booted.elapsed());
                }
                GuestLine::Status(s) if ready_at.is_some() && !verify_sent => {
                    assert_eq!(s.errors, 0);
                    if s.pages_written > 0 {
                        g.send(GuestCommand::Verify);
                        verify_sent = true;
                    }
                }
                GuestLine::Verify(v) if verify_sent => break v,
                _ => {}
            }
        };
        assert!(verify.ok, "{verify:?}");
        assert_eq!(verify.pages_checked, 64 * 256);
        assert_eq!(verify.bad_pages, 0);
        assert!(verify.disk_ok, "{verify:?}");
        assert_eq!(verify.disk_blocks_checked, 0);
        eprintln!(
            "boot to ready: {:.1}s; verify answered after {:.1}s",
            ready_at.unwrap().as_secs_f64(),
            g.booted.elapsed().as_secs_f64()
        );
    }

    /// Boots the apps initramfs once per application (32 MiB data set), waits
    /// for it to run under its load, and expects `verify` to find it ok.
    #[test]
    fn guest_image_runs_apps() {
        let img = image_for_tests();
        let apps_img = GuestImage {
            initrd: img.initrd_apps.clone(),
            ..img.clone()
        };
        // PACER_TEST_APPS=zstd,redis runs only those.
        let apps = std::env::var("PACER_TEST_APPS")
            .unwrap_or_else(|_| "redis,memcached,stress-ng,zstd".into());
        for app in apps.split(',') {
            let tmp = tempfile::tempdir().unwrap();
            let mut g = Guest::boot(
                &apps_img,
                tmp.path(),
                &format!("pacer.app={app} pacer.app_mib=32 pacer.app_rate=5 pacer.status_ms=1000"),
                &[],
                Duration::from_secs(120),
            );
            let mut runs = 0;
            let verify = loop {
                match g.next() {
                    GuestLine::Ready(r) => {
                        assert_eq!(r.app.as_deref(), Some(app), "{r:?}");
                        assert_eq!(r.wss_mib, 4, "{r:?}");
                    }
                    GuestLine::Status(s) => {
                        assert_eq!(s.app.as_deref(), Some(app), "{s:?}");
                        assert_ne!(s.app_phase, Some(pacer_guest_proto::AppPhase::Failed));
                        if s.app_phase == Some(pacer_guest_proto::AppPhase::Run) {
                            runs += 1;
                            // A few seconds under load (a zstd round done).
                            if runs == 4 {
                                g.send(GuestCommand::Verify);
                            }
                        }
                    }
                    GuestLine::Verify(v) => break v,
                    _ => {}
                }
            };
            assert_eq!(verify.app.as_deref(), Some(app));
            assert!(verify.ok && verify.app_is_ok(), "{app}: {verify:?}");
            eprintln!("{app}: {:?} after {:.1}s", verify.app_detail, g.booted.elapsed().as_secs_f64());
        }
    }

    /// Boots with a 64 MiB raw virtio-blk disk and the disk workload on
    /// /dev/vda: the initial fill, rate-limited O_DIRECT writes, then a
    /// verify sweep over memory and disk that must pass; afterwards the
    /// image file on the host holds the guest's block format.
    #[test]
    fn guest_image_disk_workload_verifies() {
        const DISK_MIB: u64 = 64;
        let img = image_for_tests();
        let tmp = tempfile::tempdir().unwrap();
        let disk = tmp.path().join("disk.raw");
        fs::File::create(&disk)
            .unwrap()
            .set_len(DISK_MIB << 20)
            .unwrap();
        let extra: Vec<String> = [
            "-blockdev".to_string(),
            format!("driver=file,filename={},node-name=f0", disk.display()),
            "-blockdev".into(),
            "driver=raw,file=f0,node-name=d0".into(),
            "-device".into(),
            "virtio-blk-pci,drive=d0".into(),
        ]
        .into();
        let mut g = Guest::boot(
            &img,
            tmp.path(),
            "pacer.workload=memwrite pacer.wss_mib=32 pacer.rate_mbps=5 pacer.status_ms=1000 \
             pacer.disk=/dev/vda pacer.disk_rate_mbps=5",
            &extra,
            Duration::from_secs(180),
        );
        let mut ready_at = None;
        let mut filled_at = None;
        let mut verify_sent = None;
        let mut last_written = 0;
        let verify = loop {
            match g.next() {
                GuestLine::Ready(r) => {
                    assert_eq!(r.disk.as_deref(), Some("/dev/vda"), "{r:?}");
                    assert_eq!(r.disk_dev_bytes, Some(DISK_MIB << 20));
                    assert_eq!(r.disk_span_bytes, Some(DISK_MIB << 20));
                    assert_eq!(r.disk_bs, Some(65536));
                    assert_eq!(r.disk_direct, Some(true), "{r:?}");
                    ready_at = Some(g.booted.elapsed());
                }
                GuestLine::DiskFilled(f) => {
                    assert_eq!(f.bytes, DISK_MIB << 20);
                    filled_at = Some(g.booted.elapsed());
                }
                GuestLine::Status(s) if ready_at.is_some() && verify_sent.is_none() => {
                    assert_eq!((s.errors, s.disk_errors), (0, 0), "{s:?}");
                    assert!(s.disk_written_bytes >= last_written, "{s:?}");
                    last_written = s.disk_written_bytes;
                    // Let the writer run for a couple of seconds first.
                    if s.disk_written_bytes >= 5_000_000 {
                        assert_eq!(s.disk_phase, DiskPhase::Write, "{s:?}");
                        g.send(GuestCommand::Verify);
                        verify_sent = Some(Instant::now());
                    }
                }
                GuestLine::Verify(v) if verify_sent.is_some() => break v,
                _ => {}
            }
        };
        let verify_secs = verify_sent.unwrap().elapsed().as_secs_f64();
        assert!(verify.ok && verify.mem_ok && verify.disk_ok, "{verify:?}");
        assert_eq!(verify.disk_blocks_checked, (DISK_MIB << 20) / 4096);
        assert_eq!(verify.disk_bad_blocks, 0);
        assert_eq!(verify.disk_unknown_blocks, Some(0));
        // Writes go on after the sweep.
        let after = loop {
            if let GuestLine::Status(s) = g.next() {
                break s;
            }
        };
        assert_eq!(after.disk_errors, 0);
        eprintln!(
            "boot to ready {:.1}s, fill done {:.1}s, verify answered in {verify_secs:.2}s \
             (disk sweep {:?} ms), status after: {after:?}",
            ready_at.unwrap().as_secs_f64(),
            filled_at.unwrap().as_secs_f64(),
            verify.disk_duration_ms,
        );
        drop(g);
        // The writes reached the image file: every 4 KiB block starts with
        // the disk magic ("PACERDK1") and its own index.
        let data = fs::read(&disk).unwrap();
        assert_eq!(data.len() as u64, DISK_MIB << 20);
        for (i, block) in data.chunks_exact(4096).enumerate() {
            let word = |k: usize| u64::from_le_bytes(block[k * 8..k * 8 + 8].try_into().unwrap());
            assert_eq!(word(0), 0x5041_4345_5244_4B31, "block {i}");
            assert_eq!(word(1), i as u64, "block {i}");
            assert!(word(2) >= 1, "block {i}");
        }
    }
}
