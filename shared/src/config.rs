//! Configuration read from the environment in one place, reporting every missing or malformed
//! variable at once (a function that dies on the first one makes the operator redeploy per typo).
//!
//! Local and cloud differ only by these variables (and `AWS_ENDPOINT_URL`), never by code branches.

use crate::api::Cors;
use crate::breaker::BreakerPolicy;
use crate::collect::{CollectorConfig, DEFAULT_SNAPSHOT_TTL_HOURS};
use crate::netguard::NetGuard;
use crate::orchestrator::{OrchestratorConfig, DEFAULT_TIMEOUT};
use crate::scrape::ScrapeConfig;
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

/// Everything the functions read, with defaults that match the template's parameters.
#[derive(Debug, Clone)]
pub struct Config {
    pub table_name: String,
    pub service_name: String,
    pub guard: NetGuard,
    pub scrape: ScrapeConfig,
    pub collector: CollectorConfig,
    pub collection_interval_seconds: u64,
    pub shard_size: usize,
    /// How far back the analyzer's bottleneck rules look.
    pub analysis_window_minutes: i64,
    pub collector_function_name: Option<String>,
    pub state_machine_arn: Option<String>,
    pub approver_principals: Vec<String>,
    /// `CORS_ALLOWED_ORIGINS`: the browser origins the API answers (`*` for any); empty = CORS off.
    pub cors: Cors,
    /// `ORCHESTRATOR_URL` and `ORCHESTRATOR_SECRET` (the HMAC secret, never logged), with
    /// `ORCHESTRATOR_TIMEOUT_MS`; both or neither.
    pub orchestrator: Option<OrchestratorConfig>,
    /// `API_BASE_URL`: this API's base URL, for the approve/reject links the orchestrator gets.
    pub api_base_url: Option<String>,
    /// `APPROVAL_TIMEOUT_SECONDS`: the state machine's approval wait (the template passes the
    /// same parameter to both), each new workflow's default `approval_timeout_s`.
    pub approval_timeout_s: u64,
}

/// What the workflow's stage function cannot run without.
#[derive(Debug, Clone)]
pub struct StageSettings {
    pub orchestrator: OrchestratorConfig,
    pub api_base_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration is invalid: {}", .0.join("; "))]
pub struct ConfigError(pub Vec<String>);

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_map(&std::env::vars().collect())
    }

    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let get = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let mut num = |k: &str, default: u64, min: u64, max: u64| -> u64 {
            match get(k) {
                None => default,
                Some(v) => match u64::from_str(v) {
                    Ok(n) if (min..=max).contains(&n) => n,
                    _ => {
                        problems.push(format!(
                            "{k}={v:?} must be a whole number from {min} to {max}"
                        ));
                        default
                    }
                },
            }
        };
        let timeout_ms = num("SCRAPE_TIMEOUT_MS", 5_000, 100, 60_000);
        let max_bytes = num("SCRAPE_MAX_BYTES", 8 * 1024 * 1024, 1024, 256 * 1024 * 1024);
        let retries = num("SCRAPE_RETRIES", 2, 0, 10);
        let concurrency = num("SCRAPE_CONCURRENCY", 64, 1, 4096);
        let interval = num("COLLECTION_INTERVAL_SECONDS", 30, 10, 3600);
        let shard_size = num("SHARD_SIZE", 500, 1, 100_000);
        let analysis_window = num(
            "ANALYSIS_WINDOW_MINUTES",
            crate::analyzer::DEFAULT_WINDOW_MINUTES as u64,
            1,
            24 * 60,
        );
        let ttl = num(
            "SNAPSHOT_TTL_HOURS",
            DEFAULT_SNAPSHOT_TTL_HOURS as u64,
            1,
            24 * 90,
        );
        let orchestrator_timeout_ms = num(
            "ORCHESTRATOR_TIMEOUT_MS",
            DEFAULT_TIMEOUT.as_millis() as u64,
            100,
            60_000,
        );
        let approval_timeout_s = num(
            "APPROVAL_TIMEOUT_SECONDS",
            crate::workflow::DEFAULT_APPROVAL_TIMEOUT_S,
            10,
            365 * 86_400,
        );
        let guard = match NetGuard::from_list(get("ALLOWED_NETWORKS").unwrap_or("")) {
            Ok(g) => g,
            Err(e) => {
                problems.push(format!("ALLOWED_NETWORKS: {e}"));
                NetGuard::default()
            }
        };
        let table_name = match get("TABLE_NAME") {
            Some(t) => t.to_string(),
            None => {
                problems.push("TABLE_NAME is required".to_string());
                String::new()
            }
        };
        let list = |k: &str| -> Vec<String> {
            get(k)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        let orchestrator = match (get("ORCHESTRATOR_URL"), get("ORCHESTRATOR_SECRET")) {
            (Some(url), Some(secret)) => {
                if !is_http_url(url) {
                    problems.push(format!("ORCHESTRATOR_URL={url:?} must be an http(s) URL"));
                }
                Some(OrchestratorConfig {
                    base_url: url.to_string(),
                    secret: secret.as_bytes().to_vec(),
                    timeout: Duration::from_millis(orchestrator_timeout_ms),
                })
            }
            (None, None) => None,
            (Some(_), None) => {
                problems.push("ORCHESTRATOR_SECRET is required with ORCHESTRATOR_URL".into());
                None
            }
            (None, Some(_)) => {
                problems.push("ORCHESTRATOR_URL is required with ORCHESTRATOR_SECRET".into());
                None
            }
        };
        let cors = Cors::new(list("CORS_ALLOWED_ORIGINS")).unwrap_or_else(|entry| {
            problems.push(format!(
                "CORS_ALLOWED_ORIGINS: {entry:?} is not an origin (scheme://host[:port], or *)"
            ));
            Cors::default()
        });
        let api_base_url = get("API_BASE_URL").map(|u| u.trim_end_matches('/').to_string());
        if let Some(u) = &api_base_url {
            if !is_http_url(u) {
                problems.push(format!("API_BASE_URL={u:?} must be an http(s) URL"));
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(Config {
            table_name,
            service_name: get("SERVICE_NAME")
                .unwrap_or("performance-agent")
                .to_string(),
            guard,
            scrape: ScrapeConfig {
                timeout: Duration::from_millis(timeout_ms),
                max_bytes: max_bytes as usize,
                retries: retries as u32,
                ..ScrapeConfig::default()
            },
            collector: CollectorConfig {
                concurrency: concurrency as usize,
                breaker: BreakerPolicy::default(),
                snapshot_ttl_hours: ttl as i64,
            },
            collection_interval_seconds: interval,
            shard_size: shard_size as usize,
            analysis_window_minutes: analysis_window as i64,
            collector_function_name: get("COLLECTOR_FUNCTION_NAME").map(String::from),
            state_machine_arn: get("STATE_MACHINE_ARN").map(String::from),
            approver_principals: list("APPROVER_PRINCIPALS"),
            cors,
            orchestrator,
            api_base_url,
            approval_timeout_s,
        })
    }

    /// The stage function's required settings, every missing one reported at once.
    pub fn stage_settings(&self) -> Result<StageSettings, ConfigError> {
        match (&self.orchestrator, &self.api_base_url) {
            (Some(orchestrator), Some(api_base_url)) => Ok(StageSettings {
                orchestrator: orchestrator.clone(),
                api_base_url: api_base_url.clone(),
            }),
            (o, a) => Err(ConfigError(
                [
                    o.is_none()
                        .then(|| "ORCHESTRATOR_URL and ORCHESTRATOR_SECRET are required".into()),
                    a.is_none().then(|| "API_BASE_URL is required".into()),
                ]
                .into_iter()
                .flatten()
                .collect(),
            )),
        }
    }
}

fn is_http_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_apply_when_only_the_table_is_given() {
        let c = Config::from_map(&vars(&[("TABLE_NAME", "t")])).unwrap();
        assert_eq!(c.collection_interval_seconds, 30);
        assert_eq!(c.scrape.timeout, Duration::from_secs(5));
        assert_eq!(c.shard_size, 500);
    }

    #[test]
    fn the_orchestrator_needs_both_its_url_and_its_secret() {
        let err = Config::from_map(&vars(&[
            ("TABLE_NAME", "t"),
            ("ORCHESTRATOR_URL", "http://127.0.0.1:9000"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("ORCHESTRATOR_SECRET"), "{err}");

        let c = Config::from_map(&vars(&[
            ("TABLE_NAME", "t"),
            ("ORCHESTRATOR_URL", "http://127.0.0.1:9000"),
            ("ORCHESTRATOR_SECRET", "s3cret"),
            ("API_BASE_URL", "https://api.example/"),
        ]))
        .unwrap();
        let stage = c.stage_settings().unwrap();
        assert_eq!(stage.api_base_url, "https://api.example");
        assert_eq!(stage.orchestrator.secret, b"s3cret");
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the secret never reaches a log line"
        );
    }

    #[test]
    fn the_stage_function_reports_every_missing_setting_at_once() {
        let c = Config::from_map(&vars(&[("TABLE_NAME", "t")])).unwrap();
        let err = c.stage_settings().unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = Config::from_map(&vars(&[
            ("SCRAPE_TIMEOUT_MS", "fast"),
            ("ALLOWED_NETWORKS", "10.0.0.0/99"),
        ]))
        .unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        assert!(err.to_string().contains("TABLE_NAME"));
        assert!(err.to_string().contains("SCRAPE_TIMEOUT_MS"));
        assert!(err.to_string().contains("ALLOWED_NETWORKS"));
    }

    #[test]
    fn cors_origins_are_checked_and_normalized() {
        let c = Config::from_map(&vars(&[
            ("TABLE_NAME", "t"),
            (
                "CORS_ALLOWED_ORIGINS",
                "https://Console.example.com/, http://localhost:3000",
            ),
        ]))
        .unwrap();
        assert_eq!(
            c.cors,
            Cors::new(["https://console.example.com", "http://localhost:3000"]).unwrap()
        );
        assert!(!Config::from_map(&vars(&[("TABLE_NAME", "t")]))
            .unwrap()
            .cors
            .is_enabled());
        let err = Config::from_map(&vars(&[
            ("TABLE_NAME", "t"),
            (
                "CORS_ALLOWED_ORIGINS",
                "https://ok.example,console.example.com",
            ),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("\"console.example.com\""), "{err}");
    }
}
