//! A minimal HTTP/1.1 JSON client for the agent API, over TCP (`http://host:port`)
//! or a Unix socket (`unix:/path/to/pacerd.sock`): one request per connection.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ErrorBody, ErrorCode};
use crate::routes::{self, fill};
use crate::types::*;

/// Errors calling an agent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `http://host:port` or `unix:/path`.
    #[error("bad agent URL {0:?}: use http://HOST:PORT or unix:/path/to/pacerd.sock")]
    BadUrl(String),
    /// The agent could not be reached.
    #[error("cannot reach agent at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The agent refused the token.
    #[error("agent at {url} refused the token (401): check the token in the hosts file")]
    Unauthorized { url: String },
    /// The agent answered with an error.
    #[error("{message}")]
    Api { status: u16, code: ErrorCode, message: String },
    /// The answer was not what we expected.
    #[error("bad answer from agent at {url}: {reason}")]
    BadResponse { url: String, reason: String },
}

impl ClientError {
    /// The API error code, if the agent answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            ClientError::Unauthorized { .. } => Some(ErrorCode::Unauthorized),
            _ => None,
        }
    }

    /// True when the agent was not reached (or did not answer in time): the
    /// request may be retried; an agent that answered with an error is not.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }
}

enum Target {
    Tcp(String),
    Unix(String),
}

/// A client of one agent.
#[derive(Debug, Clone)]
pub struct AgentClient {
    url: String,
    token: String,
    timeout: Duration,
}

impl AgentClient {
    /// A client for the agent at `url` with API token `token`.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> Self {
        AgentClient { url: url.into(), token: token.into(), timeout: Duration::from_secs(120) }
    }

    /// Sets the per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The agent's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn target(&self) -> Result<Target, ClientError> {
        if let Some(p) = self.url.strip_prefix("unix:") {
            return Ok(Target::Unix(p.to_string()));
        }
        if let Some(h) = self.url.strip_prefix("http://") {
            let h = h.trim_end_matches('/');
            if !h.is_empty() && !h.contains('/') {
                return Ok(Target::Tcp(h.to_string()));
            }
        }
        Err(ClientError::BadUrl(self.url.clone()))
    }

    // Typed calls, one per route (`routes` names them).

    /// The host and its capacity.
    pub async fn host(&self) -> Result<HostInfo, ClientError> {
        self.get(routes::HOST).await
    }

    /// Every VM on the host.
    pub async fn vms(&self) -> Result<Vec<VmInfo>, ClientError> {
        self.get(routes::VMS).await
    }

    /// One VM.
    pub async fn vm(&self, name: &str) -> Result<VmInfo, ClientError> {
        self.get(&fill(routes::VM, name)).await
    }

    /// Starts a VM from a spec.
    pub async fn start_vm(&self, spec: &VmSpec) -> Result<VmInfo, ClientError> {
        self.post(routes::VMS, spec).await
    }

    /// Takes over a running QEMU.
    pub async fn adopt_vm(&self, req: &AdoptRequest) -> Result<VmInfo, ClientError> {
        self.post(routes::VMS_ADOPT, req).await
    }

    /// Stops a VM.
    pub async fn stop_vm(&self, name: &str) -> Result<Stopped, ClientError> {
        self.delete(&fill(routes::VM, name)).await
    }

    /// The last `bytes` bytes of a VM's serial console.
    pub async fn console(&self, name: &str, bytes: u64) -> Result<Console, ClientError> {
        self.get(&format!("{}?bytes={bytes}", fill(routes::VM_CONSOLE, name))).await
    }

    /// Asks the guest program to check its memory (and disk).
    pub async fn verify(&self, name: &str) -> Result<IntegrityResult, ClientError> {
        self.post(&fill(routes::VM_VERIFY, name), &Empty {}).await
    }

    /// Starts migrating a VM.
    pub async fn migrate(&self, vm: &str, req: &MigrateRequest) -> Result<JobInfo, ClientError> {
        self.post(&fill(routes::VM_MIGRATE, vm), req).await
    }

    /// Predicts a gang's migration (VMs of this agent) without starting it.
    pub async fn predict_gang(&self, req: &PredictGangRequest) -> Result<PredictGangResponse, ClientError> {
        self.post(routes::PREDICT_GANG, req).await
    }

    /// Predicts a migration without starting it.
    pub async fn predict(&self, vm: &str, req: &PredictRequest) -> Result<PredictResponse, ClientError> {
        self.post(&fill(routes::VM_PREDICT, vm), req).await
    }

    /// Every migration job on the host.
    pub async fn jobs(&self) -> Result<Vec<JobInfo>, ClientError> {
        self.get(routes::JOBS).await
    }

    /// One job.
    pub async fn job(&self, id: &str) -> Result<JobInfo, ClientError> {
        self.get(&fill(routes::JOB, id)).await
    }

    /// Cancels a job.
    pub async fn cancel_job(&self, id: &str) -> Result<JobInfo, ClientError> {
        self.post(&fill(routes::JOB_CANCEL, id), &Empty {}).await
    }

    /// Changes a job's finish target (`None`: flat out).
    pub async fn retarget_job(&self, id: &str, finish_in_s: Option<f64>) -> Result<JobInfo, ClientError> {
        self.post(&fill(routes::JOB_TARGET, id), &RetargetRequest { finish_in_s }).await
    }

    /// Group migrations this agent coordinates.
    pub async fn groups(&self) -> Result<Vec<GroupInfo>, ClientError> {
        self.get(routes::GROUPS).await
    }

    /// One group.
    pub async fn group(&self, id: &str) -> Result<GroupInfo, ClientError> {
        self.get(&fill(routes::GROUP, id)).await
    }

    /// Submits a group migration for this agent to coordinate.
    pub async fn submit_group(&self, req: &GroupRequest) -> Result<GroupInfo, ClientError> {
        self.post(routes::GROUPS, req).await
    }

    /// Cancels a group.
    pub async fn cancel_group(&self, id: &str) -> Result<GroupInfo, ClientError> {
        self.post(&fill(routes::GROUP_CANCEL, id), &Empty {}).await
    }

    /// Sends `body` to the link probe.
    pub async fn probe(&self, body: Vec<u8>) -> Result<ProbeAnswer, ClientError> {
        self.exchange(Method::POST, routes::PROBE, body).await
    }

    /// Asks the agent to prepare an incoming VM.
    pub async fn prepare_incoming(&self, req: &IncomingRequest) -> Result<IncomingReady, ClientError> {
        self.post(routes::INCOMING, req).await
    }

    /// The incoming VM becomes the agent's own.
    pub async fn commit_incoming(&self, name: &str) -> Result<Committed, ClientError> {
        self.post(&fill(routes::INCOMING_COMMIT, name), &Empty {}).await
    }

    /// Throws an incoming VM away.
    pub async fn abort_incoming(&self, name: &str) -> Result<Aborted, ClientError> {
        self.post(&fill(routes::INCOMING_ABORT, name), &Empty {}).await
    }

    /// Renews an incoming VM's lease.
    pub async fn heartbeat_incoming(&self, name: &str) -> Result<Empty, ClientError> {
        self.post(&fill(routes::INCOMING_HEARTBEAT, name), &Empty {}).await
    }

    /// The agent's metrics in the Prometheus text format.
    pub async fn metrics_text(&self) -> Result<String, ClientError> {
        let bytes = tokio::time::timeout(self.timeout, self.send_raw(Method::GET, routes::METRICS, Vec::new()))
            .await
            .map_err(|_| ClientError::Unreachable {
                url: self.url.clone(),
                reason: format!("no answer within {} s", self.timeout.as_secs()),
            })??;
        if !bytes.0.is_success() {
            return Err(self.parse::<Empty>(bytes).err().unwrap_or(ClientError::BadResponse {
                url: self.url.clone(),
                reason: "metrics answered with an error".into(),
            }));
        }
        String::from_utf8(bytes.1.to_vec())
            .map_err(|e| ClientError::BadResponse { url: self.url.clone(), reason: e.to_string() })
    }

    /// Sends `body` (none: an empty body) with `method` to `path` and returns the JSON
    /// answer as it is. For tests of the agent's input checks (a malformed spec, a
    /// route called the wrong way, a bad token); programs use the typed methods above.
    /// Build `path` from the [`routes`] constants with [`routes::fill`]. An error
    /// answer is a [`ClientError::Api`] (or `Unauthorized`), as from the typed methods.
    ///
    /// # Panics
    ///
    /// If `method` is not an HTTP method token (`"POST"`, `"GET"`, ...).
    pub async fn raw_json(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let method = Method::from_bytes(method.as_bytes())
            .unwrap_or_else(|_| panic!("{method:?} is not an HTTP method"));
        self.request(method, path, body).await
    }

    // Untyped calls, behind the typed ones.

    /// GET a JSON resource.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request(Method::GET, path, None::<&()>).await
    }

    /// POST a JSON body, parse a JSON answer.
    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.request(Method::POST, path, Some(body)).await
    }

    /// DELETE a resource.
    async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request(Method::DELETE, path, None::<&()>).await
    }

    /// Sends a request and parses the JSON answer (errors become `ClientError::Api`).
    async fn request<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let payload = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| ClientError::BadResponse {
                url: self.url.clone(),
                reason: e.to_string(),
            })?,
            None => Vec::new(),
        };
        self.exchange(method, path, payload).await
    }

    /// Sends a body within the timeout and parses the JSON answer.
    async fn exchange<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        payload: Vec<u8>,
    ) -> Result<T, ClientError> {
        let bytes = tokio::time::timeout(self.timeout, self.send_raw(method, path, payload))
            .await
            .map_err(|_| ClientError::Unreachable {
                url: self.url.clone(),
                reason: format!("no answer within {} s", self.timeout.as_secs()),
            })??;
        self.parse(bytes)
    }

    fn parse<T: DeserializeOwned>(&self, bytes: (StatusCode, Bytes)) -> Result<T, ClientError> {
        let (status, body) = bytes;
        if status == StatusCode::UNAUTHORIZED {
            return Err(ClientError::Unauthorized { url: self.url.clone() });
        }
        if !status.is_success() {
            let err: ErrorBody = serde_json::from_slice(&body).unwrap_or(ErrorBody {
                code: ErrorCode::Unknown,
                message: format!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
            });
            return Err(ClientError::Api {
                status: status.as_u16(),
                code: err.code,
                message: err.message,
            });
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::BadResponse {
            url: self.url.clone(),
            reason: e.to_string(),
        })
    }

    async fn send_raw(
        &self,
        method: Method,
        path: &str,
        payload: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let unreachable =
            |reason: String| ClientError::Unreachable { url: self.url.clone(), reason };
        let (host, sender) = match self.target()? {
            Target::Tcp(addr) => {
                let s = tokio::net::TcpStream::connect(&addr)
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                (addr, handshake(s).await.map_err(unreachable)?)
            }
            Target::Unix(p) => {
                let s = tokio::net::UnixStream::connect(&p)
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                ("localhost".to_string(), handshake(s).await.map_err(unreachable)?)
            }
        };
        let mut sender = sender;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| unreachable(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        Ok((status, body))
    }
}

async fn handshake<S>(
    stream: S,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
