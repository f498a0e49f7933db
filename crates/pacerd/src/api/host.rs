//! `GET /v1/host`, `POST /v1/probe`, `GET /metrics`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use pacer_api::{HostInfo, ProbeAnswer};

use super::S;

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

/// Metrics in the text format Prometheus scrapes.
pub async fn metrics(State(agent): S) -> impl IntoResponse {
    let jobs = agent.migrations.jobs.list();
    let text = agent.metrics.render(&jobs, agent.vms.records().len());
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
}
