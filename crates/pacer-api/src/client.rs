//! A minimal HTTP/1.1 JSON client for the agent API, over TCP (`http://host:port`)
//! or a Unix socket (`unix:/path/to/pacerd.sock`): one request per connection.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::ErrorBody;

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
    Api { status: u16, code: String, message: String },
    /// The answer was not what we expected.
    #[error("bad answer from agent at {url}: {reason}")]
    BadResponse { url: String, reason: String },
}

impl ClientError {
    /// The API error code, if the agent answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
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

    /// GET a JSON resource.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request(Method::GET, path, None::<&()>).await
    }

    /// POST a JSON body, parse a JSON answer.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.request(Method::POST, path, Some(body)).await
    }

    /// POST raw bytes, parse a JSON answer (the link probe).
    pub async fn post_bytes<T: DeserializeOwned>(&self, path: &str, body: Vec<u8>) -> Result<T, ClientError> {
        self.exchange(Method::POST, path, body).await
    }

    /// DELETE a resource.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request(Method::DELETE, path, None::<&()>).await
    }

    /// Sends a request and parses the JSON answer (errors become `ClientError::Api`).
    pub async fn request<B: Serialize, T: DeserializeOwned>(
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
                code: "http_error".into(),
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
