//! The HTTP API the orchestrator calls, independent of Lambda: a request (method, path, query, body,
//! the caller's principal) goes in, a JSON response comes out. The `api` function adapts API
//! Gateway events to it; tests and benchmarks call it directly with an in-memory store.
//!
//! Every error is a JSON body `{"code", "message", "details"}` with a 4xx status for bad input;
//! a 5xx means the agent or a dependency failed, never the caller.

mod analysis_routes;
pub mod body;
pub mod cors;
mod error;
pub mod openapi;
mod routes;
pub mod telemetry;
mod workflow_routes;

pub use cors::Cors;
pub use error::ApiError;
pub use routes::{Route, ROUTES};
pub use workflow_routes::{is_approver, WorkflowApi};

use crate::analyzer::AnalysisStore;
use crate::netguard::NetGuard;
use crate::scrape::Scraper;
use crate::store::{InstanceStore, SnapshotStore};
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use std::sync::Arc;

/// Request bodies larger than this are refused with 413 before parsing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What a handler needs, built once per process.
pub struct ApiContext<S> {
    pub store: Arc<S>,
    pub guard: NetGuard,
    pub scraper: Scraper,
    pub snapshot_ttl_hours: i64,
    pub service: String,
    pub now_ms: fn() -> i64,
    pub probe: Arc<dyn crate::probe::HealthProbe>,
    /// Write one CloudWatch EMF line per request to stdout (on Lambda; off in tests and benchmarks).
    pub emit_emf: bool,
    /// The optimization workflows' stores, engine and approvers (`WorkflowApi::in_memory()` where
    /// the workflow routes are not exercised).
    pub workflows: WorkflowApi,
}

/// One request, already taken out of its transport.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Bytes,
    /// The authenticated caller (the IAM principal ARN API Gateway verified), if any.
    pub principal: Option<String>,
}

impl ApiRequest {
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Handles one request. Never panics on input; every failure becomes a JSON error response.
pub async fn handle<S>(ctx: &ApiContext<S>, req: ApiRequest) -> Response<String>
where
    S: InstanceStore + SnapshotStore + AnalysisStore + 'static,
{
    let started = std::time::Instant::now();
    let route = telemetry::route_template(&req.path);
    let result = if req.body.len() > MAX_BODY_BYTES {
        Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
        ))
    } else {
        routes::route(ctx, &req).await
    };
    let (resp, error_code) = match result {
        Ok(Reply::Json(status, body)) => (json_response(status, body.to_string()), None),
        Ok(Reply::Text(body)) => {
            let mut resp = Response::new(body);
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            (resp, None)
        }
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(code = e.code, message = %e.message, path = %req.path, "request failed");
            }
            (json_response(e.status, error_text(&e)), Some(e.code))
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    telemetry::record(&route, req.method.as_str(), status, error_code, seconds);
    if ctx.emit_emf {
        println!(
            "{}",
            telemetry::emf_line(
                &route,
                req.method.as_str(),
                status,
                error_code.is_some(),
                seconds,
                (ctx.now_ms)()
            )
        );
    }
    resp
}

/// What a route answers: JSON (the rule) or plain text (the Prometheus exposition).
pub(crate) enum Reply {
    Json(StatusCode, serde_json::Value),
    Text(String),
}

/// The error's JSON body. An `ErrorBody` (strings and a JSON value) always serializes; the fallback
/// keeps the shape should that ever change.
fn error_text(e: &ApiError) -> String {
    serde_json::to_value(e.body()).map_or_else(
        |err| {
            format!(
                r#"{{"code":"serialize_failed","message":{},"details":null}}"#,
                serde_json::Value::String(err.to_string())
            )
        },
        |v| v.to_string(),
    )
}

fn json_response(status: StatusCode, body: String) -> Response<String> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}
