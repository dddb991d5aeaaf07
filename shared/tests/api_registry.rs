//! The registry routes of the HTTP API, handled in-process against the in-memory store.

use bytes::Bytes;
use http::{Method, StatusCode};
use perfagent::api::{handle, ApiContext, ApiRequest};
use perfagent::netguard::NetGuard;
use perfagent::scrape::{ScrapeConfig, Scraper};
use perfagent::store::memory::MemoryStore;
use serde_json::{json, Value};
use std::sync::Arc;

fn now() -> i64 {
    1_800_000_000_000
}

fn ctx() -> ApiContext<MemoryStore> {
    let guard = NetGuard::from_list("10.0.0.0/8,127.0.0.0/8").unwrap();
    ApiContext {
        store: Arc::new(MemoryStore::new()),
        guard: guard.clone(),
        scraper: Scraper::new(guard, ScrapeConfig::default()).unwrap(),
        snapshot_ttl_hours: 48,
        service: "performance-agent".into(),
        now_ms: now,
        probe: Arc::new(perfagent::probe::NoDependencies),
        emit_emf: false,
        workflows: perfagent::api::WorkflowApi::in_memory(),
    }
}

async fn call(
    ctx: &ApiContext<MemoryStore>,
    method: Method,
    path: &str,
    body: &str,
) -> (StatusCode, Value) {
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
        ctx,
        ApiRequest {
            method,
            path: path.to_string(),
            query,
            body: Bytes::from(body.to_string()),
            principal: None,
        },
    )
    .await;
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/json"
    );
    let status = resp.status();
    (status, serde_json::from_str(resp.body()).unwrap())
}

fn vllm(id: &str, group: &str) -> String {
    json!({"id": id, "engine": "vllm", "metrics_url": "http://10.0.0.7:8000/metrics", "group": group,
           "model": "meta-llama/Llama-3.1-8B-Instruct", "config": {"max_num_seqs": 256}})
    .to_string()
}

#[tokio::test]
async fn an_instance_is_created_listed_fetched_and_deleted() {
    let ctx = ctx();
    let (s, body) = call(&ctx, Method::POST, "/api/v1/instances", &vllm("v1", "chat")).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["engine"], "vllm");
    assert_eq!(body["created_at_ms"], now());

    call(
        &ctx,
        Method::POST,
        "/api/v1/instances",
        &vllm("v2", "batch"),
    )
    .await;
    let (_, list) = call(&ctx, Method::GET, "/api/v1/instances", "").await;
    assert_eq!(list["count"], 2);
    let (_, chat) = call(&ctx, Method::GET, "/api/v1/instances?group=chat", "").await;
    assert_eq!(chat["count"], 1);
    assert_eq!(chat["instances"][0]["id"], "v1");

    let (s, one) = call(&ctx, Method::GET, "/api/v1/instances/v1", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["config"]["max_num_seqs"], 256);
    assert_eq!(one["health"]["breaker"]["state"], "CLOSED");

    let (s, _) = call(&ctx, Method::DELETE, "/api/v1/instances/v1", "").await;
    assert_eq!(s, StatusCode::OK);
    let (s, err) = call(&ctx, Method::GET, "/api/v1/instances/v1", "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(err["code"], "not_found");
    let (s, _) = call(&ctx, Method::DELETE, "/api/v1/instances/v1", "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_duplicate_id_is_a_conflict() {
    let ctx = ctx();
    call(&ctx, Method::POST, "/api/v1/instances", &vllm("v1", "chat")).await;
    let (s, err) = call(&ctx, Method::POST, "/api/v1/instances", &vllm("v1", "chat")).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(err["code"], "conflict");
}

#[tokio::test]
async fn invalid_bodies_get_clear_4xx_errors_never_500() {
    let ctx = ctx();
    let cases = [
        ("", StatusCode::BAD_REQUEST, "bad_request"),
        ("{not json", StatusCode::BAD_REQUEST, "invalid_json"),
        (r#"{"id":"a"}"#, StatusCode::BAD_REQUEST, "invalid_json"),
        (
            r#"{"id":"a","engine":"vllm","metrics_url":"http://10.0.0.1/","surprise":1}"#,
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            r#"{"id":"A!","engine":"vllm","metrics_url":"http://10.0.0.1/"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            r#"{"id":"a","engine":"triton","metrics_url":"http://10.0.0.1/"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            r#"{"id":"a","engine":"vllm","metrics_url":"http://169.254.169.254/latest/meta-data"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            r#"{"id":"a","engine":"vllm","metrics_url":"file:///etc/passwd"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            r#"{"id":"a","engine":"vllm","metrics_url":"http://192.168.0.1/metrics"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
    ];
    for (body, status, code) in cases {
        let (s, err) = call(&ctx, Method::POST, "/api/v1/instances", body).await;
        assert_eq!(
            (s, err["code"].as_str()),
            (status, Some(code)),
            "{body}: {err}"
        );
        assert!(!err["message"].as_str().unwrap_or("").is_empty());
    }
    let (_, list) = call(&ctx, Method::GET, "/api/v1/instances", "").await;
    assert_eq!(list["count"], 0, "nothing invalid was stored");
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_parsing() {
    let ctx = ctx();
    let big = "x".repeat(perfagent::api::MAX_BODY_BYTES + 1);
    let (s, err) = call(&ctx, Method::POST, "/api/v1/instances", &big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(err["code"], "body_too_large");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_404_and_405() {
    let ctx = ctx();
    let (s, _) = call(&ctx, Method::GET, "/api/v1/nope", "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(&ctx, Method::GET, "/elsewhere", "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, err) = call(&ctx, Method::PUT, "/api/v1/instances", "").await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(err["code"], "method_not_allowed");
    let (s, _) = call(&ctx, Method::GET, "/api/v1/instances/Bad%20Id", "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn health_answers_with_the_service_name() {
    let ctx = ctx();
    let (s, body) = call(&ctx, Method::GET, "/api/v1/health", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["service"], "performance-agent");
}

#[tokio::test]
async fn windows_of_an_instance_without_snapshots_say_so() {
    let ctx = ctx();
    call(&ctx, Method::POST, "/api/v1/instances", &vllm("v1", "chat")).await;
    let (s, body) = call(
        &ctx,
        Method::GET,
        "/api/v1/instances/v1/window?minutes=10",
        "",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["snapshots"], 0);
    let (s, _) = call(
        &ctx,
        Method::GET,
        "/api/v1/instances/v1/window?minutes=0",
        "",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call(&ctx, Method::GET, "/api/v1/instances/zz/window", "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn collecting_an_unreachable_instance_is_a_bad_gateway_with_the_reason() {
    let ctx = ctx();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let body = json!({"id": "dead", "engine": "tgi", "metrics_url": format!("http://127.0.0.1:{port}/metrics")});
    let (s, _) = call(&ctx, Method::POST, "/api/v1/instances", &body.to_string()).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, err) = call(
        &ctx,
        Method::POST,
        "/api/v1/metrics/collect",
        r#"{"instance_id":"dead"}"#,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    assert_eq!(err["code"], "scrape_failed");
    assert_eq!(err["details"]["kind"], "connect");
}
