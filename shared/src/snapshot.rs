//! The canonical, engine-neutral view of one scrape: what every engine adapter produces and what
//! windows, analysis and storage consume.
//!
//! A quantity an engine does not export is *absent* from a model's map, never zero: analysis must be
//! able to tell "no preemptions" from "this engine cannot tell us".

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The inference engines the agent understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Vllm,
    Tgi,
    Sglang,
}

impl Engine {
    pub const ALL: [Engine; 3] = [Engine::Vllm, Engine::Tgi, Engine::Sglang];

    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Vllm => "vllm",
            Engine::Tgi => "tgi",
            Engine::Sglang => "sglang",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Engine {
    type Err = UnknownEngine;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "vllm" => Ok(Engine::Vllm),
            "tgi" => Ok(Engine::Tgi),
            "sglang" => Ok(Engine::Sglang),
            _ => Err(UnknownEngine(s.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown engine {0:?}: expected one of vllm, tgi, sglang")]
pub struct UnknownEngine(pub String);

/// The canonical vocabulary. Units are in the names: `_ratio` is a fraction 0–1, `_seconds`
/// histograms are in seconds, `_total` are monotonic counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Canonical {
    RequestsRunning,
    RequestsWaiting,
    KvCacheUsageRatio,
    RequestSuccessTotal,
    RequestFailureTotal,
    PromptTokensTotal,
    GenerationTokensTotal,
    PreemptionsTotal,
    PrefixCacheQueriesTotal,
    PrefixCacheHitsTotal,
    TtftSeconds,
    InterTokenLatencySeconds,
    E2eLatencySeconds,
    QueueTimeSeconds,
}

impl Canonical {
    pub const ALL: [Canonical; 14] = [
        Canonical::RequestsRunning,
        Canonical::RequestsWaiting,
        Canonical::KvCacheUsageRatio,
        Canonical::RequestSuccessTotal,
        Canonical::RequestFailureTotal,
        Canonical::PromptTokensTotal,
        Canonical::GenerationTokensTotal,
        Canonical::PreemptionsTotal,
        Canonical::PrefixCacheQueriesTotal,
        Canonical::PrefixCacheHitsTotal,
        Canonical::TtftSeconds,
        Canonical::InterTokenLatencySeconds,
        Canonical::E2eLatencySeconds,
        Canonical::QueueTimeSeconds,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Canonical::RequestsRunning => "requests_running",
            Canonical::RequestsWaiting => "requests_waiting",
            Canonical::KvCacheUsageRatio => "kv_cache_usage_ratio",
            Canonical::RequestSuccessTotal => "request_success_total",
            Canonical::RequestFailureTotal => "request_failure_total",
            Canonical::PromptTokensTotal => "prompt_tokens_total",
            Canonical::GenerationTokensTotal => "generation_tokens_total",
            Canonical::PreemptionsTotal => "preemptions_total",
            Canonical::PrefixCacheQueriesTotal => "prefix_cache_queries_total",
            Canonical::PrefixCacheHitsTotal => "prefix_cache_hits_total",
            Canonical::TtftSeconds => "ttft_seconds",
            Canonical::InterTokenLatencySeconds => "inter_token_latency_seconds",
            Canonical::E2eLatencySeconds => "e2e_latency_seconds",
            Canonical::QueueTimeSeconds => "queue_time_seconds",
        }
    }

    pub fn kind(self) -> CanonicalKind {
        use Canonical::*;
        match self {
            RequestsRunning | RequestsWaiting | KvCacheUsageRatio => CanonicalKind::Gauge,
            RequestSuccessTotal
            | RequestFailureTotal
            | PromptTokensTotal
            | GenerationTokensTotal
            | PreemptionsTotal
            | PrefixCacheQueriesTotal
            | PrefixCacheHitsTotal => CanonicalKind::Counter,
            TtftSeconds | InterTokenLatencySeconds | E2eLatencySeconds | QueueTimeSeconds => {
                CanonicalKind::Histogram
            }
        }
    }
}

impl fmt::Display for Canonical {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CanonicalKind {
    Gauge,
    Counter,
    Histogram,
}

/// A cumulative histogram: `buckets` are `[upper_bound, cumulative_count]`, sorted by bound, the
/// last one `+Inf` when the source exported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Histogram {
    pub count: f64,
    pub sum: f64,
    pub buckets: Vec<(f64, f64)>,
}

/// A canonical value: a number (gauge or counter) or a histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetricValue {
    Number(f64),
    Histogram(Histogram),
}

impl MetricValue {
    pub fn as_number(&self) -> Option<f64> {
        match self {
            MetricValue::Number(v) => Some(*v),
            MetricValue::Histogram(_) => None,
        }
    }

    pub fn as_histogram(&self) -> Option<&Histogram> {
        match self {
            MetricValue::Histogram(h) => Some(h),
            MetricValue::Number(_) => None,
        }
    }
}

/// The canonical metrics of one model served by an instance (all its engines/ranks aggregated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ModelMetrics {
    pub model: String,
    pub metrics: BTreeMap<Canonical, MetricValue>,
}

impl ModelMetrics {
    pub fn number(&self, name: Canonical) -> Option<f64> {
        self.metrics.get(&name).and_then(MetricValue::as_number)
    }

    pub fn histogram(&self, name: Canonical) -> Option<&Histogram> {
        self.metrics.get(&name).and_then(MetricValue::as_histogram)
    }
}

/// One normalized scrape of one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub engine: Engine,
    /// The naming generation detected, e.g. `vllm-v1`, `vllm-v0`, `ray-vllm`, `tgi`, `sglang-0.4`.
    pub generation: String,
    pub models: Vec<ModelMetrics>,
    /// Sample families the adapter does not map; kept in the raw view, counted here.
    pub unknown_families: usize,
    /// How derived quantities were obtained (e.g. TGI's TTFT approximation), one sentence each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}
