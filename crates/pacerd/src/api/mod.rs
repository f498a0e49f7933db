//! The HTTP/JSON API: the router (routes from `pacer_api::routes`, one file per
//! resource), the token check, and request bodies. Handlers parse and
//! validate, then call the owner of what they touch.

mod groups;
mod host;
mod incoming;
mod jobs;
mod vms;

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pacer_api::routes;

use crate::agent::Agent;
use crate::error::{AgentError, AgentResult};

type S = State<Arc<Agent>>;

/// Link probe uploads may be this large.
const PROBE_BODY_LIMIT: usize = 512 << 20;

/// Builds the router.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route(routes::HOST, get(host::show))
        .route(routes::PROBE, post(host::probe).layer(axum::extract::DefaultBodyLimit::max(PROBE_BODY_LIMIT)))
        .route(routes::METRICS, get(host::metrics))
        .route(routes::VMS, get(vms::list).post(vms::start))
        .route(routes::VMS_ADOPT, post(vms::adopt))
        .route(routes::VM, get(vms::show).delete(vms::stop))
        .route(routes::VM_CONSOLE, get(vms::console))
        .route(routes::VM_VERIFY, post(vms::verify))
        .route(routes::VM_MIGRATE, post(jobs::migrate))
        .route(routes::VM_PREDICT, post(jobs::predict))
        .route(routes::PREDICT_GANG, post(jobs::predict_gang))
        .route(routes::JOBS, get(jobs::list))
        .route(routes::JOB, get(jobs::show))
        .route(routes::JOB_CANCEL, post(jobs::cancel))
        .route(routes::JOB_TARGET, post(jobs::retarget))
        .route(routes::GROUPS, get(groups::list).post(groups::submit))
        .route(routes::GROUP, get(groups::show))
        .route(routes::GROUP_CANCEL, post(groups::cancel))
        .route(routes::INCOMING, post(incoming::prepare))
        .route(routes::INCOMING_COMMIT, post(incoming::commit))
        .route(routes::INCOMING_ABORT, post(incoming::abort))
        .route(routes::INCOMING_HEARTBEAT, post(incoming::heartbeat))
        .fallback(|| async { AgentError::NoRoute })
        .layer(middleware::from_fn_with_state(agent.clone(), require_token))
        .with_state(agent)
}

async fn require_token(State(agent): S, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|g| crate::token::same(g.as_bytes(), agent.token.as_bytes())) {
        let body = pacer_api::ErrorBody {
            code: pacer_api::ErrorCode::Unauthorized,
            message: "missing or wrong API token: send `Authorization: Bearer <token>` \
                      (the token is in the agent's state directory, file `token`)"
                .into(),
        };
        return (axum::http::StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    next.run(req).await
}

/// A JSON body, or a 400 saying what is wrong with it.
fn body<T>(b: Result<Json<T>, JsonRejection>) -> AgentResult<T> {
    b.map(|Json(v)| v).map_err(|e| AgentError::Invalid(format!("invalid request body: {}", e.body_text())))
}
