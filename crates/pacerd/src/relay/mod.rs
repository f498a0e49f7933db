//! This host's dedup relays (the codec is the `pacer-relay` crate): a sender per
//! destination host, one connection each, which every VM migrating there with
//! dedup migrates into; and a receiver that feeds each incoming QEMU its stream.
//!
//! Buffers are small on purpose: QEMU decides when to switch over from how fast
//! its own socket drains, so a relay that swallowed the stream would make it
//! switch over too early and report a downtime it did not have (relay.md).

mod receiver;
mod sender;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pacer_api::RelayReport;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{AgentError, AgentResult};

pub use sender::StreamHandle;

/// Pages each end of a connection keeps for references (1 GiB).
pub const STORE_PAGES: u32 = 1 << 18;
/// Bytes read from a source QEMU at a time.
const CHUNK: usize = 64 << 10;
/// Chunks queued between a VM's reader and its connection's writer.
const QUEUE: usize = 4;
/// Kernel send buffer of the relay-to-relay socket.
const SOCKET_BUFFER: u32 = 256 << 10;

/// The relays' own runtime: two threads at a higher priority than the guests'
/// vCPUs where the agent may raise it (root). A relay sits in every stream it
/// carries: starved of CPU by busy guests it would pace all of them (seen on a
/// 2-core host with 8 TCG guests: the gang took twice as long as going direct).
/// Its sockets are made on it too, so their readiness is its own reactor's.
fn runtime() -> &'static tokio::runtime::Handle {
    static RT: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pacer-relay")
            .on_thread_start(|| {
                // Per thread on Linux; refused without the privilege, which is fine.
                unsafe {
                    libc::setpriority(libc::PRIO_PROCESS, 0, -5);
                }
            })
            .enable_all()
            .build()
            .expect("the relay runtime");
        let h = rt.handle().clone();
        // Lives as long as the agent: dropping a runtime inside another one panics.
        std::mem::forget(rt);
        h
    })
}

/// Runs `f` on the relays' runtime and waits for it.
async fn on_relay<T: Send + 'static>(f: impl std::future::Future<Output = AgentResult<T>> + Send + 'static) -> AgentResult<T> {
    runtime().spawn(f).await.map_err(|e| AgentError::Internal(format!("relay task failed: {e}")))?
}

/// The relays of this host.
pub struct Relays {
    address: String,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// One connection per destination relay (held while connecting, so that VMs
    /// leaving at the same moment share it).
    senders: tokio::sync::Mutex<HashMap<String, Arc<sender::Sender>>>,
    receiver: tokio::sync::Mutex<Option<String>>,
    /// Incoming VMs expecting a stream: name -> their QEMU's socket.
    routes: Arc<Mutex<HashMap<String, PathBuf>>>,
}

impl Relays {
    /// Relays listening on `address` (the migration address) once asked to.
    pub fn new(address: &str, tasks: TaskTracker, shutdown: CancellationToken) -> Relays {
        Relays {
            address: address.to_string(),
            tasks,
            shutdown,
            senders: tokio::sync::Mutex::default(),
            receiver: tokio::sync::Mutex::new(None),
            routes: Arc::default(),
        }
    }

    /// Destination side: `vm`'s incoming QEMU listens on `socket`; its stream will
    /// come through this host's relay, whose address is returned.
    pub async fn expect(&self, vm: &str, socket: &Path) -> AgentResult<String> {
        let addr = {
            let mut r = self.receiver.lock().await;
            match r.as_ref() {
                Some(a) => a.clone(),
                None => {
                    let (addr, routes, tasks, stop) =
                        (self.address.clone(), self.routes.clone(), self.tasks.clone(), self.shutdown.clone());
                    let a = on_relay(async move { receiver::listen(&addr, routes, &tasks, stop).await }).await?;
                    *r = Some(a.clone());
                    a
                }
            }
        };
        self.routes.lock().unwrap().insert(vm.to_string(), socket.to_path_buf());
        Ok(addr)
    }

    /// Source side: a socket in `dir` for `vm`'s QEMU to migrate into, relayed to
    /// the relay at `to` over this host's one connection there (deduplicated
    /// with `dedup`, else forwarded as it is).
    pub async fn send(&self, to: &str, vm: &str, dir: &Path, dedup: bool) -> AgentResult<StreamHandle> {
        let s = {
            let mut senders = self.senders.lock().await;
            match senders.get(to).filter(|s| !s.broken()) {
                Some(s) => s.clone(),
                None => {
                    let (to2, tasks, stop) = (to.to_string(), self.tasks.clone(), self.shutdown.clone());
                    let s = Arc::new(on_relay(async move { sender::Sender::connect(&to2, &tasks, stop).await }).await?);
                    senders.insert(to.to_string(), s.clone());
                    s
                }
            }
        };
        let (vm, path, tasks) = (vm.to_string(), dir.join("relay-out.sock"), self.tasks.clone());
        on_relay(async move { s.add(&vm, &path, dedup, &tasks).await }).await
    }
}

/// The report for a migration that went direct although dedup was asked for.
pub fn direct(why: &str) -> RelayReport {
    RelayReport { relayed: false, why: Some(why.to_string()), ..RelayReport::default() }
}

fn io_err(what: &str) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
    move |e| AgentError::Internal(format!("relay: {what}: {e}"))
}
