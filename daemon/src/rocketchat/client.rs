//! The RocketChat REST client: `POST {api_base}/api/v1/chat.postMessage` with the bot's
//! `X-User-Id` / `X-Auth-Token`, into the question's room and thread. Retries only what cannot
//! have posted the message (429, honouring `X-RateLimit-Reset` or "wait N seconds"; connection
//! failures), so a retry never posts an answer twice.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use concierge_infra::retry::{self, Attempt, Backoff, Policy};
use serde_json::Value;

use crate::config::Secret;

/// Attempts per message.
const ATTEMPTS: u32 = 4;
/// Longest wait between attempts.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Why a message was not posted.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error(
        "RocketChat is not configured for posting: set rocketchat.api_base, rocketchat.user_id and rocketchat.auth_token"
    )]
    NotConfigured,
    #[error("RocketChat refused the bot's credentials ({status}): {detail}")]
    Unauthorized { status: u16, detail: String },
    #[error("RocketChat rejected the message ({status}): {detail}")]
    Rejected { status: u16, detail: String },
    #[error("RocketChat is unreachable or rate-limiting after {attempts} attempts: {detail}")]
    Unavailable { attempts: u32, detail: String },
}

/// The bot's REST access.
pub struct RestClient {
    base: String,
    user_id: String,
    auth_token: Secret,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("base", &self.base)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

impl RestClient {
    /// From `[rocketchat]`; `None` unless all three settings are there.
    pub fn new(config: &crate::config::RocketChat) -> Option<Self> {
        Some(RestClient {
            base: config
                .api_base
                .clone()?
                .trim()
                .trim_end_matches('/')
                .to_owned(),
            user_id: config.user_id.clone()?,
            auth_token: config.auth_token.clone()?,
        })
    }

    /// Posts `message` (a reply body: text, tmid, attachments) into `room_id`. Blocking.
    pub fn post(&self, room_id: &str, message: &Value) -> Result<(), PostError> {
        let mut body = message.clone();
        body["roomId"] = Value::String(room_id.to_owned());
        let body = body.to_string();
        let policy = Policy::new(ATTEMPTS, Backoff::new(Duration::from_millis(500), MAX_WAIT));
        policy.run(|attempt| self.attempt(&body, attempt), retry::sleep)
    }

    /// One attempt (`n` from 1).
    fn attempt(&self, body: &str, n: u32) -> Attempt<(), PostError> {
        let agent = crate::outbound::agent(Duration::from_secs(15));
        let url = format!("{}/api/v1/chat.postMessage", self.base);
        let result = agent
            .post(&url)
            .header("X-User-Id", &self.user_id)
            .header("X-Auth-Token", self.auth_token.expose())
            .header("Content-Type", "application/json")
            .send(body);
        let mut response = match result {
            Ok(r) => r,
            Err(e) => {
                // Only failures before the request went out are safe to retry.
                let unsent = matches!(e, ureq::Error::ConnectionFailed | ureq::Error::HostNotFound)
                    || matches!(&e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused);
                let error = PostError::Unavailable {
                    attempts: n,
                    detail: e.to_string(),
                };
                return if unsent {
                    tracing::warn!(attempt = n, %error, "posting to RocketChat failed; retrying");
                    Attempt::Retry { error, after: None }
                } else {
                    Attempt::Fatal(error)
                };
            }
        };
        let status = response.status().as_u16();
        let reset = response
            .headers()
            .get("x-ratelimit-reset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let detail = v["error"]
            .as_str()
            .or_else(|| v["message"].as_str())
            .map_or_else(|| text.chars().take(200).collect(), str::to_owned);
        match status {
            200 if v["success"] == true => Attempt::Done(()),
            200 => Attempt::Fatal(PostError::Rejected { status, detail }),
            401 | 403 => Attempt::Fatal(PostError::Unauthorized { status, detail }),
            429 => {
                let wait = reset
                    .and_then(|ms| {
                        let now = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .ok()?
                            .as_millis() as u64;
                        Some(Duration::from_millis(ms.saturating_sub(now)))
                    })
                    .or_else(|| wait_seconds(&detail));
                tracing::warn!(attempt = n, %detail, "RocketChat is rate-limiting; retrying");
                Attempt::Retry {
                    error: PostError::Unavailable {
                        attempts: n,
                        detail: format!("429: {detail}"),
                    },
                    after: wait,
                }
            }
            _ => Attempt::Fatal(PostError::Rejected { status, detail }),
        }
    }
}

/// "... must wait 12 seconds ..." → 12 s.
fn wait_seconds(detail: &str) -> Option<Duration> {
    let after = detail.split("wait").nth(1)?;
    let n: String = after
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    n.parse().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_read_from_the_rate_limit_message() {
        assert_eq!(
            wait_seconds(
                "Error, too many requests. Please slow down. You must wait 7 seconds before trying this endpoint again. [error-too-many-requests]"
            ),
            Some(Duration::from_secs(7))
        );
        assert_eq!(wait_seconds("slow down"), None);
    }

    #[test]
    fn posting_needs_all_three_settings_and_hides_the_token() {
        let mut c = crate::config::RocketChat {
            api_base: Some("http://127.0.0.1:1/".to_owned()),
            user_id: Some("bot".to_owned()),
            ..Default::default()
        };
        assert!(RestClient::new(&c).is_none());
        c.auth_token = Some(Secret::from("secret-token"));
        let client = RestClient::new(&c).expect("configured");
        assert_eq!(client.base, "http://127.0.0.1:1");
        assert!(!format!("{client:?}").contains("secret-token"));
    }
}
