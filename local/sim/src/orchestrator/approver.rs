//! The approver side of the simulated orchestrator: what it does with an approval notification
//! (approve, reject, or wait for a human), under which identity it calls the agent's
//! `approve`/`reject` routes (SigV4 with a principal's credentials), and the call itself with its
//! retries.

use aws_credential_types::Credentials;
use perfagent::client::{ApiClient, ClientError};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The principal whose credentials come from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
/// (+ `AWS_SESSION_TOKEN`, region from `AWS_REGION` or `AWS_DEFAULT_REGION`).
pub const ENV_PRINCIPAL: &str = "env";
/// A built-in principal that sends unsigned requests (the agent must refuse them).
pub const UNSIGNED_PRINCIPAL: &str = "unsigned";
/// Region used to sign when neither the principal nor the environment names one.
pub const DEFAULT_REGION: &str = "us-east-1";
/// How many times a decision is sent while the agent answers "not ready" or is unreachable.
pub const DECISION_ATTEMPTS: u32 = 10;
/// Wait between two attempts of a decision.
pub const DECISION_RETRY_DELAY: Duration = Duration::from_millis(500);
/// Longest accepted `delay_ms` (a day).
pub const MAX_DELAY_MS: u64 = 86_400_000;

/// What the orchestrator does with an approval notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    /// Call the notification's `approve_url` (after `delay_ms`).
    AutoApprove,
    /// Call the notification's `reject_url` (after `delay_ms`).
    AutoReject,
    /// Record it and do nothing: a human or a test decides through the agent's API (or
    /// `POST /admin/approvals/{workflow}/{approve|reject}`).
    Manual,
}

impl ApprovalMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalMode::AutoApprove => "auto_approve",
            ApprovalMode::AutoReject => "auto_reject",
            ApprovalMode::Manual => "manual",
        }
    }
}

impl fmt::Display for ApprovalMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApprovalMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.replace('-', "_").as_str() {
            "auto_approve" => Ok(ApprovalMode::AutoApprove),
            "auto_reject" => Ok(ApprovalMode::AutoReject),
            "manual" => Ok(ApprovalMode::Manual),
            other => Err(format!(
                "unknown mode {other:?}: expected auto_approve, auto_reject or manual"
            )),
        }
    }
}

/// The approval behaviour, `PUT /admin/mode`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeSettings {
    pub mode: ApprovalMode,
    /// Wait this long after the notification before deciding.
    #[serde(default)]
    pub delay_ms: u64,
    /// Whose credentials sign the decision (a name from `/admin/principals`).
    #[serde(default = "env_principal")]
    pub principal: String,
    /// The decision's `reason` (the contract's `DecisionBody`).
    #[serde(default)]
    pub reason: Option<String>,
}

fn env_principal() -> String {
    ENV_PRINCIPAL.to_string()
}

impl ModeSettings {
    pub fn new(mode: ApprovalMode) -> ModeSettings {
        ModeSettings {
            mode,
            delay_ms: 0,
            principal: env_principal(),
            reason: None,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.delay_ms > MAX_DELAY_MS {
            return Err(format!("delay_ms must be at most {MAX_DELAY_MS}"));
        }
        if self
            .reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > 1000)
        {
            return Err("reason must be at most 1000 characters".into());
        }
        Ok(())
    }
}

/// An identity the orchestrator can act as.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default)]
    pub session_token: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("region", &self.region)
            .finish()
    }
}

impl Principal {
    /// The credentials in the process environment, if both keys are set.
    pub fn from_env() -> Option<Principal> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Some(Principal {
            access_key_id: var("AWS_ACCESS_KEY_ID")?,
            secret_access_key: var("AWS_SECRET_ACCESS_KEY")?,
            session_token: var("AWS_SESSION_TOKEN"),
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.access_key_id.trim().is_empty() || self.secret_access_key.trim().is_empty() {
            return Err("access_key_id and secret_access_key must not be empty".into());
        }
        Ok(())
    }

    fn credentials(&self) -> Credentials {
        Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.clone(),
            self.session_token.clone(),
            None,
            "orchestrator-sim",
        )
    }

    fn region(&self) -> String {
        self.region
            .clone()
            .unwrap_or_else(|| DEFAULT_REGION.to_string())
    }
}

/// Approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Approve,
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Reject => "reject",
        }
    }
}

/// A decision the orchestrator sent, for `/admin/state`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub workflow_id: String,
    pub action: Action,
    pub url: String,
    pub principal: String,
    pub attempts: u32,
    /// The agent's last answer, if it answered.
    pub status: Option<u16>,
    pub answer: Value,
    /// Why no answer came (unreachable, unknown principal, bad URL).
    pub error: Option<String>,
    pub at_ms: i64,
}

/// The outcome of sending a decision: attempts, and the last answer or the reason for none.
pub struct Sent {
    pub attempts: u32,
    pub result: Result<(u16, Value), String>,
}

/// Whether the agent asked us to come back: the approval is still being recorded (409
/// `NotReady`) or the API is briefly unavailable.
fn retryable(status: u16, answer: &Value) -> bool {
    status == 503
        || (status == 409 && answer.get("error").and_then(Value::as_str) == Some("NotReady"))
}

/// POSTs the decision to `url`, SigV4-signed as `principal` (`None`: unsigned), retrying while
/// the agent is not ready or unreachable.
pub async fn send(url: &str, principal: Option<&Principal>, reason: Option<&str>) -> Sent {
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        _ => {
            return Sent {
                attempts: 0,
                result: Err(format!("{url:?} is not an http(s) URL")),
            }
        }
    };
    let base = parsed.origin().ascii_serialization();
    let path = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_string(),
    };
    let client = match principal {
        Some(p) => ApiClient::new(&base, Some(p.credentials()), p.region()),
        None => ApiClient::new(&base, None, DEFAULT_REGION.to_string()),
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            return Sent {
                attempts: 0,
                result: Err(e.to_string()),
            }
        }
    };
    let body = match reason {
        Some(r) => json!({ "reason": r }),
        None => json!({}),
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let outcome = client.call(Method::POST, &path, Some(&body)).await;
        let again = match &outcome {
            Ok((status, answer)) => retryable(status.as_u16(), answer),
            Err(ClientError::Unreachable { .. }) => true,
            Err(_) => false,
        };
        if !again || attempts >= DECISION_ATTEMPTS {
            return Sent {
                attempts,
                result: match outcome {
                    Ok((status, answer)) => Ok((status.as_u16(), answer)),
                    Err(ClientError::NotJson { status, body }) => {
                        Ok((status.as_u16(), Value::String(body)))
                    }
                    Err(e) => Err(e.to_string()),
                },
            };
        }
        tokio::time::sleep(DECISION_RETRY_DELAY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_from_the_flag_and_from_json() {
        assert_eq!(
            "auto-approve".parse::<ApprovalMode>(),
            Ok(ApprovalMode::AutoApprove)
        );
        assert!("yes".parse::<ApprovalMode>().is_err());
        let m: ModeSettings = serde_json::from_str(r#"{"mode":"auto_reject"}"#).unwrap();
        assert_eq!(m, ModeSettings::new(ApprovalMode::AutoReject));
        assert!(serde_json::from_str::<ModeSettings>(r#"{"mode":"manual","x":1}"#).is_err());
    }

    #[test]
    fn a_principals_secret_never_shows_in_debug_output() {
        let p = Principal {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI".into(),
            session_token: Some("tok".into()),
            region: None,
        };
        let shown = format!("{p:?}");
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(
            !shown.contains("wJalrXUtnFEMI") && !shown.contains("tok\""),
            "{shown}"
        );
    }

    #[test]
    fn only_not_ready_and_unavailable_answers_are_retried() {
        assert!(retryable(409, &json!({"error": "NotReady"})));
        assert!(retryable(503, &json!({})));
        assert!(!retryable(409, &json!({"error": "AlreadyDecided"})));
        assert!(!retryable(403, &json!({"error": "NotAnApprover"})));
        assert!(!retryable(200, &json!({})));
    }
}
