//! The sidecar's one error, the kinds of failure it distinguishes and the one table from a kind
//! to the process exit code. The codes follow restic's where the meaning is the same (1 fatal,
//! 3 some source files unreadable, 10 no repository, 11 lock failed, 12 wrong password, 130
//! interrupted); the sidecar's own take the numbers restic does not use. restic's 11 (lock
//! failed) is never returned and stays free: rustic_core's repositories are lock-free.

use crate::config::ConfigError;
use crate::deploy::{DeployError, EngineError};
use crate::ephemeral::EphemeralError;
use crate::repository::RepoError;
use crate::secret_files::SecretsError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A flag or argument that cannot be used.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Repository(#[from] RepoError),
    #[error(transparent)]
    Ephemeral(#[from] EphemeralError),
    /// `backup check` found problems in the repository.
    #[error("the check found problems: {0}")]
    CheckFailed(String),
    /// `backup status`: the last good backup is too old, or the last run failed, or there is
    /// no status record.
    #[error("backup status: {0}")]
    Stale(String),
    /// Temporary servers that could not be deleted (they keep costing money).
    #[error(
        "temporary server(s) could not be deleted and keep costing money; delete them in the Hetzner console: {}",
        .0.join("; ")
    )]
    Leftovers(Vec<String>),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// `deploy plan`: there are changes to apply (not a failure: its own exit code, so CI
    /// can tell "nothing to do" from "changes").
    #[error("the plan has changes to apply")]
    PlanHasChanges,
    /// Anything else that ends the command (a report that cannot be stored, output that cannot
    /// be written).
    #[error("{0}")]
    Fatal(String),
}

/// The failures an operator or a monitor tells apart; each has one exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    Fatal,
    Usage,
    UnreadableFiles,
    Unreachable,
    DiskFull,
    CheckFailed,
    Stale,
    NoReport,
    NoRepository,
    WrongPassword,
    Leftovers,
    PlanHasChanges,
    DeployFailed,
    RollbackFailed,
    Interrupted,
}

impl Kind {
    /// Every kind, in the order of their codes.
    pub const ALL: [Kind; 15] = [
        Kind::Fatal,
        Kind::Usage,
        Kind::UnreadableFiles,
        Kind::Unreachable,
        Kind::PlanHasChanges,
        Kind::DiskFull,
        Kind::CheckFailed,
        Kind::Stale,
        Kind::NoReport,
        Kind::NoRepository,
        Kind::WrongPassword,
        Kind::Leftovers,
        Kind::DeployFailed,
        Kind::RollbackFailed,
        Kind::Interrupted,
    ];

    /// The process exit code (0 is success): the one place the numbers live.
    pub const fn exit_code(self) -> u8 {
        match self {
            Kind::Fatal => 1,
            Kind::Usage => 2,
            Kind::UnreadableFiles => 3,
            Kind::Unreachable => 4,
            Kind::PlanHasChanges => 5,
            Kind::DiskFull => 6,
            Kind::CheckFailed => 7,
            Kind::Stale => 8,
            Kind::NoReport => 9,
            Kind::NoRepository => 10,
            Kind::WrongPassword => 12,
            Kind::Leftovers => 13,
            Kind::DeployFailed => 14,
            Kind::RollbackFailed => 15,
            Kind::Interrupted => 130,
        }
    }

    /// What the code means, as `--help` and the README list it.
    pub const fn meaning(self) -> &'static str {
        match self {
            Kind::Fatal => "a step failed (restic: fatal error)",
            Kind::Usage => "bad configuration, flag or argument",
            Kind::UnreadableFiles => {
                "source files or directories could not be read: the snapshot is incomplete, or none was kept (restic's 3)"
            }
            Kind::Unreachable => {
                "the repository, the Hetzner API or the Docker engine cannot be reached, or refused the credentials"
            }
            Kind::PlanHasChanges => "`deploy plan`: there are changes to apply (0: none)",
            Kind::DiskFull => "no space left on the repository's or the restore's disk",
            Kind::CheckFailed => "`backup check` found problems",
            Kind::Stale => {
                "`backup status`: the last good backup is too old or the last run failed"
            }
            Kind::NoReport => "`backup ephemeral`: the temporary server sent no report in time",
            Kind::NoRepository => "no repository there: `backup init` it (restic's 10)",
            Kind::WrongPassword => "wrong repository password (restic's 12)",
            Kind::Leftovers => "`backup ephemeral`: a temporary server could not be deleted",
            Kind::DeployFailed => {
                "`deploy apply`/`verify`: the deployment did not verify (rolled back unless --no-rollback; see the report)"
            }
            Kind::RollbackFailed => {
                "`deploy rollback` (or an apply's automatic rollback) did not bring every service back: act now"
            }
            Kind::Interrupted => "interrupted by SIGINT or SIGTERM (restic's 130)",
        }
    }

    /// The kind a status record's `error_kind` stands for (a temporary server's run reports
    /// its failure this way, and `backup ephemeral` exits as that run did).
    pub fn of_status(error_kind: &str) -> Kind {
        match error_kind {
            "config" => Kind::Usage,
            "unreachable" | "denied" => Kind::Unreachable,
            "wrong_password" => Kind::WrongPassword,
            "not_initialised" => Kind::NoRepository,
            "disk_full" => Kind::DiskFull,
            "unreadable_files" => Kind::UnreadableFiles,
            _ => Kind::Fatal,
        }
    }
}

impl Error {
    /// The kind of this failure.
    pub fn kind(&self) -> Kind {
        match self {
            Error::Usage(_) | Error::Config(_) => Kind::Usage,
            Error::Repository(e) => match e {
                RepoError::Config(_) => Kind::Usage,
                RepoError::Unreachable { .. } | RepoError::Denied(_) => Kind::Unreachable,
                RepoError::WrongPassword(_) => Kind::WrongPassword,
                RepoError::NotInitialised(_) => Kind::NoRepository,
                RepoError::DiskFull(_) => Kind::DiskFull,
                RepoError::Unreadable { .. } => Kind::UnreadableFiles,
                RepoError::Failed(_) => Kind::Fatal,
            },
            // A remote run's failure exits as it would have in `backup run`.
            Error::Ephemeral(e) => match e {
                EphemeralError::Config(_) => Kind::Usage,
                EphemeralError::Hetzner(h) if h.is_denied_or_unreachable() => Kind::Unreachable,
                EphemeralError::Hetzner(_)
                | EphemeralError::NoSnapshot(_)
                | EphemeralError::Report(_) => Kind::Fatal,
                EphemeralError::Timeout { .. } => Kind::NoReport,
                EphemeralError::Remote { kind, .. } => Kind::of_status(kind),
            },
            Error::CheckFailed(_) => Kind::CheckFailed,
            Error::Stale(_) => Kind::Stale,
            Error::Leftovers(_) => Kind::Leftovers,
            Error::Deploy(e) => match e {
                DeployError::Config(_) => Kind::Usage,
                DeployError::Engine(
                    EngineError::Unreachable { .. } | EngineError::TooOld { .. },
                ) => Kind::Unreachable,
                DeployError::Engine(EngineError::BadHost(_)) => Kind::Usage,
                DeployError::Failed {
                    rollback_failed: true,
                    ..
                }
                | DeployError::RollbackFailed(_) => Kind::RollbackFailed,
                DeployError::Failed { .. } | DeployError::NotVerified(_) => Kind::DeployFailed,
                DeployError::Engine(_) | DeployError::State(_) | DeployError::NoRecord(_) => {
                    Kind::Fatal
                }
            },
            Error::Secrets(e) => match e {
                SecretsError::Io { .. } | SecretsError::Random(_) | SecretsError::Git(_) => {
                    Kind::Fatal
                }
                SecretsError::KeyFile { .. }
                | SecretsError::NoKey { .. }
                | SecretsError::WrongKey { .. }
                | SecretsError::File { .. }
                | SecretsError::Plaintext { .. }
                | SecretsError::BadName(_)
                | SecretsError::Unlocked { .. } => Kind::Usage,
            },
            Error::PlanHasChanges => Kind::PlanHasChanges,
            Error::Fatal(_) => Kind::Fatal,
        }
    }

    pub fn exit_code(&self) -> u8 {
        self.kind().exit_code()
    }
}

/// The exit-code table for `--help` (`after_long_help`).
pub fn exit_codes_help() -> String {
    let mut text = String::from("Exit codes:\n  0    success\n");
    for kind in Kind::ALL {
        text.push_str(&format!("  {:<4} {}\n", kind.exit_code(), kind.meaning()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_code_and_restics_meanings_keep_restics_numbers() {
        let mut codes: Vec<u8> = Kind::ALL.iter().map(|k| k.exit_code()).collect();
        codes.sort_unstable();
        let before = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), before, "two kinds share a code");
        assert!(!codes.contains(&0));
        for (kind, restic) in [
            (Kind::Fatal, 1),
            (Kind::UnreadableFiles, 3),
            (Kind::NoRepository, 10),
            (Kind::WrongPassword, 12),
            (Kind::Interrupted, 130),
        ] {
            assert_eq!(kind.exit_code(), restic, "{kind:?}");
        }
        let help = exit_codes_help();
        for kind in Kind::ALL {
            assert!(
                help.contains(&format!("  {:<4} {}", kind.exit_code(), kind.meaning())),
                "{help}"
            );
        }
    }

    #[test]
    fn a_remote_runs_failure_exits_as_that_run_did() {
        let remote = |kind: &str| {
            Error::Ephemeral(EphemeralError::Remote {
                server: "s".into(),
                kind: kind.into(),
                message: "m".into(),
            })
        };
        assert_eq!(remote("wrong_password").exit_code(), 12);
        assert_eq!(remote("failed").exit_code(), 1);
        let timeout = Error::Ephemeral(EphemeralError::Timeout {
            server: "s".into(),
            timeout: "2h".into(),
        });
        assert_eq!(timeout.exit_code(), 9);
        assert_eq!(Error::Leftovers(vec!["x".into()]).exit_code(), 13);
        assert_eq!(
            Error::from(RepoError::WrongPassword("repository.password")).exit_code(),
            12
        );
        assert_eq!(Kind::of_status("wrong_password").exit_code(), 12);
        assert_eq!(Kind::of_status("not_initialised").exit_code(), 10);
        assert_eq!(Kind::of_status("disk_full").exit_code(), 6);
        assert_eq!(Kind::of_status("denied").exit_code(), 4);
        assert_eq!(Kind::of_status("something new").exit_code(), 1);
    }
}
