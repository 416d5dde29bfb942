//! The record of the last backup runs: what `concierge-sidecar` writes to its status file (whole
//! and atomically), reads for the freshness check `backup status --max-age`, and sends to the
//! daemon (`PUT /v1/admin/backup-status`), which validates and shows it. One type for both sides,
//! so the wire format cannot drift.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One run's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunStatus {
    /// `ok` or `failed`.
    pub outcome: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub finished_at: String,
    pub started_at_unix: i64,
    pub finished_at_unix: i64,
    pub duration_s: f64,
    pub repository: String,
    pub host: String,
    pub snapshot_id: Option<String>,
    pub files: Option<u64>,
    pub bytes_added: Option<u64>,
    pub bytes_processed: Option<u64>,
    /// Snapshots removed by retention.
    pub forgotten: Option<usize>,
    /// The failure's kind (`unreachable`, `wrong_password`, `disk_full`, ...) and message.
    pub error_kind: Option<String>,
    pub error: Option<String>,
    /// The temporary Hetzner server the run happened on (`backup ephemeral`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// The file: the last run, and the last successful one (what freshness is measured from).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusFile {
    pub last_run: Option<RunStatus>,
    pub last_success: Option<RunStatus>,
}

/// A status problem.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot read the status file {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("cannot write the status file {path}: {detail}")]
    Write { path: String, detail: String },
}

impl StatusFile {
    /// Reads the file (missing: empty).
    pub fn read(path: &Path) -> Result<Self, StatusError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StatusError::Read {
                path: path.display().to_string(),
                detail: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StatusFile::default()),
            Err(e) => Err(StatusError::Read {
                path: path.display().to_string(),
                detail: e.to_string(),
            }),
        }
    }

    /// Records `run` and writes the file atomically (temporary file, fsync, rename).
    pub fn record(path: &Path, run: RunStatus) -> Result<StatusFile, StatusError> {
        let mut file = StatusFile::read(path).unwrap_or_default();
        if run.outcome == "ok" {
            file.last_success = Some(run.clone());
        }
        file.last_run = Some(run);
        let write_err = |e: std::io::Error| StatusError::Write {
            path: path.display().to_string(),
            detail: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| StatusError::Write {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        crate::atomic_file::write(path, &bytes).map_err(write_err)?;
        Ok(file)
    }

    /// Checks what serde cannot: every outcome is `ok` or `failed`, and `last_success` is a
    /// successful run.
    pub fn validate(&self) -> Result<(), String> {
        for (name, run) in [
            ("last_run", &self.last_run),
            ("last_success", &self.last_success),
        ] {
            if let Some(run) = run
                && run.outcome != "ok"
                && run.outcome != "failed"
            {
                return Err(format!(
                    "{name}.outcome must be \"ok\" or \"failed\", got {:?}",
                    run.outcome
                ));
            }
        }
        if self
            .last_success
            .as_ref()
            .is_some_and(|r| r.outcome != "ok")
        {
            return Err("last_success.outcome must be \"ok\"".to_owned());
        }
        Ok(())
    }

    /// Is the last good backup recent enough? `Err` says why not.
    pub fn fresh(&self, max_age: Duration, now_unix: i64) -> Result<&RunStatus, String> {
        let Some(good) = &self.last_success else {
            return Err(match &self.last_run {
                Some(r) => format!(
                    "no backup has succeeded yet; the last run failed at {}: {}",
                    r.finished_at,
                    r.error.as_deref().unwrap_or("unknown error")
                ),
                None => "no backup has run yet".to_owned(),
            });
        };
        let age = now_unix.saturating_sub(good.finished_at_unix);
        let limit = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        if age > limit {
            let failed = self
                .last_run
                .as_ref()
                .filter(|r| r.outcome != "ok")
                .map(|r| {
                    format!(
                        "; the last run failed at {}: {}",
                        r.finished_at,
                        r.error.as_deref().unwrap_or("unknown error")
                    )
                })
                .unwrap_or_default();
            return Err(format!(
                "the last good backup ({}) finished {:.1} h ago, more than the allowed {:.1} h{failed}",
                good.snapshot_id.as_deref().unwrap_or("?"),
                age as f64 / 3600.0,
                limit as f64 / 3600.0
            ));
        }
        Ok(good)
    }
}

impl RunStatus {
    /// A failed run.
    pub fn failed(
        started: i64,
        finished: i64,
        repository: &str,
        host: &str,
        kind: &str,
        error: &str,
    ) -> Self {
        RunStatus {
            outcome: "failed".into(),
            error_kind: Some(kind.to_owned()),
            error: Some(error.to_owned()),
            ..RunStatus::succeeded(started, finished, repository, host)
        }
    }

    /// A successful run without its figures (the caller fills `snapshot_id`, `files`, ...).
    pub fn succeeded(started: i64, finished: i64, repository: &str, host: &str) -> Self {
        RunStatus {
            outcome: "ok".to_owned(),
            started_at: crate::utc::rfc3339(started),
            finished_at: crate::utc::rfc3339(finished),
            started_at_unix: started,
            finished_at_unix: finished,
            duration_s: (finished - started) as f64,
            repository: repository.to_owned(),
            host: host.to_owned(),
            snapshot_id: None,
            files: None,
            bytes_added: None,
            bytes_processed: None,
            forgotten: None,
            error_kind: None,
            error: None,
            server: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_keeps_the_last_success_and_staleness_is_reported_with_the_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/status.json");
        StatusFile::record(
            &path,
            RunStatus {
                snapshot_id: Some("abc".into()),
                ..RunStatus::succeeded(1000, 1060, "repo", "h")
            },
        )
        .expect("write");
        let file = StatusFile::record(
            &path,
            RunStatus::failed(90_000, 90_010, "repo", "h", "unreachable", "cannot reach"),
        )
        .expect("write");
        assert_eq!(
            file.last_success
                .as_ref()
                .and_then(|r| r.snapshot_id.as_deref()),
            Some("abc")
        );
        let back = StatusFile::read(&path).expect("read");
        assert_eq!(back, file);
        let day = Duration::from_secs(26 * 3600);
        assert!(back.fresh(day, 1060 + 3600).is_ok());
        let stale = back.fresh(day, 1060 + 27 * 3600).expect_err("stale");
        assert!(
            stale.contains("more than the allowed 26.0 h") && stale.contains("cannot reach"),
            "{stale}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub"))
                .expect("list")
                .count(),
            1,
            "no temporary file is left"
        );
    }

    #[test]
    fn no_run_at_all_is_not_fresh() {
        let e = StatusFile::default()
            .fresh(Duration::from_secs(60), 0)
            .expect_err("empty");
        assert!(e.contains("no backup has run yet"));
    }

    #[test]
    fn validation_refuses_unknown_outcomes_and_fields() {
        let mut file = StatusFile {
            last_run: Some(RunStatus::failed(1, 2, "r", "h", "k", "m")),
            last_success: None,
        };
        assert!(file.validate().is_ok());
        file.last_success = file.last_run.clone();
        assert!(file.validate().is_err(), "a failed run is no success");
        if let Some(r) = file.last_run.as_mut() {
            r.outcome = "maybe".into();
        }
        assert!(file.validate().is_err());
        assert!(serde_json::from_str::<StatusFile>(r#"{"surprise": 1}"#).is_err());
    }
}
