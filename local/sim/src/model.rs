//! The queueing model of one engine core: Poisson arrivals, an FCFS waiting queue, a continuous
//! batch bounded by `max_num_seqs` and by the KV-cache pool, chunked (or not) prefill sharing a
//! per-iteration token budget with decode, preemption when the pool runs out, and prefix-cache
//! hits. It advances in fixed steps of simulated time and records what a real server would count.
//!
//! Equations in plain words are in docs/simulator.md; the numbers that shape them are the
//! `const`s below.

use crate::config::{EngineConfig, Generation, Hardware, KvCacheDtype, Quantization, Workload};
use crate::hist::Histogram;
use crate::rng::{lognormal_mean, poisson, uniform};
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::VecDeque;

/// Length of one model step, in simulated seconds.
pub const STEP_SECONDS: f64 = 0.1;
/// Memory the runtime keeps outside weights and KV (CUDA context, graphs, sampler), per GPU.
const RUNTIME_OVERHEAD_GB: f64 = 1.5;
/// Activation memory per token of the per-iteration budget (`max_num_batched_tokens`).
const ACTIVATION_GB_PER_BATCHED_TOKEN: f64 = 0.000_25;
/// CUDA-graph and sampler memory per running-sequence slot (`max_num_seqs`).
const GRAPH_GB_PER_SEQ_SLOT: f64 = 0.004;
/// GPU memory bandwidth, bytes per millisecond (≈3 TB/s, an H100): decode is bound by it.
const HBM_BYTES_PER_MS: f64 = 3.0e9;
/// Fixed cost of one engine iteration (scheduling, kernel launches), ms.
const ITERATION_OVERHEAD_MS: f64 = 1.5;
/// Extra cost per tensor-parallel rank of the all-reduces in one iteration, ms.
const TP_COMM_MS_PER_RANK: f64 = 0.5;
/// Per running sequence per iteration (sampling, bookkeeping), ms.
const PER_SEQ_MS: f64 = 0.02;
/// Prefill compute per token per billion parameters, ms (≈20k tokens/s for an 8B model on one GPU).
const PREFILL_MS_PER_TOKEN_PER_B: f64 = 0.006;
/// How much slower every iteration runs with the `harmful` switch on.
const HARMFUL_SLOWDOWN: f64 = 1.8;
/// Fraction of KV blocks the scheduler keeps free when admitting (vLLM's watermark).
const ADMISSION_WATERMARK: f64 = 0.01;
/// Waiting requests beyond this are refused, whatever the engine (keeps memory bounded).
const HARD_QUEUE_CAP: usize = 50_000;
/// Log-normal shapes of prompt and output lengths.
const PROMPT_SIGMA: f64 = 0.7;
const OUTPUT_SIGMA: f64 = 0.8;
/// Share of requests that stop at `max_tokens` (finished_reason="length").
const LENGTH_STOP_SHARE: f64 = 0.12;
/// Multiplicative noise on per-request latencies (log-normal sigma).
const LATENCY_JITTER_SIGMA: f64 = 0.08;
/// Time constant of the "recent" averages shown by the admin API, seconds.
const RECENT_WINDOW_S: f64 = 30.0;

/// Per-request and per-iteration quantities the servers put in histograms. Which of them an
/// instance exposes, and with which buckets, depends on its generation (see `render`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Obs {
    Ttft,
    /// Per-token interval (vLLM ITL / TPOT per iteration, SGLang ITL).
    Itl,
    /// Per-request decode time / (generated - 1).
    RequestTpot,
    E2e,
    Queue,
    Inference,
    Prefill,
    Decode,
    PromptTokens,
    GenerationTokens,
    MaxTokens,
    ParamsN,
    /// Tokens scheduled in one engine iteration.
    IterationTokens,
    /// Preemptions (retractions) suffered by a finished request.
    RequestPreemptions,
    /// TGI: request validation time.
    Validation,
    /// TGI: inference time / generated tokens, per request.
    MeanTimePerToken,
    /// TGI: size of each batch.
    BatchSize,
    /// TGI: iteration time, prefill and decode iterations.
    BatchPrefill,
    BatchDecode,
    /// SGLang 0.4: `func_latency_seconds{name="generate_request"}` (request pre-processing).
    FuncLatency,
}

impl Obs {
    pub const COUNT: usize = 20;

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Monotonic counters of one engine core.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub requests_received: u64,
    pub finished_stop: u64,
    pub finished_length: u64,
    pub finished_abort: u64,
    pub failed_validation: u64,
    pub failed_overloaded: u64,
    pub prompt_tokens: u64,
    pub generation_tokens: u64,
    pub preemptions: u64,
    pub retracted_input_tokens: u64,
    pub retracted_output_tokens: u64,
    pub prefix_queries: u64,
    pub prefix_hits: u64,
    pub prefill_iterations: u64,
    pub decode_iterations: u64,
    pub busy_seconds: f64,
}

impl Counters {
    pub fn finished(&self) -> u64 {
        self.finished_stop + self.finished_length + self.finished_abort
    }
}

/// Gauges as of the end of the last step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gauges {
    pub running: u64,
    pub waiting: u64,
    /// Fraction of KV blocks in use.
    pub kv_usage: f64,
    pub kv_used_tokens: u64,
    /// Generated tokens per second over the last step.
    pub gen_throughput: f64,
    pub prompt_throughput: f64,
    /// Prefix-cache hit rate of the requests admitted in the last step (SGLang's gauge).
    pub cache_hit_rate: f64,
    /// Requests preempted in the last step (SGLang's `num_retracted_reqs`).
    pub retracted: u64,
    /// Running batch's token budget in use (TGI's `batch_current_max_tokens`).
    pub batch_tokens: u64,
}

/// Everything one engine core exposes.
#[derive(Debug, Clone)]
pub struct Stats {
    pub counters: Counters,
    pub gauges: Gauges,
    hists: Vec<Option<Histogram>>,
}

impl Stats {
    /// `bounds(obs)` gives the buckets of each histogram the generation exposes.
    pub fn new(bounds: impl Fn(Obs) -> Option<Vec<f64>>) -> Stats {
        let hists = ALL_OBS
            .iter()
            .map(|o| bounds(*o).map(Histogram::new))
            .collect();
        Stats {
            counters: Counters::default(),
            gauges: Gauges::default(),
            hists,
        }
    }

    pub fn hist(&self, obs: Obs) -> Option<&Histogram> {
        self.hists.get(obs.index()).and_then(Option::as_ref)
    }

    fn observe(&mut self, obs: Obs, value: f64, weight: u64) {
        if let Some(Some(h)) = self.hists.get_mut(obs.index()) {
            h.observe(value, weight);
        }
    }
}

pub const ALL_OBS: [Obs; Obs::COUNT] = [
    Obs::Ttft,
    Obs::Itl,
    Obs::RequestTpot,
    Obs::E2e,
    Obs::Queue,
    Obs::Inference,
    Obs::Prefill,
    Obs::Decode,
    Obs::PromptTokens,
    Obs::GenerationTokens,
    Obs::MaxTokens,
    Obs::ParamsN,
    Obs::IterationTokens,
    Obs::RequestPreemptions,
    Obs::Validation,
    Obs::MeanTimePerToken,
    Obs::BatchSize,
    Obs::BatchPrefill,
    Obs::BatchDecode,
    Obs::FuncLatency,
];

/// Exponentially decayed sums over the last ~30 s, for the admin API's live state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recent {
    pub ttft: (f64, f64),
    pub itl: (f64, f64),
    pub e2e: (f64, f64),
    pub queue: (f64, f64),
}

impl Recent {
    fn decay(&mut self, factor: f64) {
        for (s, n) in [
            &mut self.ttft,
            &mut self.itl,
            &mut self.e2e,
            &mut self.queue,
        ] {
            *s *= factor;
            *n *= factor;
        }
    }

    pub fn mean(pair: (f64, f64)) -> Option<f64> {
        (pair.1 > 1e-9).then(|| pair.0 / pair.1)
    }
}

/// What the config and hardware imply for the model: pool size and iteration costs.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub num_gpu_blocks: u64,
    pub block_size: u32,
    /// Seconds of one iteration that do not depend on the batch.
    pub iter_base_s: f64,
    /// Seconds per running sequence per iteration.
    pub per_seq_s: f64,
    /// Seconds per token of context per iteration (reading the KV cache).
    pub per_ctx_token_s: f64,
    /// Seconds per prefill token.
    pub per_prefill_token_s: f64,
    /// Why the server would refuse to start with this config, if it would.
    pub startup_error: Option<String>,
}

impl Derived {
    pub fn new(cfg: &EngineConfig, hw: &Hardware, generation: Generation) -> Derived {
        let tp = f64::from(hw.tensor_parallel_size.max(1));
        let bytes_per_param = match cfg.quantization {
            Quantization::None => 2.0,
            Quantization::Fp8 | Quantization::Int8 => 1.0,
            Quantization::Awq => 0.55,
        };
        let weights_gb = hw.params_b * bytes_per_param / tp;
        let overhead_gb = RUNTIME_OVERHEAD_GB
            + f64::from(cfg.max_num_batched_tokens) * ACTIVATION_GB_PER_BATCHED_TOKEN
            + f64::from(cfg.max_num_seqs) * GRAPH_GB_PER_SEQ_SLOT;
        let pool_gb = hw.gpu_memory_gb * cfg.gpu_memory_utilization - weights_gb - overhead_gb;
        let kv_dtype_factor = if cfg.kv_cache_dtype.is_fp8() {
            0.5
        } else {
            1.0
        };
        let kv_bytes_per_token = hw.kv_kib_per_token * 1024.0 * kv_dtype_factor;
        let kv_tokens = (pool_gb.max(0.0) * 1e9 * tp / kv_bytes_per_token).floor();
        let block_size = cfg.block_size.max(1);
        let num_gpu_blocks = (kv_tokens / f64::from(block_size)).floor() as u64;

        let startup_error = if pool_gb <= 0.0 {
            Some(format!(
                "No available memory for the cache blocks: {:.1} GB of {:.1} GB go to weights and \
                 runtime; raise gpu_memory_utilization or quantize",
                weights_gb + overhead_gb,
                hw.gpu_memory_gb * cfg.gpu_memory_utilization
            ))
        } else if num_gpu_blocks * u64::from(block_size) < u64::from(cfg.max_model_len) {
            Some(format!(
                "The model's max seq len ({}) is larger than the maximum number of tokens that \
                 can be stored in KV cache ({})",
                cfg.max_model_len,
                num_gpu_blocks * u64::from(block_size)
            ))
        } else if !cfg.enable_chunked_prefill
            && cfg.max_num_batched_tokens < cfg.max_model_len
            && generation.engine() == crate::config::EngineKind::Vllm
        {
            Some(format!(
                "max_num_batched_tokens ({}) is smaller than max_model_len ({}) with chunked \
                 prefill disabled",
                cfg.max_num_batched_tokens, cfg.max_model_len
            ))
        } else {
            None
        };

        // Decode reads all weights once per iteration; AWQ pays for dequantizing them.
        let awq_dequant = if cfg.quantization == Quantization::Awq {
            1.25
        } else {
            1.0
        };
        let weights_bytes_per_gpu = weights_gb * 1e9;
        let slow = if cfg.harmful { HARMFUL_SLOWDOWN } else { 1.0 };
        let iter_base_ms = ITERATION_OVERHEAD_MS
            + weights_bytes_per_gpu / HBM_BYTES_PER_MS * awq_dequant
            + TP_COMM_MS_PER_RANK * (tp - 1.0);
        let per_ctx_token_ms = kv_bytes_per_token / tp / HBM_BYTES_PER_MS;
        let prefill_factor = match cfg.quantization {
            Quantization::None => 1.0,
            Quantization::Fp8 => 0.6,
            Quantization::Int8 => 0.75,
            Quantization::Awq => 1.1,
        };
        let per_prefill_token_ms = PREFILL_MS_PER_TOKEN_PER_B * hw.params_b / tp * prefill_factor;
        Derived {
            num_gpu_blocks,
            block_size,
            iter_base_s: iter_base_ms * slow / 1000.0,
            per_seq_s: PER_SEQ_MS * slow / 1000.0,
            per_ctx_token_s: per_ctx_token_ms * slow / 1000.0,
            per_prefill_token_s: per_prefill_token_ms * slow / 1000.0,
            startup_error,
        }
    }

    /// Seconds of one iteration running `seqs` decodes over `ctx_tokens` of context plus
    /// `prefill_tokens` of prefill.
    pub fn iteration_s(&self, seqs: f64, ctx_tokens: f64, prefill_tokens: f64) -> f64 {
        self.iter_base_s
            + self.per_seq_s * seqs
            + self.per_ctx_token_s * ctx_tokens
            + self.per_prefill_token_s * prefill_tokens
    }

    pub fn kv_capacity_tokens(&self) -> u64 {
        self.num_gpu_blocks * u64::from(self.block_size)
    }
}

/// The quality cost of a quantization, for the admin view (the model does not degrade outputs).
pub fn quality_risk(q: Quantization, kv: KvCacheDtype) -> f64 {
    let w = match q {
        Quantization::None => 0.0,
        Quantization::Fp8 => 0.01,
        Quantization::Int8 => 0.02,
        Quantization::Awq => 0.03,
    };
    w + if kv.is_fp8() { 0.005 } else { 0.0 }
}

#[derive(Debug, Clone)]
struct Request {
    arrival: f64,
    admitted: Option<f64>,
    first_token: Option<f64>,
    prompt: u32,
    output: u32,
    max_tokens: u32,
    hits: u32,
    prefill_left: f64,
    /// Offset within the current step before which the request cannot be worked on.
    ready_at: f64,
    generated: f64,
    preemptions: u32,
    validation_s: f64,
}

impl Request {
    fn context(&self) -> u64 {
        u64::from(self.prompt) + self.generated.floor() as u64
    }

    fn blocks(&self, block_size: u32) -> u64 {
        (self.context() + 1).div_ceil(u64::from(block_size.max(1)))
    }
}

/// Workload knobs changed by scenarios, on top of the instance's own workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pressure {
    pub rate_factor: f64,
    pub prompt_factor: f64,
}

impl Default for Pressure {
    fn default() -> Self {
        Self {
            rate_factor: 1.0,
            prompt_factor: 1.0,
        }
    }
}

/// One engine core: its queue, its running batch, its counters.
#[derive(Debug, Clone)]
pub struct EngineCore {
    waiting: VecDeque<Request>,
    running: Vec<Request>,
    pub stats: Stats,
    pub recent: Recent,
    rng: StdRng,
    /// Simulated seconds since this core started.
    pub now: f64,
    prefill_iter_carry: f64,
    decode_iter_carry: f64,
    /// SGLang's radix cache and TGI's prefix cache are token-granular; vLLM caches full blocks.
    cache_granularity: u32,
}

impl EngineCore {
    pub fn new(stats: Stats, rng: StdRng, cache_granularity: u32) -> EngineCore {
        EngineCore {
            waiting: VecDeque::new(),
            running: Vec::new(),
            stats,
            recent: Recent::default(),
            rng,
            now: 0.0,
            prefill_iter_carry: 0.0,
            decode_iter_carry: 0.0,
            cache_granularity: cache_granularity.max(1),
        }
    }

    fn sample_request(&mut self, t0: f64, h: f64, wl: &Workload, p: Pressure) -> Request {
        let arrival = t0 + uniform(&mut self.rng, 0.0, h);
        let prompt = lognormal_mean(
            &mut self.rng,
            wl.prompt_tokens_mean * p.prompt_factor,
            PROMPT_SIGMA,
        )
        .round()
        .max(4.0);
        let output = lognormal_mean(&mut self.rng, wl.output_tokens_mean, OUTPUT_SIGMA)
            .round()
            .max(1.0);
        let (output, max_tokens) = if self.rng.random::<f64>() < LENGTH_STOP_SHARE {
            (output, output)
        } else {
            let headroom = uniform(&mut self.rng, 1.2, 4.0);
            (output, (output * headroom).round())
        };
        let validation_s = lognormal_mean(&mut self.rng, 0.0008, 0.5);
        Request {
            arrival,
            admitted: None,
            first_token: None,
            prompt: clamp_u32(prompt),
            output: clamp_u32(output),
            max_tokens: clamp_u32(max_tokens),
            hits: 0,
            prefill_left: 0.0,
            ready_at: 0.0,
            generated: 0.0,
            preemptions: 0,
            validation_s,
        }
    }

    fn jitter(&mut self) -> f64 {
        lognormal_mean(&mut self.rng, 1.0, LATENCY_JITTER_SIGMA)
    }

    /// Advances the core by one step of `h` simulated seconds at arrival rate `rate` (req/s).
    pub fn step(
        &mut self,
        h: f64,
        rate: f64,
        wl: &Workload,
        pressure: Pressure,
        cfg: &EngineConfig,
        d: &Derived,
    ) {
        let t0 = self.now;
        let t1 = t0 + h;
        self.arrive(t0, h, rate, wl, pressure, cfg);
        self.abandon(t0, wl);
        let hits_before = (
            self.stats.counters.prefix_queries,
            self.stats.counters.prefix_hits,
        );
        self.admit(t0, cfg, d, wl);
        let tokens_before = (
            self.stats.counters.generation_tokens,
            self.stats.counters.prompt_tokens,
        );
        self.work(t0, h, cfg, d);
        let preempted = self.preempt_if_full(d);

        let c = &self.stats.counters;
        let q = c.prefix_queries - hits_before.0;
        let hit = c.prefix_hits - hits_before.1;
        let gen = c.generation_tokens - tokens_before.0;
        let prompt = c.prompt_tokens - tokens_before.1;
        let used_tokens: u64 = self.running.iter().map(Request::context).sum();
        let used_blocks: u64 = self.running.iter().map(|r| r.blocks(d.block_size)).sum();
        let g = &mut self.stats.gauges;
        g.running = self.running.len() as u64;
        g.waiting = self.waiting.len() as u64;
        g.kv_usage = if d.num_gpu_blocks > 0 {
            (used_blocks as f64 / d.num_gpu_blocks as f64).min(1.0)
        } else {
            0.0
        };
        g.kv_used_tokens = used_tokens;
        g.gen_throughput = gen as f64 / h;
        g.prompt_throughput = prompt as f64 / h;
        if q > 0 {
            g.cache_hit_rate = hit as f64 / q as f64;
        }
        g.retracted = preempted;
        g.batch_tokens = used_tokens;
        self.recent.decay((-h / RECENT_WINDOW_S).exp());
        self.now = t1;
    }

    fn arrive(
        &mut self,
        t0: f64,
        h: f64,
        rate: f64,
        wl: &Workload,
        p: Pressure,
        cfg: &EngineConfig,
    ) {
        let n = poisson(&mut self.rng, rate * h);
        let mut fresh: Vec<Request> = (0..n).map(|_| self.sample_request(t0, h, wl, p)).collect();
        fresh.sort_by(|a, b| a.arrival.total_cmp(&b.arrival));
        for mut r in fresh {
            self.stats.counters.requests_received += 1;
            if r.prompt >= cfg.max_model_len {
                // Servers answer 400 before queueing: too long for the context window.
                self.stats.counters.failed_validation += 1;
                continue;
            }
            let in_system = self.running.len() + self.waiting.len();
            let over_limit = cfg
                .max_concurrent_requests
                .is_some_and(|limit| in_system >= limit as usize);
            if over_limit || self.waiting.len() >= HARD_QUEUE_CAP {
                self.stats.counters.failed_overloaded += 1;
                continue;
            }
            // The context window caps the output: such requests stop on "length".
            let room = cfg.max_model_len - r.prompt;
            if r.max_tokens > room {
                r.max_tokens = room;
            }
            r.output = r.output.min(r.max_tokens).max(1);
            self.waiting.push_back(r);
        }
    }

    /// Clients give up on requests that waited too long.
    fn abandon(&mut self, t0: f64, wl: &Workload) {
        while let Some(front) = self.waiting.front() {
            if front.admitted.is_some() || t0 - front.arrival <= wl.client_timeout_s {
                break;
            }
            self.waiting.pop_front();
            self.stats.counters.finished_abort += 1;
        }
    }

    fn admit(&mut self, t0: f64, cfg: &EngineConfig, d: &Derived, wl: &Workload) {
        let mut used: u64 = self.running.iter().map(|r| r.blocks(d.block_size)).sum();
        let watermark = (d.num_gpu_blocks as f64 * ADMISSION_WATERMARK) as u64;
        let usage = if d.num_gpu_blocks > 0 {
            used as f64 / d.num_gpu_blocks as f64
        } else {
            1.0
        };
        while self.running.len() < cfg.max_num_seqs as usize {
            let Some(front) = self.waiting.front() else {
                break;
            };
            let need = front.blocks(d.block_size);
            if need > d.num_gpu_blocks {
                // Can never fit: the server aborts it.
                self.waiting.pop_front();
                self.stats.counters.finished_abort += 1;
                continue;
            }
            if used + need + watermark > d.num_gpu_blocks && !self.running.is_empty() {
                break;
            }
            let Some(mut r) = self.waiting.pop_front() else {
                break;
            };
            let sched_delay = lognormal_mean(&mut self.rng, 0.002, 0.5);
            let start = r.arrival.max(t0) + sched_delay;
            r.ready_at = start - t0;
            if r.admitted.is_none() {
                r.admitted = Some(start);
                let hits = if cfg.enable_prefix_caching {
                    // Eviction under memory pressure loses part of the shared prefix.
                    let pressure = ((usage - 0.85) / 0.15).clamp(0.0, 1.0);
                    let p_hit = 0.95 * (1.0 - 0.6 * pressure);
                    let shared = f64::from(r.prompt) * wl.prefix_share * p_hit;
                    let g = f64::from(self.cache_granularity);
                    ((shared / g).floor() * g) as u32
                } else {
                    0
                };
                // At least one token is always computed, to produce the first output.
                r.hits = hits.min(r.prompt.saturating_sub(1));
                r.prefill_left = f64::from(r.prompt - r.hits);
                let c = &mut self.stats.counters;
                c.prompt_tokens += u64::from(r.prompt);
                c.prefix_queries += u64::from(r.prompt);
                c.prefix_hits += u64::from(r.hits);
                let queue = start - r.arrival;
                self.stats.observe(Obs::Queue, queue, 1);
                self.recent.queue.0 += queue;
                self.recent.queue.1 += 1.0;
            } else {
                // Recompute after preemption: prompt and generated tokens again, minus what
                // the prefix cache still holds.
                r.prefill_left = (r.context() as f64 - f64::from(r.hits)).max(1.0);
            }
            used += need;
            self.running.push(r);
        }
    }

    /// Prefill and decode progress over one step, then the bookkeeping of finished requests.
    fn work(&mut self, t0: f64, h: f64, cfg: &EngineConfig, d: &Derived) {
        let decoding = |r: &Request| r.prefill_left <= 0.0;
        let b0 = self.running.iter().filter(|r| decoding(r)).count() as f64;
        let ctx0: f64 = self
            .running
            .iter()
            .filter(|r| decoding(r))
            .map(|r| r.context() as f64)
            .sum();
        let pending: f64 = self
            .running
            .iter()
            .filter(|r| !decoding(r))
            .map(|r| r.prefill_left)
            .sum();
        let budget = f64::from(cfg.max_num_batched_tokens);
        let chunked = cfg.enable_chunked_prefill;

        // Prefill tokens per iteration: with chunked prefill they share the budget with decode
        // tokens; without it whole prompts run in prefill-only iterations.
        let chunk = if chunked {
            (budget - b0).max(0.0).min(pending)
        } else {
            let head = self
                .running
                .iter()
                .find(|r| !decoding(r))
                .map_or(0.0, |r| r.prefill_left);
            budget.max(head).min(pending)
        };
        let (mixed_iter_s, prefill_rate) = if chunk > 0.0 {
            let s = if chunked {
                d.iteration_s(b0, ctx0, chunk)
            } else {
                d.iteration_s(0.0, 0.0, chunk)
            };
            (s, chunk / s)
        } else {
            (d.iteration_s(b0, ctx0, 0.0), 0.0)
        };

        // FCFS fluid prefill: each prefilling request is served in turn at `prefill_rate`,
        // not before it is ready. Its first token comes with the end of its last chunk.
        let mut cursor = 0.0_f64;
        let mut prefill_done = 0.0;
        let mut newly_decoding = Vec::new();
        for (i, r) in self.running.iter_mut().enumerate() {
            if r.prefill_left <= 0.0 || prefill_rate <= 0.0 {
                continue;
            }
            let start = cursor.max(r.ready_at);
            if start >= h {
                break;
            }
            let need_s = r.prefill_left / prefill_rate;
            if start + need_s <= h {
                cursor = start + need_s;
                prefill_done += r.prefill_left;
                r.prefill_left = 0.0;
                // The iteration that finishes the prompt also samples the first token.
                let first = cursor.min(h);
                newly_decoding.push((i, first));
            } else {
                let done = (h - start) * prefill_rate;
                r.prefill_left -= done;
                prefill_done += done;
                cursor = h;
            }
        }
        let busy = cursor.min(h);
        let b1 = b0 + newly_decoding.len() as f64;
        let ctx1 = ctx0
            + newly_decoding
                .iter()
                .filter_map(|(i, _)| self.running.get(*i))
                .map(|r| r.context() as f64)
                .sum::<f64>();
        let decode_iter_s = d.iteration_s(b1, ctx1, 0.0);
        // Decoders advance one token per iteration; without chunked prefill they stall while
        // prompts run.
        let busy_token_rate = if chunked { 1.0 / mixed_iter_s } else { 0.0 };
        let idle_token_rate = 1.0 / decode_iter_s;

        // Iteration counts (for per-iteration histograms and TGI's batch counters).
        let mixed_iters = busy / mixed_iter_s + self.prefill_iter_carry;
        let decode_iters = if b1 > 0.0 {
            (h - busy) / decode_iter_s + self.decode_iter_carry
        } else {
            self.decode_iter_carry
        };
        let whole_mixed = mixed_iters.floor();
        let whole_decode = decode_iters.floor();
        self.prefill_iter_carry = mixed_iters - whole_mixed;
        self.decode_iter_carry = decode_iters - whole_decode;
        let (nm, nd) = (whole_mixed as u64, whole_decode as u64);
        self.stats.counters.prefill_iterations += nm;
        self.stats.counters.decode_iterations += nd;
        self.stats.counters.busy_seconds += if b1 > 0.0 { h } else { busy };
        // Whole tokens per iteration, as the engine schedules them.
        let mixed_tokens = if nm > 0 {
            (prefill_done / nm as f64).round() + if chunked { b0 } else { 0.0 }
        } else {
            0.0
        };
        self.stats.observe(Obs::IterationTokens, mixed_tokens, nm);
        self.stats.observe(Obs::IterationTokens, b1, nd);
        self.stats.observe(Obs::BatchPrefill, mixed_iter_s, nm);
        self.stats.observe(Obs::BatchDecode, decode_iter_s, nd);
        self.stats
            .observe(Obs::BatchSize, if chunked { b0 + 1.0 } else { 1.0 }, nm);
        self.stats.observe(Obs::BatchSize, b1, nd);

        // First tokens.
        for (i, first_off) in &newly_decoding {
            if let Some(r) = self.running.get_mut(*i) {
                if r.first_token.is_none() {
                    r.first_token = Some(t0 + first_off);
                    r.generated = 1.0;
                    self.stats.counters.generation_tokens += 1;
                } else {
                    // Resumed after preemption: decoding continues where it was.
                    r.ready_at = *first_off;
                }
                r.ready_at = *first_off;
            }
        }

        // Decode progress and finishing.
        let mut finished: Vec<(Request, f64)> = Vec::new();
        let mut itl_obs: Vec<(f64, u64)> = Vec::new();
        let mut kept = Vec::with_capacity(self.running.len());
        for mut r in std::mem::take(&mut self.running) {
            if r.prefill_left > 0.0 || r.first_token.is_none() {
                kept.push(r);
                continue;
            }
            let from = r.ready_at.clamp(0.0, h);
            // Token-time over [from, busy) at the busy rate and [max(from, busy), h) idle.
            let seg1 = (busy - from).max(0.0);
            let seg2 = h - from.max(busy);
            let gain = seg1 * busy_token_rate + seg2 * idle_token_rate;
            let need = f64::from(r.output) - r.generated;
            let before = r.generated.floor();
            if gain >= need {
                let t_done = if seg1 * busy_token_rate >= need && busy_token_rate > 0.0 {
                    from + need / busy_token_rate
                } else {
                    from.max(busy) + (need - seg1 * busy_token_rate) / idle_token_rate
                };
                r.generated = f64::from(r.output);
                let emitted = (r.generated.floor() - before).max(0.0) as u64;
                self.stats.counters.generation_tokens += emitted;
                if emitted > 0 {
                    itl_obs.push(((t_done - from) / emitted as f64, emitted));
                }
                finished.push((r, t0 + t_done));
            } else {
                r.generated += gain;
                let emitted = (r.generated.floor() - before).max(0.0) as u64;
                self.stats.counters.generation_tokens += emitted;
                if emitted > 0 {
                    itl_obs.push(((h - from) / emitted as f64, emitted));
                }
                r.ready_at = 0.0;
                kept.push(r);
            }
        }
        for r in &mut kept {
            if r.prefill_left > 0.0 {
                r.ready_at = 0.0;
            }
        }
        self.running = kept;
        for (value, n) in itl_obs {
            let v = value * self.jitter();
            self.stats.observe(Obs::Itl, v, n);
            self.recent.itl.0 += v * n as f64;
            self.recent.itl.1 += n as f64;
        }
        for (r, done) in finished {
            self.finish(r, done);
        }
    }

    fn finish(&mut self, r: Request, done: f64) {
        let admitted = r.admitted.unwrap_or(r.arrival);
        let first = r.first_token.unwrap_or(done);
        let ttft = first - r.arrival;
        let e2e = done - r.arrival;
        let decode = (done - first).max(0.0);
        let gen = u64::from(r.output);
        let s = &mut self.stats;
        if r.output >= r.max_tokens {
            s.counters.finished_length += 1;
        } else {
            s.counters.finished_stop += 1;
        }
        s.observe(Obs::Ttft, ttft, 1);
        s.observe(Obs::E2e, e2e, 1);
        s.observe(Obs::Inference, done - admitted, 1);
        s.observe(Obs::Prefill, (first - admitted).max(0.0), 1);
        s.observe(Obs::Decode, decode, 1);
        if gen > 1 {
            s.observe(Obs::RequestTpot, decode / (gen - 1) as f64, 1);
        }
        s.observe(Obs::PromptTokens, f64::from(r.prompt), 1);
        s.observe(Obs::GenerationTokens, gen as f64, 1);
        s.observe(Obs::MaxTokens, f64::from(r.max_tokens), 1);
        s.observe(Obs::ParamsN, 1.0, 1);
        s.observe(Obs::RequestPreemptions, f64::from(r.preemptions), 1);
        s.observe(Obs::Validation, r.validation_s, 1);
        s.observe(
            Obs::MeanTimePerToken,
            (done - admitted) / gen.max(1) as f64,
            1,
        );
        s.observe(Obs::FuncLatency, r.validation_s * 2.0, 1);
        self.recent.ttft.0 += ttft;
        self.recent.ttft.1 += 1.0;
        self.recent.e2e.0 += e2e;
        self.recent.e2e.1 += 1.0;
    }

    /// When the running batch's KV would exceed the pool, the newest requests are preempted
    /// (their blocks freed, recomputed later) until it fits. Returns how many.
    fn preempt_if_full(&mut self, d: &Derived) -> u64 {
        let mut used: u64 = self.running.iter().map(|r| r.blocks(d.block_size)).sum();
        let mut preempted = 0;
        while used > d.num_gpu_blocks && self.running.len() > 1 {
            let Some(mut r) = self.running.pop() else {
                break;
            };
            used = used.saturating_sub(r.blocks(d.block_size));
            r.preemptions += 1;
            let c = &mut self.stats.counters;
            c.preemptions += 1;
            c.retracted_input_tokens += u64::from(r.prompt);
            c.retracted_output_tokens += r.generated.floor() as u64;
            r.prefill_left = 1.0; // marks "needs recompute"; set properly on re-admission
            self.waiting.push_front(r);
            preempted += 1;
        }
        preempted
    }
}

fn clamp_u32(x: f64) -> u32 {
    if x >= f64::from(u32::MAX) {
        u32::MAX
    } else if x <= 0.0 {
        0
    } else {
        x as u32
    }
}
