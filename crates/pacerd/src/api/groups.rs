//! `/v1/groups...`: group migrations this agent coordinates.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use pacer_api::{GroupInfo, GroupRequest};

use super::{body, S};
use crate::error::AgentResult;
use crate::groups::coordinator;

pub async fn submit(State(agent): S, req: Result<Json<GroupRequest>, JsonRejection>) -> AgentResult<(StatusCode, Json<GroupInfo>)> {
    let req = body(req)?;
    Ok((StatusCode::ACCEPTED, Json(coordinator::submit(&agent.coordination, req)?)))
}

pub async fn list(State(agent): S) -> Json<Vec<GroupInfo>> {
    Json(agent.coordination.groups.list())
}

pub async fn show(State(agent): S, Path(id): Path<String>) -> AgentResult<Json<GroupInfo>> {
    Ok(Json(agent.coordination.groups.get(&id)?.info()))
}

pub async fn cancel(State(agent): S, Path(id): Path<String>) -> AgentResult<Json<GroupInfo>> {
    Ok(Json(coordinator::cancel(&agent.coordination.groups, &id)?))
}
