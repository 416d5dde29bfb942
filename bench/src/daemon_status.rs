//! Reading a running daemon's `/v1/admin/status` for the benchmarks that follow its consumers
//! (Firestore, Qdrant): the status, one consumer's position, one sync consumer's counters, and
//! a bounded wait for a condition.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http_client::Connection;

/// `GET /v1/admin/status` (with `Bearer token` when given).
pub fn status(address: &str, token: Option<&str>) -> anyhow::Result<Value> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let (code, body) = Connection::new(address).request("GET", "/v1/admin/status", "", &headers)?;
    anyhow::ensure!(code == 200, "GET /v1/admin/status answered {code}: {body}");
    Ok(serde_json::from_str(&body)?)
}

/// A change-log consumer's entry (`cursor`, `lag`, `lag_seconds`), or null.
pub fn consumer<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["consumers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

/// A sync consumer's counters (`written`, `requests`, `retries`, ...), or null.
pub fn sync<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["sync"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

/// Waits (bounded, polling every 10 ms) until `done`; how long that took.
pub fn wait(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while !done()? {
        anyhow::ensure!(
            started.elapsed() < timeout,
            "{what}: not reached in {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(started.elapsed())
}
