//! The end-to-end harness: the deployed local stack (read from `.local/stack.env`, written by
//! `local/up.sh`), a signed client of its API Gateway, direct Lambda invokes, and a fleet simulator
//! started inside the test process on a free port.
//!
//! These tests need the stack: `make test` brings it up first; by hand, run `make up` once.

pub mod runtime_api;

use anyhow::{bail, Context, Result};
use aws_credential_types::Credentials;
use perfagent::client::ApiClient;
use perfagent_sim::fleet::{Fault, Fleet, FleetSpec, Scenario};
use perfagent_sim::orchestrator::approver::{ApprovalMode, ModeSettings, Principal};
use perfagent_sim::orchestrator::fleet_admin::LocalFleet;
use perfagent_sim::orchestrator::{serve, OrchestratorState, Settings};
use perfagent_sim::server::{router, run_clock, AppState};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// An RFC 3339 UTC time (`2026-11-27T23:40:00Z`), as EventBridge writes a scheduled event's `time`.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn now_ms() -> i64 {
    perfagent::clock::now_ms()
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The deployed stack's outputs and clients.
pub struct Stack {
    pub vars: HashMap<String, String>,
    /// Signed as the emulator's root identity: may call every route, is not an approver.
    pub api: ApiClient,
    /// Signed as the local approver (`APPROVER_PRINCIPALS`), when the deploy created one.
    pub approver_api: Option<ApiClient>,
    pub unsigned_api: ApiClient,
    pub lambda: aws_sdk_lambda::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl Stack {
    pub async fn connect() -> Result<Stack> {
        let path = std::env::var("PERFAGENT_STACK_ENV")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo_root().join(".local/stack.env"));
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} is missing: the local stack is not up (run `make up`, or `make test` which starts it)",
                path.display()
            )
        })?;
        let vars: HashMap<String, String> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| {
                (
                    k.trim().trim_start_matches("export ").to_string(),
                    v.trim().trim_matches('"').trim_matches('\'').to_string(),
                )
            })
            .collect();
        for k in [
            "API_URL",
            "TABLE_NAME",
            "COLLECTOR_FUNCTION_NAME",
            "AWS_ENDPOINT_URL",
        ] {
            if !vars.contains_key(k) {
                bail!("{} has no {k}", path.display());
            }
        }
        let region = vars
            .get("AWS_REGION")
            .cloned()
            .unwrap_or_else(|| "us-east-1".into());
        let key = vars
            .get("AWS_ACCESS_KEY_ID")
            .cloned()
            .unwrap_or_else(|| "test".into());
        let secret = vars
            .get("AWS_SECRET_ACCESS_KEY")
            .cloned()
            .unwrap_or_else(|| "test".into());
        let creds = Credentials::new(key, secret, None, None, "stack.env");
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&vars["AWS_ENDPOINT_URL"])
            .region(aws_config::Region::new(region.clone()))
            .credentials_provider(creds.clone())
            .load()
            .await;
        let approver_api = match (
            vars.get("APPROVER_ACCESS_KEY_ID"),
            vars.get("APPROVER_SECRET_ACCESS_KEY"),
        ) {
            (Some(k), Some(s)) => Some(ApiClient::new(
                &vars["API_URL"],
                Some(Credentials::new(k, s, None, None, "stack.env")),
                region.clone(),
            )?),
            _ => None,
        };
        Ok(Stack {
            api: ApiClient::new(&vars["API_URL"], Some(creds), region.clone())?,
            approver_api,
            unsigned_api: ApiClient::new(&vars["API_URL"], None, region)?,
            lambda: aws_sdk_lambda::Client::new(&sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            vars,
        })
    }

    pub fn var(&self, k: &str) -> &str {
        self.vars.get(k).map(String::as_str).unwrap_or("")
    }

    /// Invokes a deployed function synchronously; a function error is an `Err` with its type and message.
    pub async fn invoke(&self, function: &str, payload: &Value) -> Result<Value> {
        let out = self
            .lambda
            .invoke()
            .function_name(function)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
            .send()
            .await
            .with_context(|| format!("invoking {function}"))?;
        let body = out
            .payload
            .map(|b| String::from_utf8_lossy(b.as_ref()).to_string())
            .unwrap_or_default();
        if let Some(err) = out.function_error {
            bail!("{function} failed ({err}): {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("{function} returned {body:?}"))
    }

    pub async fn invoke_collector(&self, payload: &Value) -> Result<Value> {
        self.invoke(self.var("COLLECTOR_FUNCTION_NAME"), payload)
            .await
    }

    /// Runs the deployed analyzer now (as its schedule would).
    pub async fn invoke_analyzer(&self) -> Result<Value> {
        if self.var("ANALYZER_FUNCTION_NAME").is_empty() {
            bail!("the stack has no ANALYZER_FUNCTION_NAME output");
        }
        self.invoke(self.var("ANALYZER_FUNCTION_NAME"), &serde_json::json!({}))
            .await
    }

    /// Registers an instance through the signed API; anything but 201 is an error.
    pub async fn register(
        &self,
        id: &str,
        engine: &str,
        group: &str,
        metrics_url: &str,
        model: Option<&str>,
    ) -> Result<()> {
        let (status, body) = self
            .api
            .call(
                http::Method::POST,
                "/api/v1/instances",
                Some(
                    &serde_json::json!({"id": id, "engine": engine, "group": group,
                                         "metrics_url": metrics_url, "model": model}),
                ),
            )
            .await?;
        if status != http::StatusCode::CREATED {
            bail!("registering {id}: {status} {body}");
        }
        Ok(())
    }

    /// Registers every instance of the simulated fleet, with the model it serves.
    pub async fn register_fleet(&self, sim: &Sim) -> Result<()> {
        for (id, engine, group, model) in sim.instances() {
            self.register(&id, &engine, &group, &sim.metrics_url(&id), Some(&model))
                .await?;
        }
        Ok(())
    }

    /// Removes every registered instance, so a test or the demo starts from an empty registry.
    pub async fn clear_registry(&self) -> Result<()> {
        let (_, list) = self
            .api
            .call(http::Method::GET, "/api/v1/instances", None)
            .await?;
        for i in list["instances"].as_array().cloned().unwrap_or_default() {
            let id = i["id"].as_str().unwrap_or_default();
            self.api
                .call(
                    http::Method::DELETE,
                    &format!("/api/v1/instances/{id}"),
                    None,
                )
                .await?;
        }
        Ok(())
    }
}

/// Workflow states after which nothing changes.
pub const TERMINAL: [&str; 5] = ["COMPLETED", "REJECTED", "EXPIRED", "FAILED", "ROLLED_BACK"];

impl Stack {
    /// The approver's signed client; an error when the deploy made none.
    pub fn approver(&self) -> Result<&ApiClient> {
        self.approver_api
            .as_ref()
            .context("stack.env has no APPROVER_ACCESS_KEY_ID: redeploy with local/up.sh")
    }

    /// Collects `ticks` scheduled passes 30 s apart with `group` under a load spike of `factor`,
    /// runs the analyzer, and returns the group's stored recommendations (newest analysis).
    pub async fn spike_and_recommend(
        &self,
        sim: &Sim,
        group: &str,
        factor: f64,
        ticks: i64,
    ) -> Result<Vec<Value>> {
        let start = now_ms() - ticks * 30_000;
        sim.scenario(&format!(
            r#"{{"name":"load_spike","group":"{group}","factor":{factor}}}"#
        ))?;
        for i in 0..ticks {
            self.invoke_collector(
                &serde_json::json!({"time": rfc3339(start + i * 30_000), "passes": 1}),
            )
            .await?;
            sim.advance(30.0);
        }
        self.invoke_analyzer().await?;
        let (status, r) = self
            .api
            .call(
                http::Method::GET,
                &format!("/api/v1/recommendations?group={group}"),
                None,
            )
            .await?;
        if status != http::StatusCode::OK {
            bail!("listing recommendations: {status} {r}");
        }
        Ok(r["recommendations"].as_array().cloned().unwrap_or_default())
    }

    /// `GET /api/v1/workflows/{id}`.
    pub async fn workflow(&self, id: &str) -> Result<Value> {
        let (status, w) = self
            .api
            .call(http::Method::GET, &format!("/api/v1/workflows/{id}"), None)
            .await?;
        if status != http::StatusCode::OK {
            bail!("GET workflow {id}: {status} {w}");
        }
        Ok(w)
    }

    /// Polls the workflow until `done(workflow)` or `timeout`; returns the last read.
    pub async fn wait_workflow(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let w = self.workflow(id).await?;
            if done(&w) {
                return Ok(w);
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "workflow {id} still {} ({}/{}) after {timeout:?}: {w}",
                    w["state"],
                    w["stage"],
                    w["step"]
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits for the workflow to end in any terminal state.
    pub async fn wait_ended(&self, id: &str, timeout: Duration) -> Result<Value> {
        self.wait_workflow(id, timeout, |w| {
            TERMINAL.contains(&w["state"].as_str().unwrap_or(""))
        })
        .await
    }

    /// Rejects every workflow still waiting for approval and waits for the running ones, so a
    /// test starts with every group free.
    pub async fn settle_workflows(&self) -> Result<()> {
        let (_, list) = self
            .api
            .call(http::Method::GET, "/api/v1/workflows", None)
            .await?;
        for w in list["workflows"].as_array().cloned().unwrap_or_default() {
            let id = w["id"].as_str().unwrap_or_default().to_string();
            match w["state"].as_str().unwrap_or("") {
                "PENDING_APPROVAL" => {
                    self.approver()?
                        .call(
                            http::Method::POST,
                            &format!("/api/v1/workflows/{id}/reject"),
                            Some(&serde_json::json!({"reason": "test clean-up"})),
                        )
                        .await?;
                    self.wait_ended(&id, Duration::from_secs(60)).await?;
                }
                "APPROVED" | "IN_PROGRESS" => {
                    self.wait_ended(&id, Duration::from_secs(300)).await?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The first recommendation the simulated orchestrator can apply without re-quantizing weights.
pub fn pick_recommendation(recs: &[Value]) -> Option<Value> {
    recs.iter()
        .find(|r| {
            r["recommendation"]["optimizer"] != "quantization"
                && r["recommendation"]["changes"]
                    .as_object()
                    .is_some_and(|c| !c.is_empty())
        })
        .cloned()
}

/// The verdicts of a workflow's judgements, in order (`PASS`, `FAIL`, `INCONCLUSIVE`).
pub fn verdicts(workflow: &Value) -> Vec<String> {
    workflow["verdicts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v["report"]["verdict"].as_str().map(String::from))
        .collect()
}

impl Stack {
    /// `POST /api/v1/workflows` for a stored recommendation: the answer's status and body.
    pub async fn start_workflow(
        &self,
        recommendation_id: &str,
        params: &Value,
    ) -> Result<(http::StatusCode, Value)> {
        Ok(self
            .api
            .call(
                http::Method::POST,
                "/api/v1/workflows",
                Some(
                    &serde_json::json!({"recommendation_id": recommendation_id, "params": params}),
                ),
            )
            .await?)
    }

    /// Approves as the approver, waiting while the approval task is still storing its token
    /// (409 `not_ready`).
    pub async fn approve_when_ready(&self, id: &str) -> Result<(http::StatusCode, Value)> {
        let path = format!("/api/v1/workflows/{id}/approve");
        for _ in 0..60 {
            let (status, body) = self
                .approver()?
                .call(http::Method::POST, &path, None)
                .await?;
            if status != http::StatusCode::CONFLICT || body["code"] != "not_ready" {
                return Ok((status, body));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!("the approval task of {id} never became ready")
    }
}

/// The simulated orchestrator (`local/sim`), serving in the test process at the stack's
/// `ORCHESTRATOR_URL`, in front of the test's fleet simulator; it signs its approvals as the
/// local approver. Stopped when dropped.
pub struct Orchestrator {
    pub state: OrchestratorState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Orchestrator {
    pub async fn start(stack: &Stack, sim: &Sim, mode: ApprovalMode) -> Result<Orchestrator> {
        let url = stack.var("ORCHESTRATOR_URL");
        let addr = url
            .strip_prefix("http://")
            .context("ORCHESTRATOR_URL must be http://127.0.0.1:<port>")?
            .trim_end_matches('/')
            .to_string();
        let mut settings = Settings::new(stack.var("ORCHESTRATOR_SECRET").as_bytes().to_vec());
        settings.principals.insert(
            "approver".into(),
            Principal {
                access_key_id: stack.var("APPROVER_ACCESS_KEY_ID").into(),
                secret_access_key: stack.var("APPROVER_SECRET_ACCESS_KEY").into(),
                session_token: None,
                region: Some(stack.var("AWS_REGION").into()),
            },
        );
        settings.mode = ModeSettings {
            principal: "approver".into(),
            ..ModeSettings::new(mode)
        };
        let state = OrchestratorState::new(settings, Arc::new(LocalFleet::new(sim.state.clone())))
            .map_err(|e| anyhow::anyhow!("orchestrator: {e}"))?;
        // The previous test's orchestrator may still be letting go of the port.
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(&addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e).with_context(|| format!("binding {addr}")),
            }
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = state.clone();
        let task = tokio::spawn(async move {
            let _ = serve(listener, serving, async {
                let _ = stopped.await;
            })
            .await;
        });
        Ok(Orchestrator {
            state,
            stop: Some(stop),
            task,
        })
    }
}

impl Drop for Orchestrator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

/// Simulated time running at `speed` × the wall clock while it lives (workflows bake on the
/// emulator's scaled waits, so the fleet must move on its own).
pub struct Clock(tokio::task::JoinHandle<()>);

impl Drop for Clock {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A fleet simulator serving inside the test process; the deployed functions scrape it over loopback.
pub struct Sim {
    pub state: AppState,
    pub base_url: String,
}

impl Sim {
    /// Starts the default fleet (`local/fleet.json`) on a free port, its clock driven by the test.
    pub async fn start() -> Result<Sim> {
        let path = repo_root().join("local/fleet.json");
        let spec = FleetSpec::from_json(&std::fs::read(&path)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs_f64();
        let fleet = Fleet::from_spec(&spec, spec.seed.unwrap_or(42), now)
            .map_err(|e| anyhow::anyhow!("fleet: {e}"))?;
        let state = AppState::new(fleet);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = router(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Sim {
            state,
            base_url: format!("http://{addr}"),
        })
    }

    pub fn metrics_url(&self, id: &str) -> String {
        format!("{}/instances/{id}/metrics", self.base_url)
    }

    /// The simulated instances: (id, engine, group, model).
    pub fn instances(&self) -> Vec<(String, String, String, String)> {
        self.state
            .lock()
            .views()
            .into_iter()
            .map(|v| {
                let engine = serde_json::to_value(v.engine)
                    .ok()
                    .and_then(|e| e.as_str().map(String::from))
                    .unwrap_or_default();
                (v.id, engine, v.group, v.model)
            })
            .collect()
    }

    /// Runs the simulator's clock at `speed` simulated seconds per wall second until the guard drops.
    pub fn run_clock(&self, speed: f64) -> Clock {
        Clock(tokio::spawn(run_clock(
            self.state.clone(),
            Duration::from_millis(50),
            speed,
        )))
    }

    /// Every instance of `group` with its current config.
    pub fn group_configs(&self, group: &str) -> Result<std::collections::BTreeMap<String, Value>> {
        self.instances()
            .into_iter()
            .filter(|(_, _, g, _)| g == group)
            .map(|(id, ..)| Ok((id.clone(), self.config(&id)?)))
            .collect()
    }

    /// The instance's current config as the simulator runs it.
    pub fn config(&self, id: &str) -> Result<Value> {
        let view = self
            .state
            .lock()
            .views()
            .into_iter()
            .find(|v| v.id == id)
            .with_context(|| format!("no simulated instance {id}"))?;
        Ok(serde_json::to_value(view.config)?)
    }

    pub fn advance(&self, seconds: f64) {
        self.state.lock().advance(seconds);
    }

    /// Runs a simulator scenario (`{"name":"load_spike","group":"chat-prod","factor":4}` …).
    pub fn scenario(&self, json: &str) -> Result<Vec<String>> {
        let s = Scenario::from_json(json.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let r = self
            .state
            .lock()
            .scenario(&s)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(r.affected)
    }

    pub fn set_fault(&self, id: &str, fault_json: &str) -> Result<()> {
        let fault = Fault::from_json(fault_json.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
        self.state
            .lock()
            .set_fault(id, fault)
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}
