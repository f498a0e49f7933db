//! `pacer demo`: make two test hosts joined by a 1 Gbit/s link, start a 1 GiB
//! guest writing memory on the first, migrate it live to the second with the
//! progress display, show it running there with its memory check passing, print a
//! summary and remove the test bed.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use pacer_api::{AccelChoice, JobStatus, Strategy};
use crate::bed;

use pacer_cli::hosts::Hosts;
use pacer_cli::{migrate, vm};

/// Options of the demo.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOpts {
    /// Print the migration's JSON result as the last line.
    #[arg(long)]
    pub json: bool,
    /// Link rate between the two hosts.
    #[arg(long, default_value = "1gbit")]
    pub rate: String,
    /// Guest memory.
    #[arg(long, default_value = "1G")]
    pub memory: String,
    /// Guest memory write rate.
    #[arg(long, default_value = "60MB/s")]
    pub write_rate: String,
    /// Strategy.
    #[arg(long, default_value = "pre-copy")]
    pub strategy: String,
    /// Keep the test bed afterwards (remove it with `pacer testbed down --name demo`).
    #[arg(long)]
    pub keep: bool,
}

/// Removes the test bed when dropped (also on error).
pub struct BedGuard {
    /// The test bed.
    pub bed: bed::Bed,
    keep: bool,
}

impl BedGuard {
    /// Builds a test bed that is torn down on drop unless `keep`.
    pub fn up(name: &str, hosts: usize, rate: &str, keep: bool) -> Result<Self> {
        let root = bed::default_root();
        // A leftover from an interrupted run is ours to clear.
        let _ = bed::down(&root, name);
        let rate_bps = crate::net::parse_rate(rate)?;
        let b = bed::up(&bed::BedOptions {
            name: name.into(),
            hosts,
            rate_bps,
            pacerd: crate::bed::find_pacerd(),
            root,
            memory_capacity: None,
            incoming_lease_s: None,
        })?;
        if !b.shaped {
            eprintln!("warning: not root: test hosts share loopback and links are NOT shaped");
        }
        Ok(BedGuard { bed: b, keep })
    }

    /// The hosts of this test bed.
    pub fn hosts(&self) -> Result<Hosts> {
        Hosts::load(Some(self.bed.hosts_file()))
    }
}

impl Drop for BedGuard {
    fn drop(&mut self) {
        if !self.keep {
            let _ = bed::down(&bed::default_root(), &self.bed.name);
        }
    }
}

/// Waits until the guest program reports status (it has filled its working set).
pub async fn wait_guest_ready(hosts: &Hosts, vm: &str, host: &str, timeout: Duration) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let text = vm::console(hosts, vm, Some(host), 64 * 1024).await?;
        if text.contains("PACER {\"kind\":\"status\"") {
            return Ok(());
        }
        if t0.elapsed() > timeout {
            let tail: String = text.chars().rev().take(2000).collect::<Vec<_>>().into_iter().rev().collect();
            bail!("guest {vm} did not report ready within {} s; console:\n{tail}", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn step(msg: &str) {
    eprintln!("\n==> {msg}");
}

/// Runs the demo.
pub async fn run(opts: &DemoOpts) -> Result<i32> {
    let t0 = Instant::now();
    step("building the guest image (cached after the first run)");
    let mut img_opts = crate::guest_image::ImageOptions::from_env();
    img_opts.progress = true;
    let img = crate::guest_image::ensure_guest_image(&img_opts)?;
    eprintln!("guest kernel {} ({})", img.kernel_version, img.kernel.display());

    step(&format!("creating two test hosts joined by a {} link", opts.rate));
    let guard = BedGuard::up("demo", 2, &opts.rate, opts.keep)?;
    let hosts = guard.hosts()?;
    for h in &guard.bed.hosts {
        eprintln!("  {}: {} (netns {}), agent pid {}", h.name, h.data_ip, h.netns.as_deref().unwrap_or("-"), h.pid);
    }

    step(&format!("starting a {} guest writing {} of memory on h1", opts.memory, opts.write_rate));
    let start = vm::StartOpts {
        name: "demo-vm".into(),
        host: "h1".into(),
        memory: pacer_model::parse_nonzero_size(&opts.memory)? >> 20,
        vcpus: 1,
        kernel: Some(img.kernel.display().to_string()),
        initrd: Some(img.initrd.display().to_string()),
        append: None,
        workload: "memwrite".into(),
        wss: 512,
        write_rate: pacer_model::parse_bandwidth(&opts.write_rate)? as f64 / 1e6,
        hot_fraction: 0.0,
        hot_share: 0.0,
        accel: AccelChoice::Auto,
        ..vm::StartOpts::new("", "")
    };
    let info = vm::start(&hosts, &start).await?;
    eprintln!("  started demo-vm (pid {}, accelerator {})", info.pid, info.accel);
    wait_guest_ready(&hosts, "demo-vm", "h1", Duration::from_secs(180)).await?;
    eprintln!("  guest program running: {}", last_status(&hosts, "h1").await);

    step(&format!("migrating demo-vm live from h1 to h2 ({})", opts.strategy));
    let mopts = migrate::MigrateOpts {
        to: "h2".into(),
        strategy: serde_json::from_value(serde_json::Value::String(opts.strategy.clone()))
            .map_err(|_| anyhow::anyhow!("unknown strategy {:?}", opts.strategy))?,
        bandwidth: None,
        downtime_limit: None,
        auto_converge: false,
        postcopy_after: None,
        stall_timeout: None,
        no_verify: false,
        ..migrate::MigrateOpts::new("", Strategy::PreCopy)
    };
    let result = migrate::migrate(&hosts, "demo-vm", Some("h1"), &mopts, true).await?;

    step("where the VM runs now");
    vm::print_table(&vm::list(&hosts, None).await?);
    if result.status == JobStatus::Completed {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        eprintln!("  guest on h2 says: {}", last_status(&hosts, "h2").await);
    }

    step("summary");
    println!("{}", migrate::summary(&result));
    eprintln!("(demo took {:.0} s)", t0.elapsed().as_secs_f64());
    drop(guard);
    eprintln!("test bed removed");
    if opts.json {
        println!("{}", serde_json::to_string(&result)?);
    }
    let ok = result.status == JobStatus::Completed && result.integrity.as_ref().is_some_and(|i| i.ok);
    Ok(if ok { 0 } else { 1 })
}

async fn last_status(hosts: &Hosts, host: &str) -> String {
    let text = vm::console(hosts, "demo-vm", Some(host), 16 * 1024).await.unwrap_or_default();
    text.lines()
        .rev()
        .find(|l| l.contains("\"kind\":\"status\""))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| "(no status line yet)".into())
}
