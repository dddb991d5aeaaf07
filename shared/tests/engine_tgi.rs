//! The TGI adapter on expositions in the Rust `metrics-exporter-prometheus` style: counters without
//! `_total`, a blank line after each family, float-noise bucket bounds, no model label, no TTFT,
//! and (before 0.5) summaries instead of histograms.

use perfagent::engine::normalize;
use perfagent::promtext::{parse, Mode};
use perfagent::snapshot::{Canonical, Engine, Snapshot};

fn snap(text: &str) -> Snapshot {
    let exp = parse(text.as_bytes(), Mode::Lenient).unwrap_or_else(|e| panic!("{e}"));
    normalize(&exp, Some(Engine::Tgi)).unwrap_or_else(|e| panic!("{e}"))
}

const TGI_V3: &str = r#"# HELP tgi_request_count Total number of requests
# TYPE tgi_request_count counter
tgi_request_count 12

# HELP tgi_request_success Number of successful requests
# TYPE tgi_request_success counter
tgi_request_success 10

# HELP tgi_request_failure Number of failed requests
# TYPE tgi_request_failure counter
tgi_request_failure{err="validation"} 1
tgi_request_failure{err="overloaded"} 1

# HELP tgi_queue_size Current queue size
# TYPE tgi_queue_size gauge
tgi_queue_size 3

# HELP tgi_batch_current_size Current batch size
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 4

# TYPE tgi_batch_max_total_tokens gauge
tgi_batch_max_total_tokens 16000

# HELP tgi_request_validation_duration Time spent validating the request in seconds
# TYPE tgi_request_validation_duration histogram
tgi_request_validation_duration_bucket{le="0.00015"} 0
tgi_request_validation_duration_bucket{le="0.00022500000000000002"} 4
tgi_request_validation_duration_bucket{le="0.00033750000000000002"} 11
tgi_request_validation_duration_bucket{le="+Inf"} 11
tgi_request_validation_duration_sum 0.0022
tgi_request_validation_duration_count 11

# HELP tgi_request_queue_duration Time spent in the queue per request in seconds
# TYPE tgi_request_queue_duration histogram
tgi_request_queue_duration_bucket{le="0.00015"} 2
tgi_request_queue_duration_bucket{le="0.00022500000000000002"} 2
tgi_request_queue_duration_bucket{le="0.00033750000000000002"} 3
tgi_request_queue_duration_bucket{le="+Inf"} 10
tgi_request_queue_duration_sum 0.5
tgi_request_queue_duration_count 10

# HELP tgi_batch_inference_duration Batch inference duration
# TYPE tgi_batch_inference_duration histogram
tgi_batch_inference_duration_bucket{method="prefill",le="0.00015"} 0
tgi_batch_inference_duration_bucket{method="prefill",le="+Inf"} 4
tgi_batch_inference_duration_sum{method="prefill"} 0.8
tgi_batch_inference_duration_count{method="prefill"} 4
tgi_batch_inference_duration_bucket{method="decode",le="0.00015"} 0
tgi_batch_inference_duration_bucket{method="decode",le="+Inf"} 200
tgi_batch_inference_duration_sum{method="decode"} 3
tgi_batch_inference_duration_count{method="decode"} 200

# HELP tgi_request_duration Total time spent processing the request (e2e latency)
# TYPE tgi_request_duration histogram
tgi_request_duration_bucket{le="0.00015"} 0
tgi_request_duration_bucket{le="+Inf"} 10
tgi_request_duration_sum 25
tgi_request_duration_count 10

# HELP tgi_request_mean_time_per_token_duration Mean time per token per request (in seconds)
# TYPE tgi_request_mean_time_per_token_duration histogram
tgi_request_mean_time_per_token_duration_bucket{le="0.00015"} 0
tgi_request_mean_time_per_token_duration_bucket{le="+Inf"} 10
tgi_request_mean_time_per_token_duration_sum 0.3
tgi_request_mean_time_per_token_duration_count 10

# HELP tgi_request_input_length Input token length per request
# TYPE tgi_request_input_length histogram
tgi_request_input_length_bucket{le="100"} 9
tgi_request_input_length_bucket{le="+Inf"} 10
tgi_request_input_length_sum 640
tgi_request_input_length_count 10

# HELP tgi_request_generated_tokens Generated tokens per request
# TYPE tgi_request_generated_tokens histogram
tgi_request_generated_tokens_bucket{le="100"} 2
tgi_request_generated_tokens_bucket{le="+Inf"} 10
tgi_request_generated_tokens_sum 1500
tgi_request_generated_tokens_count 10

"#;

#[test]
fn tgi_is_detected_and_its_model_is_the_unnamed_one() {
    let exp = parse(TGI_V3.as_bytes(), Mode::Lenient).expect("parses");
    let s = normalize(&exp, None).expect("normalizes");
    assert_eq!(s.engine, Engine::Tgi);
    assert_eq!(s.generation, "tgi");
    assert_eq!(s.models.len(), 1);
    assert_eq!(s.models[0].model, "");
}

#[test]
fn tgi_counters_without_total_and_gauges_are_mapped() {
    let s = snap(TGI_V3);
    let m = &s.models[0];
    assert_eq!(m.number(Canonical::RequestsRunning), Some(4.0));
    assert_eq!(m.number(Canonical::RequestsWaiting), Some(3.0));
    assert_eq!(m.number(Canonical::RequestSuccessTotal), Some(10.0));
    assert_eq!(m.number(Canonical::RequestFailureTotal), Some(2.0));
}

#[test]
fn tgi_token_totals_come_from_the_length_histograms_sums() {
    let s = snap(TGI_V3);
    let m = &s.models[0];
    assert_eq!(m.number(Canonical::PromptTokensTotal), Some(640.0));
    assert_eq!(m.number(Canonical::GenerationTokensTotal), Some(1500.0));
    assert!(s
        .notes
        .iter()
        .any(|n| n.contains("tgi_request_input_length")));
}

#[test]
fn tgi_latency_histograms_keep_their_float_noise_bounds() {
    let s = snap(TGI_V3);
    let m = &s.models[0];
    let queue = m.histogram(Canonical::QueueTimeSeconds).expect("queue");
    assert_eq!(queue.count, 10.0);
    assert_eq!(
        queue.buckets,
        vec![
            (0.00015, 2.0),
            (0.00022500000000000002, 2.0),
            (0.0003375, 3.0),
            (f64::INFINITY, 10.0)
        ]
    );
    assert_eq!(
        m.histogram(Canonical::E2eLatencySeconds).map(|h| h.sum),
        Some(25.0)
    );
    let itl = m
        .histogram(Canonical::InterTokenLatencySeconds)
        .expect("itl");
    assert_eq!((itl.count, itl.sum), (10.0, 0.3));
}

#[test]
fn tgi_ttft_is_estimated_from_validation_queue_and_prefill_means() {
    let s = snap(TGI_V3);
    let ttft = s.models[0]
        .histogram(Canonical::TtftSeconds)
        .expect("estimated ttft");
    // 10 queued requests × (0.0022/11 validation + 0.5/10 queue + 0.8/4 prefill batch).
    assert_eq!(ttft.count, 10.0);
    assert!(
        (ttft.sum - 10.0 * (0.0002 + 0.05 + 0.2)).abs() < 1e-9,
        "{}",
        ttft.sum
    );
    assert!(ttft.buckets.is_empty(), "a mean estimate has no buckets");
    assert!(s
        .notes
        .iter()
        .any(|n| n.contains("ttft_seconds is estimated")));
}

#[test]
fn tgi_leaves_what_it_does_not_export_absent() {
    let s = snap(TGI_V3);
    let m = &s.models[0];
    for absent in [
        Canonical::KvCacheUsageRatio,
        Canonical::PreemptionsTotal,
        Canonical::PrefixCacheQueriesTotal,
        Canonical::PrefixCacheHitsTotal,
    ] {
        assert!(!m.metrics.contains_key(&absent), "{absent}");
    }
    // tgi_request_count and tgi_batch_max_total_tokens.
    assert_eq!(s.unknown_families, 2);
}

#[test]
fn tgi_without_the_prefill_duration_has_no_ttft_and_says_why() {
    let s = snap(
        "# TYPE tgi_request_queue_duration histogram\n\
         tgi_request_queue_duration_bucket{le=\"+Inf\"} 3\n\
         tgi_request_queue_duration_sum 0.3\n\
         tgi_request_queue_duration_count 3\n\n",
    );
    assert!(s.models[0].histogram(Canonical::TtftSeconds).is_none());
    assert!(s.notes.iter().any(|n| n.contains("ttft_seconds is absent")));
}

#[test]
fn an_old_tgi_exporting_summaries_gives_count_and_sum_histograms() {
    let s = snap(
        "# TYPE tgi_request_duration summary\n\
         tgi_request_duration{quantile=\"0.5\"} 1.2\n\
         tgi_request_duration{quantile=\"0.99\"} 4.0\n\
         tgi_request_duration_sum 30\n\
         tgi_request_duration_count 20\n\
         \n\
         # TYPE tgi_request_input_length summary\n\
         tgi_request_input_length{quantile=\"0.5\"} 12\n\
         tgi_request_input_length_sum 400\n\
         tgi_request_input_length_count 20\n",
    );
    let m = &s.models[0];
    let e2e = m.histogram(Canonical::E2eLatencySeconds).expect("e2e");
    assert_eq!((e2e.count, e2e.sum), (20.0, 30.0));
    assert!(e2e.buckets.is_empty());
    assert_eq!(m.number(Canonical::PromptTokensTotal), Some(400.0));
    assert!(s.notes.iter().any(|n| n.contains("summaries")));
}
