//! SGLang's exposition, written by Python `prometheus_client` in multiprocess mode: no `_created`,
//! `_sum` before the buckets, Go-style exponents on large counts. Current releases label
//! scheduler metrics per tensor-parallel rank; 0.4.x has `model_name` only.

use super::{hists, PyText, RenderInput, Series};
use crate::config::Generation;
use crate::hist::Histogram;
use crate::model::{Obs, Stats};

pub(super) fn render(input: &RenderInput<'_>, out: &mut String) {
    let Some(s) = input.cores.first().copied() else {
        return;
    };
    let mut py = PyText::new(out, false, true, 0.0);
    if input.generation == Generation::Sglang04 {
        render_04(&mut py, input, s);
    } else {
        render_current(&mut py, input, s);
    }
}

fn render_04(py: &mut PyText<'_>, input: &RenderInput<'_>, s: &Stats) {
    let l = vec![("model_name", input.model)];
    let one = |v: f64| -> Series<'_, f64> { vec![(l.clone(), v)] };
    let h = |obs: Obs| -> Series<'_, &Histogram> {
        hists(&[s], obs)
            .into_iter()
            .map(|h| (l.clone(), h))
            .collect()
    };
    let c = &s.counters;
    let g = &s.gauges;
    py.counter(
        "sglang:prompt_tokens",
        "Number of prefill tokens processed.",
        &one(c.prompt_tokens as f64),
    );
    py.counter(
        "sglang:generation_tokens",
        "Number of generation tokens processed.",
        &one(c.generation_tokens as f64),
    );
    py.gauge(
        "sglang:token_usage",
        "The token usage",
        &one(round2(g.kv_usage)),
    );
    py.gauge(
        "sglang:cache_hit_rate",
        "The cache hit rate",
        &one(g.cache_hit_rate),
    );
    py.histogram(
        "sglang:time_to_first_token_seconds",
        "Histogram of time to first token in seconds.",
        &h(Obs::Ttft),
    );
    py.histogram(
        "sglang:e2e_request_latency_seconds",
        "Histogram of End-to-end request latency in seconds",
        &h(Obs::E2e),
    );
    py.histogram(
        "sglang:time_per_output_token_seconds",
        "Histogram of time per output token in seconds.",
        &h(Obs::Itl),
    );
    let func: Series<'_, &Histogram> = hists(&[s], Obs::FuncLatency)
        .into_iter()
        .map(|h| (vec![("name", "generate_request")], h))
        .collect();
    py.histogram(
        "sglang:func_latency_seconds",
        "Function latency in seconds",
        &func,
    );
    py.gauge(
        "sglang:num_running_reqs",
        "The number of running requests",
        &one(g.running as f64),
    );
    py.gauge(
        "sglang:num_used_tokens",
        "The number of used tokens",
        &one(g.kv_used_tokens as f64),
    );
    py.gauge(
        "sglang:gen_throughput",
        "The generate throughput (token/s)",
        &one(g.gen_throughput),
    );
    py.gauge(
        "sglang:num_queue_reqs",
        "The number of requests in the waiting queue",
        &one(g.waiting as f64),
    );
}

fn render_current(py: &mut PyText<'_>, input: &RenderInput<'_>, s: &Stats) {
    let ranks: Vec<String> = (0..input.hardware.tensor_parallel_size.max(1))
        .map(|r| r.to_string())
        .collect();
    let pid = input.pid.to_string();
    // Scheduler metrics: one series per TP rank, every rank reporting the same scheduler state.
    let sched: Vec<Vec<(&str, &str)>> = ranks
        .iter()
        .map(|r| {
            vec![
                ("engine_type", "unified"),
                ("model_name", input.model),
                ("pp_rank", "0"),
                ("tp_rank", r.as_str()),
            ]
        })
        .collect();
    let tok = vec![("engine_type", "unified"), ("model_name", input.model)];
    let per_rank = |v: f64| -> Series<'_, f64> { sched.iter().map(|l| (l.clone(), v)).collect() };
    // Gauges in the default multiprocess mode ("all") carry the writing process's pid.
    let per_rank_pid = |v: f64| -> Series<'_, f64> {
        sched
            .iter()
            .map(|l| {
                let mut l = l.clone();
                l.push(("pid", pid.as_str()));
                (l, v)
            })
            .collect()
    };
    let one = |v: f64| -> Series<'_, f64> { vec![(tok.clone(), v)] };
    let c = &s.counters;
    let g = &s.gauges;
    let capacity = input.derived.kv_capacity_tokens() as f64;

    py.gauge(
        "sglang:num_running_reqs",
        "The number of running requests.",
        &per_rank(g.running as f64),
    );
    py.gauge(
        "sglang:num_used_tokens",
        "The number of used tokens.",
        &per_rank(g.kv_used_tokens as f64),
    );
    py.gauge(
        "sglang:token_usage",
        "The token usage.",
        &per_rank(round2(g.kv_usage)),
    );
    py.gauge(
        "sglang:gen_throughput",
        "The generation throughput (token/s).",
        &per_rank(g.gen_throughput),
    );
    py.gauge(
        "sglang:num_queue_reqs",
        "The number of requests in the waiting queue.",
        &per_rank(g.waiting as f64),
    );
    py.gauge(
        "sglang:num_grammar_queue_reqs",
        "The number of requests in the grammar waiting queue.",
        &per_rank(0.0),
    );
    py.gauge(
        "sglang:num_running_reqs_offline_batch",
        "The number of running low-priority offline batch requests(label is 'batch').",
        &per_rank(0.0),
    );
    py.gauge(
        "sglang:cache_hit_rate",
        "The prefix cache hit rate.",
        &per_rank(g.cache_hit_rate),
    );
    py.gauge(
        "sglang:max_total_num_tokens",
        "Maximum total number of tokens in the KV cache pool.",
        &per_rank(capacity),
    );
    py.gauge(
        "sglang:num_retracted_reqs",
        "The number of retracted requests.",
        &per_rank_pid(g.retracted as f64),
    );
    py.gauge(
        "sglang:num_paused_reqs",
        "The number of paused requests by async weight sync.",
        &per_rank_pid(0.0),
    );
    let utilization = if g.running > 0 { 1.0 } else { 0.0 };
    py.gauge(
        "sglang:utilization",
        "The utilization.",
        &per_rank(utilization),
    );
    py.gauge(
        "sglang:engine_startup_time",
        "The time taken for the engine to start up.",
        &per_rank(48.21),
    );
    py.gauge(
        "sglang:is_cuda_graph",
        "Whether the batch is using CUDA graph.",
        &per_rank(1.0),
    );
    py.counter(
        "sglang:num_retracted_requests",
        "Total number of retracted requests.",
        &per_rank(c.preemptions as f64),
    );
    py.counter(
        "sglang:num_retracted_input_tokens",
        "Total number of retracted input tokens.",
        &per_rank(c.retracted_input_tokens as f64),
    );
    py.counter(
        "sglang:num_retracted_output_tokens",
        "Total number of retracted output tokens.",
        &per_rank(c.retracted_output_tokens as f64),
    );
    let queue: Series<'_, &Histogram> = hists(&[s], Obs::Queue)
        .into_iter()
        .flat_map(|h| sched.iter().map(move |l| (l.clone(), h)))
        .collect();
    py.histogram(
        "sglang:queue_time_seconds",
        "Histogram of queueing time in seconds.",
        &queue,
    );
    let mut realtime: Series<'_, f64> = Vec::new();
    for l in &sched {
        for (mode, v) in [
            (
                "prefill_compute",
                c.prompt_tokens.saturating_sub(c.prefix_hits),
            ),
            ("prefill_cache", c.prefix_hits),
            ("decode", c.generation_tokens),
        ] {
            let mut l = l.clone();
            l.push(("mode", mode));
            realtime.push((l, v as f64));
        }
    }
    py.counter(
        "sglang:realtime_tokens",
        "Total number of tokens processed (updated on each log interval). mode: prefill_compute, prefill_cache, decode.",
        &realtime,
    );

    let h = |obs: Obs| -> Series<'_, &Histogram> {
        hists(&[s], obs)
            .into_iter()
            .map(|h| (tok.clone(), h))
            .collect()
    };
    py.counter(
        "sglang:prompt_tokens",
        "Number of prefill tokens processed.",
        &one(c.prompt_tokens as f64),
    );
    py.counter(
        "sglang:generation_tokens",
        "Number of generation tokens processed.",
        &one(c.generation_tokens as f64),
    );
    py.counter(
        "sglang:cached_tokens",
        "Number of cached prompt tokens.",
        &one(c.prefix_hits as f64),
    );
    py.counter(
        "sglang:num_requests",
        "Number of requests processed.",
        &one(c.finished() as f64),
    );
    py.counter(
        "sglang:num_so_requests",
        "Number of structured output requests processed.",
        &one(0.0),
    );
    py.counter(
        "sglang:num_aborted_requests",
        "Number of requests aborted.",
        &one(c.finished_abort as f64),
    );
    py.histogram(
        "sglang:time_to_first_token_seconds",
        "Histogram of time to first token in seconds.",
        &h(Obs::Ttft),
    );
    py.histogram(
        "sglang:inter_token_latency_seconds",
        "Histogram of inter-token latency in seconds.",
        &h(Obs::Itl),
    );
    py.histogram(
        "sglang:e2e_request_latency_seconds",
        "Histogram of End-to-end request latency in seconds",
        &h(Obs::E2e),
    );
    py.histogram(
        "sglang:num_retractions",
        "Histogram of retraction counts per request.",
        &h(Obs::RequestPreemptions),
    );
}

/// SGLang rounds `token_usage` to two decimals before exporting it.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
