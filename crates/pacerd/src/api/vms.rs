//! `/v1/vms...`: list, start, adopt, show, stop, console, verify.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use pacer_api::{AdoptRequest, Console, IntegrityResult, Stopped, VmInfo, VmSpec};
use serde::Deserialize;

use super::{body, S};
use crate::agent::Agent;
use crate::error::{AgentError, AgentResult};
use crate::vms::{guest, lifecycle, LaunchMode};

/// Longest console tail served.
const CONSOLE_MAX: u64 = 16 << 20;
/// How long the guest program may take to check its memory.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(180);

/// A VM as the API shows it: the registry's view and the job moving it.
async fn info(agent: &Agent, name: &str) -> AgentResult<VmInfo> {
    let mut i = agent.vms.info(name).await?;
    i.migrating = agent.migrations.jobs.job_for(name);
    Ok(i)
}

pub async fn list(State(agent): S) -> Json<Vec<VmInfo>> {
    let mut out = Vec::new();
    for r in agent.vms.records() {
        if let Ok(i) = info(&agent, &r.name).await {
            out.push(i);
        }
    }
    Json(out)
}

pub async fn start(State(agent): S, spec: Result<Json<VmSpec>, JsonRejection>) -> AgentResult<(StatusCode, Json<VmInfo>)> {
    let spec = body(spec)?;
    agent.launcher.launch(&agent.vms, &spec, None, LaunchMode::Fresh).await?;
    Ok((StatusCode::CREATED, Json(info(&agent, &spec.name).await?)))
}

pub async fn adopt(State(agent): S, req: Result<Json<AdoptRequest>, JsonRejection>) -> AgentResult<(StatusCode, Json<VmInfo>)> {
    let req = body(req)?;
    lifecycle::adopt(&agent.vms, &req).await?;
    Ok((StatusCode::CREATED, Json(info(&agent, &req.name).await?)))
}

pub async fn show(State(agent): S, Path(name): Path<String>) -> AgentResult<Json<VmInfo>> {
    Ok(Json(info(&agent, &name).await?))
}

pub async fn stop(State(agent): S, Path(name): Path<String>) -> AgentResult<Json<Stopped>> {
    agent.vms.record(&name)?;
    if let Some(job) = agent.migrations.jobs.job_for(&name) {
        return Err(AgentError::Migrating { vm: name, job });
    }
    lifecycle::stop(&agent.vms, &name).await?;
    Ok(Json(Stopped { stopped: name }))
}

#[derive(Deserialize)]
pub struct ConsoleQuery {
    bytes: Option<u64>,
}

pub async fn console(State(agent): S, Path(name): Path<String>, Query(q): Query<ConsoleQuery>) -> AgentResult<Json<Console>> {
    let text = guest::console_tail(&agent.vms, &name, q.bytes.unwrap_or(16 * 1024).min(CONSOLE_MAX))?;
    Ok(Json(Console { vm: name, text }))
}

pub async fn verify(State(agent): S, Path(name): Path<String>) -> AgentResult<Json<IntegrityResult>> {
    Ok(Json(guest::verify_guest(&agent.vms, &name, VERIFY_TIMEOUT).await?))
}
