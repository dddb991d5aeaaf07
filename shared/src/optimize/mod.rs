//! Recommendations: engine settings that address the bottlenecks an analysis found, in each
//! engine's own knobs, with the current and proposed value, expected impact, risk and priority.
//!
//! Pure domain code. Three optimizers (KV cache, quantization, batching) each look at every
//! bottleneck; a knob is proposed only when the engine has it (see [`knobs::CATALOG`]) and it is
//! not already set that way. The catalogue is documented in `docs/recommendations.md`.

mod batching;
pub mod knobs;
mod kv_cache;
mod quantization;

pub use knobs::CurrentValue;

use crate::analysis::{Bottleneck, BottleneckType, InstanceAnalysis};
use crate::instance::EngineConfig;
use crate::snapshot::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Optimizer {
    KvCache,
    Quantization,
    Batching,
}

/// Ordered: `Low < Medium < High`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Risk {
    pub level: RiskLevel,
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Direction {
    Increase,
    Decrease,
}

/// One expected consequence of the change (the intended one first, then the trade-offs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Effect {
    /// What moves, e.g. `kv_cache_capacity`, `preemptions`, `ttft_p95`, `throughput`.
    pub metric: String,
    pub direction: Direction,
    /// A rough size, e.g. `≈2×`, `+10–25%`.
    pub magnitude: String,
    pub reasoning: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Recommendation {
    /// Stable across runs: a hash of engine, knob, proposed value and motivating bottleneck.
    pub id: String,
    pub engine: Engine,
    pub optimizer: Optimizer,
    /// The bottleneck that motivates the change.
    pub bottleneck: BottleneckType,
    /// Other bottlenecks of the same analysis the same change addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_addresses: Vec<BottleneckType>,
    pub title: String,
    /// The engine's config key (snake_case).
    pub knob: String,
    /// The engine's CLI flag for it.
    pub flag: String,
    pub current: CurrentValue,
    pub proposed: Value,
    /// The patch a rollout applies: knob → new value.
    #[schema(schema_with = crate::instance::engine_config_schema)]
    pub changes: EngineConfig,
    /// The bottleneck's numbers that motivate the change.
    pub rationale: String,
    pub expected_impact: Vec<Effect>,
    pub risk: Risk,
    /// What must hold before applying (e.g. a pre-quantized checkpoint, a confirmed current value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prerequisites: Vec<String>,
    /// Ids of other recommendations changing the same knob: alternatives, apply one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts_with: Vec<String>,
    /// 1 = first: the motivating bottleneck's priority, then lower risk first.
    pub priority: u32,
}

/// An optimizer's proposal before the shared fields are filled in.
pub(crate) struct Draft {
    pub optimizer: Optimizer,
    pub knob: &'static str,
    pub proposed: Value,
    pub title: String,
    pub impact: Vec<Effect>,
    pub risk: Risk,
    pub prerequisites: Vec<String>,
}

pub(crate) fn effect(
    metric: &str,
    direction: Direction,
    magnitude: &str,
    reasoning: &str,
) -> Effect {
    Effect {
        metric: metric.to_string(),
        direction,
        magnitude: magnitude.to_string(),
        reasoning: reasoning.to_string(),
    }
}

pub(crate) fn risk(level: RiskLevel, description: &str) -> Risk {
    Risk {
        level,
        description: description.to_string(),
    }
}

/// What the optimizers read: the analysis, the engine and its configuration.
pub(crate) struct Ctx<'a> {
    pub analysis: &'a InstanceAnalysis,
    pub engine: Engine,
    pub config: &'a EngineConfig,
}

impl Ctx<'_> {
    /// The knob's current value (config, else the engine's default) if the engine has the knob.
    pub fn current(&self, key: &str) -> Option<CurrentValue> {
        knobs::lookup(self.engine, key).map(|k| knobs::current(k, self.config))
    }

    pub fn number(&self, key: &str) -> Option<f64> {
        knobs::as_f64(&self.current(key)?.value)
    }

    /// A number the operator set in the config (not an assumed default).
    pub fn configured_number(&self, key: &str) -> Option<f64> {
        let c = self.current(key)?;
        if c.assumed {
            return None;
        }
        knobs::as_f64(&c.value)
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        knobs::as_bool(&self.current(key)?.value)
    }

    /// A boolean the operator set explicitly.
    pub fn configured_bool(&self, key: &str) -> Option<bool> {
        let c = self.current(key)?;
        if c.assumed {
            return None;
        }
        knobs::as_bool(&c.value)
    }

    pub fn string(&self, key: &str) -> Option<String> {
        knobs::as_lower_str(&self.current(key)?.value)
    }

    /// The KV cache is the limit: MEMORY_PRESSURE was detected.
    pub fn memory_bound(&self) -> bool {
        self.analysis
            .bottleneck(BottleneckType::MemoryPressure)
            .is_some()
    }

    pub fn preempted(&self) -> bool {
        self.analysis.summary.preemptions.is_some_and(|n| n > 0.0)
    }
}

/// Rounds a proposed fraction to two decimals, so ids do not depend on float noise.
pub(crate) fn fraction(v: f64) -> Value {
    Value::from((v * 100.0).round() / 100.0)
}

/// FNV-1a, 64 bits: tiny, and stable across Rust versions (unlike `DefaultHasher`).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The stable id of a recommendation.
pub fn recommendation_id(
    engine: Engine,
    knob: &str,
    proposed: &Value,
    bottleneck: BottleneckType,
) -> String {
    let key = format!("{engine}|{knob}|{proposed}|{}", bottleneck.as_str());
    format!("rec-{:016x}", fnv1a64(key.as_bytes()))
}

/// Same value, whatever its JSON spelling (numbers compared as numbers, strings case-insensitive).
fn same_value(a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (knobs::as_f64(a), knobs::as_f64(b)) {
        return (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0);
    }
    if let (Some(x), Some(y)) = (knobs::as_bool(a), knobs::as_bool(b)) {
        return x == y;
    }
    match (knobs::as_lower_str(a), knobs::as_lower_str(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// The recommendations for an instance's analysis, in priority order. Deterministic: the same
/// analysis and config give the same recommendations with the same ids.
pub fn recommend(
    analysis: &InstanceAnalysis,
    engine: Engine,
    config: &EngineConfig,
) -> Vec<Recommendation> {
    let ctx = Ctx {
        analysis,
        engine,
        config,
    };
    let mut out: Vec<Recommendation> = Vec::new();
    let mut bottlenecks: Vec<&Bottleneck> = analysis.bottlenecks.iter().collect();
    bottlenecks.sort_by_key(|b| b.priority);
    for b in bottlenecks {
        let drafts = kv_cache::propose(&ctx, b)
            .into_iter()
            .chain(quantization::propose(&ctx, b))
            .chain(batching::propose(&ctx, b));
        for d in drafts {
            let Some(knob) = knobs::lookup(engine, d.knob) else {
                continue;
            };
            let current = knobs::current(knob, config);
            if same_value(&current.value, &d.proposed) {
                continue;
            }
            // One knob, one direction: the highest-priority bottleneck decides; the same change
            // from a later bottleneck only adds to what it addresses.
            if let Some(first) = out.iter_mut().find(|r| r.knob == d.knob) {
                if same_value(&first.proposed, &d.proposed) {
                    if first.bottleneck != b.kind && !first.also_addresses.contains(&b.kind) {
                        first.also_addresses.push(b.kind);
                    }
                    continue;
                }
                if first.bottleneck != b.kind {
                    continue;
                }
            }
            let mut prerequisites = d.prerequisites;
            if let (true, knobs::KnobDefault::Varies { note, .. }) = (current.assumed, knob.default)
            {
                prerequisites.push(format!(
                    "confirm the current {} ({note}); set it in the instance config so the \
                     proposal starts from the real value",
                    d.knob
                ));
            }
            let mut changes = EngineConfig::new();
            changes.insert(d.knob.to_string(), d.proposed.clone());
            out.push(Recommendation {
                id: recommendation_id(engine, d.knob, &d.proposed, b.kind),
                engine,
                optimizer: d.optimizer,
                bottleneck: b.kind,
                also_addresses: Vec::new(),
                title: d.title,
                knob: d.knob.to_string(),
                flag: knobs::flag(d.knob),
                current,
                proposed: d.proposed,
                changes,
                rationale: format!(
                    "{} ({}): {}",
                    b.kind.as_str(),
                    b.severity.as_str(),
                    b.description
                ),
                expected_impact: d.impact,
                risk: d.risk,
                prerequisites,
                conflicts_with: Vec::new(),
                priority: b.priority,
            });
        }
    }
    // Stable order: the bottleneck's priority, then lower risk, then the optimizer and knob.
    out.sort_by(|a, b| {
        (
            a.priority,
            a.risk.level,
            a.optimizer,
            &a.knob,
            a.proposed.to_string(),
        )
            .cmp(&(
                b.priority,
                b.risk.level,
                b.optimizer,
                &b.knob,
                b.proposed.to_string(),
            ))
    });
    let ids: Vec<(String, String)> = out.iter().map(|r| (r.knob.clone(), r.id.clone())).collect();
    for (i, r) in out.iter_mut().enumerate() {
        r.priority = u32::try_from(i + 1).unwrap_or(u32::MAX);
        r.conflicts_with = ids
            .iter()
            .filter(|(knob, id)| *knob == r.knob && *id != r.id)
            .map(|(_, id)| id.clone())
            .collect();
    }
    out
}

/// What dominates a HIGH_LATENCY bottleneck, which decides the direction of the batching knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LatencyCause {
    /// TTFT is the worse of the two and at least half of it is time in the queue: capacity.
    Queueing,
    /// TTFT is the worse and mostly prefill: bigger prefill budgets, prefix reuse.
    Prefill,
    /// Inter-token latency is the worse: prefills interrupting decodes, too many concurrent decodes.
    Decode,
}

/// The share of TTFT spent queueing from which a TTFT problem is a capacity problem.
const QUEUE_SHARE_OF_TTFT: f64 = 0.5;

pub(crate) fn latency_cause(ctx: &Ctx<'_>, b: &Bottleneck) -> Option<LatencyCause> {
    use crate::snapshot::Canonical;
    let ratio = |metric: Canonical| {
        b.evidence
            .iter()
            .find(|e| e.metric == metric && e.threshold.is_some_and(|t| t > 0.0))
            .and_then(|e| Some(e.value / e.threshold?))
    };
    let ttft = ratio(Canonical::TtftSeconds);
    let itl = ratio(Canonical::InterTokenLatencySeconds);
    match (ttft, itl) {
        (Some(t), i) if t >= i.unwrap_or(0.0) => {
            let s = &ctx.analysis.summary;
            let queue_share = match (
                s.queue_time.as_ref().and_then(|q| q.p95_s),
                s.ttft.as_ref().and_then(|t| t.p95_s),
            ) {
                (Some(q), Some(t)) if t > 0.0 => q / t,
                _ => 0.0,
            };
            Some(if queue_share >= QUEUE_SHARE_OF_TTFT {
                LatencyCause::Queueing
            } else {
                LatencyCause::Prefill
            })
        }
        (_, Some(_)) => Some(LatencyCause::Decode),
        _ => None,
    }
}
