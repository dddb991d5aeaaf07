//! SGLang's names (0.3.x, 0.4.x, ≥ 0.5 with rank labels; `sglang:` or `sglang_` prefix) and how they
//! map to the canonical vocabulary.

use super::accumulate::{AuxKind, ModelAcc, RankOrder, Source, Target};
use super::{Notes, Seen};
use crate::snapshot::Canonical::{self, *};
use std::borrow::Cow;

/// `sglang:` is native; some consumers and a gRPC sidecar emit `sglang_` (see the catalog, §4.2).
pub(super) const PREFIXES: &[&str] = &["sglang:", "sglang_"];

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

/// Base names (no prefix, no `_total`): priority 0 is the current name, higher numbers the 0.3.x
/// or ≤ 0.4.5 names it replaced.
pub(super) fn lookup(base: &str) -> Option<Source> {
    match base {
        "num_running_reqs" => gauge(RequestsRunning, 0),
        "num_requests_running" => gauge(RequestsRunning, 1),
        "num_queue_reqs" => gauge(RequestsWaiting, 0),
        "num_requests_waiting" => gauge(RequestsWaiting, 1),
        "queue_req" => gauge(RequestsWaiting, 2),
        "token_usage" => gauge(KvCacheUsageRatio, 0),
        "prompt_tokens" => counter(PromptTokensTotal, 0),
        "request_prompt_tokens" => src(Target::CounterFromSum(PromptTokensTotal), 1),
        "generation_tokens" => counter(GenerationTokensTotal, 0),
        "request_generation_tokens" => src(Target::CounterFromSum(GenerationTokensTotal), 1),
        "cached_tokens" => counter(PrefixCacheHitsTotal, 0),
        "num_requests" => src(Target::Aux(AuxKind::SglangFinished), 0),
        "num_aborted_requests" => counter(RequestFailureTotal, 0),
        "num_retracted_requests" => counter(PreemptionsTotal, 0),
        "time_to_first_token_seconds" => histogram(TtftSeconds, 0),
        "inter_token_latency_seconds" => histogram(InterTokenLatencySeconds, 0),
        "time_per_output_token_seconds" => histogram(InterTokenLatencySeconds, 1),
        "e2e_request_latency_seconds" => histogram(E2eLatencySeconds, 0),
        "queue_time_seconds" => histogram(QueueTimeSeconds, 0),
        "waiting_request_latency_seconds" => histogram(QueueTimeSeconds, 1),
        _ => None,
    }
}

pub(super) fn observe(base: &str, seen: &mut Seen) {
    match base {
        // The 0.3.x names (first Prometheus support, PR #1853), dropped in 0.4.0.
        "num_requests_running"
        | "num_requests_waiting"
        | "queue_req"
        | "new_seq"
        | "new_token"
        | "cached_token"
        | "max_prefill_tokens"
        | "max_running_requests"
        | "context_len"
        | "waiting_request_latency_seconds"
        | "request_prompt_tokens"
        | "request_generation_tokens" => seen.sglang_03 = true,
        "cache_hit_rate" => seen.sglang_hit_rate_gauge = true,
        // Added with the 0.5 scheduler metrics.
        "num_retracted_reqs"
        | "num_retracted_requests"
        | "num_paused_reqs"
        | "num_grammar_queue_reqs"
        | "utilization" => seen.sglang_05 = true,
        _ => {}
    }
}

pub(super) fn generation(seen: &Seen) -> &'static str {
    if seen.sglang_03 || seen.sglang_name_label {
        "sglang-0.3"
    } else if seen.sglang_05 || seen.sglang_ranks {
        "sglang-0.5"
    } else {
        "sglang-0.4"
    }
}

/// The rank group of an SGLang sample: the DP rank is the group (each DP rank schedules its own
/// requests, so DP ranks add up); the TP/PP/MoE-EP ranks and pids of one DP rank run the same
/// batch and repeat the same values (every one of them reports with
/// `--enable-metrics-for-all-schedulers`), so only the lowest of them counts. Tokenizer metrics
/// carry no rank label and form one group. `ranks` is (PP, TP, MoE-EP rank, pid), 0 when absent.
pub(super) fn rank_group(
    dp_rank: Option<Cow<'_, str>>,
    ranks: RankOrder,
) -> (Cow<'_, str>, RankOrder) {
    (dp_rank.unwrap_or(Cow::Borrowed("")), ranks)
}

pub(super) fn finish(model: &mut ModelAcc<'_>, notes: &mut Notes) {
    if let Some(finished) = model.aux_value(AuxKind::SglangFinished).map(|h| h.count) {
        let aborted = model.counter_value(RequestFailureTotal).unwrap_or(0.0);
        model.set_counter(RequestSuccessTotal, finished - aborted);
        notes.push(
            "request_success_total is SGLang's num_requests_total (every finished request) minus \
             num_aborted_requests_total, which is request_failure_total",
        );
    }
    if model.priority(PromptTokensTotal) == Some(1)
        || model.priority(GenerationTokensTotal) == Some(1)
    {
        notes.push(
            "SGLang 0.3.x has no token counters: prompt_tokens_total and generation_tokens_total \
             are the _sum of its request_prompt_tokens and request_generation_tokens histograms",
        );
    }
    if model.has(PrefixCacheHitsTotal) {
        if let Some(prompt) = model.counter_value(PromptTokensTotal) {
            model.set_counter(PrefixCacheQueriesTotal, prompt);
            notes.push(
                "prefix_cache_hits_total is SGLang's cached_tokens_total and \
                 prefix_cache_queries_total its prompt_tokens_total (tokens)",
            );
        }
    }
}

pub(super) fn notes(seen: &Seen, notes: &mut Notes) {
    if seen.sglang_ranks {
        notes.push(
            "SGLang series are aggregated over ranks: the TP/PP ranks of one DP rank repeat the \
             same values, so only the lowest of them counts; DP ranks are summed \
             (kv_cache_usage_ratio averaged over them)",
        );
    }
    if seen.sglang_hit_rate_gauge {
        notes.push(
            "SGLang's cache_hit_rate gauge (last batch only; a percentage in 0.3.x, a fraction \
             since 0.4) is not used: prefix_cache_* come from cached_tokens_total when exported",
        );
    }
}
