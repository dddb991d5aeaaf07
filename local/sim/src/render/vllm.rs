//! vLLM's exposition: V1 (0.12+), 0.10 (old and new names side by side) and V0 (≈0.6), as
//! written by Python `prometheus_client` in single-process mode.

use super::{hists, py_bool, python_process_families, PyText, RenderInput, Series};
use crate::config::Generation;
use crate::hist::Histogram;
use crate::model::{Obs, Stats};
use crate::numfmt::python_repr;

pub(super) fn render(input: &RenderInput<'_>, out: &mut String) {
    let g = input.generation;
    let v0 = g == Generation::VllmV0;
    let v010 = g == Generation::Vllm010;
    // Engines finish loading and register their metrics about a minute after the process starts.
    let mut py = PyText::new(out, !v0, false, input.started_unix + 61.3);
    python_process_families(&mut py, input);

    let engine_ids: Vec<String> = (0..input.cores.len()).map(|i| i.to_string()).collect();
    let base: Vec<Vec<(&str, &str)>> = engine_ids
        .iter()
        .map(|e| {
            if v0 {
                vec![("model_name", input.model)]
            } else {
                vec![("engine", e.as_str()), ("model_name", input.model)]
            }
        })
        .collect();
    let cores = &input.cores;
    let per_core = |f: &dyn Fn(&Stats) -> f64| -> Series<'_, f64> {
        base.iter()
            .zip(cores.iter())
            .map(|(l, s)| (l.clone(), f(s)))
            .collect()
    };
    let hist_series = |obs: Obs| -> Series<'_, &Histogram> {
        base.iter()
            .cloned()
            .zip(hists(cores, obs))
            .collect::<Vec<_>>()
    };

    let running_help = if v0 {
        "Number of requests currently running on GPU."
    } else {
        "Number of requests in model execution batches."
    };
    py.gauge(
        "vllm:num_requests_running",
        running_help,
        &per_core(&|s| s.gauges.running as f64),
    );
    if v0 {
        py.gauge(
            "vllm:num_requests_swapped",
            "Number of requests swapped to CPU.",
            &per_core(&|_| 0.0),
        );
    }
    py.gauge(
        "vllm:num_requests_waiting",
        "Number of requests waiting to be processed.",
        &per_core(&|s| s.gauges.waiting as f64),
    );
    let kv = |s: &Stats| s.gauges.kv_usage;
    let queries = |s: &Stats| s.counters.prefix_queries as f64;
    let hits = |s: &Stats| s.counters.prefix_hits as f64;
    if v0 {
        py.gauge(
            "vllm:gpu_cache_usage_perc",
            "GPU KV-cache usage. 1 means 100 percent usage.",
            &per_core(&kv),
        );
        py.gauge(
            "vllm:cpu_cache_usage_perc",
            "CPU KV-cache usage. 1 means 100 percent usage.",
            &per_core(&|_| 0.0),
        );
        let caching = input.config.enable_prefix_caching;
        py.gauge(
            "vllm:cpu_prefix_cache_hit_rate",
            "CPU prefix cache block hit rate.",
            &per_core(&|_| -1.0),
        );
        py.gauge(
            "vllm:gpu_prefix_cache_hit_rate",
            "GPU prefix cache block hit rate.",
            &per_core(&|s| {
                if !caching {
                    -1.0
                } else if s.counters.prefix_queries == 0 {
                    0.0
                } else {
                    s.counters.prefix_hits as f64 / s.counters.prefix_queries as f64
                }
            }),
        );
    } else {
        if v010 {
            py.gauge(
                "vllm:gpu_cache_usage_perc",
                "GPU KV-cache usage. 1 means 100 percent usage.DEPRECATED: Use vllm:kv_cache_usage_perc instead.",
                &per_core(&kv),
            );
            py.counter(
                "vllm:gpu_prefix_cache_queries",
                "GPU prefix cache queries, in terms of number of queriedtokens. DEPRECATED: Use vllm:prefix_cache_queries instead.",
                &per_core(&queries),
            );
            py.counter(
                "vllm:gpu_prefix_cache_hits",
                "GPU prefix cache hits, in terms of number of cached tokens. DEPRECATED: Use vllm:prefix_cache_hits instead.",
                &per_core(&hits),
            );
        }
        py.gauge(
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            &per_core(&kv),
        );
        py.counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            &per_core(&queries),
        );
        py.counter(
            "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            &per_core(&hits),
        );
    }
    py.counter(
        "vllm:num_preemptions",
        "Cumulative number of preemption from the engine.",
        &per_core(&|s| s.counters.preemptions as f64),
    );
    py.counter(
        "vllm:prompt_tokens",
        "Number of prefill tokens processed.",
        &per_core(&|s| s.counters.prompt_tokens as f64),
    );
    py.counter(
        "vllm:generation_tokens",
        "Number of generation tokens processed.",
        &per_core(&|s| s.counters.generation_tokens as f64),
    );

    let success = |py: &mut PyText<'_>| {
        let mut series: Series<'_, f64> = Vec::new();
        for (l, s) in base.iter().zip(cores.iter()) {
            for (reason, v) in [
                ("stop", s.counters.finished_stop),
                ("length", s.counters.finished_length),
                ("abort", s.counters.finished_abort),
            ] {
                let mut labels = l.clone();
                labels.push(("finished_reason", reason));
                series.push((labels, v as f64));
            }
        }
        py.counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            &series,
        );
    };

    let ttft_help = "Histogram of time to first token in seconds.";
    let tpot_help = "Histogram of time per output token in seconds.";
    if v0 {
        py.histogram(
            "vllm:time_to_first_token_seconds",
            ttft_help,
            &hist_series(Obs::Ttft),
        );
        py.histogram(
            "vllm:time_per_output_token_seconds",
            tpot_help,
            &hist_series(Obs::Itl),
        );
        latency_families(
            &mut py,
            &hist_series,
            "Histogram of end to end request latency in seconds.",
        );
        token_families(&mut py, &hist_series, false);
        success(&mut py);
        py.gauge(
            "vllm:avg_prompt_throughput_toks_per_s",
            "Average prefill throughput in tokens/s.",
            &per_core(&|s| s.gauges.prompt_throughput),
        );
        py.gauge(
            "vllm:avg_generation_throughput_toks_per_s",
            "Average generation throughput in tokens/s.",
            &per_core(&|s| s.gauges.gen_throughput),
        );
    } else {
        success(&mut py);
        token_families(&mut py, &hist_series, true);
        py.histogram(
            "vllm:time_to_first_token_seconds",
            ttft_help,
            &hist_series(Obs::Ttft),
        );
        if v010 {
            py.histogram(
                "vllm:time_per_output_token_seconds",
                tpot_help,
                &hist_series(Obs::Itl),
            );
        } else {
            py.histogram(
                "vllm:inter_token_latency_seconds",
                "Histogram of inter-token latency in seconds.",
                &hist_series(Obs::Itl),
            );
            py.histogram(
                "vllm:request_time_per_output_token_seconds",
                "Histogram of time_per_output_token_seconds per request.",
                &hist_series(Obs::RequestTpot),
            );
        }
        latency_families(
            &mut py,
            &hist_series,
            "Histogram of e2e request latency in seconds.",
        );
        padding(&mut py, input, &base);
    }
    cache_config(&mut py, input, &engine_ids);
    if !v0 {
        http_families(&mut py, input);
    }
}

fn token_families<'a>(
    py: &mut PyText<'_>,
    hist_series: &dyn Fn(Obs) -> Series<'a, &'a Histogram>,
    v1: bool,
) {
    py.histogram(
        "vllm:request_prompt_tokens",
        "Number of prefill tokens processed.",
        &hist_series(Obs::PromptTokens),
    );
    py.histogram(
        "vllm:request_generation_tokens",
        "Number of generation tokens processed.",
        &hist_series(Obs::GenerationTokens),
    );
    if v1 {
        py.histogram(
            "vllm:iteration_tokens_total",
            "Histogram of number of tokens per engine_step.",
            &hist_series(Obs::IterationTokens),
        );
    }
    py.histogram(
        "vllm:request_max_num_generation_tokens",
        "Histogram of maximum number of requested generation tokens.",
        &hist_series(Obs::MaxTokens),
    );
    py.histogram(
        "vllm:request_params_n",
        "Histogram of the n request parameter.",
        &hist_series(Obs::ParamsN),
    );
    py.histogram(
        "vllm:request_params_max_tokens",
        "Histogram of the max_tokens request parameter.",
        &hist_series(Obs::MaxTokens),
    );
}

fn latency_families<'a>(
    py: &mut PyText<'_>,
    hist_series: &dyn Fn(Obs) -> Series<'a, &'a Histogram>,
    e2e_help: &str,
) {
    py.histogram(
        "vllm:e2e_request_latency_seconds",
        e2e_help,
        &hist_series(Obs::E2e),
    );
    py.histogram(
        "vllm:request_queue_time_seconds",
        "Histogram of time spent in WAITING phase for request.",
        &hist_series(Obs::Queue),
    );
    py.histogram(
        "vllm:request_inference_time_seconds",
        "Histogram of time spent in RUNNING phase for request.",
        &hist_series(Obs::Inference),
    );
    py.histogram(
        "vllm:request_prefill_time_seconds",
        "Histogram of time spent in PREFILL phase for request.",
        &hist_series(Obs::Prefill),
    );
    py.histogram(
        "vllm:request_decode_time_seconds",
        "Histogram of time spent in DECODE phase for request.",
        &hist_series(Obs::Decode),
    );
}

/// Extra series for `--payload-kb`: real vLLM families the agent does not read (KV-block
/// lifetimes, per-request computed prefill tokens), split per LoRA adapter. Each adapter gets a
/// fixed share of the instance's observations, so the series stay cumulative and consistent.
fn padding(py: &mut PyText<'_>, input: &RenderInput<'_>, base: &[Vec<(&str, &str)>]) {
    let n = input.pad_adapters;
    if n == 0 {
        return;
    }
    let names: Vec<String> = (0..n).map(|i| format!("adapter-{i:03}")).collect();
    let weights: Vec<f64> = (0..n).map(|i| 1.0 / f64::from(i + 2)).collect();
    let total: f64 = weights.iter().sum();
    let families = [
        (
            "vllm:request_prefill_kv_computed_tokens",
            "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
            Obs::PromptTokens,
        ),
        (
            "vllm:kv_block_lifetime_seconds",
            "Histogram of KV cache block lifetime from allocation to eviction.",
            Obs::E2e,
        ),
        (
            "vllm:kv_block_idle_before_evict_seconds",
            "Histogram of idle time before KV cache block eviction.",
            Obs::Queue,
        ),
        (
            "vllm:kv_block_reuse_gap_seconds",
            "Histogram of time gaps between consecutive KV cache block accesses.",
            Obs::Decode,
        ),
    ];
    for (name, help, obs) in families {
        let scaled: Vec<(Vec<(&str, &str)>, Histogram)> = base
            .iter()
            .zip(hists(&input.cores, obs))
            .flat_map(|(l, h)| {
                names.iter().zip(weights.iter()).map(move |(a, w)| {
                    let mut labels = l.clone();
                    labels.push(("lora_name", a.as_str()));
                    (labels, h.scaled(w / total))
                })
            })
            .collect();
        let series: Series<'_, &Histogram> = scaled.iter().map(|(l, h)| (l.clone(), h)).collect();
        py.histogram(name, help, &series);
    }
}

fn cache_config(py: &mut PyText<'_>, input: &RenderInput<'_>, engine_ids: &[String]) {
    let c = input.config;
    let block_size = c.block_size.to_string();
    let gmu = python_repr(c.gpu_memory_utilization);
    let blocks = input.derived.num_gpu_blocks.to_string();
    let cache_dtype = c.kv_cache_dtype.as_str();
    let prefix = py_bool(c.enable_prefix_caching);
    let series: Series<'_, f64> = if input.generation == Generation::VllmV0 {
        vec![(
            vec![
                ("block_size", block_size.as_str()),
                ("cache_dtype", cache_dtype),
                ("cpu_offload_gb", "0"),
                ("enable_prefix_caching", prefix),
                ("gpu_memory_utilization", gmu.as_str()),
                ("is_attention_free", "False"),
                ("num_cpu_blocks", "2048"),
                ("num_gpu_blocks", blocks.as_str()),
                ("num_gpu_blocks_override", "None"),
                ("sliding_window", "None"),
                ("swap_space_bytes", "4294967296"),
            ],
            1.0,
        )]
    } else {
        engine_ids
            .iter()
            .map(|e| {
                (
                    vec![
                        ("block_size", block_size.as_str()),
                        ("cache_dtype", cache_dtype),
                        ("calculate_kv_scales", "False"),
                        ("cpu_kvcache_space_bytes", "None"),
                        ("cpu_offload_gb", "0.0"),
                        ("enable_prefix_caching", prefix),
                        ("engine", e.as_str()),
                        ("gpu_memory_utilization", gmu.as_str()),
                        ("is_attention_free", "False"),
                        ("kv_sharing_fast_prefill", "False"),
                        ("mamba_cache_dtype", "auto"),
                        ("mamba_page_size_padded", "None"),
                        ("mamba_ssm_cache_dtype", "auto"),
                        ("num_cpu_blocks", "None"),
                        ("num_gpu_blocks", blocks.as_str()),
                        ("num_gpu_blocks_override", "None"),
                        ("prefix_caching_hash_algo", "builtin"),
                        ("sliding_window", "None"),
                        ("swap_space", "4.0"),
                        ("swap_space_bytes", "4294967296.0"),
                    ],
                    1.0,
                )
            })
            .collect()
    };
    py.gauge(
        "vllm:cache_config_info",
        "Information of the LLMEngine CacheConfig",
        &series,
    );
}

/// prometheus-fastapi-instrumentator's families, which vLLM's API server exposes too.
fn http_families(py: &mut PyText<'_>, input: &RenderInput<'_>) {
    let finished: u64 = input.cores.iter().map(|s| s.counters.finished()).sum();
    let models_calls = (input.uptime_s / 30.0).floor() + 1.0;
    py.counter(
        "http_requests",
        "Total number of requests by method, status and handler.",
        &vec![
            (
                vec![
                    ("handler", "/v1/models"),
                    ("method", "GET"),
                    ("status", "2xx"),
                ],
                models_calls,
            ),
            (
                vec![
                    ("handler", "/v1/chat/completions"),
                    ("method", "POST"),
                    ("status", "2xx"),
                ],
                finished as f64,
            ),
        ],
    );
}
