//! The receiving side: accepts source relays' connections and feeds each VM's
//! rebuilt stream to its incoming QEMU's local socket.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pacer_relay::{Decoder, Event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UnixStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::{io_err, CHUNK, SOCKET_BUFFER};
use crate::error::{AgentError, AgentResult};

type Routes = Arc<Mutex<HashMap<String, PathBuf>>>;

/// Listens on `address` (any free port); returns `host:port`.
pub async fn listen(address: &str, routes: Routes, tasks: &TaskTracker, shutdown: CancellationToken) -> AgentResult<String> {
    let ip: std::net::IpAddr = address
        .parse()
        .map_err(|_| AgentError::Invalid(format!("migration address {address:?} is not an IP address")))?;
    let sock = if ip.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(io_err("socket"))?;
    // Small, so that what the relay has not passed on holds back the sender.
    sock.set_recv_buffer_size(SOCKET_BUFFER).map_err(io_err("receive buffer"))?;
    sock.bind((ip, 0).into()).map_err(io_err("bind"))?;
    let listener = sock.listen(64).map_err(io_err("listen"))?;
    let addr = listener.local_addr().map_err(io_err("address"))?.to_string();
    info!("relay: listening on {addr}");
    let t = tasks.clone();
    tasks.spawn_on(async move {
        loop {
            let conn = tokio::select! {
                c = listener.accept() => c,
                _ = shutdown.cancelled() => return,
            };
            match conn {
                Ok((c, peer)) => {
                    let (routes, stop, tt) = (routes.clone(), shutdown.clone(), t.clone());
                    t.spawn_on(async move {
                        if let Err(e) = serve(c, routes, tt, stop).await {
                            warn!("relay: connection from {peer} ended: {e}");
                        }
                    }, super::runtime());
                }
                Err(e) => warn!("relay: accept: {e}"),
            }
        }
    }, super::runtime());
    Ok(addr)
}

enum Act {
    Open(u32, String),
    Data(u32, Vec<u8>),
    Close(u32),
}

/// Chunks queued for one incoming QEMU: a destination slow to read holds back
/// its own stream first, and the others only once its queue is full.
const PER_VM_QUEUE: usize = 8;
/// Most bytes of one stream handed to its QEMU in one write.
const COALESCE: usize = 256 << 10;

/// Feeds one incoming QEMU its stream, in order, from a queue.
fn feeder(vm: String, mut q: UnixStream, tasks: &TaskTracker) -> mpsc::Sender<Vec<u8>> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(PER_VM_QUEUE);
    tasks.spawn_on(async move {
        while let Some(b) = rx.recv().await {
            if let Err(e) = q.write_all(&b).await {
                warn!("relay: {vm}'s incoming QEMU stopped reading: {e}");
                return;
            }
        }
        let _ = q.shutdown().await;
    }, super::runtime());
    tx
}

/// One source relay's connection. Any error ends it, and with it every stream on
/// it: their destination QEMUs see the stream end early and fail, and their
/// sources, whose sockets break, roll back with the guests running there.
async fn serve(mut conn: TcpStream, routes: Routes, tasks: TaskTracker, stop: CancellationToken) -> Result<(), String> {
    let mut dec = Decoder::new();
    let mut outs: HashMap<u32, (String, mpsc::Sender<Vec<u8>>)> = HashMap::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = tokio::select! {
            r = conn.read(&mut buf) => r.map_err(|e| e.to_string())?,
            _ = stop.cancelled() => return Err("the agent is stopping".into()),
        };
        if n == 0 {
            return if outs.is_empty() {
                Ok(())
            } else {
                let open: Vec<&str> = outs.values().map(|(v, _)| v.as_str()).collect();
                Err(format!("closed with streams still open: {}", open.join(", ")))
            };
        }
        let mut acts = Vec::new();
        dec.feed(&buf[..n], |e| match e {
            Event::Open { stream, name } => acts.push(Act::Open(stream, name)),
            // A page and its record header come as separate frames: writes to
            // the QEMU go in pieces of up to COALESCE bytes, not one per frame.
            Event::Data { stream, bytes } => match acts.last_mut() {
                Some(Act::Data(s, b)) if *s == stream && b.len() + bytes.len() <= COALESCE => {
                    b.extend_from_slice(bytes)
                }
                _ => acts.push(Act::Data(stream, bytes.to_vec())),
            },
            Event::Close { stream, .. } => acts.push(Act::Close(stream)),
        })
        .map_err(|e| e.to_string())?;
        for a in acts {
            match a {
                Act::Open(stream, vm) => {
                    let path = routes.lock().unwrap().get(&vm).cloned();
                    let Some(path) = path else {
                        return Err(format!("a stream for {vm}, which is not expected here"));
                    };
                    let q = UnixStream::connect(&path)
                        .await
                        .map_err(|e| format!("cannot reach {vm}'s incoming QEMU: {e}"))?;
                    info!("relay: {vm}'s stream is coming in");
                    outs.insert(stream, (vm.clone(), feeder(vm, q, &tasks)));
                }
                Act::Data(stream, bytes) => {
                    let Some((vm, tx)) = outs.get(&stream) else { continue };
                    if tx.send(bytes).await.is_err() {
                        return Err(format!("{vm}'s incoming QEMU stopped reading"));
                    }
                }
                Act::Close(stream) => {
                    // Dropping the queue lets its feeder finish and close the socket.
                    if let Some((vm, _)) = outs.remove(&stream) {
                        routes.lock().unwrap().remove(&vm);
                        info!("relay: {vm}'s stream is in");
                    }
                }
            }
        }
    }
}
