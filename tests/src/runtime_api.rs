//! A local Lambda Runtime API (the part a custom runtime talks to: `GET .../invocation/next`, `POST
//! .../invocation/{id}/response|error`, `POST .../init/error`), enough to run the function binaries
//! as Lambda runs them and to time them from outside: when the first `next` arrives (the process is
//! ready for its first event), when each event was handed out and when its answer came back.
//!
//! The events to hand out are loaded before a process starts; their request ids are `req-1`,
//! `req-2`, … in order. Once they are spent, `next` either answers without a request id, which
//! makes the runtime fail and the process exit (how a benchmark run ends), or holds the long poll
//! as Lambda does between invocations (for a test that reads the process's output as it runs).
//!
//! Used by `bench_fleet` (`make bench`) and by the functions' own tests (`functions/tests/`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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

/// What `next` does once the loaded events are spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenSpent {
    /// Answer without a request id: the process exits.
    EndProcess,
    /// Hold the long poll: the process waits for an event, as it would in Lambda.
    Hold,
}

#[derive(Clone)]
pub struct RuntimeApi {
    inner: Arc<Mutex<Inner>>,
    address: String,
    when_spent: WhenSpent,
}

const PREFIX: &str = "/2018-06-01/runtime";

impl RuntimeApi {
    /// Serves the API on a free loopback port, for the life of the process.
    pub async fn start(when_spent: WhenSpent) -> anyhow::Result<RuntimeApi> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let api = RuntimeApi {
            inner: Arc::default(),
            address: listener.local_addr()?.to_string(),
            when_spent,
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

    /// What was recorded once `count` invocations have an answer, the process reported an init
    /// error, or `timeout` passed, whichever comes first.
    pub async fn answered(&self, count: usize, timeout: Duration) -> Recorded {
        let deadline = Instant::now() + timeout;
        loop {
            let recorded = self.recorded();
            let answers = recorded
                .invocations
                .iter()
                .filter(|i| i.answered.is_some())
                .count();
            if answers >= count || recorded.init_error.is_some() || Instant::now() >= deadline {
                return recorded;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The request id of the invocation at `index` (0-based).
pub fn request_id(index: usize) -> String {
    format!("req-{}", index + 1)
}

async fn next(State(api): State<RuntimeApi>) -> Response {
    let now = Instant::now();
    // The lock is released before any wait: a guard must not live across an `await`.
    let handed = {
        let mut inner = api.lock();
        inner.recorded.first_next.get_or_insert(now);
        inner.events.pop_front().map(|event| {
            let index = inner.recorded.invocations.len();
            inner.recorded.invocations.push(Invocation {
                delivered: Instant::now(),
                answered: None,
                response: None,
                error: None,
            });
            (index, event)
        })
    };
    let Some((index, event)) = handed else {
        if api.when_spent == WhenSpent::Hold {
            return std::future::pending().await;
        }
        // No request id: the runtime gives up and the process exits.
        return (StatusCode::OK, "no more events").into_response();
    };
    let deadline_ms = perfagent::clock::now_ms() + 900_000;
    let mut headers = HeaderMap::new();
    let pairs = [
        ("lambda-runtime-aws-request-id", request_id(index)),
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
        .strip_prefix("req-")
        .and_then(|i| i.parse::<usize>().ok())
        .and_then(|n| n.checked_sub(1));
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
