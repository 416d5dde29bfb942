//! The status record of the last backup run (JSON file, written whole and atomically), and the
//! freshness check `backup status --max-age` runs for monitoring.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::repository::BackupSummary;

/// One run's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
        let tmp = path.with_extension("json.partial");
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| StatusError::Write {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(write_err)?;
            f.write_all(&bytes).map_err(write_err)?;
            f.sync_all().map_err(write_err)?;
        }
        std::fs::rename(&tmp, path).map_err(write_err)?;
        Ok(file)
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
    /// A finished successful run.
    pub fn ok(
        started: i64,
        finished: i64,
        repository: &str,
        host: &str,
        summary: &BackupSummary,
        forgotten: usize,
    ) -> Self {
        RunStatus {
            outcome: "ok".into(),
            snapshot_id: Some(summary.snapshot_id.clone()),
            files: Some(summary.files),
            bytes_added: Some(summary.bytes_added),
            bytes_processed: Some(summary.bytes_processed),
            forgotten: Some(forgotten),
            error_kind: None,
            error: None,
            ..RunStatus::base(started, finished, repository, host)
        }
    }

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
            ..RunStatus::base(started, finished, repository, host)
        }
    }

    fn base(started: i64, finished: i64, repository: &str, host: &str) -> Self {
        RunStatus {
            outcome: String::new(),
            started_at: crate::time::rfc3339(started),
            finished_at: crate::time::rfc3339(finished),
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

    fn summary() -> BackupSummary {
        BackupSummary {
            snapshot_id: "abc".into(),
            files: 3,
            files_new: 3,
            files_changed: 0,
            bytes_processed: 10,
            bytes_added: 10,
            bytes_added_packed: 8,
        }
    }

    #[test]
    fn a_failed_run_keeps_the_last_success_and_staleness_is_reported_with_the_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/status.json");
        StatusFile::record(&path, RunStatus::ok(1000, 1060, "repo", "h", &summary(), 0))
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
        assert!(!dir.path().join("sub/status.json.partial").exists());
    }

    #[test]
    fn no_run_at_all_is_not_fresh() {
        let e = StatusFile::default()
            .fresh(Duration::from_secs(60), 0)
            .expect_err("empty");
        assert!(e.contains("no backup has run yet"));
    }
}
