//! The routes under `/api/v1`: one table of (method, path template) the router dispatches
//! through, and the registry, collection and health handlers.

use super::analysis_routes as analysis;
use super::body::{
    CollectRequest, Collected, Deleted, ErrorBody, InstanceList, InstanceWindows, Liveness,
    ModelWindow, Readiness, ReadinessStatus, SnapshotList,
};
use super::error::parse_body;
use super::workflow_routes as workflows;
use super::{ApiContext, ApiError, ApiRequest, Reply};
use crate::analyzer::AnalysisStore;
use crate::collect::normalize_body;
use crate::instance::{Id, Instance, NewInstance};
use crate::store::{InstanceStore, Registered, SnapshotStore, StoredSnapshot};
use crate::window;
use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

pub(super) type Routed = Result<(StatusCode, Value), ApiError>;

/// The longest window a caller may ask for, in minutes (a day: the snapshots' TTL is two).
const MAX_WINDOW_MINUTES: i64 = 24 * 60;

/// One route: an HTTP method, a path template whose `{name}` segments are path parameters, and
/// the handler behind it.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    op: Op,
}

/// Which handler serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Health,
    HealthDetailed,
    Metrics,
    OpenApi,
    ListInstances,
    CreateInstance,
    GetInstance,
    DeleteInstance,
    Snapshots,
    InstanceWindow,
    CollectNow,
    DetectBottlenecks,
    Recommend,
    Bottlenecks,
    Recommendations,
    Recommendation,
    GroupConfig,
    PutGroupConfig,
    GroupAnalysis,
    ListWorkflows,
    StartWorkflow,
    GetWorkflow,
    ApproveWorkflow,
    RejectWorkflow,
}

const fn at(method: &'static str, path: &'static str, op: Op) -> Route {
    Route { method, path, op }
}

/// Every route the API serves. The router dispatches through this table (a path it knows with
/// another method is a 405, any other path a 404), and `tests/api_openapi.rs` checks that the
/// OpenAPI document lists exactly these routes.
pub const ROUTES: &[Route] = &[
    at("GET", "/api/v1/health", Op::Health),
    at("GET", "/api/v1/health/detailed", Op::HealthDetailed),
    at("GET", "/api/v1/metrics", Op::Metrics),
    at("GET", "/api/v1/openapi.json", Op::OpenApi),
    at("GET", "/api/v1/instances", Op::ListInstances),
    at("POST", "/api/v1/instances", Op::CreateInstance),
    at("GET", "/api/v1/instances/{id}", Op::GetInstance),
    at("DELETE", "/api/v1/instances/{id}", Op::DeleteInstance),
    at("GET", "/api/v1/instances/{id}/snapshots", Op::Snapshots),
    at("GET", "/api/v1/instances/{id}/window", Op::InstanceWindow),
    at("POST", "/api/v1/metrics/collect", Op::CollectNow),
    at(
        "POST",
        "/api/v1/analysis/detect-bottlenecks",
        Op::DetectBottlenecks,
    ),
    at("POST", "/api/v1/optimization/recommend", Op::Recommend),
    at("GET", "/api/v1/bottlenecks", Op::Bottlenecks),
    at("GET", "/api/v1/recommendations", Op::Recommendations),
    at("GET", "/api/v1/recommendations/{id}", Op::Recommendation),
    at("GET", "/api/v1/groups/{group}/config", Op::GroupConfig),
    at("PUT", "/api/v1/groups/{group}/config", Op::PutGroupConfig),
    at("GET", "/api/v1/groups/{group}/analysis", Op::GroupAnalysis),
    at("GET", "/api/v1/workflows", Op::ListWorkflows),
    at("POST", "/api/v1/workflows", Op::StartWorkflow),
    at("GET", "/api/v1/workflows/{id}", Op::GetWorkflow),
    at(
        "POST",
        "/api/v1/workflows/{id}/approve",
        Op::ApproveWorkflow,
    ),
    at("POST", "/api/v1/workflows/{id}/reject", Op::RejectWorkflow),
];

/// The path's segments after `/api/v1`, empty ones dropped; `None` outside `/api/v1`.
fn segments(path: &str) -> Option<Vec<&str>> {
    path.strip_prefix("/api/v1")
        .map(|rest| rest.split('/').filter(|s| !s.is_empty()).collect())
}

/// The path parameters when `segments` fit the template, in template order.
fn match_template<'p>(template: &str, segments: &[&'p str]) -> Option<Vec<&'p str>> {
    let parts = self::segments(template)?;
    if parts.len() != segments.len() {
        return None;
    }
    let mut params = Vec::new();
    for (part, seg) in parts.iter().zip(segments) {
        if part.starts_with('{') {
            params.push(*seg);
        } else if part != seg {
            return None;
        }
    }
    Some(params)
}

/// The route serving this request and its path parameters; 405 for a known path with another
/// method, 404 for an unknown path.
fn resolve<'p>(method: &Method, path: &'p str) -> Result<(Op, Vec<&'p str>), ApiError> {
    let not_found = || ApiError::not_found(format!("route {path}"));
    let segs = segments(path).ok_or_else(not_found)?;
    let mut known_path = false;
    for r in ROUTES {
        if let Some(params) = match_template(r.path, &segs) {
            if r.method == method.as_str() {
                return Ok((r.op, params));
            }
            known_path = true;
        }
    }
    Err(if known_path {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        )
    } else {
        not_found()
    })
}

pub(super) async fn route<S>(ctx: &ApiContext<S>, req: &ApiRequest) -> Result<Reply, ApiError>
where
    S: InstanceStore + SnapshotStore + AnalysisStore + 'static,
{
    let (op, params) = resolve(&req.method, &req.path)?;
    // No route has more than one path parameter.
    let param = params.first().copied().unwrap_or_default();
    let (status, body) = match op {
        Op::Metrics => return Ok(metrics(workflows::active_count(ctx).await)),
        Op::Health => health(ctx),
        Op::HealthDetailed => health_detailed(ctx).await,
        Op::OpenApi => super::openapi::serve(),
        Op::ListInstances => list_instances(ctx, req).await,
        Op::CreateInstance => create_instance(ctx, req).await,
        Op::GetInstance => get_instance(ctx, param).await,
        Op::DeleteInstance => delete_instance(ctx, param).await,
        Op::Snapshots => snapshots(ctx, req, param).await,
        Op::InstanceWindow => instance_window(ctx, req, param).await,
        Op::CollectNow => collect_now(ctx, req).await,
        Op::DetectBottlenecks => analysis::detect_bottlenecks(ctx, req).await,
        Op::Recommend => analysis::recommend_now(ctx, req).await,
        Op::Bottlenecks => analysis::bottlenecks(ctx, req).await,
        Op::Recommendations => analysis::recommendations(ctx, req).await,
        Op::Recommendation => analysis::recommendation(ctx, param).await,
        Op::GroupConfig => analysis::group_config(ctx, param).await,
        Op::PutGroupConfig => analysis::put_group_config(ctx, req, param).await,
        Op::GroupAnalysis => analysis::group_analysis(ctx, param).await,
        Op::ListWorkflows => workflows::list_workflows(ctx, req).await,
        Op::StartWorkflow => workflows::start_workflow(ctx, req).await,
        Op::GetWorkflow => workflows::get_workflow(ctx, param).await,
        Op::ApproveWorkflow => workflows::approve_workflow(ctx, req, param).await,
        Op::RejectWorkflow => workflows::reject_workflow(ctx, req, param).await,
    }?;
    Ok(Reply::Json(status, body))
}

/// A typed body as the route's JSON answer. The API's bodies always serialize (string keys, no
/// custom serializer that fails); the error only guards a future type that would not.
pub(super) fn reply<T: Serialize>(status: StatusCode, body: &T) -> Routed {
    serde_json::to_value(body)
        .map(|v| (status, v))
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "serialize_failed",
                e.to_string(),
            )
        })
}

/// The agent's own metrics in Prometheus text: this process's view (on Lambda, prefer the EMF
/// metrics CloudWatch aggregates over every instance).
#[utoipa::path(
    get,
    path = "/api/v1/metrics",
    tag = "metrics",
    operation_id = "agentMetrics",
    responses((
        status = 200,
        description = "`performance_agent_requests_total`, `performance_agent_request_duration_seconds`, `performance_agent_errors_total`, `performance_agent_workflows_active`",
        body = String,
        content_type = "text/plain; version=0.0.4; charset=utf-8",
    )),
)]
pub(super) fn metrics(workflows_active: Option<usize>) -> Reply {
    Reply::Text(super::telemetry::prometheus_text(workflows_active))
}

/// Liveness: the process answers; no dependency is checked.
#[utoipa::path(
    get,
    path = "/api/v1/health",
    tag = "health",
    operation_id = "health",
    security(()),
    responses((status = 200, description = "The agent is up", body = Liveness)),
)]
pub(super) fn health<S>(ctx: &ApiContext<S>) -> Routed {
    reply(
        StatusCode::OK,
        &Liveness {
            status: "ok".into(),
            service: ctx.service.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
    )
}

/// Readiness: every dependency answers. 503 when one does not, so a load balancer can act on it.
#[utoipa::path(
    get,
    path = "/api/v1/health/detailed",
    tag = "health",
    operation_id = "healthDetailed",
    responses(
        (status = 200, description = "Every dependency answered", body = Readiness),
        (status = 503, description = "A dependency did not answer (`status` is `degraded`)", body = Readiness),
    ),
)]
pub(super) async fn health_detailed<S>(ctx: &ApiContext<S>) -> Routed {
    let checks = ctx.probe.checks().await;
    let ok = checks.iter().all(|c| c.ok);
    let (status, readiness) = if ok {
        (StatusCode::OK, ReadinessStatus::Ok)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, ReadinessStatus::Degraded)
    };
    reply(
        status,
        &Readiness {
            status: readiness,
            service: ctx.service.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            checks,
        },
    )
}

pub(super) fn path_id(kind: &'static str, raw: &str) -> Result<Id, ApiError> {
    Id::parse(kind, raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The instances, all or one deployment group's, with their scrape health.
#[utoipa::path(
    get,
    path = "/api/v1/instances",
    tag = "instances",
    operation_id = "listInstances",
    params(("group" = Option<Id>, Query, description = "Only this deployment group's instances")),
    responses(
        (status = 200, description = "Ordered by group, then id", body = InstanceList),
        (status = 400, description = "`group` is not a valid id", body = ErrorBody),
        (status = 500, description = "A stored item is corrupt", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
)]
pub(super) async fn list_instances<S: InstanceStore + SnapshotStore + AnalysisStore>(
    ctx: &ApiContext<S>,
    req: &ApiRequest,
) -> Routed {
    let group = req
        .query_param("group")
        .map(|g| path_id("group", g))
        .transpose()?;
    let instances = ctx.store.list_instances(group.as_ref()).await?;
    let count = instances.len();
    reply(StatusCode::OK, &InstanceList { instances, count })
}

/// Registers an inference server; its `metrics_url` must be in the allowed networks.
#[utoipa::path(
    post,
    path = "/api/v1/instances",
    tag = "instances",
    operation_id = "createInstance",
    request_body = NewInstance,
    responses(
        (status = 201, description = "Registered", body = Instance),
        (status = 400, description = "No body, or a body that is not this JSON (`invalid_json`, with line and column)", body = ErrorBody),
        (status = 409, description = "The id is taken", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "A field is invalid (`validation_failed`, `details.field` names it)", body = ErrorBody),
        (status = 500, description = "A stored item is corrupt", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
)]
pub(super) async fn create_instance<S: InstanceStore + SnapshotStore + AnalysisStore>(
    ctx: &ApiContext<S>,
    req: &ApiRequest,
) -> Routed {
    let new: NewInstance = parse_body(&req.body)?;
    let instance: Instance = new.validate(&ctx.guard, (ctx.now_ms)())?;
    ctx.store.create_instance(&instance).await?;
    reply(StatusCode::CREATED, &instance)
}

/// One instance with its scrape health.
#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}",
    tag = "instances",
    operation_id = "getInstance",
    params(("id" = Id, Path, description = "The instance's id")),
    responses(
        (status = 200, description = "The instance", body = Registered),
        (status = 400, description = "`id` is not a valid id", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 500, description = "A stored item is corrupt", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
)]
pub(super) async fn get_instance<S: InstanceStore + SnapshotStore + AnalysisStore>(
    ctx: &ApiContext<S>,
    id: &str,
) -> Routed {
    let id = path_id("id", id)?;
    match ctx.store.get_instance(&id).await? {
        Some(reg) => reply(StatusCode::OK, &reg),
        None => Err(ApiError::not_found(format!("instance {id}"))),
    }
}

/// Unregisters an instance and its health; its snapshots expire on their own.
#[utoipa::path(
    delete,
    path = "/api/v1/instances/{id}",
    tag = "instances",
    operation_id = "deleteInstance",
    params(("id" = Id, Path, description = "The instance's id")),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 400, description = "`id` is not a valid id", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 500, description = "A stored item is corrupt", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
)]
pub(super) async fn delete_instance<S: InstanceStore + SnapshotStore + AnalysisStore>(
    ctx: &ApiContext<S>,
    id: &str,
) -> Routed {
    let id = path_id("id", id)?;
    if ctx.store.delete_instance(&id).await? {
        reply(StatusCode::OK, &Deleted { deleted: id })
    } else {
        Err(ApiError::not_found(format!("instance {id}")))
    }
}

/// `minutes` (default 5) back from now, bounded.
pub(super) fn window_bounds(ctx_now: i64, req: &ApiRequest) -> Result<(i64, i64), ApiError> {
    let minutes = match req.query_param("minutes") {
        None => 5,
        Some(m) => m
            .parse::<i64>()
            .ok()
            .filter(|m| (1..=MAX_WINDOW_MINUTES).contains(m))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "minutes must be a whole number from 1 to {MAX_WINDOW_MINUTES}"
                ))
            })?,
    };
    Ok((ctx_now - minutes * 60_000, ctx_now))
}

async fn load_snapshots<S: InstanceStore + SnapshotStore + AnalysisStore>(
    ctx: &ApiContext<S>,
    req: &ApiRequest,
    id: &str,
) -> Result<(Id, Vec<StoredSnapshot>, i64, i64), ApiError> {
    let id = path_id("id", id)?;
    if ctx.store.get_instance(&id).await?.is_none() {
        return Err(ApiError::not_found(format!("instance {id}")));
    }
    let now = (ctx.now_ms)();
    let (from, to) = window_bounds(now, req)?;
    let snaps = ctx.store.snapshots(&id, from, to, now).await?;
    Ok((id, snaps, from, to))
}

/// The stored scrapes of the last `minutes`, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/snapshots",
    tag = "instances",
    operation_id = "instanceSnapshots",
    params(
        ("id" = Id, Path, description = "The instance's id"),
        ("minutes" = Option<i64>, Query, minimum = 1, maximum = 1440, description = "How far back, in minutes (default 5)"),
    ),
    responses(
        (status = 200, description = "The window's snapshots", body = SnapshotList),
        (status = 400, description = "`id` is not a valid id, or `minutes` is not a whole number from 1 to 1440", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 500, description = "A stored item is corrupt", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
)]
pub(super) async fn snapshots<S: InstanceStore + SnapshotStore + AnalysisStore>(
    ctx: &ApiContext<S>,
    req: &ApiRequest,
    id: &str,
) -> Routed {
    let (instance_id, snapshots, from_ms, to_ms) = load_snapshots(ctx, req, id).await?;
    reply(
        StatusCode::OK,
        &SnapshotList {
            instance_id,
            from_ms,
            to_ms,
            count: snapshots.len(),
            snapshots,
        },
    )
}

/// Each model's window over the last `minutes`: counter rates, gauge summaries, latency quantiles.
#[utoipa::path(
    get,
    path = "/api/v1/instances/{id}/window",
    tag = "instances",
    operation_id = "instanceWindow",
    params(
        ("id" = Id, Path, description = "The instance's id"),
        ("minutes" = Option<i64>, Query, minimum = 1, maximum = 1440, description = "How far back, in minutes (default 5)"),
    ),
    responses(
        (status = 200, description = "One window per model (`gaps` says what could not be computed)", body = InstanceWindows),
        (status = 400, description = "`id` is not a valid id, or `minutes` is not a whole number from 1 to 1440", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 500, description = "A stored item is corrupt", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
)]
pub(super) async fn instance_window<S: InstanceStore + SnapshotStore + AnalysisStore>(
    ctx: &ApiContext<S>,
    req: &ApiRequest,
    id: &str,
) -> Routed {
    let (instance_id, snaps, from_ms, to_ms) = load_snapshots(ctx, req, id).await?;
    let models: Vec<ModelWindow> = crate::store::model_series(&snaps)
        .into_iter()
        .map(|(model, points)| {
            let w = window::summarize(&points);
            ModelWindow {
                model: model.to_string(),
                generation_tokens_per_s: w.generation_tokens_per_s(),
                error_ratio: w.error_ratio(),
                prefix_cache_hit_ratio: w.prefix_cache_hit_ratio(),
                window: w,
            }
        })
        .collect();
    reply(
        StatusCode::OK,
        &InstanceWindows {
            instance_id,
            from_ms,
            to_ms,
            snapshots: snaps.len(),
            models,
        },
    )
}

/// Collects one instance now (outside the schedule) and stores the snapshot under the current time.
#[utoipa::path(
    post,
    path = "/api/v1/metrics/collect",
    tag = "metrics",
    operation_id = "collectNow",
    request_body = CollectRequest,
    responses(
        (status = 200, description = "Scraped, normalized and stored", body = Collected),
        (status = 400, description = "No body, invalid JSON, or `instance_id` is not a valid id", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 500, description = "A stored item is corrupt", body = ErrorBody),
        (status = 502, description = "The server could not be scraped (`scrape_failed`, `details` has `kind` and `attempts`) or its metrics not parsed (`unparseable_metrics`)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
)]
pub(super) async fn collect_now<S: InstanceStore + SnapshotStore + AnalysisStore>(
    ctx: &ApiContext<S>,
    req: &ApiRequest,
) -> Routed {
    let body: CollectRequest = parse_body(&req.body)?;
    let id = path_id("instance_id", &body.instance_id)?;
    let reg = ctx
        .store
        .get_instance(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("instance {id}")))?;
    let (bytes, attempts) = ctx.scraper.fetch(&reg.instance.metrics_url).await;
    let bytes = bytes.map_err(|e| {
        ApiError::new(StatusCode::BAD_GATEWAY, "scrape_failed", e.to_string())
            .with_details(json!({"kind": e.kind(), "attempts": attempts}))
    })?;
    let (mut snap, partial) = normalize_body(&bytes, reg.instance.engine)
        .map_err(|m| ApiError::new(StatusCode::BAD_GATEWAY, "unparseable_metrics", m))?;
    crate::collect::name_unnamed_models(&mut snap, reg.instance.model.as_deref());
    let now = (ctx.now_ms)();
    let stored = StoredSnapshot {
        instance_id: id,
        slot_ms: now,
        scraped_at_ms: now,
        engine: snap.engine,
        generation: snap.generation,
        models: snap.models,
        partial,
        expires_at: now / 1000 + ctx.snapshot_ttl_hours * 3600,
    };
    ctx.store
        .put_snapshots(std::slice::from_ref(&stored))
        .await?;
    reply(
        StatusCode::OK,
        &Collected {
            snapshot: stored,
            notes: snap.notes,
            unknown_families: snap.unknown_families,
        },
    )
}
