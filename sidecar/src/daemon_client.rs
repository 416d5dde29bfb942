//! The daemon's admin API as the sidecar uses it: a consistent checkpoint to back up instead of
//! the open RocksDB (`POST /v1/admin/checkpoint`), removed after the backup.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

/// A checkpoint problem.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("the daemon at {url} answered {status}: {detail}")]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("the daemon at {url} cannot be reached: {detail}")]
    Unreachable { url: String, detail: String },
}

/// Asks the daemon for a checkpoint named `name`; its directory as seen from here.
pub fn checkpoint(
    url: &str,
    token: &str,
    data_dir: &str,
    name: &str,
) -> Result<PathBuf, DaemonError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(600)))
        .http_status_as_error(false)
        .build()
        .into();
    let endpoint = format!("{}/v1/admin/checkpoint", url.trim_end_matches('/'));
    let mut req = agent
        .post(&endpoint)
        .header("Content-Type", "application/json");
    let auth = format!("Bearer {token}");
    if !token.is_empty() {
        req = req.header("Authorization", &auth);
    }
    let mut r = req
        .send(&json!({ "name": name }).to_string())
        .map_err(|e| DaemonError::Unreachable {
            url: url.to_owned(),
            detail: e.to_string(),
        })?;
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    if status != 200 {
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let detail = v["detail"]
            .as_str()
            .map_or_else(|| text.chars().take(200).collect(), str::to_owned);
        return Err(DaemonError::Status {
            url: url.to_owned(),
            status,
            detail,
        });
    }
    Ok(PathBuf::from(data_dir).join("checkpoints").join(name))
}
