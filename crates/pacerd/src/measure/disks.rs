//! Where a guest writes on its disks: sampled image blocks, hashed now and again
//! after a window, give a write rate per region (the per-region disk model).

use std::time::Duration;

use pacer_model::disk_regions::RegionWrites;
use tokio_util::task::AbortOnDropHandle;

use crate::vms::VmRecord;

/// Regions per disk of the per-region write model, and blocks sampled per disk.
const DISK_REGIONS: usize = 64;
const DISK_SAMPLES: usize = 8192;

/// Starts sampling where the guest writes on its disks (over `window`, the memory
/// curve's longest); `None` for a VM without disks.
pub fn disk_writes(
    rec: &VmRecord,
    window: Duration,
) -> impl std::future::Future<Output = Result<Option<RegionWrites>, String>> {
    let paths: Vec<String> = rec.spec.as_ref().map(|s| s.disks.clone()).unwrap_or_default();
    // Runs beside the memory measurement; aborted if that is dropped (cancelled).
    let task = AbortOnDropHandle::new(tokio::spawn(async move {
        if paths.is_empty() {
            return Ok(None);
        }
        let mut layouts = Vec::new();
        for p in &paths {
            let path = std::path::Path::new(p);
            let info = pacer_qemu::image::image_info(path).await.map_err(|e| e.to_string())?;
            layouts.push(
                pacer_qemu::disk_sample::layout(path, &info.format, info.virtual_size)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let regions = tokio::task::spawn_blocking(move || {
            pacer_qemu::disk_sample::sample_writes(&layouts, DISK_REGIONS, DISK_SAMPLES, window)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("reading disk images: {e}"))?;
        Ok(RegionWrites::from_samples(&regions, window.as_secs_f64()))
    }));
    async move { task.await.map_err(|e| e.to_string())? }
}

