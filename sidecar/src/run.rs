//! `backup run`: the nightly job. Optionally a daemon checkpoint (so RocksDB is never copied
//! while open), the backup, retention (forget + prune), the status record, and on any failure an
//! alert. The checkpoint is removed whatever happens, so a failed run leaves nothing the next
//! one trips over.

use std::path::PathBuf;
use std::time::Duration;

use crate::alert;
use crate::config::Config;
use crate::daemon_client::{self, DaemonError};
use crate::progress::Bars;
use crate::repository::{BackupSummary, Repo, RepoError, keep_options};
use crate::status::{RunStatus, StatusFile};
use crate::time::now_secs;

/// How a run ended, for the caller's exit code.
#[derive(Debug)]
pub struct RunOutcome {
    /// What was recorded in the status file.
    pub record: RunStatus,
    pub summary: Option<BackupSummary>,
    pub forgotten: usize,
    /// `Some` when the run failed.
    pub error: Option<RepoError>,
    /// The alert could not be delivered (the run's own result is unchanged).
    pub alert_error: Option<String>,
}

fn from_daemon(e: DaemonError) -> RepoError {
    match e {
        DaemonError::Unreachable { .. } => RepoError::Failed(format!("checkpoint: {e}")),
        DaemonError::Status { .. } => RepoError::Failed(format!("checkpoint: {e}")),
    }
}

/// Runs the whole job and records it; never panics on a failing step.
pub fn backup_run(config: &Config, init: bool, bars: Bars) -> RunOutcome {
    let started = now_secs();
    let host = config.host();
    let mut checkpoint: Option<PathBuf> = None;
    let mut location = config.repository.location.clone();
    let result = (|| -> Result<(BackupSummary, usize), RepoError> {
        let mut sources: Vec<PathBuf> = config.backup.sources.iter().map(PathBuf::from).collect();
        if !config.backup.daemon_url.is_empty() {
            let name = format!("sidecar-{started}");
            let dir = daemon_client::checkpoint(
                &config.backup.daemon_url,
                config.backup.daemon_token.expose(),
                &config.backup.daemon_data_dir,
                &name,
            )
            .map_err(from_daemon)?;
            checkpoint = Some(dir.clone());
            // The daemon's live data directory is never read: the checkpoint stands for it.
            let data_dir = PathBuf::from(&config.backup.daemon_data_dir);
            sources.retain(|s| !s.starts_with(&data_dir));
            sources.push(dir);
        }
        if sources.is_empty() {
            return Err(RepoError::Config(
                "nothing to back up: backup.sources is empty and no daemon is configured".into(),
            ));
        }
        let mut repo = Repo::open_or_init(config, bars, init)?;
        location = repo.location().to_owned();
        let summary = repo.backup(
            &sources,
            &config.backup.exclude,
            &host,
            &config.backup.tags,
            None,
        )?;
        tracing::info!(snapshot = %summary.snapshot_id, files = summary.files, bytes_added = summary.bytes_added, "backup saved");
        let decisions = repo.forget(&keep_options(config), now_secs(), false)?;
        let forgotten = decisions.iter().filter(|d| !d.keep).count();
        if config.retention.prune && forgotten > 0 {
            repo.prune()?;
        }
        Ok((summary, forgotten))
    })();
    if let Some(dir) = &checkpoint
        && let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove the checkpoint");
    }
    let finished = now_secs();
    let record = match &result {
        Ok((summary, forgotten)) => {
            RunStatus::ok(started, finished, &location, &host, summary, *forgotten)
        }
        Err(e) => RunStatus::failed(
            started,
            finished,
            &location,
            &host,
            e.kind(),
            &e.to_string(),
        ),
    };
    let alert_error = record_status(config, &record);
    match result {
        Ok((summary, forgotten)) => RunOutcome {
            record,
            summary: Some(summary),
            forgotten,
            error: None,
            alert_error,
        },
        Err(e) => {
            tracing::error!(error = %e, "backup run failed");
            let alert_error = deliver_alert(config, &host, "backup run", e.kind(), &e.to_string())
                .err()
                .or(alert_error);
            RunOutcome {
                record,
                summary: None,
                forgotten: 0,
                error: Some(e),
                alert_error,
            }
        }
    }
}

/// Writes `record` to the status file and, when `backup.daemon_url` is set, to the daemon (so
/// it shows in its `/v1/admin/status`); a status file that cannot be written alerts. Returns
/// the alert's own failure, if any.
pub fn record_status(config: &Config, record: &RunStatus) -> Option<String> {
    let file = match StatusFile::record(&config.status.file, record.clone()) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "could not record the run's status");
            return deliver_alert(
                config,
                &config.host(),
                "recording the backup status",
                "status",
                &e.to_string(),
            )
            .err();
        }
    };
    if !config.backup.daemon_url.is_empty()
        && let Err(e) = daemon_client::report_status(
            &config.backup.daemon_url,
            config.backup.daemon_token.expose(),
            &file,
        )
    {
        // The status file is the record; the daemon's copy is for display.
        tracing::warn!(error = %e, "could not hand the backup status to the daemon");
    }
    None
}

/// Sends an alert when a webhook is configured (`Ok` when none is).
pub fn deliver_alert(
    config: &Config,
    host: &str,
    what: &str,
    kind: &str,
    error: &str,
) -> Result<(), String> {
    let url = config.alert.rocketchat_webhook_url.expose();
    if url.is_empty() {
        tracing::warn!(
            "no alert.rocketchat_webhook_url configured: the failure is only logged and recorded"
        );
        return Ok(());
    }
    let text = alert::message(
        host,
        what,
        kind,
        error,
        &config.status.file.display().to_string(),
    );
    alert::post(url, &text, 4, Duration::from_millis(500)).map_err(|e| {
        tracing::error!(error = %e, "the alert could not be delivered");
        e.to_string()
    })
}
