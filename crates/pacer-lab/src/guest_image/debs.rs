//! Debian packages: `apt-get download` and `dpkg-deb`, for the current cloud
//! kernel and for busybox-static, extracted once into the cache.

use super::elf::check_static_elf;
use super::{
    clean_stale_temps, io_err, nanos, publish_dir, run, say, write_synced, ImageError, Result,
};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian metapackage that names the current cloud kernel.
const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";

/// `apt-get download` into `dir`; on failure runs `apt-get update` once (the
/// package lists may be missing) and retries.
pub(super) fn apt_download(
    dir: &Path,
    spec: &str,
    updated: &mut bool,
    progress: bool,
) -> Result<()> {
    say(progress, format!("apt-get download {spec}"));
    let attempt = || {
        run(
            Command::new("apt-get")
                .current_dir(dir)
                .args(["download", spec]),
            "this needs Debian's apt",
        )
    };
    match attempt() {
        Ok(_) => Ok(()),
        Err(e)
            if !*updated
                && !matches!(&e, ImageError::Tool { message, .. } if message.starts_with("not found")) =>
        {
            say(
                progress,
                format!("apt-get download failed ({e}); running apt-get update and retrying"),
            );
            *updated = true;
            run(Command::new("apt-get").arg("update"), "")?;
            attempt().map(|_| ())
        }
        Err(e) => Err(e),
    }
}

/// The single `<name>_*.deb` in `dir`.
pub(super) fn find_deb(dir: &Path, name: &str) -> Result<PathBuf> {
    let prefix = format!("{name}_");
    fs::read_dir(dir)
        .map_err(io_err(format!("read {}", dir.display())))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .map(|f| f.to_string_lossy())
                .is_some_and(|f| f.starts_with(&prefix) && f.ends_with(".deb"))
        })
        .ok_or_else(|| ImageError::Tool {
            tool: "apt-get".into(),
            message: format!("download of {name} left no .deb in {}", dir.display()),
        })
}

/// From a Depends field, the first `linux-image-*` package (preferring a
/// `-cloud-amd64` one) as `name` or `name=version`.
fn kernel_package_from_depends(depends: &str) -> Option<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    for alt in depends.split([',', '|']) {
        let alt = alt.trim();
        let (name, rest) = alt.split_once(char::is_whitespace).unwrap_or((alt, ""));
        if !name.starts_with("linux-image-") {
            continue;
        }
        let spec = match rest
            .trim()
            .strip_prefix("(=")
            .and_then(|v| v.strip_suffix(')'))
        {
            Some(ver) => format!("{name}={}", ver.trim()),
            None => name.to_string(),
        };
        found.push((name.to_string(), spec));
    }
    found
        .iter()
        .find(|(n, _)| n.ends_with("-cloud-amd64"))
        .or(found.first())
        .cloned()
}

/// An extracted kernel package.
pub(super) struct KernelTree {
    pub(super) package: String,
    pub(super) version: String,
    pub(super) vmlinuz: PathBuf,
    pub(super) modules_dir: PathBuf,
}

fn kernel_tree(root: &Path, package: &str) -> Result<KernelTree> {
    let boot = root.join("boot");
    let vmlinuz = fs::read_dir(&boot)
        .map_err(io_err(format!("read {}", boot.display())))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| ImageError::Kernel(format!("no boot/vmlinuz-* in {}", root.display())))?;
    // Debian's layout up to bookworm is lib/modules; merged-/usr packages use usr/lib/modules.
    let mut modules_dir = None;
    for base in ["lib/modules", "usr/lib/modules"] {
        let Ok(rd) = fs::read_dir(root.join(base)) else {
            continue;
        };
        if let Some(d) = rd
            .flatten()
            .map(|e| e.path())
            .find(|p| p.join("kernel").is_dir())
        {
            modules_dir = Some(d);
            break;
        }
    }
    let modules_dir = modules_dir.ok_or_else(|| {
        ImageError::Kernel(format!(
            "no lib/modules/<version>/kernel in {}",
            root.display()
        ))
    })?;
    let version = modules_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    Ok(KernelTree {
        package: package.to_string(),
        version,
        vmlinuz,
        modules_dir,
    })
}

/// Downloads and extracts the current cloud kernel once; afterwards uses
/// the cached copy without asking apt.
pub(super) fn ensure_kernel(cache: &Path, progress: bool) -> Result<KernelTree> {
    let kdir = cache.join("kernel");
    let current = kdir.join("current");
    if let Ok(pkg) = fs::read_to_string(&current) {
        let pkg = pkg.trim();
        if !pkg.is_empty() {
            if let Ok(t) = kernel_tree(&kdir.join(pkg), pkg) {
                return Ok(t);
            }
        }
    }
    fs::create_dir_all(&kdir).map_err(io_err(format!("create {}", kdir.display())))?;
    clean_stale_temps(&kdir);
    let tmp = kdir.join(format!(".tmp-{}-{}", std::process::id(), nanos()));
    fs::create_dir_all(&tmp).map_err(io_err(format!("create {}", tmp.display())))?;
    let res = (|| -> Result<String> {
        let mut updated = false;
        apt_download(&tmp, KERNEL_METAPACKAGE, &mut updated, progress)?;
        let meta = find_deb(&tmp, KERNEL_METAPACKAGE)?;
        let out = run(
            Command::new("dpkg-deb").arg("-f").arg(&meta).arg("Depends"),
            "this needs Debian's dpkg",
        )?;
        let depends = String::from_utf8_lossy(&out.stdout).into_owned();
        let (pkg, spec) = kernel_package_from_depends(&depends).ok_or_else(|| {
            ImageError::Kernel(format!(
                "{KERNEL_METAPACKAGE} depends on no linux-image-*: {depends:?}"
            ))
        })?;
        apt_download(&tmp, &spec, &mut updated, progress)?;
        let deb = find_deb(&tmp, &pkg)?;
        let root = tmp.join("root");
        say(progress, format!("dpkg-deb -x {}", deb.display()));
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root), "")?;
        kernel_tree(&root, &pkg)?; // check before publishing
        publish_dir(&root, &kdir.join(&pkg), |d| kernel_tree(d, &pkg).is_ok())?;
        Ok(pkg)
    })();
    let _ = fs::remove_dir_all(&tmp);
    let pkg = res?;
    let cur_tmp = kdir.join(format!(".current-{}-{}", std::process::id(), nanos()));
    write_synced(&cur_tmp, format!("{pkg}\n").as_bytes())?;
    fs::rename(&cur_tmp, &current).map_err(io_err(format!("rename to {}", current.display())))?;
    let t = kernel_tree(&kdir.join(&pkg), &pkg)?;
    say(
        progress,
        format!(
            "kernel {} from {pkg} cached in {}",
            t.version,
            kdir.display()
        ),
    );
    Ok(t)
}

/// A static busybox: the host's /bin/busybox if it is busybox-static,
/// else busybox-static downloaded and extracted into the cache.
pub(super) fn ensure_busybox(cache: &Path, progress: bool) -> Result<PathBuf> {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if let Ok(b) = fs::read(p) {
            if check_static_elf(&b, p).is_ok() {
                return Ok(PathBuf::from(p));
            }
        }
    }
    say(
        progress,
        "no static busybox on the host; using Debian's busybox-static",
    );
    fetch_busybox_static(cache, progress)
}

/// busybox-static from Debian, downloaded and extracted once into the cache.
fn fetch_busybox_static(cache: &Path, progress: bool) -> Result<PathBuf> {
    let bdir = cache.join("busybox");
    let bin = bdir.join("busybox-static/bin/busybox");
    if bin.is_file() {
        return Ok(bin);
    }
    fs::create_dir_all(&bdir).map_err(io_err(format!("create {}", bdir.display())))?;
    let tmp = bdir.join(format!(".tmp-{}-{}", std::process::id(), nanos()));
    fs::create_dir_all(&tmp).map_err(io_err(format!("create {}", tmp.display())))?;
    let res = (|| -> Result<()> {
        let mut updated = false;
        apt_download(&tmp, "busybox-static", &mut updated, progress)?;
        let deb = find_deb(&tmp, "busybox-static")?;
        let root = tmp.join("root");
        run(
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
            "this needs Debian's dpkg",
        )?;
        let found = ["bin/busybox", "usr/bin/busybox"]
            .iter()
            .map(|p| root.join(p))
            .find(|p| p.is_file());
        let found =
            found.ok_or_else(|| ImageError::Input("busybox-static has no bin/busybox".into()))?;
        let data = fs::read(&found).map_err(io_err(format!("read {}", found.display())))?;
        check_static_elf(&data, "busybox-static's busybox")?;
        let stage = tmp.join("stage");
        fs::create_dir_all(stage.join("bin"))
            .map_err(io_err(format!("create {}", stage.display())))?;
        write_synced(&stage.join("bin/busybox"), &data)?;
        publish_dir(&stage, &bdir.join("busybox-static"), |d| {
            d.join("bin/busybox").is_file()
        })
    })();
    let _ = fs::remove_dir_all(&tmp);
    res?;
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_field_parsing() {
        assert_eq!(
            kernel_package_from_depends("linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)\n"),
            Some((
                "linux-image-6.1.0-56-cloud-amd64".into(),
                "linux-image-6.1.0-56-cloud-amd64=6.1.192-2".into()
            ))
        );
        assert_eq!(
            kernel_package_from_depends("foo, linux-image-6.12.9-cloud-amd64"),
            Some((
                "linux-image-6.12.9-cloud-amd64".into(),
                "linux-image-6.12.9-cloud-amd64".into()
            ))
        );
        assert_eq!(kernel_package_from_depends("libc6 (>= 2.36)"), None);
    }

    #[test]
    fn busybox_static_from_package() {
        let cache = tempfile::tempdir().unwrap();
        let bin =
            fetch_busybox_static(cache.path(), true).expect("busybox-static via apt-get download");
        let data = fs::read(&bin).unwrap();
        check_static_elf(&data, "busybox").unwrap();
        // Cached: the second call does not download.
        assert_eq!(fetch_busybox_static(cache.path(), false).unwrap(), bin);
    }
}
