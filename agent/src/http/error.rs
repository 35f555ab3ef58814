//! API errors: a status, a stable reason label and a message a person can act on.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: String,
    /// For a refusal that passes: when to try again (`Retry-After`).
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A 429: too many of `reason` from this client; `message` says what, the answer says
    /// when to retry.
    pub fn too_many(
        reason: &'static str,
        message: impl Into<String>,
        retry_after: std::time::Duration,
    ) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, reason, message);
        e.retry_after = Some(retry_after);
        e
    }

    /// Whole seconds to wait, at least one.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
            .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
            .map(|s| s.max(1))
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "request failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the store could not record this; try again",
        )
    }
}

/// The body of every refusal.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorBody {
    /// A stable reason label (`bad_request`, `code_malformed`, `eggs_per_client`, ...).
    pub error: String,
    /// What was wrong, for a person.
    pub message: String,
    /// With a 429 or a 503 that passes: whole seconds to wait, as in `Retry-After`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = self.retry_after_secs();
        let body = ErrorBody {
            error: self.reason.to_owned(),
            message: self.message,
            retry_after_secs: retry,
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = retry {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

// In the OpenAPI documents every operation may answer with an `ErrorBody`.
caidan_sync::refusal_output!(ApiError, ErrorBody);
