//! Every request's id and its access-log line. The id is the caller's `x-request-id` when it is
//! a sane one (1-128 visible characters of `A-Z a-z 0-9 - _ . : / + = @`), otherwise a fresh
//! random one; it is echoed in the response's `x-request-id`, put in every problem body
//! (`request_id`) and in every log line of the request (its span). One line per request goes
//! to the `concierge::access` target: method, route template, status, duration and who called
//! (how they signed in, and which static token list or which OIDC subject — never a token).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::identity::Identity;

/// The header that carries the id, both ways.
pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// A caller's id worth keeping: bounded, printable, no spaces or quotes to break a log line.
fn accepted(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let fine = !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=' | b'@')
        });
    fine.then(|| s.to_owned())
}

/// 128 random bits as 32 hex digits.
fn fresh() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// Middleware (outermost): assigns the id, runs the request inside its span and task-local,
/// echoes the id and writes the access line.
pub async fn trace(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(accepted)
        .unwrap_or_else(fresh);
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let span = tracing::info_span!("request", request_id = %id);
    let started = Instant::now();
    let mut response = REQUEST_ID
        .scope(id.clone(), next.run(request).instrument(span.clone()))
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    let status = response.status().as_u16();
    // Microseconds, as milliseconds: enough digits for a log line.
    let duration_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
    let _entered = span.enter();
    match response.extensions().get::<Identity>() {
        Some(who) => tracing::info!(
            target: "concierge::access",
            method = %method,
            route = %route,
            status,
            duration_ms,
            via = who.via,
            caller = who.username.as_deref().or(who.subject.as_deref()).unwrap_or(""),
            "request"
        ),
        None => tracing::info!(
            target: "concierge::access",
            method = %method,
            route = %route,
            status,
            duration_ms,
            "request"
        ),
    }
    drop(_entered);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callers_id_is_kept_only_when_it_is_short_and_printable() {
        let ok = HeaderValue::from_static("req-1:abc/DEF_2.x+y=z@q");
        assert_eq!(accepted(&ok).as_deref(), Some("req-1:abc/DEF_2.x+y=z@q"));
        for bad in ["", "has space", "quote\"d", "new\nline"] {
            if let Ok(v) = HeaderValue::from_str(bad) {
                assert_eq!(accepted(&v), None, "{bad:?}");
            }
        }
        let long = HeaderValue::from_str(&"a".repeat(129)).expect("header");
        assert_eq!(accepted(&long), None);
    }

    #[test]
    fn fresh_ids_are_32_hex_digits_and_differ() {
        let (a, b) = (fresh(), fresh());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
