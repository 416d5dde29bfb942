//! An OpenAI-compatible chat-completions client (Groq by default): `POST {base_url}/chat/completions`
//! with a Bearer key and `max_completion_tokens`, whole answers or streamed SSE deltas; retries
//! on 408/409/429/498/5xx and transport errors with exponential backoff that honours
//! `retry-after-ms` / `retry-after`, all within one deadline; clear errors for a refused key and
//! an unknown or retired model. `list_models` checks the configured model at start.

use std::io::BufReader;
use std::time::{Duration, Instant};

use concierge_infra::retry::{self, Attempt, Backoff, Policy};
use serde_json::{Value, json};

use super::sse::SseReader;
use super::{Generator, Prompt};
use crate::ModelError;
use crate::error::LlmError;

/// How to reach the API.
#[derive(Clone, PartialEq)]
pub struct OpenAiConfig {
    /// API base, up to and including the version: `https://api.groq.com/openai/v1`.
    pub base_url: String,
    /// Model id (configuration, never code: providers retire ids).
    pub model: String,
    /// Bearer key; `None` for servers without authentication.
    pub api_key: Option<String>,
    /// Deadline of one generation, retries included.
    pub timeout: Duration,
    /// Attempts per generation (1 = no retry).
    pub max_attempts: u32,
    /// First backoff; doubled per retry unless the server says how long to wait.
    pub retry_base: Duration,
    /// Sampling temperature.
    pub temperature: f32,
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<secret>"))
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl OpenAiConfig {
    /// Groq's endpoint defaults for `model`.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        OpenAiConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            timeout: Duration::from_secs(20),
            max_attempts: 3,
            retry_base: Duration::from_millis(500),
            temperature: 0.2,
        }
    }
}

/// The client.
#[derive(Debug)]
pub struct OpenAiGenerator {
    config: OpenAiConfig,
}

/// Why one attempt failed, and whether (and when) to try again.
struct AttemptError {
    error: LlmError,
    retry: bool,
    wait: Option<Duration>,
}

impl OpenAiGenerator {
    pub fn new(config: OpenAiConfig) -> Result<Self, ModelError> {
        let base = config.base_url.trim();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ModelError::InvalidSetting(format!(
                "the LLM base URL must start with http:// or https://, got {base:?}"
            )));
        }
        if config.model.trim().is_empty() {
            return Err(ModelError::InvalidSetting(
                "the LLM model id is empty".to_owned(),
            ));
        }
        if config.max_attempts == 0 {
            return Err(ModelError::InvalidSetting(
                "the LLM needs at least one attempt".to_owned(),
            ));
        }
        Ok(OpenAiGenerator { config })
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/{path}",
            self.config.base_url.trim().trim_end_matches('/')
        )
    }

    fn agent(&self, timeout: Duration) -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into()
    }

    /// The model ids the server offers (`GET {base_url}/models`).
    pub fn list_models(&self) -> Result<Vec<String>, ModelError> {
        let mut request = self.agent(self.config.timeout).get(&self.url("models"));
        if let Some(key) = &self.config.api_key {
            request = request.header("Authorization", &format!("Bearer {key}"));
        }
        let mut response = request.call().map_err(|e| LlmError::Unavailable {
            status: None,
            detail: e.to_string(),
            attempts: 1,
        })?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        if status != 200 {
            return Err(status_error(status, &body, &self.config.model).error.into());
        }
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| LlmError::Protocol(format!("the model list is not JSON: {e}")))?;
        Ok(v["data"]
            .as_array()
            .map(|models| {
                models
                    .iter()
                    .filter_map(|m| m["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn body(&self, prompt: &Prompt, stream: bool) -> String {
        let messages: Vec<Value> = prompt
            .messages()
            .iter()
            .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
            .collect();
        json!({
            "model": self.config.model,
            "messages": messages,
            "max_completion_tokens": prompt.max_tokens,
            "temperature": self.config.temperature,
            "stream": stream,
        })
        .to_string()
    }

    /// Runs `attempt` until it succeeds, fails for good, or the deadline passes: a retry whose
    /// wait (the server's, or the backoff's) would end past the deadline is not made.
    fn with_retries<T>(
        &self,
        mut attempt: impl FnMut(Duration) -> Result<T, AttemptError>,
    ) -> Result<T, ModelError> {
        let deadline = Instant::now() + self.config.timeout;
        let backoff = Backoff::new(self.config.retry_base, self.config.timeout);
        let policy = Policy::new(self.config.max_attempts, backoff);
        policy
            .run(
                |n| {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let mut err = match attempt(left) {
                        Ok(v) => return Attempt::Done(v),
                        Err(e) => e,
                    };
                    if let LlmError::Unavailable { attempts, .. } = &mut err.error {
                        *attempts = n;
                    }
                    let wait = backoff.wait_or(n, err.wait);
                    let left = deadline.saturating_duration_since(Instant::now());
                    if !err.retry || wait >= left {
                        return Attempt::Fatal(err.error);
                    }
                    tracing::warn!(attempt = n, error = %err.error, wait_ms = wait.as_millis() as u64, "LLM call failed; retrying");
                    Attempt::Retry {
                        error: err.error,
                        after: Some(wait),
                    }
                },
                retry::sleep,
            )
            .map_err(ModelError::from)
    }

    fn post(
        &self,
        body: &str,
        left: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, AttemptError> {
        let mut request = self
            .agent(left)
            .post(&self.url("chat/completions"))
            .header("Content-Type", "application/json");
        if let Some(key) = &self.config.api_key {
            request = request.header("Authorization", &format!("Bearer {key}"));
        }
        let mut response = request.send(body).map_err(|e| AttemptError {
            error: LlmError::Unavailable {
                status: None,
                detail: e.to_string(),
                attempts: 1,
            },
            retry: true,
            wait: None,
        })?;
        let status = response.status().as_u16();
        if status == 200 {
            return Ok(response);
        }
        let wait = retry_after(response.headers());
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let mut e = status_error(status, &text, &self.config.model);
        if e.wait.is_none() {
            e.wait = wait;
        }
        Err(e)
    }
}

/// `retry-after-ms` (milliseconds) or `retry-after` (seconds or a date), as the official SDKs
/// read them.
fn retry_after(headers: &ureq::http::HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    retry::server_wait(header("retry-after-ms"), header("retry-after"))
}

/// The error of a non-200 answer (OpenAI error body: `{"error": {"message", "type", "code"}}`).
fn status_error(status: u16, body: &str, model: &str) -> AttemptError {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let message = v["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| body.chars().take(300).collect());
    let code = v["error"]["code"].as_str().unwrap_or("");
    let (error, retry) = match status {
        401 | 403 => (LlmError::Unauthorized { detail: message }, false),
        404 => (
            LlmError::UnknownModel {
                model: model.to_owned(),
                detail: message,
            },
            false,
        ),
        _ if matches!(code, "model_not_found" | "model_decommissioned") => (
            LlmError::UnknownModel {
                model: model.to_owned(),
                detail: message,
            },
            false,
        ),
        408 | 409 | 422 | 429 | 498 | 500..=599 => (
            LlmError::Unavailable {
                status: Some(status),
                detail: message,
                attempts: 1,
            },
            true,
        ),
        _ => (
            LlmError::Rejected {
                status,
                detail: message,
            },
            false,
        ),
    };
    AttemptError {
        error,
        retry,
        wait: None,
    }
}

/// The answer of a whole (non-streamed) completion.
fn read_completion(
    response: &mut ureq::http::Response<ureq::Body>,
) -> Result<String, AttemptError> {
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| AttemptError {
            error: LlmError::Unavailable {
                status: Some(200),
                detail: format!("reading the completion: {e}"),
                attempts: 1,
            },
            retry: true,
            wait: None,
        })?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| protocol(format!("the completion is not JSON: {e}")))?;
    if let Some(e) = body_error(&v) {
        return Err(AttemptError {
            error: LlmError::Failed(e),
            retry: false,
            wait: None,
        });
    }
    v["choices"][0]["message"]["content"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| protocol("the completion has no choices[0].message.content".to_owned()))
}

fn protocol(detail: String) -> AttemptError {
    AttemptError {
        error: LlmError::Protocol(detail),
        retry: false,
        wait: None,
    }
}

/// The error a completion or chunk reports in its body (`error`, or Groq's `x_groq.error`).
fn body_error(v: &Value) -> Option<String> {
    v["error"]["message"]
        .as_str()
        .or_else(|| v["error"].as_str())
        .or_else(|| v["x_groq"]["error"].as_str())
        .map(str::to_owned)
}

impl Generator for OpenAiGenerator {
    fn name(&self) -> String {
        format!("openai:{}", self.config.model)
    }

    fn generate(&self, prompt: &Prompt) -> Result<String, ModelError> {
        let body = self.body(prompt, false);
        self.with_retries(|left| {
            let mut response = self.post(&body, left)?;
            read_completion(&mut response)
        })
    }

    fn generate_stream(
        &self,
        prompt: &Prompt,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<String, ModelError> {
        let body = self.body(prompt, true);
        self.with_retries(|left| {
            let mut response = self.post(&body, left)?;
            let whole = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            if whole {
                // A server that ignores `stream: true` answers with the whole completion.
                let text = read_completion(&mut response)?;
                on_text(&text);
                return Ok(text);
            }
            let mut events = SseReader::new(BufReader::new(response.into_body().into_reader()));
            let mut text = String::new();
            let mut finished = false;
            loop {
                let event = events.next_event().map_err(|e| {
                    // Mid-stream: what was passed on cannot be taken back, so no retry.
                    AttemptError {
                        error: LlmError::Unavailable {
                            status: Some(200),
                            detail: format!("the stream broke off: {e}"),
                            attempts: 1,
                        },
                        retry: text.is_empty(),
                        wait: None,
                    }
                })?;
                let Some(event) = event else {
                    if finished {
                        return Ok(text);
                    }
                    return Err(protocol("the stream ended before [DONE]".to_owned()));
                };
                let data = event.data.trim();
                if data == "[DONE]" {
                    return Ok(text);
                }
                let v: Value = serde_json::from_str(data).map_err(|e| {
                    protocol(format!(
                        "malformed stream chunk ({e}): {}",
                        data.chars().take(120).collect::<String>()
                    ))
                })?;
                if let Some(e) = body_error(&v) {
                    return Err(AttemptError {
                        error: LlmError::Failed(e),
                        retry: false,
                        wait: None,
                    });
                }
                let choice = &v["choices"][0];
                if let Some(piece) = choice["delta"]["content"].as_str()
                    && !piece.is_empty()
                {
                    text.push_str(piece);
                    on_text(piece);
                }
                if choice["finish_reason"].is_string() {
                    finished = true;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_statuses_map_to_what_a_caller_can_act_on() {
        let e = status_error(
            401,
            r#"{"error":{"message":"Invalid API Key","type":"invalid_request_error","code":"invalid_api_key"}}"#,
            "m",
        );
        assert!(matches!(e.error, LlmError::Unauthorized { .. }) && !e.retry);
        let e = status_error(
            400,
            r#"{"error":{"message":"The model `llama-3.1-8b-instant` has been decommissioned","code":"model_decommissioned"}}"#,
            "llama-3.1-8b-instant",
        );
        assert!(matches!(e.error, LlmError::UnknownModel { .. }) && !e.retry);
        assert!(e.error.to_string().contains("llama-3.1-8b-instant"));
        let e = status_error(404, "not json", "m");
        assert!(matches!(e.error, LlmError::UnknownModel { .. }));
        let e = status_error(
            429,
            r#"{"error":{"message":"Rate limit reached","code":"rate_limit_exceeded"}}"#,
            "m",
        );
        assert!(e.retry);
        assert!(status_error(503, "", "m").retry);
        assert!(status_error(498, "", "m").retry);
        let e = status_error(400, r#"{"error":{"message":"n must be 1"}}"#, "m");
        assert!(matches!(e.error, LlmError::Rejected { status: 400, .. }) && !e.retry);
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let mut c = OpenAiConfig::new("https://api.groq.com/openai/v1", "openai/gpt-oss-20b");
        c.api_key = Some("gsk_secret".to_owned());
        assert!(!format!("{c:?}").contains("gsk_secret"));
    }

    #[test]
    fn a_bad_base_url_or_empty_model_is_refused() {
        assert!(OpenAiGenerator::new(OpenAiConfig::new("api.groq.com", "m")).is_err());
        assert!(OpenAiGenerator::new(OpenAiConfig::new("https://x", " ")).is_err());
    }
}
