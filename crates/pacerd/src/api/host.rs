//! `GET /v1/host`, `POST /v1/probe`, `GET /metrics`.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::Json;
use pacer_api::{HostInfo, ProbeAnswer};

use super::S;
use crate::metrics::Format;

pub async fn show(State(agent): S) -> Json<HostInfo> {
    let vms = &agent.vms;
    Json(HostInfo {
        name: agent.cfg.host_name.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        memory_capacity_mib: vms.capacity_mib(),
        memory_committed_mib: vms.committed_mib(),
        migration_address: agent.cfg.migration_address.clone(),
        kvm: agent.launcher.kvm().map(|p| format!("{p:?}")),
        disk_free_bytes: pacer_qemu::image::free_space(&agent.cfg.disk_dir()).unwrap_or(0),
    })
}

/// Link probe: swallows the body and says how much arrived.
pub async fn probe(body: axum::body::Bytes) -> Json<ProbeAnswer> {
    Json(ProbeAnswer { bytes: body.len() as u64 })
}

/// Metrics, in the format the scraper asks for.
pub async fn metrics(State(agent): S, headers: HeaderMap) -> impl IntoResponse {
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let jobs = agent.migrations.jobs.list();
    let text = agent.metrics.render(&jobs, agent.vms.records().len(), format);
    ([(header::CONTENT_TYPE, format.content_type())], text)
}
