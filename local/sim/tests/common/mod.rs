//! Helpers shared by the simulator's integration tests: one-instance fleets per generation and
//! reading values back through the project's own Prometheus parser.

#![allow(dead_code)] // each test binary uses a different subset

use perfagent::promtext::{parse, Mode};
use perfagent_sim::config::{ConfigPatch, EngineKind, Hardware, Workload};
use perfagent_sim::fleet::{Fleet, FleetSpec, InstanceSpec};

pub const EPOCH: f64 = 1_771_042_382.34;

/// Every (engine, generation) the simulator speaks.
pub const GENERATIONS: [(EngineKind, &str); 6] = [
    (EngineKind::Vllm, "v1"),
    (EngineKind::Vllm, "0.10"),
    (EngineKind::Vllm, "v0"),
    (EngineKind::Tgi, "v3"),
    (EngineKind::Sglang, "current"),
    (EngineKind::Sglang, "0.4"),
];

pub fn spec(id: &str, engine: EngineKind, generation: &str, rate_rps: f64) -> InstanceSpec {
    InstanceSpec {
        id: id.to_string(),
        engine,
        generation: Some(generation.to_string()),
        model: "meta-llama/Llama-3.1-8B-Instruct".to_string(),
        group: "g1".to_string(),
        hardware: Hardware {
            tensor_parallel_size: if engine == EngineKind::Sglang { 2 } else { 1 },
            ..Hardware::default()
        },
        config: ConfigPatch::default(),
        workload: Workload {
            rate_rps,
            ..Workload::default()
        },
    }
}

pub fn fleet_of(specs: Vec<InstanceSpec>, seed: u64) -> Fleet {
    let spec = FleetSpec {
        seed: Some(seed),
        instances: specs,
    };
    Fleet::from_spec(&spec, seed, EPOCH).expect("valid fleet")
}

pub fn one(engine: EngineKind, generation: &str, rate_rps: f64) -> Fleet {
    fleet_of(vec![spec("i1", engine, generation, rate_rps)], 7)
}

/// Sum of every sample named `name` whose labels contain all of `with`.
pub fn sum_of(text: &str, name: &str, with: &[(&str, &str)]) -> f64 {
    let expo = parse(text.as_bytes(), Mode::Lenient).expect("parses");
    expo.samples()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.get(k).is_some_and(|x| x.as_ref() == *v))
        })
        .map(|s| s.value)
        .sum()
}

/// Whether any sample is named `name`.
pub fn has(text: &str, name: &str) -> bool {
    let expo = parse(text.as_bytes(), Mode::Lenient).expect("parses");
    let found = expo.samples().any(|s| s.name == name);
    found
}

/// (sum, count) of a histogram over all its series.
pub fn hist_totals(text: &str, family: &str) -> (f64, f64) {
    (
        sum_of(text, &format!("{family}_sum"), &[]),
        sum_of(text, &format!("{family}_count"), &[]),
    )
}

/// Mean of the observations made between two scrapes.
pub fn window_mean(before: &str, after: &str, family: &str) -> f64 {
    let (s0, c0) = hist_totals(before, family);
    let (s1, c1) = hist_totals(after, family);
    assert!(c1 > c0, "{family}: no observations in the window");
    (s1 - s0) / (c1 - c0)
}

/// The TTFT-like and per-token histogram families of a generation.
pub fn ttft_family(engine: EngineKind) -> &'static str {
    match engine {
        EngineKind::Vllm => "vllm:time_to_first_token_seconds",
        EngineKind::Sglang => "sglang:time_to_first_token_seconds",
        // TGI has no TTFT; the queue time is what a load spike moves first.
        EngineKind::Tgi => "tgi_request_queue_duration",
    }
}

pub fn waiting_gauge(engine: EngineKind) -> &'static str {
    match engine {
        EngineKind::Vllm => "vllm:num_requests_waiting",
        EngineKind::Sglang => "sglang:num_queue_reqs",
        EngineKind::Tgi => "tgi_queue_size",
    }
}
