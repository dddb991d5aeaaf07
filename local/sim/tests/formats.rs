//! Each engine generation's `/metrics` is valid exposition text, reads back through the project's
//! parser, and has the shape of the real server's output.

mod common;

use common::*;
use perfagent::promtext::{parse, Format, MetricType, Mode};
use perfagent_sim::config::EngineKind;

fn rendered(engine: EngineKind, generation: &str, seconds: f64) -> String {
    let mut fleet = one(engine, generation, 8.0);
    fleet.advance(seconds);
    fleet.render("i1").expect("instance exists")
}

#[test]
fn every_generation_parses_leniently_and_strictly() {
    for (engine, generation) in GENERATIONS {
        let text = rendered(engine, generation, 30.0);
        let lenient = parse(text.as_bytes(), Mode::Lenient)
            .unwrap_or_else(|e| panic!("{engine} {generation}: {e}"));
        assert!(
            lenient.sample_count() > 50,
            "{engine} {generation}: too few samples"
        );
        parse(text.as_bytes(), Mode::Strict(Format::Prometheus))
            .unwrap_or_else(|e| panic!("{engine} {generation} strict: {e}"));
    }
}

#[test]
fn vllm_v1_has_current_names_engine_labels_and_created_companions() {
    let text = rendered(EngineKind::Vllm, "v1", 30.0);
    for name in [
        "vllm:kv_cache_usage_perc",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
        "vllm:num_preemptions_total",
        "vllm:request_success_total",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:request_queue_time_seconds_count",
        "vllm:prompt_tokens_created",
        "vllm:time_to_first_token_seconds_created",
    ] {
        assert!(has(&text, name), "missing {name}");
    }
    assert!(!has(&text, "vllm:gpu_cache_usage_perc"));
    assert!(!has(&text, "vllm:time_per_output_token_seconds_count"));
    assert!(text.contains(
        "vllm:time_to_first_token_seconds_bucket{engine=\"0\",le=\"0.001\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"}"
    ));
    assert!(
        text.contains("le=\"2560.0\""),
        "V1 TTFT buckets reach 2560 s"
    );
    let expo = parse(text.as_bytes(), Mode::Lenient).expect("parses");
    let created = expo
        .family("vllm:prompt_tokens_created")
        .expect("created family");
    assert_eq!(created.kind, MetricType::Gauge);
    for reason in ["stop", "length", "abort"] {
        assert!(text.contains(&format!("finished_reason=\"{reason}\"")));
    }
}

#[test]
fn vllm_data_parallel_engines_each_get_their_series() {
    let mut s = spec("i1", EngineKind::Vllm, "v1", 10.0);
    s.hardware.data_parallel_size = 2;
    let mut fleet = fleet_of(vec![s], 3);
    fleet.advance(20.0);
    let text = fleet.render("i1").expect("exists");
    let e0 = sum_of(&text, "vllm:prompt_tokens_total", &[("engine", "0")]);
    let e1 = sum_of(&text, "vllm:prompt_tokens_total", &[("engine", "1")]);
    assert!(e0 > 0.0 && e1 > 0.0, "both engines served: {e0} {e1}");
}

#[test]
fn vllm_0_10_shows_deprecated_and_new_names_side_by_side() {
    let text = rendered(EngineKind::Vllm, "0.10", 30.0);
    assert!(has(&text, "vllm:gpu_cache_usage_perc"));
    assert!(has(&text, "vllm:kv_cache_usage_perc"));
    assert!(has(&text, "vllm:gpu_prefix_cache_hits_total"));
    assert!(has(&text, "vllm:prefix_cache_hits_total"));
    assert!(has(&text, "vllm:time_per_output_token_seconds_count"));
    assert!(!has(&text, "vllm:inter_token_latency_seconds_count"));
    assert_eq!(
        sum_of(&text, "vllm:gpu_prefix_cache_hits_total", &[]),
        sum_of(&text, "vllm:prefix_cache_hits_total", &[])
    );
}

#[test]
fn vllm_v0_has_old_gauges_and_no_engine_label_or_created() {
    let text = rendered(EngineKind::Vllm, "v0", 30.0);
    assert!(has(&text, "vllm:gpu_cache_usage_perc"));
    assert!(has(&text, "vllm:gpu_prefix_cache_hit_rate"));
    assert!(has(&text, "vllm:num_requests_swapped"));
    assert!(!has(&text, "vllm:kv_cache_usage_perc"));
    assert!(!text.contains("engine=\""));
    assert!(!text.contains("_created"));
    assert!(text.contains(
        "vllm:time_to_first_token_seconds_bucket{le=\"0.001\",model_name=\"meta-llama/Llama-3.1-8B-Instruct\"}"
    ));
}

#[test]
fn tgi_writes_rust_exporter_style() {
    let text = rendered(EngineKind::Tgi, "v3", 30.0);
    assert!(text.contains("\n\n# HELP tgi_request_success Number of successful requests\n"));
    // Counters without _total, integers without a decimal point.
    let line = text
        .lines()
        .find(|l| l.starts_with("tgi_request_count "))
        .expect("request count");
    let value = line.trim_start_matches("tgi_request_count ");
    assert!(value.parse::<u64>().is_ok(), "integer counter: {line}");
    assert!(
        !text.contains("_total ") && !text.contains("_total{"),
        "no counter carries _total"
    );
    // A family TGI never described: TYPE right after the blank line.
    assert!(text.contains("\n\n# TYPE tgi_batch_max_total_tokens gauge\n"));
    // 35 geometric duration buckets 0.00015·1.5ⁿ, with float noise, then +Inf.
    let buckets = text
        .lines()
        .filter(|l| l.starts_with("tgi_request_queue_duration_bucket"))
        .count();
    assert_eq!(buckets, 36);
    assert!(text.contains("tgi_request_queue_duration_bucket{le=\"0.00015000000000000001\"}"));
    assert!(text.contains("tgi_batch_inference_count{method=\"decode\"}"));
    for absent in ["time_to_first_token", "kv_cache", "vllm:", "sglang:"] {
        assert!(!text.contains(absent), "TGI has no {absent}");
    }
}

#[test]
fn tgi_reports_overload_as_a_failure_with_an_err_label() {
    let mut s = spec("i1", EngineKind::Tgi, "v3", 400.0);
    s.config.max_concurrent_requests = Some(Some(16));
    let mut fleet = fleet_of(vec![s], 5);
    fleet.advance(10.0);
    let text = fleet.render("i1").expect("exists");
    assert!(sum_of(&text, "tgi_request_failure", &[("err", "overloaded")]) > 0.0);
}

#[test]
fn sglang_current_labels_ranks_and_writes_sum_before_buckets() {
    let text = rendered(EngineKind::Sglang, "current", 300.0);
    for rank in ["0", "1"] {
        assert!(
            sum_of(&text, "sglang:num_running_reqs", &[("tp_rank", rank)]) >= 0.0
                && text.contains(&format!("tp_rank=\"{rank}\"")),
            "rank {rank}"
        );
    }
    assert!(text.contains("engine_type=\"unified\""));
    for name in [
        "sglang:token_usage",
        "sglang:cache_hit_rate",
        "sglang:cached_tokens_total",
        "sglang:num_retracted_requests_total",
        "sglang:inter_token_latency_seconds_bucket",
        "sglang:queue_time_seconds_bucket",
    ] {
        assert!(has(&text, name), "missing {name}");
    }
    let sum_at = text
        .find("sglang:time_to_first_token_seconds_sum")
        .expect("sum");
    let bucket_at = text
        .find("sglang:time_to_first_token_seconds_bucket")
        .expect("bucket");
    assert!(sum_at < bucket_at, "multiprocess order: _sum first");
    assert!(!text.contains("_created"));
    let prompt_line = text
        .lines()
        .find(|l| l.starts_with("sglang:prompt_tokens_total{"))
        .expect("prompt tokens");
    assert!(
        prompt_line.contains("e+06"),
        "Go-style exponent: {prompt_line}"
    );
    let hit_rate = sum_of(&text, "sglang:cache_hit_rate", &[("tp_rank", "0")]);
    assert!((0.0..=1.0).contains(&hit_rate), "fraction: {hit_rate}");
}

#[test]
fn sglang_0_4_has_old_names_and_model_name_only() {
    let text = rendered(EngineKind::Sglang, "0.4", 30.0);
    assert!(has(&text, "sglang:time_per_output_token_seconds_count"));
    assert!(!has(&text, "sglang:inter_token_latency_seconds_count"));
    assert!(!text.contains("tp_rank"));
    assert!(!text.contains("engine_type"));
    assert!(text.contains(
        "sglang:func_latency_seconds_bucket{le=\"0.07500000000000001\",name=\"generate_request\"}"
    ));
}

#[test]
fn the_same_seed_renders_the_same_bytes() {
    for (engine, generation) in GENERATIONS {
        let a = rendered(engine, generation, 15.0);
        let b = rendered(engine, generation, 15.0);
        assert_eq!(a, b, "{engine} {generation}");
    }
}

#[test]
fn payload_padding_brings_a_vllm_scrape_near_the_target_size() {
    let mut fleet = one(EngineKind::Vllm, "v1", 8.0);
    fleet.advance(30.0);
    fleet.set_payload_kb(200);
    let text = fleet.render("i1").expect("exists");
    let kb = text.len() / 1024;
    assert!((195..=215).contains(&kb), "{kb} KiB");
    parse(text.as_bytes(), Mode::Strict(Format::Prometheus)).expect("still valid");
    assert!(text.contains("lora_name=\"adapter-000\""));
}

#[test]
fn a_generated_fleet_mixes_every_engine_and_generation() {
    let mut fleet = fleet_of(Vec::new(), 9);
    for s in perfagent_sim::fleet::generated_specs(40, 9) {
        fleet.add(&s).expect("generated specs are valid");
    }
    assert_eq!(fleet.ids().count(), 40);
    fleet.advance(5.0);
    let mut seen = std::collections::BTreeSet::new();
    for v in fleet.views() {
        seen.insert((v.engine.to_string(), v.generation.clone()));
        let text = fleet.render(&v.id).expect("exists");
        parse(text.as_bytes(), Mode::Lenient).unwrap_or_else(|e| panic!("{}: {e}", v.id));
    }
    assert_eq!(seen.len(), GENERATIONS.len(), "{seen:?}");
}
