//! Recommendations per engine: each tied to its bottleneck, in the engine's own knobs and flags,
//! with the current (or assumed) value, never re-proposing what is already set, with stable ids.

use perfagent::analysis::{analyze_instance, BottleneckType, InstanceAnalysis, Thresholds};
use perfagent::instance::EngineConfig;
use perfagent::optimize::knobs::{flag, lookup, CATALOG};
use perfagent::optimize::{recommend, Direction, Optimizer, Recommendation, RiskLevel};
use perfagent::snapshot::{Canonical, Engine, Histogram, MetricValue, ModelMetrics};
use perfagent::window::Point;
use serde_json::{json, Value};
use BottleneckType::*;
use Canonical::*;

const INF: f64 = f64::INFINITY;
const T0_MS: i64 = 1_700_000_000_000;
const STEP_MS: i64 = 30_000;
const BOUNDS: [f64; 6] = [0.05, 0.1, 0.2, 0.5, 1.0, INF];

fn num(v: f64) -> MetricValue {
    MetricValue::Number(v)
}

/// `count` cumulative observations all in the bucket ending at `BOUNDS[bucket]`.
fn latency(count: f64, bucket: usize) -> MetricValue {
    MetricValue::Histogram(Histogram {
        count,
        sum: count * 0.1,
        buckets: BOUNDS
            .iter()
            .enumerate()
            .map(|(i, &le)| (le, if i >= bucket { count } else { 0.0 }))
            .collect(),
    })
}

/// Ten snapshots 30 s apart; `at(i)` gives the i-th snapshot's metrics.
fn analysis(
    engine: Engine,
    at: impl Fn(usize) -> Vec<(Canonical, MetricValue)>,
) -> InstanceAnalysis {
    let s: Vec<(i64, ModelMetrics)> = (0..10)
        .map(|i| {
            (
                T0_MS + i as i64 * STEP_MS,
                ModelMetrics {
                    model: "m".into(),
                    metrics: at(i).into_iter().collect(),
                },
            )
        })
        .collect();
    let pts: Vec<Point<'_>> = s
        .iter()
        .map(|(at_ms, metrics)| Point {
            at_ms: *at_ms,
            metrics,
        })
        .collect();
    analyze_instance(&pts, engine, &Thresholds::default())
}

fn config(v: Value) -> EngineConfig {
    serde_json::from_value(v).expect("config")
}

fn find<'a>(recs: &'a [Recommendation], knob: &str) -> Option<&'a Recommendation> {
    recs.iter().find(|r| r.knob == knob)
}

fn knobs(recs: &[Recommendation]) -> Vec<(&str, Value)> {
    recs.iter()
        .map(|r| (r.knob.as_str(), r.proposed.clone()))
        .collect()
}

/// Every recommendation uses a knob of its engine's catalog, spelled as its flag.
fn assert_engine_knobs(recs: &[Recommendation], engine: Engine) {
    for r in recs {
        assert_eq!(r.engine, engine);
        assert!(
            lookup(engine, &r.knob).is_some(),
            "{} is not a {engine} knob",
            r.knob
        );
        assert_eq!(r.flag, flag(&r.knob));
        assert_eq!(r.changes.len(), 1);
        assert_eq!(r.changes.get(&r.knob), Some(&r.proposed));
        assert!(!r.expected_impact.is_empty());
        assert!(!r.risk.description.is_empty());
        assert!(r.id.starts_with("rec-") && r.id.len() == 20, "{}", r.id);
    }
}

/// vLLM with the KV cache at 93% and requests preempted: MEMORY_PRESSURE CRITICAL.
fn vllm_memory(kv: f64) -> InstanceAnalysis {
    analysis(Engine::Vllm, |i| {
        vec![
            (KvCacheUsageRatio, num(kv)),
            (PreemptionsTotal, num(i as f64)),
            (RequestsRunning, num(200.0)),
        ]
    })
}

// ---------------------------------------------------------------- vLLM

#[test]
fn vllm_memory_pressure_gets_vllm_knobs_from_defaults_marked_assumed() {
    let a = vllm_memory(0.93);
    let recs = recommend(&a, Engine::Vllm, &EngineConfig::new());
    assert_engine_knobs(&recs, Engine::Vllm);
    assert_eq!(
        knobs(&recs),
        vec![
            ("max_num_seqs", json!(192)),
            ("gpu_memory_utilization", json!(0.95)),
            ("kv_cache_dtype", json!("fp8")),
            ("quantization", json!("fp8")),
            ("quantization", json!("awq")),
        ]
    );
    let util = find(&recs, "gpu_memory_utilization").expect("util");
    assert_eq!(util.flag, "--gpu-memory-utilization");
    assert_eq!(util.optimizer, Optimizer::KvCache);
    assert_eq!(util.bottleneck, MemoryPressure);
    assert_eq!(util.current.value, json!(0.9));
    assert!(util.current.assumed);
    assert_eq!(util.risk.level, RiskLevel::Medium);
    assert_eq!(util.expected_impact[0].direction, Direction::Increase);
    assert!(util.rationale.starts_with("MEMORY_PRESSURE (CRITICAL)"));
    // max_num_seqs' default depends on the GPU: the proposal says so.
    let seqs = find(&recs, "max_num_seqs").expect("seqs");
    assert_eq!(seqs.current.value, json!(256));
    assert!(
        seqs.prerequisites.iter().any(|p| p.contains("1024")),
        "{:?}",
        seqs.prerequisites
    );
    // 4-bit needs another checkpoint, and is an alternative to FP8 on the same knob.
    let awq = recs
        .iter()
        .find(|r| r.proposed == json!("awq"))
        .expect("awq");
    assert_eq!(awq.risk.level, RiskLevel::High);
    assert!(awq.prerequisites[0].contains("AWQ-quantized checkpoint"));
    let fp8 = recs
        .iter()
        .find(|r| r.knob == "quantization" && r.proposed == json!("fp8"))
        .expect("fp8");
    assert_eq!(awq.conflicts_with, vec![fp8.id.clone()]);
    assert_eq!(fp8.conflicts_with, vec![awq.id.clone()]);
    let priorities: Vec<u32> = recs.iter().map(|r| r.priority).collect();
    assert_eq!(priorities, vec![1, 2, 3, 4, 5]);
}

#[test]
fn what_is_already_set_is_not_recommended_again() {
    let a = vllm_memory(0.93);
    let cfg = config(json!({
        "gpu_memory_utilization": 0.95,
        "kv_cache_dtype": "fp8",
        "quantization": "FP8",
        "max_num_seqs": 128
    }));
    let recs = recommend(&a, Engine::Vllm, &cfg);
    assert_eq!(
        knobs(&recs),
        vec![("max_num_seqs", json!(96)), ("quantization", json!("awq"))]
    );
    let seqs = find(&recs, "max_num_seqs").expect("seqs");
    assert!(!seqs.current.assumed);
    assert!(seqs.prerequisites.is_empty());
    // From FP8 to 4 bits halves the weights again.
    let awq = find(&recs, "quantization").expect("awq");
    assert_eq!(awq.expected_impact[0].magnitude, "−50%");

    let four_bit = config(json!({"quantization": "awq", "gpu_memory_utilization": "0.95"}));
    let recs = recommend(&a, Engine::Vllm, &four_bit);
    assert!(find(&recs, "quantization").is_none());
    assert!(find(&recs, "gpu_memory_utilization").is_none());
}

#[test]
fn high_but_not_critical_pressure_stops_at_8_bits() {
    let a = analysis(Engine::Vllm, |_| vec![(KvCacheUsageRatio, num(0.91))]);
    let recs = recommend(&a, Engine::Vllm, &EngineConfig::new());
    assert_eq!(
        knobs(&recs),
        vec![
            ("gpu_memory_utilization", json!(0.95)),
            ("kv_cache_dtype", json!("fp8")),
            ("quantization", json!("fp8")),
        ]
    );
    let medium = analysis(Engine::Vllm, |_| vec![(KvCacheUsageRatio, num(0.85))]);
    let recs = recommend(&medium, Engine::Vllm, &EngineConfig::new());
    assert!(
        find(&recs, "quantization").is_none(),
        "no quantization at MEDIUM"
    );
}

#[test]
fn a_vllm_queue_with_memory_to_spare_raises_the_cap_it_is_stuck_at() {
    let at_cap = analysis(Engine::Vllm, |_| {
        vec![
            (RequestsWaiting, num(30.0)),
            (RequestsRunning, num(256.0)),
            (KvCacheUsageRatio, num(0.5)),
        ]
    });
    let recs = recommend(&at_cap, Engine::Vllm, &config(json!({"max_num_seqs": 256})));
    assert_eq!(knobs(&recs), vec![("max_num_seqs", json!(512))]);
    assert_eq!(recs[0].bottleneck, QueueBuildup);
    assert_eq!(recs[0].optimizer, Optimizer::Batching);

    let below_cap = analysis(Engine::Vllm, |_| {
        vec![
            (RequestsWaiting, num(30.0)),
            (RequestsRunning, num(40.0)),
            (KvCacheUsageRatio, num(0.5)),
        ]
    });
    let recs = recommend(
        &below_cap,
        Engine::Vllm,
        &config(json!({"max_num_seqs": 256})),
    );
    assert_eq!(knobs(&recs), vec![("max_num_batched_tokens", json!(8192))]);
    assert_eq!(recs[0].flag, "--max-num-batched-tokens");
}

#[test]
fn a_vllm_queue_on_a_full_cache_gets_memory_changes_not_more_concurrency() {
    let a = analysis(Engine::Vllm, |_| {
        vec![
            (RequestsWaiting, num(30.0)),
            (RequestsRunning, num(256.0)),
            (KvCacheUsageRatio, num(0.91)),
        ]
    });
    let recs = recommend(&a, Engine::Vllm, &EngineConfig::new());
    assert!(find(&recs, "max_num_seqs").is_none());
    assert!(find(&recs, "max_num_batched_tokens").is_none());
    assert!(find(&recs, "gpu_memory_utilization").is_some());
}

#[test]
fn vllm_inter_token_latency_gets_smaller_prefill_chunks() {
    let a = analysis(Engine::Vllm, |i| {
        vec![(InterTokenLatencySeconds, latency(100.0 * i as f64, 3))]
    });
    let cfg = config(json!({"max_num_batched_tokens": 8192, "enable_chunked_prefill": false}));
    let recs = recommend(&a, Engine::Vllm, &cfg);
    assert_eq!(
        knobs(&recs),
        vec![
            ("enable_chunked_prefill", json!(true)),
            ("max_num_batched_tokens", json!(2048)),
        ]
    );
    assert!(recs.iter().all(|r| r.bottleneck == HighLatency));
    // Already at 2048 (the assumed default) with chunked prefill on: nothing to change.
    assert!(recommend(&a, Engine::Vllm, &EngineConfig::new()).is_empty());
}

#[test]
fn vllm_prefill_bound_ttft_gets_a_bigger_budget_and_prefix_caching_if_off() {
    let a = analysis(Engine::Vllm, |i| {
        vec![
            (TtftSeconds, latency(10.0 * i as f64, 3)),
            (QueueTimeSeconds, latency(10.0 * i as f64, 0)),
        ]
    });
    let recs = recommend(
        &a,
        Engine::Vllm,
        &config(json!({"enable_prefix_caching": false})),
    );
    assert_eq!(
        knobs(&recs),
        vec![
            ("enable_prefix_caching", json!(true)),
            ("max_num_batched_tokens", json!(8192)),
        ]
    );
    // Prefix caching on by default in V1: no recommendation to enable it.
    let recs = recommend(&a, Engine::Vllm, &EngineConfig::new());
    assert_eq!(knobs(&recs), vec![("max_num_batched_tokens", json!(8192))]);
}

#[test]
fn vllm_cache_inefficiency_gets_finer_blocks_only_when_blocks_are_coarse() {
    let a = analysis(Engine::Vllm, |i| {
        vec![
            (PrefixCacheQueriesTotal, num(10_000.0 * i as f64)),
            (PrefixCacheHitsTotal, num(2_000.0 * i as f64)),
        ]
    });
    let recs = recommend(&a, Engine::Vllm, &config(json!({"block_size": 32})));
    assert_eq!(knobs(&recs), vec![("block_size", json!(16))]);
    assert_eq!(recs[0].bottleneck, CacheInefficiency);
    assert!(recommend(&a, Engine::Vllm, &EngineConfig::new()).is_empty());
}

// ---------------------------------------------------------------- SGLang

#[test]
fn sglang_memory_pressure_gets_sglang_flags() {
    let a = analysis(Engine::Sglang, |i| {
        vec![
            (KvCacheUsageRatio, num(0.92)),
            (PreemptionsTotal, num(i as f64)),
        ]
    });
    let recs = recommend(&a, Engine::Sglang, &EngineConfig::new());
    assert_engine_knobs(&recs, Engine::Sglang);
    let flags: Vec<&str> = recs.iter().map(|r| r.flag.as_str()).collect();
    assert_eq!(
        flags,
        vec![
            "--schedule-conservativeness",
            "--kv-cache-dtype",
            "--mem-fraction-static",
            "--quantization",
            "--quantization",
        ]
    );
    assert_eq!(
        find(&recs, "schedule_conservativeness").map(|r| r.proposed.clone()),
        Some(json!(1.3))
    );
    assert_eq!(
        find(&recs, "mem_fraction_static").map(|r| r.proposed.clone()),
        Some(json!(0.92))
    );
    assert_eq!(
        find(&recs, "kv_cache_dtype").map(|r| r.proposed.clone()),
        Some(json!("fp8_e5m2"))
    );
}

#[test]
fn an_sglang_queue_with_room_in_the_cache_is_scheduled_less_conservatively() {
    let queue = |running: f64| {
        analysis(Engine::Sglang, move |_| {
            vec![
                (RequestsWaiting, num(12.0)),
                (RequestsRunning, num(running)),
                (KvCacheUsageRatio, num(0.6)),
            ]
        })
    };
    let recs = recommend(&queue(40.0), Engine::Sglang, &EngineConfig::new());
    assert_eq!(
        knobs(&recs),
        vec![("schedule_conservativeness", json!(0.5))]
    );
    // The operator capped running requests and the server sits at the cap: raise it instead.
    let recs = recommend(
        &queue(64.0),
        Engine::Sglang,
        &config(json!({"max_running_requests": 64})),
    );
    assert_eq!(knobs(&recs), vec![("max_running_requests", json!(128))]);
}

#[test]
fn sglang_cache_inefficiency_schedules_by_prefix_and_re_enables_the_radix_cache() {
    let a = analysis(Engine::Sglang, |i| {
        vec![
            (PrefixCacheQueriesTotal, num(10_000.0 * i as f64)),
            (PrefixCacheHitsTotal, num(0.0)),
        ]
    });
    let recs = recommend(
        &a,
        Engine::Sglang,
        &config(json!({"disable_radix_cache": true})),
    );
    assert_eq!(
        knobs(&recs),
        vec![
            ("disable_radix_cache", json!(false)),
            ("schedule_policy", json!("lpm")),
        ]
    );
    let recs = recommend(
        &a,
        Engine::Sglang,
        &config(json!({"schedule_policy": "lpm"})),
    );
    assert!(recs.is_empty(), "{:?}", knobs(&recs));
}

// ---------------------------------------------------------------- TGI

fn tgi_queue(waiting: f64) -> InstanceAnalysis {
    analysis(Engine::Tgi, move |i| {
        vec![
            (RequestsWaiting, num(waiting)),
            (RequestsRunning, num(30.0)),
            (GenerationTokensTotal, num(30_000.0 * i as f64)),
        ]
    })
}

#[test]
fn a_tgi_queue_gets_tgi_launcher_flags() {
    let a = tgi_queue(60.0);
    let cfg = config(json!({"max_batch_total_tokens": 32000}));
    let recs = recommend(&a, Engine::Tgi, &cfg);
    assert_engine_knobs(&recs, Engine::Tgi);
    assert_eq!(
        knobs(&recs),
        vec![
            ("kv_cache_dtype", json!("fp8_e5m2")),
            ("quantize", json!("eetq")),
            ("max_batch_total_tokens", json!(48000)),
            ("quantize", json!("awq")),
            ("max_concurrent_requests", json!(40)),
        ]
    );
    let flags: Vec<&str> = recs.iter().map(|r| r.flag.as_str()).collect();
    assert!(flags.contains(&"--max-batch-total-tokens"));
    assert!(flags.contains(&"--max-concurrent-requests"));
    assert!(flags.contains(&"--quantize"));
    let shed = find(&recs, "max_concurrent_requests").expect("shed load");
    assert_eq!(shed.current.value, json!(128));
    assert_eq!(shed.risk.level, RiskLevel::High);
    // TGI has no prefix-caching toggle, no KV-usage knob of vLLM's or SGLang's.
    for r in &recs {
        assert!(![
            "enable_prefix_caching",
            "gpu_memory_utilization",
            "mem_fraction_static"
        ]
        .contains(&r.knob.as_str()));
    }
}

#[test]
fn an_inferred_tgi_budget_is_not_raised_and_a_lowered_memory_fraction_is() {
    let a = tgi_queue(12.0);
    let recs = recommend(&a, Engine::Tgi, &EngineConfig::new());
    assert_eq!(knobs(&recs), vec![("kv_cache_dtype", json!("fp8_e5m2"))]);
    let recs = recommend(
        &a,
        Engine::Tgi,
        &config(json!({"cuda_memory_fraction": 0.8, "kv_cache_dtype": "fp8_e4m3fn"})),
    );
    assert_eq!(knobs(&recs), vec![("cuda_memory_fraction", json!(0.9))]);
}

#[test]
fn tgi_inter_token_latency_waits_longer_before_interrupting_decodes() {
    let a = analysis(Engine::Tgi, |i| {
        vec![(InterTokenLatencySeconds, latency(100.0 * i as f64, 2))]
    });
    let recs = recommend(&a, Engine::Tgi, &EngineConfig::new());
    assert_eq!(knobs(&recs), vec![("max_waiting_tokens", json!(40))]);
    assert_eq!(recs[0].flag, "--max-waiting-tokens");
    assert_eq!(recs[0].current.value, json!(20));
}

// ---------------------------------------------------------------- ids, order, catalog

#[test]
fn ids_are_stable_and_depend_on_knob_value_and_bottleneck() {
    let a = vllm_memory(0.93);
    let first = recommend(&a, Engine::Vllm, &EngineConfig::new());
    let again = recommend(&a, Engine::Vllm, &EngineConfig::new());
    assert_eq!(first, again);
    let mut ids: Vec<&str> = first.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), first.len());
    // Pinned: a change of the hash would break idempotent re-runs across releases.
    assert_eq!(
        perfagent::optimize::recommendation_id(
            Engine::Vllm,
            "gpu_memory_utilization",
            &json!(0.95),
            MemoryPressure
        ),
        find(&first, "gpu_memory_utilization").expect("util").id
    );
    assert_ne!(
        perfagent::optimize::recommendation_id(
            Engine::Vllm,
            "gpu_memory_utilization",
            &json!(0.95),
            CacheInefficiency
        ),
        find(&first, "gpu_memory_utilization").expect("util").id
    );
}

#[test]
fn a_change_that_serves_two_bottlenecks_is_proposed_once() {
    let a = analysis(Engine::Vllm, |i| {
        vec![
            (KvCacheUsageRatio, num(0.85)),
            (PrefixCacheQueriesTotal, num(10_000.0 * i as f64)),
            (PrefixCacheHitsTotal, num(1_000.0 * i as f64)),
        ]
    });
    let recs = recommend(&a, Engine::Vllm, &EngineConfig::new());
    let util: Vec<_> = recs
        .iter()
        .filter(|r| r.knob == "gpu_memory_utilization")
        .collect();
    assert_eq!(util.len(), 1);
    // CACHE_INEFFICIENCY is HIGH (10% hits), MEMORY_PRESSURE MEDIUM: the first motivates it.
    assert_eq!(util[0].bottleneck, CacheInefficiency);
    assert_eq!(util[0].also_addresses, vec![MemoryPressure]);
}

#[test]
fn an_idle_server_gets_no_recommendation() {
    let a = analysis(Engine::Vllm, |i| {
        vec![
            (KvCacheUsageRatio, num(0.1)),
            (RequestsWaiting, num(0.0)),
            (GenerationTokensTotal, num(10.0 * i as f64)),
        ]
    });
    assert!(a.bottlenecks.is_empty());
    assert!(recommend(&a, Engine::Vllm, &EngineConfig::new()).is_empty());
}

#[test]
fn the_catalog_has_no_v0_only_knob_and_every_engine_has_its_own() {
    for v0 in [
        "swap_space",
        "num_scheduler_steps",
        "preemption_mode",
        "use_v2_block_manager",
    ] {
        assert!(lookup(Engine::Vllm, v0).is_none(), "{v0}");
    }
    assert!(lookup(Engine::Tgi, "enable_prefix_caching").is_none());
    assert!(lookup(Engine::Tgi, "quantize").is_some());
    assert!(lookup(Engine::Vllm, "quantize").is_none());
    for engine in Engine::ALL {
        assert!(CATALOG.iter().any(|k| k.engine == engine));
    }
    assert_eq!(flag("max_batch_total_tokens"), "--max-batch-total-tokens");
}

#[test]
fn recommendations_serialize_with_screaming_enums_and_a_patch() {
    let recs = recommend(&vllm_memory(0.93), Engine::Vllm, &EngineConfig::new());
    let json = serde_json::to_value(&recs[0]).expect("json");
    assert_eq!(json["optimizer"], "BATCHING");
    assert_eq!(json["bottleneck"], "MEMORY_PRESSURE");
    assert_eq!(json["risk"]["level"], "LOW");
    assert_eq!(json["changes"], json!({"max_num_seqs": 192}));
    assert_eq!(json["current"]["assumed"], true);
    assert_eq!(json["expected_impact"][0]["direction"], "DECREASE");
    let back: Recommendation = serde_json::from_value(json).expect("round trip");
    assert_eq!(back, recs[0]);
}
