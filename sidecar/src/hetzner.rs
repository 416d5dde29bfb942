//! A small blocking client for the part of the Hetzner Cloud API the temporary backup server
//! needs: list snapshots and servers by label (paginated), create a server, poll actions, delete
//! a server. Errors are Hetzner's `{"error": {code, message}}` bodies, typed.
//!
//! Retries: `rate_limit_exceeded` (429) waits for the budget to refill (the limit refills
//! continuously, one request per `3600 / RateLimit-Limit` seconds, and never longer than until
//! `RateLimit-Reset`); `locked` (another action runs on the resource), `conflict`, 5xx codes and
//! transport failures back off exponentially with jitter. A `POST /servers` that fails in transport
//! is not resent (it may have created the server); the caller finds such a server by its labels.
//!
//! Not the `hcloud` crate: it hides the response headers (no `RateLimit-*`), so it cannot honour
//! the rate limit, and it brings reqwest and a second TLS stack for five calls (ARCHITECTURE.md).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use concierge_infra::retry::{self, Attempt, Backoff, Policy};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::s3::sigv4::uri_encode;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum HetznerError {
    #[error(
        "the Hetzner API refused the token ({status} {code}: {message}); check hetzner.token (a read-write token of the project)"
    )]
    Denied {
        status: u16,
        code: String,
        message: String,
    },
    #[error("Hetzner API, {what}: {status} {code}: {message}")]
    Api {
        what: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("Hetzner API, {what}: cannot reach {base} after {attempts} attempt(s): {detail}")]
    Unreachable {
        what: String,
        base: String,
        attempts: u32,
        detail: String,
    },
    #[error("Hetzner API, {what}: unexpected answer: {detail}")]
    Protocol { what: String, detail: String },
    #[error("Hetzner action {id} ({command}) failed: {code}: {message}")]
    ActionFailed {
        id: i64,
        command: String,
        code: String,
        message: String,
    },
    #[error("Hetzner action {id} ({command}) still running after {waited:?}")]
    ActionTimeout {
        id: i64,
        command: String,
        waited: Duration,
    },
}

impl HetznerError {
    /// The credentials were refused (exit code 3, like an unreachable API).
    pub fn is_denied_or_unreachable(&self) -> bool {
        matches!(
            self,
            HetznerError::Denied { .. } | HetznerError::Unreachable { .. }
        )
    }

    fn code(&self) -> Option<&str> {
        match self {
            HetznerError::Api { code, .. } | HetznerError::Denied { code, .. } => Some(code),
            HetznerError::Unreachable { .. }
            | HetznerError::Protocol { .. }
            | HetznerError::ActionFailed { .. }
            | HetznerError::ActionTimeout { .. } => None,
        }
    }
}

/// Error codes worth another attempt after a pause.
fn transient(code: &str, status: u16) -> bool {
    matches!(
        code,
        "locked"
            | "conflict"
            | "rate_limit_exceeded"
            | "server_error"
            | "service_error"
            | "unavailable"
            | "maintenance"
            | "resource_unavailable"
            | "timeout"
    ) || status == 429
        || status >= 500
}

/// An async operation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Action {
    pub id: i64,
    pub command: String,
    /// `running`, `success` or `error`.
    pub status: String,
    #[serde(default)]
    pub progress: i64,
    #[serde(default)]
    pub error: Option<ActionError>,
}

/// Why an action failed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ActionError {
    pub code: String,
    pub message: String,
}

/// A server, as far as we read it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Server {
    pub id: i64,
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub created: String,
}

/// An image (we list snapshots).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Image {
    pub id: i64,
    #[serde(default)]
    pub description: Option<String>,
    pub status: String,
    #[serde(default)]
    pub created: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `POST /servers`.
#[derive(Debug, Clone, Serialize)]
pub struct CreateServer {
    pub name: String,
    pub server_type: String,
    /// A snapshot's id, as a string.
    pub image: String,
    pub location: String,
    pub start_after_create: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys: Vec<String>,
    pub user_data: String,
    pub labels: BTreeMap<String, String>,
}

/// What `POST /servers` answers.
#[derive(Debug, Clone, Deserialize)]
pub struct Created {
    pub server: Server,
    pub action: Action,
    #[serde(default)]
    pub next_actions: Vec<Action>,
}

/// The client.
pub struct HetznerClient {
    base: String,
    token: String,
    agent: ureq::Agent,
    /// Attempts per request (transient failures).
    attempts: u32,
    /// First backoff, doubled per attempt (with jitter), capped at 60 s.
    backoff: Duration,
}

impl std::fmt::Debug for HetznerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HetznerClient")
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The parts of an answer we use.
struct Answer {
    status: u16,
    body: String,
    rate_limit: Option<u64>,
    rate_reset: Option<u64>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How long to wait after a 429: one request's worth of refill, never past the full reset.
fn rate_limit_wait(limit: Option<u64>, reset: Option<u64>, now: u64, attempt: u32) -> Duration {
    let per_request = limit
        .filter(|l| *l > 0)
        .map_or(1.0, |l| (3600.0 / l as f64).max(1.0));
    let wanted = Duration::from_secs_f64(per_request * f64::from(1u32 << attempt.min(5)));
    match reset {
        Some(r) if r > now => wanted.min(Duration::from_secs(r - now)),
        Some(_) => Duration::from_secs(1),
        None => wanted,
    }
}

impl HetznerClient {
    /// `base` is `https://api.hetzner.cloud/v1` (or a test server).
    pub fn new(base: &str, token: &str, attempts: u32, backoff: Duration) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .user_agent(concat!("concierge-sidecar/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        HetznerClient {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            agent,
            attempts: attempts.max(1),
            backoff,
        }
    }

    fn once(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Answer, String> {
        let url = format!("{}{path}", self.base);
        let builder = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Authorization", format!("Bearer {}", self.token))
            .header("Accept", "application/json");
        let payload = match body {
            Some(v) => v.to_string().into_bytes(),
            None => Vec::new(),
        };
        let builder = if body.is_some() {
            builder.header("Content-Type", "application/json")
        } else {
            builder
        };
        let request = builder.body(payload).map_err(|e| e.to_string())?;
        let mut response = self.agent.run(request).map_err(|e| e.to_string())?;
        let header = |name: &str| -> Option<u64> {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
        };
        let rate_limit = header("ratelimit-limit");
        let rate_reset = header("ratelimit-reset");
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("reading the answer: {e}"))?;
        Ok(Answer {
            status,
            body,
            rate_limit,
            rate_reset,
        })
    }

    /// One call with retries: the JSON body of a 2xx answer.
    fn call(
        &self,
        what: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, HetznerError> {
        let policy = Policy::new(
            self.attempts,
            Backoff::new(self.backoff, Duration::from_secs(60)),
        );
        policy.run(
            |attempt| {
                let (err, after) = match self.once(method, path, body) {
                    Ok(a) if (200..300).contains(&a.status) => {
                        if a.body.trim().is_empty() {
                            return Attempt::Done(Value::Null);
                        }
                        return match serde_json::from_str(&a.body) {
                            Ok(v) => Attempt::Done(v),
                            Err(e) => Attempt::Fatal(HetznerError::Protocol {
                                what: what.to_owned(),
                                detail: format!("not JSON ({e})"),
                            }),
                        };
                    }
                    Ok(a) => {
                        let err = self.status_error(what, &a);
                        if !transient(err.code().unwrap_or(""), a.status) {
                            return Attempt::Fatal(err);
                        }
                        let after = (a.status == 429 || err.code() == Some("rate_limit_exceeded"))
                            .then(|| {
                                rate_limit_wait(a.rate_limit, a.rate_reset, now_unix(), attempt - 1)
                            });
                        (err, after)
                    }
                    Err(detail) => {
                        let err = HetznerError::Unreachable {
                            what: what.to_owned(),
                            base: self.base.clone(),
                            attempts: attempt,
                            detail,
                        };
                        // Creating is not idempotent: a lost answer may hide a created server.
                        if method == "POST" {
                            return Attempt::Fatal(err);
                        }
                        (err, None)
                    }
                };
                tracing::warn!(%what, attempt, error = %err, "Hetzner API call failed; retrying");
                Attempt::Retry { error: err, after }
            },
            retry::sleep,
        )
    }

    fn status_error(&self, what: &str, a: &Answer) -> HetznerError {
        let v: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
        let code = v["error"]["code"].as_str().unwrap_or("").to_owned();
        let message = v["error"]["message"]
            .as_str()
            .map_or_else(|| a.body.chars().take(200).collect(), str::to_owned);
        if a.status == 401 || code == "unauthorized" || code == "token_readonly" {
            return HetznerError::Denied {
                status: a.status,
                code,
                message,
            };
        }
        HetznerError::Api {
            what: what.to_owned(),
            status: a.status,
            code,
            message,
        }
    }

    fn field<T: for<'de> Deserialize<'de>>(
        what: &str,
        v: &Value,
        key: &str,
    ) -> Result<T, HetznerError> {
        serde_json::from_value(v[key].clone()).map_err(|e| HetznerError::Protocol {
            what: what.to_owned(),
            detail: format!("`{key}`: {e}"),
        })
    }

    /// Every page of a listing: `root` is the array's key.
    fn list<T: for<'de> Deserialize<'de>>(
        &self,
        what: &str,
        path_and_query: &str,
        root: &str,
    ) -> Result<Vec<T>, HetznerError> {
        let mut out = Vec::new();
        let mut page: u64 = 1;
        loop {
            let sep = if path_and_query.contains('?') {
                '&'
            } else {
                '?'
            };
            let v = self.call(
                what,
                "GET",
                &format!("{path_and_query}{sep}page={page}&per_page=50"),
                None,
            )?;
            let items: Vec<T> = Self::field(what, &v, root)?;
            out.extend(items);
            match v["meta"]["pagination"]["next_page"].as_u64() {
                Some(next) if next > page => page = next,
                _ => return Ok(out),
            }
            if page > 10_000 {
                return Err(HetznerError::Protocol {
                    what: what.to_owned(),
                    detail: "pagination does not end".into(),
                });
            }
        }
    }

    /// Available snapshots carrying `label_selector`, newest first.
    pub fn snapshots(&self, label_selector: &str) -> Result<Vec<Image>, HetznerError> {
        let mut images: Vec<Image> = self.list(
            "list snapshots",
            &format!(
                "/images?type=snapshot&status=available&sort=created:desc&label_selector={}",
                uri_encode(label_selector, false)
            ),
            "images",
        )?;
        // Sorted here too: RFC 3339 times of one zone compare as text; the id breaks ties.
        images.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        Ok(images)
    }

    /// Servers carrying `label_selector`.
    pub fn servers(&self, label_selector: &str) -> Result<Vec<Server>, HetznerError> {
        self.list(
            "list servers",
            &format!(
                "/servers?label_selector={}",
                uri_encode(label_selector, false)
            ),
            "servers",
        )
    }

    /// Creates a server (not retried after a transport failure: see the module doc).
    pub fn create_server(&self, request: &CreateServer) -> Result<Created, HetznerError> {
        let what = "create server";
        let body = serde_json::to_value(request).map_err(|e| HetznerError::Protocol {
            what: what.to_owned(),
            detail: e.to_string(),
        })?;
        let v = self.call(what, "POST", "/servers", Some(&body))?;
        serde_json::from_value(v).map_err(|e| HetznerError::Protocol {
            what: what.to_owned(),
            detail: e.to_string(),
        })
    }

    /// Deletes a server; `None` when it was already gone.
    pub fn delete_server(&self, id: i64) -> Result<Option<Action>, HetznerError> {
        let what = format!("delete server {id}");
        match self.call(&what, "DELETE", &format!("/servers/{id}"), None) {
            Ok(v) => Ok(Some(Self::field(&what, &v, "action")?)),
            Err(HetznerError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One action's state.
    pub fn action(&self, id: i64) -> Result<Action, HetznerError> {
        let what = format!("get action {id}");
        let v = self.call(&what, "GET", &format!("/actions/{id}"), None)?;
        Self::field(&what, &v, "action")
    }

    /// Polls an action until it ends (`every` apart, growing to 10 s for long actions, which
    /// spares the rate limit), failing on `error` or when `limit` has passed.
    pub fn wait(
        &self,
        action: &Action,
        every: Duration,
        limit: Duration,
    ) -> Result<Action, HetznerError> {
        let started = Instant::now();
        let mut current = action.clone();
        let mut pause = every;
        loop {
            match current.status.as_str() {
                "success" => return Ok(current),
                "error" => {
                    let (code, message) = current
                        .error
                        .as_ref()
                        .map(|e| (e.code.clone(), e.message.clone()))
                        .unwrap_or_else(|| ("unknown".into(), "no error given".into()));
                    return Err(HetznerError::ActionFailed {
                        id: current.id,
                        command: current.command.clone(),
                        code,
                        message,
                    });
                }
                _ => {}
            }
            if started.elapsed() >= limit {
                return Err(HetznerError::ActionTimeout {
                    id: current.id,
                    command: current.command.clone(),
                    waited: started.elapsed(),
                });
            }
            std::thread::sleep(pause.min(limit.saturating_sub(started.elapsed())));
            pause = (pause + pause / 2).min(Duration::from_secs(10)).max(every);
            current = self.action(action.id)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429_waits_one_requests_worth_of_refill_and_never_past_the_reset() {
        // 3600/h refills one request a second.
        assert_eq!(
            rate_limit_wait(Some(3600), Some(1_000_100), 1_000_000, 0),
            Duration::from_secs(1)
        );
        // Repeated refusals back off, but never beyond the moment the budget is full again.
        assert_eq!(
            rate_limit_wait(Some(3600), Some(1_000_003), 1_000_000, 4),
            Duration::from_secs(3)
        );
        // A smaller limit refills more slowly.
        assert_eq!(
            rate_limit_wait(Some(360), Some(1_002_000), 1_000_000, 0),
            Duration::from_secs(10)
        );
        // A reset in the past or missing headers: a second.
        assert_eq!(
            rate_limit_wait(None, Some(5), 1_000_000, 0),
            Duration::from_secs(1)
        );
        assert_eq!(rate_limit_wait(None, None, 0, 0), Duration::from_secs(1));
    }

    #[test]
    fn locked_conflict_and_server_errors_are_transient_refusals_are_not() {
        for code in [
            "locked",
            "conflict",
            "rate_limit_exceeded",
            "server_error",
            "unavailable",
        ] {
            assert!(transient(code, 423), "{code}");
        }
        for code in [
            "invalid_input",
            "not_found",
            "forbidden",
            "uniqueness_error",
            "protected",
        ] {
            assert!(!transient(code, 400), "{code}");
        }
        assert!(transient("", 502));
    }
}
