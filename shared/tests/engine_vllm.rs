//! The vLLM adapter on small expositions written in each generation's style (V0, V1 with several
//! engines or models, Ray Serve): names, labels and aggregation rules from the metrics catalog.

use perfagent::engine::normalize;
use perfagent::promtext::{parse, Mode};
use perfagent::snapshot::{Canonical, Engine, ModelMetrics, Snapshot};

fn snap(text: &str) -> Snapshot {
    let exp = parse(text.as_bytes(), Mode::Lenient).unwrap_or_else(|e| panic!("{e}"));
    normalize(&exp, None).unwrap_or_else(|e| panic!("{e}"))
}

fn model<'s>(snap: &'s Snapshot, name: &str) -> &'s ModelMetrics {
    snap.models
        .iter()
        .find(|m| m.model == name)
        .unwrap_or_else(|| panic!("no model {name:?} in {:?}", snap.models))
}

const V0: &str = r#"# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="facebook/opt-125m"} 2.0
# TYPE vllm:num_requests_swapped gauge
vllm:num_requests_swapped{model_name="facebook/opt-125m"} 0.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="facebook/opt-125m"} 1.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="facebook/opt-125m"} 0.25
# TYPE vllm:cpu_cache_usage_perc gauge
vllm:cpu_cache_usage_perc{model_name="facebook/opt-125m"} 0.0
# TYPE vllm:gpu_prefix_cache_hit_rate gauge
vllm:gpu_prefix_cache_hit_rate{model_name="facebook/opt-125m"} -1.0
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{model_name="facebook/opt-125m"} 3.0
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{model_name="facebook/opt-125m"} 1000.0
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{model_name="facebook/opt-125m"} 5000.0
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.001",model_name="facebook/opt-125m"} 0.0
vllm:time_to_first_token_seconds_bucket{le="0.005",model_name="facebook/opt-125m"} 4.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="facebook/opt-125m"} 10.0
vllm:time_to_first_token_seconds_count{model_name="facebook/opt-125m"} 10.0
vllm:time_to_first_token_seconds_sum{model_name="facebook/opt-125m"} 0.5
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_bucket{le="0.01",model_name="facebook/opt-125m"} 100.0
vllm:time_per_output_token_seconds_bucket{le="+Inf",model_name="facebook/opt-125m"} 4990.0
vllm:time_per_output_token_seconds_count{model_name="facebook/opt-125m"} 4990.0
vllm:time_per_output_token_seconds_sum{model_name="facebook/opt-125m"} 99.8
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le="1.0",model_name="facebook/opt-125m"} 1.0
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="facebook/opt-125m"} 10.0
vllm:e2e_request_latency_seconds_count{model_name="facebook/opt-125m"} 10.0
vllm:e2e_request_latency_seconds_sum{model_name="facebook/opt-125m"} 30.0
# TYPE vllm:request_success_total counter
vllm:request_success_total{finished_reason="stop",model_name="facebook/opt-125m"} 8.0
vllm:request_success_total{finished_reason="length",model_name="facebook/opt-125m"} 2.0
# TYPE vllm:avg_prompt_throughput_toks_per_s gauge
vllm:avg_prompt_throughput_toks_per_s{model_name="facebook/opt-125m"} 0.0
"#;

#[test]
fn vllm_v0_is_recognized_by_its_v0_only_names() {
    let s = snap(V0);
    assert_eq!(s.engine, Engine::Vllm);
    assert_eq!(s.generation, "vllm-v0");
}

#[test]
fn vllm_v0_maps_its_gauges_counters_and_per_iteration_tpot() {
    let s = snap(V0);
    let m = model(&s, "facebook/opt-125m");
    assert_eq!(m.number(Canonical::RequestsRunning), Some(2.0));
    assert_eq!(m.number(Canonical::RequestsWaiting), Some(1.0));
    assert_eq!(m.number(Canonical::KvCacheUsageRatio), Some(0.25));
    assert_eq!(m.number(Canonical::PreemptionsTotal), Some(3.0));
    assert_eq!(m.number(Canonical::PromptTokensTotal), Some(1000.0));
    assert_eq!(m.number(Canonical::GenerationTokensTotal), Some(5000.0));
    assert_eq!(m.number(Canonical::RequestSuccessTotal), Some(10.0));
    assert_eq!(m.number(Canonical::RequestFailureTotal), Some(0.0));
    let itl = m
        .histogram(Canonical::InterTokenLatencySeconds)
        .expect("itl");
    assert_eq!((itl.count, itl.sum), (4990.0, 99.8));
    let ttft = m.histogram(Canonical::TtftSeconds).expect("ttft");
    assert_eq!(
        ttft.buckets,
        vec![(0.001, 0.0), (0.005, 4.0), (f64::INFINITY, 10.0)]
    );
    // V0 had no queue-time histogram before ≈0.6.4.
    assert!(m.histogram(Canonical::QueueTimeSeconds).is_none());
}

#[test]
fn vllm_v0_hit_rate_gauge_does_not_become_prefix_cache_counters() {
    let s = snap(V0);
    let m = model(&s, "facebook/opt-125m");
    assert_eq!(m.number(Canonical::PrefixCacheQueriesTotal), None);
    assert_eq!(m.number(Canonical::PrefixCacheHitsTotal), None);
    assert!(s
        .notes
        .iter()
        .any(|n| n.contains("gpu_prefix_cache_hit_rate")));
    // num_requests_swapped, cpu_cache_usage_perc, the hit-rate gauge, avg throughput.
    assert_eq!(s.unknown_families, 4);
}

const TWO_ENGINES: &str = r#"# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 5.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 0.0
vllm:num_requests_waiting{engine="1",model_name="m"} 2.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.2
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.6
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 10.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 1.0
vllm:request_success_total{engine="0",finished_reason="abort",model_name="m"} 2.0
vllm:request_success_total{engine="1",finished_reason="stop",model_name="m"} 20.0
vllm:request_success_total{engine="1",finished_reason="length",model_name="m"} 0.0
vllm:request_success_total{engine="1",finished_reason="abort",model_name="m"} 1.0
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 100.0
vllm:prefix_cache_queries_total{engine="1",model_name="m"} 300.0
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 10.0
vllm:prefix_cache_hits_total{engine="1",model_name="m"} 30.0
# TYPE vllm:inter_token_latency_seconds histogram
vllm:inter_token_latency_seconds_bucket{engine="0",le="0.01",model_name="m"} 5.0
vllm:inter_token_latency_seconds_bucket{engine="0",le="0.025",model_name="m"} 8.0
vllm:inter_token_latency_seconds_bucket{engine="0",le="+Inf",model_name="m"} 9.0
vllm:inter_token_latency_seconds_count{engine="0",model_name="m"} 9.0
vllm:inter_token_latency_seconds_sum{engine="0",model_name="m"} 0.1
vllm:inter_token_latency_seconds_bucket{engine="1",le="0.01",model_name="m"} 1.0
vllm:inter_token_latency_seconds_bucket{engine="1",le="0.025",model_name="m"} 2.0
vllm:inter_token_latency_seconds_bucket{engine="1",le="+Inf",model_name="m"} 3.0
vllm:inter_token_latency_seconds_count{engine="1",model_name="m"} 3.0
vllm:inter_token_latency_seconds_sum{engine="1",model_name="m"} 0.05
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 999.0
vllm:time_per_output_token_seconds_count{engine="0",model_name="m"} 999.0
vllm:time_per_output_token_seconds_sum{engine="0",model_name="m"} 9.0
"#;

#[test]
fn two_data_parallel_engines_sum_requests_and_average_kv_usage() {
    let s = snap(TWO_ENGINES);
    assert_eq!(s.generation, "vllm-v1");
    assert_eq!(s.models.len(), 1);
    let m = model(&s, "m");
    assert_eq!(m.number(Canonical::RequestsRunning), Some(8.0));
    assert_eq!(m.number(Canonical::RequestsWaiting), Some(2.0));
    assert_eq!(m.number(Canonical::KvCacheUsageRatio), Some(0.4));
    assert!(s.notes.iter().any(|n| n.contains("mean over the engines")));
}

#[test]
fn two_data_parallel_engines_sum_counters_and_split_aborts_into_failures() {
    let s = snap(TWO_ENGINES);
    let m = model(&s, "m");
    assert_eq!(m.number(Canonical::RequestSuccessTotal), Some(31.0));
    assert_eq!(m.number(Canonical::RequestFailureTotal), Some(3.0));
    assert_eq!(m.number(Canonical::PrefixCacheQueriesTotal), Some(400.0));
    assert_eq!(m.number(Canonical::PrefixCacheHitsTotal), Some(40.0));
}

#[test]
fn two_data_parallel_engines_merge_histograms_bucket_by_bucket() {
    let s = snap(TWO_ENGINES);
    let itl = model(&s, "m")
        .histogram(Canonical::InterTokenLatencySeconds)
        .expect("itl")
        .clone();
    assert_eq!(itl.count, 12.0);
    assert!((itl.sum - 0.15).abs() < 1e-12);
    assert_eq!(
        itl.buckets,
        vec![(0.01, 6.0), (0.025, 10.0), (f64::INFINITY, 12.0)]
    );
}

#[test]
fn the_current_itl_name_wins_over_the_deprecated_tpot_exported_beside_it() {
    let s = snap(TWO_ENGINES);
    let itl = model(&s, "m").histogram(Canonical::InterTokenLatencySeconds);
    assert_eq!(itl.map(|h| h.count), Some(12.0));
}

#[test]
fn a_deprecated_name_listed_after_the_current_one_does_not_replace_it() {
    let s = snap(
        "# TYPE vllm:kv_cache_usage_perc gauge\n\
         vllm:kv_cache_usage_perc{model_name=\"m\"} 0.5\n\
         # TYPE vllm:gpu_cache_usage_perc gauge\n\
         vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.9\n\
         # TYPE vllm:gpu_prefix_cache_hits_total counter\n\
         vllm:gpu_prefix_cache_hits_total{model_name=\"m\"} 7.0\n\
         # TYPE vllm:prefix_cache_hits_total counter\n\
         vllm:prefix_cache_hits_total{model_name=\"m\"} 9.0\n",
    );
    let m = model(&s, "m");
    assert_eq!(m.number(Canonical::KvCacheUsageRatio), Some(0.5));
    assert_eq!(m.number(Canonical::PrefixCacheHitsTotal), Some(9.0));
    // Recognized, so not unknown, though not used.
    assert_eq!(s.unknown_families, 0);
}

#[test]
fn two_models_on_one_server_are_kept_apart_and_sorted() {
    let s = snap(
        "# TYPE vllm:num_requests_running gauge\n\
         vllm:num_requests_running{model_name=\"zeta\"} 1.0\n\
         vllm:num_requests_running{model_name=\"alpha\"} 4.0\n\
         # TYPE vllm:prompt_tokens_total counter\n\
         vllm:prompt_tokens_total{model_name=\"zeta\"} 10.0\n\
         vllm:prompt_tokens_total{model_name=\"alpha\"} 40.0\n",
    );
    let names: Vec<&str> = s.models.iter().map(|m| m.model.as_str()).collect();
    assert_eq!(names, ["alpha", "zeta"]);
    assert_eq!(
        model(&s, "alpha").number(Canonical::RequestsRunning),
        Some(4.0)
    );
    assert_eq!(
        model(&s, "zeta").number(Canonical::PromptTokensTotal),
        Some(10.0)
    );
    // A quantity not exported is absent, not zero.
    assert_eq!(model(&s, "zeta").number(Canonical::PreemptionsTotal), None);
}

const RAY: &str = r#"# HELP ray_vllm:num_requests_running Number of requests currently running on GPU.
# TYPE ray_vllm:num_requests_running gauge
ray_vllm:num_requests_running{Component="core_worker",NodeAddress="10.0.0.5",ReplicaId="r1",SessionName="session_x",Version="2.40.0",WorkerId="aa11",application="llm",deployment="LLMServer:qwen",model_name="qwen-0.5b"} 2.0
ray_vllm:num_requests_running{Component="core_worker",NodeAddress="10.0.0.5",ReplicaId="r2",SessionName="session_x",Version="2.40.0",WorkerId="bb22",application="llm",deployment="LLMServer:qwen",model_name="qwen-0.5b"} 3.0
# HELP ray_vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE ray_vllm:gpu_cache_usage_perc gauge
ray_vllm:gpu_cache_usage_perc{Component="core_worker",NodeAddress="10.0.0.5",ReplicaId="r1",SessionName="session_x",Version="2.40.0",WorkerId="aa11",application="llm",deployment="LLMServer:qwen",model_name="qwen-0.5b"} 0.1
ray_vllm:gpu_cache_usage_perc{Component="core_worker",NodeAddress="10.0.0.5",ReplicaId="r2",SessionName="session_x",Version="2.40.0",WorkerId="bb22",application="llm",deployment="LLMServer:qwen",model_name="qwen-0.5b"} 0.3
# HELP ray_vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE ray_vllm:prompt_tokens_total counter
ray_vllm:prompt_tokens_total{Component="core_worker",NodeAddress="10.0.0.5",ReplicaId="r1",SessionName="session_x",Version="2.40.0",WorkerId="aa11",application="llm",deployment="LLMServer:qwen",model_name="qwen-0.5b"} 500.0
ray_vllm:prompt_tokens_total{Component="core_worker",NodeAddress="10.0.0.5",ReplicaId="r2",SessionName="session_x",Version="2.40.0",WorkerId="bb22",application="llm",deployment="LLMServer:qwen",model_name="qwen-0.5b"} 700.0
# HELP ray_vllm:avg_generation_throughput_toks_per_s Average generation throughput in tokens/s.
# TYPE ray_vllm:avg_generation_throughput_toks_per_s gauge
ray_vllm:avg_generation_throughput_toks_per_s{Component="core_worker",NodeAddress="10.0.0.5",ReplicaId="r1",SessionName="session_x",Version="2.40.0",WorkerId="aa11",application="llm",deployment="LLMServer:qwen",model_name="qwen-0.5b"} 12.5
# HELP ray_vllm:avg_generation_throughput_toks_per_s Average generation throughput in tokens/s.
# TYPE ray_vllm:avg_generation_throughput_toks_per_s gauge
# HELP ray_vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE ray_vllm:time_to_first_token_seconds histogram
ray_vllm:time_to_first_token_seconds_bucket{Component="core_worker",NodeAddress="10.0.0.5",ReplicaId="r1",SessionName="session_x",Version="2.40.0",WorkerId="aa11",application="llm",deployment="LLMServer:qwen",le="0.1",model_name="qwen-0.5b"} 4.0
ray_vllm:time_to_first_token_seconds_bucket{Component="core_worker",NodeAddress="10.0.0.5",ReplicaId="r1",SessionName="session_x",Version="2.40.0",WorkerId="aa11",application="llm",deployment="LLMServer:qwen",le="+Inf",model_name="qwen-0.5b"} 5.0
ray_vllm:time_to_first_token_seconds_count{Component="core_worker",NodeAddress="10.0.0.5",ReplicaId="r1",SessionName="session_x",Version="2.40.0",WorkerId="aa11",application="llm",deployment="LLMServer:qwen",model_name="qwen-0.5b"} 5.0
ray_vllm:time_to_first_token_seconds_sum{Component="core_worker",NodeAddress="10.0.0.5",ReplicaId="r1",SessionName="session_x",Version="2.40.0",WorkerId="aa11",application="llm",deployment="LLMServer:qwen",model_name="qwen-0.5b"} 0.4
ray_vllm:time_to_first_token_seconds_bucket{Component="core_worker",NodeAddress="10.0.0.5",ReplicaId="r2",SessionName="session_x",Version="2.40.0",WorkerId="bb22",application="llm",deployment="LLMServer:qwen",le="0.1",model_name="qwen-0.5b"} 1.0
ray_vllm:time_to_first_token_seconds_bucket{Component="core_worker",NodeAddress="10.0.0.5",ReplicaId="r2",SessionName="session_x",Version="2.40.0",WorkerId="bb22",application="llm",deployment="LLMServer:qwen",le="+Inf",model_name="qwen-0.5b"} 2.0
ray_vllm:time_to_first_token_seconds_count{Component="core_worker",NodeAddress="10.0.0.5",ReplicaId="r2",SessionName="session_x",Version="2.40.0",WorkerId="bb22",application="llm",deployment="LLMServer:qwen",model_name="qwen-0.5b"} 2.0
ray_vllm:time_to_first_token_seconds_sum{Component="core_worker",NodeAddress="10.0.0.5",ReplicaId="r2",SessionName="session_x",Version="2.40.0",WorkerId="bb22",application="llm",deployment="LLMServer:qwen",model_name="qwen-0.5b"} 0.3
# HELP ray_serve_num_http_requests_total The number of HTTP requests processed.
# TYPE ray_serve_num_http_requests_total counter
ray_serve_num_http_requests_total{application="llm",method="POST",route="/v1"} 7.0
"#;

#[test]
fn vllm_behind_ray_serve_is_its_own_generation_with_replicas_aggregated() {
    let s = snap(RAY);
    assert_eq!(s.engine, Engine::Vllm);
    assert_eq!(s.generation, "ray-vllm");
    assert_eq!(s.models.len(), 1, "Ray's labels must not split the model");
    let m = model(&s, "qwen-0.5b");
    assert_eq!(m.number(Canonical::RequestsRunning), Some(5.0));
    assert_eq!(m.number(Canonical::KvCacheUsageRatio), Some(0.2));
    assert_eq!(m.number(Canonical::PromptTokensTotal), Some(1200.0));
    let ttft = m.histogram(Canonical::TtftSeconds).expect("ttft");
    assert_eq!(ttft.count, 7.0);
    assert_eq!(ttft.buckets, vec![(0.1, 5.0), (f64::INFINITY, 7.0)]);
    // The duplicated throughput family is one family; Ray's own counter is unknown.
    assert_eq!(s.unknown_families, 2);
}

#[test]
fn ray_names_with_underscores_and_counters_without_total_are_read_too() {
    let s = snap(
        "# TYPE ray_vllm_num_requests_waiting gauge\n\
         ray_vllm_num_requests_waiting{ReplicaId=\"r1\",WorkerId=\"w\",model_name=\"q\"} 4.0\n\
         # TYPE ray_vllm_generation_tokens counter\n\
         ray_vllm_generation_tokens{ReplicaId=\"r1\",WorkerId=\"w\",model_name=\"q\"} 70.0\n",
    );
    assert_eq!(s.generation, "ray-vllm");
    let m = model(&s, "q");
    assert_eq!(m.number(Canonical::RequestsWaiting), Some(4.0));
    assert_eq!(m.number(Canonical::GenerationTokensTotal), Some(70.0));
}

#[test]
fn a_nan_gauge_from_a_broken_exporter_is_skipped_not_summed() {
    let s = snap(
        "# TYPE vllm:num_requests_running gauge\n\
         vllm:num_requests_running{engine=\"0\",model_name=\"m\"} NaN\n\
         vllm:num_requests_running{engine=\"1\",model_name=\"m\"} 2.0\n",
    );
    assert_eq!(model(&s, "m").number(Canonical::RequestsRunning), Some(2.0));
}
