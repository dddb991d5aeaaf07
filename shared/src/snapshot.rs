//! The canonical, engine-neutral view of one scrape: what every engine adapter produces and what
//! windows, analysis and storage consume.
//!
//! A quantity an engine does not export is *absent* from a model's map, never zero: analysis must be
//! able to tell "no preemptions" from "this engine cannot tell us".

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The inference engines the agent understands.
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
/// last one `+Inf` when the source exported it. In JSON a non-finite bound is the string `"+Inf"`
/// (JSON has no infinity; a plain `f64` would be written `null` and not read back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub struct Histogram {
    pub count: f64,
    pub sum: f64,
    #[serde(with = "bucket_bounds")]
    #[schema(schema_with = bucket_bounds::schema)]
    pub buckets: Vec<(f64, f64)>,
}

/// Serde for `[bound, count]` pairs whose bound may be `±Inf`/`NaN`, spelled as in Prometheus text.
mod bucket_bounds {
    use serde::de::{self, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::fmt;

    struct Bound(f64);

    impl Serialize for Bound {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self.0 {
                v if v.is_finite() => s.serialize_f64(v),
                v if v.is_nan() => s.serialize_str("NaN"),
                v if v > 0.0 => s.serialize_str("+Inf"),
                _ => s.serialize_str("-Inf"),
            }
        }
    }

    impl<'de> Deserialize<'de> for Bound {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct BoundVisitor;
            impl Visitor<'_> for BoundVisitor {
                type Value = Bound;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a number or one of \"+Inf\", \"-Inf\", \"NaN\"")
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<Bound, E> {
                    Ok(Bound(v))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bound, E> {
                    Ok(Bound(v as f64))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bound, E> {
                    Ok(Bound(v as f64))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Bound, E> {
                    match v {
                        "+Inf" | "Inf" => Ok(Bound(f64::INFINITY)),
                        "-Inf" => Ok(Bound(f64::NEG_INFINITY)),
                        "NaN" => Ok(Bound(f64::NAN)),
                        other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                    }
                }
            }
            d.deserialize_any(BoundVisitor)
        }
    }

    pub fn serialize<S: Serializer>(buckets: &[(f64, f64)], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(buckets.len()))?;
        for &(le, count) in buckets {
            seq.serialize_element(&(Bound(le), count))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(f64, f64)>, D::Error> {
        let pairs = Vec::<(Bound, f64)>::deserialize(d)?;
        Ok(pairs.into_iter().map(|(le, count)| (le.0, count)).collect())
    }

    /// The OpenAPI schema of what `serialize` writes: `[[bound, count], ...]`, a bound being a
    /// number or one of the strings above.
    pub fn schema() -> utoipa::openapi::Array {
        use utoipa::openapi::schema::{
            ArrayBuilder, ArrayItems, ObjectBuilder, OneOfBuilder, Schema, Type,
        };
        let number = || ObjectBuilder::new().schema_type(Type::Number).build();
        let bound = OneOfBuilder::new().item(number()).item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["+Inf", "-Inf", "NaN"])),
        );
        let pair = ArrayBuilder::new()
            .prefix_items([Schema::from(bound.build()), Schema::from(number())])
            .items(ArrayItems::False)
            .min_items(Some(2))
            .description(Some("[upper bound, cumulative count]"));
        ArrayBuilder::new().items(pair).build()
    }
}

/// A canonical value: a number (gauge or counter) or a histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_with_an_inf_bucket_survives_a_json_round_trip() {
        let h = MetricValue::Histogram(Histogram {
            count: 3.0,
            sum: 1.5,
            buckets: vec![(0.5, 1.0), (f64::INFINITY, 3.0)],
        });
        let json = serde_json::to_string(&h).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"count":3.0,"sum":1.5,"buckets":[[0.5,1.0],["+Inf",3.0]]}"#
        );
        let back: MetricValue = serde_json::from_str(&json).unwrap_or(MetricValue::Number(0.0));
        assert_eq!(back, h);
    }
}
