//! The analysis and recommendation routes: bottlenecks on stored windows or a posted scrape,
//! recommendations, and each deployment group's configuration, analysis and SLO state.

use super::error::parse_body;
use super::routes::{path_id, Routed};
use super::{ApiContext, ApiError, ApiRequest};
use crate::analysis::detect_from_snapshot;
use crate::analyzer::{analyze_one, AnalysisStore, GroupConfig};
use crate::collect::normalize_body;
use crate::instance::{EngineConfig, Id};
use crate::optimize::recommend;
use crate::snapshot::Engine;
use crate::store::{InstanceStore, SnapshotStore};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

/// Either an instance whose stored snapshots are analyzed, or a scrape posted in the body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnalyzeRequest {
    #[serde(default)]
    instance_id: Option<String>,
    #[serde(default)]
    minutes: Option<i64>,
    #[serde(default)]
    engine: Option<String>,
    /// A `/metrics` body (Prometheus text) to judge on its own.
    #[serde(default)]
    metrics_text: Option<String>,
    /// The engine's configuration for recommendations on a posted scrape.
    #[serde(default)]
    config: Option<EngineConfig>,
    #[serde(default)]
    group: Option<String>,
}

enum Subject {
    Stored(Id, i64),
    Posted {
        engine: Engine,
        text: String,
        config: EngineConfig,
        group: Option<Id>,
    },
}

fn subject(req: AnalyzeRequest) -> Result<Subject, ApiError> {
    match (req.instance_id, req.metrics_text) {
        (Some(id), None) => {
            let minutes = req.minutes.unwrap_or(crate::analyzer::DEFAULT_WINDOW_MINUTES);
            if !(1..=24 * 60).contains(&minutes) {
                return Err(ApiError::bad_request("minutes must be from 1 to 1440"));
            }
            Ok(Subject::Stored(path_id("instance_id", &id)?, minutes))
        }
        (None, Some(text)) => {
            let engine = req
                .engine
                .ok_or_else(|| ApiError::bad_request("engine is required with metrics_text"))?
                .parse::<Engine>()
                .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", e.to_string()))?;
            let group = req.group.map(|g| path_id("group", &g)).transpose()?;
            Ok(Subject::Posted {
                engine,
                text,
                config: req.config.unwrap_or_default(),
                group,
            })
        }
        _ => Err(ApiError::bad_request(
            "give either instance_id (analyze its stored snapshots) or engine + metrics_text (analyze a posted scrape)",
        )),
    }
}

/// Runs the analysis the request asks for; returns per model (analysis, recommendations).
async fn run<S>(ctx: &ApiContext<S>, body: &[u8]) -> Result<Value, ApiError>
where
    S: InstanceStore + SnapshotStore + AnalysisStore,
{
    match subject(parse_body(body)?)? {
        Subject::Stored(id, minutes) => {
            let reg = ctx
                .store
                .get_instance(&id)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("instance {id}")))?;
            let config = ctx
                .store
                .group_config(&reg.instance.group)
                .await?
                .unwrap_or_default();
            let now = (ctx.now_ms)();
            let a =
                analyze_one(&*ctx.store, &reg, &config.thresholds, now, minutes * 60_000).await?;
            Ok(json!({
                "instance_id": id,
                "basis": "WINDOW",
                "window_start_ms": a.window_start_ms,
                "window_end_ms": a.window_end_ms,
                "snapshots": a.snapshots,
                "models": a.models,
            }))
        }
        Subject::Posted {
            engine,
            text,
            config,
            group,
        } => {
            let (snap, partial) = normalize_body(text.as_bytes(), engine).map_err(|m| {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unparseable_metrics", m)
            })?;
            let thresholds = match &group {
                Some(g) => {
                    ctx.store
                        .group_config(g)
                        .await?
                        .unwrap_or_default()
                        .thresholds
                }
                None => GroupConfig::default().thresholds,
            };
            let models: Vec<Value> = snap
                .models
                .iter()
                .map(|m| {
                    let analysis = detect_from_snapshot(m, snap.engine, &thresholds);
                    let recommendations = recommend(&analysis, snap.engine, &config);
                    json!({"model": m.model, "analysis": analysis, "recommendations": recommendations})
                })
                .collect();
            Ok(json!({
                "basis": "SINGLE_SAMPLE",
                "engine": snap.engine,
                "generation": snap.generation,
                "partial": partial,
                "notes": snap.notes,
                "models": models,
            }))
        }
    }
}

pub(super) async fn detect_bottlenecks<S>(ctx: &ApiContext<S>, req: &ApiRequest) -> Routed
where
    S: InstanceStore + SnapshotStore + AnalysisStore,
{
    let mut out = run(ctx, &req.body).await?;
    // This route answers with findings; recommendations have their own route.
    if let Some(models) = out["models"].as_array_mut() {
        for m in models {
            if let Some(o) = m.as_object_mut() {
                o.remove("recommendations");
            }
        }
    }
    Ok((StatusCode::OK, out))
}

pub(super) async fn recommend_now<S>(ctx: &ApiContext<S>, req: &ApiRequest) -> Routed
where
    S: InstanceStore + SnapshotStore + AnalysisStore,
{
    Ok((StatusCode::OK, run(ctx, &req.body).await?))
}

pub(super) async fn bottlenecks<S>(ctx: &ApiContext<S>, req: &ApiRequest) -> Routed
where
    S: InstanceStore + SnapshotStore + AnalysisStore,
{
    let group = req
        .query_param("group")
        .map(|g| path_id("group", g))
        .transpose()?;
    let analyses = ctx.store.list_instance_analyses(group.as_ref()).await?;
    let items: Vec<Value> = analyses
        .iter()
        .flat_map(|a| {
            a.models.iter().flat_map(move |m| {
                m.analysis.bottlenecks.iter().map(move |b| {
                    json!({
                        "instance_id": a.instance_id, "group": a.group, "engine": a.engine,
                        "model": m.model, "analyzed_at_ms": a.analyzed_at_ms, "bottleneck": b,
                    })
                })
            })
        })
        .collect();
    Ok((
        StatusCode::OK,
        json!({"count": items.len(), "bottlenecks": items}),
    ))
}

pub(super) async fn recommendations<S>(ctx: &ApiContext<S>, req: &ApiRequest) -> Routed
where
    S: InstanceStore + SnapshotStore + AnalysisStore,
{
    let group = req
        .query_param("group")
        .map(|g| path_id("group", g))
        .transpose()?;
    let recs = ctx.store.recommendations(group.as_ref()).await?;
    Ok((
        StatusCode::OK,
        json!({"count": recs.len(), "recommendations": recs}),
    ))
}

pub(super) async fn recommendation<S>(ctx: &ApiContext<S>, id: &str) -> Routed
where
    S: InstanceStore + SnapshotStore + AnalysisStore,
{
    if id.is_empty() || id.len() > 200 {
        return Err(ApiError::bad_request(
            "recommendation ids are 1 to 200 characters",
        ));
    }
    match ctx.store.recommendation(id).await? {
        Some(r) => Ok((StatusCode::OK, json!(r))),
        None => Err(ApiError::not_found(format!("recommendation {id}"))),
    }
}

pub(super) async fn group_config<S>(ctx: &ApiContext<S>, group: &str) -> Routed
where
    S: InstanceStore + SnapshotStore + AnalysisStore,
{
    let group = path_id("group", group)?;
    let stored = ctx.store.group_config(&group).await?;
    let is_default = stored.is_none();
    Ok((
        StatusCode::OK,
        json!({"group": group, "default": is_default, "config": stored.unwrap_or_default()}),
    ))
}

pub(super) async fn put_group_config<S>(
    ctx: &ApiContext<S>,
    req: &ApiRequest,
    group: &str,
) -> Routed
where
    S: InstanceStore + SnapshotStore + AnalysisStore,
{
    let group = path_id("group", group)?;
    let config: GroupConfig = parse_body(&req.body)?;
    let invalid =
        |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", m);
    config
        .thresholds
        .validate()
        .map_err(|e| invalid(e.to_string()))?;
    config.slo.validate().map_err(|e| invalid(e.to_string()))?;
    ctx.store.put_group_config(&group, &config).await?;
    Ok((
        StatusCode::OK,
        json!({"group": group, "default": false, "config": config}),
    ))
}

pub(super) async fn group_analysis<S>(ctx: &ApiContext<S>, group: &str) -> Routed
where
    S: InstanceStore + SnapshotStore + AnalysisStore,
{
    let group = path_id("group", group)?;
    match ctx.store.group_analysis(&group).await? {
        Some(a) => Ok((StatusCode::OK, json!(a))),
        None => Err(ApiError::not_found(format!(
            "an analysis of group {group} (the analyzer has not run for it yet)"
        ))),
    }
}
