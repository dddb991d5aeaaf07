//! Bottleneck detection over windows of canonical snapshots: every type, every severity boundary,
//! what each engine does not export, noisy single samples, idle servers, single-snapshot
//! detection and the group quorum.

use perfagent::analysis::{
    analyze_group, analyze_instance, detect_from_snapshot, AnalysisBasis, BottleneckType,
    Comparison, Confidence, InstanceAnalysis, NotEvaluated, NotEvaluatedCause, Severity, Statistic,
    Thresholds,
};
use perfagent::engine::normalize;
use perfagent::promtext::{parse, Mode};
use perfagent::snapshot::{Canonical, Engine, Histogram, MetricValue, ModelMetrics};
use perfagent::window::Point;
use BottleneckType::*;
use Canonical::*;

const INF: f64 = f64::INFINITY;
const STEP_MS: i64 = 30_000;
const T0_MS: i64 = 1_700_000_000_000;
/// Latency bucket bounds used by the synthetic histograms.
const BOUNDS: [f64; 6] = [0.05, 0.1, 0.2, 0.5, 1.0, INF];

fn num(v: f64) -> MetricValue {
    MetricValue::Number(v)
}

/// A cumulative latency histogram with `count` observations, all in the bucket ending at
/// `BOUNDS[bucket]`, each of them `sum / count` seconds.
fn latency(count: f64, bucket: usize) -> MetricValue {
    MetricValue::Histogram(Histogram {
        count,
        sum: count * BOUNDS.get(bucket).copied().unwrap_or(1.0).min(1.0) * 0.9,
        buckets: BOUNDS
            .iter()
            .enumerate()
            .map(|(i, &le)| (le, if i >= bucket { count } else { 0.0 }))
            .collect(),
    })
}

/// `count` snapshots 30 s apart; `at(i)` gives the i-th snapshot's metrics.
fn series(
    count: usize,
    at: impl Fn(usize) -> Vec<(Canonical, MetricValue)>,
) -> Vec<(i64, ModelMetrics)> {
    (0..count)
        .map(|i| {
            (
                T0_MS + i as i64 * STEP_MS,
                ModelMetrics {
                    model: "m".into(),
                    metrics: at(i).into_iter().collect(),
                },
            )
        })
        .collect()
}

fn points(s: &[(i64, ModelMetrics)]) -> Vec<Point<'_>> {
    s.iter()
        .map(|(at_ms, metrics)| Point {
            at_ms: *at_ms,
            metrics,
        })
        .collect()
}

fn analyze(s: &[(i64, ModelMetrics)], engine: Engine) -> InstanceAnalysis {
    analyze_instance(&points(s), engine, &Thresholds::default())
}

fn severity(a: &InstanceAnalysis, kind: BottleneckType) -> Option<Severity> {
    a.bottleneck(kind).map(|b| b.severity)
}

fn not_evaluated(
    a: &InstanceAnalysis,
    kind: BottleneckType,
    metric: Canonical,
) -> Option<&NotEvaluated> {
    a.not_evaluated
        .iter()
        .find(|n| n.kind == kind && n.metric == Some(metric))
}

/// Ten snapshots whose KV usage is `kv(i)` (and nothing else).
fn kv_series(kv: impl Fn(usize) -> f64) -> Vec<(i64, ModelMetrics)> {
    series(10, |i| vec![(KvCacheUsageRatio, num(kv(i)))])
}

// ---------------------------------------------------------------- MEMORY_PRESSURE

#[test]
fn kv_usage_held_above_80_percent_is_medium_memory_pressure_with_its_evidence() {
    let s = kv_series(|i| 0.82 + 0.003 * i as f64);
    let a = analyze(&s, Engine::Vllm);
    let b = a.bottleneck(MemoryPressure).expect("memory pressure");
    assert_eq!(b.severity, Severity::Medium);
    assert_eq!(b.confidence, Confidence::High);
    assert_eq!(b.priority, 1);
    let e = &b.evidence[0];
    assert_eq!(e.metric, KvCacheUsageRatio);
    assert_eq!(e.statistic, Statistic::SustainedLevel);
    assert_eq!(e.comparison, Comparison::Gte);
    assert_eq!(e.threshold, Some(0.8));
    assert_eq!(e.samples, 10.0);
    assert_eq!(
        (e.window_start_ms, e.window_end_ms),
        (T0_MS, T0_MS + 9 * STEP_MS)
    );
    // 8 of 10 points are at or above the 3rd value from the bottom: 0.826.
    assert!((e.value - 0.826).abs() < 1e-9, "{}", e.value);
    assert!(b.description.contains("83%"), "{}", b.description);
    assert!(b.description.contains("threshold 80%"), "{}", b.description);
}

#[test]
fn memory_severity_boundaries_are_80_90_95_percent_and_preemptions() {
    let t = Thresholds::default();
    let cases = [
        (Some(0.799), false, None),
        (Some(0.80), false, Some(Severity::Medium)),
        (Some(0.899), false, Some(Severity::Medium)),
        (Some(0.90), false, Some(Severity::High)),
        (Some(0.949), false, Some(Severity::High)),
        (Some(0.95), false, Some(Severity::Critical)),
        (Some(0.80), true, Some(Severity::Critical)),
        (Some(0.5), true, Some(Severity::High)),
        (None, true, Some(Severity::High)),
        (None, false, None),
    ];
    for (level, preempted, want) in cases {
        assert_eq!(
            t.memory_severity(level, preempted),
            want,
            "{level:?} {preempted}"
        );
    }
}

#[test]
fn memory_boundaries_hold_through_a_window() {
    for (kv, want) in [
        (0.79, None),
        (0.80, Some(Severity::Medium)),
        (0.90, Some(Severity::High)),
        (0.95, Some(Severity::Critical)),
    ] {
        let a = analyze(&kv_series(|_| kv), Engine::Vllm);
        assert_eq!(severity(&a, MemoryPressure), want, "kv {kv}");
    }
}

#[test]
fn preemptions_while_kv_is_high_are_critical_and_alone_are_high() {
    let high = series(10, |i| {
        vec![
            (KvCacheUsageRatio, num(0.85)),
            (PreemptionsTotal, num(if i < 5 { 0.0 } else { 3.0 })),
        ]
    });
    let a = analyze(&high, Engine::Vllm);
    let b = a.bottleneck(MemoryPressure).expect("memory pressure");
    assert_eq!(b.severity, Severity::Critical);
    let p = b
        .evidence
        .iter()
        .find(|e| e.metric == PreemptionsTotal)
        .expect("preemption evidence");
    assert_eq!((p.value, p.statistic), (3.0, Statistic::Increase));
    assert!(b.description.contains("3 request(s) preempted"));

    let low = series(10, |i| {
        vec![
            (KvCacheUsageRatio, num(0.5)),
            (PreemptionsTotal, num(i as f64)),
        ]
    });
    assert_eq!(
        severity(&analyze(&low, Engine::Vllm), MemoryPressure),
        Some(Severity::High)
    );
}

#[test]
fn a_single_noisy_sample_never_fires() {
    let kv = kv_series(|i| if i == 4 { 0.99 } else { 0.3 });
    assert_eq!(severity(&analyze(&kv, Engine::Vllm), MemoryPressure), None);
    let queue = series(10, |i| {
        vec![(RequestsWaiting, num(if i == 7 { 80.0 } else { 0.0 }))]
    });
    let a = analyze(&queue, Engine::Vllm);
    assert!(a.evaluated.contains(&QueueBuildup));
    assert_eq!(severity(&a, QueueBuildup), None);
}

#[test]
fn the_condition_must_hold_on_80_percent_of_the_points() {
    let eight = kv_series(|i| if i < 8 { 0.9 } else { 0.3 });
    assert_eq!(
        severity(&analyze(&eight, Engine::Vllm), MemoryPressure),
        Some(Severity::High)
    );
    let seven = kv_series(|i| if i < 7 { 0.9 } else { 0.3 });
    assert_eq!(
        severity(&analyze(&seven, Engine::Vllm), MemoryPressure),
        None
    );
}

#[test]
fn two_points_are_too_few_for_a_gauge_condition() {
    let s = series(2, |_| vec![(KvCacheUsageRatio, num(0.99))]);
    let a = analyze(&s, Engine::Vllm);
    assert_eq!(severity(&a, MemoryPressure), None);
    let n = not_evaluated(&a, MemoryPressure, KvCacheUsageRatio).expect("listed");
    assert_eq!(n.cause, NotEvaluatedCause::InsufficientData);
    assert!(n.reason.contains("at least 3"), "{}", n.reason);
}

#[test]
fn an_empty_window_evaluates_nothing_and_says_so() {
    let a = analyze(&[], Engine::Vllm);
    assert!(a.bottlenecks.is_empty());
    assert!(a.evaluated.is_empty());
    assert!(a
        .not_evaluated
        .iter()
        .all(|n| n.cause == NotEvaluatedCause::InsufficientData));
    assert_eq!(a.not_evaluated.len(), 7, "{:#?}", a.not_evaluated);
}

// ---------------------------------------------------------------- QUEUE_BUILDUP

#[test]
fn queue_severity_boundaries_are_1_2_and_5_times_the_threshold() {
    for (waiting, want) in [
        (9.0, None),
        (10.0, Some(Severity::Medium)),
        (19.0, Some(Severity::Medium)),
        (20.0, Some(Severity::High)),
        (49.0, Some(Severity::High)),
        (50.0, Some(Severity::Critical)),
    ] {
        let s = series(10, |_| vec![(RequestsWaiting, num(waiting))]);
        assert_eq!(
            severity(&analyze(&s, Engine::Vllm), QueueBuildup),
            want,
            "{waiting}"
        );
    }
}

#[test]
fn queue_buildup_shows_the_time_spent_queueing() {
    let s = series(10, |i| {
        vec![
            (RequestsWaiting, num(25.0)),
            (QueueTimeSeconds, latency(10.0 * i as f64, 3)),
        ]
    });
    let b = analyze(&s, Engine::Vllm)
        .bottleneck(QueueBuildup)
        .cloned()
        .expect("queue");
    assert_eq!(b.severity, Severity::High);
    let ctx = b
        .evidence
        .iter()
        .find(|e| e.metric == QueueTimeSeconds)
        .expect("queue time");
    assert_eq!(ctx.comparison, Comparison::Context);
    assert!((ctx.value - 0.485).abs() < 1e-9);
    assert!(b.description.contains("485 ms"), "{}", b.description);
}

// ---------------------------------------------------------------- HIGH_LATENCY

#[test]
fn ttft_p95_above_100ms_is_high_latency_graded_by_how_far() {
    // All observations in (0.1, 0.2]: p95 = 0.195 (1.95×); in (0.2, 0.5]: p95 = 0.485 (4.85×).
    for (bucket, want) in [
        (1, None),
        (2, Some(Severity::Medium)),
        (3, Some(Severity::Critical)),
    ] {
        let s = series(10, |i| {
            vec![(TtftSeconds, latency(10.0 * i as f64, bucket))]
        });
        let a = analyze(&s, Engine::Vllm);
        assert!(a.evaluated.contains(&HighLatency));
        assert_eq!(severity(&a, HighLatency), want, "bucket {bucket}");
    }
}

#[test]
fn latency_severity_boundaries_are_1_1_5_2_and_4_times_the_threshold() {
    for (ratio, want) in [
        (1.0, None),
        (1.0001, Some(Severity::Low)),
        (1.4999, Some(Severity::Low)),
        (1.5, Some(Severity::Medium)),
        (2.0, Some(Severity::High)),
        (3.9999, Some(Severity::High)),
        (4.0, Some(Severity::Critical)),
        (f64::NAN, None),
    ] {
        assert_eq!(Thresholds::latency_severity(ratio), want, "{ratio}");
    }
}

#[test]
fn the_worse_of_ttft_and_inter_token_latency_sets_the_severity() {
    let s = series(10, |i| {
        vec![
            (TtftSeconds, latency(10.0 * i as f64, 2)),
            (InterTokenLatencySeconds, latency(100.0 * i as f64, 3)),
        ]
    });
    let b = analyze(&s, Engine::Vllm)
        .bottleneck(HighLatency)
        .cloned()
        .expect("latency");
    assert_eq!(b.severity, Severity::Critical);
    assert_eq!(b.evidence.len(), 2);
    assert!(
        b.description.contains("TTFT p95 195 ms"),
        "{}",
        b.description
    );
    assert!(
        b.description.contains("inter-token latency p95 485 ms"),
        "{}",
        b.description
    );
}

#[test]
fn a_quantile_needs_enough_observations() {
    let s = series(10, |i| vec![(TtftSeconds, latency(i as f64, 4))]);
    let a = analyze(&s, Engine::Vllm);
    assert_eq!(severity(&a, HighLatency), None);
    let n = not_evaluated(&a, HighLatency, TtftSeconds).expect("listed");
    assert_eq!(n.cause, NotEvaluatedCause::InsufficientData);
    assert!(
        n.reason.contains("9 ttft_seconds observation(s)"),
        "{}",
        n.reason
    );
}

// ---------------------------------------------------------------- LOW_THROUGHPUT

#[test]
fn a_busy_server_generating_little_has_low_throughput() {
    // 40 tokens/s with 5 requests always waiting.
    let s = series(10, |i| {
        vec![
            (GenerationTokensTotal, num(1200.0 * i as f64)),
            (RequestsWaiting, num(5.0)),
        ]
    });
    let a = analyze(&s, Engine::Vllm);
    let b = a.bottleneck(LowThroughput).expect("low throughput");
    assert_eq!(b.severity, Severity::High);
    assert_eq!(b.evidence[0].metric, GenerationTokensTotal);
    assert!((b.evidence[0].value - 40.0).abs() < 1e-9);
    assert_eq!(b.evidence[1].metric, RequestsWaiting);
    assert!(
        b.description.contains("40.0 generated tokens/s"),
        "{}",
        b.description
    );
}

#[test]
fn an_idle_server_is_not_a_throughput_bottleneck() {
    let s = series(10, |i| {
        vec![
            (GenerationTokensTotal, num(60.0 * i as f64)),
            (RequestsWaiting, num(0.0)),
            (KvCacheUsageRatio, num(0.05)),
        ]
    });
    let a = analyze(&s, Engine::Vllm);
    assert!(a.evaluated.contains(&LowThroughput));
    assert_eq!(severity(&a, LowThroughput), None);
    assert!(a.bottlenecks.is_empty());
}

#[test]
fn a_full_kv_cache_counts_as_demand_too() {
    let s = series(10, |i| {
        vec![
            (GenerationTokensTotal, num(600.0 * i as f64)),
            (RequestsWaiting, num(0.0)),
            (KvCacheUsageRatio, num(0.92)),
        ]
    });
    let a = analyze(&s, Engine::Vllm);
    assert_eq!(severity(&a, LowThroughput), Some(Severity::Critical));
}

#[test]
fn throughput_severity_boundaries_are_1_0_75_0_5_and_0_25_of_the_threshold() {
    for (fraction, want) in [
        (1.0, None),
        (0.9999, Some(Severity::Low)),
        (0.75, Some(Severity::Low)),
        (0.7499, Some(Severity::Medium)),
        (0.5, Some(Severity::Medium)),
        (0.4999, Some(Severity::High)),
        (0.25, Some(Severity::High)),
        (0.2499, Some(Severity::Critical)),
    ] {
        assert_eq!(
            Thresholds::throughput_severity(fraction),
            want,
            "{fraction}"
        );
    }
}

#[test]
fn a_rate_needs_a_long_enough_window() {
    let s: Vec<_> = series(2, |i| {
        vec![
            (GenerationTokensTotal, num(100.0 * i as f64)),
            (RequestsWaiting, num(5.0)),
        ]
    });
    let a = analyze(&s, Engine::Vllm);
    let n = not_evaluated(&a, LowThroughput, GenerationTokensTotal).expect("listed");
    assert_eq!(n.cause, NotEvaluatedCause::InsufficientData);
    assert!(n.reason.contains("30 s window"), "{}", n.reason);
}

// ---------------------------------------------------------------- CACHE_INEFFICIENCY

#[test]
fn a_low_prefix_cache_hit_ratio_is_cache_inefficiency() {
    let s = series(10, |i| {
        vec![
            (PrefixCacheQueriesTotal, num(10_000.0 * i as f64)),
            (PrefixCacheHitsTotal, num(3_000.0 * i as f64)),
        ]
    });
    let a = analyze(&s, Engine::Vllm);
    let b = a.bottleneck(CacheInefficiency).expect("cache");
    assert_eq!(b.severity, Severity::Medium);
    assert_eq!(b.evidence[0].statistic, Statistic::HitRatio);
    assert!((b.evidence[0].value - 0.3).abs() < 1e-9);
    assert!(
        b.description.contains("27000 of 90000"),
        "{}",
        b.description
    );
}

#[test]
fn cache_severity_boundaries_are_1_0_5_and_0_25_of_the_threshold_and_never_critical() {
    for (fraction, want) in [
        (1.0, None),
        (0.9999, Some(Severity::Low)),
        (0.5, Some(Severity::Low)),
        (0.4999, Some(Severity::Medium)),
        (0.25, Some(Severity::Medium)),
        (0.2499, Some(Severity::High)),
        (0.0, Some(Severity::High)),
    ] {
        assert_eq!(Thresholds::cache_severity(fraction), want, "{fraction}");
    }
}

#[test]
fn a_hit_ratio_needs_enough_looked_up_tokens() {
    let s = series(10, |i| {
        vec![
            (PrefixCacheQueriesTotal, num(100.0 * i as f64)),
            (PrefixCacheHitsTotal, num(0.0)),
        ]
    });
    let a = analyze(&s, Engine::Vllm);
    assert_eq!(severity(&a, CacheInefficiency), None);
    let n = not_evaluated(&a, CacheInefficiency, PrefixCacheQueriesTotal).expect("listed");
    assert_eq!(n.cause, NotEvaluatedCause::InsufficientData);
}

// ---------------------------------------------------------------- priority

#[test]
fn bottlenecks_are_ordered_by_severity_then_type_importance() {
    let s = series(10, |_| {
        vec![(KvCacheUsageRatio, num(0.85)), (RequestsWaiting, num(60.0))]
    });
    let a = analyze(&s, Engine::Vllm);
    let order: Vec<_> = a.bottlenecks.iter().map(|b| (b.kind, b.priority)).collect();
    assert_eq!(order, vec![(QueueBuildup, 1), (MemoryPressure, 2)]);

    let tie = series(10, |_| {
        vec![(KvCacheUsageRatio, num(0.92)), (RequestsWaiting, num(25.0))]
    });
    let a = analyze(&tie, Engine::Vllm);
    let order: Vec<_> = a.bottlenecks.iter().map(|b| b.kind).collect();
    assert_eq!(order, vec![MemoryPressure, QueueBuildup]);
}

// ---------------------------------------------------------------- engines, through their adapters

fn adapt(text: &str, engine: Engine) -> ModelMetrics {
    let exp = parse(text.as_bytes(), Mode::Lenient).unwrap_or_else(|e| panic!("{e}"));
    let snap = normalize(&exp, Some(engine)).unwrap_or_else(|e| panic!("{e}"));
    snap.models.into_iter().next().expect("one model")
}

/// A TGI exposition after `i` steps: 15 waiting, 12 running, 10 requests a step, each generating
/// 100 tokens, mean time per token in (0.1, 0.2].
fn tgi(i: usize) -> ModelMetrics {
    let n = 10.0 * i as f64;
    adapt(
        &format!(
            "# TYPE tgi_queue_size gauge\ntgi_queue_size 15\n\n\
             # TYPE tgi_batch_current_size gauge\ntgi_batch_current_size 12\n\n\
             # TYPE tgi_request_success counter\ntgi_request_success {n}\n\n\
             # TYPE tgi_request_failure counter\ntgi_request_failure{{err=\"overloaded\"}} 0\n\n\
             # TYPE tgi_request_generated_tokens histogram\n\
             tgi_request_generated_tokens_bucket{{le=\"+Inf\"}} {n}\n\
             tgi_request_generated_tokens_sum {tokens}\ntgi_request_generated_tokens_count {n}\n\n\
             # TYPE tgi_request_validation_duration histogram\n\
             tgi_request_validation_duration_bucket{{le=\"+Inf\"}} {n}\n\
             tgi_request_validation_duration_sum {v}\ntgi_request_validation_duration_count {n}\n\n\
             # TYPE tgi_request_queue_duration histogram\n\
             tgi_request_queue_duration_bucket{{le=\"0.5\"}} {n}\n\
             tgi_request_queue_duration_bucket{{le=\"+Inf\"}} {n}\n\
             tgi_request_queue_duration_sum {q}\ntgi_request_queue_duration_count {n}\n\n\
             # TYPE tgi_batch_inference_duration histogram\n\
             tgi_batch_inference_duration_bucket{{method=\"prefill\",le=\"+Inf\"}} {n}\n\
             tgi_batch_inference_duration_sum{{method=\"prefill\"}} {p}\n\
             tgi_batch_inference_duration_count{{method=\"prefill\"}} {n}\n\n\
             # TYPE tgi_request_mean_time_per_token_duration histogram\n\
             tgi_request_mean_time_per_token_duration_bucket{{le=\"0.1\"}} 0\n\
             tgi_request_mean_time_per_token_duration_bucket{{le=\"0.2\"}} {n}\n\
             tgi_request_mean_time_per_token_duration_bucket{{le=\"+Inf\"}} {n}\n\
             tgi_request_mean_time_per_token_duration_sum {itl}\n\
             tgi_request_mean_time_per_token_duration_count {n}\n",
            tokens = n * 100.0,
            v = n * 0.001,
            q = n * 0.3,
            p = n * 0.2,
            itl = n * 0.15,
        ),
        Engine::Tgi,
    )
}

#[test]
fn tgi_lists_what_it_does_not_export_and_evaluates_the_rest() {
    let s: Vec<(i64, ModelMetrics)> = (0..10)
        .map(|i| (T0_MS + i as i64 * STEP_MS, tgi(i)))
        .collect();
    let a = analyze(&s, Engine::Tgi);

    let kv = not_evaluated(&a, MemoryPressure, KvCacheUsageRatio).expect("kv listed");
    assert_eq!(kv.cause, NotEvaluatedCause::NotExported);
    assert!(
        kv.reason.contains("TGI exports no KV-cache usage"),
        "{}",
        kv.reason
    );
    let pre = not_evaluated(&a, MemoryPressure, PreemptionsTotal).expect("preemptions listed");
    assert_eq!(pre.cause, NotEvaluatedCause::NotExported);
    assert!(!a.evaluated.contains(&MemoryPressure));
    let cache = a
        .not_evaluated
        .iter()
        .find(|n| n.kind == CacheInefficiency)
        .expect("cache listed");
    assert_eq!(cache.cause, NotEvaluatedCause::NotExported);
    assert!(cache.reason.contains("no prefix-cache metric"));
    // TTFT is an estimate without buckets: no p95; the per-token latency is evaluated.
    let ttft = not_evaluated(&a, HighLatency, TtftSeconds).expect("ttft listed");
    assert_eq!(ttft.cause, NotEvaluatedCause::NotExported);
    assert!(ttft.reason.contains("no buckets"), "{}", ttft.reason);
    assert!(a.evaluated.contains(&HighLatency));

    assert_eq!(severity(&a, QueueBuildup), Some(Severity::Medium));
    let lat = a.bottleneck(HighLatency).expect("latency");
    assert_eq!(lat.severity, Severity::Medium);
    assert_eq!(lat.evidence[0].metric, InterTokenLatencySeconds);
    // 10 requests × 100 tokens per 30 s ≈ 33 tokens/s with 15 waiting.
    assert_eq!(severity(&a, LowThroughput), Some(Severity::High));
    assert!(
        a.summary.ttft.is_some(),
        "the estimated mean is still summarized"
    );
    assert!(a.summary.kv_cache_usage.is_none());
}

/// An SGLang exposition after `i` steps: KV 0.93, 3 waiting, retractions after step 5, 25% of
/// prompt tokens from the radix cache.
fn sglang(i: usize) -> ModelMetrics {
    let f = i as f64;
    let l = "model_name=\"qwen\"";
    adapt(
        &format!(
            "# TYPE sglang:num_running_reqs gauge\nsglang:num_running_reqs{{{l}}} 40\n\
             # TYPE sglang:num_queue_reqs gauge\nsglang:num_queue_reqs{{{l}}} 3\n\
             # TYPE sglang:token_usage gauge\nsglang:token_usage{{{l}}} 0.93\n\
             # TYPE sglang:prompt_tokens_total counter\nsglang:prompt_tokens_total{{{l}}} {pt}\n\
             # TYPE sglang:generation_tokens_total counter\n\
             sglang:generation_tokens_total{{{l}}} {gt}\n\
             # TYPE sglang:cached_tokens_total counter\nsglang:cached_tokens_total{{{l}}} {ct}\n\
             # TYPE sglang:num_retracted_requests_total counter\n\
             sglang:num_retracted_requests_total{{{l}}} {rt}\n",
            pt = 20_000.0 * f,
            gt = 9_000.0 * f,
            ct = 5_000.0 * f,
            rt = if i > 5 { 2.0 } else { 0.0 },
        ),
        Engine::Sglang,
    )
}

#[test]
fn sglang_retractions_and_radix_cache_hits_feed_memory_and_cache_rules() {
    let s: Vec<(i64, ModelMetrics)> = (0..10)
        .map(|i| (T0_MS + i as i64 * STEP_MS, sglang(i)))
        .collect();
    let a = analyze(&s, Engine::Sglang);
    let mem = a.bottleneck(MemoryPressure).expect("memory");
    assert_eq!(mem.severity, Severity::Critical, "{}", mem.description);
    let cache = a.bottleneck(CacheInefficiency).expect("cache");
    assert!((cache.evidence[0].value - 0.25).abs() < 1e-9);
    assert_eq!(cache.severity, Severity::Medium);
    // 300 tokens/s: busy but not slow.
    assert_eq!(severity(&a, LowThroughput), None);
    assert!(a.evaluated.contains(&LowThroughput));
    assert_eq!(a.summary.preemptions, Some(2.0));
}

// ---------------------------------------------------------------- single snapshot

#[test]
fn a_single_snapshot_is_judged_on_gauges_with_low_confidence() {
    let m = ModelMetrics {
        model: "m".into(),
        metrics: [
            (KvCacheUsageRatio, num(0.92)),
            (RequestsWaiting, num(12.0)),
            (GenerationTokensTotal, num(1e6)),
        ]
        .into_iter()
        .collect(),
    };
    let a = detect_from_snapshot(&m, Engine::Vllm, &Thresholds::default());
    assert_eq!(a.basis, AnalysisBasis::SingleSample);
    let kinds: Vec<_> = a
        .bottlenecks
        .iter()
        .map(|b| (b.kind, b.severity, b.confidence))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (MemoryPressure, Severity::High, Confidence::Low),
            (QueueBuildup, Severity::Medium, Confidence::Low),
        ]
    );
    assert_eq!(
        a.bottlenecks[0].evidence[0].statistic,
        Statistic::SingleSample
    );
    assert!(a.bottlenecks[0].description.contains("single snapshot"));
    let thr = not_evaluated(&a, LowThroughput, GenerationTokensTotal).expect("listed");
    assert_eq!(thr.cause, NotEvaluatedCause::InsufficientData);
    assert!(a.forecasts.is_empty());
}

#[test]
fn a_single_tgi_snapshot_says_tgi_has_no_kv_usage() {
    let a = detect_from_snapshot(&tgi(3), Engine::Tgi, &Thresholds::default());
    let kv = not_evaluated(&a, MemoryPressure, KvCacheUsageRatio).expect("listed");
    assert_eq!(kv.cause, NotEvaluatedCause::NotExported);
    let cache = not_evaluated(&a, CacheInefficiency, PrefixCacheQueriesTotal).expect("listed");
    assert_eq!(cache.cause, NotEvaluatedCause::NotExported);
    assert_eq!(severity(&a, QueueBuildup), Some(Severity::Medium));
}

#[test]
fn real_captures_are_analyzed_as_single_snapshots() {
    for (file, engine) in [
        (
            "vllm-0.10.x-ngc25.09-armandossrecife-qwen3-4b.prom",
            Engine::Vllm,
        ),
        (
            "sglang-0.4.x-docs-production_metrics-llama3.1-8b.prom",
            Engine::Sglang,
        ),
    ] {
        let path = format!(
            "{}/../../shared/fixtures/metrics/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let m = adapt(&text, engine);
        let a = detect_from_snapshot(&m, engine, &Thresholds::default());
        assert!(a.evaluated.contains(&MemoryPressure), "{file}");
        assert!(a.evaluated.contains(&QueueBuildup), "{file}");
        assert_eq!(a.not_evaluated.len(), 4, "{file}: {:#?}", a.not_evaluated);
    }
}

// ---------------------------------------------------------------- serde and thresholds

#[test]
fn the_analysis_serializes_with_the_seed_s_names() {
    let a = analyze(&kv_series(|_| 0.91), Engine::Vllm);
    let json = serde_json::to_value(&a).expect("json");
    assert_eq!(json["bottlenecks"][0]["type"], "MEMORY_PRESSURE");
    assert_eq!(json["bottlenecks"][0]["severity"], "HIGH");
    assert_eq!(
        json["bottlenecks"][0]["evidence"][0]["metric"],
        "kv_cache_usage_ratio"
    );
    assert_eq!(json["basis"], "WINDOW");
    assert_eq!(json["engine"], "vllm");
    // The series carries no preemption counter.
    assert_eq!(json["not_evaluated"][0]["metric"], "preemptions_total");
    assert_eq!(json["not_evaluated"][0]["cause"], "NOT_EXPORTED");
    let back: InstanceAnalysis = serde_json::from_value(json).expect("round trip");
    assert_eq!(back, a);
}

#[test]
fn a_group_override_changes_only_what_it_names() {
    let t: Thresholds =
        serde_json::from_str(r#"{"memory_usage_ratio": 0.85, "ttft_p95_s": 0.5}"#).expect("json");
    assert_eq!(t.memory_usage_ratio, 0.85);
    assert_eq!(t.ttft_p95_s, 0.5);
    assert_eq!(t.queue_depth_requests, 10.0);
    assert!(t.validate().is_ok());
    let a = analyze_instance(&points(&kv_series(|_| 0.82)), Engine::Vllm, &t);
    assert_eq!(severity(&a, MemoryPressure), None);
    assert!(serde_json::from_str::<Thresholds>(r#"{"memroy_usage_ratio": 0.85}"#).is_err());
}

#[test]
fn thresholds_that_cannot_work_are_refused() {
    let inverted = Thresholds {
        memory_high_ratio: 0.75,
        ..Thresholds::default()
    };
    assert_eq!(
        inverted.validate().map_err(|e| e.field),
        Err("memory_high_ratio")
    );
    let negative = Thresholds {
        ttft_p95_s: -1.0,
        ..Thresholds::default()
    };
    assert_eq!(negative.validate().map_err(|e| e.field), Err("ttft_p95_s"));
    let two = Thresholds {
        forecast_min_points: 2,
        ..Thresholds::default()
    };
    assert!(two.validate().is_err());
    assert!(Thresholds::default().validate().is_ok());
}

// ---------------------------------------------------------------- group

fn kv_analysis(kv: f64, engine: Engine) -> InstanceAnalysis {
    analyze(&kv_series(|_| kv), engine)
}

#[test]
fn a_bottleneck_on_half_the_instances_is_the_group_s() {
    let (crit, med, ok1, ok2) = (
        kv_analysis(0.97, Engine::Vllm),
        kv_analysis(0.85, Engine::Vllm),
        kv_analysis(0.3, Engine::Vllm),
        kv_analysis(0.4, Engine::Vllm),
    );
    let g = analyze_group(
        "chat",
        &[("a", &crit), ("b", &med), ("c", &ok1), ("d", &ok2)],
    );
    assert_eq!(g.instances, 4);
    let b = g
        .bottlenecks
        .iter()
        .find(|b| b.kind == MemoryPressure)
        .expect("group memory pressure");
    assert_eq!(b.affected_instances, vec!["a", "b"]);
    assert_eq!(b.evaluated_instances, 4);
    // Half the group is at least MEDIUM; only a quarter is CRITICAL.
    assert_eq!(b.severity, Severity::Medium);
    assert_eq!(b.priority, 1);

    let g = analyze_group("chat", &[("a", &crit), ("c", &ok1), ("d", &ok2)]);
    assert!(g.bottlenecks.is_empty());
}

#[test]
fn instances_that_cannot_evaluate_a_type_are_left_out_of_its_quorum() {
    let v = kv_analysis(0.92, Engine::Vllm);
    let v_ok = kv_analysis(0.2, Engine::Vllm);
    let s: Vec<(i64, ModelMetrics)> = (0..10)
        .map(|i| (T0_MS + i as i64 * STEP_MS, tgi(i)))
        .collect();
    let t1 = analyze(&s, Engine::Tgi);
    let g = analyze_group(
        "mixed",
        &[("v1", &v), ("v2", &v_ok), ("t1", &t1), ("t2", &t1)],
    );
    let b = g
        .bottlenecks
        .iter()
        .find(|b| b.kind == MemoryPressure)
        .expect("1 of 2 vLLM instances is half of those that can tell");
    assert_eq!(b.evaluated_instances, 2);
    assert_eq!(b.severity, Severity::High);

    let tgi_only = analyze_group("tgi", &[("t1", &t1), ("t2", &t1)]);
    let ne = tgi_only
        .not_evaluated
        .iter()
        .find(|n| n.kind == MemoryPressure)
        .expect("memory not evaluated");
    assert!(ne
        .reasons
        .iter()
        .any(|r| r.contains("TGI exports no KV-cache usage")));
    assert!(tgi_only.bottlenecks.iter().any(|b| b.kind == QueueBuildup));
}
