//! The simulated orchestrator over HTTP, next to an in-process fleet simulator: the contract's
//! signature and idempotency rules, knob translation per engine on the fleet, apply/rollback
//! round trips through the agent's own client, failure injection, approval modes (against a
//! stub of the agent's API that records what it receives), and the binary's READY handshake.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;
use perfagent::instance::{EngineConfig as AgentConfig, Id};
use perfagent::orchestrator::{
    sign, HttpOrchestrator, OrchestratorConfig, IDEMPOTENCY_HEADER, SIGNATURE_HEADER,
};
use perfagent::workflow::ports::{
    ApplyConfig, Orchestrator, OrchestratorError, RollbackConfigs, SystemClock,
};
use perfagent::workflow::Stage;
use perfagent_sim::config::{
    ConfigPatch, EngineConfig, EngineKind, Hardware, Quantization, Workload,
};
use perfagent_sim::fleet::{Fleet, FleetSpec, InstanceSpec, InstanceView};
use perfagent_sim::orchestrator::approver::{ApprovalMode, ModeSettings, Principal};
use perfagent_sim::orchestrator::fleet_admin::{
    ConfigChange, FleetAdmin, FleetCallError, HttpFleet, LocalFleet,
};
use perfagent_sim::orchestrator::{serve, OrchestratorState, Outcome, Settings};
use perfagent_sim::server::{self, AppState};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

const SECRET: &[u8] = b"orchestrator-test-secret";

fn spec(id: &str, engine: EngineKind, gpu_memory_gb: f64) -> InstanceSpec {
    InstanceSpec {
        id: id.to_string(),
        engine,
        generation: None,
        model: "meta-llama/Llama-3.1-8B-Instruct".to_string(),
        group: "chat-prod".to_string(),
        hardware: Hardware {
            gpu_memory_gb,
            ..Hardware::default()
        },
        config: ConfigPatch::default(),
        workload: Workload::default(),
    }
}

/// vLLM, TGI and SGLang on 80 GB GPUs, and a vLLM on a 32 GB GPU (little KV room).
fn fleet_state() -> AppState {
    let spec = FleetSpec {
        seed: Some(3),
        instances: vec![
            spec("vllm-1", EngineKind::Vllm, 80.0),
            spec("tgi-1", EngineKind::Tgi, 80.0),
            spec("sgl-1", EngineKind::Sglang, 80.0),
            spec("vllm-small", EngineKind::Vllm, 32.0),
        ],
    };
    AppState::new(Fleet::from_spec(&spec, 3, 1_771_000_000.0).expect("fleet"))
}

async fn listen() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", l.local_addr().expect("addr"));
    (l, base)
}

/// Serves the fleet simulator's HTTP API; returns its base URL.
async fn serve_fleet(state: AppState) -> String {
    let (l, base) = listen().await;
    tokio::spawn(async move {
        let _ = axum::serve(l, server::router(state)).await;
    });
    base
}

/// Starts the orchestrator with no principals and `manual` mode unless `tweak` says otherwise.
async fn start(
    fleet: Arc<dyn FleetAdmin>,
    tweak: impl FnOnce(&mut Settings),
) -> (OrchestratorState, String) {
    let mut settings = Settings::new(SECRET.to_vec());
    settings.principals.clear();
    tweak(&mut settings);
    let state = OrchestratorState::new(settings, fleet).expect("state");
    let (l, base) = listen().await;
    tokio::spawn(serve(l, state.clone(), std::future::pending()));
    (state, base)
}

async fn start_local(fleet: &AppState) -> (OrchestratorState, String) {
    start(Arc::new(LocalFleet::new(fleet.clone())), |_| {}).await
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// How a test request is signed.
enum Sig<'a> {
    Good,
    At(i64),
    Secret(&'a [u8]),
    Missing,
}

struct Reply {
    status: u16,
    bytes: Vec<u8>,
    json: Value,
}

async fn post(base: &str, path: &str, body: &Value, key: Option<&str>, sig: Sig<'_>) -> Reply {
    let bytes = serde_json::to_vec(body).expect("encode");
    let mut req = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(bytes.clone());
    if let Some(k) = key {
        req = req.header(IDEMPOTENCY_HEADER, k);
    }
    let header = match sig {
        Sig::Good => Some(sign(SECRET, now_s(), &bytes).expect("sign")),
        Sig::At(t) => Some(sign(SECRET, t, &bytes).expect("sign")),
        Sig::Secret(s) => Some(sign(s, now_s(), &bytes).expect("sign")),
        Sig::Missing => None,
    };
    if let Some(h) = header {
        req = req.header(SIGNATURE_HEADER, h);
    }
    let resp = req.send().await.expect("answer");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("body").to_vec();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        bytes,
        json,
    }
}

async fn admin(base: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut req = reqwest::Client::new().request(method, format!("{base}{path}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("answer");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.expect("json")
}

fn status_body(key: &str) -> Value {
    json!({"idempotency_key": key, "workflow_id": "wf-1", "group": "chat-prod",
           "state": "IN_PROGRESS", "stage": "CANARY", "step": 0,
           "message": "canary applied", "at_ms": 1_700_000_000_000_i64})
}

fn apply_body(key: &str, instances: &[&str], changes: Value) -> Value {
    json!({"idempotency_key": key, "workflow_id": "wf-1", "group": "chat-prod",
           "stage": "CANARY", "step": 0, "instances": instances, "changes": changes})
}

fn id(s: &str) -> Id {
    Id::parse("id", s).expect("id")
}

fn agent_config(v: Value) -> AgentConfig {
    serde_json::from_value(v).expect("config")
}

fn agent_client(base: &str, timeout: Duration) -> HttpOrchestrator {
    HttpOrchestrator::new(
        OrchestratorConfig {
            base_url: base.to_string(),
            secret: SECRET.to_vec(),
            timeout,
        },
        Arc::new(SystemClock),
    )
    .expect("client")
}

fn apply_request(instances: &[&str], changes: Value) -> ApplyConfig {
    ApplyConfig {
        workflow_id: id("wf-1"),
        group: id("chat-prod"),
        stage: Stage::Canary,
        step: 0,
        instances: instances.iter().map(|i| id(i)).collect(),
        changes: agent_config(changes),
    }
}

fn config_of(fleet: &AppState, id: &str) -> EngineConfig {
    fleet.lock().config(id).expect("instance")
}

fn restarts_of(fleet: &AppState, id: &str) -> u32 {
    fleet.lock().view(id).expect("instance").restarts
}

#[tokio::test]
async fn a_good_signature_is_accepted_and_bad_expired_tampered_or_missing_ones_get_401() {
    let fleet = fleet_state();
    let (state, base) = start_local(&fleet).await;
    let ok = post(
        &base,
        "/v1/status",
        &status_body("wf-1:status:1"),
        Some("wf-1:status:1"),
        Sig::Good,
    )
    .await;
    assert_eq!(ok.status, 202);
    assert_eq!(ok.json, json!({}));

    let cases = [
        (Sig::Secret(b"not the shared secret"), "BadSignature"),
        (Sig::At(now_s() - 302), "ExpiredSignature"),
        // From the future (a second may pass before the server looks at it).
        (Sig::At(now_s() + 303), "ExpiredSignature"),
        (Sig::Missing, "MissingSignature"),
    ];
    for (i, (sig, name)) in cases.into_iter().enumerate() {
        let key = format!("wf-1:status:{}", i + 10);
        let r = post(&base, "/v1/status", &status_body(&key), Some(&key), sig).await;
        assert_eq!(r.status, 401, "{name}");
        assert_eq!(r.json["error"], name);
    }
    // A signature over other bytes than those received.
    let body = serde_json::to_vec(&status_body("wf-1:status:20")).expect("encode");
    let header = sign(SECRET, now_s(), b"{}").expect("sign");
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/status"))
        .header(IDEMPOTENCY_HEADER, "wf-1:status:20")
        .header(SIGNATURE_HEADER, header)
        .body(body)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 401);

    let view = state.state_view();
    assert_eq!(
        view["statuses"].as_array().map(Vec::len),
        Some(1),
        "refused calls did nothing"
    );
    let refused = state
        .calls()
        .iter()
        .filter(|c| c.status == 401 && c.outcome == Outcome::Refused)
        .count();
    assert_eq!(refused, 5, "every refused call is recorded");
}

#[tokio::test]
async fn the_same_key_twice_applies_once_and_answers_the_same_bytes() {
    let fleet = fleet_state();
    let (state, base) = start_local(&fleet).await;
    let body = apply_body("wf-1:canary:0", &["vllm-1"], json!({"max_num_seqs": 128}));
    let first = post(
        &base,
        "/v1/configs/apply",
        &body,
        Some("wf-1:canary:0"),
        Sig::Good,
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.json);
    // Let the signature's timestamp move so the second request's bytes on the wire differ.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = post(
        &base,
        "/v1/configs/apply",
        &body,
        Some("wf-1:canary:0"),
        Sig::Good,
    )
    .await;
    assert_eq!(second.status, 200);
    assert_eq!(second.bytes, first.bytes, "the first answer, byte for byte");
    assert_eq!(first.json["previous"]["vllm-1"]["max_num_seqs"], 256);

    assert_eq!(config_of(&fleet, "vllm-1").max_num_seqs, 128);
    assert_eq!(restarts_of(&fleet, "vllm-1"), 1, "one redeploy, not two");
    assert_eq!(state.applies().len(), 1);
    let outcomes: Vec<Outcome> = state.calls().iter().map(|c| c.outcome).collect();
    assert_eq!(outcomes, vec![Outcome::Executed, Outcome::Replayed]);
    let view = state.state_view();
    assert_eq!(
        view["instances"]["vllm-1"]["applied"],
        json!(["wf-1:canary:0"])
    );

    // The key with another body is refused; header and body keys must agree.
    let other = apply_body("wf-1:canary:0", &["vllm-1"], json!({"max_num_seqs": 64}));
    let r = post(
        &base,
        "/v1/configs/apply",
        &other,
        Some("wf-1:canary:0"),
        Sig::Good,
    )
    .await;
    assert_eq!(
        (r.status, r.json["error"].clone()),
        (422, json!("KeyReused"))
    );
    let r = post(
        &base,
        "/v1/configs/apply",
        &other,
        Some("wf-1:canary:9"),
        Sig::Good,
    )
    .await;
    assert_eq!(
        (r.status, r.json["error"].clone()),
        (400, json!("KeyMismatch"))
    );
    let r = post(&base, "/v1/configs/apply", &other, None, Sig::Good).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        config_of(&fleet, "vllm-1").max_num_seqs,
        128,
        "none of them applied"
    );
}

#[tokio::test]
async fn apply_returns_engine_native_previous_configs_and_rollback_restores_them_on_the_fleet() {
    // Over the fleet simulator's HTTP admin API this time, through the agent's own client.
    let fleet = fleet_state();
    let fleet_url = serve_fleet(fleet.clone()).await;
    let (state, base) = start(
        Arc::new(HttpFleet::new(&fleet_url).expect("fleet url")),
        |_| {},
    )
    .await;
    let before: BTreeMap<&str, EngineConfig> = ["tgi-1", "sgl-1"]
        .into_iter()
        .map(|i| (i, config_of(&fleet, i)))
        .collect();
    let client = agent_client(&base, Duration::from_secs(10));

    let tgi = client
        .apply_config(
            &apply_request(
                &["tgi-1"],
                json!({"max_batch_prefill_tokens": 2048, "quantize": "eetq"}),
            ),
            "wf-1:canary:0",
        )
        .await
        .expect("applied");
    assert_eq!(
        serde_json::to_value(&tgi).expect("json"),
        json!({"tgi-1": {"max_batch_size": 256, "max_batch_prefill_tokens": 4096,
                          "max_total_tokens": 8192, "cuda_memory_fraction": 0.9,
                          "max_concurrent_requests": 128, "quantize": null,
                          "kv_cache_dtype": null}})
    );
    let now = config_of(&fleet, "tgi-1");
    assert_eq!(now.max_num_batched_tokens, 2048);
    assert_eq!(now.quantization, Quantization::Int8);

    let sgl = client
        .apply_config(
            &ApplyConfig {
                stage: Stage::Rollout,
                step: 1,
                ..apply_request(
                    &["sgl-1"],
                    json!({"mem_fraction_static": 0.8, "disable_radix_cache": true}),
                )
            },
            "wf-1:rollout:1",
        )
        .await
        .expect("applied");
    assert_eq!(sgl[&id("sgl-1")]["mem_fraction_static"], json!(0.9));
    assert_eq!(sgl[&id("sgl-1")]["disable_radix_cache"], json!(false));
    assert!(!config_of(&fleet, "sgl-1").enable_prefix_caching);

    for (inst, previous) in [("tgi-1", &tgi), ("sgl-1", &sgl)] {
        let configs: BTreeMap<Id, AgentConfig> = previous.clone();
        client
            .rollback(
                &RollbackConfigs {
                    workflow_id: id("wf-1"),
                    group: id("chat-prod"),
                    configs,
                    reason: "canary regressed".into(),
                },
                &format!("wf-1:rollback:{inst}"),
            )
            .await
            .expect("rolled back");
        assert_eq!(
            &config_of(&fleet, inst),
            &before[inst],
            "{inst} exactly as before"
        );
    }
    let rollbacks = state.rollbacks();
    assert_eq!(rollbacks.len(), 2);
    assert_eq!(rollbacks[0].restored, vec!["tgi-1".to_string()]);
}

#[tokio::test]
async fn a_simulator_only_setting_survives_the_round_trip_under_its_sim_key() {
    let fleet = fleet_state();
    // A scenario made the TGI instance slow: TGI has no flag for that.
    fleet
        .lock()
        .put_config(
            "tgi-1",
            &ConfigPatch::from_json(br#"{"harmful": true, "block_size": 64}"#).expect("patch"),
            true,
        )
        .expect("put");
    let before = config_of(&fleet, "tgi-1");
    let (_state, base) = start_local(&fleet).await;
    let body = apply_body(
        "wf-2:canary:0",
        &["tgi-1"],
        json!({"max_concurrent_requests": 64}),
    );
    let r = post(
        &base,
        "/v1/configs/apply",
        &body,
        Some("wf-2:canary:0"),
        Sig::Good,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let previous = r.json["previous"]["tgi-1"].clone();
    assert_eq!(previous["sim.harmful"], json!(true));
    assert_eq!(previous["sim.block_size"], json!(64));
    let rb = json!({"idempotency_key": "wf-2:rollback:tgi-1", "workflow_id": "wf-2",
                    "group": "chat-prod", "configs": {"tgi-1": previous}, "reason": "test"});
    let r = post(
        &base,
        "/v1/configs/rollback",
        &rb,
        Some("wf-2:rollback:tgi-1"),
        Sig::Good,
    )
    .await;
    assert_eq!(
        (r.status, r.json.clone()),
        (200, json!({"restored": ["tgi-1"]}))
    );
    assert_eq!(config_of(&fleet, "tgi-1"), before);
}

#[tokio::test]
async fn with_harm_an_apply_makes_instances_harmful_and_a_rollback_with_previous_undoes_it() {
    let fleet = fleet_state();
    let before = config_of(&fleet, "tgi-1");
    let (state, base) = start(Arc::new(LocalFleet::new(fleet.clone())), |s| s.harm = true).await;
    let get_harm = || admin(&base, reqwest::Method::GET, "/admin/harm", None);
    assert_eq!(get_harm().await, json!({"enabled": true}));
    let changes = json!({"max_concurrent_requests": 64});
    let body = apply_body("wf-3:canary:0", &["tgi-1"], changes.clone());
    let r = post(
        &base,
        "/v1/configs/apply",
        &body,
        Some("wf-3:canary:0"),
        Sig::Good,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let now = config_of(&fleet, "tgi-1");
    assert!(now.harmful, "harm turned the switch on");
    assert_eq!(now.max_concurrent_requests, Some(64));
    let previous = r.json["previous"]["tgi-1"].clone();
    assert!(
        !previous.to_string().contains("harmful"),
        "previous is the config before, engine-native: {previous}"
    );
    let record = &state.applies()[0];
    assert!(record.harm);
    assert_eq!(record.translated["tgi-1"]["harmful"], json!(true));
    assert_eq!(state.state_view()["harm"], json!(true));

    let rb = json!({"idempotency_key": "wf-3:rollback:tgi-1", "workflow_id": "wf-3",
                    "group": "chat-prod", "configs": {"tgi-1": previous}, "reason": "test"});
    let r = post(
        &base,
        "/v1/configs/rollback",
        &rb,
        Some("wf-3:rollback:tgi-1"),
        Sig::Good,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert!(
        !config_of(&fleet, "tgi-1").harmful,
        "rollbacks never set harm"
    );
    assert_eq!(config_of(&fleet, "tgi-1"), before);

    // Switched off over the admin API (a bad body is 400; reset keeps it): applies as before.
    let put = |body: &str| {
        reqwest::Client::new()
            .put(format!("{base}/admin/harm"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    for bad in [
        r#"{"enabled": "yes"}"#,
        r#"{}"#,
        r#"{"enabled": true, "x": 1}"#,
    ] {
        assert_eq!(put(bad).await.expect("answer").status(), 400, "{bad}");
    }
    admin(&base, reqwest::Method::POST, "/admin/reset", None).await;
    assert_eq!(get_harm().await, json!({"enabled": true}));
    let off = put(r#"{"enabled": false}"#).await.expect("answer");
    assert_eq!(
        off.json::<Value>().await.expect("json"),
        json!({"enabled": false})
    );
    assert!(!state.harm());
    let body = apply_body("wf-4:canary:0", &["tgi-1"], changes);
    let r = post(
        &base,
        "/v1/configs/apply",
        &body,
        Some("wf-4:canary:0"),
        Sig::Good,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert!(!config_of(&fleet, "tgi-1").harmful);
    let record = &state.applies()[0];
    assert!(!record.harm);
    assert_eq!(
        Value::Object(record.translated["tgi-1"].clone()),
        json!({"max_concurrent_requests": 64})
    );
}

#[tokio::test]
async fn an_unknown_or_untranslatable_knob_is_refused_with_422_naming_it_and_nothing_changes() {
    let fleet = fleet_state();
    let (state, base) = start_local(&fleet).await;
    let cases = [
        (
            "vllm-1",
            json!({"max_batch_prefill_tokens": 1024}),
            "UnknownKnob",
            "max_batch_prefill_tokens",
        ),
        (
            "tgi-1",
            json!({"max_num_seqs": 64}),
            "UnknownKnob",
            "max_num_seqs",
        ),
        (
            "sgl-1",
            json!({"schedule_conservativeness": 1.3}),
            "NoSimulatorEquivalent",
            "schedule_conservativeness",
        ),
        (
            "tgi-1",
            json!({"quantize": "gptq"}),
            "UnsupportedValue",
            "quantize",
        ),
        (
            "tgi-1",
            json!({"max_batch_total_tokens": 90_000_000}),
            "TokenBudgetTooLarge",
            "max_batch_total_tokens",
        ),
    ];
    for (i, (inst, changes, name, knob)) in cases.into_iter().enumerate() {
        let before = config_of(&fleet, inst);
        let key = format!("wf-3:canary:{i}");
        let r = post(
            &base,
            "/v1/configs/apply",
            &apply_body(&key, &[inst], changes),
            Some(&key),
            Sig::Good,
        )
        .await;
        assert_eq!(r.status, 422, "{inst} {knob}: {}", r.json);
        assert_eq!(r.json["error"], name, "{}", r.json);
        let message = r.json["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(knob) && message.contains(inst),
            "{message}"
        );
        assert_eq!(config_of(&fleet, inst), before);
        assert_eq!(restarts_of(&fleet, inst), 0);
    }
    // A malformed value is a 400; the agent's client reads both as a refusal.
    let r = post(
        &base,
        "/v1/configs/apply",
        &apply_body(
            "wf-3:canary:9",
            &["sgl-1"],
            json!({"max_running_requests": "lots"}),
        ),
        Some("wf-3:canary:9"),
        Sig::Good,
    )
    .await;
    assert_eq!(
        (r.status, r.json["error"].clone()),
        (400, json!("InvalidValue"))
    );
    let err = agent_client(&base, Duration::from_secs(10))
        .apply_config(
            &apply_request(&["vllm-1"], json!({"quantize": "awq"})),
            "wf-3:canary:10",
        )
        .await
        .expect_err("refused");
    assert!(
        matches!(err, OrchestratorError::Rejected { status: 422, .. }),
        "{err}"
    );
    assert!(state.applies().is_empty(), "nothing reached the fleet");
}

#[tokio::test]
async fn an_apply_is_all_or_none_across_its_instances() {
    let fleet = fleet_state();
    let (state, base) = start_local(&fleet).await;
    // One instance cannot take the knob at all: refused before anything changes.
    let body = apply_body(
        "wf-4:canary:0",
        &["tgi-1", "vllm-1"],
        json!({"max_batch_prefill_tokens": 2048}),
    );
    let r = post(
        &base,
        "/v1/configs/apply",
        &body,
        Some("wf-4:canary:0"),
        Sig::Good,
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(restarts_of(&fleet, "tgi-1"), 0);

    // The second instance does not start with the new config: the first is put back.
    let before = config_of(&fleet, "vllm-1");
    let body = apply_body(
        "wf-4:canary:1",
        &["vllm-1", "vllm-small"],
        json!({"max_model_len": 200_000}),
    );
    let r = post(
        &base,
        "/v1/configs/apply",
        &body,
        Some("wf-4:canary:1"),
        Sig::Good,
    )
    .await;
    assert_eq!(
        (r.status, r.json["error"].clone()),
        (422, json!("StartupFailed")),
        "{}",
        r.json
    );
    assert!(r.json["message"]
        .as_str()
        .unwrap_or_default()
        .contains("vllm-small"));
    assert_eq!(config_of(&fleet, "vllm-1"), before);
    assert!(fleet.lock().view("vllm-small").expect("view").state.up);
    assert_eq!(state.applies().last().map(|a| a.status), Some(422));
}

#[tokio::test]
async fn an_unknown_instance_is_404_and_that_answer_is_kept_under_its_key() {
    let fleet = fleet_state();
    let (state, base) = start_local(&fleet).await;
    let body = apply_body("wf-5:canary:0", &["nope"], json!({"max_num_seqs": 8}));
    let first = post(
        &base,
        "/v1/configs/apply",
        &body,
        Some("wf-5:canary:0"),
        Sig::Good,
    )
    .await;
    assert_eq!(
        (first.status, first.json["error"].clone()),
        (404, json!("UnknownInstance"))
    );
    // The instance appears later; the key still answers what it answered first.
    fleet
        .lock()
        .add(&spec("nope", EngineKind::Vllm, 80.0))
        .expect("add");
    let again = post(
        &base,
        "/v1/configs/apply",
        &body,
        Some("wf-5:canary:0"),
        Sig::Good,
    )
    .await;
    assert_eq!((again.status, again.bytes), (404, first.bytes));
    assert_eq!(
        state.calls().last().map(|c| c.outcome),
        Some(Outcome::Replayed)
    );
}

/// Wraps the in-process fleet: waits before each change, and fails the listed change calls.
struct FlakyFleet {
    inner: LocalFleet,
    delay: Duration,
    fail_puts: Vec<usize>,
    puts: AtomicUsize,
}

#[async_trait::async_trait]
impl FleetAdmin for FlakyFleet {
    async fn instance(&self, id: &str) -> Result<InstanceView, FleetCallError> {
        self.inner.instance(id).await
    }

    async fn put_config(
        &self,
        id: &str,
        changes: &Map<String, Value>,
    ) -> Result<ConfigChange, FleetCallError> {
        tokio::time::sleep(self.delay).await;
        let n = self.puts.fetch_add(1, Ordering::SeqCst);
        if self.fail_puts.contains(&n) {
            return Err(FleetCallError::Unavailable(format!("change #{n} lost")));
        }
        self.inner.put_config(id, changes).await
    }

    fn describe(&self) -> String {
        "flaky".into()
    }
}

#[tokio::test]
async fn a_fleet_failure_midway_puts_changed_instances_back_and_the_5xx_is_not_kept() {
    let fleet = fleet_state();
    let flaky = FlakyFleet {
        inner: LocalFleet::new(fleet.clone()),
        delay: Duration::ZERO,
        fail_puts: vec![1],
        puts: AtomicUsize::new(0),
    };
    let (state, base) = start(Arc::new(flaky), |_| {}).await;
    let before = config_of(&fleet, "vllm-1");
    let body = apply_body(
        "wf-6:canary:0",
        &["vllm-1", "vllm-small"],
        json!({"max_num_seqs": 100}),
    );
    let r = post(
        &base,
        "/v1/configs/apply",
        &body,
        Some("wf-6:canary:0"),
        Sig::Good,
    )
    .await;
    assert_eq!(
        (r.status, r.json["error"].clone()),
        (502, json!("FleetUnavailable"))
    );
    assert!(r.json["message"]
        .as_str()
        .unwrap_or_default()
        .contains("back on its previous config"));
    assert_eq!(config_of(&fleet, "vllm-1"), before);
    // 5xx answers are not kept: the retry runs the request.
    let r = post(
        &base,
        "/v1/configs/apply",
        &body,
        Some("wf-6:canary:0"),
        Sig::Good,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(config_of(&fleet, "vllm-small").max_num_seqs, 100);
    let outcomes: Vec<Outcome> = state.calls().iter().map(|c| c.outcome).collect();
    assert_eq!(outcomes, vec![Outcome::Failed, Outcome::Executed]);
}

#[tokio::test]
async fn a_request_whose_key_is_still_being_processed_gets_409() {
    let fleet = fleet_state();
    let slow = FlakyFleet {
        inner: LocalFleet::new(fleet.clone()),
        delay: Duration::from_millis(600),
        fail_puts: Vec::new(),
        puts: AtomicUsize::new(0),
    };
    let (state, base) = start(Arc::new(slow), |_| {}).await;
    let body = apply_body("wf-7:canary:0", &["vllm-1"], json!({"max_num_seqs": 96}));
    let (first, second) = tokio::join!(
        post(
            &base,
            "/v1/configs/apply",
            &body,
            Some("wf-7:canary:0"),
            Sig::Good
        ),
        async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            post(
                &base,
                "/v1/configs/apply",
                &body,
                Some("wf-7:canary:0"),
                Sig::Good,
            )
            .await
        }
    );
    assert_eq!(first.status, 200);
    assert_eq!(
        (second.status, second.json["error"].clone()),
        (409, json!("InProgress"))
    );
    assert_eq!(state.applies().len(), 1);
    assert_eq!(restarts_of(&fleet, "vllm-1"), 1);
}

#[tokio::test]
async fn down_answers_503_or_drops_the_connection_and_the_agent_sees_it_as_transient() {
    let fleet = fleet_state();
    let (state, base) = start_local(&fleet).await;
    let client = agent_client(&base, Duration::from_secs(5));
    admin(
        &base,
        reqwest::Method::PUT,
        "/admin/fail",
        Some(json!({"mode": "down"})),
    )
    .await;
    let r = post(
        &base,
        "/v1/status",
        &status_body("wf-8:status:1"),
        Some("wf-8:status:1"),
        Sig::Good,
    )
    .await;
    assert_eq!(r.status, 503);
    let err = client
        .apply_config(
            &apply_request(&["vllm-1"], json!({"max_num_seqs": 8})),
            "wf-8:canary:0",
        )
        .await
        .expect_err("down");
    assert!(matches!(err, OrchestratorError::Unavailable(_)), "{err}");

    admin(
        &base,
        reqwest::Method::PUT,
        "/admin/fail",
        Some(json!({"mode": "down", "close": true})),
    )
    .await;
    let err = client
        .apply_config(
            &apply_request(&["vllm-1"], json!({"max_num_seqs": 8})),
            "wf-8:canary:0",
        )
        .await
        .expect_err("no connection");
    assert!(matches!(err, OrchestratorError::Unavailable(_)), "{err}");
    assert!(state.calls().iter().any(|c| c.outcome == Outcome::Dropped));

    admin(
        &base,
        reqwest::Method::PUT,
        "/admin/fail",
        Some(json!({"mode": "off"})),
    )
    .await;
    client
        .apply_config(
            &apply_request(&["vllm-1"], json!({"max_num_seqs": 8})),
            "wf-8:canary:0",
        )
        .await
        .expect("up again");
    assert_eq!(state.applies().len(), 1);
    assert_eq!(restarts_of(&fleet, "vllm-1"), 1);
}

#[tokio::test]
async fn fail_next_fails_that_many_calls_of_one_operation_then_they_succeed() {
    let fleet = fleet_state();
    let (state, base) = start_local(&fleet).await;
    admin(
        &base,
        reqwest::Method::PUT,
        "/admin/fail",
        Some(json!({"operation": "apply", "fail_next": 2, "status": 503})),
    )
    .await;
    // Other operations are unaffected.
    let r = post(
        &base,
        "/v1/status",
        &status_body("wf-9:status:1"),
        Some("wf-9:status:1"),
        Sig::Good,
    )
    .await;
    assert_eq!(r.status, 202);
    let body = apply_body("wf-9:canary:0", &["vllm-1"], json!({"max_num_seqs": 200}));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            post(
                &base,
                "/v1/configs/apply",
                &body,
                Some("wf-9:canary:0"),
                Sig::Good,
            )
            .await
            .status,
        );
    }
    assert_eq!(statuses, vec![503, 503, 200]);
    assert_eq!(state.applies().len(), 1);
    assert_eq!(restarts_of(&fleet, "vllm-1"), 1);

    admin(
        &base,
        reqwest::Method::PUT,
        "/admin/fail",
        Some(json!({"mode": "error"})),
    )
    .await;
    let r = post(
        &base,
        "/v1/status",
        &status_body("wf-9:status:2"),
        Some("wf-9:status:2"),
        Sig::Good,
    )
    .await;
    assert_eq!(
        (r.status, r.json["error"].clone()),
        (500, json!("Injected"))
    );
}

#[tokio::test]
async fn slow_answers_late_after_doing_the_work_so_a_retry_after_a_timeout_gets_the_kept_answer() {
    let fleet = fleet_state();
    let (state, base) = start_local(&fleet).await;
    admin(
        &base,
        reqwest::Method::PUT,
        "/admin/fail",
        Some(json!({"operation": "apply", "mode": "slow", "seconds": 1.0, "fail_next": 2})),
    )
    .await;
    let started = Instant::now();
    let body = apply_body("wf-10:canary:0", &["vllm-1"], json!({"max_num_seqs": 300}));
    let r = post(
        &base,
        "/v1/configs/apply",
        &body,
        Some("wf-10:canary:0"),
        Sig::Good,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );

    // The agent gives up after 300 ms; the change was made and its answer kept.
    let impatient = agent_client(&base, Duration::from_millis(300));
    let request = apply_request(&["vllm-1"], json!({"max_num_seqs": 64}));
    let err = impatient
        .apply_config(&request, "wf-10:rollout:1")
        .await
        .expect_err("timed out");
    assert!(matches!(err, OrchestratorError::Unavailable(_)), "{err}");
    assert_eq!(config_of(&fleet, "vllm-1").max_num_seqs, 64);
    let previous = impatient
        .apply_config(&request, "wf-10:rollout:1")
        .await
        .expect("the kept answer");
    assert_eq!(previous[&id("vllm-1")]["max_num_seqs"], json!(300));
    assert_eq!(state.applies().len(), 2, "one per key");
    assert_eq!(restarts_of(&fleet, "vllm-1"), 2);
}

// ---- approvals ----

/// A stub of the agent's API: records each request, answers from a queue (then 200).
#[derive(Clone, Default)]
struct AgentStub {
    seen: Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>>,
    answers: Arc<Mutex<VecDeque<(u16, Value)>>>,
}

async fn stub_handler(
    State(s): State<AgentStub>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    s.seen
        .lock()
        .expect("lock")
        .push((uri.to_string(), headers, body));
    let (status, answer) = s
        .answers
        .lock()
        .expect("lock")
        .pop_front()
        .unwrap_or((200, json!({"id": "wf-1", "state": "APPROVED"})));
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        axum::Json(answer),
    )
        .into_response()
}

async fn agent_stub(answers: Vec<(u16, Value)>) -> (AgentStub, String) {
    let stub = AgentStub {
        answers: Arc::new(Mutex::new(answers.into())),
        ..AgentStub::default()
    };
    let app = Router::new()
        .fallback(stub_handler)
        .with_state(stub.clone());
    let (l, base) = listen().await;
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (stub, base)
}

fn approval_body(key: &str, workflow: &str, agent: &str) -> Value {
    json!({"idempotency_key": key, "workflow_id": workflow, "group": "chat-prod",
           "advisory": false,
           "recommendation": {"id": "rec-1", "engine": "vllm", "knob": "max_num_seqs",
                              "proposed": 512, "changes": {"max_num_seqs": 512}},
           "approve_url": format!("{agent}/api/v1/workflows/{workflow}/approve"),
           "reject_url": format!("{agent}/api/v1/workflows/{workflow}/reject"),
           "expires_at_ms": 1_900_000_000_000_i64})
}

fn principal(akid: &str) -> Principal {
    Principal {
        access_key_id: akid.to_string(),
        secret_access_key: format!("{akid}-secret"),
        session_token: None,
        region: Some("eu-west-1".into()),
    }
}

async fn wait_for(stub: &AgentStub, n: usize) -> Vec<(String, HeaderMap, Bytes)> {
    for _ in 0..100 {
        let seen = stub.seen.lock().expect("lock").clone();
        if seen.len() >= n {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stub.seen.lock().expect("lock").clone()
}

async fn wait_for_decisions(state: &OrchestratorState, n: usize) {
    for _ in 0..100 {
        if state.decisions().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn auto_approve_posts_to_the_approve_url_signed_with_sigv4_and_retries_while_not_ready() {
    let (stub, agent) = agent_stub(vec![(
        409,
        json!({"error": "NotReady", "message": "retry"}),
    )])
    .await;
    let fleet = fleet_state();
    let (state, base) = start(Arc::new(LocalFleet::new(fleet)), |s| {
        s.principals
            .insert("approver".into(), principal("AKIDAPPROVER"));
        s.mode = ModeSettings {
            principal: "approver".into(),
            reason: Some("looks good".into()),
            delay_ms: 100,
            ..ModeSettings::new(ApprovalMode::AutoApprove)
        };
    })
    .await;
    let body = approval_body("wf-11:approval:0", "wf-11", &agent);
    let r = post(
        &base,
        "/v1/approvals",
        &body,
        Some("wf-11:approval:0"),
        Sig::Good,
    )
    .await;
    assert_eq!((r.status, r.json.clone()), (202, json!({})));

    let seen = wait_for(&stub, 2).await;
    assert_eq!(seen.len(), 2, "409 NotReady, then again");
    let (path, headers, sent) = &seen[1];
    assert_eq!(path, "/api/v1/workflows/wf-11/approve");
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDAPPROVER/")
            && auth.contains("/eu-west-1/execute-api/aws4_request")
            && auth.contains("Signature="),
        "{auth}"
    );
    assert!(headers.contains_key("x-amz-date"));
    assert_eq!(
        serde_json::from_slice::<Value>(sent).expect("json"),
        json!({"reason": "looks good"})
    );
    wait_for_decisions(&state, 1).await;
    let decisions = state.decisions();
    assert_eq!(decisions.len(), 1);
    assert_eq!((decisions[0].status, decisions[0].attempts), (Some(200), 2));

    // The same notification again (same key) decides nothing more.
    let again = post(
        &base,
        "/v1/approvals",
        &body,
        Some("wf-11:approval:0"),
        Sig::Good,
    )
    .await;
    assert_eq!(again.status, 202);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(stub.seen.lock().expect("lock").len(), 2);
}

#[tokio::test]
async fn auto_reject_posts_to_the_reject_url_and_manual_mode_waits_for_someone() {
    let (stub, agent) = agent_stub(Vec::new()).await;
    let fleet = fleet_state();
    let (state, base) = start(Arc::new(LocalFleet::new(fleet)), |s| {
        s.principals
            .insert("approver".into(), principal("AKIDAPPROVER"));
        s.principals
            .insert("intern".into(), principal("AKIDINTERN"));
    })
    .await;
    admin(
        &base,
        reqwest::Method::PUT,
        "/admin/mode",
        Some(json!({"mode": "auto_reject", "principal": "approver"})),
    )
    .await;
    let body = approval_body("wf-12:approval:0", "wf-12", &agent);
    assert_eq!(
        post(
            &base,
            "/v1/approvals",
            &body,
            Some("wf-12:approval:0"),
            Sig::Good
        )
        .await
        .status,
        202
    );
    let seen = wait_for(&stub, 1).await;
    assert_eq!(
        seen.first().map(|s| s.0.as_str()),
        Some("/api/v1/workflows/wf-12/reject")
    );

    let mode = admin(
        &base,
        reqwest::Method::PUT,
        "/admin/mode",
        Some(json!({"mode": "manual"})),
    )
    .await;
    assert_eq!(mode["mode"], "manual");
    let body = approval_body("wf-13:approval:0", "wf-13", &agent);
    assert_eq!(
        post(
            &base,
            "/v1/approvals",
            &body,
            Some("wf-13:approval:0"),
            Sig::Good
        )
        .await
        .status,
        202
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        stub.seen.lock().expect("lock").len(),
        1,
        "manual: nobody decided"
    );

    // A test decides as a given principal (here one that is not an approver).
    let decision = admin(
        &base,
        reqwest::Method::POST,
        "/admin/approvals/wf-13/approve",
        Some(json!({"principal": "intern"})),
    )
    .await;
    assert_eq!(decision["status"], 200);
    let seen = wait_for(&stub, 2).await;
    let (path, headers, _) = &seen[1];
    assert_eq!(path, "/api/v1/workflows/wf-13/approve");
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(auth.contains("Credential=AKIDINTERN/"), "{auth}");
    // The built-in unsigned principal sends no Authorization at all.
    admin(
        &base,
        reqwest::Method::POST,
        "/admin/approvals/wf-13/reject",
        Some(json!({"principal": "unsigned"})),
    )
    .await;
    let seen = wait_for(&stub, 3).await;
    assert!(!seen[2].1.contains_key("authorization"));
    let approvals = state.state_view()["approvals"].clone();
    assert_eq!(approvals.as_array().map(Vec::len), Some(2));
    assert_eq!(approvals[1]["mode"], "manual");
}

#[tokio::test]
async fn the_binary_prints_ready_and_serves_the_contract_against_a_fleet_url() {
    let fleet = fleet_state();
    let fleet_url = serve_fleet(fleet.clone()).await;
    let dir = std::env::temp_dir().join(format!("orchestrator-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let ready_file = dir.join("ready");
    let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrator-sim"))
        .args([
            "--port",
            "0",
            "--fleet-url",
            &fleet_url,
            "--mode",
            "auto_approve",
            "--harm",
        ])
        .arg("--ready-file")
        .arg(&ready_file)
        .env(
            "PERFAGENT_ORCHESTRATOR_SECRET",
            std::str::from_utf8(SECRET).expect("utf8"),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("join")
    .expect("read");
    let port: u16 = line
        .trim()
        .strip_prefix("READY port=")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    assert_eq!(
        std::fs::read_to_string(&ready_file)
            .expect("ready file")
            .trim(),
        line.trim()
    );
    let base = format!("http://127.0.0.1:{port}");

    let body = apply_body(
        "wf-14:canary:0",
        &["sgl-1"],
        json!({"chunked_prefill_size": 2048}),
    );
    let r = post(
        &base,
        "/v1/configs/apply",
        &body,
        Some("wf-14:canary:0"),
        Sig::Good,
    )
    .await;
    let health = admin(&base, reqwest::Method::GET, "/admin/health", None).await;
    let harm = admin(&base, reqwest::Method::GET, "/admin/harm", None).await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(config_of(&fleet, "sgl-1").max_num_batched_tokens, 2048);
    assert!(config_of(&fleet, "sgl-1").harmful, "--harm");
    assert_eq!(harm, json!({"enabled": true}));
    assert_eq!(health["mode"], "auto_approve");
    assert_eq!(health["fleet"], fleet_url);
}

#[test]
fn the_documented_translation_table_lists_exactly_the_codes_rows() {
    use perfagent_sim::orchestrator::translate::{lookup, TABLE};
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/orchestrator-sim.md"
    ))
    .expect("docs/orchestrator-sim.md");
    let mut documented = Vec::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(engine), Some(knob)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let engine = match *engine {
            "vllm" => EngineKind::Vllm,
            "tgi" => EngineKind::Tgi,
            "sglang" => EngineKind::Sglang,
            _ => continue,
        };
        let knob = knob.trim_matches('`');
        assert!(
            lookup(engine, knob).is_some(),
            "documented {engine} {knob} is not in the table"
        );
        documented.push((engine, knob.to_string()));
    }
    for row in TABLE {
        assert!(
            documented.contains(&(row.engine, row.knob.to_string())),
            "{} {} is not documented",
            row.engine,
            row.knob
        );
    }
    assert_eq!(documented.len(), TABLE.len());
}
