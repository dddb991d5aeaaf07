//! The queueing model moves the way real servers do: counters only grow, histograms stay
//! cumulative, load and bad configs show up in queues and latencies, KV pressure preempts.
//! Time advances by explicit steps only, so nothing here depends on the wall clock.

mod common;

use common::*;
use perfagent::promtext::{parse, MetricType, Mode};
use perfagent_sim::config::{ConfigPatch, EngineKind, Quantization};
use perfagent_sim::fleet::{harmful_patch, Scenario, ScrapeOutcome};
use std::collections::HashMap;

/// Every counter value and every histogram `_bucket`/`_count`/`_sum`, keyed by name + labels.
fn monotonic_values(text: &str) -> HashMap<String, f64> {
    let expo = parse(text.as_bytes(), Mode::Lenient).expect("parses");
    let mut out = HashMap::new();
    for fam in &expo.families {
        if !matches!(fam.kind, MetricType::Counter | MetricType::Histogram) {
            continue;
        }
        for s in &fam.samples {
            out.insert(format!("{}{{{}}}", s.name, s.labels.as_raw()), s.value);
        }
    }
    out
}

/// Within one scrape: buckets non-decreasing in `le`, `+Inf` equal to `_count`.
fn assert_cumulative(text: &str, context: &str) {
    let expo = parse(text.as_bytes(), Mode::Lenient).expect("parses");
    for fam in expo
        .families
        .iter()
        .filter(|f| f.kind == MetricType::Histogram)
    {
        // Group the buckets of each series by their labels without `le`.
        let mut series: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
        let mut counts: HashMap<String, f64> = HashMap::new();
        for s in &fam.samples {
            let key: Vec<String> = s
                .labels
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let key = key.join(",");
            if s.name.ends_with("_bucket") {
                let le = s.labels.get("le").expect("bucket has le");
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse::<f64>().expect("numeric le")
                };
                series.entry(key).or_default().push((bound, s.value));
            } else if s.name.ends_with("_count") {
                counts.insert(key, s.value);
            }
        }
        for (key, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            for w in buckets.windows(2) {
                assert!(
                    w[0].1 <= w[1].1,
                    "{context} {}{{{key}}}: not cumulative",
                    fam.name
                );
            }
            let inf = buckets.last().expect("has buckets");
            assert_eq!(inf.0, f64::INFINITY, "{context} {}: no +Inf", fam.name);
            assert_eq!(
                Some(&inf.1),
                counts.get(&key),
                "{context} {}: +Inf != count",
                fam.name
            );
        }
    }
}

#[test]
fn counters_never_decrease_and_histograms_stay_cumulative_across_ticks() {
    for (engine, generation) in GENERATIONS {
        // A small KV pool and a busy server, so preemptions and aborts happen too.
        let mut s = spec("i1", engine, generation, 25.0);
        s.config.gpu_memory_utilization = Some(0.32);
        s.workload.client_timeout_s = 20.0;
        let mut fleet = fleet_of(vec![s], 11);
        let mut previous = monotonic_values(&fleet.render("i1").expect("exists"));
        for tick in 0..60 {
            fleet.advance(1.0);
            let text = fleet.render("i1").expect("exists");
            assert_cumulative(&text, &format!("{engine} {generation} tick {tick}"));
            let now = monotonic_values(&text);
            for (key, before) in &previous {
                if let Some(after) = now.get(key) {
                    assert!(
                        after >= before,
                        "{engine} {generation} tick {tick}: {key} went {before} -> {after}"
                    );
                }
            }
            previous = now;
        }
        let view = fleet.view("i1").expect("exists");
        assert!(
            view.state.requests_finished_total > 100,
            "{engine} {generation} served"
        );
    }
}

#[test]
fn a_load_spike_raises_waiting_requests_and_ttft() {
    for engine in [EngineKind::Vllm, EngineKind::Tgi, EngineKind::Sglang] {
        let make = || {
            let mut s = spec("i1", engine, "", 8.0);
            s.generation = None;
            s.config.max_concurrent_requests = Some(None);
            fleet_of(vec![s], 21)
        };
        let (mut base, mut spiked) = (make(), make());
        base.advance(60.0);
        spiked.advance(60.0);
        let before_base = base.render("i1").expect("exists");
        let before_spiked = spiked.render("i1").expect("exists");
        spiked
            .scenario(&Scenario {
                name: "load_spike".into(),
                group: Some("g1".into()),
                instance: None,
                factor: Some(8.0),
                config: None,
                restart: None,
            })
            .expect("scenario applies");
        base.advance(60.0);
        spiked.advance(60.0);
        let after_base = base.render("i1").expect("exists");
        let after_spiked = spiked.render("i1").expect("exists");
        let waiting = waiting_gauge(engine);
        let w_base = sum_of(&after_base, waiting, &[]);
        let w_spiked = sum_of(&after_spiked, waiting, &[]);
        assert!(
            w_spiked > w_base + 10.0,
            "{engine}: waiting {w_base} -> {w_spiked}"
        );
        let family = ttft_family(engine);
        let t_base = window_mean(&before_base, &after_base, family);
        let t_spiked = window_mean(&before_spiked, &after_spiked, family);
        assert!(
            t_spiked > 3.0 * t_base,
            "{engine}: {family} {t_base} -> {t_spiked}"
        );
    }
}

#[test]
fn a_bad_config_makes_latency_worse() {
    for engine in [EngineKind::Vllm, EngineKind::Tgi, EngineKind::Sglang] {
        let make = || {
            let mut s = spec("i1", engine, "", 6.0);
            s.generation = None;
            fleet_of(vec![s], 31)
        };
        let (mut base, mut bad) = (make(), make());
        base.advance(30.0);
        bad.advance(30.0);
        let result = bad
            .scenario(&Scenario {
                name: "bad_config".into(),
                group: None,
                instance: Some("i1".into()),
                factor: None,
                config: None,
                restart: None,
            })
            .expect("scenario applies");
        assert!(!result.previous_configs["i1"].harmful);
        let before_base = base.render("i1").expect("exists");
        let before_bad = bad.render("i1").expect("exists");
        base.advance(60.0);
        bad.advance(60.0);
        let after_base = base.render("i1").expect("exists");
        let after_bad = bad.render("i1").expect("exists");
        let e2e = match engine {
            EngineKind::Vllm => "vllm:e2e_request_latency_seconds",
            EngineKind::Tgi => "tgi_request_duration",
            EngineKind::Sglang => "sglang:e2e_request_latency_seconds",
        };
        let base_e2e = window_mean(&before_base, &after_base, e2e);
        let bad_e2e = window_mean(&before_bad, &after_bad, e2e);
        assert!(
            bad_e2e > 1.5 * base_e2e,
            "{engine}: e2e {base_e2e} -> {bad_e2e}"
        );
    }
}

#[test]
fn a_too_small_token_budget_slows_the_first_token() {
    let make = |budget: u32| {
        let mut s = spec("i1", EngineKind::Vllm, "v1", 10.0);
        s.config.max_num_batched_tokens = Some(budget);
        s.workload.prompt_tokens_mean = 2000.0;
        fleet_of(vec![s], 41)
    };
    let (mut ok, mut tight) = (make(8192), make(64));
    ok.advance(60.0);
    tight.advance(60.0);
    let t_ok = window_mean(
        "",
        &ok.render("i1").expect("exists"),
        "vllm:time_to_first_token_seconds",
    );
    let t_tight = window_mean(
        "",
        &tight.render("i1").expect("exists"),
        "vllm:time_to_first_token_seconds",
    );
    assert!(t_tight > 2.0 * t_ok, "ttft {t_ok} -> {t_tight}");
}

#[test]
fn a_small_kv_pool_preempts_and_fills_up() {
    let mut s = spec("i1", EngineKind::Vllm, "v1", 30.0);
    s.config.gpu_memory_utilization = Some(0.3);
    let mut fleet = fleet_of(vec![s], 51);
    fleet.advance(60.0);
    let text = fleet.render("i1").expect("exists");
    assert!(sum_of(&text, "vllm:num_preemptions_total", &[]) > 0.0);
    assert!(sum_of(&text, "vllm:kv_cache_usage_perc", &[]) > 0.8);
}

#[test]
fn prefix_caching_off_means_no_hits() {
    let make = |on: bool| {
        let mut s = spec("i1", EngineKind::Vllm, "v1", 5.0);
        s.config.enable_prefix_caching = Some(on);
        s.workload.prefix_share = 0.6;
        let mut f = fleet_of(vec![s], 61);
        f.advance(30.0);
        f.render("i1").expect("exists")
    };
    let on = make(true);
    let off = make(false);
    let ratio = sum_of(&on, "vllm:prefix_cache_hits_total", &[])
        / sum_of(&on, "vllm:prefix_cache_queries_total", &[]);
    assert!((0.4..0.65).contains(&ratio), "hit ratio {ratio}");
    assert_eq!(sum_of(&off, "vllm:prefix_cache_hits_total", &[]), 0.0);
    assert!(sum_of(&off, "vllm:prefix_cache_queries_total", &[]) > 0.0);
}

#[test]
fn fp8_decodes_faster_than_16_bit_weights() {
    let make = |q: Quantization| {
        let mut s = spec("i1", EngineKind::Vllm, "v1", 8.0);
        s.config.quantization = Some(q);
        let mut f = fleet_of(vec![s], 71);
        f.advance(60.0);
        f.render("i1").expect("exists")
    };
    let full = window_mean(
        "",
        &make(Quantization::None),
        "vllm:inter_token_latency_seconds",
    );
    let fp8 = window_mean(
        "",
        &make(Quantization::Fp8),
        "vllm:inter_token_latency_seconds",
    );
    assert!(fp8 < 0.8 * full, "itl {full} -> {fp8}");
}

#[test]
fn itl_rises_with_batch_size() {
    let itl_at = |rate: f64| {
        let mut f = fleet_of(vec![spec("i1", EngineKind::Vllm, "v1", rate)], 81);
        f.advance(60.0);
        window_mean(
            "",
            &f.render("i1").expect("exists"),
            "vllm:inter_token_latency_seconds",
        )
    };
    let light = itl_at(2.0);
    let heavy = itl_at(40.0);
    assert!(heavy > 1.3 * light, "itl {light} -> {heavy}");
}

#[test]
fn ttft_is_queue_time_plus_prefill_time_and_e2e_adds_decode() {
    let mut f = fleet_of(vec![spec("i1", EngineKind::Vllm, "v1", 20.0)], 91);
    f.advance(60.0);
    let text = f.render("i1").expect("exists");
    let ttft = window_mean("", &text, "vllm:time_to_first_token_seconds");
    let queue = window_mean("", &text, "vllm:request_queue_time_seconds");
    let prefill = window_mean("", &text, "vllm:request_prefill_time_seconds");
    // Queue time is recorded at admission and TTFT when the request finishes, so the two means
    // cover slightly different requests: equal within a few percent, not exactly.
    let sum = queue + prefill;
    assert!(
        (ttft - sum).abs() < 0.1 * sum,
        "{ttft} vs {queue} + {prefill}"
    );
    let e2e = window_mean("", &text, "vllm:e2e_request_latency_seconds");
    let decode = window_mean("", &text, "vllm:request_decode_time_seconds");
    assert!(
        (e2e - (ttft + decode)).abs() < 0.01 * e2e,
        "{e2e} vs {ttft} + {decode}"
    );
}

#[test]
fn put_config_returns_the_previous_config_and_rolls_back() {
    let mut f = one(EngineKind::Vllm, "v1", 5.0);
    let original = f.config("i1").expect("exists");
    let patch = ConfigPatch {
        max_num_seqs: Some(32),
        ..ConfigPatch::default()
    };
    let previous = f.put_config("i1", &patch, true).expect("applies");
    assert_eq!(previous, original);
    assert_eq!(f.config("i1").expect("exists").max_num_seqs, 32);
    let back = perfagent_sim::fleet::full_patch(&previous);
    f.put_config("i1", &back, true).expect("rolls back");
    assert_eq!(f.config("i1").expect("exists"), original);
}

#[test]
fn a_restart_resets_counters_and_a_hot_apply_keeps_them() {
    let mut f = one(EngineKind::Vllm, "v1", 5.0);
    f.advance(20.0);
    let patch = ConfigPatch {
        max_num_seqs: Some(64),
        ..ConfigPatch::default()
    };
    f.put_config("i1", &patch, false).expect("applies");
    let kept = sum_of(
        &f.render("i1").expect("exists"),
        "vllm:prompt_tokens_total",
        &[],
    );
    assert!(kept > 0.0);
    f.put_config("i1", &patch, true).expect("applies");
    let reset = sum_of(
        &f.render("i1").expect("exists"),
        "vllm:prompt_tokens_total",
        &[],
    );
    assert_eq!(reset, 0.0);
    assert_eq!(f.view("i1").expect("exists").restarts, 1);
}

#[test]
fn a_config_that_cannot_fit_the_model_keeps_the_server_down() {
    let mut f = one(EngineKind::Vllm, "v1", 5.0);
    let patch = ConfigPatch {
        gpu_memory_utilization: Some(0.2),
        ..ConfigPatch::default()
    };
    f.put_config("i1", &patch, true)
        .expect("a valid config, just a bad one");
    match f.scrape("i1").expect("exists") {
        ScrapeOutcome::Unavailable(msg) => assert!(msg.contains("No available memory"), "{msg}"),
        other => panic!("expected the server down, got {other:?}"),
    }
    assert!(!f.view("i1").expect("exists").state.up);
}

#[test]
fn reset_restores_initial_configs_and_load() {
    let mut f = one(EngineKind::Vllm, "v1", 5.0);
    let original = f.config("i1").expect("exists");
    let scenario = |name: &str| Scenario {
        name: name.into(),
        group: None,
        instance: None,
        factor: None,
        config: None,
        restart: None,
    };
    f.scenario(&scenario("bad_config")).expect("applies");
    f.scenario(&scenario("load_spike")).expect("applies");
    assert!(f.config("i1").expect("exists").harmful);
    f.scenario(&scenario("reset")).expect("applies");
    assert_eq!(f.config("i1").expect("exists"), original);
    assert_eq!(f.view("i1").expect("exists").rate_factor, 1.0);
    assert!(harmful_patch().harmful == Some(true));
}

#[test]
fn an_unknown_scenario_is_refused_with_the_known_names() {
    let mut f = one(EngineKind::Vllm, "v1", 5.0);
    let err = f
        .scenario(&Scenario {
            name: "meteor".into(),
            group: None,
            instance: None,
            factor: None,
            config: None,
            restart: None,
        })
        .expect_err("unknown");
    assert!(err.to_string().contains("load_spike"), "{err}");
}

#[test]
fn long_prompts_fill_the_kv_pool() {
    let make = || {
        let mut s = spec("i1", EngineKind::Vllm, "v1", 10.0);
        s.config.gpu_memory_utilization = Some(0.5);
        fleet_of(vec![s], 101)
    };
    let (mut base, mut long) = (make(), make());
    long.scenario(&Scenario {
        name: "long_prompts".into(),
        group: None,
        instance: Some("i1".into()),
        factor: Some(6.0),
        config: None,
        restart: None,
    })
    .expect("scenario applies");
    base.advance(60.0);
    long.advance(60.0);
    let kv = |f: &perfagent_sim::fleet::Fleet| {
        sum_of(
            &f.render("i1").expect("exists"),
            "vllm:kv_cache_usage_perc",
            &[],
        )
    };
    assert!(
        kv(&long) > 2.0 * kv(&base),
        "kv {} -> {}",
        kv(&base),
        kv(&long)
    );
    assert_eq!(long.view("i1").expect("exists").prompt_factor, 6.0);
}
