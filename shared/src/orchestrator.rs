//! The orchestrator contract over HTTP (`docs/orchestrator-contract.yaml`): the client that
//! implements the workflow's [`Orchestrator`] port, and the request signature both sides use — we
//! sign, the orchestrator (and the simulated one in `local/sim`) verifies with [`verify`].
//!
//! Signature: `X-PerfAgent-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`.
//! The body carries the idempotency key too (equal to the `Idempotency-Key` header), so a replayed
//! body cannot be re-keyed; a verifier refuses timestamps outside the replay window.

use crate::instance::{EngineConfig, Id};
use crate::workflow::ports::{
    ApplyConfig, ApprovalRequest, Clock, Orchestrator, OrchestratorError, RollbackConfigs,
    StatusReport,
};
use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const SIGNATURE_HEADER: &str = "X-PerfAgent-Signature";
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// How far a signature's timestamp may be from the verifier's clock, either way.
pub const REPLAY_WINDOW_S: i64 = 300;
/// The default timeout of one call, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an error body is kept in an error message.
const ERROR_BODY_MAX: usize = 512;

/// The contract's paths, relative to the orchestrator's base URL.
pub const APPROVALS_PATH: &str = "v1/approvals";
pub const APPLY_PATH: &str = "v1/configs/apply";
pub const ROLLBACK_PATH: &str = "v1/configs/rollback";
pub const STATUS_PATH: &str = "v1/status";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp_s: i64, body: &[u8]) -> Result<HmacSha256, SignatureError> {
    if secret.is_empty() {
        return Err(SignatureError::EmptySecret);
    }
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| SignatureError::EmptySecret)?;
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(mac)
}

/// The signature header's value for `body` sent at `timestamp_s`.
pub fn sign(secret: &[u8], timestamp_s: i64, body: &[u8]) -> Result<String, SignatureError> {
    let tag = mac(secret, timestamp_s, body)?.finalize().into_bytes();
    Ok(format!("t={timestamp_s},v1={}", hex::encode(tag)))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the shared secret is empty")]
    EmptySecret,
    #[error("malformed signature header: {0}")]
    Malformed(String),
    #[error("the signature's timestamp is {age_s} s away from now (window {window_s} s)")]
    Stale { age_s: i64, window_s: i64 },
    #[error("the signature does not match")]
    Mismatch,
}

/// Checks a signature header against `body`: the timestamp within `window_s` of `now_s`, and one
/// of its `v1` values (several are allowed while a secret rotates) equal, compared in constant
/// time. Returns the signed timestamp.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_s: i64,
    window_s: i64,
) -> Result<i64, SignatureError> {
    let mut timestamp = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => {
                timestamp = Some(v.parse::<i64>().map_err(|_| {
                    SignatureError::Malformed(format!("timestamp {v:?} is not an integer"))
                })?)
            }
            Some(("v1", v)) => tags.push(
                hex::decode(v)
                    .map_err(|_| SignatureError::Malformed("v1 is not hexadecimal".into()))?,
            ),
            // Unknown schemes are ignored so a sender can add one before verifiers know it.
            Some(_) => {}
            None => {
                return Err(SignatureError::Malformed(format!(
                    "{part:?} is not key=value"
                )))
            }
        }
    }
    let t = timestamp.ok_or_else(|| SignatureError::Malformed("no t= timestamp".into()))?;
    if tags.is_empty() {
        return Err(SignatureError::Malformed("no v1= signature".into()));
    }
    let age_s = now_s.saturating_sub(t);
    if age_s.saturating_abs() > window_s {
        return Err(SignatureError::Stale { age_s, window_s });
    }
    let expected = mac(secret, t, body)?;
    if tags
        .iter()
        .any(|tag| expected.clone().verify_slice(tag).is_ok())
    {
        Ok(t)
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Where the orchestrator is and how to talk to it.
#[derive(Clone)]
pub struct OrchestratorConfig {
    /// E.g. `https://orchestrator.internal/` (the contract's paths are appended).
    pub base_url: String,
    pub secret: Vec<u8>,
    pub timeout: Duration,
}

impl std::fmt::Debug for OrchestratorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestratorConfig")
            .field("base_url", &self.base_url)
            .field("secret", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OrchestratorSetupError {
    #[error("orchestrator base URL {0:?} is not an http(s) URL")]
    Url(String),
    #[error("the orchestrator's shared secret is empty")]
    EmptySecret,
    #[error("building the HTTP client failed: {0}")]
    Client(#[from] reqwest::Error),
}

/// The body of every call: the request's fields and its idempotency key.
#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    idempotency_key: &'a str,
    #[serde(flatten)]
    request: &'a T,
}

/// The answer to `POST /v1/configs/apply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyResponse {
    /// Each changed instance's config before the change.
    pub previous: BTreeMap<Id, EngineConfig>,
}

/// The orchestrator over HTTP.
#[derive(Clone)]
pub struct HttpOrchestrator {
    client: reqwest::Client,
    base: url::Url,
    secret: Arc<Vec<u8>>,
    clock: Arc<dyn Clock>,
}

impl HttpOrchestrator {
    pub fn new(
        config: OrchestratorConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OrchestratorSetupError> {
        let mut base = url::Url::parse(&config.base_url)
            .map_err(|_| OrchestratorSetupError::Url(config.base_url.clone()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(OrchestratorSetupError::Url(config.base_url));
        }
        if !base.path().ends_with('/') {
            // Without it, `join` would replace the last path segment instead of appending.
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        if config.secret.is_empty() {
            return Err(OrchestratorSetupError::EmptySecret);
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(3)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("perfagent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpOrchestrator {
            client,
            base,
            secret: Arc::new(config.secret),
            clock,
        })
    }

    /// Posts a signed, keyed request; the answer's body on 2xx.
    async fn post<T: Serialize>(
        &self,
        path: &str,
        request: &T,
        idempotency_key: &str,
    ) -> Result<bytes::Bytes, OrchestratorError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| OrchestratorError::BadResponse(format!("bad path {path}: {e}")))?;
        let body = serde_json::to_vec(&Envelope {
            idempotency_key,
            request,
        })
        .map_err(|e| OrchestratorError::BadResponse(format!("encoding the request: {e}")))?;
        let signature = sign(&self.secret, self.clock.now_ms().div_euclid(1000), &body)
            .map_err(|e| OrchestratorError::BadResponse(e.to_string()))?;
        let resp = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_HEADER, idempotency_key)
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                OrchestratorError::Unavailable(if e.is_timeout() {
                    format!("{path}: timed out")
                } else {
                    format!("{path}: {e}")
                })
            })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| {
            OrchestratorError::Unavailable(format!("{path}: reading the answer: {e}"))
        })?;
        match status {
            200..=299 => Ok(bytes),
            // 409: a call with the same key is still running on the other side; 429: slow down.
            409 | 429 | 500..=599 => Err(OrchestratorError::Unavailable(format!(
                "{path}: HTTP {status}: {}",
                excerpt(&bytes)
            ))),
            _ => Err(OrchestratorError::Rejected {
                status,
                message: format!("{path}: {}", excerpt(&bytes)),
            }),
        }
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut end = text.len().min(ERROR_BODY_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().trim().to_string()
}

#[async_trait]
impl Orchestrator for HttpOrchestrator {
    async fn notify_approval(
        &self,
        request: &ApprovalRequest,
        idempotency_key: &str,
    ) -> Result<(), OrchestratorError> {
        self.post(APPROVALS_PATH, request, idempotency_key)
            .await
            .map(|_| ())
    }

    async fn apply_config(
        &self,
        request: &ApplyConfig,
        idempotency_key: &str,
    ) -> Result<BTreeMap<Id, EngineConfig>, OrchestratorError> {
        let body = self.post(APPLY_PATH, request, idempotency_key).await?;
        let answer: ApplyResponse = serde_json::from_slice(&body).map_err(|e| {
            OrchestratorError::BadResponse(format!("{APPLY_PATH}: {e}: {}", excerpt(&body)))
        })?;
        if let Some(missing) = request
            .instances
            .iter()
            .find(|i| !answer.previous.contains_key(*i))
        {
            return Err(OrchestratorError::BadResponse(format!(
                "{APPLY_PATH}: no previous config for {missing}"
            )));
        }
        Ok(answer.previous)
    }

    async fn rollback(
        &self,
        request: &RollbackConfigs,
        idempotency_key: &str,
    ) -> Result<(), OrchestratorError> {
        self.post(ROLLBACK_PATH, request, idempotency_key)
            .await
            .map(|_| ())
    }

    async fn report_status(
        &self,
        report: &StatusReport,
        idempotency_key: &str,
    ) -> Result<(), OrchestratorError> {
        self.post(STATUS_PATH, report, idempotency_key)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"correct horse battery staple";

    #[test]
    fn a_signature_verifies_against_its_own_body_and_time() {
        let body = br#"{"idempotency_key":"wf-1:canary:0"}"#;
        let header = sign(SECRET, 1_700_000_000, body).unwrap();
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(
            verify(SECRET, &header, body, 1_700_000_100, REPLAY_WINDOW_S),
            Ok(1_700_000_000)
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2 checks the primitive: key "Jefe", data "what do ya want for
        // nothing?" → 5bdcc146…; here the data is "<t>." + body split the same way.
        let header = sign(b"Jefe", 0, b"what do ya want for nothing?").unwrap();
        let direct = {
            let mut m = HmacSha256::new_from_slice(b"Jefe").unwrap();
            m.update(b"0.what do ya want for nothing?");
            hex::encode(m.finalize().into_bytes())
        };
        assert_eq!(header, format!("t=0,v1={direct}"));
        let rfc = {
            let mut m = HmacSha256::new_from_slice(b"Jefe").unwrap();
            m.update(b"what do ya want for nothing?");
            hex::encode(m.finalize().into_bytes())
        };
        assert_eq!(
            rfc,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_tampered_body_a_wrong_secret_or_a_stale_time_is_refused() {
        let body = b"{\"a\":1}";
        let header = sign(SECRET, 1000, body).unwrap();
        assert_eq!(
            verify(SECRET, &header, b"{\"a\":2}", 1000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", &header, body, 1000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, &header, body, 1301, 300),
            Err(SignatureError::Stale {
                age_s: 301,
                window_s: 300
            })
        );
        // A timestamp from the future is as suspicious as an old one.
        assert!(matches!(
            verify(SECRET, &header, body, 699, 300),
            Err(SignatureError::Stale { .. })
        ));
    }

    #[test]
    fn a_header_may_carry_several_signatures_while_a_secret_rotates() {
        let body = b"x";
        let old = sign(b"old secret", 50, body).unwrap();
        let new = sign(SECRET, 50, body).unwrap();
        let v1_new = new.split_once(",v1=").map(|(_, v)| v).unwrap_or_default();
        let both = format!("{old},v1={v1_new},v2=ignored");
        assert_eq!(verify(SECRET, &both, body, 50, 300), Ok(50));
    }

    #[test]
    fn malformed_headers_are_told_apart_from_mismatches() {
        for bad in ["", "v1=00", "t=abc,v1=00", "t=1", "t=1,v1=zz", "garbage"] {
            assert!(
                matches!(
                    verify(SECRET, bad, b"", 1, 300),
                    Err(SignatureError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(sign(b"", 1, b""), Err(SignatureError::EmptySecret));
    }
}
