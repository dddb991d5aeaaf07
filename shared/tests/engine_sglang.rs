//! The SGLang adapter on expositions of each generation: 0.3.x (`name` label, percent hit rate,
//! old names), ≥ 0.5 with TP/DP ranks, and the `sglang_` separator.

use perfagent::engine::normalize;
use perfagent::promtext::{parse, Mode};
use perfagent::snapshot::{Canonical, Engine, ModelMetrics, Snapshot};

fn snap(text: &str) -> Snapshot {
    let exp = parse(text.as_bytes(), Mode::Lenient).unwrap_or_else(|e| panic!("{e}"));
    normalize(&exp, None).unwrap_or_else(|e| panic!("{e}"))
}

fn only_model(s: &Snapshot) -> &ModelMetrics {
    assert_eq!(s.models.len(), 1, "{:?}", s.models);
    &s.models[0]
}

const V03: &str = r#"# HELP sglang:max_total_num_tokens Maximum total number of tokens
# TYPE sglang:max_total_num_tokens gauge
sglang:max_total_num_tokens{name="meta-llama/Llama-3.1-8B-Instruct"} 500000.0
# HELP sglang:num_requests_running Number of requests currently running on GPU
# TYPE sglang:num_requests_running gauge
sglang:num_requests_running{name="meta-llama/Llama-3.1-8B-Instruct"} 12.0
# HELP sglang:num_requests_waiting Number of requests waiting to be processed.
# TYPE sglang:num_requests_waiting gauge
sglang:num_requests_waiting{name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
# HELP sglang:queue_req The number of requests in the waiting queue
# TYPE sglang:queue_req gauge
sglang:queue_req{name="meta-llama/Llama-3.1-8B-Instruct"} 99.0
# HELP sglang:cache_hit_rate The cache hit rate
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{name="meta-llama/Llama-3.1-8B-Instruct"} 45.5
# HELP sglang:token_usage The token usage
# TYPE sglang:token_usage gauge
sglang:token_usage{name="meta-llama/Llama-3.1-8B-Instruct"} 0.12
# HELP sglang:request_prompt_tokens Number of prefill tokens processed
# TYPE sglang:request_prompt_tokens histogram
sglang:request_prompt_tokens_sum{name="meta-llama/Llama-3.1-8B-Instruct"} 4200.0
sglang:request_prompt_tokens_bucket{le="1.0",name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
sglang:request_prompt_tokens_bucket{le="+Inf",name="meta-llama/Llama-3.1-8B-Instruct"} 20.0
sglang:request_prompt_tokens_count{name="meta-llama/Llama-3.1-8B-Instruct"} 20.0
# HELP sglang:request_generation_tokens Number of generation tokens processed.
# TYPE sglang:request_generation_tokens histogram
sglang:request_generation_tokens_sum{name="meta-llama/Llama-3.1-8B-Instruct"} 9000.0
sglang:request_generation_tokens_bucket{le="+Inf",name="meta-llama/Llama-3.1-8B-Instruct"} 20.0
sglang:request_generation_tokens_count{name="meta-llama/Llama-3.1-8B-Instruct"} 20.0
# HELP sglang:waiting_request_latency_seconds Histogram of request waiting time in seconds
# TYPE sglang:waiting_request_latency_seconds histogram
sglang:waiting_request_latency_seconds_sum{name="meta-llama/Llama-3.1-8B-Instruct"} 6.0
sglang:waiting_request_latency_seconds_bucket{le="0.5",name="meta-llama/Llama-3.1-8B-Instruct"} 15.0
sglang:waiting_request_latency_seconds_bucket{le="+Inf",name="meta-llama/Llama-3.1-8B-Instruct"} 20.0
sglang:waiting_request_latency_seconds_count{name="meta-llama/Llama-3.1-8B-Instruct"} 20.0
# HELP sglang:time_per_output_token_seconds Histogram of time per output token in seconds.
# TYPE sglang:time_per_output_token_seconds histogram
sglang:time_per_output_token_seconds_sum{name="meta-llama/Llama-3.1-8B-Instruct"} 180.0
sglang:time_per_output_token_seconds_bucket{le="0.05",name="meta-llama/Llama-3.1-8B-Instruct"} 8000.0
sglang:time_per_output_token_seconds_bucket{le="+Inf",name="meta-llama/Llama-3.1-8B-Instruct"} 9000.0
sglang:time_per_output_token_seconds_count{name="meta-llama/Llama-3.1-8B-Instruct"} 9000.0
"#;

#[test]
fn sglang_03_is_recognized_and_its_model_read_from_the_name_label() {
    let s = snap(V03);
    assert_eq!(s.engine, Engine::Sglang);
    assert_eq!(s.generation, "sglang-0.3");
    assert_eq!(only_model(&s).model, "meta-llama/Llama-3.1-8B-Instruct");
}

#[test]
fn sglang_03_old_names_map_and_the_newest_waiting_name_wins() {
    let s = snap(V03);
    let m = only_model(&s);
    assert_eq!(m.number(Canonical::RequestsRunning), Some(12.0));
    assert_eq!(m.number(Canonical::RequestsWaiting), Some(3.0));
    assert_eq!(m.number(Canonical::KvCacheUsageRatio), Some(0.12));
    let queue = m.histogram(Canonical::QueueTimeSeconds).expect("queue");
    assert_eq!(queue.buckets, vec![(0.5, 15.0), (f64::INFINITY, 20.0)]);
    let itl = m
        .histogram(Canonical::InterTokenLatencySeconds)
        .expect("itl");
    assert_eq!(itl.count, 9000.0);
}

#[test]
fn sglang_03_token_totals_come_from_its_request_token_histograms() {
    let s = snap(V03);
    let m = only_model(&s);
    assert_eq!(m.number(Canonical::PromptTokensTotal), Some(4200.0));
    assert_eq!(m.number(Canonical::GenerationTokensTotal), Some(9000.0));
    assert!(s
        .notes
        .iter()
        .any(|n| n.contains("0.3.x has no token counters")));
}

#[test]
fn sglang_03_percent_hit_rate_never_leaks_into_a_ratio_or_prefix_counters() {
    let s = snap(V03);
    let m = only_model(&s);
    assert_eq!(m.number(Canonical::PrefixCacheHitsTotal), None);
    assert_eq!(m.number(Canonical::PrefixCacheQueriesTotal), None);
    assert!(m
        .metrics
        .values()
        .filter_map(|v| v.as_number())
        .all(|v| v != 45.5));
    assert!(s.notes.iter().any(|n| n.contains("cache_hit_rate")));
    // max_total_num_tokens and cache_hit_rate.
    assert_eq!(s.unknown_families, 2);
}

/// Two DP ranks of two TP ranks each (with DP attention the TP ranks are global: DP 1 holds TP 2
/// and 3). Scheduler metrics carry the ranks and, with `--enable-metrics-for-all-schedulers`, every
/// TP rank of a DP rank reports the same batch; tokenizer metrics carry no rank.
const RANKS: &str = r#"# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="1"} 5.0
sglang:num_running_reqs{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="0"} 5.0
sglang:num_running_reqs{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="3"} 99.0
sglang:num_running_reqs{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="2"} 7.0
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="0"} 1.0
sglang:num_queue_reqs{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="1"} 1.0
sglang:num_queue_reqs{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="2"} 2.0
sglang:num_queue_reqs{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="3"} 2.0
# TYPE sglang:token_usage gauge
sglang:token_usage{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="0"} 0.2
sglang:token_usage{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="1"} 0.2
sglang:token_usage{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="2"} 0.6
sglang:token_usage{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="3"} 0.6
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="0"} 100.0
sglang:prompt_tokens_total{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="2"} 300.0
# TYPE sglang:cached_tokens_total counter
sglang:cached_tokens_total{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="0"} 40.0
sglang:cached_tokens_total{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="2"} 60.0
# TYPE sglang:num_requests_total counter
sglang:num_requests_total{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="0"} 20.0
sglang:num_requests_total{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="2"} 30.0
# TYPE sglang:num_aborted_requests_total counter
sglang:num_aborted_requests_total{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="0"} 2.0
sglang:num_aborted_requests_total{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="2"} 3.0
# TYPE sglang:num_retracted_requests_total counter
sglang:num_retracted_requests_total{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="1"} 4.0
sglang:num_retracted_requests_total{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="0"} 4.0
sglang:num_retracted_requests_total{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="2"} 1.0
sglang:num_retracted_requests_total{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="3"} 1.0
# TYPE sglang:time_to_first_token_seconds histogram
sglang:time_to_first_token_seconds_sum{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="0"} 2.0
sglang:time_to_first_token_seconds_bucket{dp_rank="0",engine_type="unified",le="0.1",model_name="qwen",pp_rank="0",tp_rank="0"} 1.0
sglang:time_to_first_token_seconds_bucket{dp_rank="0",engine_type="unified",le="+Inf",model_name="qwen",pp_rank="0",tp_rank="0"} 4.0
sglang:time_to_first_token_seconds_count{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="0"} 4.0
sglang:time_to_first_token_seconds_sum{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="2"} 3.0
sglang:time_to_first_token_seconds_bucket{dp_rank="1",engine_type="unified",le="0.1",model_name="qwen",pp_rank="0",tp_rank="2"} 2.0
sglang:time_to_first_token_seconds_bucket{dp_rank="1",engine_type="unified",le="+Inf",model_name="qwen",pp_rank="0",tp_rank="2"} 6.0
sglang:time_to_first_token_seconds_count{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="2"} 6.0
# TYPE sglang:queue_time_seconds histogram
sglang:queue_time_seconds_sum{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="1"} 0.5
sglang:queue_time_seconds_count{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="1"} 4.0
sglang:queue_time_seconds_bucket{dp_rank="0",engine_type="unified",le="0.1",model_name="qwen",pp_rank="0",tp_rank="1"} 3.0
sglang:queue_time_seconds_bucket{dp_rank="0",engine_type="unified",le="+Inf",model_name="qwen",pp_rank="0",tp_rank="1"} 4.0
sglang:queue_time_seconds_sum{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="0"} 0.5
sglang:queue_time_seconds_count{dp_rank="0",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="0"} 4.0
sglang:queue_time_seconds_bucket{dp_rank="0",engine_type="unified",le="0.1",model_name="qwen",pp_rank="0",tp_rank="0"} 3.0
sglang:queue_time_seconds_bucket{dp_rank="0",engine_type="unified",le="+Inf",model_name="qwen",pp_rank="0",tp_rank="0"} 4.0
sglang:queue_time_seconds_sum{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="2"} 1.5
sglang:queue_time_seconds_count{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="2"} 6.0
sglang:queue_time_seconds_bucket{dp_rank="1",engine_type="unified",le="0.1",model_name="qwen",pp_rank="0",tp_rank="2"} 1.0
sglang:queue_time_seconds_bucket{dp_rank="1",engine_type="unified",le="+Inf",model_name="qwen",pp_rank="0",tp_rank="2"} 6.0
sglang:queue_time_seconds_sum{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="3"} 1.5
sglang:queue_time_seconds_count{dp_rank="1",engine_type="unified",model_name="qwen",pp_rank="0",tp_rank="3"} 6.0
sglang:queue_time_seconds_bucket{dp_rank="1",engine_type="unified",le="0.1",model_name="qwen",pp_rank="0",tp_rank="3"} 1.0
sglang:queue_time_seconds_bucket{dp_rank="1",engine_type="unified",le="+Inf",model_name="qwen",pp_rank="0",tp_rank="3"} 6.0
"#;

#[test]
fn sglang_with_ranks_is_the_05_generation() {
    let s = snap(RANKS);
    assert_eq!(s.generation, "sglang-0.5");
    assert!(s.notes.iter().any(|n| n.contains("aggregated over ranks")));
}

#[test]
fn sglang_gauges_take_the_lowest_tp_rank_of_each_dp_rank_and_sum_over_dp() {
    let s = snap(RANKS);
    let m = only_model(&s);
    // DP 0: TP 0 says 5 (its TP 1 duplicate is dropped); DP 1: TP 2 says 7 (TP 3's 99 is dropped).
    assert_eq!(m.number(Canonical::RequestsRunning), Some(12.0));
    assert_eq!(m.number(Canonical::RequestsWaiting), Some(3.0));
    // Averaged over the DP ranks, not summed.
    assert_eq!(m.number(Canonical::KvCacheUsageRatio), Some(0.4));
}

#[test]
fn sglang_counters_and_histograms_sum_over_dp_ranks() {
    let s = snap(RANKS);
    let m = only_model(&s);
    assert_eq!(m.number(Canonical::PromptTokensTotal), Some(400.0));
    let ttft = m.histogram(Canonical::TtftSeconds).expect("ttft");
    assert_eq!((ttft.count, ttft.sum), (10.0, 5.0));
    assert_eq!(ttft.buckets, vec![(0.1, 3.0), (f64::INFINITY, 10.0)]);
}

#[test]
fn sglang_counters_and_histograms_repeated_on_every_tp_rank_are_counted_once() {
    let s = snap(RANKS);
    let m = only_model(&s);
    // 4 (DP 0, TP 0 and 1) + 1 (DP 1, TP 2 and 3), not 10.
    assert_eq!(m.number(Canonical::PreemptionsTotal), Some(5.0));
    let queue = m.histogram(Canonical::QueueTimeSeconds).expect("queue");
    assert_eq!((queue.count, queue.sum), (10.0, 2.0));
    assert_eq!(queue.buckets, vec![(0.1, 4.0), (f64::INFINITY, 10.0)]);
}

#[test]
fn sglang_scheduler_metrics_of_tp_rank_0_only_and_unranked_tokenizer_metrics_combine() {
    // The default: only attention-TP rank 0 reports scheduler metrics; the tokenizer manager's
    // have no rank labels.
    let s = snap(
        "# TYPE sglang:num_running_reqs gauge\n\
         sglang:num_running_reqs{engine_type=\"unified\",model_name=\"m\",pp_rank=\"0\",tp_rank=\"0\"} 8.0\n\
         # TYPE sglang:queue_time_seconds histogram\n\
         sglang:queue_time_seconds_count{engine_type=\"unified\",model_name=\"m\",pp_rank=\"0\",tp_rank=\"0\"} 7.0\n\
         sglang:queue_time_seconds_sum{engine_type=\"unified\",model_name=\"m\",pp_rank=\"0\",tp_rank=\"0\"} 0.7\n\
         # TYPE sglang:time_to_first_token_seconds histogram\n\
         sglang:time_to_first_token_seconds_count{engine_type=\"unified\",model_name=\"m\"} 7.0\n\
         sglang:time_to_first_token_seconds_sum{engine_type=\"unified\",model_name=\"m\"} 1.4\n",
    );
    let m = only_model(&s);
    assert_eq!(m.number(Canonical::RequestsRunning), Some(8.0));
    assert_eq!(
        m.histogram(Canonical::QueueTimeSeconds).map(|h| h.count),
        Some(7.0)
    );
    assert_eq!(
        m.histogram(Canonical::TtftSeconds).map(|h| h.count),
        Some(7.0)
    );
}

#[test]
fn sglang_success_is_finished_minus_aborted_and_failure_is_aborted() {
    let s = snap(RANKS);
    let m = only_model(&s);
    assert_eq!(m.number(Canonical::RequestSuccessTotal), Some(45.0));
    assert_eq!(m.number(Canonical::RequestFailureTotal), Some(5.0));
}

#[test]
fn sglang_prefix_cache_is_cached_tokens_over_prompt_tokens() {
    let s = snap(RANKS);
    let m = only_model(&s);
    assert_eq!(m.number(Canonical::PrefixCacheHitsTotal), Some(100.0));
    assert_eq!(m.number(Canonical::PrefixCacheQueriesTotal), Some(400.0));
}

#[test]
fn sglang_with_the_underscore_separator_reads_the_same() {
    let s = snap(
        "# TYPE sglang_num_running_reqs gauge\n\
         sglang_num_running_reqs{model_name=\"m\"} 6.0\n\
         # TYPE sglang_num_requests_total counter\n\
         sglang_num_requests_total{model_name=\"m\"} 9.0\n\
         # TYPE sglang_inter_token_latency_seconds histogram\n\
         sglang_inter_token_latency_seconds_bucket{le=\"+Inf\",model_name=\"m\"} 3.0\n\
         sglang_inter_token_latency_seconds_count{model_name=\"m\"} 3.0\n\
         sglang_inter_token_latency_seconds_sum{model_name=\"m\"} 0.03\n",
    );
    assert_eq!(s.engine, Engine::Sglang);
    assert_eq!(s.generation, "sglang-0.4");
    let m = only_model(&s);
    assert_eq!(m.number(Canonical::RequestsRunning), Some(6.0));
    // Without an aborted counter, every finished request is a success and failures are unknown.
    assert_eq!(m.number(Canonical::RequestSuccessTotal), Some(9.0));
    assert_eq!(m.number(Canonical::RequestFailureTotal), None);
    assert_eq!(
        m.histogram(Canonical::InterTokenLatencySeconds)
            .map(|h| h.count),
        Some(3.0)
    );
}

#[test]
fn sglang_0_4_function_timers_with_a_name_label_do_not_become_a_model() {
    let s = snap(
        "# TYPE sglang:num_running_reqs gauge\n\
         sglang:num_running_reqs{model_name=\"m\"} 1.0\n\
         # TYPE sglang:func_latency_seconds histogram\n\
         sglang:func_latency_seconds_bucket{le=\"0.07500000000000001\",name=\"generate_request\"} 1.0\n\
         sglang:func_latency_seconds_bucket{le=\"+Inf\",name=\"generate_request\"} 1.0\n\
         sglang:func_latency_seconds_count{name=\"generate_request\"} 1.0\n\
         sglang:func_latency_seconds_sum{name=\"generate_request\"} 0.01\n",
    );
    assert_eq!(s.generation, "sglang-0.4");
    assert_eq!(only_model(&s).model, "m");
    assert_eq!(s.unknown_families, 1);
}
