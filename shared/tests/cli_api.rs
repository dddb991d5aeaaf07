//! The `perfagent` commands against a deployed agent, run as an operator would: the built binary
//! against the real API (`perfagent::api::handle` with the in-memory store, a fleet analyzed by the
//! real analyzer, the in-memory workflow parts) served over HTTP on 127.0.0.1. The server stands in
//! for API Gateway: it refuses unsigned requests and takes the caller's principal from the SigV4
//! credential, so approvals are decided by who signed.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use perfagent::analyzer;
use perfagent::api::{handle, ApiContext, ApiRequest, WorkflowApi};
use perfagent::instance::{Id, Instance};
use perfagent::netguard::NetGuard;
use perfagent::scrape::{ScrapeConfig, Scraper};
use perfagent::snapshot::{Canonical, Engine, Histogram, MetricValue, ModelMetrics};
use perfagent::store::memory::MemoryStore;
use perfagent::store::{InstanceStore, SnapshotStore, StoredSnapshot};
use serde_json::{json, Value};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::sync::Arc;

const ACCOUNT_ARN: &str = "arn:aws:iam::123456789012:user/";
/// The approver's access key id; the server maps a key id to `ACCOUNT_ARN` + key id.
const ALICE: &str = "ALICE";
const MALLORY: &str = "MALLORY";

fn id(s: &str) -> Id {
    Id::parse("id", s).unwrap()
}

struct Agent {
    ctx: Arc<ApiContext<MemoryStore>>,
    url: String,
}

/// The principal API Gateway would verify: the access key id of the SigV4 credential, if the
/// request is signed for execute-api.
fn principal(req: &Request) -> Option<String> {
    let auth = req.headers().get("authorization")?.to_str().ok()?;
    let credential = auth
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")?
        .split(',')
        .next()?;
    let (key_id, scope) = credential.split_once('/')?;
    scope
        .ends_with("/us-east-1/execute-api/aws4_request")
        .then(|| format!("{ACCOUNT_ARN}{key_id}"))
}

async fn gateway(State(ctx): State<Arc<ApiContext<MemoryStore>>>, req: Request) -> Response {
    let Some(principal) = principal(&req) else {
        return Response::builder()
            .status(403)
            .body(Body::from(r#"{"message":"Forbidden"}"#))
            .unwrap();
    };
    let (parts, body) = req.into_parts();
    let query = url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let resp = handle(
        &ctx,
        ApiRequest {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query,
            body: to_bytes(body, usize::MAX).await.unwrap(),
            principal: Some(principal),
        },
    )
    .await;
    resp.map(Body::from)
}

fn vllm(name: &str, group: &str) -> Instance {
    Instance {
        id: id(name),
        engine: Engine::Vllm,
        metrics_url: format!("http://10.0.0.1:8000/{name}/metrics"),
        model: Some("llama".into()),
        group: id(group),
        labels: Default::default(),
        config: [("max_num_seqs".to_string(), json!(128))]
            .into_iter()
            .collect(),
        created_at_ms: 0,
        updated_at_ms: 0,
    }
}

/// A vLLM server under pressure at step `k` of 30 s steps: KV cache nearly full, a long queue.
fn pressured(k: f64) -> ModelMetrics {
    let n = MetricValue::Number;
    let count = 1000.0 + 150.0 * k;
    let ttft = MetricValue::Histogram(Histogram {
        count,
        sum: count * 0.8,
        buckets: vec![(0.1, 100.0), (1.0, count), (f64::INFINITY, count)],
    });
    ModelMetrics {
        model: "llama".into(),
        metrics: [
            (Canonical::KvCacheUsageRatio, n(0.96)),
            (Canonical::RequestsWaiting, n(40.0)),
            (Canonical::RequestsRunning, n(128.0)),
            (Canonical::RequestSuccessTotal, n(count)),
            (Canonical::RequestFailureTotal, n(0.0)),
            (Canonical::GenerationTokensTotal, n(1e6 + 30_000.0 * k)),
            (Canonical::PreemptionsTotal, n(10.0 + 5.0 * k)),
            (Canonical::TtftSeconds, ttft),
        ]
        .into_iter()
        .collect(),
    }
}

/// An agent of its own on a free port: `a`, `b`, `c` in group `chat` under pressure for five
/// minutes and analyzed; `idle` in group `batch`, never scraped. `ALICE` is the one approver.
async fn spawn_agent() -> Agent {
    let now = perfagent::clock::now_ms();
    let store = Arc::new(MemoryStore::new());
    for name in ["a", "b", "c"] {
        store.create_instance(&vllm(name, "chat")).await.unwrap();
        for k in 0..10 {
            let slot = now - 300_000 + k * 30_000;
            store
                .put_snapshots(&[StoredSnapshot {
                    instance_id: id(name),
                    slot_ms: slot,
                    scraped_at_ms: slot,
                    engine: Engine::Vllm,
                    generation: "vllm-v1".into(),
                    models: vec![pressured(k as f64)],
                    partial: None,
                    expires_at: now / 1000 + 3600,
                }])
                .await
                .unwrap();
        }
    }
    store.create_instance(&vllm("idle", "batch")).await.unwrap();
    analyzer::run(&*store, now, 600_000).await.unwrap();

    let guard = NetGuard::from_list("10.0.0.0/8").unwrap();
    let ctx = Arc::new(ApiContext {
        store,
        guard: guard.clone(),
        scraper: Scraper::new(guard, ScrapeConfig::default()).unwrap(),
        snapshot_ttl_hours: 48,
        service: "performance-agent".into(),
        now_ms: perfagent::clock::now_ms,
        probe: Arc::new(perfagent::probe::NoDependencies),
        emit_emf: false,
        workflows: WorkflowApi {
            approvers: vec![format!("{ACCOUNT_ARN}{ALICE}")],
            ..WorkflowApi::in_memory()
        },
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().fallback(gateway).with_state(ctx.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Agent { ctx, url }
}

/// Runs the binary with only the environment given (plus AWS settings that keep the default
/// credential chain away from this machine's files and instance metadata).
async fn perfagent_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_perfagent"));
    cmd.args(args)
        .env_clear()
        .env("AWS_CONFIG_FILE", "/nonexistent/perfagent-test/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/perfagent-test/credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .envs(env.iter().copied());
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs"))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "a panic: {stderr}");
    out
}

/// Runs the binary as the IAM user `key_id`, against `url`.
async fn perfagent_as(key_id: &str, url: &str, args: &[&str]) -> Output {
    perfagent_env(
        args,
        &[
            ("PERFAGENT_API_URL", url),
            ("AWS_ACCESS_KEY_ID", key_id),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ],
    )
    .await
}

impl Agent {
    async fn run(&self, args: &[&str]) -> Output {
        perfagent_as(ALICE, &self.url, args).await
    }

    /// Runs a command that must succeed and returns its standard output.
    async fn stdout(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        serde_json::from_str(&self.stdout(&args).await).expect("--json prints one JSON document")
    }

    /// Starts a workflow of `chat`'s first recommendation; returns its id.
    async fn start(&self) -> String {
        let recs = self.json(&["recommendations", "--group", "chat"]).await;
        let rec = recs["recommendations"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let wf = self
            .json(&["workflows", "start", "--recommendation", &rec])
            .await;
        assert_eq!(wf["state"], "PENDING_APPROVAL", "{wf}");
        wf["id"].as_str().unwrap().to_string()
    }

    /// What the state machine's first task does: notify the orchestrator and store the token.
    async fn request_approval(&self, workflow: &str) {
        perfagent::workflow::request_approval(&self.ctx.workflows.deps, &id(workflow), "token")
            .await
            .unwrap();
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The table's lines after the header whose first column is `first`.
fn rows_of<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    table
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(first))
        .collect()
}

#[tokio::test]
async fn instances_are_a_table_for_people_and_the_apis_json_for_scripts() {
    let agent = spawn_agent().await;
    let table = agent.stdout(&["instances"]).await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "GROUP", "ENGINE", "MODEL", "METRICS", "URL", "BREAKER", "LAST", "ERROR"]
    );
    let ids: Vec<&str> = lines
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["idle", "a", "b", "c"],
        "ordered by group, then id:\n{table}"
    );
    let a = rows_of(&table, "a")[0];
    assert!(
        a.contains("chat") && a.contains("vllm") && a.contains("http://10.0.0.1:8000/a/metrics"),
        "{a}"
    );
    assert!(a.contains("CLOSED"), "{a}");

    let json = agent.json(&["instances"]).await;
    assert_eq!(json["count"], 4);
    assert_eq!(json["instances"][1]["id"], "a");
    assert_eq!(json["instances"][1]["health"]["breaker"]["state"], "CLOSED");

    let chat = agent.json(&["instances", "--group", "chat"]).await;
    assert_eq!(chat["count"], 3);
}

#[tokio::test]
async fn bottlenecks_and_recommendations_of_the_analyzed_fleet() {
    let agent = spawn_agent().await;
    let table = agent.stdout(&["bottlenecks"]).await;
    assert!(table.starts_with("INSTANCE"), "{table}");
    for name in ["a", "b", "c"] {
        let rows = rows_of(&table, name);
        assert!(
            rows.iter().any(|r| r.contains("MEMORY_PRESSURE")),
            "{name}:\n{table}"
        );
        assert!(rows.iter().any(|r| r.contains("QUEUE_BUILDUP")), "{table}");
    }

    let all = agent.json(&["bottlenecks"]).await;
    let only_a = agent.json(&["bottlenecks", "--instance", "a"]).await;
    let entries = only_a["bottlenecks"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(entries.iter().all(|e| e["instance_id"] == "a"));
    assert_eq!(only_a["count"], entries.len());
    assert_eq!(all["count"].as_u64(), Some(3 * entries.len() as u64));

    let recs = agent.stdout(&["recommendations"]).await;
    let rec = agent.json(&["recommendations"]).await;
    let first = &rec["recommendations"][0];
    let rec_id = first["id"].as_str().unwrap();
    let row = rows_of(&recs, rec_id);
    assert_eq!(row.len(), 1, "{recs}");
    assert!(row[0].contains("OPEN"), "{}", row[0]);
    assert!(
        row[0].contains(first["recommendation"]["flag"].as_str().unwrap()),
        "the change is shown in the engine's flag: {}",
        row[0]
    );

    let for_a = agent.json(&["recommendations", "--instance", "a"]).await;
    assert_eq!(for_a["count"], rec["count"]);
    let idle = agent
        .stdout(&["recommendations", "--instance", "idle"])
        .await;
    assert_eq!(idle, "No recommendations.\n");
    let idle = agent.stdout(&["bottlenecks", "--instance", "idle"]).await;
    assert_eq!(idle, "No bottlenecks in the latest analyses.\n");

    let missing = agent.run(&["bottlenecks", "--instance", "nope"]).await;
    assert_eq!(code(&missing), 3, "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("404 Not Found: not_found: instance nope was not found"),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test]
async fn a_workflow_is_started_shown_approved_by_an_approver_only_and_listed() {
    let agent = spawn_agent().await;
    let recs = agent.json(&["recommendations", "--group", "chat"]).await;
    let rec = recs["recommendations"][0]["id"].as_str().unwrap();
    let started = agent
        .stdout(&[
            "workflows",
            "start",
            "--group",
            "chat",
            "--recommendation",
            rec,
        ])
        .await;
    assert!(started.starts_with("Started workflow wf-"), "{started}");
    let wf = started.split_whitespace().nth(2).unwrap().to_string();
    assert!(started.contains("PENDING_APPROVAL"), "{started}");

    let shown = agent.stdout(&["workflows", "show", &wf]).await;
    assert!(
        shown.contains("State           PENDING_APPROVAL (stage APPROVAL, step 0)"),
        "{shown}"
    );
    let inner = rec.split_once('.').unwrap().1;
    assert!(
        shown.contains(&format!("Recommendation  {inner}: ")),
        "the rolled-out recommendation: {shown}"
    );
    let trail = shown.split("Audit trail\n").nth(1).unwrap();
    assert!(trail.starts_with("TIME"), "{shown}");
    assert!(trail.contains("CREATE"), "{shown}");
    assert!(trail.contains("state machine execution"), "{shown}");

    // The state machine has not asked yet: nothing to approve.
    let early = agent.run(&["workflows", "approve", &wf]).await;
    assert_eq!(code(&early), 8, "{}", stderr(&early));
    assert!(
        stderr(&early).contains("409 Conflict: not_ready"),
        "{}",
        stderr(&early)
    );

    agent.request_approval(&wf).await;
    let mallory = perfagent_as(MALLORY, &agent.url, &["workflows", "approve", &wf]).await;
    assert_eq!(code(&mallory), 8, "{}", stderr(&mallory));
    assert!(
        stderr(&mallory).contains("403 Forbidden: not_an_approver"),
        "{}",
        stderr(&mallory)
    );

    let approved = agent
        .stdout(&["workflows", "approve", &wf, "--reason", "load test passed"])
        .await;
    assert_eq!(
        approved,
        format!(
            "Workflow {wf} of group chat is APPROVED; the state machine goes on to the canary.\n"
        )
    );
    let again = agent.run(&["workflows", "approve", &wf]).await;
    assert_eq!(code(&again), 8);
    assert!(
        stderr(&again).contains("already_decided")
            && stderr(&again).contains("\"state\":\"APPROVED\""),
        "{}",
        stderr(&again)
    );

    let list = agent.stdout(&["workflows", "list"]).await;
    let row = rows_of(&list, &wf);
    assert_eq!(row.len(), 1, "{list}");
    assert!(
        row[0].contains("chat") && row[0].contains("APPROVED"),
        "{list}"
    );
    let pending = agent
        .stdout(&["workflows", "list", "--state", "pending_approval"])
        .await;
    assert_eq!(pending, "No workflows.\n");

    let json = agent.json(&["workflows", "show", &wf]).await;
    assert_eq!(json["state"], "APPROVED");
    assert_eq!(json["decided_by"], format!("{ACCOUNT_ARN}{ALICE}"));
    assert!(json.get("task_token").is_none(), "never shown: {json}");
    let approve = json["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "APPROVE")
        .expect("the approval is in the audit trail");
    assert_eq!(approve["actor"], format!("{ACCOUNT_ARN}{ALICE}"));
}

#[tokio::test]
async fn a_rejection_needs_a_reason_and_keeps_it() {
    let agent = spawn_agent().await;
    let wf = agent.start().await;
    agent.request_approval(&wf).await;

    let no_reason = agent.run(&["workflows", "reject", &wf]).await;
    assert_eq!(code(&no_reason), 2, "{}", stderr(&no_reason));
    assert!(
        stderr(&no_reason).contains("--reason"),
        "{}",
        stderr(&no_reason)
    );

    let rejected = agent
        .stdout(&[
            "workflows",
            "reject",
            &wf,
            "--reason",
            "not during the launch",
        ])
        .await;
    assert!(
        rejected.starts_with(&format!("Workflow {wf} of group chat is REJECTED; ")),
        "{rejected}"
    );
    let json = agent.json(&["workflows", "show", &wf]).await;
    assert_eq!(json["state"], "REJECTED");
    let reasons: Vec<&str> = json["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("not during the launch")),
        "{reasons:?}"
    );
    let shown = agent.stdout(&["workflows", "show", &wf]).await;
    assert!(shown.contains("not during the launch"), "{shown}");
}

#[tokio::test]
async fn start_refuses_another_groups_recommendation_and_a_busy_group() {
    let agent = spawn_agent().await;
    let recs = agent.json(&["recommendations", "--group", "chat"]).await;
    let rec = recs["recommendations"][0]["id"].as_str().unwrap();
    let wrong = agent
        .run(&[
            "workflows",
            "start",
            "--group",
            "batch",
            "--recommendation",
            rec,
        ])
        .await;
    assert_eq!(code(&wrong), 2, "{}", stderr(&wrong));
    assert!(
        stderr(&wrong).contains(&format!(
            "recommendation {rec} is group chat's, not batch's: nothing was started"
        )),
        "{}",
        stderr(&wrong)
    );
    assert_eq!(
        agent.stdout(&["workflows", "list"]).await,
        "No workflows.\n"
    );

    let first = agent.start().await;
    let busy = agent
        .run(&["workflows", "start", "--recommendation", rec])
        .await;
    assert_eq!(code(&busy), 8, "{}", stderr(&busy));
    assert!(
        stderr(&busy).contains("group_busy") && stderr(&busy).contains(&first),
        "{}",
        stderr(&busy)
    );

    let unknown = agent
        .run(&["workflows", "start", "--recommendation", "chat.nope"])
        .await;
    assert_eq!(code(&unknown), 3, "{}", stderr(&unknown));
}

#[tokio::test]
async fn failures_have_their_documented_exit_codes() {
    let agent = spawn_agent().await;
    let missing = agent.run(&["workflows", "show", "wf-nope"]).await;
    assert_eq!(code(&missing), 3);
    assert_eq!(
        stderr(&missing),
        "perfagent: the API answered 404 Not Found: not_found: workflow wf-nope was not found\n"
    );

    let bad_id = agent.run(&["workflows", "show", "Not An Id"]).await;
    assert_eq!(code(&bad_id), 2, "{}", stderr(&bad_id));
    let bad_state = agent.run(&["workflows", "list", "--state", "DONE"]).await;
    assert_eq!(code(&bad_state), 2, "{}", stderr(&bad_state));

    // A port nobody listens on.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let out = perfagent_as(ALICE, &format!("http://{closed}"), &["instances"]).await;
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(stderr(&out).contains("unreachable"), "{}", stderr(&out));

    let out = perfagent_as(ALICE, "ftp://example.com", &["instances"]).await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));

    let out = perfagent_env(
        &["instances"],
        &[("AWS_ACCESS_KEY_ID", ALICE), ("AWS_SECRET_ACCESS_KEY", "s")],
    )
    .await;
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--api-url"), "{}", stderr(&out));

    let out = perfagent_env(&["instances", "--api-url", &agent.url], &[]).await;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no AWS credentials"),
        "{}",
        stderr(&out)
    );

    // Something that is not the agent: an HTML error page.
    let html = serve_once(
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: 17\r\nConnection: close\r\n\r\n<html>oops</html>",
    );
    let out = perfagent_as(ALICE, &format!("http://{html}"), &["instances"]).await;
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    assert!(stderr(&out).contains("not JSON"), "{}", stderr(&out));

    // The gateway refuses what is not signed for execute-api in the API's region.
    let out = perfagent_env(
        &["instances"],
        &[
            ("PERFAGENT_API_URL", &agent.url),
            ("AWS_ACCESS_KEY_ID", ALICE),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_REGION", "eu-west-1"),
        ],
    )
    .await;
    assert_eq!(code(&out), 8, "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "perfagent: the API answered 403 Forbidden: Forbidden\n"
    );
}

/// Answers one connection with `response`, whatever it asked.
fn serve_once(response: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let _ = stream.write_all(response.as_bytes());
        }
    });
    addr
}
