//! `pacerd`: the Pacer host agent. One per host; serves the HTTP/JSON API on a
//! Unix socket (local management) and optionally TCP (peers and remote CLIs).
//!
//! One cancellation token, made here, reaches every task the agent runs; on
//! SIGTERM it is cancelled, the servers stop taking requests, migrations under
//! way roll back (their VMs stay here), and the agent waits for its tasks.

mod agent;
mod api;
mod config;
mod error;
mod groups;
mod incoming;
mod journal;
mod measure;
mod metrics;
mod migration;
mod relay;
mod token;
mod vms;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// The Pacer host agent.
#[derive(Parser, Debug)]
#[command(name = "pacerd", version, about)]
struct Args {
    /// Directory for the token, VM records and VM runtime files.
    #[arg(long, env = "PACERD_STATE_DIR", default_value = "/var/lib/pacer/agent")]
    state_dir: PathBuf,
    /// Name of this host, as peers and the CLI call it.
    #[arg(long, env = "PACERD_HOST_NAME")]
    host_name: Option<String>,
    /// TCP address to serve the API on, e.g. 0.0.0.0:7070 (peers reach it here).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Unix socket to serve the API on [default: STATE_DIR/pacerd.sock].
    #[arg(long)]
    socket: Option<PathBuf>,
    /// IP address incoming migrations listen on [default: the --listen IP, or 127.0.0.1].
    #[arg(long)]
    migration_address: Option<String>,
    /// Memory this agent may give to VMs, e.g. 16G [default: what the host has available].
    #[arg(long)]
    memory_capacity: Option<String>,
    /// QEMU binary.
    #[arg(long, env = "PACER_QEMU", default_value = "qemu-system-x86_64")]
    qemu: PathBuf,
    /// Seconds an incoming VM survives without word from its source.
    #[arg(long, default_value_t = 15)]
    incoming_lease: u64,
    /// Directory for disk copies received by storage migration [default: STATE_DIR/vms].
    #[arg(long)]
    disk_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let memory_capacity_mib = match &args.memory_capacity {
        Some(s) => Some(
            pacer_model::parse_nonzero_size(s)
                .map_err(|e| anyhow::anyhow!("--memory-capacity: {e}"))?
                >> 20,
        ),
        None => None,
    };
    let host_name = args.host_name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
    });
    let migration_address = args.migration_address.clone().unwrap_or_else(|| match args.listen {
        Some(a) if !a.ip().is_unspecified() => a.ip().to_string(),
        _ => "127.0.0.1".into(),
    });
    let shutdown = CancellationToken::new();
    let agent = agent::Agent::start(
        config::Config {
            host_name,
            state_dir: args.state_dir.clone(),
            qemu: args.qemu.clone(),
            memory_capacity_mib,
            migration_address,
            incoming_lease_s: args.incoming_lease,
            disk_dir: args.disk_dir.clone(),
        },
        shutdown.clone(),
    )
    .await?;
    let app = api::router(agent.clone());

    let socket = args.socket.clone().unwrap_or_else(|| args.state_dir.join("pacerd.sock"));
    let _ = std::fs::remove_file(&socket);
    let unix = tokio::net::UnixListener::bind(&socket)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", socket.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    }
    info!("pacerd {} serving on unix:{}", agent.cfg.host_name, socket.display());
    let tcp = match args.listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
            info!("serving on http://{addr}");
            Some(l)
        }
        None => None,
    };
    let servers = TaskTracker::new();
    let stop = shutdown.clone();
    servers.spawn(axum::serve(unix, app.clone()).with_graceful_shutdown(async move { stop.cancelled().await }).into_future());
    if let Some(tcp) = tcp {
        let stop = shutdown.clone();
        servers.spawn(axum::serve(tcp, app).with_graceful_shutdown(async move { stop.cancelled().await }).into_future());
    }
    servers.close();
    signal().await;
    info!("pacerd stopping: migrations under way are cancelled (their VMs stay here), VMs keep running");
    shutdown.cancel();
    agent.tasks.close();
    if tokio::time::timeout(STOP_WAIT, agent.tasks.wait()).await.is_err() {
        warn!("some tasks did not end within {STOP_WAIT:?}; exiting anyway");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), servers.wait()).await;
    info!("pacerd stopped");
    Ok(())
}

/// How long a stopping agent waits for its migrations to roll back.
const STOP_WAIT: Duration = Duration::from_secs(60);

async fn signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod layering {
    //! The agent's modules depend on each other one way only: this reads every
    //! `crate::module` reference in the sources and fails on a cycle.

    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    fn uses(dir: &Path, top: Option<&str>, graph: &mut BTreeMap<String, BTreeSet<String>>) {
        for ent in std::fs::read_dir(dir).unwrap().flatten() {
            let path = ent.path();
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            let module = top.map(String::from).unwrap_or_else(|| stem.clone());
            if path.is_dir() {
                uses(&path, Some(&module), graph);
                continue;
            }
            if module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let deps = graph.entry(module.clone()).or_default();
            for (i, _) in text.match_indices("crate::") {
                let name: String = text[i + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if name != module && name.chars().next().is_some_and(|c| c.is_lowercase()) && name != "unix_ms" {
                    deps.insert(name);
                }
            }
            // `super::` from a top-level module's own files stays inside it.
        }
    }

    fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
        fn visit(
            n: &str,
            g: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(i) = path.iter().position(|p| p == n) {
                let mut c = path[i..].to_vec();
                c.push(n.to_string());
                return Some(c);
            }
            if done.contains(n) {
                return None;
            }
            path.push(n.to_string());
            for d in g.get(n).into_iter().flatten() {
                if let Some(c) = visit(d, g, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            done.insert(n.to_string());
            None
        }
        let mut done = BTreeSet::new();
        graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
    }

    #[test]
    fn modules_depend_on_each_other_one_way() {
        let mut graph = BTreeMap::new();
        uses(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), None, &mut graph);
        assert!(graph.len() >= 10, "{graph:?}");
        if let Some(c) = cycle(&graph) {
            panic!("import cycle: {}\n{graph:#?}", c.join(" -> "));
        }
        // The owners of state know nothing of the API or of the agent that composes them.
        for low in ["vms", "measure", "incoming", "migration", "groups", "metrics", "relay"] {
            let deps = &graph[low];
            assert!(!deps.contains("api") && !deps.contains("agent"), "{low} uses {deps:?}");
        }
        // And the cycle finder finds cycles.
        let mut g = BTreeMap::new();
        g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
        g.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
        assert_eq!(cycle(&g), Some(vec!["a".to_string(), "b".to_string(), "a".to_string()]));
    }
}
