//! `pacer-lab demo`: make two test hosts joined by a 1 Gbit/s link, start a 1 GiB
//! guest writing memory on the first, migrate it live to the second with the
//! progress display, show it running there with its memory check passing, print a
//! summary and remove the test bed.

use std::time::Duration;

use anyhow::Result;
use pacer_api::{JobStatus, Strategy};
use pacer_cli::hosts::Hosts;
use pacer_cli::{migrate, vm};
use pacer_guest_proto::{latest_status, GuestLine};
use tokio::sync::watch;

use crate::live::{start_guest, GuestPlan, LiveBed};

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
    /// Keep the test bed afterwards (remove it with `pacer-lab testbed down --name demo`).
    #[arg(long)]
    pub keep: bool,
}

fn step(msg: &str) {
    eprintln!("\n==> {msg}");
}

/// Runs the demo.
pub async fn run(opts: &DemoOpts) -> Result<i32> {
    let strategy: Strategy =
        serde_json::from_value(serde_json::Value::String(opts.strategy.clone()))
            .map_err(|_| anyhow::anyhow!("unknown strategy {:?}", opts.strategy))?;
    let memory_mib = pacer_model::parse_nonzero_size(&opts.memory)? >> 20;
    let write_rate = pacer_model::parse_bandwidth(&opts.write_rate)? as f64 / 1e6;
    step("building the guest image and two test hosts");
    let mut bed = LiveBed::up("demo", &opts.rate, opts.keep)?;
    eprintln!("guest kernel {} ({})", bed.kernel_version, bed.kernel);
    for h in &bed.bed.hosts {
        eprintln!(
            "  {}: {} (netns {}), agent pid {}",
            h.name,
            h.data_ip,
            h.netns.as_deref().unwrap_or("-"),
            h.pid
        );
    }

    step(&format!(
        "starting a {} guest writing {} of memory on h1",
        opts.memory, opts.write_rate
    ));
    // `pacer migrate` below handles Ctrl-C itself (it cancels the migration).
    let (_never, stop) = watch::channel(false);
    let guest = GuestPlan::memory("demo-vm", memory_mib, 512, write_rate);
    let started = start_guest(&mut bed, &guest, &mut Vec::new(), &stop).await?;
    eprintln!(
        "  started demo-vm (pid {}, accelerator {})",
        started.info.pid, started.info.accel
    );
    eprintln!(
        "  guest program running: {}",
        last_status(&bed.hosts, "h1").await
    );

    step(&format!(
        "migrating demo-vm live from h1 to h2 ({})",
        opts.strategy
    ));
    let mopts = migrate::MigrateOpts::new("h2", strategy);
    let result = migrate::migrate(&bed.hosts, "demo-vm", Some("h1"), &mopts, true).await?;

    step("where the VM runs now");
    vm::print_table(&vm::list(&bed.hosts, None).await?);
    if result.status == JobStatus::Completed {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        eprintln!(
            "  guest on h2 says: {}",
            last_status(&bed.hosts, "h2").await
        );
    }

    step("summary");
    println!("{}", migrate::summary(&result));
    bed.close("demo");
    if opts.json {
        println!("{}", serde_json::to_string(&result)?);
    }
    let ok =
        result.status == JobStatus::Completed && result.integrity.as_ref().is_some_and(|i| i.ok);
    Ok(if ok { 0 } else { 1 })
}

async fn last_status(hosts: &Hosts, host: &str) -> String {
    let text = vm::console(hosts, "demo-vm", Some(host), 16 * 1024)
        .await
        .unwrap_or_default();
    latest_status(&text)
        .map(|s| GuestLine::Status(s).to_line())
        .unwrap_or_else(|| "(no status line yet)".into())
}
