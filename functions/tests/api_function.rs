//! The `api` binary run as Lambda runs it: started with the runtime's environment, fed API Gateway
//! (HTTP API, payload 2.0) events by a local Lambda Runtime API (`perfagent_e2e::runtime_api`), its
//! answers and its stdout read back. Proves the structured logs (every line JSON; every log line of
//! an invocation with `request_id`, `service`, `cold_start`) and the CORS answers of the real
//! function, with no AWS: the store points at a closed port, so only routes that need no
//! dependency succeed.

use perfagent_e2e::runtime_api::{request_id, RuntimeApi, WhenSpent};
use serde_json::{json, Value};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

const SERVICE: &str = "perfagent-api";
const CONSOLE: &str = "https://console.example.com";
const OPS: &str = "https://ops.example.com:8443";

/// One API Gateway HTTP API (payload 2.0) event, as the template's integration sends it.
fn event(method: &str, path: &str, headers: &[(&str, &str)]) -> Value {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .chain([(
            "host".to_string(),
            json!("abc123.execute-api.us-east-1.amazonaws.com"),
        )])
        .collect();
    json!({
        "version": "2.0",
        "routeKey": "ANY /{proxy+}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "api-function-test"
            },
            "requestId": "gateway-request",
            "routeKey": "ANY /{proxy+}",
            "stage": "$default",
            "time": "01/Jan/2025:00:00:00 +0000",
            "timeEpoch": 1735689600000i64
        },
        "isBase64Encoded": false
    })
}

/// What one run of the function left: each invocation's answer (in order), and its output.
struct Run {
    answers: Vec<(String, Value)>,
    stdout: Vec<String>,
    stderr: String,
}

/// A port nothing listens on: connections to it are refused at once.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the `api` binary against a local Runtime API, invokes it once per event (request ids
/// `req-1`, `req-2`, …), then stops it and returns what it answered and printed.
async fn run_api(extra_env: &[(&str, &str)], events: Vec<Value>) -> Run {
    let count = events.len();
    let api = RuntimeApi::start(WhenSpent::Hold)
        .await
        .expect("the Runtime API starts");
    api.load(events);
    let runtime_api = api.address().to_string();

    let store = format!("http://127.0.0.1:{}", closed_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_api"))
        .env_clear()
        .envs([
            ("AWS_LAMBDA_RUNTIME_API", runtime_api.as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", SERVICE),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/perfagent-api"),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2025/01/01/[$LATEST]0123456789abcdef",
            ),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_ENDPOINT_URL", store.as_str()),
            ("AWS_MAX_ATTEMPTS", "1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("TABLE_NAME", "perfagent"),
            ("SERVICE_NAME", SERVICE),
            ("LOG_LEVEL", "info"),
        ])
        .envs(extra_env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the api binary starts");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });

    let recorded = api.answered(count, Duration::from_secs(60)).await;
    let mut answers = Vec::new();
    for (i, invocation) in recorded.invocations.iter().enumerate() {
        let id = request_id(i);
        if let Some(e) = &invocation.error {
            child.kill().unwrap();
            panic!("{id} failed: {e}\nstderr: {}", stderr.join().unwrap());
        }
        if let Some(body) = &invocation.response {
            let v = serde_json::from_str(body).unwrap_or(Value::String(body.clone()));
            answers.push((id, v));
        }
    }
    if answers.len() < count {
        child.kill().unwrap();
        panic!(
            "the function answered {} of {count} events (init error: {:?})\nstderr: {}",
            answers.len(),
            recorded.init_error,
            stderr.join().unwrap()
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
    Run {
        answers,
        stdout: stdout.join().unwrap().lines().map(String::from).collect(),
        stderr: stderr.join().unwrap(),
    }
}

/// A response header, looked up without regard to case.
fn header<'a>(answer: &'a Value, name: &str) -> Option<&'a str> {
    answer["headers"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

fn access_control_headers(answer: &Value) -> Vec<String> {
    answer["headers"]
        .as_object()
        .map(|h| {
            h.keys()
                .filter(|k| k.to_ascii_lowercase().starts_with("access-control-"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

fn status(answer: &Value) -> u64 {
    answer["statusCode"].as_u64().expect("a status code")
}

#[tokio::test]
async fn every_log_line_is_json_with_the_request_id_service_and_cold_start() {
    let run = run_api(
        &[],
        vec![
            event("GET", "/api/v1/health", &[]),
            event("GET", "/api/v1/health", &[]),
            // Needs the store, which refuses connections: a 5xx, logged as an error.
            event("GET", "/api/v1/instances", &[]),
        ],
    )
    .await;
    assert_eq!(status(&run.answers[0].1), 200, "{:?}", run.answers[0]);
    assert_eq!(status(&run.answers[1].1), 200);
    assert!(status(&run.answers[2].1) >= 500, "{:?}", run.answers[2]);
    assert!(run.stderr.is_empty(), "nothing on stderr: {}", run.stderr);

    let lines: Vec<Value> = run
        .stdout
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let (metrics, logs): (Vec<&Value>, Vec<&Value>) =
        lines.iter().partition(|l| l.get("_aws").is_some());
    assert_eq!(metrics.len(), 3, "one EMF line per request: {metrics:?}");
    assert!(!logs.is_empty());
    for l in &logs {
        let id = l["request_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no request_id: {l}"));
        assert!(["req-1", "req-2", "req-3"].contains(&id), "{l}");
        assert_eq!(l["service"], SERVICE, "{l}");
        assert_eq!(
            l["cold_start"],
            json!(id == "req-1"),
            "cold only on the first: {l}"
        );
        assert!(l["level"].is_string() && l["message"].is_string(), "{l}");
    }
    for (id, answer) in &run.answers {
        let handled = logs
            .iter()
            .find(|l| l["request_id"] == id.as_str() && l["message"] == "handled")
            .unwrap_or_else(|| panic!("no 'handled' line for {id}"));
        assert_eq!(
            handled["status"].as_u64(),
            Some(status(answer)),
            "{handled}"
        );
        assert_eq!(handled["method"], "GET");
    }
    let failed = logs
        .iter()
        .find(|l| l["level"] == "ERROR")
        .expect("the store failure is logged");
    assert_eq!(failed["request_id"], "req-3", "{failed}");
    assert_eq!(failed["cold_start"], false);
}

#[tokio::test]
async fn cors_answers_allowed_origins_and_only_them() {
    let preflight = |origin: &str| {
        event(
            "OPTIONS",
            "/api/v1/workflows/wf-1/approve",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization,content-type,x-amz-date",
                ),
            ],
        )
    };
    let allowed = format!("{CONSOLE},{OPS}/");
    let run = run_api(
        &[("CORS_ALLOWED_ORIGINS", allowed.as_str())],
        vec![
            preflight(OPS),
            event("GET", "/api/v1/health", &[("origin", CONSOLE)]),
            preflight("https://evil.example"),
            event(
                "GET",
                "/api/v1/health",
                &[("origin", "https://evil.example")],
            ),
            event("GET", "/api/v1/health", &[]),
            // An error answer carries them too, or the browser hides the error from the page.
            event("GET", "/api/v1/nowhere", &[("origin", CONSOLE)]),
        ],
    )
    .await;
    let a: Vec<&Value> = run.answers.iter().map(|(_, v)| v).collect();

    assert_eq!(status(a[0]), 204, "{}", a[0]);
    assert_eq!(a[0]["body"].as_str().unwrap_or_default(), "");
    assert_eq!(header(a[0], "access-control-allow-origin"), Some(OPS));
    let methods = header(a[0], "access-control-allow-methods").unwrap();
    assert!(methods.split(", ").any(|m| m == "POST"), "{methods}");
    let headers = header(a[0], "access-control-allow-headers").unwrap();
    for h in ["authorization", "content-type", "x-amz-date"] {
        assert!(headers.split(", ").any(|x| x == h), "{h} in {headers}");
    }
    assert_eq!(header(a[0], "access-control-max-age"), Some("600"));
    assert_eq!(header(a[0], "vary"), Some("origin"));

    assert_eq!(status(a[1]), 200);
    assert_eq!(header(a[1], "access-control-allow-origin"), Some(CONSOLE));
    assert_eq!(header(a[1], "vary"), Some("origin"));
    assert_eq!(
        access_control_headers(a[1]),
        ["access-control-allow-origin"]
    );

    assert_eq!(status(a[2]), 204, "a refused preflight is still answered");
    assert_eq!(
        access_control_headers(a[2]),
        Vec::<String>::new(),
        "{}",
        a[2]
    );
    assert_eq!(status(a[3]), 200);
    assert_eq!(
        access_control_headers(a[3]),
        Vec::<String>::new(),
        "{}",
        a[3]
    );
    assert_eq!(
        access_control_headers(a[4]),
        Vec::<String>::new(),
        "{}",
        a[4]
    );

    assert_eq!(status(a[5]), 404);
    assert_eq!(header(a[5], "access-control-allow-origin"), Some(CONSOLE));
}

#[tokio::test]
async fn without_allowed_origins_there_is_no_cors() {
    let run = run_api(
        &[],
        vec![
            event(
                "OPTIONS",
                "/api/v1/instances",
                &[
                    ("origin", CONSOLE),
                    ("access-control-request-method", "POST"),
                ],
            ),
            event("GET", "/api/v1/health", &[("origin", CONSOLE)]),
        ],
    )
    .await;
    let (preflight, get) = (&run.answers[0].1, &run.answers[1].1);
    assert_eq!(
        status(preflight),
        405,
        "routed like any OPTIONS: {preflight}"
    );
    assert_eq!(access_control_headers(preflight), Vec::<String>::new());
    assert_eq!(status(get), 200);
    assert_eq!(access_control_headers(get), Vec::<String>::new());
    assert_eq!(header(get, "vary"), None);
}

#[tokio::test]
async fn no_secret_or_token_reaches_the_logs_even_at_trace() {
    // Markers the function holds or receives: its own credentials and the orchestrator's secret
    // (environment), the caller's session token and signature (request headers).
    const ACCESS_KEY: &str = "AKIDMARKERACCESSKEY0";
    const SECRET_KEY: &str = "marker-aws-secret-access-key";
    const SESSION: &str = "marker-function-session-token";
    const ORCHESTRATOR_SECRET: &str = "marker-orchestrator-hmac-secret";
    const CALLER_TOKEN: &str = "marker-caller-security-token";
    const SIGNATURE: &str = "markercallersignature0123456789abcdef";
    let orchestrator = format!("http://127.0.0.1:{}", closed_port());
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential=AKIDCALLER/20250101/us-east-1/execute-api/aws4_request, \
         SignedHeaders=host;x-amz-date;x-amz-security-token, Signature={SIGNATURE}"
    );
    let headers = [
        ("authorization", authorization.as_str()),
        ("x-amz-date", "20250101T000000Z"),
        ("x-amz-security-token", CALLER_TOKEN),
    ];
    let run = run_api(
        &[
            ("LOG_LEVEL", "trace"),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_SESSION_TOKEN", SESSION),
            ("ORCHESTRATOR_URL", orchestrator.as_str()),
            ("ORCHESTRATOR_SECRET", ORCHESTRATOR_SECRET),
        ],
        vec![
            event("GET", "/api/v1/health", &headers),
            // Calls the store (refused): the SDK signs with the function's credentials and fails.
            event("GET", "/api/v1/instances", &headers),
        ],
    )
    .await;
    assert_eq!(status(&run.answers[0].1), 200, "{:?}", run.answers[0]);
    assert!(status(&run.answers[1].1) >= 500, "{:?}", run.answers[1]);
    let output = format!("{}\n{}", run.stdout.join("\n"), run.stderr);
    assert!(
        run.stdout.iter().any(|l| l.contains("\"handled\"")),
        "the function logged: {output}"
    );
    for secret in [
        SECRET_KEY,
        SESSION,
        ORCHESTRATOR_SECRET,
        CALLER_TOKEN,
        SIGNATURE,
    ] {
        assert!(
            !output.contains(secret),
            "{secret} reached the logs at LOG_LEVEL=trace:\n{output}"
        );
    }
}
