//! The sidecar's backup status as the daemon keeps it: the last run and the last successful one,
//! handed over by `concierge-sidecar` (`PUT /v1/admin/backup-status`) and shown in
//! `GET /v1/admin/status` under `backup`. Stored as `<data_dir>/backup-status.json`, written
//! whole (temporary file, fsync, rename) so a restart still shows it; it is display only, never
//! read back by the sidecar.

use std::path::{Path, PathBuf};

use concierge_infra::atomic_file;
use concierge_infra::backup_status::StatusFile;
use serde_json::Value;

const FILE: &str = "backup-status.json";

/// Why a status was refused or could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum BackupStatusError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot write {path}: {detail}")]
    Write { path: String, detail: String },
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// Checks the shape the sidecar sends: its status file (`concierge_infra::backup_status`), with
/// nothing missing or unknown and outcomes `ok` or `failed`.
pub fn validate(status: &Value) -> Result<StatusFile, BackupStatusError> {
    let file: StatusFile = serde_json::from_value(status.clone()).map_err(|e| {
        BackupStatusError::Invalid(format!(
            "not a backup status record {{last_run, last_success}}: {e}"
        ))
    })?;
    file.validate().map_err(BackupStatusError::Invalid)?;
    if file.last_run.is_none() {
        return Err(BackupStatusError::Invalid(
            "a backup status record needs last_run (the sidecar sends one after every run)"
                .to_owned(),
        ));
    }
    Ok(file)
}

/// Stores `status` (validated first), atomically and durably.
pub fn store(data_dir: &Path, status: &Value) -> Result<(), BackupStatusError> {
    let file = validate(status)?;
    let target = path(data_dir);
    let err = |detail: String| BackupStatusError::Write {
        path: target.display().to_string(),
        detail,
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(|e| err(e.to_string()))?;
    atomic_file::write(&target, &bytes).map_err(|e| err(e.to_string()))
}

/// The stored status; `None` when the sidecar never sent one (or the file is unreadable, which
/// is logged: it is display only).
pub fn load(data_dir: &Path) -> Option<Value> {
    let p = path(data_dir);
    match std::fs::read(&p) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(path = %p.display(), error = %e, "the backup status file is not JSON");
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(path = %p.display(), error = %e, "cannot read the backup status file");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_status_round_trips_and_bad_shapes_are_refused_without_touching_the_stored_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path()), None);
        let run = concierge_infra::backup_status::RunStatus {
            snapshot_id: Some("abc".into()),
            ..concierge_infra::backup_status::RunStatus::succeeded(1, 2, "/repo", "h")
        };
        let good = serde_json::to_value(StatusFile {
            last_run: Some(run.clone()),
            last_success: Some(run),
        })
        .expect("JSON");
        store(dir.path(), &good).expect("store");
        for bad in [
            json!([1]),
            json!({"last_run": {"outcome": "maybe"}}),
            json!({"surprise": 1}),
            json!({"last_run": {"outcome": "ok"}}),
        ] {
            assert!(matches!(
                store(dir.path(), &bad),
                Err(BackupStatusError::Invalid(_))
            ));
        }
        assert_eq!(load(dir.path()), Some(good));
    }
}
