//! The workflow routes in process: in-memory stores, the in-memory orchestrator and a recording
//! engine in place of Step Functions. Each test gets its own app; answers are checked against the
//! OpenAPI document the API serves.

use bytes::Bytes;
use http::{Method, StatusCode};
use perfagent::analyzer::{
    group_recommendation_id, AnalysisStore, GroupRecommendation, RecommendationStatus,
};
use perfagent::api::{handle, ApiContext, ApiRequest, WorkflowApi};
use perfagent::instance::{EngineConfig, Id};
use perfagent::netguard::NetGuard;
use perfagent::scrape::{ScrapeConfig, Scraper};
use perfagent::snapshot::Engine;
use perfagent::store::memory::MemoryStore;
use perfagent::store::InstanceStore;
use perfagent::workflow::adapters::StoreDirectory;
use perfagent::workflow::engine::{EngineCall, EngineError, MemoryEngine};
use perfagent::workflow::memory::{
    Behaviour, ManualClock, MemoryOrchestrator, MemoryWorkflowStore, SimulatedFleet,
};
use perfagent::workflow::{request_approval, run_stage, Deps, Next, Params, StageRequest};
use serde_json::{json, Value};
use std::sync::Arc;

const NOW: i64 = 1_800_000_000_000;
const GROUP: &str = "chat";
/// Approvers are configured as a role; callers arrive as sessions of it.
const APPROVER_ROLE: &str = "arn:aws:iam::123456789012:role/approvers";
const ALICE: &str = "arn:aws:sts::123456789012:assumed-role/approvers/alice";
const MALLORY: &str = "arn:aws:iam::123456789012:user/mallory";
const TOKEN: &str = "task-token-1";

struct App {
    ctx: ApiContext<MemoryStore>,
    engine: Arc<MemoryEngine>,
    clock: Arc<ManualClock>,
    orchestrator: Arc<MemoryOrchestrator>,
}

fn id(s: &str) -> Id {
    Id::parse("id", s).unwrap()
}

fn config(max_num_seqs: i64) -> EngineConfig {
    EngineConfig::from([("max_num_seqs".to_string(), json!(max_num_seqs))])
}

/// An app of its own: two vLLM instances in `chat` on `max_num_seqs = 128`, known to the registry
/// and to the orchestrator, whose simulated metrics do not depend on the config.
async fn spawn_app() -> App {
    let guard = NetGuard::from_list("10.0.0.0/8").unwrap();
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(NOW));
    let orchestrator = Arc::new(MemoryOrchestrator::new(
        ["a", "b"].map(|n| (id(n), config(128))),
    ));
    let engine = Arc::new(MemoryEngine::new());
    let workflows = Arc::new(MemoryWorkflowStore::new());
    let fleet = SimulatedFleet::new(orchestrator.clone(), clock.clone(), |_, _| {
        Behaviour::default()
    });
    let ctx = ApiContext {
        store: store.clone(),
        guard: guard.clone(),
        scraper: Scraper::new(guard, ScrapeConfig::default()).unwrap(),
        snapshot_ttl_hours: 48,
        service: "performance-agent".into(),
        now_ms: || NOW,
        probe: Arc::new(perfagent::probe::NoDependencies),
        emit_emf: false,
        workflows: WorkflowApi {
            deps: Deps {
                workflows: workflows.clone(),
                samples: workflows,
                orchestrator: orchestrator.clone(),
                sampler: Arc::new(fleet),
                directory: Arc::new(StoreDirectory::new(store, clock.clone())),
                clock: clock.clone(),
                api_base_url: "https://api.test".into(),
            },
            engine: engine.clone(),
            approvers: vec![APPROVER_ROLE.to_string()],
            defaults: Params::default(),
        },
    };
    let app = App {
        ctx,
        engine,
        clock,
        orchestrator,
    };
    for name in ["a", "b"] {
        let (status, body) = app
            .call(
                Method::POST,
                "/api/v1/instances",
                None,
                json!({"id": name, "engine": "vllm", "metrics_url": "http://10.0.0.7:8000/metrics",
                       "group": GROUP, "config": {"max_num_seqs": 128}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    app
}

impl App {
    async fn raw(
        &self,
        method: Method,
        path: &str,
        principal: Option<&str>,
        body: Bytes,
    ) -> (StatusCode, String) {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (
                p,
                q.split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            None => (path, Vec::new()),
        };
        let resp = handle(
            &self.ctx,
            ApiRequest {
                method,
                path: path.to_string(),
                query,
                body,
                principal: principal.map(String::from),
            },
        )
        .await;
        (resp.status(), resp.body().clone())
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        principal: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let bytes = if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(body.to_string())
        };
        let (status, text) = self.raw(method, path, principal, bytes).await;
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (status, json)
    }

    /// A group recommendation of `group` that raises `max_num_seqs` to 256; returns its id.
    async fn recommend(&self, group: &str) -> String {
        let recommendation = serde_json::from_value(json!({
            "id": "batching-max-num-seqs-256", "engine": "vllm", "optimizer": "BATCHING",
            "bottleneck": "QUEUE_BUILDUP", "title": "Raise max_num_seqs", "knob": "max_num_seqs",
            "flag": "--max-num-seqs", "current": {"value": 128, "assumed": false},
            "proposed": 256, "changes": {"max_num_seqs": 256}, "rationale": "queue",
            "expected_impact": [], "risk": {"level": "LOW", "description": "memory"},
            "priority": 1
        }))
        .unwrap();
        let rec_id = group_recommendation_id(&id(group), "batching-max-num-seqs-256");
        self.ctx
            .store
            .upsert_recommendations(&[GroupRecommendation {
                id: rec_id.clone(),
                group: id(group),
                engine: Engine::Vllm,
                status: RecommendationStatus::Open,
                workflow_id: None,
                proposed_for: vec![id("a")],
                eligible_instances: 2,
                recommendation,
                first_seen_ms: NOW,
                last_seen_ms: NOW,
            }])
            .await
            .unwrap();
        rec_id
    }

    /// Starts a workflow of `group`'s recommendation with `params`; returns its id.
    async fn start(&self, group: &str, params: Value) -> String {
        let rec = self.recommend(group).await;
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/workflows",
                Some(ALICE),
                json!({"recommendation_id": rec, "params": params}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// What the state machine's first task does: notify the orchestrator and store the token.
    async fn request_approval(&self, workflow: &str) {
        request_approval(&self.ctx.workflows.deps, &id(workflow), TOKEN)
            .await
            .unwrap();
    }

    async fn decide(
        &self,
        workflow: &str,
        verb: &str,
        principal: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            &format!("/api/v1/workflows/{workflow}/{verb}"),
            Some(principal),
            body,
        )
        .await
    }
}

/// The document's schema for one operation's answer, with its components, so references resolve.
fn response_schema(template: &str, method: &str, status: StatusCode) -> Value {
    let doc = serde_json::to_value(perfagent::api::openapi::document()).unwrap();
    let schema = doc["paths"][template][method]["responses"][status.as_str()]["content"]
        ["application/json"]["schema"]
        .clone();
    assert!(
        schema.is_object(),
        "{method} {template} documents no {status} body"
    );
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "allOf": [schema],
        "components": doc["components"],
    })
}

/// The answer fits what the document says this operation answers with this status.
fn assert_documented(template: &str, method: &str, status: StatusCode, body: &Value) {
    let schema = response_schema(template, method, status);
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {template} → {status}:\n{}\n{body:#}",
        errors.join("\n")
    );
}

#[tokio::test]
async fn starting_a_workflow_holds_the_group_and_starts_its_execution() {
    let app = spawn_app().await;
    let rec = app.recommend(GROUP).await;
    let (status, wf) = app
        .call(
            Method::POST,
            "/api/v1/workflows",
            Some(ALICE),
            json!({"recommendation_id": rec, "advisory": false}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{wf}");
    assert_documented("/api/v1/workflows", "post", status, &wf);
    assert_eq!(wf["state"], "PENDING_APPROVAL");
    assert_eq!(wf["group"], GROUP);
    assert_eq!(
        wf["recommendation"]["changes"],
        json!({"max_num_seqs": 256})
    );
    assert_eq!(wf["version"], 1);
    let wf_id = wf["id"].as_str().unwrap();
    assert_eq!(
        app.engine.calls(),
        vec![EngineCall::Start {
            workflow: id(wf_id)
        }]
    );
    let trail = wf["audit"].as_array().unwrap();
    assert_eq!(trail[0]["event"], "CREATE");
    assert_eq!(trail[0]["actor"], ALICE);
    assert!(trail[1]["reason"]
        .as_str()
        .unwrap()
        .contains("execution memory:execution:"));

    let marked = app.ctx.store.recommendation(&rec).await.unwrap().unwrap();
    assert_eq!(marked.status, RecommendationStatus::InWorkflow);
    assert_eq!(marked.workflow_id.as_deref(), Some(wf_id));

    let (status, got) = app
        .call(
            Method::GET,
            &format!("/api/v1/workflows/{wf_id}"),
            None,
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_documented("/api/v1/workflows/{id}", "get", status, &got);
    assert_eq!(got["audit"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn a_second_workflow_on_a_busy_group_is_refused_naming_the_active_one() {
    let app = spawn_app().await;
    let first = app.start(GROUP, Value::Null).await;
    let rec = app.recommend(GROUP).await;
    let (status, err) = app
        .call(
            Method::POST,
            "/api/v1/workflows",
            Some(ALICE),
            json!({"recommendation_id": rec}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_documented("/api/v1/workflows", "post", status, &err);
    assert_eq!(err["code"], "group_busy");
    assert_eq!(err["details"]["active_workflow_id"], first.as_str());
    assert_eq!(app.engine.calls().len(), 1, "no second execution");
}

#[tokio::test]
async fn an_execution_that_cannot_start_ends_the_workflow_and_frees_the_group() {
    let app = spawn_app().await;
    let rec = app.recommend(GROUP).await;
    app.engine
        .fail_next(EngineError::Unavailable("throttled".into()));
    let (status, err) = app
        .call(
            Method::POST,
            "/api/v1/workflows",
            Some(ALICE),
            json!({"recommendation_id": rec}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert_documented("/api/v1/workflows", "post", status, &err);
    assert_eq!(err["code"], "engine_unavailable");
    let failed = err["details"]["workflow_id"].as_str().unwrap();
    let (_, wf) = app
        .call(
            Method::GET,
            &format!("/api/v1/workflows/{failed}"),
            None,
            Value::Null,
        )
        .await;
    assert_eq!(wf["state"], "FAILED");
    assert!(wf["error"].as_str().unwrap().contains("throttled"));
    // The group is free again.
    app.start(GROUP, Value::Null).await;
}

#[tokio::test]
async fn bad_start_requests_are_told_what_is_wrong() {
    let app = spawn_app().await;
    let rec = app.recommend(GROUP).await;
    let cases = [
        (Value::Null, StatusCode::BAD_REQUEST, "bad_request"),
        (
            json!({"recommendation_id": rec, "advisory": "yes"}),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            json!({"recommendation_id": rec, "groupp": "x"}),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            json!({"recommendation_id": ""}),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            json!({"recommendation_id": "chat.nope"}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"recommendation_id": rec, "params": {"bake_sample": 3}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            json!({"recommendation_id": rec, "params": {"bake_samples": 2, "canary_size": {"fraction": 0.9}}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
    ];
    for (body, expected, code) in cases {
        let (status, err) = app
            .call(Method::POST, "/api/v1/workflows", Some(ALICE), body.clone())
            .await;
        assert_eq!(status, expected, "{body}: {err}");
        assert_eq!(err["code"], code, "{body}");
        assert_documented("/api/v1/workflows", "post", status, &err);
    }
    let (_, err) = app
        .call(
            Method::POST,
            "/api/v1/workflows",
            Some(ALICE),
            json!({"recommendation_id": rec, "params": {"bake_samples": 2, "canary_size": {"fraction": 0.9}}}),
        )
        .await;
    assert_eq!(err["details"]["problems"].as_array().map(Vec::len), Some(2));
    assert!(app.engine.calls().is_empty(), "nothing was started");
}

#[tokio::test]
async fn only_an_approver_may_approve_and_only_once_the_request_is_out() {
    let app = spawn_app().await;
    let wf = app.start(GROUP, Value::Null).await;

    let (status, err) = app.decide(&wf, "approve", MALLORY, Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert_eq!(err["code"], "not_an_approver");
    assert_documented("/api/v1/workflows/{id}/approve", "post", status, &err);
    let (status, _) = app
        .call(
            Method::POST,
            &format!("/api/v1/workflows/{wf}/approve"),
            None,
            Value::Null,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an unsigned caller is nobody"
    );

    // Before the state machine stored its token there is nothing to answer yet.
    let (status, err) = app.decide(&wf, "approve", ALICE, Value::Null).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["code"], "not_ready");

    app.request_approval(&wf).await;
    let asked = app.orchestrator.approvals();
    assert_eq!(asked.len(), 1);
    assert_eq!(
        asked[0].approve_url,
        format!("https://api.test/api/v1/workflows/{wf}/approve")
    );

    let (status, decided) = app
        .decide(&wf, "approve", ALICE, json!({"reason": "looks good"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    assert_documented("/api/v1/workflows/{id}/approve", "post", status, &decided);
    assert_eq!(decided["delivered"], true);
    assert_eq!(decided["workflow"]["state"], "APPROVED");
    assert_eq!(decided["workflow"]["decided_by"], ALICE);
    assert!(decided["workflow"].get("task_token").is_none());
    let calls = app.engine.calls();
    let Some(EngineCall::Success { task_token, output }) = calls.last() else {
        panic!("no SendTaskSuccess: {calls:?}");
    };
    assert_eq!(task_token, TOKEN);
    assert_eq!(output["decision"], "APPROVED");
    assert_eq!(output["principal"], ALICE);
    assert_eq!(output["workflow_id"], wf.as_str());

    let (status, err) = app.decide(&wf, "approve", ALICE, Value::Null).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert_eq!(err["code"], "already_decided");
    assert_eq!(err["details"]["state"], "APPROVED");
    assert_eq!(app.engine.calls().len(), calls.len(), "nothing sent twice");
}

#[tokio::test]
async fn a_rejection_fails_the_waiting_task_with_rejected_and_frees_the_group() {
    let app = spawn_app().await;
    let wf = app.start(GROUP, Value::Null).await;
    app.request_approval(&wf).await;
    let (status, decided) = app
        .decide(
            &wf,
            "reject",
            ALICE,
            json!({"reason": "not during the launch"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    assert_documented("/api/v1/workflows/{id}/reject", "post", status, &decided);
    assert_eq!(decided["workflow"]["state"], "REJECTED");
    assert_eq!(decided["delivered"], true);
    assert_eq!(
        app.engine.calls().last(),
        Some(&EngineCall::Failure {
            task_token: TOKEN.into(),
            error: "Rejected".into(),
            cause: "not during the launch".into(),
        })
    );
    let (status, _) = app.decide(&wf, "reject", ALICE, Value::Null).await;
    assert_eq!(status, StatusCode::CONFLICT);
    app.start(GROUP, Value::Null).await;
}

#[tokio::test]
async fn a_rejection_stands_even_when_the_execution_stopped_waiting() {
    let app = spawn_app().await;
    let wf = app.start(GROUP, Value::Null).await;
    app.request_approval(&wf).await;
    app.engine
        .fail_next(EngineError::TaskGone("TaskTimedOut".into()));
    let (status, decided) = app.decide(&wf, "reject", ALICE, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    assert_eq!(decided["delivered"], false);
    assert_eq!(decided["workflow"]["state"], "REJECTED");
}

#[tokio::test]
async fn an_approval_is_retried_while_the_engine_is_unavailable() {
    let app = spawn_app().await;
    let wf = app.start(GROUP, Value::Null).await;
    app.request_approval(&wf).await;
    app.engine
        .fail_next(EngineError::Unavailable("throttled".into()));
    let (status, decided) = app.decide(&wf, "approve", ALICE, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    let successes = app
        .engine
        .calls()
        .into_iter()
        .filter(|c| matches!(c, EngineCall::Success { .. }))
        .count();
    assert_eq!(successes, 2, "one failed attempt, one delivered");
}

#[tokio::test]
async fn an_approval_the_execution_no_longer_waits_for_is_gone_but_recorded() {
    let app = spawn_app().await;
    let wf = app.start(GROUP, Value::Null).await;
    app.request_approval(&wf).await;
    app.engine
        .fail_next(EngineError::TaskGone("TaskTimedOut".into()));
    let (status, err) = app.decide(&wf, "approve", ALICE, Value::Null).await;
    assert_eq!(status, StatusCode::GONE, "{err}");
    assert_eq!(err["code"], "expired");
    let (_, got) = app
        .call(
            Method::GET,
            &format!("/api/v1/workflows/{wf}"),
            None,
            Value::Null,
        )
        .await;
    assert_eq!(
        got["state"], "APPROVED",
        "the Expire stage ends it, not the API"
    );
}

#[tokio::test]
async fn an_approval_after_the_window_closed_is_gone() {
    let app = spawn_app().await;
    let wf = app.start(GROUP, json!({"approval_timeout_s": 60})).await;
    app.request_approval(&wf).await;
    app.clock.advance_ms(61_000);
    let (status, err) = app.decide(&wf, "approve", ALICE, Value::Null).await;
    assert_eq!(status, StatusCode::GONE, "{err}");
    assert_eq!(err["code"], "expired");
    assert_documented("/api/v1/workflows/{id}/approve", "post", status, &err);
    assert!(
        !app.engine
            .calls()
            .iter()
            .any(|c| matches!(c, EngineCall::Success { .. })),
        "nothing was sent"
    );
}

#[tokio::test]
async fn unknown_workflows_and_bad_decision_bodies_are_client_errors() {
    let app = spawn_app().await;
    let (status, err) = app.decide("wf-nope", "approve", ALICE, Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
    assert_documented("/api/v1/workflows/{id}/approve", "post", status, &err);
    let (status, _) = app
        .call(Method::GET, "/api/v1/workflows/wf-nope", None, Value::Null)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .call(
            Method::GET,
            "/api/v1/workflows/Not%20An%20Id",
            None,
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let wf = app.start(GROUP, Value::Null).await;
    app.request_approval(&wf).await;
    let (status, err) = app
        .raw(
            Method::POST,
            &format!("/api/v1/workflows/{wf}/approve"),
            Some(ALICE),
            Bytes::from_static(b"{\"reason\": "),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let (status, err) = app
        .decide(&wf, "reject", ALICE, json!({"reason": "x".repeat(1001)}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["details"]["field"], "reason");
    let (status, err) = app
        .decide(&wf, "reject", ALICE, json!({"why": "typo"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    // None of that decided anything.
    let (_, got) = app
        .call(
            Method::GET,
            &format!("/api/v1/workflows/{wf}"),
            None,
            Value::Null,
        )
        .await;
    assert_eq!(got["state"], "PENDING_APPROVAL");
}

#[tokio::test]
async fn workflows_are_listed_newest_first_by_group_and_state() {
    let app = spawn_app().await;
    let chat = app.start(GROUP, Value::Null).await;
    app.clock.advance_ms(1000);
    let other = app.start("search", Value::Null).await;
    app.request_approval(&other).await;
    let (status, _) = app.decide(&other, "reject", ALICE, Value::Null).await;
    assert_eq!(status, StatusCode::OK);

    let ids = |v: &Value| -> Vec<String> {
        v["workflows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, all) = app
        .call(Method::GET, "/api/v1/workflows", None, Value::Null)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_documented("/api/v1/workflows", "get", status, &all);
    assert_eq!(ids(&all), vec![other.clone(), chat.clone()]);
    assert_eq!(all["count"], 2);
    assert!(all["workflows"][0].get("task_token").is_none());

    let (_, chat_only) = app
        .call(
            Method::GET,
            "/api/v1/workflows?group=chat",
            None,
            Value::Null,
        )
        .await;
    assert_eq!(ids(&chat_only), vec![chat.clone()]);
    let (_, rejected) = app
        .call(
            Method::GET,
            "/api/v1/workflows?state=rejected",
            None,
            Value::Null,
        )
        .await;
    assert_eq!(ids(&rejected), vec![other]);
    let (_, one) = app
        .call(Method::GET, "/api/v1/workflows?limit=1", None, Value::Null)
        .await;
    assert_eq!(one["count"], 1);

    for bad in ["state=DONE", "limit=0", "limit=101", "group=Chat!"] {
        let (status, err) = app
            .call(
                Method::GET,
                &format!("/api/v1/workflows?{bad}"),
                None,
                Value::Null,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {err}");
    }
}

#[tokio::test]
async fn the_metrics_count_the_workflows_that_have_not_ended() {
    let app = spawn_app().await;
    let gauge = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("performance_agent_workflows_active "))
            .map(str::to_string)
    };
    let (_, text) = app
        .raw(Method::GET, "/api/v1/metrics", None, Bytes::new())
        .await;
    assert_eq!(gauge(&text).as_deref(), Some("0"));
    let wf = app.start(GROUP, Value::Null).await;
    app.start("search", Value::Null).await;
    let (_, text) = app
        .raw(Method::GET, "/api/v1/metrics", None, Bytes::new())
        .await;
    assert_eq!(gauge(&text).as_deref(), Some("2"));
    app.request_approval(&wf).await;
    app.decide(&wf, "reject", ALICE, Value::Null).await;
    let (_, text) = app
        .raw(Method::GET, "/api/v1/metrics", None, Bytes::new())
        .await;
    assert_eq!(gauge(&text).as_deref(), Some("1"));
}

#[tokio::test]
async fn a_completed_rollout_leaves_the_registry_showing_the_new_config() {
    let app = spawn_app().await;
    let wf = app.start(GROUP, Value::Null).await;
    app.request_approval(&wf).await;
    let (status, _) = app.decide(&wf, "approve", ALICE, Value::Null).await;
    assert_eq!(status, StatusCode::OK);

    // The state machine's path after the approval, stage by stage.
    let deps = &app.ctx.workflows.deps;
    let wf_id = id(&wf);
    let mut out = run_stage(
        deps,
        StageRequest::StartCanary {
            workflow_id: wf_id.clone(),
        },
    )
    .await
    .unwrap();
    for _ in 0..100 {
        let request = match out.next {
            Next::Bake => {
                app.clock.advance_ms(60_000);
                StageRequest::CollectSample {
                    workflow_id: wf_id.clone(),
                }
            }
            Next::Judge => StageRequest::Judge {
                workflow_id: wf_id.clone(),
            },
            Next::Rollout => StageRequest::RolloutStep {
                workflow_id: wf_id.clone(),
                step: out.next_step.unwrap(),
            },
            Next::Complete => StageRequest::Complete {
                workflow_id: wf_id.clone(),
            },
            Next::Rollback => panic!("the judge failed an unchanged fleet: {out:?}"),
            Next::Done => break,
        };
        out = run_stage(deps, request).await.unwrap();
    }
    assert_eq!(out.next, Next::Done);
    let (_, got) = app
        .call(
            Method::GET,
            &format!("/api/v1/workflows/{wf}"),
            None,
            Value::Null,
        )
        .await;
    assert_eq!(got["state"], "COMPLETED", "{got:#}");
    for name in ["a", "b"] {
        let reg = app
            .ctx
            .store
            .get_instance(&id(name))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reg.instance.config, config(256), "{name}");
        assert_eq!(app.orchestrator.config(&id(name)), Some(config(256)));
    }
}
