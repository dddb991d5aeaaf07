//! The HTTP face of the simulator: one `/metrics` endpoint per instance, the JSON admin API, the
//! fault modes, and the clock that advances the model with wall time.

use crate::config::{ConfigError, ConfigPatch};
use crate::fleet::{Fault, Fleet, FleetError, InstanceSpec, Scenario, ScrapeOutcome};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde::Deserialize;
use serde_json::json;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// `prometheus_client`'s content type (vLLM, SGLang).
pub const PYTHON_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// What TGI's axum handler sends (a plain `String` body).
pub const TGI_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
/// Size of the random body of the `garbage` fault.
const GARBAGE_BYTES: usize = 16 * 1024;
/// Chunk size of the `huge` fault's streamed body.
const HUGE_CHUNK_BYTES: usize = 64 * 1024;

/// Shared state of the server: the fleet behind one lock. Every operation on it is short (a
/// model step of the whole fleet, or rendering one instance), so a plain mutex is enough.
#[derive(Clone)]
pub struct AppState {
    fleet: Arc<Mutex<Fleet>>,
}

impl AppState {
    pub fn new(fleet: Fleet) -> AppState {
        AppState {
            fleet: Arc::new(Mutex::new(fleet)),
        }
    }

    /// A poisoned lock only means a panic elsewhere; the fleet itself is still consistent
    /// enough to serve, so keep going.
    pub fn lock(&self) -> MutexGuard<'_, Fleet> {
        self.fleet.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/instances/{id}/metrics", get(metrics))
        .route("/admin/health", get(health))
        .route("/admin/instances", get(list).post(add))
        .route("/admin/instances/{id}", get(one).delete(remove))
        .route(
            "/admin/instances/{id}/config",
            get(get_config).put(put_config),
        )
        .route("/admin/instances/{id}/fault", put(put_fault))
        .route("/admin/scenario", post(scenario))
        .route("/admin/advance", post(advance))
        .with_state(state)
}

/// Least simulated time one clock tick may catch up on (the limit is otherwise two ticks' worth):
/// when the fleet is too large for the requested speed, the simulation slows down instead of
/// falling ever further behind.
const MIN_CATCH_UP_SECONDS: f64 = 5.0;

/// Advances the model with wall time: every `tick`, by the elapsed time times `speed`, one model
/// step per lock acquisition so scrapes are served between steps.
pub async fn run_clock(state: AppState, tick: Duration, speed: f64) {
    let step = crate::model::STEP_SECONDS;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let mut owed = 0.0_f64;
    let mut warned = false;
    let catch_up = (2.0 * speed * tick.as_secs_f64()).max(MIN_CATCH_UP_SECONDS);
    loop {
        interval.tick().await;
        let now = Instant::now();
        owed += now.duration_since(last).as_secs_f64() * speed;
        last = now;
        if owed > catch_up {
            if !warned {
                tracing::warn!(
                    behind_s = owed,
                    "the fleet is too large for this --speed; simulated time runs slower"
                );
                warned = true;
            }
            owed = catch_up;
        }
        while owed >= step {
            state.lock().advance(step);
            owed -= step;
            tokio::task::yield_now().await;
        }
    }
}

#[derive(Debug)]
struct ApiError(FleetError);

impl From<FleetError> for ApiError {
    fn from(e: FleetError) -> Self {
        ApiError(e)
    }
}

impl From<ConfigError> for ApiError {
    fn from(e: ConfigError) -> Self {
        ApiError(FleetError::Invalid(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            FleetError::NotFound(_) => StatusCode::NOT_FOUND,
            FleetError::Exists(_) => StatusCode::CONFLICT,
            FleetError::Invalid(_) => StatusCode::BAD_REQUEST,
        };
        (status, Json(json!({ "error": self.0.to_string() }))).into_response()
    }
}

async fn metrics(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let (outcome, content_type) = {
        let mut fleet = state.lock();
        let outcome = fleet.scrape(&id);
        let ct = match fleet.get(&id).map(|i| i.engine()) {
            Ok(crate::config::EngineKind::Tgi) => TGI_CONTENT_TYPE,
            _ => PYTHON_CONTENT_TYPE,
        };
        (outcome, ct)
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return ApiError(e).into_response(),
    };
    match outcome {
        ScrapeOutcome::Metrics(frozen) => text(StatusCode::OK, content_type, frozen.render()),
        ScrapeOutcome::Unavailable(msg) => {
            let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", msg);
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
        ScrapeOutcome::Slow { seconds, body } => {
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            text(StatusCode::OK, content_type, body.render())
        }
        ScrapeOutcome::Garbage { seed } => {
            let mut bytes = vec![0u8; GARBAGE_BYTES];
            StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
            let mut r = Response::new(Body::from(bytes));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            r
        }
        ScrapeOutcome::Huge { bytes } => huge_body(bytes, content_type),
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A body of `total` bytes of well-formed exposition lines, streamed in chunks so the server
/// never holds it whole (a collector must stop reading at its own limit).
fn huge_body(total: u64, content_type: &'static str) -> Response {
    let mut chunk = String::with_capacity(HUGE_CHUNK_BYTES);
    let mut i = 0u64;
    while chunk.len() + 80 < HUGE_CHUNK_BYTES {
        chunk.push_str(&format!(
            "vllm:padding_series{{engine=\"0\",series=\"{i:012}\"}} 1.0\n"
        ));
        i += 1;
    }
    let chunk = Bytes::from(chunk);
    let chunk_len = chunk.len() as u64;
    let full = total / chunk_len;
    let rest = usize::try_from(total % chunk_len).unwrap_or(0);
    let tail = chunk.slice(0..rest.min(chunk.len()));
    let stream = futures::stream::iter(
        (0..full)
            .map(move |_| chunk.clone())
            .chain(std::iter::once(tail))
            .map(Ok::<Bytes, std::convert::Infallible>),
    );
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

async fn health(State(state): State<AppState>) -> Response {
    let fleet = state.lock();
    Json(json!({
        "status": "ok",
        "instances": fleet.len(),
        "sim_time_s": fleet.now(),
        "seed": fleet.seed,
    }))
    .into_response()
}

async fn list(State(state): State<AppState>) -> Response {
    Json(state.lock().views()).into_response()
}

async fn one(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(state.lock().view(&id)?).into_response())
}

async fn add(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let spec: InstanceSpec = serde_json::from_slice(&body)
        .map_err(|e| ConfigError::Invalid(format!("instance: {e}")))?;
    let view = state.lock().add(&spec)?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.lock().remove(&id)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_config(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.lock().config(&id)?).into_response())
}

#[derive(Debug, Deserialize)]
struct ConfigQuery {
    restart: Option<bool>,
}

async fn put_config(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ConfigQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let patch = ConfigPatch::from_json(&body)?;
    let restart = q.restart.unwrap_or(true);
    let mut fleet = state.lock();
    let previous = fleet.put_config(&id, &patch, restart)?;
    let current = fleet.config(&id)?;
    let view = fleet.view(&id)?;
    Ok(Json(json!({
        "previous": previous,
        "current": current,
        "restarted": restart,
        "up": view.state.up,
        "startup_error": view.state.startup_error,
    }))
    .into_response())
}

async fn put_fault(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let fault = Fault::from_json(&body)?;
    state.lock().set_fault(&id, fault)?;
    Ok(Json(json!({ "id": id, "fault": fault.fault })).into_response())
}

async fn scenario(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let s = Scenario::from_json(&body)?;
    let result = state.lock().scenario(&s)?;
    Ok(Json(result).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceBody {
    seconds: f64,
}

async fn advance(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let b: AdvanceBody =
        serde_json::from_slice(&body).map_err(|e| ConfigError::Invalid(format!("advance: {e}")))?;
    if !(b.seconds >= 0.0 && b.seconds <= 86_400.0) {
        return Err(ConfigError::Invalid("seconds must be in [0, 86400]".into()).into());
    }
    let mut fleet = state.lock();
    let steps = fleet.advance(b.seconds);
    Ok(Json(json!({ "steps": steps, "sim_time_s": fleet.now() })).into_response())
}
