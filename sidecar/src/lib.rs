//! `concierge-sidecar`'s library: everything the binary's commands call, behind one flat API.
//!
//! Inside: the configuration (`config`), the S3 client and its rustic_core backend (`s3`), the
//! backup repository (`repository`), status records and run reports (`status`, `reports`),
//! alerts (`alert`), the daemon's admin API (`daemon_client`), the Hetzner client and the
//! temporary backup server (`hetzner`, `ephemeral`), cron expressions and the scheduler
//! (`cron`, `schedule`), the jobs that record and alert (`jobs`), the Swarm deployment
//! (`deploy`), git-crypt secret files (`secret_files`) and the commands that make them Docker
//! secrets (`secrets`), and the one error with its exit codes (`error`).

mod alert;
mod config;
mod cron;
mod daemon_client;
mod deploy;
mod ephemeral;
mod error;
mod hetzner;
mod jobs;
mod progress;
mod reports;
mod repository;
mod s3;
mod schedule;
mod secret_files;
mod secrets;
mod source_errors;
mod status;

pub use config::{
    Config, ConfigError, DEFAULT_FILE as DEFAULT_CONFIG_FILE, DeployConfig, ENV_PREFIX, Location,
    Secret, SecretsConfig, TextDuration, load as load_config,
    load_for_deploy as load_deploy_config,
};
pub use deploy::{
    API_VERSION as DOCKER_API_VERSION, Action as DeployAction, Applied, ApplyOptions, DeployError,
    EngineError, FailureReport, GithubError, Issue, Lint, Plan, Planned, Request, RollbackSummary,
    Verdict, VerifyOutcome, apply as deploy_apply, open_issue as deploy_open_issue,
    plan as deploy_plan, rollback_last as deploy_rollback, verify_last as deploy_verify,
};
pub use ephemeral::EphemeralOutcome;
pub use error::{Error, Kind, exit_codes_help};
pub use jobs::{RunOutcome, backup_ephemeral, backup_run, check, ephemeral_result, status};
pub use progress::Bars;
pub use repository::{BackupSummary, ForgetDecision, Repo, RepoError, SnapshotInfo, keep_options};
pub use schedule::run_until_stopped as run_schedule;
pub use secret_files::{GitCryptError, GitCryptKey, SecretsError};
pub use secrets::{
    SecretInfo, SecretsDiff, apply as secrets_apply, diff as secrets_diff, list as secrets_list,
    rotate as secrets_rotate, serve as secrets_serve, set as secrets_set,
};
pub use source_errors::install as capture_rustic_log;
pub use status::{RunStatus, StatusFile};
