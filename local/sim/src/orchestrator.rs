//! The simulated deployment orchestrator: serves the contract of `docs/orchestrator-contract.yaml`
//! (approval notifications, apply, rollback, status) over the fleet simulator, with the
//! contract's signature and idempotency rules, engine-native knobs translated to the simulator's
//! keys, switchable approval behaviour, failure injection, and a record of every call for tests.
//!
//! Embed it with [`OrchestratorState::new`] + [`serve`] (or [`router`]); the `orchestrator-sim`
//! binary wires the same pieces to flags. docs/orchestrator-sim.md describes the HTTP API.

pub mod approver;
pub mod faults;
pub mod fleet_admin;
pub mod listener;
pub mod translate;

use crate::config::{EngineConfig, EngineKind, Generation};
use approver::{Action, ApprovalMode, Decision, ModeSettings, Principal, UNSIGNED_PRINCIPAL};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use faults::{FailRequest, Failure, Faults, Operation};
use fleet_admin::{FleetAdmin, FleetCallError};
use listener::OrchestratorListener;
use perfagent::instance::Id;
use perfagent::orchestrator::{
    verify, SignatureError, IDEMPOTENCY_HEADER, REPLAY_WINDOW_S, SIGNATURE_HEADER,
};
use perfagent::workflow::ports::{Clock, SystemClock};
use perfagent::workflow::{Stage, State as WorkflowState};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use translate::{
    native_config, sim_values, translate, translate_whole, SimKey, Target, TranslateError,
};

/// The contract's limit on an idempotency key.
pub const IDEMPOTENCY_KEY_MAX: usize = 200;
/// How long a key's first answer is kept (the contract: at least 7 days).
pub const KEY_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// Most entries kept in each record list (calls, applies, ...); older ones are dropped first.
pub const LOG_MAX: usize = 10_000;

/// Why the orchestrator could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("the shared secret is empty")]
    EmptySecret,
    #[error("invalid approval mode: {0}")]
    Mode(String),
}

/// How the orchestrator starts: the shared secret, approval behaviour, identities and clock.
#[derive(Clone)]
pub struct Settings {
    pub secret: Vec<u8>,
    pub mode: ModeSettings,
    /// Name → credentials; `env` is filled from the environment when its variables are set.
    pub principals: BTreeMap<String, Principal>,
    /// Signature timestamps are checked against it.
    pub clock: Arc<dyn Clock>,
    /// Harm: every apply also turns the simulator's `harmful` switch on for the instances it
    /// changes (the new config hits a slow kernel on this hardware); off by default.
    pub harm: bool,
}

impl Settings {
    /// `manual` mode, the environment's credentials as principal `env`, the system clock.
    pub fn new(secret: impl Into<Vec<u8>>) -> Settings {
        let mut principals = BTreeMap::new();
        if let Some(p) = Principal::from_env() {
            principals.insert(approver::ENV_PRINCIPAL.to_string(), p);
        }
        Settings {
            secret: secret.into(),
            mode: ModeSettings::new(ApprovalMode::Manual),
            principals,
            clock: Arc::new(SystemClock),
            harm: false,
        }
    }
}

/// A bounded list: the newest [`LOG_MAX`] entries and how many were dropped.
#[derive(Debug, Clone)]
struct Log<T> {
    items: VecDeque<T>,
    dropped: u64,
}

impl<T> Default for Log<T> {
    fn default() -> Self {
        Log {
            items: VecDeque::new(),
            dropped: 0,
        }
    }
}

impl<T: Clone> Log<T> {
    fn push(&mut self, item: T) {
        if self.items.len() >= LOG_MAX {
            self.items.pop_front();
            self.dropped += 1;
        }
        self.items.push_back(item);
    }

    fn to_vec(&self) -> Vec<T> {
        self.items.iter().cloned().collect()
    }
}

/// What became of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Processed for the first time, 2xx.
    Executed,
    /// Processed, 4xx (kept under its key when it has one).
    Refused,
    /// The key's first answer, returned again without doing anything.
    Replayed,
    /// Another request with the key was still being processed (409).
    InProgress,
    /// Processed, 5xx (not kept: a retry runs it again).
    Failed,
    /// An injected failure answered instead.
    Injected,
    /// The connection was dropped by a `down` + `close` rule.
    Dropped,
}

/// One call, as `GET /admin/calls` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub seq: u64,
    pub at_ms: i64,
    pub operation: Operation,
    pub idempotency_key: Option<String>,
    pub workflow_id: Option<String>,
    /// 0 for a dropped connection.
    pub status: u16,
    pub outcome: Outcome,
    /// The error message, for non-2xx answers.
    pub message: Option<String>,
    /// The request body (JSON), `null` when it was not JSON.
    pub request: Value,
}

/// One execution of `applyConfig` that reached the fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApplyRecord {
    pub seq: u64,
    pub idempotency_key: String,
    pub workflow_id: String,
    pub group: String,
    pub stage: Stage,
    pub step: u32,
    pub instances: Vec<String>,
    /// As the agent sent them (engine-native).
    pub changes: Map<String, Value>,
    /// Instance → the simulator keys it was given (with harm on, `harmful: true` too).
    pub translated: BTreeMap<String, Map<String, Value>>,
    /// Whether harm was on: the orchestrator added `harmful: true` to every instance's change.
    pub harm: bool,
    /// Instance → its config before, as answered (engine-native).
    pub previous: BTreeMap<String, Map<String, Value>>,
    pub status: u16,
    pub error: Option<String>,
}

/// One execution of `rollbackConfig` that reached the fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollbackRecord {
    pub seq: u64,
    pub idempotency_key: String,
    pub workflow_id: String,
    pub group: String,
    pub reason: String,
    pub configs: BTreeMap<String, Map<String, Value>>,
    pub restored: Vec<String>,
    /// Restored instances that cannot start with their restored config.
    pub down: Vec<String>,
    pub status: u16,
    pub error: Option<String>,
}

/// An approval notification that was taken.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalRecord {
    pub seq: u64,
    pub idempotency_key: String,
    pub workflow_id: String,
    pub group: String,
    pub advisory: bool,
    pub knob: String,
    pub changes: Map<String, Value>,
    pub approve_url: String,
    pub reject_url: String,
    pub expires_at_ms: i64,
    /// The approval mode when it arrived.
    pub mode: ApprovalMode,
}

/// A status report that was taken.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusRecord {
    pub seq: u64,
    pub idempotency_key: String,
    pub workflow_id: String,
    pub group: String,
    pub state: WorkflowState,
    pub stage: Stage,
    pub step: u32,
    pub message: String,
    pub at_ms: i64,
}

/// A key's record: the request it was first used with and, once complete, the answer.
#[derive(Debug, Clone)]
struct KeyRecord {
    fingerprint: Value,
    operation: Operation,
    first_seq: u64,
    at_ms: i64,
    answer: Option<(u16, Bytes)>,
}

#[derive(Default)]
struct Records {
    next_seq: u64,
    faults: Faults,
    keys: BTreeMap<String, KeyRecord>,
    calls: Log<CallRecord>,
    applies: Log<ApplyRecord>,
    rollbacks: Log<RollbackRecord>,
    approvals: Log<ApprovalRecord>,
    statuses: Log<StatusRecord>,
    decisions: Log<Decision>,
}

struct Shared {
    secret: Vec<u8>,
    clock: Arc<dyn Clock>,
    fleet: Arc<dyn FleetAdmin>,
    mode: Mutex<ModeSettings>,
    harm: AtomicBool,
    principals: Mutex<BTreeMap<String, Principal>>,
    records: Mutex<Records>,
    /// Applies and rollbacks run one at a time, so an all-or-none restore never interleaves
    /// with another change.
    work: tokio::sync::Mutex<()>,
}

/// The orchestrator's state; cheap to clone (shared).
#[derive(Clone)]
pub struct OrchestratorState {
    shared: Arc<Shared>,
}

/// A poisoned lock only means a panic elsewhere; the records are still worth serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A non-2xx answer: the contract's `Error` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    /// A stable name (`BadSignature`, `KeyReused`, `UnknownKnob`, ...).
    pub error: &'static str,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    fn body(&self) -> Value {
        json!({ "error": self.error, "message": self.message })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

fn fleet_error(e: FleetCallError) -> ApiError {
    match &e {
        FleetCallError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "UnknownInstance", e.to_string())
        }
        FleetCallError::Invalid(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "InvalidConfig", e.to_string())
        }
        FleetCallError::Unavailable(_) => {
            ApiError::new(StatusCode::BAD_GATEWAY, "FleetUnavailable", e.to_string())
        }
    }
}

fn translate_error(id: &str, engine: EngineKind, e: TranslateError) -> ApiError {
    let status = if e.is_invalid_value() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    ApiError::new(status, e.name(), format!("instance {id} ({engine}): {e}"))
}

/// What an instance is, as the translation needs it.
struct Resolved {
    id: Id,
    engine: EngineKind,
    generation: Generation,
    hardware: crate::config::Hardware,
    config: EngineConfig,
}

impl Resolved {
    fn target(&self) -> Target<'_> {
        Target {
            engine: self.engine,
            generation: self.generation,
            hardware: &self.hardware,
        }
    }
}

/// One instance's change, ready to send to the fleet.
struct Planned {
    id: Id,
    engine: EngineKind,
    sim_changes: Map<String, Value>,
}

/// An instance the fleet changed: its engine and config before.
struct Changed {
    id: Id,
    engine: EngineKind,
    previous: EngineConfig,
    up: bool,
    startup_error: Option<String>,
}

// The contract's request bodies. Unknown fields are allowed (the contract does not close them).

/// The fields the contract requires of a recommendation; those only read to check they are
/// present carry a leading underscore.
#[derive(Debug, Deserialize)]
struct RecommendationBody {
    #[serde(rename = "id")]
    _id: String,
    #[serde(rename = "engine")]
    _engine: EngineKind,
    knob: String,
    #[serde(rename = "proposed")]
    _proposed: Value,
    changes: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct ApprovalBody {
    workflow_id: Id,
    group: Id,
    advisory: bool,
    recommendation: RecommendationBody,
    approve_url: String,
    reject_url: String,
    expires_at_ms: i64,
}

#[derive(Debug, Deserialize)]
struct ApplyBody {
    workflow_id: Id,
    group: Id,
    stage: Stage,
    step: u32,
    instances: Vec<Id>,
    changes: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct RollbackBody {
    workflow_id: Id,
    group: Id,
    configs: BTreeMap<Id, Map<String, Value>>,
    reason: String,
}

#[derive(Debug, Deserialize)]
struct StatusBody {
    workflow_id: Id,
    group: Id,
    state: WorkflowState,
    stage: Stage,
    step: u32,
    message: String,
    at_ms: i64,
}

fn parse<T: serde::de::DeserializeOwned>(
    op: Operation,
    body: &Map<String, Value>,
) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(body.clone()))
        .map_err(|e| ApiError::bad_request(format!("{op} request: {e}")))
}

fn check_url(name: &str, url: &str) -> Result<(), ApiError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        _ => Err(ApiError::bad_request(format!(
            "{name} {url:?} is not an http(s) URL"
        ))),
    }
}

/// The answer of a processed call, before it is sent.
struct Answer {
    status: StatusCode,
    body: Bytes,
    outcome: Outcome,
    message: Option<String>,
}

impl Answer {
    fn error(e: ApiError, outcome: Outcome) -> Answer {
        Answer {
            status: e.status,
            body: Bytes::from(e.body().to_string()),
            outcome,
            message: Some(e.message),
        }
    }
}

impl OrchestratorState {
    pub fn new(
        settings: Settings,
        fleet: Arc<dyn FleetAdmin>,
    ) -> Result<OrchestratorState, SetupError> {
        if settings.secret.is_empty() {
            return Err(SetupError::EmptySecret);
        }
        settings.mode.validate().map_err(SetupError::Mode)?;
        Ok(OrchestratorState {
            shared: Arc::new(Shared {
                secret: settings.secret,
                clock: settings.clock,
                fleet,
                mode: Mutex::new(settings.mode),
                harm: AtomicBool::new(settings.harm),
                principals: Mutex::new(settings.principals),
                records: Mutex::new(Records::default()),
                work: tokio::sync::Mutex::new(()),
            }),
        })
    }

    pub fn mode(&self) -> ModeSettings {
        lock(&self.shared.mode).clone()
    }

    pub fn set_mode(&self, mode: ModeSettings) -> Result<(), String> {
        mode.validate()?;
        *lock(&self.shared.mode) = mode;
        Ok(())
    }

    /// Whether applies also turn the simulator's `harmful` switch on.
    pub fn harm(&self) -> bool {
        self.shared.harm.load(Ordering::SeqCst)
    }

    /// Turns harm on or off for the applies that start from now on (rollbacks never set it).
    pub fn set_harm(&self, enabled: bool) {
        self.shared.harm.store(enabled, Ordering::SeqCst);
    }

    /// Adds or replaces a named identity.
    pub fn set_principal(&self, name: &str, principal: Principal) -> Result<(), String> {
        principal.validate()?;
        if name == UNSIGNED_PRINCIPAL || name.is_empty() {
            return Err(format!("{name:?} cannot be a principal's name"));
        }
        lock(&self.shared.principals).insert(name.to_string(), principal);
        Ok(())
    }

    /// Sets (or clears) an injected failure.
    pub fn set_failure(&self, request: &FailRequest) -> Result<Faults, String> {
        let rule = request.rule().map_err(|e| e.to_string())?;
        let mut r = lock(&self.shared.records);
        r.faults.set(request.operation, rule);
        Ok(r.faults.clone())
    }

    pub fn failures(&self) -> Faults {
        lock(&self.shared.records).faults.clone()
    }

    /// Every call so far (the newest [`LOG_MAX`]).
    pub fn calls(&self) -> Vec<CallRecord> {
        lock(&self.shared.records).calls.to_vec()
    }

    /// Every apply that reached the fleet.
    pub fn applies(&self) -> Vec<ApplyRecord> {
        lock(&self.shared.records).applies.to_vec()
    }

    /// Every rollback that reached the fleet.
    pub fn rollbacks(&self) -> Vec<RollbackRecord> {
        lock(&self.shared.records).rollbacks.to_vec()
    }

    pub fn decisions(&self) -> Vec<Decision> {
        lock(&self.shared.records).decisions.to_vec()
    }

    /// Forgets calls, records, keys and failures; keeps the mode, harm and the principals.
    pub fn reset(&self) {
        *lock(&self.shared.records) = Records::default();
    }

    /// What `GET /admin/state` answers.
    pub fn state_view(&self) -> Value {
        let mode = self.mode();
        let principals: Vec<Value> = lock(&self.shared.principals)
            .iter()
            .map(|(name, p)| json!({"name": name, "access_key_id": p.access_key_id, "region": p.region}))
            .collect();
        let r = lock(&self.shared.records);
        let mut instances: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
        for a in r.applies.items.iter().filter(|a| a.status == 200) {
            for id in &a.instances {
                instances
                    .entry(id.clone())
                    .or_default()
                    .0
                    .push(a.idempotency_key.clone());
            }
        }
        for b in r.rollbacks.items.iter().filter(|b| b.status == 200) {
            for id in &b.restored {
                instances
                    .entry(id.clone())
                    .or_default()
                    .1
                    .push(b.idempotency_key.clone());
            }
        }
        let keys: BTreeMap<&String, Value> = r
            .keys
            .iter()
            .map(|(k, v)| {
                (
                    k,
                    json!({
                        "operation": v.operation,
                        "first_seq": v.first_seq,
                        "status": v.answer.as_ref().map(|(s, _)| *s),
                    }),
                )
            })
            .collect();
        json!({
            "mode": mode,
            "harm": self.harm(),
            "fleet": self.shared.fleet.describe(),
            "principals": principals,
            "failures": r.faults,
            "applies": r.applies.to_vec(),
            "rollbacks": r.rollbacks.to_vec(),
            "approvals": r.approvals.to_vec(),
            "statuses": r.statuses.to_vec(),
            "decisions": r.decisions.to_vec(),
            "instances": instances.into_iter().map(|(id, (applied, restored))| {
                (id, json!({"applied": applied, "restored": restored}))
            }).collect::<Map<String, Value>>(),
            "idempotency_keys": keys,
            "dropped": {
                "calls": r.calls.dropped,
                "applies": r.applies.dropped,
                "rollbacks": r.rollbacks.dropped,
            },
        })
    }

    fn next_seq(&self) -> u64 {
        let mut r = lock(&self.shared.records);
        r.next_seq += 1;
        r.next_seq
    }

    fn now_ms(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    /// Whether a connection whose first request is for `op` is to be dropped (recorded if so).
    fn drop_connection(&self, op: Operation) -> bool {
        let mut r = lock(&self.shared.records);
        if !r.faults.take_connection(op) {
            return false;
        }
        r.next_seq += 1;
        let call = CallRecord {
            seq: r.next_seq,
            at_ms: self.shared.clock.now_ms(),
            operation: op,
            idempotency_key: None,
            workflow_id: None,
            status: 0,
            outcome: Outcome::Dropped,
            message: Some("injected: connection dropped".into()),
            request: Value::Null,
        };
        r.calls.push(call);
        true
    }

    /// One contract call, end to end: injected failure, signature, key, idempotency, work.
    async fn handle(&self, op: Operation, headers: &HeaderMap, body: Bytes) -> Response {
        let seq = self.next_seq();
        let at_ms = self.now_ms();
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let key = headers
            .get(IDEMPOTENCY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let workflow_id = request
            .get("workflow_id")
            .and_then(Value::as_str)
            .map(str::to_string);
        let failure = lock(&self.shared.records).faults.take(op);
        let mut delay = None;
        let answer = match failure {
            Some(Failure::Down { .. }) => Answer::error(
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Unavailable",
                    "injected: the orchestrator is down",
                ),
                Outcome::Injected,
            ),
            Some(Failure::Error { status }) => Answer::error(
                ApiError::new(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    "Injected",
                    format!("injected failure ({status})"),
                ),
                Outcome::Injected,
            ),
            Some(Failure::Slow { seconds }) => {
                delay = Some(Duration::from_secs_f64(seconds));
                self.process(op, headers, &body, seq).await
            }
            None => self.process(op, headers, &body, seq).await,
        };
        tracing::info!(
            seq,
            operation = %op,
            key = key.as_deref().unwrap_or(""),
            status = answer.status.as_u16(),
            outcome = ?answer.outcome,
            "orchestrator call"
        );
        lock(&self.shared.records).calls.push(CallRecord {
            seq,
            at_ms,
            operation: op,
            idempotency_key: key,
            workflow_id,
            status: answer.status.as_u16(),
            outcome: answer.outcome,
            message: answer.message.clone(),
            request,
        });
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let mut resp = (answer.status, answer.body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if matches!(failure, Some(Failure::Down { .. })) {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }

    /// Authenticates, de-duplicates by key, and runs the operation.
    async fn process(&self, op: Operation, headers: &HeaderMap, body: &[u8], seq: u64) -> Answer {
        let now_ms = self.now_ms();
        if let Err(e) = self.authenticate(headers, body, now_ms) {
            return Answer::error(e, Outcome::Refused);
        }
        let (key, fields) = match keyed_body(headers, body) {
            Ok(x) => x,
            Err(e) => return Answer::error(e, Outcome::Refused),
        };
        let fingerprint = json!({ "operation": op, "body": fields });
        {
            let mut r = lock(&self.shared.records);
            r.keys
                .retain(|_, k| now_ms.saturating_sub(k.at_ms) <= KEY_RETENTION_MS);
            match r.keys.get(&key) {
                Some(k) if k.fingerprint != fingerprint => {
                    let e = ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "KeyReused",
                        format!(
                            "idempotency key {key:?} was first used (call {}) with a different request",
                            k.first_seq
                        ),
                    );
                    return Answer::error(e, Outcome::Refused);
                }
                Some(KeyRecord {
                    answer: Some((status, bytes)),
                    ..
                }) => {
                    return Answer {
                        status: StatusCode::from_u16(*status).unwrap_or(StatusCode::OK),
                        body: bytes.clone(),
                        outcome: Outcome::Replayed,
                        message: None,
                    }
                }
                Some(_) => {
                    let e = ApiError::new(
                        StatusCode::CONFLICT,
                        "InProgress",
                        format!("a request with idempotency key {key:?} is still being processed; retry later"),
                    );
                    return Answer::error(e, Outcome::InProgress);
                }
                None => {
                    r.keys.insert(
                        key.clone(),
                        KeyRecord {
                            fingerprint,
                            operation: op,
                            first_seq: seq,
                            at_ms: now_ms,
                            answer: None,
                        },
                    );
                }
            }
        }
        let result = match op {
            Operation::Approvals => self.approvals(&key, &fields, seq),
            Operation::Apply => self.apply(&key, &fields, seq).await,
            Operation::Rollback => self.rollback(&key, &fields, seq).await,
            Operation::Status => self.status(&key, &fields, seq),
        };
        let (status, value, outcome, message) = match result {
            Ok((status, v)) => (status, v, Outcome::Executed, None),
            Err(e) => {
                let outcome = if e.status.is_server_error() {
                    Outcome::Failed
                } else {
                    Outcome::Refused
                };
                (e.status, e.body(), outcome, Some(e.message))
            }
        };
        let bytes = Bytes::from(value.to_string());
        {
            let mut r = lock(&self.shared.records);
            if status.is_server_error() {
                // Not kept: the contract has a retry run the request again.
                r.keys.remove(&key);
            } else if let Some(k) = r.keys.get_mut(&key) {
                k.answer = Some((status.as_u16(), bytes.clone()));
            }
        }
        Answer {
            status,
            body: bytes,
            outcome,
            message,
        }
    }

    fn authenticate(&self, headers: &HeaderMap, body: &[u8], now_ms: i64) -> Result<(), ApiError> {
        let unauthorized =
            |error, message: String| ApiError::new(StatusCode::UNAUTHORIZED, error, message);
        let header = headers.get(SIGNATURE_HEADER).ok_or_else(|| {
            unauthorized("MissingSignature", format!("no {SIGNATURE_HEADER} header"))
        })?;
        let header = header
            .to_str()
            .map_err(|_| unauthorized("BadSignature", "the signature header is not text".into()))?;
        match verify(
            &self.shared.secret,
            header,
            body,
            now_ms.div_euclid(1000),
            REPLAY_WINDOW_S,
        ) {
            Ok(_) => Ok(()),
            Err(e @ SignatureError::Stale { .. }) => {
                Err(unauthorized("ExpiredSignature", e.to_string()))
            }
            Err(e) => Err(unauthorized("BadSignature", e.to_string())),
        }
    }

    fn approvals(
        &self,
        key: &str,
        fields: &Map<String, Value>,
        seq: u64,
    ) -> Result<(StatusCode, Value), ApiError> {
        let b: ApprovalBody = parse(Operation::Approvals, fields)?;
        check_url("approve_url", &b.approve_url)?;
        check_url("reject_url", &b.reject_url)?;
        let settings = self.mode();
        lock(&self.shared.records).approvals.push(ApprovalRecord {
            seq,
            idempotency_key: key.to_string(),
            workflow_id: b.workflow_id.to_string(),
            group: b.group.to_string(),
            advisory: b.advisory,
            knob: b.recommendation.knob.clone(),
            changes: b.recommendation.changes.clone(),
            approve_url: b.approve_url.clone(),
            reject_url: b.reject_url.clone(),
            expires_at_ms: b.expires_at_ms,
            mode: settings.mode,
        });
        let action = match settings.mode {
            ApprovalMode::AutoApprove => Some((Action::Approve, b.approve_url)),
            ApprovalMode::AutoReject => Some((Action::Reject, b.reject_url)),
            ApprovalMode::Manual => None,
        };
        if let Some((action, url)) = action {
            let me = self.clone();
            let workflow = b.workflow_id.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(settings.delay_ms)).await;
                me.decide(
                    &workflow,
                    action,
                    &url,
                    &settings.principal,
                    settings.reason.as_deref(),
                )
                .await;
            });
        }
        Ok((StatusCode::ACCEPTED, json!({})))
    }

    /// Sends a decision as `principal` and records it.
    pub async fn decide(
        &self,
        workflow_id: &str,
        action: Action,
        url: &str,
        principal: &str,
        reason: Option<&str>,
    ) -> Decision {
        let creds = if principal == UNSIGNED_PRINCIPAL {
            Ok(None)
        } else {
            lock(&self.shared.principals)
                .get(principal)
                .cloned()
                .map(Some)
                .ok_or_else(|| format!("no principal {principal:?} (see /admin/principals)"))
        };
        let sent = match creds {
            Ok(p) => approver::send(url, p.as_ref(), reason).await,
            Err(e) => approver::Sent {
                attempts: 0,
                result: Err(e),
            },
        };
        let (status, answer, error) = match sent.result {
            Ok((s, a)) => (Some(s), a, None),
            Err(e) => (None, Value::Null, Some(e)),
        };
        let decision = Decision {
            workflow_id: workflow_id.to_string(),
            action,
            url: url.to_string(),
            principal: principal.to_string(),
            attempts: sent.attempts,
            status,
            answer,
            error,
            at_ms: self.now_ms(),
        };
        tracing::info!(
            workflow = workflow_id,
            action = action.as_str(),
            principal,
            status = ?decision.status,
            attempts = decision.attempts,
            "decision sent"
        );
        lock(&self.shared.records).decisions.push(decision.clone());
        decision
    }

    /// Reads the instances and checks what the fleet must do, before changing anything.
    async fn resolve(&self, ids: impl Iterator<Item = &Id>) -> Result<Vec<Resolved>, ApiError> {
        let mut out = Vec::new();
        for id in ids {
            let view = self
                .shared
                .fleet
                .instance(id.as_str())
                .await
                .map_err(fleet_error)?;
            let generation = Generation::parse(view.engine, &view.generation).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "FleetUnavailable",
                    format!("the fleet reported {id} with {e}"),
                )
            })?;
            out.push(Resolved {
                id: id.clone(),
                engine: view.engine,
                generation,
                hardware: view.hardware,
                config: view.config,
            });
        }
        Ok(out)
    }

    /// Sends every planned change; on the first failure puts the changed instances back and
    /// returns the error (5xx if any could not be put back: something may be left changed).
    async fn change_all(
        &self,
        plans: &[Planned],
        startup_failure_is_error: bool,
    ) -> Result<Vec<Changed>, ApiError> {
        let mut done: Vec<Changed> = Vec::new();
        let mut failure = None;
        for p in plans {
            match self
                .shared
                .fleet
                .put_config(p.id.as_str(), &p.sim_changes)
                .await
            {
                Ok(change) => {
                    let up = change.up;
                    done.push(Changed {
                        id: p.id.clone(),
                        engine: p.engine,
                        previous: change.previous,
                        up,
                        startup_error: change.startup_error.clone(),
                    });
                    if !up && startup_failure_is_error {
                        failure = Some(ApiError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "StartupFailed",
                            format!(
                                "{} does not start with the new config: {}",
                                p.id,
                                change.startup_error.unwrap_or_default()
                            ),
                        ));
                        break;
                    }
                }
                Err(e) => {
                    failure = Some(fleet_error(e));
                    break;
                }
            }
        }
        let Some(mut err) = failure else {
            return Ok(done);
        };
        let mut unrestored = Vec::new();
        for c in done.iter().rev() {
            if let Err(e) = self
                .shared
                .fleet
                .put_config(c.id.as_str(), &sim_values(&c.previous))
                .await
            {
                unrestored.push(format!("{}: {e}", c.id));
            }
        }
        if unrestored.is_empty() {
            if !done.is_empty() {
                err.message
                    .push_str("; every changed instance is back on its previous config");
            }
        } else {
            err = ApiError::new(
                StatusCode::BAD_GATEWAY,
                "PartiallyApplied",
                format!(
                    "{}; could not put back [{}]",
                    err.message,
                    unrestored.join("; ")
                ),
            );
        }
        Err(err)
    }

    async fn apply(
        &self,
        key: &str,
        fields: &Map<String, Value>,
        seq: u64,
    ) -> Result<(StatusCode, Value), ApiError> {
        let b: ApplyBody = parse(Operation::Apply, fields)?;
        if b.instances.is_empty() {
            return Err(ApiError::bad_request(
                "instances must list at least one instance",
            ));
        }
        let unique: BTreeSet<&Id> = b.instances.iter().collect();
        if unique.len() != b.instances.len() {
            return Err(ApiError::bad_request("instances lists an instance twice"));
        }
        let _one_at_a_time = self.shared.work.lock().await;
        let harm = self.harm();
        let resolved = self.resolve(b.instances.iter()).await?;
        let mut plans = Vec::new();
        for r in &resolved {
            let mut t = translate(r.target(), &b.changes, &r.config)
                .map_err(|e| translate_error(r.id.as_str(), r.engine, e))?;
            if harm {
                // The new config hits a slow kernel here. `previous` still comes from the
                // fleet's config before, so a rollback with it turns the switch off again.
                t.sim_changes
                    .insert(SimKey::Harmful.as_str().to_string(), Value::Bool(true));
            }
            plans.push(Planned {
                id: r.id.clone(),
                engine: r.engine,
                sim_changes: t.sim_changes,
            });
        }
        let result = self.change_all(&plans, true).await;
        let mut record = ApplyRecord {
            seq,
            idempotency_key: key.to_string(),
            workflow_id: b.workflow_id.to_string(),
            group: b.group.to_string(),
            stage: b.stage,
            step: b.step,
            instances: b.instances.iter().map(Id::to_string).collect(),
            changes: b.changes.clone(),
            translated: plans
                .iter()
                .map(|p| (p.id.to_string(), p.sim_changes.clone()))
                .collect(),
            harm,
            previous: BTreeMap::new(),
            status: 200,
            error: None,
        };
        match result {
            Ok(changed) => {
                record.previous = changed
                    .iter()
                    .map(|c| (c.id.to_string(), native_config(c.engine, &c.previous)))
                    .collect();
                let answer = json!({ "previous": record.previous });
                lock(&self.shared.records).applies.push(record);
                Ok((StatusCode::OK, answer))
            }
            Err(e) => {
                record.status = e.status.as_u16();
                record.error = Some(e.message.clone());
                lock(&self.shared.records).applies.push(record);
                Err(e)
            }
        }
    }

    async fn rollback(
        &self,
        key: &str,
        fields: &Map<String, Value>,
        seq: u64,
    ) -> Result<(StatusCode, Value), ApiError> {
        let b: RollbackBody = parse(Operation::Rollback, fields)?;
        let _one_at_a_time = self.shared.work.lock().await;
        let resolved = self.resolve(b.configs.keys()).await?;
        let mut plans = Vec::new();
        for r in &resolved {
            let config = b.configs.get(&r.id).cloned().unwrap_or_default();
            let t = translate_whole(r.target(), &config)
                .map_err(|e| translate_error(r.id.as_str(), r.engine, e))?;
            plans.push(Planned {
                id: r.id.clone(),
                engine: r.engine,
                sim_changes: sim_values(&t.next),
            });
        }
        // Putting back what ran before is the point, even if it did not start then either.
        let result = self.change_all(&plans, false).await;
        let mut record = RollbackRecord {
            seq,
            idempotency_key: key.to_string(),
            workflow_id: b.workflow_id.to_string(),
            group: b.group.to_string(),
            reason: b.reason.clone(),
            configs: b
                .configs
                .iter()
                .map(|(id, c)| (id.to_string(), c.clone()))
                .collect(),
            restored: Vec::new(),
            down: Vec::new(),
            status: 200,
            error: None,
        };
        match result {
            Ok(changed) => {
                record.restored = changed.iter().map(|c| c.id.to_string()).collect();
                record.down = changed
                    .iter()
                    .filter(|c| !c.up)
                    .map(|c| format!("{}: {}", c.id, c.startup_error.clone().unwrap_or_default()))
                    .collect();
                let answer = json!({ "restored": record.restored });
                lock(&self.shared.records).rollbacks.push(record);
                Ok((StatusCode::OK, answer))
            }
            Err(e) => {
                record.status = e.status.as_u16();
                record.error = Some(e.message.clone());
                lock(&self.shared.records).rollbacks.push(record);
                Err(e)
            }
        }
    }

    fn status(
        &self,
        key: &str,
        fields: &Map<String, Value>,
        seq: u64,
    ) -> Result<(StatusCode, Value), ApiError> {
        let b: StatusBody = parse(Operation::Status, fields)?;
        lock(&self.shared.records).statuses.push(StatusRecord {
            seq,
            idempotency_key: key.to_string(),
            workflow_id: b.workflow_id.to_string(),
            group: b.group.to_string(),
            state: b.state,
            stage: b.stage,
            step: b.step,
            message: b.message,
            at_ms: b.at_ms,
        });
        Ok((StatusCode::ACCEPTED, json!({})))
    }

    /// The last approval notification recorded for a workflow.
    fn approval_of(&self, workflow_id: &str) -> Option<ApprovalRecord> {
        lock(&self.shared.records)
            .approvals
            .items
            .iter()
            .rev()
            .find(|a| a.workflow_id == workflow_id)
            .cloned()
    }
}

/// The `Idempotency-Key` header and the body's fields, checked against each other.
fn keyed_body(headers: &HeaderMap, body: &[u8]) -> Result<(String, Map<String, Value>), ApiError> {
    let key = headers
        .get(IDEMPOTENCY_HEADER)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "MissingIdempotencyKey",
                format!("no {IDEMPOTENCY_HEADER} header"),
            )
        })?
        .to_str()
        .ok()
        .map(str::to_string)
        .filter(|k| !k.trim().is_empty() && k.len() <= IDEMPOTENCY_KEY_MAX)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "BadIdempotencyKey",
                format!(
                    "{IDEMPOTENCY_HEADER} must be 1 to {IDEMPOTENCY_KEY_MAX} characters of text"
                ),
            )
        })?;
    let fields = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m,
        _ => return Err(ApiError::bad_request("the body is not a JSON object")),
    };
    if fields.get("idempotency_key").and_then(Value::as_str) != Some(key.as_str()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "KeyMismatch",
            format!("the body's idempotency_key differs from the {IDEMPOTENCY_HEADER} header"),
        ));
    }
    Ok((key, fields))
}

/// The orchestrator's routes: the contract's four operations and the admin API.
pub fn router(state: OrchestratorState) -> Router {
    Router::new()
        .route("/v1/approvals", post(notify_approval))
        .route("/v1/configs/apply", post(apply_config))
        .route("/v1/configs/rollback", post(rollback_config))
        .route("/v1/status", post(report_status))
        .route("/admin/health", get(health))
        .route("/admin/calls", get(calls))
        .route("/admin/state", get(state_view))
        .route("/admin/mode", get(get_mode).put(put_mode))
        .route("/admin/harm", get(get_harm).put(put_harm))
        .route("/admin/fail", get(get_fail).put(put_fail))
        .route("/admin/principals", get(principals))
        .route("/admin/principals/{name}", put(put_principal))
        .route(
            "/admin/approvals/{workflow_id}/{action}",
            post(admin_decide),
        )
        .route("/admin/reset", post(reset))
        .with_state(state)
}

async fn notify_approval(
    State(s): State<OrchestratorState>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    s.handle(Operation::Approvals, &h, body).await
}

async fn apply_config(State(s): State<OrchestratorState>, h: HeaderMap, body: Bytes) -> Response {
    s.handle(Operation::Apply, &h, body).await
}

async fn rollback_config(
    State(s): State<OrchestratorState>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    s.handle(Operation::Rollback, &h, body).await
}

async fn report_status(State(s): State<OrchestratorState>, h: HeaderMap, body: Bytes) -> Response {
    s.handle(Operation::Status, &h, body).await
}

async fn health(State(s): State<OrchestratorState>) -> Response {
    Json(json!({
        "status": "ok",
        "mode": s.mode().mode,
        "fleet": s.shared.fleet.describe(),
    }))
    .into_response()
}

async fn calls(State(s): State<OrchestratorState>) -> Response {
    Json(s.calls()).into_response()
}

async fn state_view(State(s): State<OrchestratorState>) -> Response {
    Json(s.state_view()).into_response()
}

async fn get_mode(State(s): State<OrchestratorState>) -> Response {
    Json(s.mode()).into_response()
}

async fn put_mode(State(s): State<OrchestratorState>, body: Bytes) -> Result<Response, ApiError> {
    let mode: ModeSettings =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("mode: {e}")))?;
    s.set_mode(mode).map_err(ApiError::bad_request)?;
    Ok(Json(s.mode()).into_response())
}

/// The body of `PUT /admin/harm` and the answer of both harm routes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HarmBody {
    enabled: bool,
}

async fn get_harm(State(s): State<OrchestratorState>) -> Response {
    Json(HarmBody { enabled: s.harm() }).into_response()
}

async fn put_harm(State(s): State<OrchestratorState>, body: Bytes) -> Result<Response, ApiError> {
    let b: HarmBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("harm: {e}")))?;
    s.set_harm(b.enabled);
    Ok(Json(HarmBody { enabled: s.harm() }).into_response())
}

async fn get_fail(State(s): State<OrchestratorState>) -> Response {
    Json(s.failures()).into_response()
}

async fn put_fail(State(s): State<OrchestratorState>, body: Bytes) -> Result<Response, ApiError> {
    let req: FailRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("fail: {e}")))?;
    let faults = s.set_failure(&req).map_err(ApiError::bad_request)?;
    Ok(Json(faults).into_response())
}

async fn principals(State(s): State<OrchestratorState>) -> Response {
    let list: Vec<Value> = lock(&s.shared.principals)
        .iter()
        .map(
            |(name, p)| json!({"name": name, "access_key_id": p.access_key_id, "region": p.region}),
        )
        .collect();
    Json(list).into_response()
}

async fn put_principal(
    State(s): State<OrchestratorState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p: Principal = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("principal: {e}")))?;
    let akid = p.access_key_id.clone();
    s.set_principal(&name, p).map_err(ApiError::bad_request)?;
    Ok(Json(json!({"name": name, "access_key_id": akid})).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    principal: Option<String>,
    reason: Option<String>,
}

async fn admin_decide(
    State(s): State<OrchestratorState>,
    Path((workflow_id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let action = match action.as_str() {
        "approve" => Action::Approve,
        "reject" => Action::Reject,
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("unknown action {other:?}: approve or reject"),
            ))
        }
    };
    let b: DecideBody = if body.is_empty() {
        DecideBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("decision: {e}")))?
    };
    let approval = s.approval_of(&workflow_id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no approval notification for workflow {workflow_id}"),
        )
    })?;
    let url = match action {
        Action::Approve => approval.approve_url,
        Action::Reject => approval.reject_url,
    };
    let mode = s.mode();
    let principal = b.principal.unwrap_or(mode.principal);
    let reason = b.reason.or(mode.reason);
    let decision = s
        .decide(&workflow_id, action, &url, &principal, reason.as_deref())
        .await;
    Ok(Json(decision).into_response())
}

async fn reset(State(s): State<OrchestratorState>) -> Response {
    s.reset();
    Json(json!({"reset": true})).into_response()
}

/// Serves the orchestrator on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: OrchestratorState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone());
    axum::serve(OrchestratorListener::new(listener, state), app)
        .with_graceful_shutdown(shutdown)
        .await
}
