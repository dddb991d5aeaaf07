//! The HTTP API the orchestrator calls, independent of Lambda: a request (method, path, query, body,
//! the caller's principal) goes in, a JSON response comes out. The `api` function adapts API
//! Gateway events to it; tests and benchmarks call it directly with an in-memory store.
//!
//! Every error is a JSON body `{"code", "message", "details"}` with a 4xx status for bad input;
//! a 5xx means the agent or a dependency failed, never the caller.

mod analysis_routes;
mod error;
mod routes;

pub use error::ApiError;

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
    let result = if req.body.len() > MAX_BODY_BYTES {
        Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
        ))
    } else {
        routes::route(ctx, &req).await
    };
    match result {
        Ok((status, body)) => json_response(status, body.to_string()),
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(code = e.code, message = %e.message, path = %req.path, "request failed");
            }
            json_response(e.status, e.body().to_string())
        }
    }
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
