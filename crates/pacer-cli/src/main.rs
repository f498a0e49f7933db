//! `pacer`: the operator's command-line client of Pacer agents (VMs, migrations,
//! groups, predictions, jobs, hosts). Test beds, the guest image, the demo and the
//! benchmarks are `pacer-lab`'s.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use pacer_api::{AdoptRequest, JobInfo};
use pacer_cli::hosts::Hosts;
use pacer_cli::{group, migrate, vm};

/// Live migration of QEMU/KVM VMs with progress management.
#[derive(Parser, Debug)]
#[command(name = "pacer", version, about)]
struct Cli {
    /// Hosts file [default: $PACER_HOSTS, ~/.config/pacer/hosts.json, or the one test bed that is up].
    #[arg(long, global = true)]
    hosts_file: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Manage VMs.
    #[command(subcommand)]
    Vm(VmCmd),
    /// Migrate a running VM to another host, with live progress.
    Migrate {
        /// VM name.
        vm: String,
        /// Source host [default: wherever the VM runs].
        #[arg(long)]
        from: Option<String>,
        #[command(flatten)]
        opts: migrate::MigrateOpts,
        /// Print the result as one JSON object when the migration ends.
        #[arg(long)]
        json: bool,
    },
    /// Move several VMs to one host so that they finish together.
    MigrateGroup {
        /// VM names (on any hosts).
        #[arg(required = true)]
        vms: Vec<String>,
        #[command(flatten)]
        opts: migrate::MigrateOpts,
        /// Start them all flat out, without coordination (for comparison).
        #[arg(long)]
        uncoordinated: bool,
        /// Submit the group and return; follow it with `pacer group show ID`.
        #[arg(long)]
        detach: bool,
        /// Print the group as one JSON object when it ends.
        #[arg(long)]
        json: bool,
    },
    /// Group migrations (coordinated by the destination's agent).
    #[command(subcommand)]
    Group(GroupCmd),
    /// Predict how long migrating a VM would take, without starting it.
    Predict {
        /// VM name; several for a gang leaving together (each source host predicts its own).
        #[arg(required = true)]
        vms: Vec<String>,
        /// Destination host.
        #[arg(long)]
        to: String,
        /// Strategy.
        #[arg(long, default_value = "pre-copy", value_parser = migrate::parse_strategy)]
        strategy: pacer_api::Strategy,
        /// Bandwidth cap.
        #[arg(long, value_parser = migrate::parse_bw)]
        bandwidth: Option<u64>,
        /// Predict the gang through the hosts' relays with dedup (as `migrate --dedup`).
        #[arg(long)]
        dedup: bool,
        /// Do not ask QEMU's dirty log (a probe of about 10 s that copies the guest's
        /// memory into a local sink once): hashing guest memory only.
        #[arg(long)]
        no_dirty_log: bool,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Migration jobs.
    #[command(subcommand)]
    Job(JobCmd),
    /// List the hosts of the hosts file and what their agents say.
    Hosts,
}

#[derive(Subcommand, Debug)]
enum VmCmd {
    /// Start a VM (by default the Pacer guest with a workload).
    Start(Box<vm::StartOpts>),
    /// List VMs on every host (or one).
    List {
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Show one VM.
    Show {
        /// VM name.
        name: String,
        /// Host [default: search every host].
        #[arg(long)]
        host: Option<String>,
    },
    /// Stop a VM.
    Stop {
        /// VM name.
        name: String,
        /// Host [default: search every host].
        #[arg(long)]
        host: Option<String>,
    },
    /// Print the VM's serial console output.
    Console {
        /// VM name.
        name: String,
        /// Host [default: search every host].
        #[arg(long)]
        host: Option<String>,
        /// How much of the end of the console to print.
        #[arg(long, default_value_t = 8192)]
        bytes: u64,
    },
    /// Ask the Pacer guest program to check its memory.
    Verify {
        /// VM name.
        name: String,
        /// Host [default: search every host].
        #[arg(long)]
        host: Option<String>,
    },
    /// Take over a QEMU that is already running, by its QMP socket.
    Adopt {
        /// Name to give it.
        name: String,
        /// Host whose agent takes it.
        #[arg(long)]
        host: String,
        /// Its QMP socket.
        #[arg(long)]
        qmp_socket: String,
        /// Its serial console log file, if any.
        #[arg(long)]
        console_log: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum GroupCmd {
    /// List the groups every agent coordinates.
    List,
    /// Show a group (JSON).
    Show {
        /// Group id.
        id: String,
    },
    /// Follow a group until it ends.
    Follow {
        /// Group id.
        id: String,
        /// Print the group as one JSON object when it ends.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a group: members not yet switched over stay where they are.
    Cancel {
        /// Group id.
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum JobCmd {
    /// List migration jobs.
    List,
    /// Show a job (JSON).
    Show {
        /// Job id.
        id: String,
    },
    /// Cancel a running migration: the VM stays where it is.
    Cancel {
        /// Job id.
        id: String,
    },
    /// Change a running migration's finish target.
    Retarget {
        /// Job id.
        id: String,
        /// New target from now, e.g. 60s (omit with --flat-out).
        #[arg(long, value_parser = migrate::parse_secs)]
        finish_in: Option<f64>,
        /// Drop the target and run flat out.
        #[arg(long, conflicts_with = "finish_in")]
        flat_out: bool,
    },
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
        Cmd::Vm(cmd) => {
            let hosts = Hosts::load(cli.hosts_file)?;
            vm_cmd(&hosts, cmd).await
        }
        Cmd::Migrate { vm, from, opts, json } => {
            let hosts = Hosts::load(cli.hosts_file)?;
            let r = migrate::migrate(&hosts, &vm, from.as_deref(), &opts, true).await?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!("{}", migrate::summary(&r));
            }
            Ok(if r.status == pacer_api::JobStatus::Completed { 0 } else { 1 })
        }
        Cmd::MigrateGroup { vms, opts, uncoordinated, detach, json } => {
            let hosts = Hosts::load(cli.hosts_file)?;
            let (coordinator, g) = group::submit(&hosts, &vms, &opts, !uncoordinated).await?;
            eprintln!("group {} submitted to {} (it coordinates the group; `pacer group show {}`)", g.id, g.coordinator, g.id);
            if detach {
                println!("{}", g.id);
                return Ok(0);
            }
            print_group(&group::follow(&coordinator, &g.id).await?, json)
        }
        Cmd::Group(cmd) => {
            let hosts = Hosts::load(cli.hosts_file)?;
            group_cmd(&hosts, cmd).await
        }
        Cmd::Predict { vms, to, strategy, bandwidth, dedup, json, .. } if vms.len() > 1 || dedup => {
            let hosts = Hosts::load(cli.hosts_file)?;
            let ask = pacer_cli::gang::GangAsk { vms, to: to.clone(), strategy, bandwidth, dedup };
            let parts = pacer_cli::gang::predict(&hosts, &ask).await?;
            if json {
                let v: Vec<_> = parts.iter().map(|(h, p)| serde_json::json!({"from": h, "prediction": p})).collect();
                println!("{}", serde_json::to_string(&v)?);
            } else {
                print!("{}", pacer_cli::gang::render(&to, &parts));
            }
            Ok(if parts.iter().all(|(_, p)| p.total_ms.is_some()) { 0 } else { 3 })
        }
        Cmd::Predict { vms, to, strategy, bandwidth, json, no_dirty_log, .. } => {
            let vm = vms.into_iter().next().expect("clap requires one");
            let hosts = Hosts::load(cli.hosts_file)?;
            let (src, _) = hosts.locate(&vm).await?;
            let dest = hosts.get(&to)?;
            let req = pacer_api::PredictRequest {
                destination: pacer_api::PeerRef { name: dest.name.clone(), url: dest.peer_url().into(), token: dest.token.clone() },
                strategy,
                bandwidth,
                downtime_limit_ms: None,
                postcopy_after_s: None,
                copy_storage: pacer_api::CopyStorage::All,
                dirty_log: !no_dirty_log,
            };
            let p = hosts.client(&src)?.predict(&vm, &req).await?;
            let converges = p.total_ms.is_some();
            if json {
                println!("{}", serde_json::to_string(&p)?);
            } else {
                println!("migrating {vm} {src} -> {to} ({}) {}", strategy.as_str(), migrate::predict_words(&p));
                println!(
                    "  link {:.0} Mbit/s; guest dirties {} over a working set of {}{}; {:.0}% of its {} is zero pages; disks {}",
                    p.link_bps * 8.0 / 1e6,
                    pacer_model::format_rate(p.dirty_rate_bps),
                    p.wss_bytes.map(|w| pacer_model::format_bytes(w as u64)).unwrap_or_else(|| "unbounded".into()),
                    if p.hot_bytes > 0.0 {
                        format!(" and rewrites a hot {} within a fraction of a second", pacer_model::format_bytes(p.hot_bytes as u64))
                    } else {
                        String::new()
                    },
                    p.zero_fraction * 100.0,
                    pacer_model::format_bytes(p.ram_bytes),
                    pacer_model::format_bytes(p.disk_bytes)
                );
                if let Some(r) = &p.rehearsal {
                    println!("  {}", migrate::rehearsal_words(r));
                }
                if let Some(d) = p.dirty_log.as_ref().filter(|d| d.bursts) {
                    println!("  {}", migrate::burst_words(d));
                }
                if let Some(seen) = p.content_dirty_rate_bps {
                    println!(
                        "  dirtying counted by QEMU's dirty log: the guest rewrites pages with the bytes they held \
                         (hashing its memory saw only {}), and QEMU resends every one",
                        pacer_model::format_rate(seen)
                    );
                }
            }
            Ok(if converges { 0 } else { 3 })
        }
        Cmd::Job(cmd) => {
            let hosts = Hosts::load(cli.hosts_file)?;
            job_cmd(&hosts, cmd).await
        }
        Cmd::Hosts => {
            let hosts = Hosts::load(cli.hosts_file)?;
            println!("hosts file: {}", hosts.path.display());
            for h in &hosts.file.hosts {
                let c = hosts.client(&h.name)?;
                match c.host().await {
                    Ok(i) => println!(
                        "{:<8} {:<40} up, {} of {} MiB given to VMs, migrations on {}",
                        h.name, h.url, i.memory_committed_mib, i.memory_capacity_mib, i.migration_address
                    ),
                    Err(e) => println!("{:<8} {:<40} DOWN: {e}", h.name, h.url),
                }
            }
            Ok(0)
        }
    }
}

async fn vm_cmd(hosts: &Hosts, cmd: VmCmd) -> Result<i32> {
    match cmd {
        VmCmd::Start(opts) => {
            let info = vm::start(hosts, &opts).await?;
            println!("started {} on {} (pid {}, {})", info.name, opts.host, info.pid, info.accel);
        }
        VmCmd::List { host, json } => {
            let vms = vm::list(hosts, host.as_deref()).await?;
            if json {
                let v: Vec<_> = vms.iter().map(|(h, i)| serde_json::json!({"host": h, "vm": i})).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                vm::print_table(&vms);
            }
        }
        VmCmd::Show { name, host } => {
            let info = vm::show(hosts, &name, host.as_deref()).await?;
            println!("{}", serde_json::to_string_pretty(&info)?);
        }
        VmCmd::Stop { name, host } => {
            let h = vm::stop(hosts, &name, host.as_deref()).await?;
            println!("stopped {name} on {h}");
        }
        VmCmd::Console { name, host, bytes } => {
            print!("{}", vm::console(hosts, &name, host.as_deref(), bytes).await?);
        }
        VmCmd::Verify { name, host } => {
            let r = vm::verify(hosts, &name, host.as_deref()).await?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            return Ok(if r.ok { 0 } else { 1 });
        }
        VmCmd::Adopt { name, host, qmp_socket, console_log } => {
            let info = vm::adopt(hosts, &host, &AdoptRequest { name, qmp_socket, console_log }).await?;
            println!("adopted {} on {host} (pid {})", info.name, info.pid);
        }
    }
    Ok(0)
}

fn print_group(g: &pacer_api::GroupInfo, json: bool) -> Result<i32> {
    if json {
        println!("{}", serde_json::to_string(g)?);
    } else {
        println!("{}", group::summary(g));
    }
    Ok(if g.status == pacer_api::GroupStatus::Completed { 0 } else { 1 })
}

async fn group_cmd(hosts: &Hosts, cmd: GroupCmd) -> Result<i32> {
    let all = group::all_groups(hosts).await;
    let find = |id: &str| {
        all.iter()
            .find(|(_, g)| g.id == id)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no group {id:?} on any host; `pacer group list` lists them"))
    };
    match cmd {
        GroupCmd::List => {
            println!("{:<16} {:<10} {:<10} {:<6} {:>8} VMS", "ID", "COORD", "STATUS", "TO", "SPREAD");
            for (_, g) in &all {
                println!(
                    "{:<16} {:<10} {:<10} {:<6} {:>8} {}",
                    g.id,
                    g.coordinator,
                    format!("{:?}", g.status).to_lowercase(),
                    g.destination,
                    g.result.as_ref().map(|r| format!("{:.2} s", r.spread_s)).unwrap_or_else(|| "-".into()),
                    g.members.iter().map(|m| m.vm.as_str()).collect::<Vec<_>>().join(",")
                );
            }
            Ok(0)
        }
        GroupCmd::Show { id } => {
            let (_, g) = find(&id)?;
            println!("{}", serde_json::to_string_pretty(&g)?);
            Ok(0)
        }
        GroupCmd::Follow { id, json } => {
            let (h, _) = find(&id)?;
            print_group(&group::follow(&hosts.client(&h)?, &id).await?, json)
        }
        GroupCmd::Cancel { id } => {
            let (h, _) = find(&id)?;
            hosts.client(&h)?.cancel_group(&id).await?;
            println!("cancelling group {id}");
            Ok(0)
        }
    }
}


async fn job_cmd(hosts: &Hosts, cmd: JobCmd) -> Result<i32> {
    let all = async {
        let mut v: Vec<(String, JobInfo)> = Vec::new();
        for h in &hosts.file.hosts {
            if let Ok(jobs) = hosts.client(&h.name)?.jobs().await {
                v.extend(jobs.into_iter().map(|j| (h.name.clone(), j)));
            }
        }
        anyhow::Ok(v)
    };
    match cmd {
        JobCmd::List => {
            println!("{:<14} {:<12} {:<10} {:<14} {:<12} {:>6}", "ID", "VM", "STATUS", "STRATEGY", "ROUTE", "PCT");
            for (_, j) in all.await? {
                println!(
                    "{:<14} {:<12} {:<10} {:<14} {:<12} {:>5.1}%",
                    j.id,
                    j.vm,
                    format!("{:?}", j.status).to_lowercase(),
                    j.strategy.as_str(),
                    format!("{}->{}", j.source, j.destination),
                    j.progress.percent
                );
            }
        }
        JobCmd::Show { id } => {
            let (_, j) = all.await?.into_iter().find(|(_, j)| j.id == id).ok_or_else(|| anyhow::anyhow!("no job {id:?} on any host"))?;
            println!("{}", serde_json::to_string_pretty(&j)?);
        }
        JobCmd::Retarget { id, finish_in, flat_out } => {
            if finish_in.is_none() && !flat_out {
                anyhow::bail!("give --finish-in DURATION or --flat-out");
            }
            let (h, _) = all.await?.into_iter().find(|(_, j)| j.id == id).ok_or_else(|| anyhow::anyhow!("no job {id:?} on any host"))?;
            hosts.client(&h)?.retarget_job(&id, finish_in).await?;
            println!("job {id}: {}", match finish_in { Some(s) => format!("finish in {s:.1} s"), None => "flat out".into() });
        }
        JobCmd::Cancel { id } => {
            let (h, _) = all.await?.into_iter().find(|(_, j)| j.id == id).ok_or_else(|| anyhow::anyhow!("no job {id:?} on any host"))?;
            hosts.client(&h)?.cancel_job(&id).await?;
            println!("cancelling {id}");
        }
    }
    Ok(0)
}
