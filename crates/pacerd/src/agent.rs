//! The agent: the owners of its state, composed. Each piece of state has one
//! owner — the VM registry, the job table, the incoming table, the measurement
//! store, the link probe, the group table, the metrics, the relays — and the API calls the
//! owner. This is the only module that knows them all.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::groups::{coordinator, GroupTable};
use crate::incoming::IncomingTable;
use crate::measure::link::LinkProbe;
use crate::measure::MeasureStore;
use crate::metrics::Metrics;
use crate::migration::{driver, JobTable};
use crate::relay::Relays;
use crate::vms::{Launcher, Registry};

/// The agent.
pub struct Agent {
    /// Settings.
    pub cfg: Config,
    /// API token.
    pub token: String,
    /// The VMs.
    pub vms: Arc<Registry>,
    /// Starts QEMU.
    pub launcher: Arc<Launcher>,
    /// Incoming migrations.
    pub incoming: Arc<IncomingTable>,
    /// Migration jobs and what the driver needs.
    pub migrations: Arc<driver::Deps>,
    /// Group migrations and what the coordinator needs.
    pub coordination: Arc<coordinator::Deps>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Every task the agent spawns, so none outlives it.
    pub tasks: TaskTracker,
}

impl Agent {
    /// Opens the agent's state (records, token, journals) and re-adopts what an
    /// earlier run left: VMs, incoming migrations, unfinished groups. Background
    /// tasks run until `shutdown`.
    pub async fn start(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<Arc<Agent>> {
        std::fs::create_dir_all(&cfg.state_dir)?;
        let token = crate::token::load_or_create(&cfg.state_dir.join("token"))?;
        let tasks = TaskTracker::new();
        let vms = Arc::new(Registry::open(&cfg.state_dir, &cfg.host_name, cfg.memory_capacity_mib)?);
        let incoming = Arc::new(IncomingTable::open(&cfg)?);
        let measure = Arc::new(MeasureStore::default());
        let metrics = Arc::new(Metrics::new());
        let jobs = Arc::new(JobTable::default());
        let migrations = Arc::new(driver::Deps {
            host_name: cfg.host_name.clone(),
            vms: vms.clone(),
            measure: measure.clone(),
            links: Arc::new(LinkProbe::default()),
            jobs,
            metrics: metrics.clone(),
            tasks: tasks.clone(),
            shutdown: shutdown.clone(),
            relays: Arc::new(Relays::new(&cfg.migration_address, tasks.clone(), shutdown.clone())),
        });
        let coordination = Arc::new(coordinator::Deps {
            host_name: cfg.host_name.clone(),
            groups: Arc::new(GroupTable::open(&cfg.state_dir)?),
            tasks: tasks.clone(),
            shutdown: shutdown.clone(),
        });
        vms.readopt().await;
        incoming.restore(&vms).await;
        tasks.spawn(incoming.clone().watchdog(vms.clone(), shutdown.clone()));
        tasks.spawn(crate::measure::sampler::run(measure, vms.clone(), shutdown.clone()));
        coordinator::resume(&coordination);
        Ok(Arc::new(Agent {
            launcher: Arc::new(Launcher::new(cfg.qemu.clone())),
            cfg,
            token,
            vms,
            incoming,
            migrations,
            coordination,
            metrics,
            tasks,
        }))
    }
}
