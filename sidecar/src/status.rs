//! The status record of the sidecar's runs: the types and the file live in
//! `concierge_infra::backup_status` (the daemon reads the same record); this module adds what
//! only the sidecar knows, the record of a successful backup from its summary.

pub use concierge_infra::backup_status::{RunStatus, StatusFile};

use crate::repository::BackupSummary;

/// The record of a successful run.
pub fn succeeded(
    started: i64,
    finished: i64,
    repository: &str,
    host: &str,
    summary: &BackupSummary,
    forgotten: usize,
) -> RunStatus {
    RunStatus {
        snapshot_id: Some(summary.snapshot_id.clone()),
        files: Some(summary.files),
        bytes_added: Some(summary.bytes_added),
        bytes_processed: Some(summary.bytes_processed),
        forgotten: Some(forgotten),
        ..RunStatus::succeeded(started, finished, repository, host)
    }
}
