//! The jobs someone watches: each records its outcome where monitoring reads it and alerts on
//! failure, so the commands only translate.
//!
//! - [`backup_run`], the nightly job: optionally a daemon checkpoint (so RocksDB is never
//!   copied while open), the backup, retention (forget + prune), the status record, and on any
//!   failure an alert. The checkpoint is removed whatever happens, so a failed run leaves
//!   nothing the next one trips over; with a report id the record also goes beside the
//!   repository (how a temporary server reports back).
//! - [`backup_ephemeral`]: the same run on a temporary Hetzner server, recorded and alerted
//!   here; servers that could not be deleted alert too.
//! - [`check`]: the repository's check; problems alert.
//! - [`status`]: the freshness check of the status record; a stale or failed last run alerts.

use std::path::PathBuf;
use std::time::Duration;

use crate::alert;
use crate::config::Config;
use crate::daemon_client::{self, DaemonError};
use crate::ephemeral::{self, EphemeralOutcome};
use crate::error::Error;
use crate::progress::Bars;
use crate::reports::{Reports, valid_run_id};
use crate::repository::{BackupSummary, Repo, RepoError, keep_options};
use crate::status::{RunStatus, StatusFile};
use concierge_infra::utc::now_secs;

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
    /// The status file could not be written: the run fails even if its backup succeeded.
    pub status_error: Option<String>,
}

fn from_daemon(e: DaemonError) -> RepoError {
    match e {
        DaemonError::Unreachable { .. } => RepoError::Failed(format!("checkpoint: {e}")),
        DaemonError::Status { .. } => RepoError::Failed(format!("checkpoint: {e}")),
    }
}

impl RunOutcome {
    /// The summary and the snapshots forgotten, or the run's error.
    pub fn into_result(self) -> Result<(BackupSummary, usize), Error> {
        match (self.error, self.summary) {
            (Some(e), _) => Err(e.into()),
            (None, _) if self.status_error.is_some() => {
                Err(Error::Fatal(self.status_error.unwrap_or_default()))
            }
            (None, Some(summary)) => Ok((summary, self.forgotten)),
            (None, None) => Err(Error::Fatal("the run ended without a snapshot".into())),
        }
    }
}

/// Runs the whole job and records it (with `report`, also as that run's report beside the
/// repository); never panics on a failing step.
pub fn backup_run(
    config: &Config,
    init: bool,
    report: Option<&str>,
    bars: Bars,
) -> Result<RunOutcome, Error> {
    if let Some(id) = report
        && !valid_run_id(id)
    {
        return Err(Error::Usage(format!(
            "--report {id:?}: lower-case letters, digits and dashes"
        )));
    }
    let outcome = run_and_record(config, init, bars);
    if let Some(id) = report {
        Reports::open(config)
            .map_err(|e| e.to_string())
            .and_then(|r| r.put(id, &outcome.record))
            .map_err(|e| Error::Fatal(format!("the report {id} cannot be stored: {e}")))?;
    }
    Ok(outcome)
}

fn run_and_record(config: &Config, init: bool, bars: Bars) -> RunOutcome {
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
            crate::status::succeeded(started, finished, &location, &host, summary, *forgotten)
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
    let Recorded {
        status_error,
        alert_error,
    } = record_status(config, &record);
    match result {
        Ok((summary, forgotten)) => RunOutcome {
            record,
            summary: Some(summary),
            forgotten,
            error: None,
            alert_error,
            status_error,
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
                status_error,
            }
        }
    }
}

/// `backup ephemeral`: the run on a temporary server, its status recorded, its failure and any
/// server left behind alerted.
pub fn backup_ephemeral(config: &Config) -> EphemeralOutcome {
    let mut outcome = ephemeral::backup_ephemeral(config);
    let Recorded {
        status_error,
        mut alert_error,
    } = record_status(config, &outcome.record);
    outcome.status_error = status_error;
    let host = config.host();
    if let Some(e) = &outcome.error {
        tracing::error!(error = %e, "backup ephemeral failed");
        alert_error = deliver_alert(config, &host, "backup ephemeral", &e.kind(), &e.to_string())
            .err()
            .or(alert_error);
    }
    if !outcome.leftovers.is_empty() {
        let text = Error::Leftovers(outcome.leftovers.clone()).to_string();
        tracing::error!("{text}");
        alert_error = deliver_alert(
            config,
            &host,
            "deleting the temporary backup server",
            "cleanup",
            &text,
        )
        .err()
        .or(alert_error);
    }
    outcome.alert_error = alert_error;
    outcome
}

/// Success only when the ephemeral run succeeded and nothing was left behind; the run's own
/// failure comes first.
pub fn ephemeral_result(outcome: EphemeralOutcome) -> Result<RunStatus, Error> {
    match outcome.error {
        Some(e) => Err(e.into()),
        None if !outcome.leftovers.is_empty() => Err(Error::Leftovers(outcome.leftovers)),
        None if outcome.status_error.is_some() => {
            Err(Error::Fatal(outcome.status_error.unwrap_or_default()))
        }
        None => Ok(outcome.record),
    }
}

/// `backup check`: the problems found are an error (and an alert).
pub fn check(config: &Config, read_data_percent: Option<f64>, bars: Bars) -> Result<(), Error> {
    if let Some(p) = read_data_percent
        && !(p > 0.0 && p <= 100.0)
    {
        return Err(Error::Usage(
            "--read-data-subset must be a percentage in (0, 100]".into(),
        ));
    }
    match Repo::open(config, bars).and_then(|r| r.check(read_data_percent)) {
        Ok(_) => Ok(()),
        Err(RepoError::Failed(msg)) => {
            let _ = deliver_alert(config, &config.host(), "backup check", "check", &msg);
            Err(Error::CheckFailed(msg))
        }
        Err(e) => Err(e.into()),
    }
}

/// `backup status`: the status file and its last good run when that is younger than
/// `max_age`; otherwise (or without a readable file) an error and an alert.
pub fn status(config: &Config, max_age: Duration) -> Result<(StatusFile, RunStatus), Error> {
    let file = StatusFile::read(&config.status.file).map_err(|e| {
        let text = e.to_string();
        let _ = deliver_alert(config, &config.host(), "backup status", "status", &text);
        Error::Stale(text)
    })?;
    match file.fresh(max_age, now_secs()) {
        Ok(good) => {
            let good = good.clone();
            Ok((file, good))
        }
        Err(why) => {
            let _ = deliver_alert(config, &config.host(), "backup status check", "stale", &why);
            Err(Error::Stale(why))
        }
    }
}

/// Why the run's status could not be recorded, and whether alerting that failed too.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// The status file could not be written (monitoring reading it would not see this run).
    pub status_error: Option<String>,
    /// The alert could not be delivered.
    pub alert_error: Option<String>,
}

/// Writes `record` to the status file and, when `backup.daemon_url` is set, to the daemon (so
/// it shows in its `/v1/admin/status`); a status file that cannot be written alerts and makes
/// the run fail.
pub fn record_status(config: &Config, record: &RunStatus) -> Recorded {
    let file = match StatusFile::record(&config.status.file, record.clone()) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "could not record the run's status");
            let text = format!(
                "the status file {} cannot be written: {e}",
                config.status.file.display()
            );
            let alert_error = deliver_alert(
                config,
                &config.host(),
                "recording the backup status",
                "status",
                &text,
            )
            .err();
            return Recorded {
                status_error: Some(text),
                alert_error,
            };
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
    Recorded::default()
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
