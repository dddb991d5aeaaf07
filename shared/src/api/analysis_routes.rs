//! The analysis and recommendation routes: bottlenecks on stored windows or a posted scrape,
//! recommendations, and each deployment group's configuration, analysis and SLO state.

use super::body::{
    AnalysisSubject, AnalyzeRequest, BottleneckEntry, BottleneckList, BottleneckReport, ErrorBody,
    GroupConfigView, RecommendationList, RecommendationReport,
};
use super::error::parse_body;
use super::routes::{path_id, reply, Routed};
use super::{ApiContext, ApiError, ApiRequest};
use crate::analysis::detect_from_snapshot;
use crate::analyzer::{
    analyze_one, AnalysisStore, GroupAnalysisRecord, GroupConfig, GroupRecommendation,
    ModelAnalysis,
};
use crate::collect::normalize_body;
use crate::instance::{EngineConfig, Id};
use crate::optimize::recommend;
use crate::snapshot::Engine;
use crate::store::{InstanceStore, SnapshotStore};
use http::StatusCode;

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

/// Runs the analysis the request asks for: per model, its analysis and recommendations.
async fn run<S>(ctx: &ApiContext<S>, body: &[u8]) -> Result<RecommendationReport, ApiError>
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
            Ok(RecommendationReport {
                subject: AnalysisSubject::Window {
                    instance_id: id,
                    window_start_ms: a.window_start_ms,
                    window_end_ms: a.window_end_ms,
                    snapshots: a.snapshots,
                },
                models: a.models,
            })
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
            let models = snap
                .models
                .iter()
                .map(|m| {
                    let analysis = detect_from_snapshot(m, snap.engine, &thresholds);
                    let recommendations = recommend(&analysis, snap.engine, &config);
                    ModelAnalysis {
                        model: m.model.clone(),
                        analysis,
                        recommendations,
                    }
                })
                .collect();
            Ok(RecommendationReport {
                subject: AnalysisSubject::SingleSample {
                    engine: snap.engine,
                    generation: snap.generation,
                    partial,
                    notes: snap.notes,
                },
                models,
            })
        }
    }
}

/// Bottlenecks of an instance's stored window, or of a posted scrape (gauges only, LOW confidence).
#[utoipa::path(
    post,
    path = "/api/v1/analysis/detect-bottlenecks",
    tag = "analysis",
    operation_id = "detectBottlenecks",
    request_body = AnalyzeRequest,
    responses(
        (status = 200, description = "Findings per model", body = BottleneckReport),
        (status = 400, description = "No body, invalid JSON, neither or both of `instance_id` and `metrics_text`, `engine` missing, an invalid id, or `minutes` out of 1 to 1440", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "An unknown `engine` (`validation_failed`) or a scrape that does not parse (`unparseable_metrics`)", body = ErrorBody),
        (status = 500, description = "A stored item is corrupt", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
)]
pub(super) async fn detect_bottlenecks<S>(ctx: &ApiContext<S>, req: &ApiRequest) -> Routed
where
    S: InstanceStore + SnapshotStore + AnalysisStore,
{
    // This route answers with findings; recommendations have their own route.
    let report = BottleneckReport::from(run(ctx, &req.body).await?);
    reply(StatusCode::OK, &report)
}

/// Recommendations (in the engine's own knobs) for an instance's stored window or a posted scrape.
#[utoipa::path(
    post,
    path = "/api/v1/optimization/recommend",
    tag = "analysis",
    operation_id = "recommend",
    request_body = AnalyzeRequest,
    responses(
        (status = 200, description = "Findings and recommendations per model", body = RecommendationReport),
        (status = 400, description = "No body, invalid JSON, neither or both of `instance_id` and `metrics_text`, `engine` missing, an invalid id, or `minutes` out of 1 to 1440", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "An unknown `engine` (`validation_failed`) or a scrape that does not parse (`unparseable_metrics`)", body = ErrorBody),
        (status = 500, description = "A stored item is corrupt", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
)]
pub(super) async fn recommend_now<S>(ctx: &ApiContext<S>, req: &ApiRequest) -> Routed
where
    S: InstanceStore + SnapshotStore + AnalysisStore,
{
    reply(StatusCode::OK, &run(ctx, &req.body).await?)
}

/// Every bottleneck of the latest stored analyses (the scheduled analyzer writes them).
#[utoipa::path(
    get,
    path = "/api/v1/bottlenecks",
    tag = "analysis",
    operation_id = "listBottlenecks",
    params(("group" = Option<Id>, Query, description = "Only this deployment group's instances")),
    responses(
        (status = 200, description = "One entry per (instance, model, bottleneck)", body = BottleneckList),
        (status = 400, description = "`group` is not a valid id", body = ErrorBody),
        (status = 500, description = "A stored item is corrupt", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
)]
pub(super) async fn bottlenecks<S>(ctx: &ApiContext<S>, req: &ApiRequest) -> Routed
where
    S: InstanceStore + SnapshotStore + AnalysisStore,
{
    let group = req
        .query_param("group")
        .map(|g| path_id("group", g))
        .transpose()?;
    let analyses = ctx.store.list_instance_analyses(group.as_ref()).await?;
    let bottlenecks: Vec<BottleneckEntry> = analyses
        .iter()
        .flat_map(|a| {
            a.models.iter().flat_map(move |m| {
                m.analysis.bottlenecks.iter().map(move |b| BottleneckEntry {
                    instance_id: a.instance_id.clone(),
                    group: a.group.clone(),
                    engine: a.engine,
                    model: m.model.clone(),
                    analyzed_at_ms: a.analyzed_at_ms,
                    bottleneck: b.clone(),
                })
            })
        })
        .collect();
    let count = bottlenecks.len();
    reply(StatusCode::OK, &BottleneckList { count, bottlenecks })
}

/// The stored group recommendations (the scheduled analyzer proposes them).
#[utoipa::path(
    get,
    path = "/api/v1/recommendations",
    tag = "recommendations",
    operation_id = "listRecommendations",
    params(("group" = Option<Id>, Query, description = "Only this deployment group's recommendations")),
    responses(
        (status = 200, description = "The recommendations", body = RecommendationList),
        (status = 400, description = "`group` is not a valid id", body = ErrorBody),
        (status = 500, description = "A stored item is corrupt", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
)]
pub(super) async fn recommendations<S>(ctx: &ApiContext<S>, req: &ApiRequest) -> Routed
where
    S: InstanceStore + SnapshotStore + AnalysisStore,
{
    let group = req
        .query_param("group")
        .map(|g| path_id("group", g))
        .transpose()?;
    let recommendations = ctx.store.recommendations(group.as_ref()).await?;
    let count = recommendations.len();
    reply(
        StatusCode::OK,
        &RecommendationList {
            count,
            recommendations,
        },
    )
}

/// One group recommendation.
#[utoipa::path(
    get,
    path = "/api/v1/recommendations/{id}",
    tag = "recommendations",
    operation_id = "getRecommendation",
    params(("id" = String, Path, min_length = 1, max_length = 200, description = "The recommendation's id (`<group>.<recommendation id>`)")),
    responses(
        (status = 200, description = "The recommendation", body = GroupRecommendation),
        (status = 400, description = "`id` is longer than 200 characters", body = ErrorBody),
        (status = 404, description = "No such recommendation", body = ErrorBody),
        (status = 500, description = "A stored item is corrupt", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
)]
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
        Some(r) => reply(StatusCode::OK, &r),
        None => Err(ApiError::not_found(format!("recommendation {id}"))),
    }
}

/// A group's thresholds and SLO objectives (the defaults until set).
#[utoipa::path(
    get,
    path = "/api/v1/groups/{group}/config",
    tag = "groups",
    operation_id = "getGroupConfig",
    params(("group" = Id, Path, description = "The deployment group")),
    responses(
        (status = 200, description = "The configuration in force", body = GroupConfigView),
        (status = 400, description = "`group` is not a valid id", body = ErrorBody),
        (status = 500, description = "A stored item is corrupt", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
)]
pub(super) async fn group_config<S>(ctx: &ApiContext<S>, group: &str) -> Routed
where
    S: InstanceStore + SnapshotStore + AnalysisStore,
{
    let group = path_id("group", group)?;
    let stored = ctx.store.group_config(&group).await?;
    reply(
        StatusCode::OK,
        &GroupConfigView {
            group,
            default: stored.is_none(),
            config: stored.unwrap_or_default(),
        },
    )
}

/// Sets a group's thresholds and SLO objectives; omitted fields take their defaults.
#[utoipa::path(
    put,
    path = "/api/v1/groups/{group}/config",
    tag = "groups",
    operation_id = "putGroupConfig",
    params(("group" = Id, Path, description = "The deployment group")),
    request_body = GroupConfig,
    responses(
        (status = 200, description = "Stored", body = GroupConfigView),
        (status = 400, description = "`group` is not a valid id, no body, or a body that is not this JSON (unknown fields are refused)", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "A threshold or an objective is out of range (`validation_failed`)", body = ErrorBody),
        (status = 500, description = "A stored item is corrupt", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
)]
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
    reply(
        StatusCode::OK,
        &GroupConfigView {
            group,
            default: false,
            config,
        },
    )
}

/// The latest analysis of a group: its bottlenecks, SLO compliance and burn-rate alerts.
#[utoipa::path(
    get,
    path = "/api/v1/groups/{group}/analysis",
    tag = "groups",
    operation_id = "getGroupAnalysis",
    params(("group" = Id, Path, description = "The deployment group")),
    responses(
        (status = 200, description = "The analyzer's latest result", body = GroupAnalysisRecord),
        (status = 400, description = "`group` is not a valid id", body = ErrorBody),
        (status = 404, description = "The analyzer has not run for this group yet", body = ErrorBody),
        (status = 500, description = "A stored item is corrupt", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
)]
pub(super) async fn group_analysis<S>(ctx: &ApiContext<S>, group: &str) -> Routed
where
    S: InstanceStore + SnapshotStore + AnalysisStore,
{
    let group = path_id("group", group)?;
    match ctx.store.group_analysis(&group).await? {
        Some(a) => reply(StatusCode::OK, &a),
        None => Err(ApiError::not_found(format!(
            "an analysis of group {group} (the analyzer has not run for it yet)"
        ))),
    }
}
