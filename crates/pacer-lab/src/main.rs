//! `pacer-lab`: test beds, the guest image, the demo and the benchmarks. The
//! operator's commands are `pacer`'s.

use anyhow::Result;
use clap::{Parser, Subcommand};
use pacer_lab::{bed, bench, demo, guest_image, net};

/// Pacer's lab: test hosts on this machine, the guest image, the demo, benchmarks.
#[derive(Parser, Debug)]
#[command(name = "pacer-lab", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Test hosts on this machine (network namespaces, shaped links, agents).
    #[command(subcommand)]
    Testbed(TestbedCmd),
    /// Build (or find cached) the Pacer guest image.
    Image,
    /// The demo: two test hosts, a 1 GiB guest writing memory, migrated live.
    Demo(demo::DemoOpts),
    /// Benchmarks that print tables and write JSON.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

#[derive(Subcommand, Debug)]
enum TestbedCmd {
    /// Create test hosts joined by shaped links and start an agent on each.
    Up {
        /// Test-bed name (1-6 of a-z, 0-9).
        #[arg(long, default_value = "pacer")]
        name: String,
        /// Number of hosts.
        #[arg(long, default_value_t = 2)]
        hosts: usize,
        /// Link rate, tc style: 1gbit, 200mbit (0 = unshaped).
        #[arg(long, default_value = "1gbit", value_parser = parse_link_rate)]
        rate: u64,
        /// Memory each agent may give to VMs, e.g. 4G.
        #[arg(long)]
        memory_capacity: Option<String>,
    },
    /// Remove a test bed and everything it runs.
    Down {
        /// Test-bed name.
        #[arg(long, default_value = "pacer")]
        name: String,
    },
    /// List test beds.
    List,
    /// Change the link rate of one host or all.
    SetRate {
        /// Test-bed name.
        #[arg(long, default_value = "pacer")]
        name: String,
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
        /// New rate, e.g. 200mbit.
        #[arg(long, value_parser = parse_link_rate)]
        rate: u64,
    },
    /// Cut a host's link.
    Cut {
        /// Test-bed name.
        #[arg(long, default_value = "pacer")]
        name: String,
        /// Host.
        #[arg(long)]
        host: String,
    },
    /// Restore a host's link.
    Restore {
        /// Test-bed name.
        #[arg(long, default_value = "pacer")]
        name: String,
        /// Host.
        #[arg(long)]
        host: String,
    },
    /// Restart a host's agent (its VMs keep running and are re-adopted).
    RestartAgent {
        /// Test-bed name.
        #[arg(long, default_value = "pacer")]
        name: String,
        /// Host.
        #[arg(long)]
        host: String,
    },
}

fn parse_link_rate(s: &str) -> Result<u64, String> {
    net::parse_rate(s).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn run(cli: Cli) -> Result<i32> {
    match cli.cmd {
        Cmd::Testbed(cmd) => testbed_cmd(cmd),
        Cmd::Image => {
            let mut opts = guest_image::ImageOptions::from_env();
            opts.progress = true;
            let img = guest_image::ensure_guest_image(&opts)?;
            // `pacer vm start` reads the `kernel`, `initrd` and `initrd-apps` lines.
            println!(
                "kernel {}\ninitrd {}\nkernel version {}\ninitrd-apps {}",
                img.kernel.display(),
                img.initrd.display(),
                img.kernel_version,
                img.initrd_apps.display()
            );
            Ok(0)
        }
        Cmd::Demo(opts) => demo::run(&opts).await,
        Cmd::Bench(cmd) => bench::run(cmd).await,
    }
}

fn testbed_cmd(cmd: TestbedCmd) -> Result<i32> {
    let root = bed::default_root();
    match cmd {
        TestbedCmd::Up {
            name,
            hosts,
            rate,
            memory_capacity,
        } => {
            let b = bed::up(&bed::BedOptions {
                name,
                hosts,
                rate_bps: rate,
                pacerd: bed::find_pacerd(),
                root,
                memory_capacity,
                incoming_lease_s: None,
            })?;
            if !b.shaped {
                eprintln!("warning: not root: agents run on loopback ports, links are NOT shaped");
            }
            for h in &b.hosts {
                println!(
                    "{}: netns {}, address {}, agent pid {}",
                    h.name,
                    h.netns.as_deref().unwrap_or("-"),
                    h.data_ip,
                    h.pid
                );
            }
            println!(
                "hosts file: {}\n(export PACER_HOSTS={} when several test beds are up)",
                b.hosts_file().display(),
                b.hosts_file().display()
            );
        }
        TestbedCmd::Down { name } => {
            bed::down(&root, &name)?;
            println!("test bed {name} removed");
        }
        TestbedCmd::List => {
            for n in bed::list(&root) {
                println!("{n}");
            }
        }
        TestbedCmd::SetRate { name, host, rate } => {
            bed::Bed::load(&root, &name)?.set_rate(host.as_deref(), rate)?;
            println!("rate set to {}", net::format_rate(rate));
        }
        TestbedCmd::Cut { name, host } => {
            bed::Bed::load(&root, &name)?.set_link_up(&host, false)?;
            println!("link of {host} cut");
        }
        TestbedCmd::Restore { name, host } => {
            bed::Bed::load(&root, &name)?.set_link_up(&host, true)?;
            println!("link of {host} restored");
        }
        TestbedCmd::RestartAgent { name, host } => {
            let mut b = bed::Bed::load(&root, &name)?;
            b.kill_agent(&host)?;
            b.start_agent(&host)?;
            println!(
                "agent of {host} restarted (pid {})",
                b.host(&host).map(|h| h.pid).unwrap_or(0)
            );
        }
    }
    Ok(0)
}
