//! The HTTP/JSON API: routes, token check, request parsing. Handlers are thin:
//! the work is in `vms`, `incoming` and `jobs`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pacer_api::{
    AdoptRequest, ErrorBody, HostInfo, IncomingReady, IncomingRequest, IntegrityResult, JobInfo,
    MigrateRequest, PredictRequest, PredictResponse, RetargetRequest, VmInfo, VmOrigin, VmSpec,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::state::Agent;
use crate::{incoming, jobs, vms};

type S = State<Arc<Agent>>;

/// Builds the router.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/v1/host", get(host))
        .route("/v1/vms", get(list_vms).post(start_vm))
        .route("/v1/vms/adopt", post(adopt_vm))
        .route("/v1/vms/{name}", get(show_vm).delete(stop_vm))
        .route("/v1/vms/{name}/console", get(console))
        .route("/v1/vms/{name}/verify", post(verify))
        .route("/v1/vms/{name}/migrate", post(migrate))
        .route("/v1/jobs", get(list_jobs))
        .route("/v1/jobs/{id}", get(show_job))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/v1/jobs/{id}/target", post(retarget_job))
        .route("/v1/vms/{name}/predict", post(predict))
        .route(
            "/v1/probe",
            post(probe).layer(axum::extract::DefaultBodyLimit::max(512 << 20)),
        )
        .route("/v1/incoming", post(incoming_prepare))
        .route("/v1/incoming/{name}/commit", post(incoming_commit))
        .route("/v1/incoming/{name}/abort", post(incoming_abort))
        .route("/v1/incoming/{name}/heartbeat", post(incoming_heartbeat))
        .fallback(|| async {
            ApiError::not_found("no such API endpoint; see docs/agent.md for the API")
        })
        .layer(middleware::from_fn_with_state(agent.clone(), require_token))
        .with_state(agent)
}

async fn require_token(State(agent): S, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let ok = given.is_some_and(|g| constant_time_eq(g.as_bytes(), agent.token.as_bytes()));
    if !ok {
        let body = ErrorBody {
            code: "unauthorized".into(),
            message: "missing or wrong API token: send `Authorization: Bearer <token>` \
                      (the token is in the agent's state directory, file `token`)"
                .into(),
        };
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    b.map(|Json(v)| v)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {}", e.body_text())))
}

async fn host(State(agent): S) -> Json<HostInfo> {
    Json(agent.host_info())
}

async fn list_vms(State(agent): S) -> ApiResult<Json<Vec<VmInfo>>> {
    let mut names: Vec<String> = agent.vms.lock().unwrap().keys().cloned().collect();
    names.sort();
    let mut out = Vec::new();
    for n in names {
        if let Ok(i) = agent.vm_info(&n).await {
            out.push(i);
        }
    }
    Ok(Json(out))
}

async fn start_vm(
    State(agent): S,
    spec: Result<Json<VmSpec>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<VmInfo>)> {
    let spec = body(spec)?;
    vms::launch(&agent, &spec, None, VmOrigin::Launched, false).await?;
    Ok((StatusCode::CREATED, Json(agent.vm_info(&spec.name).await?)))
}

async fn adopt_vm(
    State(agent): S,
    req: Result<Json<AdoptRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<VmInfo>)> {
    let req = body(req)?;
    vms::adopt(&agent, &req).await?;
    Ok((StatusCode::CREATED, Json(agent.vm_info(&req.name).await?)))
}

async fn show_vm(State(agent): S, Path(name): Path<String>) -> ApiResult<Json<VmInfo>> {
    Ok(Json(agent.vm_info(&name).await?))
}

async fn stop_vm(State(agent): S, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    vms::stop(&agent, &name).await?;
    Ok(Json(json!({ "stopped": name })))
}

#[derive(Deserialize)]
struct ConsoleQuery {
    bytes: Option<u64>,
}

async fn console(
    State(agent): S,
    Path(name): Path<String>,
    Query(q): Query<ConsoleQuery>,
) -> ApiResult<Json<Value>> {
    let text = vms::console_tail(&agent, &name, q.bytes.unwrap_or(16 * 1024).min(16 << 20))?;
    Ok(Json(json!({ "vm": name, "text": text })))
}

async fn verify(State(agent): S, Path(name): Path<String>) -> ApiResult<Json<IntegrityResult>> {
    Ok(Json(vms::verify_guest(&agent, &name, Duration::from_secs(180)).await?))
}

async fn migrate(
    State(agent): S,
    Path(name): Path<String>,
    req: Result<Json<MigrateRequest>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<JobInfo>)> {
    let req = body(req)?;
    Ok((StatusCode::ACCEPTED, Json(jobs::start(&agent, &name, req).await?)))
}

async fn list_jobs(State(agent): S) -> Json<Vec<JobInfo>> {
    let mut v: Vec<JobInfo> =
        agent.jobs.lock().unwrap().values().map(|j| j.info.lock().unwrap().clone()).collect();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    Json(v)
}

async fn show_job(State(agent): S, Path(id): Path<String>) -> ApiResult<Json<JobInfo>> {
    let job = jobs::get(&agent, &id)?;
    let info = job.info.lock().unwrap().clone();
    Ok(Json(info))
}

async fn cancel_job(State(agent): S, Path(id): Path<String>) -> ApiResult<Json<JobInfo>> {
    let job = jobs::get(&agent, &id)?;
    let info = job.info.lock().unwrap().clone();
    if info.status.is_terminal() {
        return Err(ApiError::conflict(
            "job_ended",
            format!("job {id} already ended ({:?}); nothing to cancel", info.status),
        ));
    }
    job.cancel.cancel();
    Ok(Json(info))
}

async fn retarget_job(
    State(agent): S,
    Path(id): Path<String>,
    req: Result<Json<RetargetRequest>, JsonRejection>,
) -> ApiResult<Json<JobInfo>> {
    let req = body(req)?;
    let job = jobs::get(&agent, &id)?;
    let info = job.info.lock().unwrap().clone();
    if info.status.is_terminal() {
        return Err(ApiError::conflict(
            "job_ended",
            format!("job {id} already ended ({:?}); nothing to retarget", info.status),
        ));
    }
    jobs::retarget(&job, req.finish_in_s)?;
    Ok(Json(info))
}

async fn predict(
    State(agent): S,
    Path(name): Path<String>,
    req: Result<Json<PredictRequest>, JsonRejection>,
) -> ApiResult<Json<PredictResponse>> {
    let req = body(req)?;
    Ok(Json(crate::predict::predict(&agent, &name, &req).await?))
}

/// Link probe: swallows the body and says how much arrived.
async fn probe(body: axum::body::Bytes) -> Json<Value> {
    Json(json!({ "bytes": body.len() }))
}

async fn incoming_prepare(
    State(agent): S,
    req: Result<Json<IncomingRequest>, JsonRejection>,
) -> ApiResult<Json<IncomingReady>> {
    let req = body(req)?;
    Ok(Json(incoming::prepare(&agent, &req).await?))
}

async fn incoming_commit(State(agent): S, Path(name): Path<String>) -> ApiResult<Json<VmInfo>> {
    Ok(Json(incoming::commit(&agent, &name).await?))
}

async fn incoming_abort(State(agent): S, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    incoming::abort(&agent, &name).await?;
    Ok(Json(json!({ "aborted": name })))
}

async fn incoming_heartbeat(State(agent): S, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    incoming::heartbeat(&agent, &name)?;
    Ok(Json(json!({})))
}
