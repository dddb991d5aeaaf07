//! A client of the deployed agent's HTTP API, signing every request with SigV4 (the API's routes use
//! IAM authorization), for the operator CLI and the end-to-end tests.
//!
//! Credentials and region come from the usual AWS environment or profile; the base URL is the
//! stack's `ApiUrl` output (locally, the emulator's execute-api URL).

use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use http::{Method, StatusCode};
use serde_json::Value;
use std::time::{Duration, SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile): {0}"
    )]
    Credentials(String),
    #[error("the API URL {0:?} is not a valid http(s) URL")]
    BadUrl(String),
    #[error("signing the request failed: {0}")]
    Signing(String),
    #[error("the API at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("the API answered {status} with a body that is not JSON: {body}")]
    NotJson { status: StatusCode, body: String },
}

#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    credentials: Option<Credentials>,
    region: String,
}

impl ApiClient {
    /// A client that signs with the default credential chain's credentials.
    pub async fn from_env(base_url: &str) -> Result<Self, ClientError> {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let provider = sdk
            .credentials_provider()
            .ok_or_else(|| ClientError::Credentials("no credential provider".into()))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| ClientError::Credentials(e.to_string()))?;
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".to_string());
        Self::new(base_url, Some(credentials), region)
    }

    /// A client with explicit credentials; `None` sends unsigned requests (to test that they are refused).
    pub fn new(
        base_url: &str,
        credentials: Option<Credentials>,
        region: String,
    ) -> Result<Self, ClientError> {
        url::Url::parse(base_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| ClientError::BadUrl(base_url.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Unreachable {
                url: base_url.to_string(),
                message: e.to_string(),
            })?;
        Ok(ApiClient {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            credentials,
            region,
        })
    }

    /// Sends `method path` (path with its query, e.g. `/api/v1/instances?group=a`) and returns the
    /// status and the JSON body (`null` for an empty body).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ClientError> {
        let url = format!("{}{}", self.base, path);
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let mut req = http::Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", "application/json")
            .body(bytes.clone())
            .map_err(|_| ClientError::BadUrl(url.clone()))?;
        if let Some(creds) = &self.credentials {
            self.sign(&mut req, creds, &bytes)?;
        }
        let req = reqwest::Request::try_from(req).map_err(|_| ClientError::BadUrl(url.clone()))?;
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| ClientError::Unreachable {
            url: url.clone(),
            message: e.to_string(),
        })?;
        if text.trim().is_empty() {
            return Ok((status, Value::Null));
        }
        serde_json::from_str(&text)
            .map(|v| (status, v))
            .map_err(|_| ClientError::NotJson { status, body: text })
    }

    fn sign(
        &self,
        req: &mut http::Request<Vec<u8>>,
        creds: &Credentials,
        body: &[u8],
    ) -> Result<(), ClientError> {
        let identity = creds.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("execute-api")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| ClientError::Signing(e.to_string()))?
            .into();
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let uri = req.uri().to_string();
        let signable = SignableRequest::new(
            req.method().as_str(),
            uri.as_str(),
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| ClientError::Signing(e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| ClientError::Signing(e.to_string()))?
            .into_parts();
        instructions.apply_to_request_http1x(req);
        Ok(())
    }
}
