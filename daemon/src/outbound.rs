//! The daemon's outbound HTTP (ureq, rustls): one way to make a client and one reader of the
//! answers its clients (Aircall, RocketChat, Firestore, Qdrant, the health check) act on.

use std::time::Duration;

use concierge_infra::retry;

/// A client whose every call ends within `timeout`; HTTP error statuses are answers to read,
/// not errors (each client decides what a 4xx or 5xx means).
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

/// What a client needs of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The server's `Retry-After` (seconds or an HTTP date).
    pub retry_after: Option<Duration>,
    /// The body as text (empty when it could not be read).
    pub body: String,
}

/// Reads an answer: status, `Retry-After`, body.
pub fn read(response: &mut ureq::http::Response<ureq::Body>) -> Answer {
    let status = response.status().as_u16();
    let retry_after = retry::server_wait(
        None,
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
    );
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Answer {
        status,
        retry_after,
        body,
    }
}
