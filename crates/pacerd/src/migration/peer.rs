//! The destination agent, as a migration's source talks to it: typed calls with
//! the timeouts and retries each needs.

use std::time::Duration;

use pacer_api::{AgentClient, ErrorCode, HostInfo, IncomingReady, IncomingRequest, IntegrityResult, PeerRef};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::error::{AgentError, AgentResult};

/// How long a commit is retried while the destination cannot be reached (its
/// agent may be restarting): the source keeps the guest stopped meanwhile.
const COMMIT_RETRY: Duration = Duration::from_secs(15);

/// The destination of one migration.
#[derive(Clone)]
pub struct Peer {
    name: String,
    client: AgentClient,
}

impl Peer {
    /// The agent `dest` names.
    pub fn new(dest: &PeerRef) -> Peer {
        Peer { name: dest.name.clone(), client: AgentClient::new(&dest.url, &dest.token).with_timeout(Duration::from_secs(90)) }
    }

    fn short(&self, secs: u64) -> AgentClient {
        self.client.clone().with_timeout(Duration::from_secs(secs))
    }

    fn err(&self, e: pacer_api::ClientError) -> AgentError {
        AgentError::from_peer(&self.name, e)
    }

    /// The destination's capacity (reachable, token good).
    pub async fn host(&self) -> AgentResult<HostInfo> {
        self.short(10).host().await.map_err(|e| match e {
            e @ pacer_api::ClientError::Api { .. } => self.err(e),
            e => AgentError::Upstream(format!("destination {} is not usable: {e}", self.name)),
        })
    }

    /// Asks for an incoming QEMU like the source's.
    pub async fn prepare(&self, req: &IncomingRequest) -> AgentResult<IncomingReady> {
        self.client.prepare_incoming(req).await.map_err(|e| self.err(e))
    }

    /// The destination takes the VM (resuming it there); returns when the guest
    /// resumed there, if it saw it (µs since the epoch). Retried while the
    /// destination cannot be reached; an answer, even an error, is final.
    pub async fn commit(&self, vm: &str) -> AgentResult<Option<u64>> {
        let deadline = tokio::time::Instant::now() + COMMIT_RETRY;
        loop {
            match self.client.commit_incoming(vm).await {
                Ok(c) => return Ok(c.resumed_at_unix_us),
                Err(e) if e.is_unreachable() && tokio::time::Instant::now() < deadline => {
                    warn!("destination {} unreachable to commit {vm} ({e}); retrying", self.name);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(self.err(e)),
            }
        }
    }

    /// Asks the guest program at the destination to check its memory.
    pub async fn verify(&self, vm: &str) -> AgentResult<IntegrityResult> {
        self.client.verify(vm).await.map_err(|e| self.err(e))
    }

    /// Renews the incoming VM's lease every second until `stop`.
    pub fn keep_alive(&self, tasks: &TaskTracker, vm: &str, stop: CancellationToken) {
        let client = self.short(2);
        let vm = vm.to_string();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                let _ = client.heartbeat_incoming(&vm).await;
            }
        });
    }

    /// Tells the destination to drop the incoming VM; if it cannot be reached,
    /// keeps trying in the background for a while (its lease expires anyway).
    pub async fn clean_up(&self, tasks: &TaskTracker, vm: &str, stop: CancellationToken) {
        let client = self.short(3);
        match client.abort_incoming(vm).await {
            Ok(_) => {}
            Err(e) if matches!(e.code(), Some(ErrorCode::NotFound | ErrorCode::NotIncoming)) => {}
            Err(e) => {
                warn!("could not abort incoming {vm} at {}: {e}; retrying in background", self.name);
                let vm = vm.to_string();
                tasks.spawn(async move {
                    for _ in 0..20 {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        }
                        match client.abort_incoming(&vm).await {
                            Ok(_) => return,
                            Err(e) if e.code().is_some() => return,
                            Err(_) => {}
                        }
                    }
                });
            }
        }
    }
}
