//! The analysis, recommendation, group, health and metrics routes, in-process.

use bytes::Bytes;
use http::{Method, StatusCode};
use perfagent::api::{handle, ApiContext, ApiRequest};
use perfagent::netguard::NetGuard;
use perfagent::scrape::{ScrapeConfig, Scraper};
use perfagent::store::memory::MemoryStore;
use serde_json::{json, Value};
use std::sync::Arc;

fn ctx() -> ApiContext<MemoryStore> {
    let guard = NetGuard::from_list("10.0.0.0/8").unwrap();
    ApiContext {
        store: Arc::new(MemoryStore::new()),
        guard: guard.clone(),
        scraper: Scraper::new(guard, ScrapeConfig::default()).unwrap(),
        snapshot_ttl_hours: 48,
        service: "performance-agent".into(),
        now_ms: || 1_800_000_000_000,
        probe: Arc::new(perfagent::probe::NoDependencies),
        emit_emf: false,
        workflows: perfagent::api::WorkflowApi::in_memory(),
    }
}

async fn call(
    ctx: &ApiContext<MemoryStore>,
    method: Method,
    path: &str,
    body: Value,
) -> (StatusCode, String) {
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let resp = handle(
        ctx,
        ApiRequest {
            method,
            path: path.into(),
            query: Vec::new(),
            body,
            principal: None,
        },
    )
    .await;
    (resp.status(), resp.body().clone())
}

async fn call_json(
    ctx: &ApiContext<MemoryStore>,
    method: Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let (s, text) = call(ctx, method, path, body).await;
    (s, serde_json::from_str(&text).unwrap())
}

/// A vLLM V1 scrape with a nearly full KV cache and a long queue.
const PRESSURED_VLLM: &str = "\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 256.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine=\"0\",model_name=\"m\"} 57.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.97
";

#[tokio::test]
async fn a_posted_scrape_is_judged_on_its_gauges_with_low_confidence() {
    let ctx = ctx();
    let (s, body) = call_json(
        &ctx,
        Method::POST,
        "/api/v1/analysis/detect-bottlenecks",
        json!({"engine": "vllm", "metrics_text": PRESSURED_VLLM}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["basis"], "SINGLE_SAMPLE");
    let kinds: Vec<&str> = body["models"][0]["analysis"]["bottlenecks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["type"].as_str())
        .collect();
    assert!(kinds.contains(&"MEMORY_PRESSURE"), "{body}");
    assert!(kinds.contains(&"QUEUE_BUILDUP"), "{body}");
    assert!(body["models"][0].get("recommendations").is_none());
}

#[tokio::test]
async fn recommendations_for_a_posted_scrape_use_the_engines_own_knobs_and_skip_what_is_set() {
    let ctx = ctx();
    let (s, body) = call_json(
        &ctx,
        Method::POST,
        "/api/v1/optimization/recommend",
        json!({"engine": "vllm", "metrics_text": PRESSURED_VLLM, "config": {"max_num_seqs": 256, "kv_cache_dtype": "fp8"}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let recs = body["models"][0]["recommendations"].as_array().unwrap();
    assert!(!recs.is_empty(), "{body}");
    for r in recs {
        assert!(r["flag"].as_str().unwrap().starts_with("--"), "{r}");
        assert!(
            !(r["knob"] == "kv_cache_dtype" && r["proposed"] == "fp8"),
            "already set: {r}"
        );
    }
}

#[tokio::test]
async fn analysis_requests_that_name_neither_or_both_subjects_are_refused() {
    let ctx = ctx();
    for body in [
        json!({}),
        json!({"instance_id": "a", "engine": "vllm", "metrics_text": "x 1\n"}),
        json!({"metrics_text": "x 1\n"}),
    ] {
        let (s, err) = call_json(
            &ctx,
            Method::POST,
            "/api/v1/analysis/detect-bottlenecks",
            body.clone(),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} → {err}");
    }
    let (s, err) = call_json(
        &ctx,
        Method::POST,
        "/api/v1/analysis/detect-bottlenecks",
        json!({"engine": "vllm", "metrics_text": "# TYPE x counter\nx{a=\"1\" 3\n"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["code"], "unparseable_metrics");
    let (s, _) = call_json(
        &ctx,
        Method::POST,
        "/api/v1/analysis/detect-bottlenecks",
        json!({"instance_id": "ghost"}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn group_config_defaults_until_set_and_invalid_thresholds_are_refused() {
    let ctx = ctx();
    let (s, body) = call_json(&ctx, Method::GET, "/api/v1/groups/chat/config", Value::Null).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["default"], true);
    assert_eq!(body["config"]["thresholds"]["memory_usage_ratio"], 0.8);

    let (s, body) = call_json(
        &ctx,
        Method::PUT,
        "/api/v1/groups/chat/config",
        json!({"thresholds": {"queue_depth_requests": 4}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, body) = call_json(&ctx, Method::GET, "/api/v1/groups/chat/config", Value::Null).await;
    assert_eq!(body["default"], false);
    assert_eq!(body["config"]["thresholds"]["queue_depth_requests"], 4.0);

    let (s, err) = call_json(
        &ctx,
        Method::PUT,
        "/api/v1/groups/chat/config",
        json!({"thresholds": {"memory_usage_ratio": 7}}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    let (s, _) = call_json(
        &ctx,
        Method::PUT,
        "/api/v1/groups/chat/config",
        json!({"nonsense": 1}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call_json(
        &ctx,
        Method::GET,
        "/api/v1/groups/chat/analysis",
        Value::Null,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn empty_listings_and_unknown_recommendations() {
    let ctx = ctx();
    let (s, body) = call_json(&ctx, Method::GET, "/api/v1/recommendations", Value::Null).await;
    assert_eq!((s, body["count"].as_u64()), (StatusCode::OK, Some(0)));
    let (s, body) = call_json(&ctx, Method::GET, "/api/v1/bottlenecks", Value::Null).await;
    assert_eq!((s, body["count"].as_u64()), (StatusCode::OK, Some(0)));
    let (s, _) = call_json(
        &ctx,
        Method::GET,
        "/api/v1/recommendations/nope",
        Value::Null,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn health_detailed_and_the_agents_own_metrics() {
    let ctx = ctx();
    let (s, body) = call_json(&ctx, Method::GET, "/api/v1/health/detailed", Value::Null).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    let (s, text) = call(&ctx, Method::GET, "/api/v1/metrics", Value::Null).await;
    assert_eq!(s, StatusCode::OK);
    assert!(text.contains("performance_agent_requests_total{route=\"/api/v1/health/detailed\",method=\"GET\",status=\"200\"}"), "{text}");
    let (s, _) = call(&ctx, Method::POST, "/api/v1/metrics", Value::Null).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
}
