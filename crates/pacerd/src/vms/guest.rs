//! The guest side of a VM: its serial console, and the Pacer guest program's
//! memory (and disk) check.

use std::time::Duration;

use pacer_api::IntegrityResult;
use pacer_guest_proto::{parse_line, Command, GuestLine};
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
        w.write_all(Command::Verify.line().as_bytes()).await.map_err(|e| AgentError::Upstream(e.to_string()))?;
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(GuestLine::Verify(v)) = parse_line(&line) {
                return Ok(IntegrityResult {
                    // A guest older than applications writes no app_ok: it counts as ok.
                    ok: v.ok && v.app_is_ok(),
                    app_ok: v.app_ok,
                    app_detail: v.app_detail,
                    pages_checked: v.pages_checked,
                    bad_pages: v.bad_pages,
                    errors_total: v.errors_total,
                    duration_ms: v.duration_ms,
                    disk_ok: v.disk_ok,
                    disk_blocks_checked: v.disk_blocks_checked,
                    disk_bad_blocks: v.disk_bad_blocks,
                });
            }
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
