//! `pacer vm ...`: start, list, show, stop, adopt, console, verify.

use anyhow::{bail, Result};
use pacer_api::{
    AccelChoice, AdoptRequest, AppWorkload, DiskWorkload, IntegrityResult, VmInfo, VmSpec,
    Workload, APP_KINDS,
};
use pacer_model::format_bytes;

use crate::hosts::Hosts;

/// Options of `pacer vm start`.
#[derive(Debug, Clone, clap::Args)]
pub struct StartOpts {
    /// VM name.
    pub name: String,
    /// Host to start it on.
    #[arg(long)]
    pub host: String,
    /// Guest memory, e.g. 1G or 512M.
    #[arg(long, default_value = "1G", value_parser = parse_mib)]
    pub memory: u64,
    /// Virtual CPUs.
    #[arg(long, default_value_t = 1)]
    pub vcpus: u32,
    /// Kernel to boot [default: the Pacer guest image, built if needed].
    #[arg(long)]
    pub kernel: Option<String>,
    /// Initramfs [default: the Pacer guest image].
    #[arg(long)]
    pub initrd: Option<String>,
    /// Extra kernel command line.
    #[arg(long)]
    pub append: Option<String>,
    /// Disk image to attach (raw or qcow2; repeat for more: /dev/vda, /dev/vdb...).
    #[arg(long)]
    pub disk: Vec<String>,
    /// Guest disk writer: MB/s written to /dev/vda (needs --disk; 0 = none).
    #[arg(long, default_value = "0", value_parser = parse_rate_mbps)]
    pub disk_write_rate: f64,
    /// Disk writer block size in KiB.
    #[arg(long, default_value_t = 64)]
    pub disk_block_kib: u64,
    /// Disk writer pattern: seq, uniform or hot.
    #[arg(long, default_value = "uniform")]
    pub disk_pattern: String,
    /// Guest workload: idle or memwrite (the Pacer guest program).
    #[arg(long, default_value = "idle")]
    pub workload: String,
    /// Working-set size of the workload, e.g. 256M.
    #[arg(long, default_value = "256M", value_parser = parse_mib)]
    pub wss: u64,
    /// Memory write rate, e.g. 60MB/s.
    #[arg(long, default_value = "60MB/s", value_parser = parse_rate_mbps)]
    pub write_rate: f64,
    /// Fraction of the working set that is hot (0 = uniform writes).
    #[arg(long, default_value_t = 0.0)]
    pub hot_fraction: f64,
    /// Fraction of writes going to the hot set.
    #[arg(long, default_value_t = 0.0)]
    pub hot_share: f64,
    /// Start with the memory writer paused (resume it on the guest's console: `resume`).
    #[arg(long)]
    pub paused: bool,
    /// Fraction of the working set whose content is this guest's own; the rest is
    /// what every Pacer guest holds (content a gang of guests shares), 0-1.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    pub unique: f64,
    /// Accelerator: auto (KVM if it really works here), kvm or tcg.
    #[arg(long, default_value = "auto", value_parser = parse_accel)]
    pub accel: AccelChoice,
    /// A real application as the workload: redis, memcached, stress-ng or zstd (boots
    /// the image's initrd-apps.img; with --workload idle the guest's own pages shrink to 4 MiB).
    #[arg(long, value_parser = parse_app)]
    pub app: Option<String>,
    /// The application's data set: MiB, or a size such as 128M.
    #[arg(long, default_value = "64", value_parser = parse_app_mib)]
    pub app_mib: u64,
    /// The rate the application's load aims at: MB/s, or a rate such as 10MB/s.
    #[arg(long, default_value = "10", value_parser = parse_app_rate)]
    pub app_rate: f64,
}

/// The guest program's own pages beside an application: a canary `verify` sweeps.
const APP_CANARY_MIB: u64 = 4;

impl StartOpts {
    /// The CLI's defaults for a VM `name` on `host` (for callers other than clap).
    pub fn new(name: &str, host: &str) -> Self {
        StartOpts {
            name: name.into(),
            host: host.into(),
            memory: 1024,
            vcpus: 1,
            kernel: None,
            initrd: None,
            append: None,
            disk: Vec::new(),
            disk_write_rate: 0.0,
            disk_block_kib: 64,
            disk_pattern: "uniform".into(),
            workload: "idle".into(),
            wss: 256,
            write_rate: 60.0,
            hot_fraction: 0.0,
            hot_share: 0.0,
            paused: false,
            unique: 0.0,
            accel: AccelChoice::Auto,
            app: None,
            app_mib: 64,
            app_rate: 10.0,
        }
    }
}

fn parse_app(s: &str) -> Result<String, String> {
    if APP_KINDS.contains(&s) {
        Ok(s.to_string())
    } else {
        Err(format!("unknown application {s:?}: use {}", APP_KINDS.join(", ")))
    }
}

/// A plain number is MiB; else a size (64M, 1G).
fn parse_app_mib(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err("the data set must be at least 1 MiB".into()),
        Ok(n) => Ok(n),
        Err(_) => parse_mib(s),
    }
}

/// A plain number is MB/s; else a rate (10MB/s, 80Mbit/s).
fn parse_app_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        Ok(r) => Err(format!("rate {r} is out of range: give 0 or more MB/s")),
        Err(_) => parse_rate_mbps(s),
    }
}

fn parse_mib(s: &str) -> Result<u64, String> {
    let b = pacer_model::parse_nonzero_size(s).map_err(|e| e.to_string())?;
    if b < (1 << 20) {
        return Err(format!("{s:?} is less than 1 MiB"));
    }
    Ok(b >> 20)
}

fn parse_rate_mbps(s: &str) -> Result<f64, String> {
    if s.trim() == "0" {
        return Ok(0.0);
    }
    Ok(pacer_model::parse_bandwidth(s).map_err(|e| e.to_string())? as f64 / 1e6)
}

fn parse_accel(s: &str) -> Result<AccelChoice, String> {
    match s {
        "auto" => Ok(AccelChoice::Auto),
        "kvm" => Ok(AccelChoice::Kvm),
        "tcg" => Ok(AccelChoice::Tcg),
        _ => Err(format!("unknown accelerator {s:?}: use auto, kvm or tcg")),
    }
}

/// Builds the spec, filling in the Pacer guest image when no kernel is given.
pub fn spec_from(opts: &StartOpts) -> Result<VmSpec> {
    let app = opts.app.as_ref().map(|kind| AppWorkload {
        kind: kind.clone(),
        mib: opts.app_mib,
        rate: opts.app_rate,
    });
    if let Some(a) = &app {
        a.check().map_err(|e| anyhow::anyhow!("--app: {e}"))?;
    }
    let (kernel, initrd) = match (&opts.kernel, &opts.initrd) {
        (None, None) => {
            let img = pacer_guest_image()?;
            let initrd = match (&app, img.initrd_apps) {
                (None, _) => img.initrd,
                (Some(_), Some(apps)) => apps,
                (Some(a), None) => bail!(
                    "--app {}: `pacer-lab image` names no initrd-apps.img (an older pacer-lab?): \
                     rebuild it, or give --kernel and an --initrd that carries the applications",
                    a.kind
                ),
            };
            (Some(img.kernel), Some(initrd))
        }
        (k, i) => (k.clone(), i.clone()),
    };
    let workload = Workload {
        kind: opts.workload.clone(),
        wss_mib: if app.is_some() && opts.workload == "idle" { APP_CANARY_MIB } else { opts.wss },
        rate_mbps: if opts.workload == "idle" { 0.0 } else { opts.write_rate },
        hot_fraction: opts.hot_fraction,
        hot_share: opts.hot_share,
        paused: opts.paused,
        unique: opts.unique,
        disk: (opts.disk_write_rate > 0.0).then(|| DiskWorkload {
            device: "/dev/vda".into(),
            rate_mbps: opts.disk_write_rate,
            bs_kib: opts.disk_block_kib,
            pattern: opts.disk_pattern.clone(),
            hot_fraction: 0.1,
            span_mib: None,
            fill: true,
        }),
        app,
    };
    if workload.disk.is_some() && opts.disk.is_empty() {
        anyhow::bail!("--disk-write-rate needs a disk: give --disk IMAGE");
    }
    Ok(VmSpec {
        name: opts.name.clone(),
        memory_mib: opts.memory,
        vcpus: opts.vcpus,
        kernel,
        initrd,
        append: opts.append.clone(),
        disks: opts.disk.clone(),
        workload: Some(workload),
        accel: opts.accel,
    })
}

/// The Pacer guest image's files, as `pacer-lab image` prints them.
struct ImagePaths {
    kernel: String,
    initrd: String,
    /// The initramfs with the applications (absent from older `pacer-lab`s).
    initrd_apps: Option<String>,
}

/// The Pacer guest's kernel and initramfs, as `pacer-lab image` (beside this
/// executable, else on PATH) builds or finds them: the CLI runs it rather than
/// link the image builder, which belongs to the lab.
fn pacer_guest_image() -> Result<ImagePaths> {
    let lab = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("pacer-lab")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| "pacer-lab".into());
    let what = "no --kernel given, and the Pacer guest image";
    let out = std::process::Command::new(&lab)
        .arg("image")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "{what} needs `pacer-lab image` ({}: {e}): build it (cargo build -p pacer-lab) or \
                 give --kernel and --initrd",
                lab.display()
            )
        })?;
    if !out.status.success() {
        bail!("{what} could not be built: `{} image` failed ({})", lab.display(), out.status);
    }
    image_paths(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| anyhow::anyhow!("{what}: `{} image` printed no kernel and initrd", lab.display()))
}

/// The `kernel PATH`, `initrd PATH` and `initrd-apps PATH` lines of `pacer-lab image`.
fn image_paths(text: &str) -> Option<ImagePaths> {
    let field = |key: &str| {
        text.lines()
            .filter(|l| !l.starts_with("kernel version "))
            .find_map(|l| l.strip_prefix(key).map(|p| p.trim().to_string()))
            .filter(|p| !p.is_empty())
    };
    Some(ImagePaths {
        kernel: field("kernel ")?,
        initrd: field("initrd ")?,
        initrd_apps: field("initrd-apps "),
    })
}

/// Starts a VM.
pub async fn start(hosts: &Hosts, opts: &StartOpts) -> Result<VmInfo> {
    let client = hosts.client(&opts.host)?;
    let spec = spec_from(opts)?;
    Ok(client.start_vm(&spec).await?)
}

/// Lists VMs of one host or all.
pub async fn list(hosts: &Hosts, host: Option<&str>) -> Result<Vec<(String, VmInfo)>> {
    let mut out = Vec::new();
    for h in &hosts.file.hosts {
        if host.is_some_and(|n| n != h.name) {
            continue;
        }
        let c = hosts.client(&h.name)?;
        match c.vms().await {
            Ok(v) => out.extend(v.into_iter().map(|i| (h.name.clone(), i))),
            Err(e) if host.is_some() => return Err(e.into()),
            Err(e) => eprintln!("warning: {}: {e}", h.name),
        }
    }
    if let Some(h) = host {
        hosts.get(h)?;
    }
    Ok(out)
}

/// Prints a VM table.
pub fn print_table(vms: &[(String, VmInfo)]) {
    println!("{:<8} {:<16} {:<12} {:>10} {:>5} {:<5} {:<12} MIGRATING", "HOST", "NAME", "STATE", "MEMORY", "VCPU", "ACCEL", "ORIGIN");
    for (h, v) in vms {
        println!(
            "{:<8} {:<16} {:<12} {:>10} {:>5} {:<5} {:<12} {}",
            h,
            v.name,
            v.state.as_str(),
            format_bytes(v.memory_mib << 20),
            v.vcpus,
            v.accel,
            format!("{:?}", v.origin).to_lowercase(),
            v.migrating.as_deref().unwrap_or("-")
        );
    }
}

/// Finds a VM's host (or uses the given one) and returns a client for it.
pub async fn host_of(hosts: &Hosts, vm: &str, host: Option<&str>) -> Result<String> {
    Ok(match host {
        Some(h) => {
            hosts.get(h)?;
            h.to_string()
        }
        None => hosts.locate(vm).await?.0,
    })
}

/// Shows a VM.
pub async fn show(hosts: &Hosts, vm: &str, host: Option<&str>) -> Result<VmInfo> {
    let h = host_of(hosts, vm, host).await?;
    Ok(hosts.client(&h)?.vm(vm).await?)
}

/// Stops a VM.
pub async fn stop(hosts: &Hosts, vm: &str, host: Option<&str>) -> Result<String> {
    let h = host_of(hosts, vm, host).await?;
    hosts.client(&h)?.stop_vm(vm).await?;
    Ok(h)
}

/// The tail of a VM's console.
pub async fn console(hosts: &Hosts, vm: &str, host: Option<&str>, bytes: u64) -> Result<String> {
    let h = host_of(hosts, vm, host).await?;
    Ok(hosts.client(&h)?.console(vm, bytes).await?.text)
}

/// Runs the guest memory check.
pub async fn verify(hosts: &Hosts, vm: &str, host: Option<&str>) -> Result<IntegrityResult> {
    let h = host_of(hosts, vm, host).await?;
    Ok(hosts.client(&h)?.verify(vm).await?)
}

/// Adopts a running QEMU.
pub async fn adopt(hosts: &Hosts, host: &str, req: &AdoptRequest) -> Result<VmInfo> {
    if !std::path::Path::new(&req.qmp_socket).exists() {
        bail!("QMP socket {:?} does not exist", req.qmp_socket);
    }
    Ok(hosts.client(host)?.adopt_vm(req).await?)
}

/// A fraction between 0 and 1.
fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("{s:?} is not a fraction between 0 and 1 (e.g. 0.5)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(text: &str) -> Option<(String, String, Option<String>)> {
        image_paths(text).map(|p| (p.kernel, p.initrd, p.initrd_apps))
    }

    #[test]
    fn image_paths_from_lab_output() {
        let out = "kernel /c/images/ab/vmlinuz\ninitrd /c/images/ab/initrd.img\nkernel version 6.1.0-56-cloud-amd64\n";
        assert_eq!(paths(out), Some(("/c/images/ab/vmlinuz".into(), "/c/images/ab/initrd.img".into(), None)));
        let reordered = "kernel version 6.1\ninitrd-apps /a\ninitrd /i\nkernel /k\n";
        assert_eq!(paths(reordered), Some(("/k".into(), "/i".into(), Some("/a".into()))));
        assert_eq!(image_paths("kernel /k\n").map(|p| p.kernel), None);
    }

    /// An application goes into the workload, beside a canary of the guest's own
    /// pages; unknown names and bad numbers are refused, naming what is known.
    #[test]
    fn app_options() {
        let mut o = StartOpts::new("vm", "h1");
        o.kernel = Some("/k".into());
        o.initrd = Some("/i".into());
        o.app = Some("zstd".into());
        o.app_mib = 96;
        o.app_rate = 5.0;
        let w = spec_from(&o).unwrap().workload.unwrap();
        assert_eq!(w.app, Some(AppWorkload { kind: "zstd".into(), mib: 96, rate: 5.0 }));
        assert_eq!((w.kind.as_str(), w.wss_mib), ("idle", APP_CANARY_MIB));
        o.app = Some("mysql".into());
        let e = spec_from(&o).unwrap_err().to_string();
        assert!(e.contains("use redis, memcached, stress-ng, zstd"), "{e}");
        assert!(parse_app("nginx").unwrap_err().contains("redis, memcached, stress-ng, zstd"));
        assert_eq!(parse_app_mib("128"), Ok(128));
        assert_eq!(parse_app_mib("1G"), Ok(1024));
        assert!(parse_app_mib("0").is_err());
        assert_eq!(parse_app_rate("12.5"), Ok(12.5));
        assert_eq!(parse_app_rate("20MB/s"), Ok(20.0));
        assert!(parse_app_rate("-1").is_err());
    }
}

