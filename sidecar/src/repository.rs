//! The backup repository through rustic_core: open or initialise (local path, or an S3 bucket
//! through our backend), back up, list, forget by the retention policy, prune, check, restore.
//! rustic_core writes restic's format, so `restic` reads every repository made here (it must
//! never prune them: see `../shared/backup-notes.md`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustic_backend::LocalBackend;
use rustic_core::IndexedIdsStatus;
use rustic_core::jiff::Zoned;
use rustic_core::repofile::SnapshotFile;
use rustic_core::{
    BackupOptions, CheckOptions, ConfigOptions, Credentials, Excludes, ForgetGroups, Grouped,
    IndexedFullStatus, KeepOptions, KeyOptions, LocalDestination, LsOptions, OpenStatus, PathList,
    PruneOptions, ReadSubsetOption, Repository, RepositoryBackends, RepositoryOptions,
    RestoreOptions, RusticError, SnapshotGroupCriterion, SnapshotOptions, WriteBackend,
};
use serde::Serialize;

use crate::config::{Config, Location};
use crate::progress::Bars;
use crate::s3::backend::S3Backend;
use crate::s3::client::{S3Client, S3Config, S3Error};

/// What went wrong, in the kinds the exit codes and alerts distinguish.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("the repository password is wrong (it came from {0})")]
    WrongPassword(&'static str),
    #[error(
        "no repository at {0}: initialise it with `concierge-sidecar backup init` (or `backup run --init`)"
    )]
    NotInitialised(String),
    #[error("the repository at {location} cannot be reached: {detail}")]
    Unreachable { location: String, detail: String },
    #[error("the repository refused our credentials: {0}")]
    Denied(String),
    #[error("no space left on {0}")]
    DiskFull(String),
    #[error("{}", unreadable_text(snapshot.as_deref(), errors))]
    Unreadable {
        /// The snapshot saved without them (none when nothing at all could be read).
        snapshot: Option<String>,
        /// What could not be read, as rustic_core reported it.
        errors: Vec<String>,
    },
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Failed(String),
}

impl RepoError {
    /// A short machine-readable kind for the status file.
    pub fn kind(&self) -> &'static str {
        match self {
            RepoError::Config(_) => "config",
            RepoError::Unreachable { .. } => "unreachable",
            RepoError::Denied(_) => "denied",
            RepoError::WrongPassword(_) => "wrong_password",
            RepoError::NotInitialised(_) => "not_initialised",
            RepoError::DiskFull(_) => "disk_full",
            RepoError::Unreadable { .. } => "unreadable_files",
            RepoError::Failed(_) => "failed",
        }
    }
}

fn unreadable_text(snapshot: Option<&str>, errors: &[String]) -> String {
    let shown: Vec<&str> = errors.iter().take(10).map(String::as_str).collect();
    let more = errors.len().saturating_sub(shown.len());
    let list = format!(
        "{}{}",
        shown.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    );
    match snapshot {
        Some(id) => format!(
            "snapshot {} is incomplete: {} source path(s) could not be read: {list}",
            &id[..id.len().min(8)],
            errors.len()
        ),
        None => format!("nothing could be read from the backup sources: {list}"),
    }
}

/// Classifies a rustic_core error by what it says and what caused it.
fn classify(err: &RusticError, location: &str) -> RepoError {
    if err.is_incorrect_password() {
        return RepoError::WrongPassword("repository.password");
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(s3) = e.downcast_ref::<S3Error>() {
            return match s3 {
                S3Error::Unreachable { detail, .. } => RepoError::Unreachable {
                    location: location.to_owned(),
                    detail: detail.clone(),
                },
                S3Error::Denied { .. } => RepoError::Denied(s3.to_string()),
                S3Error::NotFound { .. }
                | S3Error::Status { .. }
                | S3Error::Config(_)
                | S3Error::Protocol { .. } => {
                    RepoError::Failed(format!("{}: {s3}", err.display_log()))
                }
            };
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.raw_os_error() == Some(28)
        {
            return RepoError::DiskFull(location.to_owned());
        }
        source = e.source();
    }
    let text = err.display_log();
    if text.contains("No repository config file found") {
        return RepoError::NotInitialised(location.to_owned());
    }
    if text.contains("No space left on device") || text.contains("os error 28") {
        return RepoError::DiskFull(location.to_owned());
    }
    RepoError::Failed(text)
}

/// The repository in the state its last operation needed (rustic_core's states are types).
enum State {
    Open(Repository<OpenStatus>),
    Ids(Repository<IndexedIdsStatus>),
    Full(Repository<IndexedFullStatus>),
}

/// Runs `$body` with `$r` bound to the repository whatever its state (every state is `Open`).
macro_rules! open {
    ($self:ident, $r:ident => $body:expr) => {
        match $self.state.as_ref() {
            Some(State::Open($r)) => $body,
            Some(State::Ids($r)) => $body,
            Some(State::Full($r)) => $body,
            None => Err(RepoError::Failed(
                "the repository was closed after a failed step".into(),
            )),
        }
    };
}

/// A repository opened for a whole command (opening runs scrypt, ~1-3 s).
pub struct Repo {
    state: Option<State>,
    location: String,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// What a backup produced (the status record's numbers).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BackupSummary {
    pub snapshot_id: String,
    pub files: u64,
    pub files_new: u64,
    pub files_changed: u64,
    pub bytes_processed: u64,
    pub bytes_added: u64,
    pub bytes_added_packed: u64,
}

/// One snapshot, as `snapshots --json` lists it: restic's field names and omissions, so a
/// script written against `restic snapshots --json` reads ours.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SnapshotInfo {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub tree: String,
    pub paths: Vec<String>,
    pub hostname: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub program_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<SnapshotSummary>,
    pub id: String,
    pub short_id: String,
}

/// A snapshot's backup statistics, restic's `summary` object.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SnapshotSummary {
    pub backup_start: String,
    pub backup_end: String,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs_new: u64,
    pub dirs_changed: u64,
    pub dirs_unmodified: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    pub data_added: u64,
    pub data_added_packed: u64,
    pub total_files_processed: u64,
    pub total_bytes_processed: u64,
}

/// What forget decided for one snapshot.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ForgetDecision {
    pub id: String,
    pub time: String,
    pub keep: bool,
    pub reasons: Vec<String>,
}

/// The configured bucket's client (`[repository.s3]`).
pub(crate) fn s3_client(config: &Config, bucket: &str) -> Result<S3Client, RepoError> {
    let s3 = &config.repository.s3;
    S3Client::new(S3Config {
        endpoint: s3.endpoint.clone(),
        bucket: bucket.to_owned(),
        region: s3.region.clone(),
        path_style: s3.path_style,
        access_key_id: s3.access_key_id.expose().to_owned(),
        secret_access_key: s3.secret_access_key.expose().to_owned(),
        timeout: s3.timeout.get(),
        attempts: config.repository.retries.max(1),
        backoff: Duration::from_millis(250),
    })
    .map_err(|e| RepoError::Config(e.to_string()))
}

fn backends(config: &Config) -> Result<(RepositoryBackends, String), RepoError> {
    let cfg_err = |e: String| RepoError::Config(e);
    match config.location().map_err(|e| cfg_err(e.to_string()))? {
        Location::Local(path) => {
            let shown = path.display().to_string();
            let be = LocalBackend::new(&shown, Vec::<(String, String)>::new())
                .map_err(|e| RepoError::Config(e.display_log()))?;
            Ok((RepositoryBackends::new(Arc::new(be), None), shown))
        }
        Location::S3 { bucket, prefix } => {
            let client = s3_client(config, &bucket)?;
            let shown = format!(
                "s3:{}/{bucket}/{prefix}",
                config.repository.s3.endpoint.trim_end_matches('/')
            );
            let be: Arc<dyn WriteBackend> = Arc::new(S3Backend::new(
                client,
                &prefix,
                config.repository.s3.connections,
            ));
            Ok((RepositoryBackends::new(be, None), shown))
        }
    }
}

fn unopened(config: &Config, bars: Bars) -> Result<(Repository<()>, String), RepoError> {
    let (be, location) = backends(config)?;
    let repo = Repository::new_with_progress(&RepositoryOptions::default(), &be, bars)
        .map_err(|e| classify(&e, &location))?;
    Ok((repo, location))
}

impl Repo {
    /// Opens the configured repository.
    pub fn open(config: &Config, bars: Bars) -> Result<Self, RepoError> {
        let (repo, location) = unopened(config, bars)?;
        let repo = repo
            .open(&Credentials::password(config.repository.password.expose()))
            .map_err(|e| {
                let error = classify(&e, &location);
                if matches!(error, RepoError::WrongPassword(_)) {
                    RepoError::WrongPassword(config.repository.password_key)
                } else {
                    error
                }
            })?;
        Ok(Repo {
            state: Some(State::Open(repo)),
            location,
        })
    }

    /// Initialises the configured repository (refused when one exists there).
    pub fn init(config: &Config, bars: Bars) -> Result<Self, RepoError> {
        let (repo, location) = unopened(config, bars)?;
        let exists = repo
            .config_id()
            .map_err(|e| classify(&e, &location))?
            .is_some();
        if exists {
            return Err(RepoError::Config(format!(
                "a repository already exists at {location}"
            )));
        }
        let repo = repo
            .init(
                &Credentials::password(config.repository.password.expose()),
                &KeyOptions::default(),
                &ConfigOptions::default(),
            )
            .map_err(|e| classify(&e, &location))?;
        Ok(Repo {
            state: Some(State::Open(repo)),
            location,
        })
    }

    /// Opens it, initialising it first when `init` and there is none yet.
    pub fn open_or_init(config: &Config, bars: Bars, init: bool) -> Result<Self, RepoError> {
        match Repo::open(config, bars) {
            Err(RepoError::NotInitialised(_)) if init => Repo::init(config, bars),
            other => other,
        }
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    fn fail(&self, e: &RusticError) -> RepoError {
        classify(e, &self.location)
    }

    /// Backs up `sources` as one snapshot; `as_path` stores them under another path (a
    /// checkpoint directory recorded as the daemon's data directory).
    pub fn backup(
        &mut self,
        sources: &[PathBuf],
        exclude: &[String],
        host: &str,
        tags: &[String],
        time_unix: Option<i64>,
    ) -> Result<BackupSummary, RepoError> {
        for s in sources {
            if !s.exists() {
                return Err(RepoError::Config(format!(
                    "backup source {} does not exist",
                    s.display()
                )));
            }
        }
        let paths: PathList = sources.iter().cloned().collect();
        let paths = paths
            .sanitize()
            .map_err(|e| RepoError::Config(format!("backup sources: {e}")))?;
        let mut snap = SnapshotOptions::default().host(host.to_owned());
        if !tags.is_empty() {
            snap = snap
                .add_tags(&tags.join(","))
                .map_err(|e| RepoError::Config(format!("backup.tags: {}", e.display_log())))?;
        }
        if let Some(t) = time_unix {
            snap = snap.time(zoned(t)?);
        }
        let snap = snap.to_snapshot().map_err(|e| self.fail(&e))?;
        let mut opts = BackupOptions::default();
        opts.excludes =
            Excludes::default().globs(exclude.iter().map(|g| format!("!{g}")).collect::<Vec<_>>());
        crate::source_errors::clear();
        let saved = match self.state.take() {
            Some(State::Open(r)) => {
                let r = r
                    .to_indexed_ids()
                    .map_err(|e| classify(&e, &self.location))?;
                let saved = r.backup(&opts, &paths, snap);
                self.state = Some(State::Ids(r));
                saved
            }
            Some(State::Ids(r)) => {
                let saved = r.backup(&opts, &paths, snap);
                self.state = Some(State::Ids(r));
                saved
            }
            Some(State::Full(r)) => {
                let saved = r.backup(&opts, &paths, snap);
                self.state = Some(State::Full(r));
                saved
            }
            None => {
                return Err(RepoError::Failed(
                    "the repository was closed after a failed step".into(),
                ));
            }
        }
        .map_err(|e| self.fail(&e))?;
        let s = saved.summary.clone().unwrap_or_default();
        let unreadable = crate::source_errors::take();
        if !unreadable.is_empty() {
            let snapshot = full_id(&saved.id);
            if s.total_files_processed == 0 {
                // Nothing could be read: an empty snapshot is no backup. Not kept, so retention
                // never counts it.
                open!(self, r => r.delete_snapshots(&[saved.id]).map_err(|e| self.fail(&e)))?;
                return Err(RepoError::Unreadable {
                    snapshot: None,
                    errors: unreadable,
                });
            }
            return Err(RepoError::Unreadable {
                snapshot: Some(snapshot),
                errors: unreadable,
            });
        }
        Ok(BackupSummary {
            snapshot_id: full_id(&saved.id),
            files: s.total_files_processed,
            files_new: s.files_new,
            files_changed: s.files_changed,
            bytes_processed: s.total_bytes_processed,
            bytes_added: s.data_added,
            bytes_added_packed: s.data_added_packed,
        })
    }

    /// Every snapshot, oldest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>, RepoError> {
        let mut snaps = open!(self, r => r.get_all_snapshots().map_err(|e| self.fail(&e)))?;
        snaps.sort_by(|a, b| a.time.cmp(&b.time));
        Ok(snaps.iter().map(info).collect())
    }

    /// Applies the retention policy (grouped by host and paths, as restic does); with `dry_run`
    /// only reports. Returns every snapshot's decision.
    pub fn forget(
        &self,
        keep: &KeepOptions,
        now_unix: i64,
        dry_run: bool,
    ) -> Result<Vec<ForgetDecision>, RepoError> {
        let snaps = open!(self, r => r.get_all_snapshots().map_err(|e| self.fail(&e)))?;
        let groups = forget_plan(snaps, keep, &zoned(now_unix)?).map_err(|e| self.fail(&e))?;
        let decisions: Vec<ForgetDecision> = groups
            .0
            .iter()
            .flat_map(|g| g.items.iter())
            .map(|f| ForgetDecision {
                id: full_id(&f.snapshot.id),
                time: f.snapshot.time.timestamp().to_string(),
                keep: f.keep,
                reasons: f.reasons.clone(),
            })
            .collect();
        if !dry_run {
            let ids = groups.into_forget_ids();
            if !ids.is_empty() {
                open!(self, r => r.delete_snapshots(&ids).map_err(|e| self.fail(&e)))?;
            }
        }
        Ok(decisions)
    }

    /// Prunes unused data (rustic's two-phase, lock-free prune).
    pub fn prune(&self) -> Result<(), RepoError> {
        let opts = PruneOptions::default();
        open!(self, r => {
            let plan = r.prune_plan(&opts).map_err(|e| self.fail(&e))?;
            r.prune(&opts, plan).map_err(|e| self.fail(&e))
        })
    }

    /// Checks the repository's structure, and reads `read_data_percent` of the packs back.
    pub fn check(&self, read_data_percent: Option<f64>) -> Result<Vec<String>, RepoError> {
        let mut opts = CheckOptions::default();
        if let Some(p) = read_data_percent {
            opts = opts
                .read_data(true)
                .read_data_subset(ReadSubsetOption::Percentage(p));
        }
        let results = open!(self, r => r.check(opts).map_err(|e| self.fail(&e)))?;
        let problems: Vec<String> = format!("{results:?}")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        match results.is_ok() {
            Ok(()) => Ok(Vec::new()),
            Err(e) => Err(RepoError::Failed(format!(
                "check found problems: {} ({})",
                e.display_log(),
                problems.join("; ")
            ))),
        }
    }

    /// Restores `snapshot` (an id, an id prefix or `latest`) into `target`.
    pub fn restore(&mut self, snapshot: &str, target: &Path) -> Result<(), RepoError> {
        let full = match self.state.take() {
            Some(State::Open(r)) => r.to_indexed(),
            Some(State::Ids(r)) => r.to_indexed(),
            Some(State::Full(r)) => Ok(r),
            None => {
                return Err(RepoError::Failed(
                    "the repository was closed after a failed step".into(),
                ));
            }
        }
        .map_err(|e| classify(&e, &self.location))?;
        self.state = Some(State::Full(full));
        let Some(State::Full(repo)) = self.state.as_ref() else {
            return Err(RepoError::Failed(
                "the repository could not be indexed".into(),
            ));
        };
        let node = repo
            .node_from_snapshot_path(snapshot, |_| true)
            .map_err(|e| self.fail(&e))?;
        let ls = repo
            .ls(&node, &LsOptions::default())
            .map_err(|e| self.fail(&e))?;
        let target_text = format!("{}/", target.display().to_string().trim_end_matches('/'));
        let dest =
            LocalDestination::new(&target_text, true, !node.is_dir()).map_err(|e| self.fail(&e))?;
        let opts = RestoreOptions::default();
        let plan = repo
            .prepare_restore(&opts, ls.clone(), &dest, false)
            .map_err(|e| self.fail(&e))?;
        repo.restore(plan, &opts, ls, &dest)
            .map_err(|e| self.fail(&e))
    }
}

/// The retention decision for snapshots, grouped by host and paths (what restic groups by).
pub fn forget_plan(
    snaps: Vec<SnapshotFile>,
    keep: &KeepOptions,
    now: &Zoned,
) -> rustic_core::RusticResult<ForgetGroups> {
    let criterion = SnapshotGroupCriterion::new().hostname(true).paths(true);
    ForgetGroups::from_grouped_snapshots_with_retention(
        Grouped::from_items(snaps, criterion),
        keep,
        now,
    )
}

/// The configured retention as rustic's options.
pub fn keep_options(config: &Config) -> KeepOptions {
    let n = |v: u32| (v > 0).then(|| i32::try_from(v).unwrap_or(i32::MAX));
    let mut keep = KeepOptions::default();
    keep.keep_daily = n(config.retention.keep_daily);
    keep.keep_weekly = n(config.retention.keep_weekly);
    keep.keep_monthly = n(config.retention.keep_monthly);
    keep
}

/// A snapshot id in full (its `Display` is the 8-character short form).
fn full_id(id: &rustic_core::repofile::SnapshotId) -> String {
    id.to_hex().as_str().to_owned()
}

/// Epoch seconds as a UTC time.
fn zoned(unix: i64) -> Result<Zoned, RepoError> {
    rustic_core::jiff::Timestamp::from_second(unix)
        .map(|t| t.to_zoned(rustic_core::jiff::tz::TimeZone::UTC))
        .map_err(|e| RepoError::Config(format!("time {unix}: {e}")))
}

fn info(s: &SnapshotFile) -> SnapshotInfo {
    let id = full_id(&s.id);
    SnapshotInfo {
        time: s.time.timestamp().to_string(),
        parent: s.parent.as_ref().map(full_id),
        tree: s.tree.to_hex().as_str().to_owned(),
        paths: s.paths.iter().cloned().collect(),
        hostname: s.hostname.clone(),
        username: s.username.clone(),
        tags: s.tags.iter().cloned().collect(),
        program_version: s.program_version.clone(),
        summary: s.summary.as_ref().map(|x| SnapshotSummary {
            backup_start: x.backup_start.timestamp().to_string(),
            backup_end: x.backup_end.timestamp().to_string(),
            files_new: x.files_new,
            files_changed: x.files_changed,
            files_unmodified: x.files_unmodified,
            dirs_new: x.dirs_new,
            dirs_changed: x.dirs_changed,
            dirs_unmodified: x.dirs_unmodified,
            data_blobs: x.data_blobs,
            tree_blobs: x.tree_blobs,
            data_added: x.data_added,
            data_added_packed: x.data_added_packed,
            total_files_processed: x.total_files_processed,
            total_bytes_processed: x.total_bytes_processed,
        }),
        short_id: id.chars().take(8).collect(),
        id,
    }
}
