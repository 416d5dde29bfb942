//! The Aircall REST API client. `transcription.created` only says a transcript exists; the text
//! comes from `GET {api_base}/v1/calls/{id}/transcription` (HTTP Basic `api_id:api_token`),
//! retried with backoff (honouring 429's `Retry-After`). Its user is the transcript worker
//! (`workers/transcripts.rs`), which runs it after the webhook is acknowledged.

use std::time::Duration;

use crate::config::Secret;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

/// Attempts before giving up until the next start.
pub const ATTEMPTS: u32 = 5;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("Aircall API answered {status}: {detail}")]
    Status { status: u16, detail: String },
    #[error("Aircall API request failed: {0}")]
    Transport(String),
}

/// Where and how to call the Aircall API.
#[derive(Debug, Clone)]
pub struct AircallApi {
    pub base: String,
    pub api_id: String,
    pub api_token: Secret,
}

impl AircallApi {
    fn authorization(&self) -> String {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", self.api_id, self.api_token.expose()))
        )
    }

    /// One attempt: the transcription JSON, or the failure with how long to wait before the
    /// next attempt when the API said so.
    fn fetch_once(&self, call_id: i64) -> Result<Value, (FetchError, Option<Duration>)> {
        let url = format!(
            "{}/v1/calls/{call_id}/transcription",
            self.base.trim_end_matches('/')
        );
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent
            .get(&url)
            .header("Authorization", &self.authorization())
            .call()
            .map_err(|e| (FetchError::Transport(e.to_string()), None))?;
        let status = response.status().as_u16();
        if status == 200 {
            return response.body_mut().read_json::<Value>().map_err(|e| {
                (
                    FetchError::Transport(format!("reading the transcription: {e}")),
                    None,
                )
            });
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let detail = response.body_mut().read_to_string().unwrap_or_default();
        Err((
            FetchError::Status {
                status,
                detail: detail.chars().take(200).collect(),
            },
            retry_after,
        ))
    }

    /// Fetches with retries: 429 and 5xx and transport errors are retried (exponential from
    /// `base_delay`, or the API's `Retry-After`); other statuses fail at once. `stop` is asked
    /// while waiting between attempts: true ends the fetch (shutdown).
    pub fn fetch(
        &self,
        call_id: i64,
        base_delay: Duration,
        stop: &dyn Fn() -> bool,
    ) -> Result<Value, FetchError> {
        let mut last = FetchError::Transport("no attempt made".to_owned());
        for attempt in 0..ATTEMPTS {
            match self.fetch_once(call_id) {
                Ok(v) => return Ok(v),
                Err((e, retry_after)) => {
                    let retryable = match &e {
                        FetchError::Status { status, .. } => *status == 429 || *status >= 500,
                        FetchError::Transport(_) => true,
                    };
                    tracing::warn!(call_id, attempt, error = %e, "fetching an Aircall transcript failed");
                    if !retryable {
                        return Err(e);
                    }
                    last = e;
                    if attempt + 1 < ATTEMPTS {
                        let wait = retry_after
                            .unwrap_or(base_delay * 2u32.pow(attempt))
                            .min(Duration::from_secs(60));
                        if !sleep_unless(wait, stop) {
                            return Err(FetchError::Transport(
                                "stopped while waiting to retry (shutdown)".to_owned(),
                            ));
                        }
                    }
                }
            }
        }
        Err(last)
    }
}

/// Sleeps for `wait` in short slices; false as soon as `stop` says so.
fn sleep_unless(wait: Duration, stop: &dyn Fn() -> bool) -> bool {
    let until = std::time::Instant::now() + wait;
    loop {
        if stop() {
            return false;
        }
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}
