//! `/v1/incoming...`: the destination side, called by source agents.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use pacer_api::{Aborted, Committed, Empty, IncomingReady, IncomingRequest};

use super::{body, S};
use crate::error::AgentResult;

pub async fn prepare(State(agent): S, req: Result<Json<IncomingRequest>, JsonRejection>) -> AgentResult<Json<IncomingReady>> {
    let req = body(req)?;
    Ok(Json(agent.incoming.prepare(&agent.vms, &agent.launcher, &agent.migrations.relays, &req).await?))
}

pub async fn commit(State(agent): S, Path(name): Path<String>) -> AgentResult<Json<Committed>> {
    let resumed_at_unix_us = agent.incoming.commit(&agent.vms, &name).await?;
    Ok(Json(Committed { vm: agent.vms.info(&name).await?, resumed_at_unix_us }))
}

pub async fn abort(State(agent): S, Path(name): Path<String>) -> AgentResult<Json<Aborted>> {
    agent.incoming.abort(&agent.vms, &name).await?;
    Ok(Json(Aborted { aborted: name }))
}

pub async fn heartbeat(State(agent): S, Path(name): Path<String>) -> AgentResult<Json<Empty>> {
    agent.incoming.heartbeat(&agent.vms, &name)?;
    Ok(Json(Empty {}))
}
