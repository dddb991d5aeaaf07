//! The agent's judgement over a window of canonical snapshots: bottlenecks with their evidence,
//! what could not be evaluated and why, SLO compliance with burn-rate alerts, and trend forecasts.
//!
//! Pure domain code: no I/O and no clock; time arrives as the points' timestamps. Rules,
//! thresholds and severities are documented in `docs/bottlenecks.md`.

mod capability;
mod detect;
pub mod forecast;
mod group;
pub mod slo;
mod thresholds;

pub use capability::{support, Support};
pub use detect::{analyze_instance, detect_from_snapshot};
pub use forecast::{fit_line, forecast, Forecast, ForecastOutcome, LinearFit};
pub use group::{
    analyze_group, GroupAnalysis, GroupBottleneck, GroupNotEvaluated, GROUP_QUORUM_FRACTION,
};
pub use thresholds::{tiers, InvalidThresholds, Thresholds};

use crate::snapshot::{Canonical, Engine};
use crate::window::GaugeSummary;
use serde::{Deserialize, Serialize};

/// The seed's five bottleneck types, in order of importance (the tie-break after severity).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BottleneckType {
    /// Root cause of most queueing and latency on a KV-bound server: fix it first.
    MemoryPressure,
    /// Users wait before any work starts.
    QueueBuildup,
    /// The user-visible symptom.
    HighLatency,
    /// Capacity wasted while demand waits.
    LowThroughput,
    /// An efficiency opportunity.
    CacheInefficiency,
}

impl BottleneckType {
    pub const ALL: [BottleneckType; 5] = [
        BottleneckType::MemoryPressure,
        BottleneckType::QueueBuildup,
        BottleneckType::HighLatency,
        BottleneckType::LowThroughput,
        BottleneckType::CacheInefficiency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BottleneckType::MemoryPressure => "MEMORY_PRESSURE",
            BottleneckType::QueueBuildup => "QUEUE_BUILDUP",
            BottleneckType::HighLatency => "HIGH_LATENCY",
            BottleneckType::LowThroughput => "LOW_THROUGHPUT",
            BottleneckType::CacheInefficiency => "CACHE_INEFFICIENCY",
        }
    }
}

/// Ordered: `Low < Medium < High < Critical`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// How much a finding can be trusted: a window's sustained conditions are HIGH; one snapshot is LOW.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Confidence {
    Low,
    High,
}

/// Which statistic of a metric an evidence value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    /// The level held by at least `sustained_fraction` of the window's points (the value that
    /// many points are at or above).
    SustainedLevel,
    /// One snapshot's value.
    SingleSample,
    P95,
    /// Per second over the window.
    RatePerS,
    /// Counter increase over the window.
    Increase,
    /// Hits / queries over the window.
    HitRatio,
}

/// How the value compares with the threshold for the condition to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Comparison {
    /// `value > threshold`
    Gt,
    /// `value >= threshold`
    Gte,
    /// `value < threshold`
    Lt,
    /// Context for the reader; not a condition.
    Context,
}

/// One number a finding rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Evidence {
    pub metric: Canonical,
    pub statistic: Statistic,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    pub comparison: Comparison,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    /// Points behind the value (gauges, counters), or observations (latency histograms).
    pub samples: f64,
}

/// A detected bottleneck.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Bottleneck {
    #[serde(rename = "type")]
    pub kind: BottleneckType,
    pub severity: Severity,
    /// 1 = address first (severity, then type importance).
    pub priority: u32,
    pub confidence: Confidence,
    pub description: String,
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NotEvaluatedCause {
    /// The engine (or this server's version of it) does not export what the rule needs.
    NotExported,
    /// Exported, but the window holds too little of it (points, observations, duration, volume).
    InsufficientData,
}

/// A check that could not run; never a silent gap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotEvaluated {
    #[serde(rename = "type")]
    pub kind: BottleneckType,
    /// The metric that is missing or too thin, when one is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<Canonical>,
    pub cause: NotEvaluatedCause,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AnalysisBasis {
    /// A window of consecutive snapshots.
    Window,
    /// One posted snapshot: gauges only, low confidence.
    SingleSample,
}

/// A latency histogram over the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LatencySummary {
    pub count: f64,
    pub mean_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_s: Option<f64>,
}

/// The window's headline numbers (absent when the engine or the window cannot give them).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WindowSummary {
    pub start_ms: i64,
    pub end_ms: i64,
    pub points: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_tokens_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_per_s: Option<f64>,
    /// Finished requests (succeeded + failed) per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_cache_hit_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preemptions: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_cache_usage: Option<GaugeSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_waiting: Option<GaugeSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_running: Option<GaugeSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft: Option<LatencySummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inter_token_latency: Option<LatencySummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_latency: Option<LatencySummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_time: Option<LatencySummary>,
}

/// The analysis of one (instance, model) series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceAnalysis {
    pub engine: Engine,
    pub basis: AnalysisBasis,
    pub summary: WindowSummary,
    /// In priority order.
    pub bottlenecks: Vec<Bottleneck>,
    /// Types for which at least one check ran (a type may be evaluated and still have a
    /// `not_evaluated` entry for one of its metrics, e.g. TGI's TTFT).
    pub evaluated: Vec<BottleneckType>,
    pub not_evaluated: Vec<NotEvaluated>,
    pub forecasts: Vec<Forecast>,
    /// The thresholds the analysis applied, so a stored result explains itself.
    pub thresholds: Thresholds,
}

impl InstanceAnalysis {
    pub fn bottleneck(&self, kind: BottleneckType) -> Option<&Bottleneck> {
        self.bottlenecks.iter().find(|b| b.kind == kind)
    }
}

/// Severity first, then type importance; priorities are renumbered from 1.
pub(crate) fn prioritize(bottlenecks: &mut [Bottleneck]) {
    bottlenecks.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.kind.cmp(&b.kind)));
    for (i, b) in bottlenecks.iter_mut().enumerate() {
        b.priority = u32::try_from(i + 1).unwrap_or(u32::MAX);
    }
}
