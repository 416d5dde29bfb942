//! The sidecar's backup status as the daemon keeps it: the last run and the last successful one,
//! handed over by `concierge-sidecar` (`PUT /v1/admin/backup-status`) and shown in
//! `GET /v1/admin/status` under `backup`. Stored as `<data_dir>/backup-status.json`, written
//! whole (temporary file, fsync, rename) so a restart still shows it; it is display only, never
//! read back by the sidecar.

use std::io::Write;
use std::path::{Path, PathBuf};

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

/// Checks the shape the sidecar sends: `{last_run, last_success}`, each null or a run record
/// with an `outcome` of `ok` or `failed`.
pub fn validate(status: &Value) -> Result<(), BackupStatusError> {
    let Some(object) = status.as_object() else {
        return Err(BackupStatusError::Invalid(
            "the backup status must be a JSON object {last_run, last_success}".into(),
        ));
    };
    for (key, value) in object {
        if key != "last_run" && key != "last_success" {
            return Err(BackupStatusError::Invalid(format!(
                "unknown field {key:?} (expected last_run, last_success)"
            )));
        }
        if value.is_null() {
            continue;
        }
        match value["outcome"].as_str() {
            Some("ok" | "failed") => {}
            _ => {
                return Err(BackupStatusError::Invalid(format!(
                    "{key}.outcome must be \"ok\" or \"failed\""
                )));
            }
        }
    }
    Ok(())
}

/// Stores `status` (validated first).
pub fn store(data_dir: &Path, status: &Value) -> Result<(), BackupStatusError> {
    validate(status)?;
    let target = path(data_dir);
    let err = |e: std::io::Error| BackupStatusError::Write {
        path: target.display().to_string(),
        detail: e.to_string(),
    };
    let tmp = data_dir.join(format!("{FILE}.partial"));
    let bytes = serde_json::to_vec_pretty(status).map_err(|e| BackupStatusError::Write {
        path: target.display().to_string(),
        detail: e.to_string(),
    })?;
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(&bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, &target).map_err(err)
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
        let good =
            json!({"last_run": {"outcome": "ok", "snapshot_id": "abc"}, "last_success": null});
        store(dir.path(), &good).expect("store");
        for bad in [
            json!([1]),
            json!({"last_run": {"outcome": "maybe"}}),
            json!({"surprise": 1}),
        ] {
            assert!(matches!(
                store(dir.path(), &bad),
                Err(BackupStatusError::Invalid(_))
            ));
        }
        assert_eq!(load(dir.path()), Some(good));
    }
}
