//! A small asynchronous QMP client: one connection per VM, shared by everyone who
//! talks to that VM (QEMU's QMP socket serves one client at a time), requests
//! multiplexed by id, events broadcast.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, oneshot, Mutex as AsyncMutex};

/// Errors talking QMP.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The QMP socket could not be reached.
    #[error("cannot connect to QMP socket {path}: {source} (is QEMU running?)")]
    Connect { path: PathBuf, source: std::io::Error },
    /// The connection broke or QEMU exited.
    #[error("QMP connection closed (QEMU exited or socket closed)")]
    Closed,
    /// QEMU answered a command with an error.
    #[error("QEMU refused {command}: {class}: {desc}")]
    Command { command: String, class: String, desc: String },
    /// QEMU did not answer in time.
    #[error("QEMU did not answer {command} within {secs} s")]
    Timeout { command: String, secs: u64 },
    /// Something other than QMP was spoken.
    #[error("unexpected QMP data: {0}")]
    Protocol(String),
    /// Writing to the socket failed.
    #[error("QMP write failed: {0}")]
    Io(#[from] std::io::Error),
}

/// One asynchronous QMP event.
#[derive(Debug, Clone)]
pub struct QmpEvent {
    /// Event name, e.g. `MIGRATION`.
    pub event: String,
    /// Event data.
    pub data: Value,
    /// When QEMU emitted it, microseconds since the Unix epoch (its `timestamp`).
    pub at_unix_us: Option<u64>,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, (String, String)>>>>>;

/// A connected QMP client.
pub struct QmpClient {
    writer: AsyncMutex<tokio::net::unix::OwnedWriteHalf>,
    pending: Pending,
    next_id: AtomicU64,
    events: broadcast::Sender<QmpEvent>,
    closed: Arc<std::sync::atomic::AtomicBool>,
    peer_pid: Option<i32>,
    path: PathBuf,
    /// The latest time each event was emitted (its `timestamp`, µs since the epoch).
    last_events: Arc<Mutex<HashMap<String, u64>>>,
}

/// An event's `timestamp` (`{"seconds": s, "microseconds": us}`) in µs since the epoch.
fn event_time_us(msg: &Value) -> Option<u64> {
    let t = msg.get("timestamp")?;
    let s = t.get("seconds")?.as_i64()?;
    let us = t.get("microseconds")?.as_i64()?;
    (s >= 0 && us >= 0).then(|| s as u64 * 1_000_000 + us as u64)
}

impl QmpClient {
    /// Connects, reads the greeting and negotiates capabilities.
    pub async fn connect(path: &Path) -> Result<Arc<Self>, QmpError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| QmpError::Connect { path: path.to_path_buf(), source })?;
        let peer_pid = stream.peer_cred().ok().and_then(|c| c.pid());
        let (read, write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let greeting = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .map_err(|_| QmpError::Timeout { command: "greeting".into(), secs: 10 })??
            .ok_or(QmpError::Closed)?;
        let greeting: Value =
            serde_json::from_str(&greeting).map_err(|e| QmpError::Protocol(e.to_string()))?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!("no QMP greeting: {greeting}")));
        }
        let pending: Pending = Arc::default();
        let (events, _) = broadcast::channel(256);
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let last_events: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let last = last_events.clone();
        let client = Arc::new(QmpClient {
            writer: AsyncMutex::new(write),
            pending: pending.clone(),
            next_id: AtomicU64::new(1),
            events: events.clone(),
            closed: closed.clone(),
            peer_pid,
            path: path.to_path_buf(),
            last_events,
        });
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(msg) = serde_json::from_str::<Value>(&line) else { continue };
                if let Some(ev) = msg.get("event").and_then(Value::as_str) {
                    let data = msg.get("data").cloned().unwrap_or(Value::Null);
                    let at_unix_us = event_time_us(&msg);
                    if let Some(t) = at_unix_us {
                        last.lock().unwrap().insert(ev.to_string(), t);
                    }
                    let _ = events.send(QmpEvent { event: ev.to_string(), data, at_unix_us });
                    continue;
                }
                let Some(id) = msg.get("id").and_then(Value::as_u64) else { continue };
                let Some(tx) = pending.lock().unwrap().remove(&id) else { continue };
                let result = if let Some(ret) = msg.get("return") {
                    Ok(ret.clone())
                } else {
                    let err = msg.get("error").cloned().unwrap_or(Value::Null);
                    let class = err.get("class").and_then(Value::as_str).unwrap_or("Error");
                    let desc = err.get("desc").and_then(Value::as_str).unwrap_or("unknown error");
                    Err((class.to_string(), desc.to_string()))
                };
                let _ = tx.send(result);
            }
            closed.store(true, Ordering::SeqCst);
            // Dropping the senders wakes every waiter with Closed.
            pending.lock().unwrap().clear();
        });
        client.execute("qmp_capabilities", None).await?;
        Ok(client)
    }

    /// The pid of the QEMU process on the other end, from the socket's credentials.
    pub fn peer_pid(&self) -> Option<i32> {
        self.peer_pid
    }

    /// The socket this client is connected to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True once the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// When QEMU last emitted `event` (e.g. `STOP`, `RESUME`) while this client was
    /// connected, µs since the Unix epoch by the host's clock.
    pub fn last_event_us(&self, event: &str) -> Option<u64> {
        self.last_events.lock().unwrap().get(event).copied()
    }

    /// Subscribes to QMP events.
    pub fn events(&self) -> broadcast::Receiver<QmpEvent> {
        self.events.subscribe()
    }

    /// Runs a command with a 30 s timeout.
    pub async fn execute(&self, command: &str, args: Option<Value>) -> Result<Value, QmpError> {
        self.execute_timeout(command, args, Duration::from_secs(30)).await
    }

    /// Runs a command, waiting at most `timeout` for the answer.
    pub async fn execute_timeout(
        &self,
        command: &str,
        args: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        if self.is_closed() {
            return Err(QmpError::Closed);
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let mut msg = json!({"execute": command, "id": id});
        if let Some(args) = args {
            msg["arguments"] = args;
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let mut line = msg.to_string();
        line.push('\n');
        {
            let mut w = self.writer.lock().await;
            if let Err(e) = w.write_all(line.as_bytes()).await {
                self.pending.lock().unwrap().remove(&id);
                return Err(e.into());
            }
        }
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => {
                self.pending.lock().unwrap().remove(&id);
                Err(QmpError::Timeout { command: command.into(), secs: timeout.as_secs() })
            }
            Ok(Err(_)) => Err(QmpError::Closed),
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err((class, desc)))) => {
                Err(QmpError::Command { command: command.into(), class, desc })
            }
        }
    }

    /// Returns QEMU's run state (`running`, `paused`, `postmigrate`, `inmigrate`, ...).
    pub async fn run_state(&self) -> Result<crate::RunState, QmpError> {
        let v = self.execute("query-status", None).await?;
        Ok(crate::RunState::from(v.get("status").and_then(Value::as_str).unwrap_or("unknown")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_timestamps_are_read_in_microseconds() {
        let m = json!({"event": "RESUME", "timestamp": {"seconds": 1_700_000_000, "microseconds": 250_000}});
        assert_eq!(event_time_us(&m), Some(1_700_000_000_250_000));
        assert_eq!(event_time_us(&json!({"event": "STOP"})), None);
        assert_eq!(event_time_us(&json!({"timestamp": {"seconds": -1, "microseconds": -1}})), None);
    }
}
