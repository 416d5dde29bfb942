//! `backup ephemeral`: the nightly backup on a temporary Hetzner server. Deletes servers left
//! by an earlier interrupted run (found by label, created longer than `hetzner.timeout` ago, so a
//! run still going beside this one keeps its server), picks the newest snapshot carrying
//! `hetzner.snapshot_label`, creates a server from it whose cloud-init runs `backup run --report
//! <run id>` from the configuration on the snapshot's disk, waits for the server's actions and
//! then for the run's report beside the repository (`reports`), all within `hetzner.timeout`,
//! and **always** deletes the server afterwards: on success, on failure, on timeout. The outcome
//! is recorded in the status file and a failure alerts, like `backup run`.
//!
//! The user data holds no secret (Hetzner stores it in plain text): only the command line and
//! the run id.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::hetzner::{Action, CreateServer, HetznerClient, HetznerError};
use crate::reports::Reports;
use crate::status::RunStatus;
use concierge_infra::utc::now_secs;

/// Label (key=value) on every server this command creates: how orphans are found.
pub const MANAGED_LABEL: (&str, &str) = ("concierge-sidecar", "ephemeral");
/// Label key holding the run id.
pub const RUN_LABEL: &str = "concierge-sidecar-run";
/// How long deleting a server may take (its own budget: a timed-out run still cleans up).
const DELETE_BUDGET: Duration = Duration::from_secs(600);

/// Why an ephemeral run failed.
#[derive(Debug, thiserror::Error)]
pub enum EphemeralError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Hetzner(#[from] HetznerError),
    #[error(
        "no available snapshot carries the label {0} (hetzner.snapshot_label): snapshot the server to back up and label it"
    )]
    NoSnapshot(String),
    #[error(
        "the temporary server {server} sent no report within {timeout} (hetzner.timeout); look at its console or cloud-init log"
    )]
    Timeout { server: String, timeout: String },
    #[error("the backup on the temporary server {server} failed ({kind}): {message}")]
    Remote {
        server: String,
        kind: String,
        message: String,
    },
    #[error("the report of the temporary server cannot be read: {0}")]
    Report(String),
}

impl EphemeralError {
    /// The status file's `error_kind`.
    pub fn kind(&self) -> String {
        match self {
            EphemeralError::Config(_) => "config".into(),
            EphemeralError::Hetzner(_) => "hetzner".into(),
            EphemeralError::NoSnapshot(_) => "no_snapshot".into(),
            EphemeralError::Timeout { .. } => "timeout".into(),
            EphemeralError::Remote { kind, .. } => kind.clone(),
            EphemeralError::Report(_) => "report".into(),
        }
    }
}

/// How the run ended.
#[derive(Debug)]
pub struct EphemeralOutcome {
    pub run_id: String,
    /// The record written to the status file.
    pub record: RunStatus,
    pub error: Option<EphemeralError>,
    /// Servers that could not be deleted (they cost money: alerted, an error of their own).
    pub leftovers: Vec<String>,
    /// Orphans of earlier runs deleted first.
    pub orphans_deleted: usize,
    /// The alert could not be delivered (the run's own result is unchanged).
    pub alert_error: Option<String>,
    /// The status file could not be written.
    pub status_error: Option<String>,
}

/// A fresh run id: UTC time and a random suffix (lower case, a valid label value).
pub fn new_run_id(now: i64) -> String {
    let stamp = concierge_infra::utc::rfc3339(now)
        .replace(['-', ':'], "")
        .to_ascii_lowercase()
        .trim_end_matches('z')
        .to_owned();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let salt = (u64::from(nanos) ^ (u64::from(std::process::id()) << 20)) & 0xff_ffff;
    format!("{stamp}-{salt:06x}")
}

/// The cloud-init user data: one command, no secret.
pub fn user_data(remote_binary: &str, remote_config: &str, run_id: &str) -> String {
    let argv = [
        remote_binary,
        "--config",
        remote_config,
        "backup",
        "run",
        "--report",
        run_id,
    ];
    let quoted: Vec<String> = argv
        .iter()
        .map(|a| serde_json::Value::String((*a).to_owned()).to_string())
        .collect();
    format!(
        "#cloud-config\n# concierge-sidecar backup ephemeral, run {run_id}. No secrets here: the configuration on the\n# snapshot's disk holds them.\nruncmd:\n  - [{}]\n",
        quoted.join(", ")
    )
}

/// Deletes `servers` and waits for each deletion; returns what could not be deleted.
fn delete_servers(
    client: &HetznerClient,
    servers: &[(i64, String)],
    poll: Duration,
) -> Vec<String> {
    let mut actions: Vec<(String, Action)> = Vec::new();
    let mut failed = Vec::new();
    for (id, name) in servers {
        match client.delete_server(*id) {
            Ok(Some(action)) => actions.push((name.clone(), action)),
            Ok(None) => tracing::info!(server = %name, "already deleted"),
            Err(e) => {
                tracing::error!(server = %name, error = %e, "could not delete the server");
                failed.push(format!("{name} (id {id}): {e}"));
            }
        }
    }
    for (name, action) in actions {
        match client.wait(&action, poll, DELETE_BUDGET) {
            Ok(_) => tracing::info!(server = %name, "server deleted"),
            Err(e) => {
                tracing::error!(server = %name, error = %e, "deleting the server did not finish");
                failed.push(format!("{name}: {e}"));
            }
        }
    }
    failed
}

/// Runs the whole thing; never panics on a failing step, never leaves its server running
/// unless Hetzner refuses to delete it (then `leftovers` says which).
pub fn backup_ephemeral(config: &Config) -> EphemeralOutcome {
    let started = now_secs();
    let run_id = new_run_id(started);
    let h = &config.hetzner;
    let server_name = format!("concierge-backup-{run_id}");
    let poll = h.poll_interval.get();
    let action_poll = poll.min(Duration::from_secs(2));
    let client = HetznerClient::new(
        &h.api_base,
        h.token.expose(),
        h.retries,
        Duration::from_millis(500),
    );
    let mut orphans_deleted = 0;
    let mut leftovers = Vec::new();
    let mut created = false;

    let result = (|| -> Result<RunStatus, EphemeralError> {
        if h.token.is_empty() {
            return Err(EphemeralError::Config(
                "hetzner.token (or hetzner.token_file) is required for backup ephemeral".into(),
            ));
        }
        if h.snapshot_label.trim().is_empty() {
            return Err(EphemeralError::Config(
                "hetzner.snapshot_label is empty: it selects the snapshot to start from".into(),
            ));
        }
        let timeout = h.timeout.get();
        let deadline = Instant::now() + timeout;
        let reports = Reports::open(config).map_err(|e| EphemeralError::Config(e.to_string()))?;

        // A managed server younger than a whole run may belong to a run still going (a manual
        // run beside the scheduled one): only older ones are orphans.
        let selector = format!("{}={}", MANAGED_LABEL.0, MANAGED_LABEL.1);
        let cutoff = started - i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
        let (orphans, live): (Vec<_>, Vec<_>) =
            client.servers(&selector)?.into_iter().partition(|s| {
                concierge_infra::utc::parse_rfc3339(&s.created).is_none_or(|c| c < cutoff)
            });
        for s in &live {
            tracing::warn!(server = %s.name, created = %s.created, "a temporary server of a run that may still be going: left alone");
        }
        let orphans: Vec<(i64, String)> = orphans.into_iter().map(|s| (s.id, s.name)).collect();
        if !orphans.is_empty() {
            tracing::warn!(
                count = orphans.len(),
                "deleting temporary servers left by an earlier run"
            );
            let failed = delete_servers(&client, &orphans, action_poll);
            orphans_deleted = orphans.len() - failed.len();
            leftovers.extend(failed);
        }

        let snapshot = client
            .snapshots(&h.snapshot_label)?
            .into_iter()
            .next()
            .ok_or_else(|| EphemeralError::NoSnapshot(h.snapshot_label.clone()))?;
        tracing::info!(snapshot = snapshot.id, created = %snapshot.created, "starting from the newest labelled snapshot");

        let mut labels = BTreeMap::new();
        labels.insert(MANAGED_LABEL.0.to_owned(), MANAGED_LABEL.1.to_owned());
        labels.insert(RUN_LABEL.to_owned(), run_id.clone());
        created = true;
        let answer = client.create_server(&CreateServer {
            name: server_name.clone(),
            server_type: h.server_type.clone(),
            image: snapshot.id.to_string(),
            location: h.location.clone(),
            start_after_create: true,
            ssh_keys: h.ssh_keys.clone(),
            user_data: user_data(&h.remote_binary, &h.remote_config, &run_id),
            labels,
        })?;
        tracing::info!(server = %server_name, id = answer.server.id, "temporary server created");
        for action in std::iter::once(&answer.action).chain(&answer.next_actions) {
            client.wait(
                action,
                action_poll,
                deadline.saturating_duration_since(Instant::now()),
            )?;
        }
        tracing::info!(server = %server_name, "server started; waiting for its report");
        loop {
            if let Some(report) = reports.get(&run_id).map_err(EphemeralError::Report)? {
                if let Err(e) = reports.delete(&run_id) {
                    tracing::warn!(error = %e, "could not remove the report");
                }
                if report.outcome == "ok" {
                    return Ok(report);
                }
                return Err(EphemeralError::Remote {
                    server: server_name.clone(),
                    kind: report.error_kind.clone().unwrap_or_else(|| "failed".into()),
                    message: report.error.clone().unwrap_or_default(),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(EphemeralError::Timeout {
                    server: server_name.clone(),
                    timeout: h.timeout.to_string(),
                });
            }
            std::thread::sleep(poll.min(left));
        }
    })();

    // Always: delete what this run created (found by its label, which also catches a server
    // whose creation answer was lost).
    if created {
        let selector = format!("{RUN_LABEL}={run_id}");
        match client.servers(&selector) {
            Ok(servers) => {
                let ids: Vec<(i64, String)> = servers.into_iter().map(|s| (s.id, s.name)).collect();
                leftovers.extend(delete_servers(&client, &ids, action_poll));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot list this run's servers to delete them");
                leftovers.push(format!("{server_name}: cannot be listed for deletion: {e}"));
            }
        }
    }

    let finished = now_secs();
    let location = config.repository.location.clone();
    let mut record = match &result {
        Ok(report) => report.clone(),
        Err(e) => RunStatus::failed(
            started,
            finished,
            &location,
            &config.host(),
            &e.kind(),
            &e.to_string(),
        ),
    };
    record.server = Some(server_name);
    EphemeralOutcome {
        run_id,
        record,
        error: result.err(),
        leftovers,
        orphans_deleted,
        alert_error: None,
        status_error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_valid_label_values_and_differ() {
        let a = new_run_id(1_796_090_400);
        assert!(a.starts_with("20261201t020000-"), "{a}");
        assert!(crate::reports::valid_run_id(&a), "{a}");
    }

    #[test]
    fn the_user_data_is_cloud_config_with_one_quoted_command_and_no_secret() {
        let ud = user_data("/usr/local/bin/concierge-sidecar", "/etc/x y.toml", "run-1");
        assert!(ud.starts_with("#cloud-config\n"));
        let line = ud
            .lines()
            .find(|l| l.starts_with("  - ["))
            .expect("runcmd entry");
        let argv: Vec<String> = serde_json::from_str(&line[4..]).expect("a JSON array");
        assert_eq!(
            argv,
            [
                "/usr/local/bin/concierge-sidecar",
                "--config",
                "/etc/x y.toml",
                "backup",
                "run",
                "--report",
                "run-1"
            ]
        );
        assert!(ud.len() < 32 * 1024);
    }
}
