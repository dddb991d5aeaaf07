//! Quantization optimizer: smaller weights leave more memory for the KV cache (or, on TGI, a
//! larger inferred batch token budget). 8-bit first; 4-bit only when the pressure is CRITICAL,
//! because it needs another checkpoint and costs more accuracy.

use super::{effect, risk, Ctx, Direction, Draft, Optimizer, RiskLevel};
use crate::analysis::{Bottleneck, BottleneckType, Severity};
use crate::snapshot::Engine;
use serde_json::Value;

/// Bits per weight of a quantization method as the engine names it; `None` for one we do not
/// know (then nothing is proposed rather than guessed).
fn weight_bits(engine: Engine, method: Option<&str>) -> Option<u32> {
    let Some(m) = method.filter(|m| !m.is_empty() && *m != "none") else {
        return Some(16);
    };
    match m {
        "fp8" | "eetq" | "w8a8_int8" | "w8a8_fp8" | "modelopt_fp8" | "fbgemm_fp8"
        | "experts_int8" => Some(8),
        // TGI's `bitsandbytes` is 8-bit; vLLM's and SGLang's may be 4-bit in-flight.
        "bitsandbytes" if engine == Engine::Tgi => Some(8),
        "awq" | "gptq" | "marlin" | "gptq_marlin" | "awq_marlin" | "bitsandbytes"
        | "bitsandbytes-nf4" | "bitsandbytes-fp4" | "exl2" | "gguf" | "modelopt_fp4" | "mxfp4"
        | "w4afp8" | "moe_wna16" => Some(4),
        _ => None,
    }
}

pub(crate) fn propose(ctx: &Ctx<'_>, b: &Bottleneck) -> Vec<Draft> {
    let motivated = match b.kind {
        BottleneckType::MemoryPressure => true,
        // TGI cannot show KV usage; freed weight memory grows its inferred token budget.
        BottleneckType::QueueBuildup | BottleneckType::LowThroughput => ctx.engine == Engine::Tgi,
        _ => false,
    };
    if !motivated || b.severity < Severity::High {
        return Vec::new();
    }
    let knob = match ctx.engine {
        Engine::Tgi => "quantize",
        Engine::Vllm | Engine::Sglang => "quantization",
    };
    let current = ctx.string(knob);
    let Some(bits) = weight_bits(ctx.engine, current.as_deref()) else {
        return Vec::new();
    };
    let freed = match ctx.engine {
        Engine::Tgi => {
            "the memory freed goes to TGI's batch token budget, inferred at warmup (unless \
             max_batch_total_tokens is pinned)"
        }
        Engine::Vllm | Engine::Sglang => "the memory freed goes to the KV cache",
    };
    let mut out = Vec::new();
    if bits > 8 {
        let (method, label, risk_text, prereq) = match ctx.engine {
            Engine::Tgi => (
                "eetq",
                "INT8 (EETQ)",
                "8-bit integer weights: a small accuracy loss on most models; check your own \
                 evaluations before the rollout",
                "the served checkpoint is 16-bit: EETQ quantizes it at load time",
            ),
            Engine::Vllm | Engine::Sglang => (
                "fp8",
                "FP8",
                "FP8 weights (and activations on GPUs of compute capability 8.9 or more): \
                 typically under 1% accuracy loss on common benchmarks, but check your own \
                 evaluations; older GPUs run weight-only FP8 with less speed-up",
                "the served checkpoint is 16-bit: the engine quantizes it to FP8 at load time",
            ),
        };
        out.push(Draft {
            optimizer: Optimizer::Quantization,
            knob,
            proposed: Value::from(method),
            title: format!("Quantize weights to {label}: {knob} → {method}"),
            impact: vec![
                effect(
                    "weight_memory",
                    Direction::Decrease,
                    "−50%",
                    "8 bits per weight instead of 16",
                ),
                effect(
                    "kv_cache_capacity",
                    Direction::Increase,
                    "+50–100% when weights took about half the GPU",
                    freed,
                ),
            ],
            risk: risk(RiskLevel::Medium, risk_text),
            prerequisites: vec![prereq.to_string()],
        });
    }
    if bits > 4 && b.severity == Severity::Critical {
        out.push(Draft {
            optimizer: Optimizer::Quantization,
            knob,
            proposed: Value::from("awq"),
            title: format!("Serve a 4-bit AWQ checkpoint: {knob} → awq"),
            impact: vec![
                effect(
                    "weight_memory",
                    Direction::Decrease,
                    if bits > 8 { "−75%" } else { "−50%" },
                    &format!("4 bits per weight instead of {bits}"),
                ),
                effect(
                    "kv_cache_capacity",
                    Direction::Increase,
                    "large: most of the freed memory",
                    freed,
                ),
            ],
            risk: risk(
                RiskLevel::High,
                "4-bit weights: measurable accuracy loss on some tasks (reasoning, code, long \
                 contexts); a different checkpoint is deployed, so evaluate it before the rollout",
            ),
            prerequisites: vec![
                "an AWQ-quantized checkpoint of the same model: the method is read from the \
                 checkpoint, and this setting on a 16-bit checkpoint fails at startup, so the \
                 rollout must switch the model too"
                    .to_string(),
            ],
        });
    }
    out
}
