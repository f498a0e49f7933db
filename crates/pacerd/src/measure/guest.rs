//! Reading a guest's memory: where QEMU maps it (found in `/proc/PID/maps` by
//! size and confirmed against QEMU's `pmemsave`), and QEMU's own coarser
//! sampling where it cannot be read.

use std::time::{Duration, Instant};

use pacer_qemu::guest_ram::{confirms, ram_offset_to_gpa, GuestRam, PAGE};
use pacer_qemu::QmpClient;
use serde_json::json;
use tracing::info;

use crate::vms::Registry;

/// Windows (s) of QEMU's page sampling, where guest memory cannot be read.
const QEMU_WINDOWS_S: [u64; 2] = [1, 4];
/// Pages sampled with `pmemsave` for the zero-page fraction (fallback).
const ZERO_SAMPLES: usize = 384;

/// Where guest memory cannot be read: the dirtying curve from QEMU's sampling over
/// 1 and 4 s, and the zero fraction from `pmemsave`d pages.
pub async fn measure_with_qemu(
    qmp: &QmpClient,
    ram_bytes: u64,
    scratch: &std::path::Path,
) -> Result<(Vec<(f64, f64)>, f64), String> {
    let mut points = Vec::new();
    for w in QEMU_WINDOWS_S {
        points.push((w as f64, dirtied_bytes(qmp, w).await?));
    }
    let z = zero_fraction_sampled(qmp, ram_bytes, scratch).await?;
    Ok((points, z))
}

/// Distinct bytes the guest dirties in `secs` (QEMU page sampling, 4096 pages per GiB).
async fn dirtied_bytes(qmp: &QmpClient, secs: u64) -> Result<f64, String> {
    qmp.execute(
        "calc-dirty-rate",
        Some(json!({"calc-time": secs, "mode": "page-sampling", "sample-pages": 4096})),
    )
    .await
    .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(secs + 5);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = qmp.execute("query-dirty-rate", None).await.map_err(|e| e.to_string())?;
        if r.get("status").and_then(|s| s.as_str()) == Some("measured") {
            // QEMU reports whole MiB/s over the window, rounded down: take the middle.
            let mib_s = r.get("dirty-rate").and_then(|v| v.as_f64()).unwrap_or(0.0);
            let mib_s = if mib_s > 0.0 { mib_s + 0.5 } else { 0.0 };
            return Ok(mib_s * (1 << 20) as f64 * secs as f64);
        }
        if Instant::now() > deadline {
            return Err("QEMU did not finish measuring the dirty rate".into());
        }
    }
}

/// One page of guest memory at a guest-physical address, read by QEMU (`pmemsave`).
async fn pmem_page(qmp: &QmpClient, gpa: u64, scratch: &std::path::Path) -> Result<Vec<u8>, String> {
    qmp.execute(
        "pmemsave",
        Some(json!({"val": gpa, "size": PAGE, "filename": scratch.display().to_string()})),
    )
    .await
    .map_err(|e| e.to_string())?;
    std::fs::read(scratch).map_err(|e| e.to_string())
}

/// Fraction of guest RAM that is zero pages, from `ZERO_SAMPLES` random pages (`pmemsave`).
async fn zero_fraction_sampled(qmp: &QmpClient, ram_bytes: u64, scratch: &std::path::Path) -> Result<f64, String> {
    use rand::Rng;
    let pages = ram_bytes / PAGE;
    let picks: Vec<u64> = {
        let mut rng = rand::thread_rng();
        (0..ZERO_SAMPLES).map(|_| rng.gen_range(0..pages) * PAGE).collect()
    };
    let mut zero = 0usize;
    for p in picks {
        let page = pmem_page(qmp, ram_offset_to_gpa(p, ram_bytes), scratch).await?;
        zero += page.iter().all(|b| *b == 0) as usize;
    }
    let _ = std::fs::remove_file(scratch);
    Ok(zero as f64 / ZERO_SAMPLES as f64)
}

/// Finds the mapping of `vm`'s guest RAM in QEMU's address space.
pub async fn locate_ram(vms: &Registry, vm: &str, pid: i32, ram_bytes: u64) -> Result<GuestRam, String> {
    let found = find_ram(vms, vm, pid, ram_bytes).await;
    match &found {
        Ok(_) => info!("{vm}: measuring guest memory directly (QEMU pid {pid})"),
        Err(e) => info!("{vm}: guest memory not readable here ({e}); using QEMU's sampling"),
    }
    found
}

async fn find_ram(vms: &Registry, vm: &str, pid: i32, ram_bytes: u64) -> Result<GuestRam, String> {
    let candidates = tokio::task::spawn_blocking(move || GuestRam::candidates(pid, ram_bytes))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let qmp = vms.qmp(vm).await.map_err(|e| e.to_string())?;
    let scratch = vms.vm_dir(vm).join("page.sample");
    let n = candidates.len();
    for ram in candidates {
        let ours = ram.nonzero_pages(5).map_err(|e| e.to_string())?;
        let mut theirs = Vec::with_capacity(ours.len());
        for (off, _) in &ours {
            theirs.push(pmem_page(&qmp, ram_offset_to_gpa(*off, ram_bytes), &scratch).await?);
        }
        let _ = std::fs::remove_file(&scratch);
        if confirms(&ours, &theirs) {
            return Ok(ram);
        }
    }
    Err(format!("none of {n} mappings of {ram_bytes} bytes in QEMU pid {pid} holds the guest's pages"))
}

