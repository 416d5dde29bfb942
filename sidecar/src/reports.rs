//! Run reports beside the repository: how a temporary backup server tells `backup ephemeral`
//! what its `backup run --report RUN_ID` did. The report is the run's status record, stored as
//! `concierge-reports/<run id>.json` under the repository's own location (the bucket prefix, or
//! the local directory), so it needs no network path back to the orchestrator and no credential
//! the server does not already hold. restic and rustic ignore the extra directory (they read
//! only their own `config`, `keys/`, `snapshots/`, `index/`, `data/`, `locks/`); the tests run
//! `restic check` over a repository that carries one.

use std::path::PathBuf;

use crate::config::{Config, Location};
use crate::repository::{RepoError, s3_client};
use crate::s3::client::{S3Client, S3Error};
use crate::status::RunStatus;

/// The directory (or key prefix) of the reports inside the repository's location.
pub const DIR: &str = "concierge-reports";

/// Where reports are kept.
#[derive(Debug)]
pub enum Reports {
    Local(PathBuf),
    S3 {
        client: Box<S3Client>,
        prefix: String,
    },
}

/// A run id: what `backup ephemeral` generates (lower-case letters, digits, dashes), so it is
/// safe as a file name and a label value.
pub fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

impl Reports {
    /// The reports of the configured repository.
    pub fn open(config: &Config) -> Result<Self, RepoError> {
        match config
            .location()
            .map_err(|e| RepoError::Config(e.to_string()))?
        {
            Location::Local(path) => Ok(Reports::Local(path.join(DIR))),
            Location::S3 { bucket, prefix } => Ok(Reports::S3 {
                client: Box::new(s3_client(config, &bucket)?),
                prefix: if prefix.is_empty() {
                    DIR.to_owned()
                } else {
                    format!("{prefix}/{DIR}")
                },
            }),
        }
    }

    fn checked(run_id: &str) -> Result<&str, String> {
        if valid_run_id(run_id) {
            Ok(run_id)
        } else {
            Err(format!(
                "invalid run id {run_id:?}: lower-case letters, digits and dashes, at most 63"
            ))
        }
    }

    /// Stores the report of `run_id` (written whole: atomically on a local path, or one PUT).
    pub fn put(&self, run_id: &str, report: &RunStatus) -> Result<(), String> {
        let id = Self::checked(run_id)?;
        let bytes = serde_json::to_vec_pretty(report).map_err(|e| e.to_string())?;
        match self {
            Reports::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                let path = dir.join(format!("{id}.json"));
                concierge_infra::atomic_file::write(&path, &bytes)
                    .map_err(|e| format!("{}: {e}", path.display()))
            }
            Reports::S3 { client, prefix } => client
                .put(&format!("{prefix}/{id}.json"), &bytes)
                .map_err(|e| e.to_string()),
        }
    }

    /// The report of `run_id`, if it has arrived.
    pub fn get(&self, run_id: &str) -> Result<Option<RunStatus>, String> {
        let id = Self::checked(run_id)?;
        let bytes = match self {
            Reports::Local(dir) => match std::fs::read(dir.join(format!("{id}.json"))) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(format!("{}: {e}", dir.display())),
            },
            Reports::S3 { client, prefix } => {
                match client.get(&format!("{prefix}/{id}.json"), None) {
                    Ok(b) => b,
                    Err(S3Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e.to_string()),
                }
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("the report of run {id} is not a status record: {e}"))
    }

    /// Removes the report of `run_id` (a missing one is fine).
    pub fn delete(&self, run_id: &str) -> Result<(), String> {
        let id = Self::checked(run_id)?;
        match self {
            Reports::Local(dir) => match std::fs::remove_file(dir.join(format!("{id}.json"))) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(format!("{}: {e}", dir.display())),
            },
            Reports::S3 { client, prefix } => client
                .delete(&format!("{prefix}/{id}.json"))
                .map_err(|e| e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_safe_file_names_and_label_values() {
        assert!(valid_run_id("20261202t020000-3fa9"));
        for bad in ["", "../x", "A", "a/b", "-a", "a-", &"a".repeat(64), "a b"] {
            assert!(!valid_run_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_local_report_round_trips_and_deleting_twice_is_fine() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reports = Reports::Local(dir.path().join(DIR));
        assert_eq!(reports.get("run-1").expect("get"), None);
        let status = RunStatus::failed(1, 2, "/repo", "h", "disk_full", "no space");
        reports.put("run-1", &status).expect("put");
        assert_eq!(reports.get("run-1").expect("get"), Some(status));
        reports.delete("run-1").expect("delete");
        reports.delete("run-1").expect("delete again");
        assert!(
            reports
                .put("../escape", &RunStatus::failed(1, 2, "r", "h", "k", "m"))
                .is_err()
        );
    }
}
