//! RFC 9457 problem details: every error the HTTP API returns is `application/problem+json`,
//! with two members of our own: `code`, a stable machine-readable name of the failure (the
//! `title` is the HTTP reason, the `detail` prose that may change), and `request_id`, the id the
//! response's `x-request-id` carries and the daemon's log lines of the request show.

use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error response body: `{type, title, status, detail, code, request_id}`.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl Problem {
    /// A problem with the standard title of `status` and its generic code.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self::coded(status, generic_code(status), detail)
    }

    /// A problem with a code more precise than its status's.
    pub fn coded(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            code,
            request_id: super::access::current(),
        }
    }
}

/// The code of a failure nothing more precise is known about than its status.
pub fn generic_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "invalid_request",
        429 => "too_many_requests",
        431 => "header_too_large",
        502 => "bad_gateway",
        503 => "unavailable",
        504 => "gateway_timeout",
        507 => "insufficient_storage",
        500..=599 => "internal",
        _ => "error",
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

/// Middleware: an error answer the framework made itself (405 with its `Allow` header, a
/// query-string or path rejection, ...) becomes a problem body with the same status and
/// headers, its text as the detail.
pub async fn framework_errors(request: axum::extract::Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let detail = if text.is_empty() {
        match status {
            StatusCode::METHOD_NOT_ALLOWED => {
                "this route does not take that method (see Allow)".to_owned()
            }
            _ => status.canonical_reason().unwrap_or("error").to_owned(),
        }
    } else {
        text
    };
    let code = if status == StatusCode::BAD_REQUEST {
        // axum's rejections of a query string or a path segment.
        "invalid_parameters"
    } else {
        generic_code(status)
    };
    let problem = Problem::coded(status, code, detail).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/problem+json"),
    );
    Response::from_parts(parts, problem.into_body())
}

/// The answer to a route that does not exist.
pub async fn not_found(uri: axum::http::Uri) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        format!("no route for {}", uri.path()),
    )
}
