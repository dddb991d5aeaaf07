//! KV-cache optimizer: more room for the cache (memory fraction, 8-bit KV entries) when it is the
//! limit, and more reuse of it (block size, prefix caching / radix cache, prefix-aware
//! scheduling) when prefixes are looked up but missed.

use super::{
    effect, fraction, latency_cause, risk, Ctx, Direction, Draft, LatencyCause, Optimizer,
    RiskLevel,
};
use crate::analysis::{Bottleneck, BottleneckType};
use crate::snapshot::Engine;
use serde_json::Value;

/// Highest memory fraction proposed: above it, activations and CUDA graphs have too little room.
const MAX_MEMORY_FRACTION: f64 = 0.95;
/// Step for vLLM's `gpu_memory_utilization`.
const VLLM_MEMORY_STEP: f64 = 0.05;
/// Step for SGLang's `mem_fraction_static` (its guide raises it 0.01 at a time until OOM).
const SGLANG_MEMORY_STEP: f64 = 0.02;
/// Step for TGI's `cuda_memory_fraction` when an operator lowered it.
const TGI_MEMORY_STEP: f64 = 0.1;
/// vLLM's smallest common CUDA block size and its default.
const VLLM_BLOCK_SIZE: i64 = 16;
/// KV dtypes that are 16 bits or more: an 8-bit cache halves them.
const WIDE_KV_DTYPES: [&str; 6] = ["auto", "bfloat16", "bf16", "float16", "fp16", "half"];

pub(crate) fn propose(ctx: &Ctx<'_>, b: &Bottleneck) -> Vec<Draft> {
    let mut out = Vec::new();
    match b.kind {
        BottleneckType::MemoryPressure => {
            capacity(ctx, &mut out);
            kv_dtype(ctx, &mut out);
        }
        BottleneckType::CacheInefficiency => {
            reuse(ctx, &mut out);
            if ctx.memory_bound() {
                // A full cache evicts the prefixes it could have reused.
                capacity(ctx, &mut out);
            }
        }
        BottleneckType::HighLatency => {
            if latency_cause(ctx, b) == Some(LatencyCause::Prefill) {
                enable_reuse(ctx, &mut out);
            }
        }
        // TGI cannot show KV usage, so a queue on TGI may be a full token budget: give the budget
        // more memory. vLLM and SGLang show it, and MEMORY_PRESSURE carries these changes.
        BottleneckType::QueueBuildup | BottleneckType::LowThroughput => {
            if ctx.engine == Engine::Tgi {
                capacity(ctx, &mut out);
                kv_dtype(ctx, &mut out);
            }
        }
    }
    out
}

fn capacity(ctx: &Ctx<'_>, out: &mut Vec<Draft>) {
    let (knob, step, current) = match ctx.engine {
        Engine::Vllm => (
            "gpu_memory_utilization",
            VLLM_MEMORY_STEP,
            ctx.number("gpu_memory_utilization"),
        ),
        Engine::Sglang => (
            "mem_fraction_static",
            SGLANG_MEMORY_STEP,
            ctx.number("mem_fraction_static"),
        ),
        // TGI's default (1.0) already hands all memory to it; only an operator's lower value
        // can be raised.
        Engine::Tgi => (
            "cuda_memory_fraction",
            TGI_MEMORY_STEP,
            ctx.configured_number("cuda_memory_fraction"),
        ),
    };
    let cap = if ctx.engine == Engine::Tgi {
        1.0
    } else {
        MAX_MEMORY_FRACTION
    };
    let Some(current) = current else { return };
    if current >= cap - 1e-9 {
        return;
    }
    let proposed = (current + step).min(cap);
    out.push(Draft {
        optimizer: Optimizer::KvCache,
        knob,
        proposed: fraction(proposed),
        title: format!("Give the KV cache more GPU memory: {knob} {current} → {proposed:.2}"),
        impact: vec![
            effect(
                "kv_cache_capacity",
                Direction::Increase,
                "+10–25%",
                &format!(
                    "{:.0}% more of the GPU's memory goes to the KV cache, which usually holds \
                     25–50% of it once the weights are loaded",
                    (proposed - current) * 100.0
                ),
            ),
            effect(
                "preemptions_and_queueing",
                Direction::Decrease,
                "proportional to the added capacity",
                "more sequences fit before the scheduler has to wait or evict",
            ),
        ],
        risk: risk(
            RiskLevel::Medium,
            "less headroom for activations, CUDA graphs and any other process on the GPU: an \
             out-of-memory error at startup or under a long prefill; canary first",
        ),
        prerequisites: if ctx.engine == Engine::Sglang {
            vec![
                "after the change, SGLang's startup log should still show 5–8 GB \
                 available_gpu_mem for activations"
                    .to_string(),
            ]
        } else {
            Vec::new()
        },
    });
}

fn kv_dtype(ctx: &Ctx<'_>, out: &mut Vec<Draft>) {
    let current = ctx.string("kv_cache_dtype");
    let wide = match (&current, ctx.engine) {
        // TGI's unset means the model's 16-bit dtype.
        (None, Engine::Tgi) => true,
        (Some(c), _) => WIDE_KV_DTYPES.contains(&c.as_str()),
        (None, _) => false,
    };
    if !wide {
        return;
    }
    // vLLM's `fp8` is e4m3 (what its FlashAttention backend supports); SGLang and TGI take
    // e5m2, which needs no calibrated scaling factors.
    let proposed = match ctx.engine {
        Engine::Vllm => "fp8",
        Engine::Tgi | Engine::Sglang => "fp8_e5m2",
    };
    out.push(Draft {
        optimizer: Optimizer::KvCache,
        knob: "kv_cache_dtype",
        proposed: Value::from(proposed),
        title: format!("Store the KV cache in 8 bits: kv_cache_dtype → {proposed}"),
        impact: vec![
            effect(
                "kv_cache_capacity",
                Direction::Increase,
                "≈2×",
                "each cached token takes 1 byte per element instead of 2",
            ),
            effect(
                "batch_size",
                Direction::Increase,
                "up to ≈2× when the cache is the limit",
                "twice the tokens fit in the same memory, so more sequences run together",
            ),
        ],
        risk: risk(
            RiskLevel::Medium,
            "8-bit keys and values lose precision: usually a small accuracy drop, larger on long \
             contexts; without calibrated scales the engine uses 1.0. Needs GPU and attention \
             backend support; evaluate on your own prompts before the rollout",
        ),
        prerequisites: Vec::new(),
    });
}

/// Reuse switched on where an operator switched it off.
fn enable_reuse(ctx: &Ctx<'_>, out: &mut Vec<Draft>) {
    let (knob, proposed) = match ctx.engine {
        Engine::Vllm if ctx.configured_bool("enable_prefix_caching") == Some(false) => {
            ("enable_prefix_caching", true)
        }
        Engine::Sglang if ctx.bool("disable_radix_cache") == Some(true) => {
            ("disable_radix_cache", false)
        }
        _ => return,
    };
    out.push(Draft {
        optimizer: Optimizer::KvCache,
        knob,
        proposed: Value::from(proposed),
        title: format!("Reuse cached prompt prefixes: {knob} → {proposed}"),
        impact: vec![effect(
            "ttft_p95",
            Direction::Decrease,
            "up to the shared share of prompts",
            "prompt tokens already in the cache (system prompts, chat history, few-shot \
             examples) are not computed again; no gain when prompts share nothing",
        )],
        risk: risk(
            RiskLevel::Low,
            "a little hashing and bookkeeping per block; cached blocks compete with running \
             requests for KV memory only when they would otherwise be free",
        ),
        prerequisites: Vec::new(),
    });
}

fn reuse(ctx: &Ctx<'_>, out: &mut Vec<Draft>) {
    enable_reuse(ctx, out);
    match ctx.engine {
        Engine::Vllm => {
            let Some(block) = ctx.number("block_size") else {
                return;
            };
            if block <= VLLM_BLOCK_SIZE as f64 {
                return;
            }
            out.push(Draft {
                optimizer: Optimizer::KvCache,
                knob: "block_size",
                proposed: Value::from(VLLM_BLOCK_SIZE),
                title: format!(
                    "Cache prefixes at a finer grain: block_size {block} → {VLLM_BLOCK_SIZE}"
                ),
                impact: vec![effect(
                    "prefix_cache_hit_ratio",
                    Direction::Increase,
                    "more for short shared prefixes",
                    "vLLM reuses whole blocks only: with smaller blocks, more of each shared \
                     prefix falls in a complete block",
                )],
                risk: risk(
                    RiskLevel::Low,
                    "more blocks to track per sequence: slightly more scheduler and block-table \
                     overhead",
                ),
                prerequisites: Vec::new(),
            });
        }
        Engine::Sglang => {
            if ctx.string("schedule_policy").as_deref() == Some("lpm") {
                return;
            }
            out.push(Draft {
                optimizer: Optimizer::KvCache,
                knob: "schedule_policy",
                proposed: Value::from("lpm"),
                title: "Schedule by longest prefix match: schedule_policy → lpm".to_string(),
                impact: vec![effect(
                    "prefix_cache_hit_ratio",
                    Direction::Increase,
                    "workload-dependent",
                    "requests sharing a cached prefix are run together, before it is evicted \
                     (SGLang's tuning guide, for workloads with many shared prefixes)",
                )],
                risk: risk(
                    RiskLevel::Low,
                    "more scheduling overhead, and requests without a cached prefix can wait \
                     longer than first-come-first-served",
                ),
                prerequisites: Vec::new(),
            });
        }
        // TGI has no prefix-cache metric nor toggle: CACHE_INEFFICIENCY never reaches here.
        Engine::Tgi => {}
    }
}
