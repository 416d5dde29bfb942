//! Failure alerts to a RocketChat incoming webhook: what failed, where, and where to look; retried
//! with backoff; never a secret in the text (the webhook URL itself holds a token and is never
//! logged).

use std::time::Duration;

use concierge_infra::retry::{self, Attempt, Backoff, Policy};
use serde_json::json;

/// Why an alert could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("the RocketChat webhook refused the alert ({status}): {detail}")]
    Refused { status: u16, detail: String },
    #[error("the RocketChat webhook could not be reached after {attempts} attempts: {detail}")]
    Unreachable { attempts: u32, detail: String },
}

/// The alert's text.
pub fn message(host: &str, what: &str, kind: &str, error: &str, status_file: &str) -> String {
    format!(
        ":rotating_light: **concierge-sidecar on {host}: {what} failed** ({kind})\n{error}\nStatus: `{status_file}`; logs: `journalctl -u concierge-sidecar` or `docker service logs concierge_sidecar`."
    )
}

/// Posts `text` to the webhook, retrying 429s, 5xx and transport failures (`attempts` in all,
/// exponential from `backoff`, honouring `Retry-After`).
pub fn post(url: &str, text: &str, attempts: u32, backoff: Duration) -> Result<(), AlertError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(15)))
        .http_status_as_error(false)
        .build()
        .into();
    let body = json!({ "text": text }).to_string();
    let policy = Policy::new(attempts, Backoff::new(backoff, Duration::from_secs(30)));
    policy.run(
        |attempt| {
            let unreachable = |detail: String| AlertError::Unreachable {
                attempts: attempt,
                detail,
            };
            match agent
                .post(url)
                .header("Content-Type", "application/json")
                .send(&body)
            {
                Ok(mut r) => {
                    let status = r.status().as_u16();
                    if (200..300).contains(&status) {
                        return Attempt::Done(());
                    }
                    let after = retry::server_wait(
                        None,
                        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
                    );
                    let detail: String = r
                        .body_mut()
                        .read_to_string()
                        .unwrap_or_default()
                        .chars()
                        .take(200)
                        .collect();
                    if status != 429 && status < 500 {
                        return Attempt::Fatal(AlertError::Refused { status, detail });
                    }
                    Attempt::Retry {
                        error: unreachable(format!("{status}: {detail}")),
                        after,
                    }
                }
                // The URL is a secret: only the error's kind is kept.
                Err(e) => Attempt::Retry {
                    error: unreachable(redact(&e.to_string(), url)),
                    after: None,
                },
            }
        },
        retry::sleep,
    )
}

fn redact(text: &str, url: &str) -> String {
    text.replace(url, "<webhook url>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_host_step_kind_and_where_to_look() {
        let m = message(
            "swarm-1",
            "backup run",
            "unreachable",
            "cannot reach s3:https://x/b",
            "/var/lib/s.json",
        );
        assert!(
            m.contains("swarm-1") && m.contains("backup run failed") && m.contains("unreachable")
        );
        assert!(m.contains("/var/lib/s.json"));
    }

    #[test]
    fn an_error_text_never_carries_the_webhook_url() {
        let url = "https://chat.example/hooks/abc/SECRETTOKEN";
        assert_eq!(
            redact(&format!("connect {url}: refused"), url),
            "connect <webhook url>: refused"
        );
    }
}
