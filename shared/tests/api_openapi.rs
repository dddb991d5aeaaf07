//! The OpenAPI document served at `GET /api/v1/openapi.json`: valid OpenAPI 3 JSON whose `$ref`s
//! all resolve, listing exactly the routes the router serves, SigV4 on every route but the health
//! check and the document itself, and schemas that real responses of in-process calls satisfy.

use bytes::Bytes;
use http::{Method, StatusCode};
use perfagent::analyzer::{self, AnalysisStore};
use perfagent::api::{handle, ApiContext, ApiRequest, ROUTES};
use perfagent::instance::Id;
use perfagent::netguard::NetGuard;
use perfagent::probe::{DependencyCheck, HealthProbe};
use perfagent::scrape::{ScrapeConfig, Scraper};
use perfagent::snapshot::{Canonical, Engine, Histogram, MetricValue, ModelMetrics};
use perfagent::store::memory::MemoryStore;
use perfagent::store::{SnapshotStore, StoredSnapshot};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

const NOW: i64 = 1_800_000_000_000;

fn now() -> i64 {
    NOW
}

fn ctx_with(probe: Arc<dyn HealthProbe>) -> ApiContext<MemoryStore> {
    let guard = NetGuard::from_list("10.0.0.0/8,127.0.0.0/8").unwrap();
    ApiContext {
        store: Arc::new(MemoryStore::new()),
        guard: guard.clone(),
        scraper: Scraper::new(guard, ScrapeConfig::default()).unwrap(),
        snapshot_ttl_hours: 48,
        service: "performance-agent".into(),
        now_ms: now,
        probe,
        emit_emf: false,
        workflows: perfagent::api::WorkflowApi::in_memory(),
    }
}

fn ctx() -> ApiContext<MemoryStore> {
    ctx_with(Arc::new(perfagent::probe::NoDependencies))
}

struct Answer {
    status: StatusCode,
    content_type: String,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
}

/// Calls the API in-process; `path` may carry a query string.
async fn call(ctx: &ApiContext<MemoryStore>, method: Method, path: &str, body: &str) -> Answer {
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
    Answer {
        status: resp.status(),
        content_type: resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        text: resp.body().clone(),
    }
}

/// The document as the API serves it.
async fn document() -> Value {
    let a = call(&ctx(), Method::GET, "/api/v1/openapi.json", "").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.content_type, "application/json");
    a.json()
}

/// The JSON Schema of one operation's response, with the document's components embedded so its
/// `#/components/schemas/...` references resolve.
fn response_schema(doc: &Value, template: &str, method: &str, status: StatusCode) -> Value {
    let op = &doc["paths"][template][method];
    assert!(op.is_object(), "no operation {method} {template}");
    let response = &op["responses"][status.as_str()];
    assert!(
        response.is_object(),
        "{method} {template} documents no {status} response"
    );
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {template} {status}: no JSON schema"
    );
    with_components(doc, schema)
}

fn with_components(doc: &Value, schema: &Value) -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "allOf": [schema],
        "components": doc["components"],
    })
}

fn assert_valid(schema: &Value, body: &Value, what: &str) {
    let validator =
        jsonschema::validator_for(schema).unwrap_or_else(|e| panic!("{what}: bad schema: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: the response does not fit its schema:\n{}\n{body:#}",
        errors.join("\n")
    );
}

/// Calls a documented operation and checks the answer has the expected status and fits the
/// documented schema for that status; returns the body.
async fn checked(
    ctx: &ApiContext<MemoryStore>,
    doc: &Value,
    method: Method,
    path: &str,
    template: &str,
    body: &str,
    expected: StatusCode,
) -> Value {
    let a = call(ctx, method.clone(), path, body).await;
    assert_eq!(a.status, expected, "{method} {path}: {}", a.text);
    assert_eq!(a.content_type, "application/json", "{method} {path}");
    let json = a.json();
    let m = method.as_str().to_ascii_lowercase();
    assert_valid(
        &response_schema(doc, template, &m, expected),
        &json,
        &format!("{method} {path} → {expected}"),
    );
    json
}

/// Every `(method, path template)` the document lists.
fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    out
}

fn collect_refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn capture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/metrics")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const VLLM_CAPTURE: &str = "vllm-0.10.x-ngc25.09-armandossrecife-qwen3-4b.prom";

/// Serves `body` as a `/metrics` answer to every connection, on a thread the test process owns.
fn serve_metrics(body: String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            read_request(&stream);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_bytes());
        }
    });
    addr
}

/// Reads a request up to its blank line, so the client is not reset before it has sent it.
fn read_request(stream: &TcpStream) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        if line == "\r\n" {
            break;
        }
        line.clear();
    }
}

fn id(s: &str) -> Id {
    Id::parse("id", s).unwrap()
}

fn instance_body(name: &str, group: &str) -> String {
    json!({"id": name, "engine": "vllm", "metrics_url": "http://10.0.0.7:8000/metrics",
           "group": group, "model": "llama", "labels": {"zone": "a"},
           "config": {"max_num_seqs": 128, "enable_prefix_caching": true}})
    .to_string()
}

/// A vLLM server under pressure at step `k` of 30 s steps: KV nearly full, a long queue, slow
/// first tokens; histograms end with a `+Inf` bucket, as the engines export them.
fn pressured(k: f64) -> ModelMetrics {
    let n = MetricValue::Number;
    let hist = |count: f64, fast: f64| {
        MetricValue::Histogram(Histogram {
            count,
            sum: count * 0.8,
            buckets: vec![
                (0.1, fast),
                (0.5, fast + (count - fast) * 0.5),
                (1.0, count),
                (f64::INFINITY, count),
            ],
        })
    };
    ModelMetrics {
        model: "llama".into(),
        metrics: [
            (Canonical::KvCacheUsageRatio, n(0.96)),
            (Canonical::RequestsWaiting, n(40.0)),
            (Canonical::RequestsRunning, n(128.0)),
            (Canonical::RequestSuccessTotal, n(1000.0 + 150.0 * k)),
            (Canonical::RequestFailureTotal, n(2.0 * k)),
            (Canonical::GenerationTokensTotal, n(1e6 + 30_000.0 * k)),
            (Canonical::PromptTokensTotal, n(2e6 + 60_000.0 * k)),
            (Canonical::PreemptionsTotal, n(10.0 + 5.0 * k)),
            (Canonical::PrefixCacheQueriesTotal, n(1e6 + 50_000.0 * k)),
            (Canonical::PrefixCacheHitsTotal, n(1e5 + 10_000.0 * k)),
            (Canonical::TtftSeconds, hist(1000.0 + 150.0 * k, 100.0)),
            (
                Canonical::E2eLatencySeconds,
                hist(1000.0 + 150.0 * k, 500.0),
            ),
        ]
        .into_iter()
        .collect(),
    }
}

/// Registers three pressured instances of group `chat` through the API and stores ten snapshots
/// of each over the last five minutes.
async fn seed(ctx: &ApiContext<MemoryStore>, doc: &Value) {
    for name in ["a", "b", "c"] {
        checked(
            ctx,
            doc,
            Method::POST,
            "/api/v1/instances",
            "/api/v1/instances",
            &instance_body(name, "chat"),
            StatusCode::CREATED,
        )
        .await;
        for k in 0..10 {
            let slot = NOW - 270_000 + k * 30_000;
            ctx.store
                .put_snapshots(&[StoredSnapshot {
                    instance_id: id(name),
                    slot_ms: slot,
                    scraped_at_ms: slot,
                    engine: Engine::Vllm,
                    generation: "vllm-v1".into(),
                    models: vec![pressured(k as f64)],
                    partial: None,
                    expires_at: NOW / 1000 + 3600,
                }])
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn the_document_is_openapi_3_json_whose_refs_all_resolve() {
    let doc = document().await;
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert!(!doc["paths"].as_object().unwrap().is_empty());

    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 50, "only {} references", refs.len());
    for r in &refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{r} is not local"));
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }

    // Every schema is valid JSON Schema (2020-12, OpenAPI 3.1's dialect).
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        let schema = with_components(
            &doc,
            &json!({"$ref": format!("#/components/schemas/{name}")}),
        );
        jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let op_id = op["operationId"].as_str().unwrap_or_default();
            assert!(
                ids.insert(op_id.to_string()),
                "{method} {path}: operationId {op_id:?} repeats"
            );
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("200") || responses.contains_key("201"),
                "{method} {path} documents no success"
            );
            // A parameter for every `{name}` of the path, and no other path parameter.
            let in_path: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            let documented: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(in_path, documented, "{method} {path}");
        }
    }
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_the_router_serves() {
    let doc = document().await;
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(table.len(), ROUTES.len(), "a route is in the table twice");
    assert_eq!(
        documented_routes(&doc),
        table,
        "the document and the router's table differ"
    );

    // The router answers each route of the table with its handler (whatever the handler makes of
    // a placeholder id), and every other method on those paths with 405.
    let ctx = ctx();
    let paths: BTreeSet<&str> = ROUTES.iter().map(|r| r.path).collect();
    for path in paths {
        let concrete = path.replace("{id}", "x").replace("{group}", "x");
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let a = call(
                &ctx,
                Method::from_bytes(method.as_bytes()).unwrap(),
                &concrete,
                "",
            )
            .await;
            let routed = table.contains(&(method.to_string(), path.to_string()));
            let code = serde_json::from_str::<Value>(&a.text)
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_string));
            if routed {
                assert_ne!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert!(
                    !(a.status == StatusCode::NOT_FOUND && a.text.contains("route ")),
                    "{method} {path}: {}",
                    a.text
                );
            } else {
                assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert_eq!(code.as_deref(), Some("method_not_allowed"));
            }
        }
    }
    let a = call(&ctx, Method::GET, "/api/v1/nothing-here", "").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_route_but_the_health_check_and_the_document_requires_sigv4() {
    let doc = document().await;
    let scheme = &doc["components"]["securitySchemes"]["sigv4"];
    assert_eq!(scheme["type"], "apiKey");
    assert_eq!(scheme["in"], "header");
    assert_eq!(scheme["name"], "Authorization");
    assert!(scheme["description"]
        .as_str()
        .is_some_and(|d| d.contains("Signature Version 4") && d.contains("IAM")));
    let global = &doc["security"];
    for (method, path) in documented_routes(&doc) {
        let op = &doc["paths"][&path][method.to_ascii_lowercase()];
        // An operation's own `security` replaces the document's.
        let effective = op.get("security").unwrap_or(global);
        let signed = effective
            .as_array()
            .is_some_and(|reqs| !reqs.is_empty() && reqs.iter().all(|r| r.get("sigv4").is_some()));
        let public = matches!(path.as_str(), "/api/v1/health" | "/api/v1/openapi.json");
        assert_eq!(signed, !public, "{method} {path}: security {effective}");
    }
}

#[tokio::test]
async fn instance_crud_and_its_errors_fit_their_schemas() {
    let doc = document().await;
    let ctx = ctx();
    let created = checked(
        &ctx,
        &doc,
        Method::POST,
        "/api/v1/instances",
        "/api/v1/instances",
        &instance_body("v1", "chat"),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(created["id"], "v1");
    let one = "/api/v1/instances/{id}";
    let got = checked(
        &ctx,
        &doc,
        Method::GET,
        "/api/v1/instances/v1",
        one,
        "",
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["health"]["breaker"]["state"], "CLOSED");
    let list = checked(
        &ctx,
        &doc,
        Method::GET,
        "/api/v1/instances?group=chat",
        "/api/v1/instances",
        "",
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["count"], 1);

    // Errors, each in the documented `ErrorBody` shape.
    let dup = checked(
        &ctx,
        &doc,
        Method::POST,
        "/api/v1/instances",
        "/api/v1/instances",
        &instance_body("v1", "chat"),
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(dup["code"], "conflict");
    let invalid = checked(
        &ctx,
        &doc,
        Method::POST,
        "/api/v1/instances",
        "/api/v1/instances",
        &json!({"id": "v2", "engine": "triton", "metrics_url": "http://10.0.0.7/metrics"})
            .to_string(),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(invalid["details"]["field"], "engine");
    let not_json = checked(
        &ctx,
        &doc,
        Method::POST,
        "/api/v1/instances",
        "/api/v1/instances",
        "{\"id\": ",
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(not_json["code"], "invalid_json");
    let too_large = "x".repeat(perfagent::api::MAX_BODY_BYTES + 1);
    checked(
        &ctx,
        &doc,
        Method::POST,
        "/api/v1/instances",
        "/api/v1/instances",
        &too_large,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    checked(
        &ctx,
        &doc,
        Method::GET,
        "/api/v1/instances/BAD",
        one,
        "",
        StatusCode::BAD_REQUEST,
    )
    .await;
    checked(
        &ctx,
        &doc,
        Method::GET,
        "/api/v1/instances?group=Not%20An%20Id",
        "/api/v1/instances",
        "",
        StatusCode::BAD_REQUEST,
    )
    .await;

    // A 405 has no operation to document it; it is the same error shape.
    let a = call(&ctx, Method::PATCH, "/api/v1/instances/v1", "").await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    let error_schema = with_components(&doc, &json!({"$ref": "#/components/schemas/ErrorBody"}));
    assert_valid(&error_schema, &a.json(), "405");

    let deleted = checked(
        &ctx,
        &doc,
        Method::DELETE,
        "/api/v1/instances/v1",
        one,
        "",
        StatusCode::OK,
    )
    .await;
    assert_eq!(deleted["deleted"], "v1");
    checked(
        &ctx,
        &doc,
        Method::GET,
        "/api/v1/instances/v1",
        one,
        "",
        StatusCode::NOT_FOUND,
    )
    .await;
    checked(
        &ctx,
        &doc,
        Method::DELETE,
        "/api/v1/instances/v1",
        one,
        "",
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn stored_snapshots_and_windows_fit_their_schemas_infinite_bounds_included() {
    let doc = document().await;
    let ctx = ctx();
    seed(&ctx, &doc).await;
    let snaps = checked(
        &ctx,
        &doc,
        Method::GET,
        "/api/v1/instances/a/snapshots?minutes=10",
        "/api/v1/instances/{id}/snapshots",
        "",
        StatusCode::OK,
    )
    .await;
    assert_eq!(snaps["count"], 10);
    let buckets = &snaps["snapshots"][0]["models"][0]["metrics"]["ttft_seconds"]["buckets"];
    assert_eq!(buckets[3][0], "+Inf", "{buckets}");

    let window = checked(
        &ctx,
        &doc,
        Method::GET,
        "/api/v1/instances/a/window?minutes=10",
        "/api/v1/instances/{id}/window",
        "",
        StatusCode::OK,
    )
    .await;
    let model = &window["models"][0];
    assert!(
        model["generation_tokens_per_s"]
            .as_f64()
            .is_some_and(|v| v > 0.0),
        "{model}"
    );
    assert!(model["window"]["histograms"]["ttft_seconds"]["quantiles"].is_object());

    checked(
        &ctx,
        &doc,
        Method::GET,
        "/api/v1/instances/a/window?minutes=0",
        "/api/v1/instances/{id}/window",
        "",
        StatusCode::BAD_REQUEST,
    )
    .await;
    checked(
        &ctx,
        &doc,
        Method::GET,
        "/api/v1/instances/ghost/snapshots",
        "/api/v1/instances/{id}/snapshots",
        "",
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn analyses_of_a_posted_scrape_and_of_a_stored_window_fit_their_schemas() {
    let doc = document().await;
    let ctx = ctx();
    let detect = "/api/v1/analysis/detect-bottlenecks";
    let recommend = "/api/v1/optimization/recommend";
    let posted = json!({"engine": "vllm", "metrics_text": capture(VLLM_CAPTURE),
                        "config": {"max_num_seqs": 256}})
    .to_string();
    let found = checked(
        &ctx,
        &doc,
        Method::POST,
        detect,
        detect,
        &posted,
        StatusCode::OK,
    )
    .await;
    assert_eq!(found["basis"], "SINGLE_SAMPLE");
    assert!(found["models"][0].get("recommendations").is_none());
    let recs = checked(
        &ctx,
        &doc,
        Method::POST,
        recommend,
        recommend,
        &posted,
        StatusCode::OK,
    )
    .await;
    assert!(recs["models"][0]["recommendations"].is_array());

    // A scrape under pressure leads to recommendations, whose values are the engine's own.
    let pressured = "\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 256.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine=\"0\",model_name=\"m\"} 57.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.97
";
    let body = json!({"engine": "vllm", "metrics_text": pressured}).to_string();
    let recs = checked(
        &ctx,
        &doc,
        Method::POST,
        recommend,
        recommend,
        &body,
        StatusCode::OK,
    )
    .await;
    assert!(
        !recs["models"][0]["recommendations"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{recs}"
    );

    seed(&ctx, &doc).await;
    let body = json!({"instance_id": "a", "minutes": 10}).to_string();
    let found = checked(
        &ctx,
        &doc,
        Method::POST,
        detect,
        detect,
        &body,
        StatusCode::OK,
    )
    .await;
    assert_eq!(found["basis"], "WINDOW");
    assert!(!found["models"][0]["analysis"]["bottlenecks"]
        .as_array()
        .unwrap()
        .is_empty());
    checked(
        &ctx,
        &doc,
        Method::POST,
        recommend,
        recommend,
        &body,
        StatusCode::OK,
    )
    .await;

    for (body, status) in [
        (json!({}), StatusCode::BAD_REQUEST),
        (json!({"instance_id": "ghost"}), StatusCode::NOT_FOUND),
        (
            json!({"engine": "triton", "metrics_text": "x 1\n"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"engine": "vllm", "metrics_text": "# TYPE x counter\nx{a=\"1\" 3\n"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        checked(
            &ctx,
            &doc,
            Method::POST,
            detect,
            detect,
            &body.to_string(),
            status,
        )
        .await;
    }
}

#[tokio::test]
async fn the_analyzers_results_fit_their_schemas() {
    let doc = document().await;
    let ctx = ctx();
    seed(&ctx, &doc).await;
    analyzer::run(&*ctx.store, NOW, 600_000).await.unwrap();

    let list = checked(
        &ctx,
        &doc,
        Method::GET,
        "/api/v1/bottlenecks?group=chat",
        "/api/v1/bottlenecks",
        "",
        StatusCode::OK,
    )
    .await;
    assert!(list["count"].as_u64().is_some_and(|n| n >= 3), "{list}");
    let recs = checked(
        &ctx,
        &doc,
        Method::GET,
        "/api/v1/recommendations",
        "/api/v1/recommendations",
        "",
        StatusCode::OK,
    )
    .await;
    let first = recs["recommendations"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let one = "/api/v1/recommendations/{id}";
    let rec = checked(
        &ctx,
        &doc,
        Method::GET,
        &format!("/api/v1/recommendations/{first}"),
        one,
        "",
        StatusCode::OK,
    )
    .await;
    assert_eq!(rec["status"], "OPEN");
    checked(
        &ctx,
        &doc,
        Method::GET,
        "/api/v1/recommendations/nope",
        one,
        "",
        StatusCode::NOT_FOUND,
    )
    .await;
    let long = format!("/api/v1/recommendations/{}", "r".repeat(201));
    checked(
        &ctx,
        &doc,
        Method::GET,
        &long,
        one,
        "",
        StatusCode::BAD_REQUEST,
    )
    .await;

    let analysis = "/api/v1/groups/{group}/analysis";
    let group = checked(
        &ctx,
        &doc,
        Method::GET,
        "/api/v1/groups/chat/analysis",
        analysis,
        "",
        StatusCode::OK,
    )
    .await;
    assert!(!group["slo"].as_array().unwrap().is_empty());
    checked(
        &ctx,
        &doc,
        Method::GET,
        "/api/v1/groups/other/analysis",
        analysis,
        "",
        StatusCode::NOT_FOUND,
    )
    .await;
    // The analyzer's stored record is what the store keeps, too.
    assert!(ctx
        .store
        .group_analysis(&id("chat"))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn group_configuration_fits_its_schema_default_stored_and_refused() {
    let doc = document().await;
    let ctx = ctx();
    let t = "/api/v1/groups/{group}/config";
    let p = "/api/v1/groups/chat/config";
    let default = checked(&ctx, &doc, Method::GET, p, t, "", StatusCode::OK).await;
    assert_eq!(default["default"], true);
    let body = json!({"thresholds": {"queue_depth_requests": 4},
                      "slo": {"objectives": [{"name": "ttft", "sli": {"kind": "LATENCY",
                      "metric": "ttft_seconds", "threshold_s": 0.5}, "target": 0.99},
                      {"name": "ok", "sli": {"kind": "ERROR_RATIO"}, "target": 0.999}]}});
    // The request body fits the documented request schema too.
    let request_schema = with_components(
        &doc,
        &doc["paths"][t]["put"]["requestBody"]["content"]["application/json"]["schema"],
    );
    assert_valid(&request_schema, &body, "PUT body");
    let stored = checked(
        &ctx,
        &doc,
        Method::PUT,
        p,
        t,
        &body.to_string(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(stored["default"], false);
    checked(&ctx, &doc, Method::GET, p, t, "", StatusCode::OK).await;
    let bad = json!({"thresholds": {"memory_usage_ratio": 7}}).to_string();
    checked(
        &ctx,
        &doc,
        Method::PUT,
        p,
        t,
        &bad,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    checked(
        &ctx,
        &doc,
        Method::PUT,
        p,
        t,
        "{\"nonsense\": 1}",
        StatusCode::BAD_REQUEST,
    )
    .await;
    checked(
        &ctx,
        &doc,
        Method::GET,
        "/api/v1/groups/A/config",
        t,
        "",
        StatusCode::BAD_REQUEST,
    )
    .await;
}

struct DownTable;

#[async_trait::async_trait]
impl HealthProbe for DownTable {
    async fn checks(&self) -> Vec<DependencyCheck> {
        vec![DependencyCheck {
            name: "dynamodb",
            ok: false,
            latency_ms: 3,
            error: Some("connection refused".into()),
        }]
    }
}

#[tokio::test]
async fn health_metrics_and_the_document_itself_fit_their_schemas() {
    let doc = document().await;
    let ctx = ctx();
    let up = checked(
        &ctx,
        &doc,
        Method::GET,
        "/api/v1/health",
        "/api/v1/health",
        "",
        StatusCode::OK,
    )
    .await;
    assert_eq!(up["status"], "ok");
    let d = "/api/v1/health/detailed";
    checked(&ctx, &doc, Method::GET, d, d, "", StatusCode::OK).await;
    let degraded = checked(
        &ctx_with(Arc::new(DownTable)),
        &doc,
        Method::GET,
        d,
        d,
        "",
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(degraded["status"], "degraded");

    let a = call(&ctx, Method::GET, "/api/v1/metrics", "").await;
    assert_eq!(a.status, StatusCode::OK);
    let documented: Vec<&String> = doc["paths"]["/api/v1/metrics"]["get"]["responses"]["200"]
        ["content"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(documented, [&a.content_type]);

    let o = "/api/v1/openapi.json";
    let served = checked(&ctx, &doc, Method::GET, o, o, "", StatusCode::OK).await;
    assert_eq!(served, doc);
}

#[tokio::test]
async fn collecting_now_fits_its_schema_when_the_server_answers_and_when_it_does_not() {
    let doc = document().await;
    let ctx = ctx();
    let addr = serve_metrics(capture(VLLM_CAPTURE));
    let body =
        json!({"id": "live", "engine": "vllm", "metrics_url": format!("http://{addr}/metrics")});
    let c = call(&ctx, Method::POST, "/api/v1/instances", &body.to_string()).await;
    assert_eq!(c.status, StatusCode::CREATED, "{}", c.text);
    let t = "/api/v1/metrics/collect";
    let collected = checked(
        &ctx,
        &doc,
        Method::POST,
        t,
        t,
        &json!({"instance_id": "live"}).to_string(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(collected["snapshot"]["engine"], "vllm");

    // A closed port: nothing listens once the listener is dropped.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let body =
        json!({"id": "dead", "engine": "vllm", "metrics_url": format!("http://{closed}/metrics")});
    call(&ctx, Method::POST, "/api/v1/instances", &body.to_string()).await;
    let failed = checked(
        &ctx,
        &doc,
        Method::POST,
        t,
        t,
        &json!({"instance_id": "dead"}).to_string(),
        StatusCode::BAD_GATEWAY,
    )
    .await;
    assert_eq!(failed["code"], "scrape_failed");
    checked(
        &ctx,
        &doc,
        Method::POST,
        t,
        t,
        &json!({"instance_id": "ghost"}).to_string(),
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn the_schemas_refuse_what_the_api_never_sends() {
    let doc = document().await;
    let schema = |name: &str| {
        with_components(
            &doc,
            &json!({"$ref": format!("#/components/schemas/{name}")}),
        )
    };
    let refused = |name: &str, body: Value| {
        let validator = jsonschema::validator_for(&schema(name)).unwrap();
        assert!(!validator.is_valid(&body), "{name} accepts {body}");
    };
    let histogram = json!({"count": 3.0, "sum": 1.5, "buckets": [[0.5, 1.0], ["+Inf", 3.0]]});
    assert_valid(&schema("Histogram"), &histogram, "a histogram with +Inf");
    refused(
        "Histogram",
        json!({"count": 3.0, "sum": 1.5, "buckets": [[0.5, 1.0], ["inf", 3.0]]}),
    );
    refused(
        "Histogram",
        json!({"count": 3.0, "sum": 1.5, "buckets": [[0.5]]}),
    );
    refused(
        "ModelMetrics",
        json!({"model": "m", "metrics": {"not_canonical": 1.0}}),
    );
    refused("ErrorBody", json!({"message": "no code", "details": null}));
    refused("Id", json!("Upper"));
    refused(
        "AnalysisSubject",
        json!({"basis": "WINDOW", "engine": "vllm", "generation": "v1", "partial": null, "notes": []}),
    );
    refused(
        "NewInstance",
        json!({"id": "a", "engine": "vllm", "metrics_url": "http://10.0.0.1/", "extra": 1}),
    );
    refused(
        "Instance",
        json!({"id": "a", "engine": "triton", "metrics_url": "u", "group": "g",
                               "created_at_ms": 0, "updated_at_ms": 0}),
    );
}

/// The request bodies document the ids the API validates (found by the API fuzzing, which got 4xx
/// for most "valid" bodies while ids were documented as any string): a body the schema refuses
/// is one the API refuses, and the other way round for the ids.
#[tokio::test]
async fn request_schemas_document_the_ids_the_api_validates() {
    let doc = document().await;
    let validator = |name: &str| {
        jsonschema::validator_for(&with_components(
            &doc,
            &json!({"$ref": format!("#/components/schemas/{name}")}),
        ))
        .unwrap()
    };
    let url = "http://10.0.0.7:8000/metrics";
    let cases = [
        (
            "NewInstance",
            "/api/v1/instances",
            json!({"id": "vllm-0", "engine": "vllm", "metrics_url": url, "group": "chat"}),
            vec![
                json!({"id": "Not An Id", "engine": "vllm", "metrics_url": url}),
                json!({"id": "vllm-0", "engine": "vllm", "metrics_url": url, "group": "-chat"}),
                json!({"id": "x".repeat(65), "engine": "vllm", "metrics_url": url}),
            ],
        ),
        (
            "CollectRequest",
            "/api/v1/metrics/collect",
            json!({"instance_id": "vllm-0"}),
            vec![json!({"instance_id": ""}), json!({"instance_id": "VLLM"})],
        ),
        (
            "AnalyzeRequest",
            "/api/v1/analysis/detect-bottlenecks",
            json!({"instance_id": "vllm-0"}),
            vec![json!({"instance_id": "a/b"})],
        ),
        (
            "StartWorkflow",
            "/api/v1/workflows",
            json!({"recommendation_id": "chat.rec-57b5179b83ad32d2"}),
            vec![
                json!({"recommendation_id": ""}),
                json!({"recommendation_id": "r".repeat(201)}),
            ],
        ),
    ];
    let ctx = ctx();
    for (schema, path, valid, invalid) in cases {
        let v = validator(schema);
        assert!(v.is_valid(&valid), "{schema} refuses {valid}");
        for body in invalid {
            assert!(!v.is_valid(&body), "{schema} documents {body} as valid");
            let a = call(&ctx, Method::POST, path, &body.to_string()).await;
            assert!(
                matches!(
                    a.status,
                    StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY
                ),
                "{path} {body}: {} {}",
                a.status,
                a.text
            );
        }
    }
}

/// Any body over the limit is refused before routing, so every operation that takes a body must
/// document 413 (approve and reject, whose body is optional, did not).
#[tokio::test]
async fn every_operation_with_a_body_documents_and_answers_413() {
    let doc = document().await;
    let ctx = ctx();
    let too_large = "x".repeat(perfagent::api::MAX_BODY_BYTES + 1);
    let mut with_body = 0;
    for route in ROUTES {
        let m = route.method.to_ascii_lowercase();
        if doc["paths"][route.path][&m]["requestBody"].is_null() {
            continue;
        }
        with_body += 1;
        let path = route.path.replace("{id}", "x").replace("{group}", "g");
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        let refused = checked(
            &ctx,
            &doc,
            method,
            &path,
            route.path,
            &too_large,
            StatusCode::PAYLOAD_TOO_LARGE,
        )
        .await;
        assert_eq!(refused["code"], "body_too_large");
    }
    assert_eq!(with_body, 8, "the routes that take a body");
}
