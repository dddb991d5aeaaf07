//! The agent's engine adapters read the simulator's output as they read real servers: the
//! engine and generation are recognized and the canonical values equal the model's own state.

mod common;

use common::*;
use perfagent::engine::normalize;
use perfagent::promtext::{parse, Mode};
use perfagent::snapshot::{Canonical, Engine};
use perfagent_sim::config::EngineKind;

fn engine_of(kind: EngineKind) -> Engine {
    match kind {
        EngineKind::Vllm => Engine::Vllm,
        EngineKind::Tgi => Engine::Tgi,
        EngineKind::Sglang => Engine::Sglang,
    }
}

#[test]
fn canonical_values_match_the_model_state_for_every_generation() {
    for (engine, generation) in GENERATIONS {
        let mut s = spec("i1", engine, generation, 12.0);
        // Enough load for waiting requests and preemptions to be non-zero somewhere.
        s.config.gpu_memory_utilization = Some(0.35);
        let mut fleet = fleet_of(vec![s], 17);
        fleet.advance(45.0);
        let text = fleet.render("i1").expect("exists");
        let view = fleet.view("i1").expect("exists");
        let expo = parse(text.as_bytes(), Mode::Lenient).expect("parses");
        let snap = normalize(&expo, Some(engine_of(engine)))
            .unwrap_or_else(|e| panic!("{engine} {generation}: {e}"));
        assert_eq!(snap.engine, engine_of(engine));
        let model = snap
            .models
            .first()
            .unwrap_or_else(|| panic!("{engine} {generation}: no model"));
        let ctx = format!("{engine} {generation} ({})", snap.generation);
        assert_eq!(
            model.number(Canonical::RequestsRunning),
            Some(view.state.running as f64),
            "{ctx}: running"
        );
        assert_eq!(
            model.number(Canonical::RequestsWaiting),
            Some(view.state.waiting as f64),
            "{ctx}: waiting"
        );
        if engine != EngineKind::Tgi {
            assert_eq!(
                model.number(Canonical::PromptTokensTotal),
                Some(view.state.prompt_tokens_total as f64),
                "{ctx}: prompt tokens"
            );
            assert_eq!(
                model.number(Canonical::GenerationTokensTotal),
                Some(view.state.generation_tokens_total as f64),
                "{ctx}: generation tokens"
            );
            let kv = model
                .number(Canonical::KvCacheUsageRatio)
                .unwrap_or_else(|| panic!("{ctx}: kv usage"));
            assert!(
                (kv - view.state.kv_cache_usage).abs() < 0.011,
                "{ctx}: kv {kv}"
            );
            let ttft = model
                .histogram(Canonical::TtftSeconds)
                .unwrap_or_else(|| panic!("{ctx}: ttft"));
            assert!(ttft.count > 0.0, "{ctx}: ttft observed");
        } else {
            assert_eq!(
                model.number(Canonical::KvCacheUsageRatio),
                None,
                "{ctx}: TGI has no KV"
            );
        }
        let e2e = model
            .histogram(Canonical::E2eLatencySeconds)
            .unwrap_or_else(|| panic!("{ctx}: e2e"));
        assert_eq!(
            e2e.count, view.state.requests_finished_total as f64,
            "{ctx}: finished"
        );
    }
}
