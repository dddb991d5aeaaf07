//! The engine adapters on the real captures of the project kit (`../shared/fixtures/metrics/`):
//! every expected number below was read from the capture itself.

use perfagent::engine::{detect, normalize};
use perfagent::promtext::{parse, Mode};
use perfagent::snapshot::{Canonical, Engine, Snapshot};
use std::path::PathBuf;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/metrics")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn normalized(name: &str, hint: Option<Engine>) -> Snapshot {
    let bytes = fixture(name);
    let exp = parse(&bytes, Mode::Lenient).unwrap_or_else(|e| panic!("{name}: {e}"));
    normalize(&exp, hint).unwrap_or_else(|e| panic!("{name}: {e}"))
}

const VLLM: &str = "vllm-0.10.x-ngc25.09-armandossrecife-qwen3-4b.prom";
const SGLANG: &str = "sglang-0.4.x-docs-production_metrics-llama3.1-8b.prom";

#[test]
fn the_vllm_010_capture_is_vllm_v1_with_one_model() {
    let snap = normalized(VLLM, None);
    assert_eq!(snap.engine, Engine::Vllm);
    assert_eq!(snap.generation, "vllm-v1");
    let models: Vec<&str> = snap.models.iter().map(|m| m.model.as_str()).collect();
    assert_eq!(models, ["Qwen/Qwen3-4B-Instruct-2507-FP8"]);
}

#[test]
fn the_vllm_010_capture_maps_gauges_and_counters_preferring_current_names() {
    let snap = normalized(VLLM, Some(Engine::Vllm));
    let m = &snap.models[0];
    assert_eq!(
        m.number(Canonical::KvCacheUsageRatio),
        Some(0.0011764705882353343)
    );
    assert_eq!(m.number(Canonical::RequestsRunning), Some(0.0));
    assert_eq!(m.number(Canonical::RequestsWaiting), Some(0.0));
    // stop 6 + length 0; abort 0.
    assert_eq!(m.number(Canonical::RequestSuccessTotal), Some(6.0));
    assert_eq!(m.number(Canonical::RequestFailureTotal), Some(0.0));
    assert_eq!(m.number(Canonical::PromptTokensTotal), Some(246.0));
    assert_eq!(m.number(Canonical::GenerationTokensTotal), Some(1739.0));
    assert_eq!(m.number(Canonical::PreemptionsTotal), Some(0.0));
    // Both prefix_cache_* and the deprecated gpu_prefix_cache_* are there with the same values:
    // counted once, not twice.
    assert_eq!(m.number(Canonical::PrefixCacheQueriesTotal), Some(246.0));
    assert_eq!(m.number(Canonical::PrefixCacheHitsTotal), Some(80.0));
}

#[test]
fn the_vllm_010_capture_maps_histograms_with_their_buckets() {
    let snap = normalized(VLLM, None);
    let m = &snap.models[0];
    let ttft = m.histogram(Canonical::TtftSeconds).expect("ttft");
    assert_eq!(ttft.count, 6.0);
    assert_eq!(ttft.sum, 0.24629998207092285);
    assert_eq!(ttft.buckets.len(), 23);
    assert_eq!(ttft.buckets.first(), Some(&(0.001, 0.0)));
    assert_eq!(ttft.buckets.last(), Some(&(f64::INFINITY, 6.0)));
    // 0.10 has no inter_token_latency_seconds yet: the per-iteration TPOT stands in.
    let itl = m
        .histogram(Canonical::InterTokenLatencySeconds)
        .expect("itl");
    assert_eq!(itl.count, 1733.0);
    assert_eq!(itl.buckets.len(), 20);
    let queue = m.histogram(Canonical::QueueTimeSeconds).expect("queue");
    assert_eq!(queue.count, 6.0);
    assert_eq!(queue.sum, 0.0003117750002274988);
    assert_eq!(
        m.histogram(Canonical::E2eLatencySeconds).map(|h| h.count),
        Some(6.0)
    );
}

#[test]
fn the_vllm_010_capture_counts_what_it_does_not_map() {
    let snap = normalized(VLLM, None);
    // http_* (5, and their 5 `_created`), process_* (6), python_* (4), vllm:cache_config_info,
    // vllm:iteration_tokens_total and the 8 request_* histograms no canonical name takes (9, and
    // their 9 `_created`).
    assert_eq!(snap.unknown_families, 39);
    assert!(snap
        .notes
        .iter()
        .any(|n| n.contains("finished_reason=\"abort\"")));
}

#[test]
fn the_sglang_04_capture_is_sglang_04_with_one_model() {
    let snap = normalized(SGLANG, None);
    assert_eq!(snap.engine, Engine::Sglang);
    assert_eq!(snap.generation, "sglang-0.4");
    let models: Vec<&str> = snap.models.iter().map(|m| m.model.as_str()).collect();
    assert_eq!(models, ["meta-llama/Llama-3.1-8B-Instruct"]);
}

#[test]
fn the_sglang_04_capture_maps_what_it_exports_and_leaves_the_rest_absent() {
    let snap = normalized(SGLANG, Some(Engine::Sglang));
    let m = &snap.models[0];
    assert_eq!(m.number(Canonical::RequestsRunning), Some(162.0));
    assert_eq!(m.number(Canonical::RequestsWaiting), Some(2826.0));
    assert_eq!(m.number(Canonical::KvCacheUsageRatio), Some(0.28));
    assert_eq!(m.number(Canonical::PromptTokensTotal), Some(8.128902e6));
    assert_eq!(m.number(Canonical::GenerationTokensTotal), Some(7.557572e6));
    // 0.4.0/0.4.1: no num_requests_total, cached_tokens_total, retraction or queue time yet.
    for absent in [
        Canonical::RequestSuccessTotal,
        Canonical::RequestFailureTotal,
        Canonical::PrefixCacheHitsTotal,
        Canonical::PrefixCacheQueriesTotal,
        Canonical::PreemptionsTotal,
        Canonical::QueueTimeSeconds,
    ] {
        assert!(
            !m.metrics.contains_key(&absent),
            "{absent} should be absent"
        );
    }
}

#[test]
fn the_sglang_04_capture_maps_histograms_whose_sum_comes_before_the_buckets() {
    let snap = normalized(SGLANG, None);
    let m = &snap.models[0];
    let ttft = m.histogram(Canonical::TtftSeconds).expect("ttft");
    assert_eq!(ttft.count, 11008.0);
    assert_eq!(ttft.sum, 2.3518979474117756e6);
    assert_eq!(ttft.buckets.len(), 21);
    assert_eq!(ttft.buckets.get(15), Some(&(10.0, 1330.0)));
    let itl = m
        .histogram(Canonical::InterTokenLatencySeconds)
        .expect("itl");
    assert_eq!(itl.count, 7.400757e6);
    assert_eq!(
        m.histogram(Canonical::E2eLatencySeconds).map(|h| h.count),
        Some(11228.0)
    );
    // func_latency_seconds, gen_throughput, num_used_tokens, cache_hit_rate.
    assert_eq!(snap.unknown_families, 4);
}

#[test]
fn every_capture_is_detected_as_its_engine() {
    for (name, engine) in [(VLLM, Engine::Vllm), (SGLANG, Engine::Sglang)] {
        let bytes = fixture(name);
        let exp = parse(&bytes, Mode::Lenient).expect("parses");
        assert_eq!(detect(&exp), Some(engine), "{name}");
    }
}

#[test]
fn a_wrong_engine_hint_on_a_capture_is_refused() {
    let bytes = fixture(VLLM);
    let exp = parse(&bytes, Mode::Lenient).expect("parses");
    let err = normalize(&exp, Some(Engine::Tgi)).expect_err("tgi hint on vLLM text");
    assert!(err.to_string().contains("tgi"), "{err}");
    assert!(err.to_string().contains("vllm"), "{err}");
}
