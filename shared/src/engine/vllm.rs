//! vLLM's names (V0 engine, V1 engine, and V1 behind Ray Serve) and how they map to the canonical
//! vocabulary.

use super::accumulate::{ModelAcc, Models, Source, Target};
use super::{Notes, Seen};
use crate::snapshot::Canonical::{self, *};

pub(super) const PREFIXES: &[&str] = &["vllm:", "ray_vllm:", "ray_vllm_"];
/// Ray's metrics agent re-exports vLLM's metrics with a `ray_` prefix (older Ray keeps the colon,
/// Ray ≥ 2.5x turns it into `_`) and adds `WorkerId`, `ReplicaId`, `deployment`... labels.
pub(super) const RAY_PREFIXES: &[&str] = &["ray_vllm:", "ray_vllm_"];

const fn src(target: Target, prio: u8) -> Option<Source> {
    Some(Source { target, prio })
}

const fn gauge(name: Canonical, prio: u8) -> Option<Source> {
    src(Target::Gauge(name), prio)
}

const fn counter(name: Canonical, prio: u8) -> Option<Source> {
    src(Target::Counter(name), prio)
}

const fn histogram(name: Canonical, prio: u8) -> Option<Source> {
    src(Target::Histogram(name), prio)
}

/// Base names (no prefix, no `_total`): priority 0 is the current name, 1 the deprecated one it
/// replaced (exported side by side during the deprecation window, or alone by older releases).
pub(super) fn lookup(base: &str) -> Option<Source> {
    match base {
        "num_requests_running" => gauge(RequestsRunning, 0),
        "num_requests_waiting" => gauge(RequestsWaiting, 0),
        "kv_cache_usage_perc" => gauge(KvCacheUsageRatio, 0),
        "gpu_cache_usage_perc" => gauge(KvCacheUsageRatio, 1),
        "request_success" => src(Target::VllmFinished, 0),
        "prompt_tokens" => counter(PromptTokensTotal, 0),
        "generation_tokens" => counter(GenerationTokensTotal, 0),
        "num_preemptions" => counter(PreemptionsTotal, 0),
        "prefix_cache_queries" => counter(PrefixCacheQueriesTotal, 0),
        "gpu_prefix_cache_queries" => counter(PrefixCacheQueriesTotal, 1),
        "prefix_cache_hits" => counter(PrefixCacheHitsTotal, 0),
        "gpu_prefix_cache_hits" => counter(PrefixCacheHitsTotal, 1),
        "time_to_first_token_seconds" => histogram(TtftSeconds, 0),
        "inter_token_latency_seconds" => histogram(InterTokenLatencySeconds, 0),
        "time_per_output_token_seconds" => histogram(InterTokenLatencySeconds, 1),
        "e2e_request_latency_seconds" => histogram(E2eLatencySeconds, 0),
        "request_queue_time_seconds" => histogram(QueueTimeSeconds, 0),
        "time_in_queue_requests" => histogram(QueueTimeSeconds, 1),
        _ => None,
    }
}

pub(super) fn observe(base: &str, seen: &mut Seen) {
    match base {
        // Only the V1 engine (≥ 0.8) exports these.
        "kv_cache_usage_perc"
        | "prefix_cache_queries"
        | "gpu_prefix_cache_queries"
        | "inter_token_latency_seconds"
        | "request_time_per_output_token_seconds"
        | "iteration_tokens_total" => seen.vllm_v1 = true,
        "gpu_prefix_cache_hit_rate" => {
            seen.vllm_v0 = true;
            seen.vllm_hit_rate_gauge = true;
        }
        // Only the V0 engine exports these (deprecated in 0.8, gone with V0).
        "cpu_prefix_cache_hit_rate"
        | "num_requests_swapped"
        | "cpu_cache_usage_perc"
        | "avg_prompt_throughput_toks_per_s"
        | "avg_generation_throughput_toks_per_s"
        | "time_in_queue_requests"
        | "model_forward_time_milliseconds"
        | "model_execute_time_milliseconds"
        | "spec_decode_draft_acceptance_rate"
        | "spec_decode_efficiency" => seen.vllm_v0 = true,
        _ => {}
    }
}

pub(super) fn generation(seen: &Seen) -> &'static str {
    if seen.ray {
        "ray-vllm"
    } else if seen.vllm_v1 {
        "vllm-v1"
    } else if seen.vllm_v0 {
        "vllm-v0"
    } else {
        // Only names common to both engines: the generation cannot be told.
        "vllm"
    }
}

pub(super) fn finish(model: &mut ModelAcc<'_>, notes: &mut Notes) {
    if model.has(RequestFailureTotal) {
        notes.push(
            "request_failure_total is vLLM's request_success_total{finished_reason=\"abort\"}; \
             request_success_total sums every other finished_reason",
        );
    }
}

pub(super) fn notes(seen: &Seen, models: &Models<'_>, notes: &mut Notes) {
    let several_engines = models.iter().any(|m| {
        m.gauge_value(KvCacheUsageRatio)
            .is_some_and(|g| g.series() > 1)
    });
    if several_engines {
        notes.push(
            "kv_cache_usage_ratio is the mean over the engines (data-parallel ranks or Ray \
             replicas) serving a model, whose KV pools are the same size; requests_running, \
             requests_waiting, counters and histograms are summed over them",
        );
    }
    let has_prefix_counters = models.iter().any(|m| m.has(PrefixCacheQueriesTotal));
    if seen.vllm_hit_rate_gauge && !has_prefix_counters {
        notes.push(
            "vLLM V0 exports only the gpu_prefix_cache_hit_rate gauge, not counters: \
             prefix_cache_queries_total and prefix_cache_hits_total are absent",
        );
    }
}
