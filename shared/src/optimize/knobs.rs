//! The engine knobs the optimizers may touch, with each engine's documented default: the only
//! names a recommendation can carry, so nothing an engine cannot do is ever proposed.
//!
//! Sources: vLLM engine arguments and "Optimization and Tuning" (V1), TGI's
//! `text-generation-launcher --help`, SGLang's server arguments and hyperparameter-tuning guide.
//! vLLM V0-only knobs (`swap_space`, `num_scheduler_steps`, `preemption_mode`,
//! `use_v2_block_manager`) are deliberately absent: V1 is the default engine since 0.8 and the
//! only one since 0.11.

use crate::instance::EngineConfig;
use crate::snapshot::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A literal default (const-constructible, unlike `serde_json::Value`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lit {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(&'static str),
}

impl Lit {
    pub fn to_json(self) -> Value {
        match self {
            Lit::Int(v) => Value::from(v),
            Lit::Float(v) => Value::from(v),
            Lit::Bool(v) => Value::from(v),
            Lit::Str(v) => Value::from(v),
        }
    }
}

/// What an engine does when a knob is not set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KnobDefault {
    /// A fixed documented default.
    Fixed(Lit),
    /// A default that depends on the hardware or version; `assumed` is the common case.
    Varies { assumed: Lit, note: &'static str },
    /// No value: the engine derives it (or the feature is off).
    Derived(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Knob {
    pub engine: Engine,
    /// The engine's snake_case name (CLI flag: `--` + key with `_` → `-`).
    pub key: &'static str,
    pub default: KnobDefault,
}

const fn knob(engine: Engine, key: &'static str, default: KnobDefault) -> Knob {
    Knob {
        engine,
        key,
        default,
    }
}

use Engine::{Sglang, Tgi, Vllm};
use KnobDefault::{Derived, Fixed, Varies};

pub const CATALOG: &[Knob] = &[
    knob(
        Vllm,
        "max_num_seqs",
        Varies {
            assumed: Lit::Int(256),
            note: "vLLM's API server defaults to 256 on GPUs under 70 GiB and on A100, 1024 on larger GPUs",
        },
    ),
    knob(
        Vllm,
        "max_num_batched_tokens",
        Varies {
            assumed: Lit::Int(2048),
            note: "vLLM's API server defaults to 2048 on GPUs under 70 GiB and on A100, 8192 on larger GPUs",
        },
    ),
    knob(Vllm, "gpu_memory_utilization", Fixed(Lit::Float(0.9))),
    knob(Vllm, "block_size", Fixed(Lit::Int(16))),
    knob(
        Vllm,
        "enable_prefix_caching",
        Varies {
            assumed: Lit::Bool(true),
            note: "on by default in the V1 engine (vLLM 0.8 and later), off in V0",
        },
    ),
    knob(Vllm, "kv_cache_dtype", Fixed(Lit::Str("auto"))),
    knob(
        Vllm,
        "quantization",
        Derived("none: read from the checkpoint's config"),
    ),
    knob(
        Vllm,
        "enable_chunked_prefill",
        Varies {
            assumed: Lit::Bool(true),
            note: "always on in the V1 engine; V0 enabled it per model",
        },
    ),
    knob(Tgi, "max_batch_total_tokens", Derived("inferred at warmup from the memory left after loading the model")),
    knob(Tgi, "max_batch_prefill_tokens", Derived("max_input_tokens + 50")),
    knob(Tgi, "max_concurrent_requests", Fixed(Lit::Int(128))),
    knob(Tgi, "max_waiting_tokens", Fixed(Lit::Int(20))),
    knob(Tgi, "quantize", Derived("none: read from the checkpoint's config")),
    knob(Tgi, "kv_cache_dtype", Derived("the model's dtype (float16 or bfloat16)")),
    knob(Tgi, "cuda_memory_fraction", Fixed(Lit::Float(1.0))),
    knob(
        Sglang,
        "mem_fraction_static",
        Varies {
            assumed: Lit::Float(0.9),
            note: "SGLang picks it with a heuristic from GPU memory and parallelism; its docs cite 0.9",
        },
    ),
    knob(Sglang, "max_running_requests", Derived("derived from the KV pool size")),
    knob(Sglang, "chunked_prefill_size", Derived("chosen from the GPU's memory")),
    knob(Sglang, "max_prefill_tokens", Fixed(Lit::Int(16384))),
    knob(
        Sglang,
        "schedule_policy",
        Varies {
            assumed: Lit::Str("fcfs"),
            note: "fcfs in current releases; older releases defaulted to lpm",
        },
    ),
    knob(Sglang, "disable_radix_cache", Fixed(Lit::Bool(false))),
    knob(Sglang, "kv_cache_dtype", Fixed(Lit::Str("auto"))),
    knob(Sglang, "quantization", Derived("none: read from the checkpoint's config")),
    knob(Sglang, "schedule_conservativeness", Fixed(Lit::Float(1.0))),
];

/// The catalog entry for an engine's knob.
pub fn lookup(engine: Engine, key: &str) -> Option<&'static Knob> {
    CATALOG.iter().find(|k| k.engine == engine && k.key == key)
}

/// The engine's CLI flag for a config key: `--` + key with `_` → `-`.
pub fn flag(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// A knob's value before the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CurrentValue {
    /// `null` when the engine derives it and the config does not say.
    pub value: Value,
    /// True when not read from the instance's config but taken from the engine's default.
    pub assumed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The knob's value in `config` (by its snake_case key, or its kebab-case spelling), else the
/// engine's default marked as assumed.
pub fn current(knob: &Knob, config: &EngineConfig) -> CurrentValue {
    let kebab = knob.key.replace('_', "-");
    let set = config
        .get(knob.key)
        .or_else(|| config.get(&kebab))
        .filter(|v| !v.is_null());
    if let Some(v) = set {
        return CurrentValue {
            value: v.clone(),
            assumed: false,
            note: None,
        };
    }
    match knob.default {
        Fixed(lit) => CurrentValue {
            value: lit.to_json(),
            assumed: true,
            note: Some("the engine's documented default".to_string()),
        },
        Varies { assumed, note } => CurrentValue {
            value: assumed.to_json(),
            assumed: true,
            note: Some(note.to_string()),
        },
        Derived(note) => CurrentValue {
            value: Value::Null,
            assumed: true,
            note: Some(note.to_string()),
        },
    }
}

/// A number, also from a numeric string ("0.9"): operators write configs by hand.
pub fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|x: &f64| x.is_finite())
}

/// A boolean, also from "true"/"false" strings.
pub fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A lower-case string ("AWQ" and "awq" are the same method).
pub fn as_lower_str(v: &Value) -> Option<String> {
    v.as_str().map(|s| s.trim().to_ascii_lowercase())
}
