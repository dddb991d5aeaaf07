//! A local Lambda Runtime API (the part a custom runtime talks to: `GET .../invocation/next`, `POST
//! .../invocation/{id}/response|error`, `POST .../init/error`), enough to run the function binaries
//! as Lambda runs them and to time them from outside: when the first `next` arrives (the process is
//! ready for its first event), when each event was handed out and when its answer came back.
//!
//! The events to hand out are loaded before a process starts. Once they are spent, `next` answers
//! without a request id, which makes the runtime fail and the process exit: that is how a run ends
//! (Lambda would freeze the process instead).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// One event handed out, and what became of it.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub delivered: Instant,
    pub answered: Option<Instant>,
    pub response: Option<String>,
    pub error: Option<String>,
}

/// What a process did against the API.
#[derive(Debug, Default, Clone)]
pub struct Recorded {
    pub first_next: Option<Instant>,
    pub invocations: Vec<Invocation>,
    pub init_error: Option<String>,
}

#[derive(Default)]
struct Inner {
    events: VecDeque<Value>,
    recorded: Recorded,
}

#[derive(Clone)]
pub struct RuntimeApi {
    inner: Arc<Mutex<Inner>>,
    address: String,
}

const PREFIX: &str = "/2018-06-01/runtime";

impl RuntimeApi {
    /// Serves the API on a free loopback port, for the life of the process.
    pub async fn start() -> anyhow::Result<RuntimeApi> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let api = RuntimeApi {
            inner: Arc::default(),
            address: listener.local_addr()?.to_string(),
        };
        let app = Router::new()
            .route(&format!("{PREFIX}/invocation/next"), get(next))
            .route(
                &format!("{PREFIX}/invocation/{{id}}/response"),
                post(response),
            )
            .route(&format!("{PREFIX}/invocation/{{id}}/error"), post(error))
            .route(&format!("{PREFIX}/init/error"), post(init_error))
            .with_state(api.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(api)
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> &str {
        &self.address
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the previous run and queues the events of the next one.
    pub fn load(&self, events: Vec<Value>) {
        let mut inner = self.lock();
        inner.events = events.into();
        inner.recorded = Recorded::default();
    }

    pub fn recorded(&self) -> Recorded {
        self.lock().recorded.clone()
    }
}

async fn next(State(api): State<RuntimeApi>) -> Response {
    let now = Instant::now();
    let mut inner = api.lock();
    inner.recorded.first_next.get_or_insert(now);
    let Some(event) = inner.events.pop_front() else {
        // No request id: the runtime gives up and the process exits.
        return (StatusCode::OK, "no more events").into_response();
    };
    let index = inner.recorded.invocations.len();
    inner.recorded.invocations.push(Invocation {
        delivered: Instant::now(),
        answered: None,
        response: None,
        error: None,
    });
    drop(inner);
    let deadline_ms = perfagent::clock::now_ms() + 900_000;
    let mut headers = HeaderMap::new();
    let pairs = [
        ("lambda-runtime-aws-request-id", format!("bench-{index}")),
        ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:bench".to_string(),
        ),
        (
            "lambda-runtime-trace-id",
            format!("Root=1-00000000-{index:024x};Sampled=0"),
        ),
        ("content-type", "application/json".to_string()),
    ];
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    (StatusCode::OK, headers, event.to_string()).into_response()
}

fn finish(api: &RuntimeApi, id: &str, body: Bytes, failed: bool) -> StatusCode {
    let now = Instant::now();
    let index = id
        .strip_prefix("bench-")
        .and_then(|i| i.parse::<usize>().ok());
    let mut inner = api.lock();
    let Some(inv) = index.and_then(|i| inner.recorded.invocations.get_mut(i)) else {
        return StatusCode::BAD_REQUEST;
    };
    inv.answered = Some(now);
    let text = String::from_utf8_lossy(&body).into_owned();
    if failed {
        inv.error = Some(text);
    } else {
        inv.response = Some(text);
    }
    StatusCode::ACCEPTED
}

async fn response(
    State(api): State<RuntimeApi>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    finish(&api, &id, body, false)
}

async fn error(State(api): State<RuntimeApi>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    finish(&api, &id, body, true)
}

async fn init_error(State(api): State<RuntimeApi>, body: Bytes) -> StatusCode {
    api.lock().recorded.init_error = Some(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}
