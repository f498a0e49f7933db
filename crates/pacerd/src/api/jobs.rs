//! `POST /v1/vms/{name}/migrate|predict` and `/v1/jobs...`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use pacer_api::{JobInfo, MigrateRequest, PredictGangRequest, PredictGangResponse, PredictRequest, PredictResponse, RetargetRequest};

use super::{body, S};
use crate::error::{AgentError, AgentResult};
use crate::migration::{driver, predict as before};

pub async fn migrate(
    State(agent): S,
    Path(name): Path<String>,
    req: Result<Json<MigrateRequest>, JsonRejection>,
) -> AgentResult<(StatusCode, Json<JobInfo>)> {
    let req = body(req)?;
    Ok((StatusCode::ACCEPTED, Json(driver::start(&agent.migrations, &name, req).await?)))
}

pub async fn predict(
    State(agent): S,
    Path(name): Path<String>,
    req: Result<Json<PredictRequest>, JsonRejection>,
) -> AgentResult<Json<PredictResponse>> {
    let req = body(req)?;
    let m = &agent.migrations;
    Ok(Json(before::predict(&m.vms, &m.measure, &m.links, &name, &req).await?))
}

pub async fn predict_gang(
    State(agent): S,
    req: Result<Json<PredictGangRequest>, JsonRejection>,
) -> AgentResult<Json<PredictGangResponse>> {
    let req = body(req)?;
    let m = &agent.migrations;
    Ok(Json(before::predict_gang(&m.vms, &m.measure, &m.links, m.jobs.end_lag(), &req).await?))
}

pub async fn list(State(agent): S) -> Json<Vec<JobInfo>> {
    Json(agent.migrations.jobs.list())
}

pub async fn show(State(agent): S, Path(id): Path<String>) -> AgentResult<Json<JobInfo>> {
    Ok(Json(agent.migrations.jobs.get(&id)?.info()))
}

fn running(agent: &crate::agent::Agent, id: &str, action: &'static str) -> AgentResult<std::sync::Arc<crate::migration::Job>> {
    let job = agent.migrations.jobs.get(id)?;
    let info = job.info();
    if info.status.is_terminal() {
        return Err(AgentError::Ended { what: "job", id: id.into(), how: format!("{:?}", info.status), action });
    }
    Ok(job)
}

pub async fn cancel(State(agent): S, Path(id): Path<String>) -> AgentResult<Json<JobInfo>> {
    let job = running(&agent, &id, "cancel")?;
    job.cancel.cancel();
    Ok(Json(job.info()))
}

pub async fn retarget(
    State(agent): S,
    Path(id): Path<String>,
    req: Result<Json<RetargetRequest>, JsonRejection>,
) -> AgentResult<Json<JobInfo>> {
    let req = body(req)?;
    let job = running(&agent, &id, "retarget")?;
    job.request_retarget(req.finish_in_s)?;
    Ok(Json(job.info()))
}
