//! The HTTP orchestrator client against a stub server on 127.0.0.1: what it sends (signed,
//! keyed bodies at the contract's paths) and how it reads answers (2xx, 4xx, 5xx, bad bodies,
//! timeouts, nobody listening).

use perfagent::instance::{EngineConfig, Id};
use perfagent::orchestrator::{
    verify, HttpOrchestrator, OrchestratorConfig, IDEMPOTENCY_HEADER, REPLAY_WINDOW_S,
    SIGNATURE_HEADER,
};
use perfagent::workflow::memory::ManualClock;
use perfagent::workflow::ports::{ApplyConfig, Orchestrator, OrchestratorError, RollbackConfigs};
use perfagent::workflow::Stage;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SECRET: &[u8] = b"s3cr3t-shared-with-the-orchestrator";
const NOW_MS: i64 = 1_700_000_000_123;

#[derive(Debug, Clone, Default)]
struct Seen {
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// Serves one canned answer per connection (`None`: never answer), recording each request.
async fn stub(answer: Option<(u16, String)>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let log = log.clone();
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, len) = loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let len = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        break (end + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut lines = head.lines();
                let path = lines
                    .next()
                    .and_then(|l| l.split_whitespace().nth(1))
                    .unwrap_or_default()
                    .to_string();
                let headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let body = buf[head_end..].to_vec();
                log.lock().unwrap_or_else(|p| p.into_inner()).push(Seen {
                    path,
                    headers,
                    body,
                });
                let Some((status, text)) = answer else {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                };
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}/orch"), seen)
}

fn client(base: &str, timeout: Duration) -> HttpOrchestrator {
    HttpOrchestrator::new(
        OrchestratorConfig {
            base_url: base.to_string(),
            secret: SECRET.to_vec(),
            timeout,
        },
        Arc::new(ManualClock::new(NOW_MS)),
    )
    .expect("a client")
}

fn id(s: &str) -> Id {
    Id::parse("id", s).expect("valid")
}

fn apply_request() -> ApplyConfig {
    ApplyConfig {
        workflow_id: id("wf-1"),
        group: id("chat"),
        stage: Stage::Canary,
        step: 0,
        instances: vec![id("vllm-1")],
        changes: EngineConfig::from([("max_num_seqs".to_string(), json!(512))]),
    }
}

#[tokio::test]
async fn apply_sends_a_signed_keyed_body_and_reads_the_previous_configs() {
    let (base, seen) = stub(Some((
        200,
        json!({"previous": {"vllm-1": {"max_num_seqs": 256}}}).to_string(),
    )))
    .await;
    let previous = client(&base, Duration::from_secs(5))
        .apply_config(&apply_request(), "wf-1:canary:0")
        .await
        .expect("applied");
    assert_eq!(previous[&id("vllm-1")]["max_num_seqs"], json!(256));
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let req = &seen[0];
    assert_eq!(req.path, "/orch/v1/configs/apply");
    assert_eq!(
        req.headers
            .get(&IDEMPOTENCY_HEADER.to_ascii_lowercase())
            .map(String::as_str),
        Some("wf-1:canary:0")
    );
    let signature = &req.headers[&SIGNATURE_HEADER.to_ascii_lowercase()];
    // The orchestrator's side: the same helper verifies it, with its own clock.
    assert_eq!(
        verify(
            SECRET,
            signature,
            &req.body,
            NOW_MS / 1000 + 10,
            REPLAY_WINDOW_S
        ),
        Ok(NOW_MS / 1000)
    );
    let body: serde_json::Value = serde_json::from_slice(&req.body).expect("json");
    assert_eq!(body["idempotency_key"], "wf-1:canary:0");
    assert_eq!(body["instances"], json!(["vllm-1"]));
    assert_eq!(body["changes"], json!({"max_num_seqs": 512}));
    assert_eq!(body["stage"], "CANARY");
}

#[tokio::test]
async fn server_errors_are_transient_and_client_errors_are_not() {
    for (status, transient) in [
        (500, true),
        (503, true),
        (429, true),
        (409, true),
        (400, false),
        (401, false),
        (422, false),
    ] {
        let (base, _) = stub(Some((status, r#"{"error":"nope"}"#.into()))).await;
        let err = client(&base, Duration::from_secs(5))
            .rollback(
                &RollbackConfigs {
                    workflow_id: id("wf-1"),
                    group: id("chat"),
                    configs: BTreeMap::new(),
                    reason: "test".into(),
                },
                "wf-1:rollback:vllm-1",
            )
            .await
            .expect_err("an error");
        match (transient, &err) {
            (true, OrchestratorError::Unavailable(m)) => assert!(m.contains(&status.to_string())),
            (false, OrchestratorError::Rejected { status: s, message }) => {
                assert_eq!(*s, status);
                assert!(message.contains("nope"));
            }
            _ => panic!("{status}: unexpected {err:?}"),
        }
    }
}

#[tokio::test]
async fn an_answer_that_breaks_the_contract_is_a_bad_response() {
    for body in ["not json", r#"{"previous": {}}"#] {
        let (base, _) = stub(Some((200, body.into()))).await;
        let err = client(&base, Duration::from_secs(5))
            .apply_config(&apply_request(), "k")
            .await
            .expect_err("refused");
        assert!(
            matches!(err, OrchestratorError::BadResponse(_)),
            "{body}: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_silent_orchestrator_times_out_as_unavailable() {
    let (base, _) = stub(None).await;
    let started = std::time::Instant::now();
    let err = client(&base, Duration::from_millis(300))
        .apply_config(&apply_request(), "k")
        .await
        .expect_err("timed out");
    assert!(
        matches!(err, OrchestratorError::Unavailable(ref m) if m.contains("timed out")),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn nobody_listening_is_unavailable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let err = client(&format!("http://{addr}/"), Duration::from_secs(2))
        .apply_config(&apply_request(), "k")
        .await
        .expect_err("refused");
    assert!(matches!(err, OrchestratorError::Unavailable(_)), "{err:?}");
}

#[test]
fn a_client_needs_an_http_url_and_a_secret() {
    let clock = Arc::new(ManualClock::new(0));
    let config = |url: &str, secret: &[u8]| OrchestratorConfig {
        base_url: url.into(),
        secret: secret.to_vec(),
        timeout: Duration::from_secs(1),
    };
    assert!(HttpOrchestrator::new(config("ftp://x/", SECRET), clock.clone()).is_err());
    assert!(HttpOrchestrator::new(config("http://x/", b""), clock.clone()).is_err());
    assert!(HttpOrchestrator::new(config("http://x", SECRET), clock).is_ok());
    assert!(!format!("{:?}", config("http://x", SECRET)).contains("s3cr3t"));
}
