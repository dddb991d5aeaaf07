//! The routes under `/api/v1`.

use super::analysis_routes as analysis;
use super::error::parse_body;
use super::{ApiContext, ApiError, ApiRequest, Reply};
use crate::analyzer::AnalysisStore;
use crate::collect::normalize_body;
use crate::instance::{Id, NewInstance};
use crate::store::{InstanceStore, SnapshotStore, StoredSnapshot};
use crate::window::{self, Point};
use http::{Method, StatusCode};
use serde_json::{json, Value};

pub(super) type Routed = Result<(StatusCode, Value), ApiError>;

/// The longest window a caller may ask for, in minutes (a day: the snapshots' TTL is two).
const MAX_WINDOW_MINUTES: i64 = 24 * 60;

pub(super) async fn route<S>(ctx: &ApiContext<S>, req: &ApiRequest) -> Result<Reply, ApiError>
where
    S: InstanceStore + SnapshotStore + AnalysisStore + 'static,
{
    if req.path.trim_end_matches('/') == "/api/v1/metrics" {
        return if req.method == Method::GET {
            Ok(Reply::Text(super::telemetry::prometheus_text(None)))
        } else {
            Err(method_not_allowed(req))
        };
    }
    route_json(ctx, req)
        .await
        .map(|(status, body)| Reply::Json(status, body))
}

fn method_not_allowed(req: &ApiRequest) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method, req.path),
    )
}

async fn route_json<S>(ctx: &ApiContext<S>, req: &ApiRequest) -> Routed
where
    S: InstanceStore + SnapshotStore + AnalysisStore + 'static,
{
    let Some(rest) = req.path.strip_prefix("/api/v1") else {
        return Err(ApiError::not_found(format!("route {}", req.path)));
    };
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (&req.method, segments.as_slice()) {
        (&Method::GET, ["health"]) => Ok((
            StatusCode::OK,
            json!({"status": "ok", "service": ctx.service, "version": env!("CARGO_PKG_VERSION")}),
        )),
        (&Method::GET, ["health", "detailed"]) => health_detailed(ctx).await,
        (&Method::GET, ["instances"]) => list_instances(ctx, req).await,
        (&Method::POST, ["instances"]) => create_instance(ctx, req).await,
        (&Method::GET, ["instances", id]) => get_instance(ctx, id).await,
        (&Method::DELETE, ["instances", id]) => delete_instance(ctx, id).await,
        (&Method::GET, ["instances", id, "snapshots"]) => snapshots(ctx, req, id).await,
        (&Method::GET, ["instances", id, "window"]) => instance_window(ctx, req, id).await,
        (&Method::POST, ["metrics", "collect"]) => collect_now(ctx, req).await,
        (&Method::POST, ["analysis", "detect-bottlenecks"]) => {
            analysis::detect_bottlenecks(ctx, req).await
        }
        (&Method::POST, ["optimization", "recommend"]) => analysis::recommend_now(ctx, req).await,
        (&Method::GET, ["bottlenecks"]) => analysis::bottlenecks(ctx, req).await,
        (&Method::GET, ["recommendations"]) => analysis::recommendations(ctx, req).await,
        (&Method::GET, ["recommendations", id]) => analysis::recommendation(ctx, id).await,
        (&Method::GET, ["groups", g, "config"]) => analysis::group_config(ctx, g).await,
        (&Method::PUT, ["groups", g, "config"]) => analysis::put_group_config(ctx, req, g).await,
        (&Method::GET, ["groups", g, "analysis"]) => analysis::group_analysis(ctx, g).await,
        (_, ["health"] | ["instances"] | ["instances", _] | ["metrics", "collect"])
        | (_, ["instances", _, "snapshots" | "window"])
        | (_, ["analysis", "detect-bottlenecks"] | ["optimization", "recommend"])
        | (_, ["bottlenecks"] | ["recommendations"] | ["recommendations", _])
        | (_, ["groups", _, "config" | "analysis"])
        | (_, ["health", "detailed"]) => Err(method_not_allowed(req)),
        _ => Err(ApiError::not_found(format!("route {}", req.path))),
    }
}

/// Readiness: every dependency answers. 503 when one does not, so a load balancer can act on it.
async fn health_detailed<S>(ctx: &ApiContext<S>) -> Routed {
    let checks = ctx.probe.checks().await;
    let ok = checks.iter().all(|c| c.ok);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((
        status,
        json!({"status": if ok { "ok" } else { "degraded" }, "service": ctx.service,
               "version": env!("CARGO_PKG_VERSION"), "checks": checks}),
    ))
}

pub(super) fn path_id(kind: &'static str, raw: &str) -> Result<Id, ApiError> {
    Id::parse(kind, raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

async fn list_instances<S: InstanceStore + SnapshotStore + AnalysisStore>(
    ctx: &ApiContext<S>,
    req: &ApiRequest,
) -> Routed {
    let group = req
        .query_param("group")
        .map(|g| path_id("group", g))
        .transpose()?;
    let list = ctx.store.list_instances(group.as_ref()).await?;
    Ok((
        StatusCode::OK,
        json!({"instances": list, "count": list.len()}),
    ))
}

async fn create_instance<S: InstanceStore + SnapshotStore + AnalysisStore>(
    ctx: &ApiContext<S>,
    req: &ApiRequest,
) -> Routed {
    let new: NewInstance = parse_body(&req.body)?;
    let instance = new.validate(&ctx.guard, (ctx.now_ms)())?;
    ctx.store.create_instance(&instance).await?;
    Ok((StatusCode::CREATED, json!(instance)))
}

async fn get_instance<S: InstanceStore + SnapshotStore + AnalysisStore>(
    ctx: &ApiContext<S>,
    id: &str,
) -> Routed {
    let id = path_id("id", id)?;
    match ctx.store.get_instance(&id).await? {
        Some(reg) => Ok((StatusCode::OK, json!(reg))),
        None => Err(ApiError::not_found(format!("instance {id}"))),
    }
}

async fn delete_instance<S: InstanceStore + SnapshotStore + AnalysisStore>(
    ctx: &ApiContext<S>,
    id: &str,
) -> Routed {
    let id = path_id("id", id)?;
    if ctx.store.delete_instance(&id).await? {
        Ok((StatusCode::OK, json!({"deleted": id})))
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

async fn snapshots<S: InstanceStore + SnapshotStore + AnalysisStore>(
    ctx: &ApiContext<S>,
    req: &ApiRequest,
    id: &str,
) -> Routed {
    let (id, snaps, from, to) = load_snapshots(ctx, req, id).await?;
    Ok((
        StatusCode::OK,
        json!({"instance_id": id, "from_ms": from, "to_ms": to, "count": snaps.len(), "snapshots": snaps}),
    ))
}

async fn instance_window<S: InstanceStore + SnapshotStore + AnalysisStore>(
    ctx: &ApiContext<S>,
    req: &ApiRequest,
    id: &str,
) -> Routed {
    let (id, snaps, from, to) = load_snapshots(ctx, req, id).await?;
    let mut models: Vec<&str> = snaps
        .iter()
        .flat_map(|s| s.models.iter().map(|m| m.model.as_str()))
        .collect();
    models.sort_unstable();
    models.dedup();
    let windows: Vec<Value> = models
        .iter()
        .map(|model| {
            let points: Vec<Point<'_>> = snaps
                .iter()
                .filter_map(|s| {
                    s.models.iter().find(|m| m.model == *model).map(|m| Point {
                        at_ms: s.slot_ms,
                        metrics: m,
                    })
                })
                .collect();
            let w = window::summarize(&points);
            json!({
                "model": model,
                "window": w,
                "generation_tokens_per_s": w.generation_tokens_per_s(),
                "error_ratio": w.error_ratio(),
                "prefix_cache_hit_ratio": w.prefix_cache_hit_ratio(),
            })
        })
        .collect();
    Ok((
        StatusCode::OK,
        json!({"instance_id": id, "from_ms": from, "to_ms": to, "snapshots": snaps.len(), "models": windows}),
    ))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CollectRequest {
    instance_id: String,
}

/// Collects one instance now (outside the schedule) and stores the snapshot under the current time.
async fn collect_now<S: InstanceStore + SnapshotStore + AnalysisStore>(
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
    let (snap, partial) = normalize_body(&bytes, reg.instance.engine)
        .map_err(|m| ApiError::new(StatusCode::BAD_GATEWAY, "unparseable_metrics", m))?;
    let now = (ctx.now_ms)();
    let stored = StoredSnapshot {
        instance_id: id,
        slot_ms: now,
        scraped_at_ms: now,
        engine: snap.engine,
        generation: snap.generation.clone(),
        models: snap.models.clone(),
        partial,
        expires_at: now / 1000 + ctx.snapshot_ttl_hours * 3600,
    };
    ctx.store
        .put_snapshots(std::slice::from_ref(&stored))
        .await?;
    Ok((
        StatusCode::OK,
        json!({"snapshot": stored, "notes": snap.notes, "unknown_families": snap.unknown_families}),
    ))
}
