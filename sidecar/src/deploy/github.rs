//! Opening an issue about a failed deployment through GitHub's REST API
//! (`POST /repos/{owner}/{repo}/issues`, API version 2022-11-28): a token with the Issues
//! permission, the report as the body. Rate limits (429, or 403 with `x-ratelimit-remaining:
//! 0` or `retry-after`) are waited out when the wait is short; anything else is a clear error
//! naming the status and GitHub's message. Creating is not idempotent, so a lost answer is not
//! retried (it may have created the issue).

use std::time::Duration;

use serde_json::{Value, json};

use concierge_infra::retry::{self, Attempt, Backoff, Policy};

/// GitHub limits an issue body to 65 536 characters.
const MAX_BODY: usize = 60_000;
/// The longest rate-limit wait taken before giving up.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Why the issue could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("deploy.github_repo {0:?} is not owner/name")]
    BadRepo(String),
    #[error("GitHub refused the token ({status}): {message}")]
    Denied { status: u16, message: String },
    #[error("GitHub: repository {repo} not found, or the token cannot see it (404)")]
    NotFound { repo: String },
    #[error("GitHub: issues are disabled on {repo} (410)")]
    IssuesDisabled { repo: String },
    #[error("GitHub refused the issue (422): {message}")]
    Invalid { message: String },
    #[error("GitHub's rate limit is exhausted; next try in {wait_s} s: {message}")]
    RateLimited { wait_s: u64, message: String },
    #[error("GitHub answered {status}: {message}")]
    Failed { status: u16, message: String },
    #[error("GitHub at {api} cannot be reached: {detail}")]
    Unreachable { api: String, detail: String },
}

/// An opened issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub number: u64,
    pub url: String,
}

/// Opens an issue on `repo` (`owner/name`) at `api` (`https://api.github.com`).
pub fn open_issue(
    api: &str,
    repo: &str,
    token: &str,
    title: &str,
    body: &str,
    labels: &[String],
) -> Result<Issue, GithubError> {
    let (owner, name) = repo
        .split_once('/')
        .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| GithubError::BadRepo(repo.to_owned()))?;
    let url = format!("{}/repos/{owner}/{name}/issues", api.trim_end_matches('/'));
    let body: String = if body.len() > MAX_BODY {
        let mut cut = MAX_BODY;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        format!(
            "{}\n\n… (cut; the whole report is in the deploy state directory)",
            &body[..cut]
        )
    } else {
        body.to_owned()
    };
    let payload = json!({"title": title, "body": body, "labels": labels}).to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .user_agent(concat!("concierge-sidecar/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    Policy::new(3, Backoff::new(Duration::from_secs(1), MAX_WAIT)).run(
        |_| {
            let sent = agent
                .post(&url)
                .header("Authorization", &format!("Bearer {token}"))
                .header("Accept", "application/vnd.github+json")
                .header("X-GitHub-Api-Version", "2022-11-28")
                .header("Content-Type", "application/json")
                .send(&payload);
            let mut r = match sent {
                Ok(r) => r,
                Err(e) => {
                    return Attempt::Fatal(GithubError::Unreachable {
                        api: api.to_owned(),
                        detail: e.to_string().replace(token, "<token>"),
                    });
                }
            };
            let status = r.status().as_u16();
            let header = |n: &str| {
                r.headers()
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let retry_after = header("retry-after");
            let remaining = header("x-ratelimit-remaining");
            let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok());
            let text = r.body_mut().read_to_string().unwrap_or_default();
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let message = v["message"]
                .as_str()
                .map_or_else(|| text.chars().take(200).collect(), str::to_owned);
            match status {
                201 => Attempt::Done(Issue {
                    number: v["number"].as_u64().unwrap_or(0),
                    url: v["html_url"].as_str().unwrap_or_default().to_owned(),
                }),
                403 | 429
                    if retry_after.is_some()
                        || remaining.as_deref() == Some("0")
                        || status == 429 =>
                {
                    let wait = retry::server_wait(None, retry_after.as_deref()).or_else(|| {
                        reset.map(|r| {
                            Duration::from_secs(
                                u64::try_from(r - concierge_infra::utc::now_secs())
                                    .unwrap_or(0)
                                    .max(1),
                            )
                        })
                    });
                    let wait_s = wait.map_or(60, |w| w.as_secs());
                    let error = GithubError::RateLimited { wait_s, message };
                    if wait.is_some_and(|w| w > MAX_WAIT) {
                        Attempt::Fatal(error)
                    } else {
                        Attempt::Retry { error, after: wait }
                    }
                }
                401 | 403 => Attempt::Fatal(GithubError::Denied { status, message }),
                404 => Attempt::Fatal(GithubError::NotFound {
                    repo: repo.to_owned(),
                }),
                410 => Attempt::Fatal(GithubError::IssuesDisabled {
                    repo: repo.to_owned(),
                }),
                422 => {
                    let details: Vec<String> = v["errors"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|e| {
                            e["message"].as_str().map_or_else(
                                || {
                                    format!(
                                        "{} {}",
                                        e["field"].as_str().unwrap_or("?"),
                                        e["code"].as_str().unwrap_or("invalid")
                                    )
                                },
                                str::to_owned,
                            )
                        })
                        .collect();
                    let message = if details.is_empty() {
                        message
                    } else {
                        format!("{message}: {}", details.join("; "))
                    };
                    Attempt::Fatal(GithubError::Invalid { message })
                }
                // Not processed (GitHub's own words for 502/503): safe to send again.
                502..=504 => Attempt::Retry {
                    error: GithubError::Failed { status, message },
                    after: None,
                },
                _ => Attempt::Fatal(GithubError::Failed { status, message }),
            }
        },
        retry::sleep,
    )
}
