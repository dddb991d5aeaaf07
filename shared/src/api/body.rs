//! The JSON bodies the API receives and answers with, as types: the routes read and write these,
//! and the OpenAPI document's schemas are derived from the same types, so the two cannot drift.
//!
//! Domain types the API returns as they are (an `Instance`, a `GroupRecommendation`, ...) carry
//! their own `ToSchema` derive; what is here are the envelopes the routes put around them.

use crate::analysis::{Bottleneck, InstanceAnalysis};
use crate::analyzer::{GroupConfig, ModelAnalysis};
use crate::instance::{EngineConfig, Id};
use crate::probe::DependencyCheck;
use crate::snapshot::Engine;
use crate::store::{Registered, StoredSnapshot};
use crate::window::WindowStats;
use crate::workflow::Workflow;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Every error: a stable machine-readable `code`, a sentence for people, and details when there
/// are some (`null` otherwise).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable: `bad_request`, `invalid_json`, `validation_failed`, `not_found`,
    /// `method_not_allowed`, `conflict`, `body_too_large`, `unparseable_metrics`,
    /// `scrape_failed`, `store_unavailable`, `store_corrupt`, `serialize_failed`; workflows:
    /// `group_busy`, `not_an_approver`, `already_decided`, `not_ready`, `expired`,
    /// `invalid_state`, `engine_unavailable`, `engine_refused`, `orchestrator_failed`.
    #[schema(example = "validation_failed")]
    pub code: String,
    pub message: String,
    /// e.g. `{"field": "metrics_url"}` for a validation error, `{"line": 1, "column": 7}` for
    /// invalid JSON, `{"kind": "timeout", "attempts": 3}` for a failed scrape; `null` when none.
    #[schema(value_type = Option<Object>, required = true)]
    pub details: Value,
}

/// `GET /api/v1/health`: the process answers (liveness; no dependency is checked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Liveness {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: String,
    pub service: String,
    /// The agent's version.
    pub version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadinessStatus {
    /// Every dependency answered.
    Ok,
    /// At least one did not (the response is a 503).
    Degraded,
}

/// `GET /api/v1/health/detailed`: readiness, with each dependency's check.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Readiness {
    pub status: ReadinessStatus,
    pub service: String,
    pub version: String,
    pub checks: Vec<DependencyCheck>,
}

/// `GET /api/v1/instances`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstanceList {
    /// Ordered by group, then id.
    pub instances: Vec<Registered>,
    pub count: usize,
}

/// `DELETE /api/v1/instances/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    pub deleted: Id,
}

/// `GET /api/v1/instances/{id}/snapshots`: the stored scrapes of the window, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SnapshotList {
    pub instance_id: Id,
    pub from_ms: i64,
    pub to_ms: i64,
    pub count: usize,
    pub snapshots: Vec<StoredSnapshot>,
}

/// One model's window over an instance's snapshots, with the ratios operators ask for first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelWindow {
    pub model: String,
    pub window: WindowStats,
    /// `null` when the engine exports no generated-token counter or the window is too short.
    #[schema(required = true)]
    pub generation_tokens_per_s: Option<f64>,
    /// Failed / all finished requests; `null` without traffic.
    #[schema(required = true)]
    pub error_ratio: Option<f64>,
    /// Prefix-cache hits / queries; `null` without queries or without the counters.
    #[schema(required = true)]
    pub prefix_cache_hit_ratio: Option<f64>,
}

/// `GET /api/v1/instances/{id}/window`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstanceWindows {
    pub instance_id: Id,
    pub from_ms: i64,
    pub to_ms: i64,
    /// How many snapshots the window holds.
    pub snapshots: usize,
    pub models: Vec<ModelWindow>,
}

/// The body of `POST /api/v1/metrics/collect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectRequest {
    #[schema(value_type = Id)]
    pub instance_id: String,
}

/// `POST /api/v1/metrics/collect`: the snapshot stored under the current time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Collected {
    pub snapshot: StoredSnapshot,
    /// How derived quantities were obtained (e.g. TGI's TTFT approximation).
    pub notes: Vec<String>,
    /// Sample families the engine's adapter does not map.
    pub unknown_families: usize,
}

/// The body of `POST /api/v1/analysis/detect-bottlenecks` and `POST /api/v1/optimization/recommend`:
/// either `instance_id` (its stored snapshots are analyzed over `minutes`), or `engine` +
/// `metrics_text` (a posted `/metrics` scrape is judged on its own), never both.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Id>)]
    pub instance_id: Option<String>,
    /// With `instance_id`: the window, 1 to 1440 minutes (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1440)]
    pub minutes: Option<i64>,
    /// With `metrics_text`: `vllm`, `tgi` or `sglang` (any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// A `/metrics` body (Prometheus text) to judge on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_text: Option<String>,
    /// With `metrics_text`: the engine's configuration, for recommendations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::instance::engine_config_schema)]
    pub config: Option<EngineConfig>,
    /// With `metrics_text`: the deployment group whose thresholds apply (default thresholds otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// What an analysis was run on, tagged by `basis`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "basis", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AnalysisSubject {
    /// An instance's stored snapshots over a window.
    Window {
        instance_id: Id,
        window_start_ms: i64,
        window_end_ms: i64,
        snapshots: usize,
    },
    /// One posted scrape: gauges only, judged with low confidence.
    SingleSample {
        engine: Engine,
        generation: String,
        /// What part of the scrape could not be used; `null` when all of it was.
        #[schema(required = true)]
        partial: Option<String>,
        notes: Vec<String>,
    },
}

/// One model's findings (without recommendations).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelFindings {
    pub model: String,
    pub analysis: InstanceAnalysis,
}

impl From<ModelAnalysis> for ModelFindings {
    fn from(m: ModelAnalysis) -> Self {
        ModelFindings {
            model: m.model,
            analysis: m.analysis,
        }
    }
}

/// `POST /api/v1/analysis/detect-bottlenecks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BottleneckReport {
    #[serde(flatten)]
    pub subject: AnalysisSubject,
    pub models: Vec<ModelFindings>,
}

/// `POST /api/v1/optimization/recommend`: the findings and the recommendations they lead to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecommendationReport {
    #[serde(flatten)]
    pub subject: AnalysisSubject,
    pub models: Vec<ModelAnalysis>,
}

impl From<RecommendationReport> for BottleneckReport {
    fn from(r: RecommendationReport) -> Self {
        BottleneckReport {
            subject: r.subject,
            models: r.models.into_iter().map(ModelFindings::from).collect(),
        }
    }
}

/// One bottleneck of the latest stored analysis of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BottleneckEntry {
    pub instance_id: Id,
    pub group: Id,
    pub engine: Engine,
    pub model: String,
    pub analyzed_at_ms: i64,
    pub bottleneck: Bottleneck,
}

/// `GET /api/v1/bottlenecks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BottleneckList {
    pub count: usize,
    pub bottlenecks: Vec<BottleneckEntry>,
}

/// `GET /api/v1/recommendations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecommendationList {
    pub count: usize,
    pub recommendations: Vec<crate::analyzer::GroupRecommendation>,
}

/// `GET` and `PUT /api/v1/groups/{group}/config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GroupConfigView {
    pub group: Id,
    /// True while the group has no stored configuration (the defaults apply).
    pub default: bool,
    pub config: GroupConfig,
}

/// The body of `POST /api/v1/workflows`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartWorkflow {
    /// A group recommendation's id (`GET /api/v1/recommendations`); its group is the workflow's.
    #[schema(min_length = 1, max_length = 200)]
    pub recommendation_id: String,
    /// Approve and plan only: no instance is ever changed.
    #[serde(default)]
    pub advisory: bool,
    /// Only the parameters that differ from the defaults (`docs/workflow.md`, "Parameters"), e.g.
    /// `{"bake_samples": 10, "judge": {"alpha": 0.01}}`; `judge` is merged field by field, every
    /// other field replaces the default.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Value>,
}

/// The optional body of `approve` and `reject`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// Why (kept in the audit trail; a rejection's reason is also the execution's failure cause).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `GET /api/v1/workflows`: newest first, each with its audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowList {
    pub workflows: Vec<Workflow>,
    pub count: usize,
}

/// An accepted decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DecisionResult {
    /// The workflow as stored after the decision.
    pub workflow: Workflow,
    /// Whether the state machine received the decision. Always true for an approval (one that
    /// cannot be delivered is a 503); a rejection stands even when it could not be delivered, and
    /// its execution then ends at the approval timeout.
    pub delivered: bool,
}
