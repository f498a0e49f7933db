//! The sending side: one connection to a destination host's relay; each VM's
//! QEMU migrates into a local socket whose reader queues chunks for the writer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use pacer_api::RelayReport;
use pacer_relay::Encoder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UnixListener};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::{io_err, CHUNK, QUEUE, SOCKET_BUFFER, STORE_PAGES};
use crate::error::{AgentError, AgentResult};

enum Msg {
    Open(u32, String, bool),
    Data(u32, Vec<u8>),
    Close(u32, bool),
}

type Reports = Arc<Mutex<HashMap<u32, RelayReport>>>;

/// How long one write to the destination relay may take (a write is at most a
/// few hundred KiB: seconds mean the link is gone).
const WRITE_STALL: std::time::Duration = std::time::Duration::from_secs(10);

/// A connection to one destination relay.
pub struct Sender {
    tx: mpsc::Sender<Msg>,
    next: AtomicU32,
    reports: Reports,
    broken: CancellationToken,
}

/// One VM's stream: the socket its QEMU migrates into, and its counts.
pub struct StreamHandle {
    path: PathBuf,
    stream: u32,
    reports: Reports,
    /// Stops waiting for QEMU to connect (a migration that never started).
    unused: CancellationToken,
}

impl StreamHandle {
    /// The URI for QEMU's `migrate`.
    pub fn uri(&self) -> String {
        format!("unix:{}", self.path.display())
    }

    /// How the stream went so far.
    pub fn report(&self) -> RelayReport {
        self.reports.lock().unwrap().get(&self.stream).cloned().unwrap_or_default()
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        // Only a reader still waiting for QEMU stops: a stream under way runs to
        // its end (QEMU's "completed" means the bytes are in the socket, not sent).
        self.unused.cancel();
    }
}

impl Sender {
    /// Connects to the relay at `to` (`host:port`).
    pub async fn connect(to: &str, tasks: &TaskTracker, shutdown: CancellationToken) -> AgentResult<Sender> {
        let addr: std::net::SocketAddr =
            to.parse().map_err(|_| AgentError::Invalid(format!("relay address {to:?} is not host:port")))?;
        let sock = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(io_err("socket"))?;
        sock.set_send_buffer_size(SOCKET_BUFFER).map_err(io_err("send buffer"))?;
        let mut conn = sock
            .connect(addr)
            .await
            .map_err(|e| AgentError::Upstream(format!("cannot reach the destination's relay at {to}: {e}")))?;
        conn.set_nodelay(true).map_err(io_err("nodelay"))?;
        let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
        let reports: Reports = Arc::default();
        let broken = CancellationToken::new();
        let (r, b, to) = (reports.clone(), broken.clone(), to.to_string());
        tasks.spawn_on(async move {
            let mut enc = Encoder::new(STORE_PAGES, true);
            let mut buf = Vec::with_capacity(2 * CHUNK);
            enc.preface(&mut buf);
            info!("relay: connected to {to}");
            loop {
                let msg = tokio::select! {
                    m = rx.recv() => m,
                    _ = shutdown.cancelled() => None,
                };
                let Some(msg) = msg else { break };
                let stream = match msg {
                    Msg::Open(s, name, dedup) => {
                        enc.open_with(s, &name, dedup, &mut buf);
                        s
                    }
                    Msg::Data(s, d) => {
                        enc.feed(s, &d, &mut buf);
                        s
                    }
                    Msg::Close(s, clean) => {
                        note(&r, &enc, s);
                        enc.close(s, clean, &mut buf);
                        s
                    }
                };
                match tokio::time::timeout(WRITE_STALL, conn.write_all(&buf)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        warn!("relay: connection to {to} broke: {e}");
                        break;
                    }
                    // A cut link stalls a socket for as long as TCP retries (many
                    // minutes); a connection that moved nothing for this long is
                    // given up, so the next migration there opens a new one.
                    Err(_) => {
                        warn!("relay: connection to {to} moved nothing for {} s: given up", WRITE_STALL.as_secs());
                        break;
                    }
                }
                buf.clear();
                note(&r, &enc, stream);
            }
            // Readers see their queue gone and drop their QEMU's socket: those
            // migrations fail at the source, where the guests keep running.
            b.cancel();
            let st = enc.stats();
            info!("relay: connection to {to} ended ({} stream bytes as {} on the wire)", st.stream_bytes, st.wire_bytes);
        }, super::runtime());
        Ok(Sender { tx, next: AtomicU32::new(1), reports, broken })
    }

    /// Whether the connection is gone (a new one is made for the next VM).
    pub fn broken(&self) -> bool {
        self.broken.is_cancelled() || self.tx.is_closed()
    }

    /// A stream for `vm`: QEMU migrates into `path`.
    pub async fn add(&self, vm: &str, path: &Path, dedup: bool, tasks: &TaskTracker) -> AgentResult<StreamHandle> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).map_err(io_err("listen for QEMU"))?;
        let stream = self.next.fetch_add(1, Ordering::Relaxed);
        self.reports.lock().unwrap().insert(stream, RelayReport { relayed: true, ..RelayReport::default() });
        let unused = CancellationToken::new();
        let (tx, wait, p, vm) = (self.tx.clone(), unused.clone(), path.to_path_buf(), vm.to_string());
        tasks.spawn_on(async move {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = wait.cancelled() => {
                    let _ = std::fs::remove_file(&p);
                    return;
                }
            };
            let _ = std::fs::remove_file(&p);
            let Ok((mut qemu, _)) = accepted else { return };
            if tx.send(Msg::Open(stream, vm.clone(), dedup)).await.is_err() {
                return;
            }
            let mut clean = false;
            loop {
                let mut chunk = vec![0u8; CHUNK];
                match qemu.read(&mut chunk).await {
                    Ok(0) => {
                        clean = true;
                        break;
                    }
                    Ok(n) => {
                        chunk.truncate(n);
                        if tx.send(Msg::Data(stream, chunk)).await.is_err() {
                            warn!("relay: {vm}'s stream cut (the connection is gone)");
                            let _ = qemu.shutdown().await;
                            return;
                        }
                    }
                    Err(e) => {
                        warn!("relay: reading {vm}'s stream: {e}");
                        break;
                    }
                }
            }
            let _ = tx.send(Msg::Close(stream, clean)).await;
        }, super::runtime());
        Ok(StreamHandle { path: path.to_path_buf(), stream, reports: self.reports.clone(), unused })
    }
}

/// Copies the encoder's counts of `stream` into its report.
fn note(reports: &Reports, enc: &Encoder, stream: u32) {
    let Some(st) = enc.stream_stats(stream) else { return };
    if let Some(r) = reports.lock().unwrap().get_mut(&stream) {
        r.stream_bytes = st.stream_bytes;
        r.wire_bytes = st.wire_bytes;
        r.pages = st.pages;
        r.refs = st.refs;
        if let Some(why) = enc.gave_up(stream) {
            r.why = Some(format!("passed through without dedup from some point on: {why}"));
        }
    }
}
