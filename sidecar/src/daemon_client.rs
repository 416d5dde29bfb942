//! The daemon's admin API as the sidecar uses it: a consistent checkpoint to back up instead of
//! the open RocksDB (`POST /v1/admin/checkpoint`), removed after the backup, and the backup
//! status handed over so the daemon shows it in `/v1/admin/status`
//! (`PUT /v1/admin/backup-status`).

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

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

/// An error answer's `detail` (problem+json), else the start of its text.
fn detail_of(text: &str) -> String {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    v["detail"]
        .as_str()
        .map_or_else(|| text.chars().take(200).collect(), str::to_owned)
}

/// Hands the status record to the daemon (`PUT /v1/admin/backup-status`).
pub fn report_status(
    url: &str,
    token: &str,
    status: &crate::status::StatusFile,
) -> Result<(), DaemonError> {
    let endpoint = format!("{}/v1/admin/backup-status", url.trim_end_matches('/'));
    let body = serde_json::to_string(status).map_err(|e| DaemonError::Status {
        url: url.to_owned(),
        status: 0,
        detail: e.to_string(),
    })?;
    let mut req = agent(Duration::from_secs(30))
        .put(&endpoint)
        .header("Content-Type", "application/json");
    let auth = format!("Bearer {token}");
    if !token.is_empty() {
        req = req.header("Authorization", &auth);
    }
    let mut r = req.send(&body).map_err(|e| DaemonError::Unreachable {
        url: url.to_owned(),
        detail: e.to_string(),
    })?;
    let status = r.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let text = r.body_mut().read_to_string().unwrap_or_default();
    Err(DaemonError::Status {
        url: url.to_owned(),
        status,
        detail: detail_of(&text),
    })
}

/// Asks the daemon for a checkpoint named `name`; its directory as seen from here.
pub fn checkpoint(
    url: &str,
    token: &str,
    data_dir: &str,
    name: &str,
) -> Result<PathBuf, DaemonError> {
    let agent = agent(Duration::from_secs(600));
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
        return Err(DaemonError::Status {
            url: url.to_owned(),
            status,
            detail: detail_of(&text),
        });
    }
    Ok(PathBuf::from(data_dir).join("checkpoints").join(name))
}
