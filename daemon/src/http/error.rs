//! The one place errors become HTTP responses: an exhaustive match over the engine's errors
//! (kept honest by the `wildcard_enum_match_arm` lint), problem+json bodies, generic 5xx bodies
//! whose real cause is logged with the request id.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use concierge_engine::Error as EngineError;

use super::problem::Problem;

/// Why a request failed.
#[derive(Debug)]
pub enum ApiError {
    /// The engine refused or failed.
    Engine(EngineError),
    /// Malformed request (bad JSON syntax, bad query string).
    BadRequest(String),
    /// Well-formed but not acceptable.
    Unprocessable(String),
    /// No credentials (answered with `WWW-Authenticate: Bearer`).
    Unauthorized(&'static str),
    /// A bearer token that is wrong or malformed (RFC 6750 §3.1: 401 with
    /// `WWW-Authenticate: Bearer error="invalid_token"`).
    InvalidToken(String),
    /// Credentials that do not grant access (a webhook token or signature that does not match).
    Forbidden(&'static str),
    /// Not there.
    NotFound(String),
    /// Body larger than `server.max_body_bytes`.
    TooLarge(usize),
    /// The body did not arrive within `server.body_timeout_ms`.
    RequestTimeout(u64),
    /// The request line and headers are larger than `server.max_header_bytes`.
    HeadTooLarge(usize),
    /// Not `application/json`.
    UnsupportedMediaType(String),
    /// Shutting down.
    Unavailable(String),
    /// A bug or an unexpected failure: the cause is logged, not sent.
    Internal(String),
}

impl From<crate::qdrant::search::SearchError> for ApiError {
    fn from(e: crate::qdrant::search::SearchError) -> Self {
        match e {
            crate::qdrant::search::SearchError::Engine(e) => ApiError::Engine(e),
            crate::qdrant::search::SearchError::Qdrant(e) => {
                ApiError::Unavailable(format!("the search backend (Qdrant) failed: {e}"))
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ApiError::Engine(e)
    }
}

impl ApiError {
    /// The status, the stable `code` of the problem body and its detail.
    fn status_and_detail(self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::BadRequest(d) => (StatusCode::BAD_REQUEST, "bad_request", d),
            ApiError::Unprocessable(d) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", d),
            ApiError::Unauthorized(d) => (StatusCode::UNAUTHORIZED, "unauthorized", d.to_owned()),
            ApiError::InvalidToken(d) => (StatusCode::UNAUTHORIZED, "invalid_token", d),
            ApiError::Forbidden(d) => (StatusCode::FORBIDDEN, "forbidden", d.to_owned()),
            ApiError::NotFound(d) => (StatusCode::NOT_FOUND, "not_found", d),
            ApiError::TooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is larger than {limit} bytes"),
            ),
            ApiError::HeadTooLarge(limit) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "header_too_large",
                format!(
                    "the request line and headers are larger than {limit} bytes (server.max_header_bytes)"
                ),
            ),
            ApiError::RequestTimeout(ms) => (
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("the request body did not arrive within {ms} ms (server.body_timeout_ms)"),
            ),
            ApiError::UnsupportedMediaType(d) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                d,
            ),
            ApiError::Unavailable(d) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", d),
            ApiError::Internal(cause) => internal(cause),
            ApiError::Engine(e) => match e {
                EngineError::InvalidInput(i) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_request",
                    i.to_string(),
                ),
                EngineError::Poisoned { ref cause } if no_space(cause) => {
                    tracing::error!(error = %e, "refusing a write: the store is poisoned by a full disk");
                    (StatusCode::INSUFFICIENT_STORAGE, "disk_full", "the data disk filled up during a write: writes are refused until space is freed and the daemon restarts (acknowledged writes are kept)".to_owned())
                }
                EngineError::Poisoned { .. } => {
                    tracing::error!(error = %e, "refusing a write: the store is poisoned");
                    (StatusCode::SERVICE_UNAVAILABLE, "store_poisoned", "the store failed a durable write and refuses writes until the daemon restarts".to_owned())
                }
                EngineError::StorageFull { .. } => {
                    (StatusCode::INSUFFICIENT_STORAGE, "disk_full", e.to_string())
                }
                EngineError::Closed => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting_down",
                    "the daemon is shutting down".to_owned(),
                ),
                EngineError::NotYetIndexed {
                    wanted,
                    reached,
                    waited_ms,
                } => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_yet_indexed",
                    format!(
                        "the indexes have not reached sequence {wanted} within {waited_ms} ms (they are at {reached}); retry"
                    ),
                ),
                EngineError::Generation(cause) => {
                    tracing::error!(error = %cause, "answer generation failed");
                    (
                        StatusCode::BAD_GATEWAY,
                        "generation_failed",
                        "the answer generator failed; the cause is in the daemon's log".to_owned(),
                    )
                }
                EngineError::Storage(_)
                | EngineError::FormatVersion { .. }
                | EngineError::ModelMismatch { .. }
                | EngineError::Corrupt { .. }
                | EngineError::Embedding(_)
                | EngineError::Keyword(_)
                | EngineError::Dense(_)
                | EngineError::Io { .. } => internal(e.to_string()),
                other => internal(other.to_string()),
            },
        }
    }
}

/// Whether a store failure was the disk running out of space.
pub fn no_space(cause: &str) -> bool {
    cause.contains("No space left on device") || cause.contains("os error 28")
}

fn internal(cause: String) -> (StatusCode, &'static str, String) {
    tracing::error!(error = %cause, "request failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; the cause is in the daemon's log".to_owned(),
    )
}

impl ApiError {
    /// Whether the caller is at fault (a 4xx): for counting outcomes without answering.
    pub fn is_client_error(&self) -> bool {
        match self {
            ApiError::Engine(e) => matches!(e, EngineError::InvalidInput(_)),
            ApiError::Unavailable(_) | ApiError::Internal(_) => false,
            ApiError::BadRequest(_)
            | ApiError::Unprocessable(_)
            | ApiError::Unauthorized(_)
            | ApiError::InvalidToken(_)
            | ApiError::Forbidden(_)
            | ApiError::NotFound(_)
            | ApiError::TooLarge(_)
            | ApiError::RequestTimeout(_)
            | ApiError::HeadTooLarge(_)
            | ApiError::UnsupportedMediaType(_) => true,
        }
    }

    /// The problem body as JSON (for errors sent inside an event stream).
    pub fn problem_json(self) -> serde_json::Value {
        let (status, code, detail) = self.status_and_detail();
        serde_json::to_value(Problem::coded(status, code, detail)).unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let challenge = match &self {
            ApiError::Unauthorized(_) => Some("Bearer"),
            ApiError::InvalidToken(_) => Some("Bearer error=\"invalid_token\""),
            ApiError::Engine(_)
            | ApiError::BadRequest(_)
            | ApiError::Unprocessable(_)
            | ApiError::Forbidden(_)
            | ApiError::NotFound(_)
            | ApiError::TooLarge(_)
            | ApiError::RequestTimeout(_)
            | ApiError::HeadTooLarge(_)
            | ApiError::UnsupportedMediaType(_)
            | ApiError::Unavailable(_)
            | ApiError::Internal(_) => None,
        };
        let (status, code, detail) = self.status_and_detail();
        let mut response = Problem::coded(status, code, detail).into_response();
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(challenge),
            );
        }
        if status == StatusCode::INSUFFICIENT_STORAGE {
            // Space may come back without a restart (the free-space floor): look again later.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("60"),
            );
        }
        response
    }
}
