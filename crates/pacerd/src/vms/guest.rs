//! The guest side of a VM: its serial console, and the Pacer guest program's
//! memory (and disk) check.

use std::time::Duration;

use pacer_api::IntegrityResult;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::error::{AgentError, AgentResult};
use crate::vms::Registry;

/// The last `bytes` bytes of the VM's serial console.
pub fn console_tail(vms: &Registry, name: &str, bytes: u64) -> AgentResult<String> {
    let rec = vms.record(name)?;
    let Some(log) = rec.console_log else {
        return Err(AgentError::NoConsole(format!(
            "VM {name:?} has no known console log (adopt it with --console-log)"
        )));
    };
    let data = std::fs::read(&log).unwrap_or_default();
    let start = data.len().saturating_sub(bytes as usize);
    Ok(String::from_utf8_lossy(&data[start..]).into_owned())
}

/// Asks the Pacer guest program to sweep its memory and returns its verdict.
pub async fn verify_guest(vms: &Registry, name: &str, timeout: Duration) -> AgentResult<IntegrityResult> {
    let rec = vms.record(name)?;
    let Some(sock) = rec.serial_socket else {
        return Err(AgentError::NoConsole(format!("VM {name:?} has no serial socket")));
    };
    let fut = async {
        let stream = tokio::net::UnixStream::connect(&sock)
            .await
            .map_err(|e| AgentError::Upstream(format!("cannot open serial console: {e}")))?;
        let (r, mut w) = stream.into_split();
        w.write_all(b"verify\n").await.map_err(|e| AgentError::Upstream(e.to_string()))?;
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let Some(json) = line.trim_end_matches('\r').split_once("PACER ").map(|(_, j)| j)
            else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else { continue };
            if v.get("kind").and_then(|k| k.as_str()) != Some("verify") {
                continue;
            }
            let n = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
            return Ok(IntegrityResult {
                ok: v.get("ok").and_then(|x| x.as_bool()).unwrap_or(false),
                pages_checked: n("pages_checked"),
                bad_pages: n("bad_pages"),
                errors_total: n("errors_total"),
                duration_ms: n("duration_ms"),
                disk_ok: v.get("disk_ok").and_then(|x| x.as_bool()).unwrap_or(true),
                disk_blocks_checked: n("disk_blocks_checked"),
                disk_bad_blocks: n("disk_bad_blocks"),
            });
        }
        Err(AgentError::Upstream("serial console closed before the guest answered".into()))
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| {
        AgentError::Upstream(format!(
            "the guest did not answer a memory check within {} s (is the Pacer guest program running?)",
            timeout.as_secs()
        ))
    })?
}
