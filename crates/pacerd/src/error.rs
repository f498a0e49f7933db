//! API errors: an HTTP status, a stable code and a message saying what to do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pacer_api::ErrorBody;

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl ApiError {
    /// 400: the request is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, code: "bad_request", message: message.into() }
    }
    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::NOT_FOUND, code: "not_found", message: message.into() }
    }
    /// 409: the state does not allow it.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::CONFLICT, code, message: message.into() }
    }
    /// 502: a peer or QEMU failed.
    pub fn upstream(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_GATEWAY, code: "upstream_failed", message: message.into() }
    }
    /// 500: our fault.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { code: self.code.to_string(), message: self.message };
        (self.status, Json(body)).into_response()
    }
}

impl From<pacer_qemu::QmpError> for ApiError {
    fn from(e: pacer_qemu::QmpError) -> Self {
        ApiError::upstream(e.to_string())
    }
}

impl From<pacer_api::ClientError> for ApiError {
    fn from(e: pacer_api::ClientError) -> Self {
        match &e {
            pacer_api::ClientError::Api { status, code, message } => ApiError {
                status: StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
                code: leak_code(code),
                message: format!("destination: {message}"),
            },
            _ => ApiError::upstream(e.to_string()),
        }
    }
}

fn leak_code(code: &str) -> &'static str {
    // Codes are a small fixed set; map the known ones, lump the rest together.
    match code {
        "bad_request" => "bad_request",
        "not_found" => "not_found",
        "insufficient_memory" => "insufficient_memory",
        "already_exists" => "already_exists",
        _ => "upstream_failed",
    }
}

/// Result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
