//! Engine-native knobs ↔ the fleet simulator's config keys: what a real platform does when it
//! turns `--max-batch-prefill-tokens 4096` into a redeploy, done here for the one vocabulary the
//! simulator speaks (vLLM's names, for every engine).
//!
//! Forward ([`translate`]): each knob of the request, in the instance's engine's own names, becomes
//! simulator keys; a knob the table does not know, a knob with no simulator equivalent, or a
//! value the simulator cannot run is refused by name, never dropped. Reverse ([`native_config`]):
//! the simulator's whole config in the engine's names, plus `sim.<key>` entries for settings the
//! engine cannot spell (e.g. TGI has no `block_size` flag), so that translating a reported config
//! back restores exactly the same simulator config (the rollback round trip).

use crate::config::{ConfigError, ConfigPatch, EngineConfig, EngineKind, Generation, Hardware};
use crate::model::Derived;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Prefix of the simulator's own keys in a native config: `sim.harmful`, `sim.block_size`.
pub const SIM_PREFIX: &str = "sim.";

/// `gpu_memory_utilization` chosen for a TGI `max_batch_total_tokens` is rounded up to this many
/// decimal places, so reported configs stay readable.
const UTILIZATION_DECIMALS: i32 = 4;

/// One of the fleet simulator's config keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimKey {
    MaxNumSeqs,
    MaxNumBatchedTokens,
    MaxModelLen,
    GpuMemoryUtilization,
    BlockSize,
    Quantization,
    KvCacheDtype,
    EnablePrefixCaching,
    EnableChunkedPrefill,
    MaxConcurrentRequests,
    Harmful,
}

impl SimKey {
    pub const ALL: [SimKey; 11] = [
        SimKey::MaxNumSeqs,
        SimKey::MaxNumBatchedTokens,
        SimKey::MaxModelLen,
        SimKey::GpuMemoryUtilization,
        SimKey::BlockSize,
        SimKey::Quantization,
        SimKey::KvCacheDtype,
        SimKey::EnablePrefixCaching,
        SimKey::EnableChunkedPrefill,
        SimKey::MaxConcurrentRequests,
        SimKey::Harmful,
    ];

    /// The key as the simulator's admin API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SimKey::MaxNumSeqs => "max_num_seqs",
            SimKey::MaxNumBatchedTokens => "max_num_batched_tokens",
            SimKey::MaxModelLen => "max_model_len",
            SimKey::GpuMemoryUtilization => "gpu_memory_utilization",
            SimKey::BlockSize => "block_size",
            SimKey::Quantization => "quantization",
            SimKey::KvCacheDtype => "kv_cache_dtype",
            SimKey::EnablePrefixCaching => "enable_prefix_caching",
            SimKey::EnableChunkedPrefill => "enable_chunked_prefill",
            SimKey::MaxConcurrentRequests => "max_concurrent_requests",
            SimKey::Harmful => "harmful",
        }
    }

    pub fn parse(s: &str) -> Option<SimKey> {
        SimKey::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How one native knob maps onto the simulator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// Same meaning, same values.
    Same(SimKey),
    /// Same meaning, values spelled differently: `(native, simulator)` pairs, `None` = JSON
    /// `null`. The first pair with a simulator value is how that value is reported back.
    Spelled(SimKey, &'static [(Option<&'static str>, &'static str)]),
    /// The opposite boolean (SGLang `disable_radix_cache` = not `enable_prefix_caching`).
    Negated(SimKey),
    /// SGLang `chunked_prefill_size`: a size is the per-iteration token budget with chunked
    /// prefill on; `-1` turns chunked prefill off.
    ChunkedPrefillSize,
    /// TGI `max_batch_total_tokens`, the KV-cache token budget: the simulator sizes its KV pool
    /// from `gpu_memory_utilization`, so the knob becomes the smallest utilization whose pool
    /// holds that many tokens (computed with the simulator's own memory model).
    KvTokenBudget,
    /// A real knob of the engine that the simulator does not model: refused, with the reason.
    NoEquivalent(&'static str),
}

/// One row of the translation table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Translation {
    pub engine: EngineKind,
    /// The engine's snake_case name (as in `perfagent::optimize::knobs`).
    pub knob: &'static str,
    pub rule: Rule,
}

const fn row(engine: EngineKind, knob: &'static str, rule: Rule) -> Translation {
    Translation { engine, knob, rule }
}

use EngineKind::{Sglang, Tgi, Vllm};
use Rule::{ChunkedPrefillSize, KvTokenBudget, Negated, NoEquivalent, Same, Spelled};

/// The table, in the order a reported config lists its keys. docs/orchestrator-sim.md shows it.
pub const TABLE: &[Translation] = &[
    row(Vllm, "max_num_seqs", Same(SimKey::MaxNumSeqs)),
    row(
        Vllm,
        "max_num_batched_tokens",
        Same(SimKey::MaxNumBatchedTokens),
    ),
    row(Vllm, "max_model_len", Same(SimKey::MaxModelLen)),
    row(
        Vllm,
        "gpu_memory_utilization",
        Same(SimKey::GpuMemoryUtilization),
    ),
    row(Vllm, "block_size", Same(SimKey::BlockSize)),
    row(
        Vllm,
        "quantization",
        Spelled(
            SimKey::Quantization,
            &[
                (Some("none"), "none"),
                (Some("fp8"), "fp8"),
                (Some("awq"), "awq"),
                (Some("int8"), "int8"),
                (Some("awq_marlin"), "awq"),
                (Some("w8a8_int8"), "int8"),
                (Some("w8a8_fp8"), "fp8"),
                (Some("fbgemm_fp8"), "fp8"),
            ],
        ),
    ),
    row(
        Vllm,
        "kv_cache_dtype",
        Spelled(
            SimKey::KvCacheDtype,
            &[
                (Some("auto"), "auto"),
                (Some("fp8"), "fp8"),
                (Some("fp8_e4m3"), "fp8_e4m3"),
                (Some("fp8_e5m2"), "fp8_e5m2"),
            ],
        ),
    ),
    row(
        Vllm,
        "enable_prefix_caching",
        Same(SimKey::EnablePrefixCaching),
    ),
    row(
        Vllm,
        "enable_chunked_prefill",
        Same(SimKey::EnableChunkedPrefill),
    ),
    row(Tgi, "max_batch_size", Same(SimKey::MaxNumSeqs)),
    row(
        Tgi,
        "max_batch_prefill_tokens",
        Same(SimKey::MaxNumBatchedTokens),
    ),
    row(Tgi, "max_total_tokens", Same(SimKey::MaxModelLen)),
    row(
        Tgi,
        "cuda_memory_fraction",
        Same(SimKey::GpuMemoryUtilization),
    ),
    row(Tgi, "max_batch_total_tokens", KvTokenBudget),
    row(
        Tgi,
        "max_concurrent_requests",
        Same(SimKey::MaxConcurrentRequests),
    ),
    row(
        Tgi,
        "quantize",
        Spelled(
            SimKey::Quantization,
            &[
                (None, "none"),
                (Some("fp8"), "fp8"),
                (Some("eetq"), "int8"),
                (Some("awq"), "awq"),
                (Some("bitsandbytes"), "int8"),
                (Some("none"), "none"),
            ],
        ),
    ),
    row(
        Tgi,
        "kv_cache_dtype",
        Spelled(
            SimKey::KvCacheDtype,
            &[
                (None, "auto"),
                (Some("fp8_e4m3fn"), "fp8_e4m3"),
                (Some("fp8_e5m2"), "fp8_e5m2"),
            ],
        ),
    ),
    row(
        Tgi,
        "max_waiting_tokens",
        NoEquivalent(
            "the simulated scheduler admits waiting requests at every iteration; it has no \
             wait-for-N-tokens rule",
        ),
    ),
    row(Sglang, "max_running_requests", Same(SimKey::MaxNumSeqs)),
    row(Sglang, "chunked_prefill_size", ChunkedPrefillSize),
    row(Sglang, "context_length", Same(SimKey::MaxModelLen)),
    row(
        Sglang,
        "mem_fraction_static",
        Same(SimKey::GpuMemoryUtilization),
    ),
    row(Sglang, "page_size", Same(SimKey::BlockSize)),
    row(
        Sglang,
        "quantization",
        Spelled(
            SimKey::Quantization,
            &[
                (None, "none"),
                (Some("fp8"), "fp8"),
                (Some("awq"), "awq"),
                (Some("w8a8_int8"), "int8"),
                (Some("w8a8_fp8"), "fp8"),
                (Some("awq_marlin"), "awq"),
                (Some("none"), "none"),
            ],
        ),
    ),
    row(
        Sglang,
        "kv_cache_dtype",
        Spelled(
            SimKey::KvCacheDtype,
            &[
                (Some("auto"), "auto"),
                (Some("fp8_e5m2"), "fp8_e5m2"),
                (Some("fp8_e4m3"), "fp8_e4m3"),
            ],
        ),
    ),
    row(
        Sglang,
        "disable_radix_cache",
        Negated(SimKey::EnablePrefixCaching),
    ),
    row(
        Sglang,
        "max_prefill_tokens",
        NoEquivalent(
            "the simulator has one per-iteration token budget, set by chunked_prefill_size",
        ),
    ),
    row(
        Sglang,
        "schedule_policy",
        NoEquivalent("the simulated scheduler is first-come first-served only"),
    ),
    row(
        Sglang,
        "schedule_conservativeness",
        NoEquivalent(
            "the simulated scheduler admits by free KV blocks, without a reservation ratio for \
             future output tokens",
        ),
    ),
];

/// The table's row for an engine's knob.
pub fn lookup(engine: EngineKind, knob: &str) -> Option<&'static Translation> {
    TABLE.iter().find(|t| t.engine == engine && t.knob == knob)
}

/// Why a config cannot be translated. Every variant but `InvalidValue` is a refusal of the
/// translation itself (the orchestrator answers 422); `InvalidValue` is a malformed or
/// out-of-range value (400).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TranslateError {
    #[error("{engine} has no knob {knob:?} that the simulated orchestrator knows; known: {known}")]
    UnknownKnob {
        engine: EngineKind,
        knob: String,
        known: String,
    },
    #[error("{engine} knob {knob:?} has no equivalent in the fleet simulator: {why}")]
    NoEquivalent {
        engine: EngineKind,
        knob: String,
        why: String,
    },
    #[error("{engine} knob {knob:?}: the simulator cannot run {value}; accepted: {accepted}")]
    UnsupportedValue {
        engine: EngineKind,
        knob: String,
        value: String,
        accepted: String,
    },
    #[error("{first:?} and {second:?} both set the simulator's {sim_key}: send only one")]
    Conflict {
        first: String,
        second: String,
        sim_key: &'static str,
    },
    #[error(
        "max_batch_total_tokens {tokens} does not fit: with the whole GPU memory the KV cache \
         holds at most {max_tokens} tokens"
    )]
    TokenBudgetTooLarge { tokens: u64, max_tokens: u64 },
    #[error("{knob:?}: {message}")]
    InvalidValue { knob: String, message: String },
}

impl TranslateError {
    /// The stable name the orchestrator's error body carries.
    pub fn name(&self) -> &'static str {
        match self {
            TranslateError::UnknownKnob { .. } => "UnknownKnob",
            TranslateError::NoEquivalent { .. } => "NoSimulatorEquivalent",
            TranslateError::UnsupportedValue { .. } => "UnsupportedValue",
            TranslateError::Conflict { .. } => "ConflictingKnobs",
            TranslateError::TokenBudgetTooLarge { .. } => "TokenBudgetTooLarge",
            TranslateError::InvalidValue { .. } => "InvalidValue",
        }
    }

    /// True for a value that is malformed or out of range (400) rather than untranslatable (422).
    pub fn is_invalid_value(&self) -> bool {
        matches!(self, TranslateError::InvalidValue { .. })
    }
}

/// A translated change: the simulator keys it sets and the config that results.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// Simulator key → value, as sent to `PUT /admin/instances/{id}/config`.
    pub sim_changes: Map<String, Value>,
    /// `base` with the change on top (validated).
    pub next: EngineConfig,
}

/// What the translation needs to know about the instance besides its engine: the memory model's
/// inputs (for `max_batch_total_tokens`).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub engine: EngineKind,
    pub generation: Generation,
    pub hardware: &'a Hardware,
}

/// A whole simulator config as the admin API's body (every key, so a PUT replaces it all).
pub fn sim_values(c: &EngineConfig) -> Map<String, Value> {
    match serde_json::to_value(c) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// The engine's default for a simulator key (what `null` — "not set" — means).
fn default_of(engine: EngineKind, key: SimKey) -> Value {
    sim_values(&EngineConfig::default_for(engine))
        .remove(key.as_str())
        .unwrap_or(Value::Null)
}

fn known_knobs(engine: EngineKind) -> String {
    let mut names: Vec<&str> = TABLE
        .iter()
        .filter(|t| t.engine == engine && !matches!(t.rule, NoEquivalent(_)))
        .map(|t| t.knob)
        .collect();
    names.push("sim.<simulator key>");
    names.join(", ")
}

/// Collects simulator values, remembering which knob set each so that two knobs setting the
/// same key are refused instead of one silently winning.
struct Sink {
    values: Map<String, Value>,
    origin: BTreeMap<SimKey, String>,
}

impl Sink {
    fn set(&mut self, key: SimKey, value: Value, knob: &str) -> Result<(), TranslateError> {
        if let Some(first) = self.origin.get(&key) {
            return Err(TranslateError::Conflict {
                first: first.clone(),
                second: knob.to_string(),
                sim_key: key.as_str(),
            });
        }
        self.origin.insert(key, knob.to_string());
        self.values.insert(key.as_str().to_string(), value);
        Ok(())
    }
}

fn invalid(knob: &str, message: impl Into<String>) -> TranslateError {
    TranslateError::InvalidValue {
        knob: knob.to_string(),
        message: message.into(),
    }
}

/// Translates `changes` (native knobs of `target.engine`) onto `base`. Keys may be snake_case or
/// kebab-case; `null` means "not set", i.e. the engine's default.
pub fn translate(
    target: Target<'_>,
    changes: &Map<String, Value>,
    base: &EngineConfig,
) -> Result<Translated, TranslateError> {
    let engine = target.engine;
    let mut sink = Sink {
        values: Map::new(),
        origin: BTreeMap::new(),
    };
    let mut budget: Option<(String, u64)> = None;
    for (raw, value) in changes {
        let knob = raw.trim().replace('-', "_");
        if let Some(sim) = knob.strip_prefix(SIM_PREFIX) {
            let key = SimKey::parse(sim).ok_or_else(|| TranslateError::UnknownKnob {
                engine,
                knob: raw.clone(),
                known: format!("sim.{}", SimKey::ALL.map(SimKey::as_str).join(", sim.")),
            })?;
            // The simulator's own spelling: taken as is (null clears max_concurrent_requests).
            sink.set(key, value.clone(), raw)?;
            continue;
        }
        let row = lookup(engine, &knob).ok_or_else(|| TranslateError::UnknownKnob {
            engine,
            knob: raw.clone(),
            known: known_knobs(engine),
        })?;
        match row.rule {
            Same(key) => {
                let v = if value.is_null() {
                    default_of(engine, key)
                } else {
                    value.clone()
                };
                sink.set(key, v, raw)?;
            }
            Spelled(key, pairs) => {
                let sim = if value.is_null() {
                    default_of(engine, key)
                } else {
                    let given = value
                        .as_str()
                        .map(|s| s.trim().to_ascii_lowercase())
                        .ok_or_else(|| invalid(raw, format!("expected a string, got {value}")))?;
                    let found = pairs
                        .iter()
                        .find(|(native, _)| *native == Some(given.as_str()))
                        .map(|(_, sim)| *sim)
                        .ok_or_else(|| TranslateError::UnsupportedValue {
                            engine,
                            knob: raw.clone(),
                            value: value.to_string(),
                            accepted: pairs
                                .iter()
                                .map(|(n, _)| n.map_or("null".to_string(), |n| format!("{n:?}")))
                                .collect::<Vec<_>>()
                                .join(", "),
                        })?;
                    Value::from(found)
                };
                sink.set(key, sim, raw)?;
            }
            Negated(key) => {
                let v = match value {
                    Value::Null => default_of(engine, key),
                    Value::Bool(b) => Value::Bool(!b),
                    other => return Err(invalid(raw, format!("expected a boolean, got {other}"))),
                };
                sink.set(key, v, raw)?;
            }
            ChunkedPrefillSize => match value {
                Value::Null => {
                    sink.set(
                        SimKey::MaxNumBatchedTokens,
                        default_of(engine, SimKey::MaxNumBatchedTokens),
                        raw,
                    )?;
                    sink.set(
                        SimKey::EnableChunkedPrefill,
                        default_of(engine, SimKey::EnableChunkedPrefill),
                        raw,
                    )?;
                }
                v => match v.as_i64() {
                    Some(-1) => sink.set(SimKey::EnableChunkedPrefill, Value::Bool(false), raw)?,
                    Some(n) if n > 0 => {
                        sink.set(SimKey::MaxNumBatchedTokens, Value::from(n), raw)?;
                        sink.set(SimKey::EnableChunkedPrefill, Value::Bool(true), raw)?;
                    }
                    _ => {
                        return Err(invalid(
                            raw,
                            format!("expected a positive token count or -1 (off), got {v}"),
                        ))
                    }
                },
            },
            KvTokenBudget => match value {
                // Not set: TGI infers the budget from the memory left, which is what the
                // simulator's utilization already gives.
                Value::Null => {}
                v => {
                    let tokens = v.as_u64().filter(|t| *t > 0).ok_or_else(|| {
                        invalid(raw, format!("expected a positive token count, got {v}"))
                    })?;
                    if let Some(first) = sink.origin.get(&SimKey::GpuMemoryUtilization) {
                        return Err(TranslateError::Conflict {
                            first: first.clone(),
                            second: raw.clone(),
                            sim_key: SimKey::GpuMemoryUtilization.as_str(),
                        });
                    }
                    sink.origin
                        .insert(SimKey::GpuMemoryUtilization, raw.clone());
                    budget = Some((raw.clone(), tokens));
                }
            },
            NoEquivalent(why) => {
                return Err(TranslateError::NoEquivalent {
                    engine,
                    knob: raw.clone(),
                    why: why.to_string(),
                })
            }
        }
    }
    // Parse each key alone first, so a type error names the knob that produced it.
    for (key, value) in &sink.values {
        let knob = SimKey::parse(key)
            .and_then(|k| sink.origin.get(&k))
            .cloned()
            .unwrap_or_else(|| key.clone());
        single_patch(key, value).map_err(|e| invalid(&knob, e.to_string()))?;
    }
    let mut patch = patch_of(&sink.values).map_err(|e| invalid("(config)", e.to_string()))?;
    if let Some((knob, tokens)) = budget {
        let without = patch
            .apply_to(base)
            .map_err(|e| invalid(&knob, e.to_string()))?;
        let utilization = utilization_for(target, &without, tokens)?;
        patch.gpu_memory_utilization = Some(utilization);
        sink.values.insert(
            SimKey::GpuMemoryUtilization.as_str().to_string(),
            Value::from(utilization),
        );
    }
    let next = patch.apply_to(base).map_err(|e| {
        let ConfigError::Invalid(message) = e;
        invalid("(resulting config)", message)
    })?;
    Ok(Translated {
        sim_changes: sink.values,
        next,
    })
}

/// Translates a whole native config: every simulator key it does not set takes the engine's
/// default (a rollback replaces the whole config).
pub fn translate_whole(
    target: Target<'_>,
    config: &Map<String, Value>,
) -> Result<Translated, TranslateError> {
    translate(target, config, &EngineConfig::default_for(target.engine))
}

fn single_patch(key: &str, value: &Value) -> Result<ConfigPatch, ConfigError> {
    let mut m = Map::new();
    m.insert(key.to_string(), value.clone());
    patch_of(&m)
}

fn patch_of(values: &Map<String, Value>) -> Result<ConfigPatch, ConfigError> {
    let bytes = serde_json::to_vec(values)
        .map_err(|e| ConfigError::Invalid(format!("encoding the config: {e}")))?;
    ConfigPatch::from_json(&bytes)
}

/// The smallest `gpu_memory_utilization` (rounded up to [`UTILIZATION_DECIMALS`]) whose KV pool
/// holds `tokens`, everything else as in `config`.
fn utilization_for(
    target: Target<'_>,
    config: &EngineConfig,
    tokens: u64,
) -> Result<f64, TranslateError> {
    let capacity = |u: f64| {
        let c = EngineConfig {
            gpu_memory_utilization: u,
            ..config.clone()
        };
        Derived::new(&c, target.hardware, target.generation).kv_capacity_tokens()
    };
    let max_tokens = capacity(1.0);
    if max_tokens < tokens {
        return Err(TranslateError::TokenBudgetTooLarge { tokens, max_tokens });
    }
    // Capacity grows with utilization: bisect for the smallest that is enough.
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if capacity(mid) >= tokens {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let scale = 10f64.powi(UTILIZATION_DECIMALS);
    Ok(((hi * scale).ceil() / scale).min(1.0))
}

/// The simulator's config in the engine's own names. Settings the engine cannot spell (a key it
/// has no flag for, or a value it has no name for) appear as `sim.<key>` when they differ from
/// the engine's default, so [`translate_whole`] of the result gives `config` back.
pub fn native_config(engine: EngineKind, config: &EngineConfig) -> Map<String, Value> {
    let values = sim_values(config);
    let defaults = sim_values(&EngineConfig::default_for(engine));
    let get = |k: SimKey| values.get(k.as_str()).cloned().unwrap_or(Value::Null);
    let mut out = Map::new();
    let mut covered: Vec<SimKey> = Vec::new();
    for t in TABLE.iter().filter(|t| t.engine == engine) {
        match t.rule {
            Same(key) => {
                let v = get(key);
                // `null` would read back as the engine's default; only a default can be null.
                if !v.is_null() || default_of(engine, key).is_null() {
                    out.insert(t.knob.to_string(), v);
                    covered.push(key);
                }
            }
            Spelled(key, pairs) => {
                let v = get(key);
                if let Some((native, _)) = pairs.iter().find(|(_, sim)| v.as_str() == Some(*sim)) {
                    out.insert(t.knob.to_string(), native.map_or(Value::Null, Value::from));
                    covered.push(key);
                }
            }
            Negated(key) => {
                if let Some(b) = get(key).as_bool() {
                    out.insert(t.knob.to_string(), Value::Bool(!b));
                    covered.push(key);
                }
            }
            ChunkedPrefillSize => {
                if config.enable_chunked_prefill {
                    out.insert(
                        t.knob.to_string(),
                        Value::from(config.max_num_batched_tokens),
                    );
                    covered.push(SimKey::MaxNumBatchedTokens);
                } else {
                    out.insert(t.knob.to_string(), Value::from(-1));
                }
                covered.push(SimKey::EnableChunkedPrefill);
            }
            KvTokenBudget | NoEquivalent(_) => {}
        }
    }
    for key in SimKey::ALL.into_iter().filter(|k| !covered.contains(k)) {
        let v = get(key);
        if defaults.get(key.as_str()) != Some(&v) {
            out.insert(format!("{SIM_PREFIX}{}", key.as_str()), v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KvCacheDtype, Quantization};
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn target(engine: EngineKind, hw: &Hardware) -> Target<'_> {
        Target {
            engine,
            generation: Generation::default_for(engine),
            hardware: hw,
        }
    }

    fn tr(engine: EngineKind, changes: Value) -> Result<Translated, TranslateError> {
        let hw = Hardware::default();
        translate(
            target(engine, &hw),
            &map(changes),
            &EngineConfig::default_for(engine),
        )
    }

    #[test]
    fn tgi_knobs_become_the_simulators_vllm_named_keys() {
        let t = tr(
            EngineKind::Tgi,
            json!({"max_batch_prefill_tokens": 2048, "max_batch_size": 64,
                   "cuda_memory_fraction": 0.85, "quantize": "eetq",
                   "kv_cache_dtype": "fp8_e4m3fn", "max_concurrent_requests": 32,
                   "max_total_tokens": 4096}),
        )
        .unwrap();
        assert_eq!(
            Value::Object(t.sim_changes),
            json!({"max_num_batched_tokens": 2048, "max_num_seqs": 64,
                   "gpu_memory_utilization": 0.85, "quantization": "int8",
                   "kv_cache_dtype": "fp8_e4m3", "max_concurrent_requests": 32,
                   "max_model_len": 4096})
        );
        assert_eq!(t.next.quantization, Quantization::Int8);
    }

    #[test]
    fn sglang_knobs_become_the_simulators_keys_with_their_own_semantics() {
        let t = tr(
            EngineKind::Sglang,
            json!({"mem_fraction_static": 0.8, "max_running_requests": 48,
                   "chunked_prefill_size": 4096, "disable_radix_cache": true,
                   "kv_cache_dtype": "fp8_e5m2", "quantization": "w8a8_int8",
                   "context_length": 16384, "page_size": 1}),
        )
        .unwrap();
        assert_eq!(
            Value::Object(t.sim_changes),
            json!({"gpu_memory_utilization": 0.8, "max_num_seqs": 48,
                   "max_num_batched_tokens": 4096, "enable_chunked_prefill": true,
                   "enable_prefix_caching": false, "kv_cache_dtype": "fp8_e5m2",
                   "quantization": "int8", "max_model_len": 16384, "block_size": 1})
        );
        let off = tr(EngineKind::Sglang, json!({"chunked_prefill_size": -1})).unwrap();
        assert_eq!(
            Value::Object(off.sim_changes),
            json!({"enable_chunked_prefill": false})
        );
    }

    #[test]
    fn vllm_knobs_pass_through_unchanged() {
        let t = tr(
            EngineKind::Vllm,
            json!({"max_num_seqs": 512, "enable_prefix_caching": false, "kv_cache_dtype": "fp8"}),
        )
        .unwrap();
        assert_eq!(
            Value::Object(t.sim_changes),
            json!({"max_num_seqs": 512, "enable_prefix_caching": false, "kv_cache_dtype": "fp8"})
        );
    }

    #[test]
    fn kebab_case_keys_are_the_same_knobs() {
        let t = tr(EngineKind::Tgi, json!({"max-batch-prefill-tokens": 1024})).unwrap();
        assert_eq!(t.next.max_num_batched_tokens, 1024);
    }

    #[test]
    fn an_unknown_knob_is_refused_by_name_never_dropped() {
        // A vLLM name sent for a TGI instance is not a TGI knob.
        let err = tr(EngineKind::Tgi, json!({"max_num_seqs": 3})).unwrap_err();
        assert_eq!(err.name(), "UnknownKnob");
        let text = err.to_string();
        assert!(
            text.contains("\"max_num_seqs\"") && text.contains("tgi"),
            "{text}"
        );
        assert!(
            text.contains("max_batch_size"),
            "lists the known ones: {text}"
        );
        let err = tr(EngineKind::Vllm, json!({"sim.nope": 1})).unwrap_err();
        assert_eq!(err.name(), "UnknownKnob");
    }

    #[test]
    fn a_real_knob_the_simulator_does_not_model_is_refused_with_the_reason() {
        for (engine, knob) in [
            (EngineKind::Sglang, "schedule_conservativeness"),
            (EngineKind::Sglang, "schedule_policy"),
            (EngineKind::Sglang, "max_prefill_tokens"),
            (EngineKind::Tgi, "max_waiting_tokens"),
        ] {
            let err = tr(engine, json!({ knob: 1.3 })).unwrap_err();
            assert_eq!(err.name(), "NoSimulatorEquivalent", "{knob}");
            assert!(err.to_string().contains(knob), "{err}");
        }
    }

    #[test]
    fn a_value_without_a_simulator_counterpart_is_refused_listing_the_accepted_ones() {
        let err = tr(EngineKind::Tgi, json!({"quantize": "gptq"})).unwrap_err();
        assert_eq!(err.name(), "UnsupportedValue");
        assert!(err.to_string().contains("\"eetq\""), "{err}");
    }

    #[test]
    fn two_knobs_for_one_simulator_key_conflict() {
        let err = tr(
            EngineKind::Tgi,
            json!({"cuda_memory_fraction": 0.9, "max_batch_total_tokens": 100000}),
        )
        .unwrap_err();
        assert_eq!(err.name(), "ConflictingKnobs");
        let err = tr(
            EngineKind::Sglang,
            json!({"max_running_requests": 8, "sim.max_num_seqs": 9}),
        )
        .unwrap_err();
        assert_eq!(err.name(), "ConflictingKnobs");
    }

    #[test]
    fn malformed_and_out_of_range_values_are_invalid_not_untranslatable() {
        let err = tr(EngineKind::Tgi, json!({"max_batch_size": "many"})).unwrap_err();
        assert!(err.is_invalid_value());
        assert!(err.to_string().contains("max_batch_size"), "{err}");
        let err = tr(EngineKind::Sglang, json!({"mem_fraction_static": 1.5})).unwrap_err();
        assert!(err.is_invalid_value(), "{err}");
        let err = tr(EngineKind::Sglang, json!({"chunked_prefill_size": 0})).unwrap_err();
        assert!(err.is_invalid_value(), "{err}");
    }

    #[test]
    fn a_tgi_token_budget_becomes_the_utilization_whose_kv_pool_holds_it() {
        let hw = Hardware::default();
        let base = EngineConfig::default_for(EngineKind::Tgi);
        let cap = |c: &EngineConfig| Derived::new(c, &hw, Generation::TgiV3).kv_capacity_tokens();
        let t = translate(
            target(EngineKind::Tgi, &hw),
            &map(json!({"max_batch_total_tokens": 200_000})),
            &base,
        )
        .unwrap();
        let u = t.next.gpu_memory_utilization;
        assert!(cap(&t.next) >= 200_000);
        // The smallest such utilization, to the rounding step.
        let less = EngineConfig {
            gpu_memory_utilization: u - 2e-4,
            ..t.next.clone()
        };
        assert!(cap(&less) < 200_000, "u={u}");
        let err = tr(
            EngineKind::Tgi,
            json!({"max_batch_total_tokens": 50_000_000}),
        )
        .unwrap_err();
        assert_eq!(err.name(), "TokenBudgetTooLarge");
    }

    #[test]
    fn null_means_the_engines_default() {
        let base = EngineConfig {
            max_concurrent_requests: Some(16),
            quantization: Quantization::Awq,
            ..EngineConfig::default_for(EngineKind::Tgi)
        };
        let hw = Hardware::default();
        let t = translate(
            target(EngineKind::Tgi, &hw),
            &map(json!({"max_concurrent_requests": null, "quantize": null})),
            &base,
        )
        .unwrap();
        assert_eq!(t.next.max_concurrent_requests, Some(128));
        assert_eq!(t.next.quantization, Quantization::None);
    }

    fn odd_configs(engine: EngineKind) -> Vec<EngineConfig> {
        let d = EngineConfig::default_for(engine);
        vec![
            d.clone(),
            EngineConfig {
                max_num_seqs: 17,
                max_num_batched_tokens: 3000,
                max_model_len: 12345,
                gpu_memory_utilization: 0.83,
                block_size: 32,
                quantization: Quantization::Awq,
                kv_cache_dtype: KvCacheDtype::Fp8,
                enable_prefix_caching: false,
                enable_chunked_prefill: false,
                max_concurrent_requests: None,
                harmful: true,
            },
            EngineConfig {
                quantization: Quantization::Int8,
                kv_cache_dtype: KvCacheDtype::Fp8E4m3,
                max_concurrent_requests: Some(7),
                block_size: 1,
                ..d.clone()
            },
            EngineConfig {
                quantization: Quantization::Fp8,
                kv_cache_dtype: KvCacheDtype::Fp8E5m2,
                enable_chunked_prefill: false,
                ..d
            },
        ]
    }

    #[test]
    fn a_reported_config_translates_back_to_exactly_the_same_simulator_config() {
        let hw = Hardware::default();
        for engine in [EngineKind::Vllm, EngineKind::Tgi, EngineKind::Sglang] {
            for c in odd_configs(engine) {
                let native = native_config(engine, &c);
                let back = translate_whole(target(engine, &hw), &native)
                    .unwrap_or_else(|e| panic!("{engine}: {e} for {native:?}"));
                assert_eq!(back.next, c, "{engine}: {native:?}");
            }
        }
    }

    #[test]
    fn a_reported_config_uses_the_engines_names_and_sim_keys_only_for_what_it_cannot_spell() {
        let tgi = native_config(EngineKind::Tgi, &EngineConfig::default_for(EngineKind::Tgi));
        assert_eq!(
            Value::Object(tgi),
            json!({"max_batch_size": 256, "max_batch_prefill_tokens": 4096,
                   "max_total_tokens": 8192, "cuda_memory_fraction": 0.9,
                   "max_concurrent_requests": 128, "quantize": null, "kv_cache_dtype": null})
        );
        let harmful = EngineConfig {
            harmful: true,
            block_size: 64,
            ..EngineConfig::default_for(EngineKind::Sglang)
        };
        let s = native_config(EngineKind::Sglang, &harmful);
        assert_eq!(s.get("sim.harmful"), Some(&json!(true)));
        assert_eq!(s.get("page_size"), Some(&json!(64)));
        assert_eq!(s.get("disable_radix_cache"), Some(&json!(false)));
        assert!(!s.contains_key("sim.block_size"));
    }

    #[test]
    fn every_knob_of_the_agents_catalog_has_a_row() {
        for k in perfagent::optimize::knobs::CATALOG {
            let engine = match k.engine {
                perfagent::snapshot::Engine::Vllm => EngineKind::Vllm,
                perfagent::snapshot::Engine::Tgi => EngineKind::Tgi,
                perfagent::snapshot::Engine::Sglang => EngineKind::Sglang,
            };
            assert!(
                lookup(engine, k.key).is_some(),
                "{engine} {} has no translation row",
                k.key
            );
        }
    }
}
