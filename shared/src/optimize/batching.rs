//! Batching optimizer: more concurrency or bigger prefill budgets for throughput and queueing when
//! memory has room; less concurrency when the engine preempts; smaller prefill chunks when decodes
//! (inter-token latency) suffer. The direction follows the bottleneck and the queue depth.

use super::{
    effect, latency_cause, risk, Ctx, Direction, Draft, LatencyCause, Optimizer, RiskLevel,
};
use crate::analysis::{Bottleneck, BottleneckType, Severity};
use crate::snapshot::Engine;
use serde_json::Value;

/// Running requests at this share of the concurrency cap mean the cap is what limits admission.
const AT_CAP_FRACTION: f64 = 0.9;
/// Concurrency kept when the engine preempts (vLLM's advice: decrease max_num_seqs).
const SHRINK_FACTOR: f64 = 0.75;
/// vLLM's guidance: above 8192 batched tokens for throughput, 2048 for inter-token latency.
const VLLM_THROUGHPUT_BATCHED_TOKENS: f64 = 8192.0;
const VLLM_ITL_BATCHED_TOKENS: f64 = 2048.0;
/// SGLang's guidance: 1.3 when requests are retracted, down towards 0.3 when too conservative.
const SGLANG_RETRACTING_CONSERVATIVENESS: f64 = 1.3;
const SGLANG_MIN_CONSERVATIVENESS: f64 = 0.3;
/// SGLang's smallest suggested prefill chunk.
const SGLANG_MIN_CHUNK: f64 = 2048.0;

pub(crate) fn propose(ctx: &Ctx<'_>, b: &Bottleneck) -> Vec<Draft> {
    let mut out = Vec::new();
    match b.kind {
        BottleneckType::MemoryPressure => {
            if ctx.preempted() {
                shrink(ctx, &mut out);
            }
        }
        BottleneckType::QueueBuildup | BottleneckType::LowThroughput => {
            if !ctx.memory_bound() {
                grow(ctx, &mut out);
            }
            if b.kind == BottleneckType::QueueBuildup && b.severity == Severity::Critical {
                shed_load(ctx, &mut out);
            }
        }
        BottleneckType::HighLatency => match latency_cause(ctx, b) {
            Some(LatencyCause::Queueing) if !ctx.memory_bound() => grow(ctx, &mut out),
            Some(LatencyCause::Prefill) => bigger_prefill(ctx, &mut out),
            Some(LatencyCause::Decode) => protect_decodes(ctx, &mut out),
            _ => {}
        },
        BottleneckType::CacheInefficiency => {}
    }
    out
}

fn int(v: f64) -> Value {
    Value::from(v.round() as i64)
}

fn running_max(ctx: &Ctx<'_>) -> Option<f64> {
    ctx.analysis.summary.requests_running.map(|g| g.max)
}

/// Less concurrency, so the sequences admitted fit in the KV cache.
fn shrink(ctx: &Ctx<'_>, out: &mut Vec<Draft>) {
    let preempt_effect = || {
        effect(
            "preemptions",
            Direction::Decrease,
            "most of them",
            "fewer sequences compete for KV blocks, so running ones are not evicted and recomputed",
        )
    };
    let throughput_effect = || {
        effect(
            "throughput",
            Direction::Decrease,
            "up to 25% at full load",
            "a quarter fewer sequences run at once; more requests wait in the queue instead",
        )
    };
    match ctx.engine {
        Engine::Vllm => {
            let Some(seqs) = ctx.number("max_num_seqs") else {
                return;
            };
            let proposed = (seqs * SHRINK_FACTOR).floor().max(1.0);
            out.push(Draft {
                optimizer: Optimizer::Batching,
                knob: "max_num_seqs",
                proposed: int(proposed),
                title: format!(
                    "Admit fewer concurrent sequences: max_num_seqs {seqs} → {proposed}"
                ),
                impact: vec![preempt_effect(), throughput_effect()],
                risk: risk(
                    RiskLevel::Low,
                    "no accuracy or stability risk; the cost is peak throughput and queue time",
                ),
                prerequisites: Vec::new(),
            });
        }
        Engine::Sglang => {
            if let Some(cur) = ctx.number("schedule_conservativeness") {
                if cur < SGLANG_RETRACTING_CONSERVATIVENESS {
                    out.push(Draft {
                        optimizer: Optimizer::Batching,
                        knob: "schedule_conservativeness",
                        proposed: Value::from(SGLANG_RETRACTING_CONSERVATIVENESS),
                        title: format!(
                            "Schedule more conservatively: schedule_conservativeness {cur} → \
                             {SGLANG_RETRACTING_CONSERVATIVENESS}"
                        ),
                        impact: vec![preempt_effect(), throughput_effect()],
                        risk: risk(
                            RiskLevel::Low,
                            "admits fewer new requests while the pool is full: lower throughput \
                             and longer queues, no accuracy risk",
                        ),
                        prerequisites: Vec::new(),
                    });
                }
            }
            if let Some(cur) = ctx.configured_number("max_running_requests") {
                let proposed = (cur * SHRINK_FACTOR).floor().max(1.0);
                out.push(Draft {
                    optimizer: Optimizer::Batching,
                    knob: "max_running_requests",
                    proposed: int(proposed),
                    title: format!(
                        "Run fewer requests at once: max_running_requests {cur} → {proposed}"
                    ),
                    impact: vec![preempt_effect(), throughput_effect()],
                    risk: risk(
                        RiskLevel::Low,
                        "no accuracy or stability risk; the cost is peak throughput",
                    ),
                    prerequisites: Vec::new(),
                });
            }
        }
        // TGI does not preempt.
        Engine::Tgi => {}
    }
}

/// More concurrency or a bigger token budget, while the KV cache has room.
fn grow(ctx: &Ctx<'_>, out: &mut Vec<Draft>) {
    let queue_effect = |how: &str| {
        effect(
            "queue_time",
            Direction::Decrease,
            "most of it while memory has room",
            how,
        )
    };
    match ctx.engine {
        Engine::Vllm => {
            let seqs = ctx.number("max_num_seqs");
            let at_cap = match (seqs, running_max(ctx)) {
                (Some(s), Some(r)) => r >= AT_CAP_FRACTION * s,
                _ => false,
            };
            match seqs {
                Some(seqs) if at_cap => {
                    let proposed = seqs * 2.0;
                    out.push(Draft {
                        optimizer: Optimizer::Batching,
                        knob: "max_num_seqs",
                        proposed: int(proposed),
                        title: format!(
                            "Run more sequences at once: max_num_seqs {seqs} → {proposed}"
                        ),
                        impact: vec![
                            queue_effect(
                                "running requests sit at the max_num_seqs cap while others wait",
                            ),
                            effect(
                                "throughput",
                                Direction::Increase,
                                "up to 2× while the GPU is not compute-bound",
                                "decoding more sequences per step costs little more per step",
                            ),
                            effect(
                                "inter_token_latency",
                                Direction::Increase,
                                "modest",
                                "each decode step carries more sequences",
                            ),
                        ],
                        risk: risk(
                            RiskLevel::Medium,
                            "more sequences use more KV cache: watch for preemptions (this \
                             analysis would then report MEMORY_PRESSURE)",
                        ),
                        prerequisites: Vec::new(),
                    });
                }
                _ => raise_batched_tokens(ctx, out),
            }
        }
        Engine::Sglang => {
            let cap = ctx.configured_number("max_running_requests");
            if let (Some(cap), Some(r)) = (cap, running_max(ctx)) {
                if r >= AT_CAP_FRACTION * cap {
                    let proposed = cap * 2.0;
                    out.push(Draft {
                        optimizer: Optimizer::Batching,
                        knob: "max_running_requests",
                        proposed: int(proposed),
                        title: format!(
                            "Run more requests at once: max_running_requests {cap} → {proposed}"
                        ),
                        impact: vec![
                            queue_effect("running requests sit at the cap while others wait"),
                            effect(
                                "throughput",
                                Direction::Increase,
                                "up to 2× while the GPU is not compute-bound",
                                "larger decode batches",
                            ),
                        ],
                        risk: risk(
                            RiskLevel::Medium,
                            "more KV cache in use: retractions if the pool fills",
                        ),
                        prerequisites: Vec::new(),
                    });
                    return;
                }
            }
            let Some(cur) = ctx.number("schedule_conservativeness") else {
                return;
            };
            if cur <= SGLANG_MIN_CONSERVATIVENESS + 1e-9 {
                return;
            }
            let proposed = (cur * 0.5).max(SGLANG_MIN_CONSERVATIVENESS);
            out.push(Draft {
                optimizer: Optimizer::Batching,
                knob: "schedule_conservativeness",
                proposed: Value::from((proposed * 100.0).round() / 100.0),
                title: format!(
                    "Admit queued requests more readily: schedule_conservativeness {cur} → \
                     {proposed:.2}"
                ),
                impact: vec![
                    queue_effect(
                        "SGLang reserves KV room for each request's max_new_tokens; with the \
                         cache below its threshold and requests waiting, it is too conservative",
                    ),
                    effect(
                        "throughput",
                        Direction::Increase,
                        "proportional to the extra admitted requests",
                        "larger batches",
                    ),
                ],
                risk: risk(
                    RiskLevel::Medium,
                    "if outputs run as long as their max_new_tokens, the pool fills and requests \
                     are retracted (recomputed)",
                ),
                prerequisites: Vec::new(),
            });
        }
        Engine::Tgi => {
            // Only a pinned budget can be raised: unset, TGI already infers the largest that fits.
            let Some(cur) = ctx.configured_number("max_batch_total_tokens") else {
                return;
            };
            let proposed = (cur * 1.5).round();
            out.push(Draft {
                optimizer: Optimizer::Batching,
                knob: "max_batch_total_tokens",
                proposed: int(proposed),
                title: format!(
                    "Raise the batch token budget: max_batch_total_tokens {cur} → {proposed}"
                ),
                impact: vec![
                    queue_effect("the running batch is bounded by this token budget"),
                    effect(
                        "throughput",
                        Direction::Increase,
                        "up to 1.5×",
                        "50% more tokens in flight per batch",
                    ),
                ],
                risk: risk(
                    RiskLevel::Medium,
                    "above what the free memory holds, TGI fails at warmup (visible, safe) or \
                     runs out of memory under load",
                ),
                prerequisites: Vec::new(),
            });
        }
    }
}

/// vLLM: a bigger per-step token budget admits more prefill work (TTFT, queueing, throughput).
fn raise_batched_tokens(ctx: &Ctx<'_>, out: &mut Vec<Draft>) {
    let Some(cur) = ctx.number("max_num_batched_tokens") else {
        return;
    };
    let proposed = (cur * 2.0).max(VLLM_THROUGHPUT_BATCHED_TOKENS);
    out.push(Draft {
        optimizer: Optimizer::Batching,
        knob: "max_num_batched_tokens",
        proposed: int(proposed),
        title: format!("Schedule more tokens per step: max_num_batched_tokens {cur} → {proposed}"),
        impact: vec![
            effect(
                "ttft_and_queue_time",
                Direction::Decrease,
                "large for long prompts",
                "more prompt tokens are prefilled per step, so waiting requests start sooner",
            ),
            effect(
                "throughput",
                Direction::Increase,
                "workload-dependent",
                "vLLM recommends more than 8192 for throughput",
            ),
            effect(
                "inter_token_latency",
                Direction::Increase,
                "modest",
                "bigger prefill chunks share steps with decodes",
            ),
        ],
        risk: risk(
            RiskLevel::Medium,
            "more activation memory per step, and decodes slow down while long prompts prefill",
        ),
        prerequisites: Vec::new(),
    });
}

/// Prefill-bound TTFT: bigger prefill chunks.
fn bigger_prefill(ctx: &Ctx<'_>, out: &mut Vec<Draft>) {
    match ctx.engine {
        Engine::Vllm => raise_batched_tokens(ctx, out),
        Engine::Sglang => {
            let Some(cur) = ctx
                .configured_number("chunked_prefill_size")
                .filter(|c| *c > 0.0)
            else {
                return;
            };
            let proposed = cur * 2.0;
            out.push(Draft {
                optimizer: Optimizer::Batching,
                knob: "chunked_prefill_size",
                proposed: int(proposed),
                title: format!("Prefill in bigger chunks: chunked_prefill_size {cur} → {proposed}"),
                impact: vec![
                    effect(
                        "ttft_p95",
                        Direction::Decrease,
                        "large for prompts longer than the chunk",
                        "long prompts need half as many prefill steps",
                    ),
                    effect(
                        "inter_token_latency",
                        Direction::Increase,
                        "modest",
                        "bigger chunks delay the decodes that share their step",
                    ),
                ],
                risk: risk(
                    RiskLevel::Medium,
                    "more activation memory: out-of-memory errors during long prefills",
                ),
                prerequisites: Vec::new(),
            });
        }
        // TGI exports no TTFT quantile, so a prefill-bound TTFT is never diagnosed on it.
        Engine::Tgi => {}
    }
}

/// Inter-token latency: keep prefills from stalling decodes.
fn protect_decodes(ctx: &Ctx<'_>, out: &mut Vec<Draft>) {
    let itl_effect = |why: &str| {
        effect(
            "inter_token_latency",
            Direction::Decrease,
            "most of the prefill-induced stalls",
            why,
        )
    };
    let ttft_effect = || {
        effect(
            "ttft_p95",
            Direction::Increase,
            "for long prompts",
            "prompts are prefilled in smaller pieces or join the batch later",
        )
    };
    match ctx.engine {
        Engine::Vllm => {
            if ctx.configured_bool("enable_chunked_prefill") == Some(false) {
                out.push(Draft {
                    optimizer: Optimizer::Batching,
                    knob: "enable_chunked_prefill",
                    proposed: Value::from(true),
                    title: "Chunk long prefills: enable_chunked_prefill → true".to_string(),
                    impact: vec![
                        itl_effect("long prompts no longer take whole steps away from decodes"),
                        ttft_effect(),
                    ],
                    risk: risk(
                        RiskLevel::Low,
                        "no accuracy risk; TTFT of long prompts rises",
                    ),
                    prerequisites: Vec::new(),
                });
            }
            let Some(cur) = ctx.number("max_num_batched_tokens") else {
                return;
            };
            if cur <= VLLM_ITL_BATCHED_TOKENS {
                return;
            }
            out.push(Draft {
                optimizer: Optimizer::Batching,
                knob: "max_num_batched_tokens",
                proposed: int(VLLM_ITL_BATCHED_TOKENS),
                title: format!(
                    "Smaller prefill chunks per step: max_num_batched_tokens {cur} → \
                     {VLLM_ITL_BATCHED_TOKENS}"
                ),
                impact: vec![
                    itl_effect("vLLM's guidance: about 2048 gives better inter-token latency"),
                    ttft_effect(),
                ],
                risk: risk(
                    RiskLevel::Low,
                    "no accuracy or memory risk; TTFT and throughput may drop for long prompts",
                ),
                prerequisites: Vec::new(),
            });
        }
        Engine::Sglang => {
            let Some(cur) = ctx.configured_number("chunked_prefill_size") else {
                return;
            };
            // -1 disables chunked prefill; SGLang's guide suggests 4096 or 2048.
            let proposed = if cur < 0.0 {
                4096.0
            } else if cur > SGLANG_MIN_CHUNK {
                (cur / 2.0).max(SGLANG_MIN_CHUNK)
            } else {
                return;
            };
            out.push(Draft {
                optimizer: Optimizer::Batching,
                knob: "chunked_prefill_size",
                proposed: int(proposed),
                title: format!(
                    "Prefill in smaller chunks: chunked_prefill_size {cur} → {proposed}"
                ),
                impact: vec![
                    itl_effect("smaller prefill chunks share each step with the decodes"),
                    ttft_effect(),
                ],
                risk: risk(
                    RiskLevel::Low,
                    "no accuracy risk; saves memory; prefill of long prompts is slower",
                ),
                prerequisites: Vec::new(),
            });
        }
        Engine::Tgi => {
            let Some(cur) = ctx.number("max_waiting_tokens") else {
                return;
            };
            let proposed = (cur * 2.0).max(1.0);
            out.push(Draft {
                optimizer: Optimizer::Batching,
                knob: "max_waiting_tokens",
                proposed: int(proposed),
                title: format!(
                    "Interrupt decoding for new prefills less often: max_waiting_tokens {cur} → \
                     {proposed}"
                ),
                impact: vec![
                    itl_effect(
                        "TGI pauses the running batch for every prefill; a larger value batches \
                         more waiting requests per pause",
                    ),
                    effect(
                        "queue_time",
                        Direction::Increase,
                        "up to the added decode steps",
                        "waiting requests join the batch later",
                    ),
                ],
                risk: risk(
                    RiskLevel::Low,
                    "no accuracy or memory risk; queue time rises on a busy server",
                ),
                prerequisites: Vec::new(),
            });
        }
    }
}

/// TGI: bound the queue by refusing requests beyond what the batch runs plus a short queue.
fn shed_load(ctx: &Ctx<'_>, out: &mut Vec<Draft>) {
    if ctx.engine != Engine::Tgi {
        return;
    }
    let (Some(cur), Some(running)) = (
        ctx.number("max_concurrent_requests"),
        ctx.analysis.summary.requests_running.map(|g| g.mean),
    ) else {
        return;
    };
    let proposed = (running.ceil() + ctx.analysis.thresholds.queue_depth_requests).ceil();
    if proposed >= cur {
        return;
    }
    out.push(Draft {
        optimizer: Optimizer::Batching,
        knob: "max_concurrent_requests",
        proposed: int(proposed),
        title: format!(
            "Bound the queue: max_concurrent_requests {cur} → {proposed} (mean running {running:.0} \
             + queue threshold)"
        ),
        impact: vec![
            effect(
                "queue_time",
                Direction::Decrease,
                "bounded near the queue threshold",
                "TGI refuses requests above the limit instead of letting them wait",
            ),
            effect(
                "error_ratio",
                Direction::Increase,
                "the excess load",
                "refused requests get HTTP 429 and must be retried or sent elsewhere",
            ),
        ],
        risk: risk(
            RiskLevel::High,
            "clients see 429 errors under load; only right when another replica can take them \
             or failing fast beats waiting",
        ),
        prerequisites: Vec::new(),
    });
}
