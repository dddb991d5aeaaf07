//! The fleet the simulated orchestrator redeploys: a port with two adapters, the fleet
//! simulator's HTTP admin API (separate processes) and its in-process [`AppState`] (tests that
//! embed both simulators).

use crate::config::{ConfigPatch, EngineConfig};
use crate::fleet::{FleetError, InstanceView};
use crate::server::AppState;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::time::Duration;

/// Timeout of one call to the fleet simulator's admin API.
pub const FLEET_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FleetCallError {
    #[error("the fleet has no instance {0}")]
    NotFound(String),
    #[error("the fleet refused the config: {0}")]
    Invalid(String),
    #[error("the fleet simulator is unavailable: {0}")]
    Unavailable(String),
}

/// What a config change did, as `PUT /admin/instances/{id}/config` answers it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ConfigChange {
    pub previous: EngineConfig,
    pub current: EngineConfig,
    /// False when the server cannot start with the new config (`startup_error` says why).
    pub up: bool,
    pub startup_error: Option<String>,
}

/// What the orchestrator needs from the fleet. Every change restarts the instance, as a
/// redeploy does.
#[async_trait]
pub trait FleetAdmin: Send + Sync {
    async fn instance(&self, id: &str) -> Result<InstanceView, FleetCallError>;
    /// Sets the simulator keys in `changes` (the admin API's partial-config body: absent keys
    /// are kept, `null` clears `max_concurrent_requests`).
    async fn put_config(
        &self,
        id: &str,
        changes: &Map<String, Value>,
    ) -> Result<ConfigChange, FleetCallError>;
    /// Where the fleet is, for the health answer.
    fn describe(&self) -> String;
}

/// The fleet simulator in the same process.
#[derive(Clone)]
pub struct LocalFleet {
    state: AppState,
}

impl LocalFleet {
    pub fn new(state: AppState) -> LocalFleet {
        LocalFleet { state }
    }
}

fn from_fleet(e: FleetError) -> FleetCallError {
    match e {
        FleetError::NotFound(id) => FleetCallError::NotFound(id),
        other => FleetCallError::Invalid(other.to_string()),
    }
}

#[async_trait]
impl FleetAdmin for LocalFleet {
    async fn instance(&self, id: &str) -> Result<InstanceView, FleetCallError> {
        self.state.lock().view(id).map_err(from_fleet)
    }

    async fn put_config(
        &self,
        id: &str,
        changes: &Map<String, Value>,
    ) -> Result<ConfigChange, FleetCallError> {
        let bytes =
            serde_json::to_vec(changes).map_err(|e| FleetCallError::Invalid(e.to_string()))?;
        let patch =
            ConfigPatch::from_json(&bytes).map_err(|e| FleetCallError::Invalid(e.to_string()))?;
        let mut fleet = self.state.lock();
        let previous = fleet.put_config(id, &patch, true).map_err(from_fleet)?;
        let view = fleet.view(id).map_err(from_fleet)?;
        Ok(ConfigChange {
            previous,
            current: view.config,
            up: view.state.up,
            startup_error: view.state.startup_error,
        })
    }

    fn describe(&self) -> String {
        "in-process".to_string()
    }
}

/// The fleet simulator's admin API over HTTP.
#[derive(Clone)]
pub struct HttpFleet {
    client: reqwest::Client,
    base: String,
}

impl HttpFleet {
    /// `base_url`: e.g. `http://127.0.0.1:9100` (the admin paths are appended).
    pub fn new(base_url: &str) -> Result<HttpFleet, FleetCallError> {
        let url = reqwest::Url::parse(base_url)
            .map_err(|e| FleetCallError::Unavailable(format!("fleet URL {base_url:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FleetCallError::Unavailable(format!(
                "fleet URL {base_url:?} is not http(s)"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(FLEET_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| FleetCallError::Unavailable(e.to_string()))?;
        Ok(HttpFleet {
            client,
            base: base_url.trim_end_matches('/').to_string(),
        })
    }

    /// Reads an answer: the body on 2xx, the fleet's `{"error"}` message otherwise.
    async fn answer<T: serde::de::DeserializeOwned>(
        id: &str,
        resp: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T, FleetCallError> {
        let resp = resp.map_err(|e| FleetCallError::Unavailable(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| FleetCallError::Unavailable(e.to_string()))?;
        let message = || {
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned())
        };
        match status {
            200..=299 => serde_json::from_slice(&body).map_err(|e| {
                FleetCallError::Unavailable(format!("unexpected answer about {id}: {e}"))
            }),
            404 => Err(FleetCallError::NotFound(id.to_string())),
            400..=499 => Err(FleetCallError::Invalid(message())),
            _ => Err(FleetCallError::Unavailable(format!(
                "HTTP {status}: {}",
                message()
            ))),
        }
    }
}

#[async_trait]
impl FleetAdmin for HttpFleet {
    async fn instance(&self, id: &str) -> Result<InstanceView, FleetCallError> {
        let url = format!("{}/admin/instances/{id}", self.base);
        Self::answer(id, self.client.get(url).send().await).await
    }

    async fn put_config(
        &self,
        id: &str,
        changes: &Map<String, Value>,
    ) -> Result<ConfigChange, FleetCallError> {
        let url = format!("{}/admin/instances/{id}/config?restart=true", self.base);
        Self::answer(id, self.client.put(url).json(changes).send().await).await
    }

    fn describe(&self) -> String {
        self.base.clone()
    }
}
