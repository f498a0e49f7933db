//! Disk images through `qemu-img`: what an image is (format, sizes, backing
//! file) and creating target images for storage migration.

use std::path::Path;
use std::process::Stdio;

use serde::{Deserialize, Serialize};

/// What `qemu-img info` says about an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// `raw` or `qcow2` (others are refused by callers).
    pub format: String,
    /// Size the guest sees, bytes.
    pub virtual_size: u64,
    /// Bytes allocated on the host.
    pub actual_size: u64,
    /// Backing file, if any (as recorded in the image).
    pub backing: Option<String>,
    /// Backing file format.
    pub backing_format: Option<String>,
}

/// Errors from `qemu-img`.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// qemu-img could not run.
    #[error("cannot run qemu-img: {0} (install qemu-utils)")]
    Spawn(std::io::Error),
    /// qemu-img failed.
    #[error("qemu-img {what} failed: {stderr}")]
    Failed { what: String, stderr: String },
    /// qemu-img said something unexpected.
    #[error("cannot read qemu-img output: {0}")]
    Parse(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawInfo {
    format: String,
    virtual_size: u64,
    #[serde(default)]
    actual_size: u64,
    #[serde(default)]
    backing_filename: Option<String>,
    #[serde(default)]
    full_backing_filename: Option<String>,
    #[serde(default)]
    backing_filename_format: Option<String>,
}

/// Runs `qemu-img ARGS` (`what` names the command in errors) and returns its stdout.
pub(crate) async fn qemu_img(args: &[&std::ffi::OsStr], what: String) -> Result<Vec<u8>, ImageError> {
    let out = tokio::process::Command::new("qemu-img")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(ImageError::Spawn)?;
    if !out.status.success() {
        return Err(ImageError::Failed {
            what,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// Reads an image's metadata (with `-U`: the image may be in use by QEMU).
pub async fn image_info(path: &Path) -> Result<ImageInfo, ImageError> {
    let out = qemu_img(
        &["info".as_ref(), "-U".as_ref(), "--output=json".as_ref(), path.as_os_str()],
        format!("info {}", path.display()),
    )
    .await?;
    let raw: RawInfo =
        serde_json::from_slice(&out).map_err(|e| ImageError::Parse(e.to_string()))?;
    Ok(ImageInfo {
        format: raw.format,
        virtual_size: raw.virtual_size,
        actual_size: raw.actual_size,
        backing: raw.full_backing_filename.or(raw.backing_filename),
        backing_format: raw.backing_filename_format,
    })
}

/// Creates an image: `qcow2` or `raw` of `size` bytes, optionally over a backing file.
pub async fn create_image(
    path: &Path,
    format: &str,
    size: u64,
    backing: Option<(&str, &str)>,
) -> Result<(), ImageError> {
    let size = size.to_string();
    let mut args: Vec<&std::ffi::OsStr> =
        vec!["create".as_ref(), "-q".as_ref(), "-f".as_ref(), format.as_ref()];
    if let Some((file, fmt)) = backing {
        args.extend::<[&std::ffi::OsStr; 4]>(["-b".as_ref(), file.as_ref(), "-F".as_ref(), fmt.as_ref()]);
    }
    args.extend::<[&std::ffi::OsStr; 2]>([path.as_os_str(), size.as_ref()]);
    qemu_img(&args, format!("create {}", path.display())).await?;
    Ok(())
}

/// Free bytes for an unprivileged writer on the filesystem holding `dir`.
pub fn free_space(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_and_inspect_qcow2_over_a_backing_file() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("base.qcow2");
        create_image(&base, "qcow2", 64 << 20, None).await.unwrap();
        let top = d.path().join("top.qcow2");
        create_image(&top, "qcow2", 64 << 20, Some((base.to_str().unwrap(), "qcow2")))
            .await
            .unwrap();
        let i = image_info(&top).await.unwrap();
        assert_eq!(i.format, "qcow2");
        assert_eq!(i.virtual_size, 64 << 20);
        assert_eq!(i.backing.as_deref(), base.to_str());
        let raw = d.path().join("r.img");
        create_image(&raw, "raw", 1 << 20, None).await.unwrap();
        assert_eq!(image_info(&raw).await.unwrap().format, "raw");
        assert!(image_info(&d.path().join("missing")).await.is_err());
        assert!(free_space(d.path()).unwrap() > 0);
    }
}
