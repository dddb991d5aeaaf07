//! The API's one error type and the one place that maps domain errors to HTTP statuses.

use super::body::ErrorBody;
use crate::instance::InvalidInstance;
use crate::store::StoreError;
use http::StatusCode;
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Value::Null,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        let what = what.into();
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} was not found"),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// The JSON body every error is answered with.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.to_string(),
            message: self.message.clone(),
            details: self.details.clone(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists(what) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{what} already exists"),
            ),
            StoreError::NotFound(what) => ApiError::not_found(what),
            // The SDK's message names endpoints and internals: logged here, not sent to callers.
            StoreError::Unavailable(m) => {
                tracing::error!(error = %m, "the store is unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store is unavailable; try again shortly",
                )
            }
            StoreError::Corrupt(m) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store_corrupt", m)
            }
        }
    }
}

impl From<InvalidInstance> for ApiError {
    fn from(e: InvalidInstance) -> Self {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            e.to_string(),
        )
        .with_details(json!({"field": e.field()}))
    }
}

/// Parses a JSON body into `T`, answering 400 with serde's line/column message when it does not fit.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("a JSON body is required"));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid for this route: {e}"),
        )
        .with_details(json!({"line": e.line(), "column": e.column()}))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_store_is_a_503_that_does_not_show_the_sdks_internals() {
        let e = ApiError::from(StoreError::Unavailable(
            "dispatch failure: io error: Connection refused (http://127.0.0.1:4566/)".into(),
        ));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, "store_unavailable");
        assert!(!e.message.contains("127.0.0.1"), "{}", e.message);
    }
}
