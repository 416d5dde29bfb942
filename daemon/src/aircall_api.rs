//! The Aircall REST API client. `transcription.created` only says a transcript exists; the text
//! comes from `GET {api_base}/v1/calls/{id}/transcription` (HTTP Basic `api_id:api_token`),
//! retried with backoff (honouring 429's `Retry-After`). Its user is the transcript worker
//! (`workers/transcripts.rs`), which runs it after the webhook is acknowledged.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use concierge_infra::retry::{self, Attempt, Backoff, Policy};
use serde_json::Value;

use crate::config::Secret;

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
        let agent = crate::outbound::agent(Duration::from_secs(10));
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
        let answer = crate::outbound::read(&mut response);
        Err((
            FetchError::Status {
                status,
                detail: answer.body.chars().take(200).collect(),
            },
            answer.retry_after,
        ))
    }

    /// Fetches with retries: 429 and 5xx and transport errors are retried (exponential from
    /// `base_delay` with jitter, or the API's `Retry-After`, at most a minute); other statuses
    /// fail at once. `stop` is asked while waiting between attempts: true ends the fetch
    /// (shutdown).
    pub fn fetch(
        &self,
        call_id: i64,
        base_delay: Duration,
        stop: &dyn Fn() -> bool,
    ) -> Result<Value, FetchError> {
        let policy = Policy::new(ATTEMPTS, Backoff::new(base_delay, Duration::from_secs(60)));
        policy.run(
            |attempt| match self.fetch_once(call_id) {
                Ok(v) => Attempt::Done(v),
                Err((e, after)) => {
                    tracing::warn!(call_id, attempt, error = %e, "fetching an Aircall transcript failed");
                    let retryable = match &e {
                        FetchError::Status { status, .. } => *status == 429 || *status >= 500,
                        FetchError::Transport(_) => true,
                    };
                    if retryable {
                        Attempt::Retry { error: e, after }
                    } else {
                        Attempt::Fatal(e)
                    }
                }
            },
            |wait| {
                if retry::sleep_unless(wait, stop) {
                    Ok(())
                } else {
                    Err(FetchError::Transport(
                        "stopped while waiting to retry (shutdown)".to_owned(),
                    ))
                }
            },
        )
    }
}
