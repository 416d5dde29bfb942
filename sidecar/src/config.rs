//! The sidecar's configuration (`sidecar.toml`, DESIGN §7): compiled defaults, then the file
//! (`--config FILE`, else `sidecar.toml` when it exists), then the environment
//! (`CONCIERGE_SIDECAR_<SECTION>__<KEY>`; the `[repository.s3]` section is `REPOSITORY_S3`),
//! then secrets given as `<key>_file` (the file's content, trailing newline dropped). Every error
//! names the key and where it came from; secrets never appear in `Debug` output or errors.

use std::path::{Path, PathBuf};

use concierge_infra::layered_config::Layers;
pub use concierge_infra::layered_config::{ConfigError, Secret, TextDuration};
use serde::{Deserialize, Serialize};

/// Prefix of the sidecar's environment variables.
pub const ENV_PREFIX: &str = "CONCIERGE_SIDECAR_";
/// Read when `--config` is not given and it exists.
pub const DEFAULT_FILE: &str = "sidecar.toml";

/// `(section, key)` pairs that are secrets: accepted as `<key>_file`, redacted everywhere.
pub const SECRET_KEYS: &[(&str, &str)] = &[
    ("repository", "password"),
    ("repository.s3", "access_key_id"),
    ("repository.s3", "secret_access_key"),
    ("backup", "daemon_token"),
    ("alert", "rocketchat_webhook_url"),
    ("hetzner", "token"),
    ("deploy", "github_token"),
    ("secrets", "admin_token"),
];

/// How the sidecar's configuration is spelled outside.
const LAYERS: Layers<'static> = Layers {
    env_prefix: ENV_PREFIX,
    // `--config`'s variable.
    not_keys: &["CONCIERGE_SIDECAR_CONFIG"],
    secret_keys: SECRET_KEYS,
    default_file: DEFAULT_FILE,
};

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError::new(msg)
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub repository: RepositoryConfig,
    pub backup: BackupConfig,
    pub retention: RetentionConfig,
    pub status: StatusConfig,
    pub alert: AlertConfig,
    pub hetzner: HetznerConfig,
    pub schedule: ScheduleConfig,
    pub deploy: DeployConfig,
    pub secrets: SecretsConfig,
}

/// `[repository]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepositoryConfig {
    /// A local path, or `s3://bucket/prefix` (then `[repository.s3]` says where).
    pub location: String,
    /// The repository password (prefer `password_file`).
    pub password: Secret,
    /// Which key gave the password (for errors): not configuration.
    #[serde(skip)]
    pub password_key: &'static str,
    /// Attempts per S3 request (transient failures are retried with backoff).
    pub retries: u32,
    pub s3: S3Section,
}

impl Default for RepositoryConfig {
    fn default() -> Self {
        RepositoryConfig {
            location: "/srv/backups/repo".into(),
            password: Secret::default(),
            password_key: "repository.password",
            retries: 5,
            s3: S3Section::default(),
        }
    }
}

/// `[repository.s3]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Section {
    /// `https://<account>.r2.cloudflarestorage.com`.
    pub endpoint: String,
    /// `auto` for R2.
    pub region: String,
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub path_style: bool,
    /// Per-request timeout, e.g. `"5m"`.
    pub timeout: TextDuration,
    /// Pack uploads in flight at a time (restic's `s3.connections`).
    pub connections: usize,
}

impl Default for S3Section {
    fn default() -> Self {
        S3Section {
            endpoint: String::new(),
            region: "auto".into(),
            access_key_id: Secret::default(),
            secret_access_key: Secret::default(),
            path_style: true,
            timeout: TextDuration::from_secs(300),
            connections: 5,
        }
    }
}

/// `[backup]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// Paths to back up.
    pub sources: Vec<String>,
    /// Glob patterns to leave out (gitignore syntax, as restic's `--exclude`).
    pub exclude: Vec<String>,
    /// The snapshot's host name (default: this machine's).
    pub host: String,
    pub tags: Vec<String>,
    /// A running daemon to take a consistent checkpoint from (instead of copying RocksDB open).
    pub daemon_url: String,
    pub daemon_token: Secret,
    /// The daemon's data directory as seen from here (its checkpoints are under `checkpoints/`).
    pub daemon_data_dir: String,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            sources: vec!["/data".into()],
            exclude: Vec::new(),
            host: String::new(),
            tags: Vec::new(),
            daemon_url: String::new(),
            daemon_token: Secret::default(),
            daemon_data_dir: String::new(),
        }
    }
}

/// `[retention]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    /// Prune after forgetting (two-phase: unused packs are deleted a run later).
    pub prune: bool,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 12,
            prune: true,
        }
    }
}

/// `[status]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusConfig {
    pub file: PathBuf,
    /// `backup status` fails when the last good backup is older, e.g. `"26h"`.
    pub max_age: TextDuration,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            file: "/var/lib/concierge-sidecar/status.json".into(),
            max_age: TextDuration::from_secs(26 * 3600),
        }
    }
}

/// `[alert]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    /// A RocketChat incoming webhook (its URL holds a token: a secret).
    pub rocketchat_webhook_url: Secret,
}

/// `[hetzner]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HetznerConfig {
    pub api_base: String,
    pub token: Secret,
    /// `key=value` label of the snapshots to start from; also set on the servers created.
    pub snapshot_label: String,
    pub server_type: String,
    pub location: String,
    /// The whole run, from creating the server to its report, e.g. `"2h"`.
    pub timeout: TextDuration,
    /// SSH keys (names or ids) put on the server; none: Hetzner generates a root password,
    /// which is never read or logged.
    pub ssh_keys: Vec<String>,
    /// How often the report (and actions) are polled, e.g. `"15s"`.
    pub poll_interval: TextDuration,
    /// The sidecar binary and its configuration on the snapshot's disk (cloud-init runs
    /// `<remote_binary> --config <remote_config> backup run --report <run id>`).
    pub remote_binary: String,
    pub remote_config: String,
    /// Attempts per API request (rate limits, `locked`, server errors).
    pub retries: u32,
}

impl Default for HetznerConfig {
    fn default() -> Self {
        HetznerConfig {
            api_base: "https://api.hetzner.cloud/v1".into(),
            token: Secret::default(),
            snapshot_label: "concierge-backup=source".into(),
            server_type: "cx22".into(),
            location: "fsn1".into(),
            timeout: TextDuration::from_secs(2 * 3600),
            ssh_keys: Vec::new(),
            poll_interval: TextDuration::from_secs(15),
            remote_binary: "/usr/local/bin/concierge-sidecar".into(),
            remote_config: "/etc/concierge-sidecar/sidecar.toml".into(),
            retries: 8,
        }
    }
}

/// `[schedule]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Cron expression (UTC) of the backup: five fields, or six with seconds first.
    pub backup: String,
    /// Cron expression (UTC) of the freshness check (`backup status`).
    pub status: String,
    /// What the backup slot runs: `run` (`backup run` here) or `ephemeral` (`backup
    /// ephemeral`: a temporary Hetzner server).
    pub backup_mode: String,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            backup: "0 2 * * *".into(),
            status: "0 8 * * *".into(),
            backup_mode: "run".into(),
        }
    }
}

/// `[deploy]`: the Swarm stack (`deploy plan|apply|verify|rollback`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeployConfig {
    /// The directory of the stack files and of `env/<environment>.env`.
    pub stack_dir: PathBuf,
    /// Which values file: `<stack_dir>/env/<environment>.env` ("" : none).
    pub environment: String,
    /// The stack's name (service names are `<stack>_<key>`).
    pub stack: String,
    /// Stack files under `stack_dir`, later ones merged over earlier ones.
    pub files: Vec<String>,
    /// `unix:///path` or `tcp://host:port`; "" : `$DOCKER_HOST`, else the local socket.
    pub docker_host: String,
    /// The last apply's record and failure reports.
    pub state_dir: PathBuf,
    /// How long verify waits for the touched services to converge.
    pub verify_timeout: TextDuration,
    /// How long a converged service must stay so.
    pub verify_settle: TextDuration,
    /// Failed tasks of a new spec that fail verify before Swarm gives up on it.
    pub max_task_failures: u32,
    /// Each Engine API call.
    pub engine_timeout: TextDuration,
    /// `owner/name`: open an issue there when a deployment fails ("" : no issue).
    pub github_repo: String,
    pub github_token: Secret,
    pub github_api: String,
    pub github_labels: Vec<String>,
}

impl Default for DeployConfig {
    fn default() -> Self {
        DeployConfig {
            stack_dir: "deploy".into(),
            environment: String::new(),
            stack: "concierge".into(),
            files: vec!["stack.yml".into()],
            docker_host: String::new(),
            state_dir: "/var/lib/concierge-sidecar/deploy".into(),
            verify_timeout: TextDuration::from_secs(600),
            verify_settle: TextDuration::from_secs(10),
            max_task_failures: 3,
            engine_timeout: TextDuration::from_secs(60),
            github_repo: String::new(),
            github_token: Secret::default(),
            github_api: "https://api.github.com".into(),
            github_labels: vec!["deploy-failure".into()],
        }
    }
}

impl DeployConfig {
    /// The engine to talk to.
    pub fn docker_host(&self) -> String {
        if !self.docker_host.is_empty() {
            return self.docker_host.clone();
        }
        match std::env::var("DOCKER_HOST") {
            Ok(h) if !h.is_empty() => h,
            _ => "unix:///var/run/docker.sock".into(),
        }
    }

    /// The stack files, in merge order.
    pub fn stack_files(&self) -> Vec<PathBuf> {
        self.files.iter().map(|f| self.stack_dir.join(f)).collect()
    }

    /// The environment's values file.
    pub fn values_file(&self) -> Option<PathBuf> {
        (!self.environment.is_empty()).then(|| {
            self.stack_dir
                .join("env")
                .join(format!("{}.env", self.environment))
        })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.files.is_empty() {
            return Err(err("deploy.files names no stack file"));
        }
        if self.verify_timeout.get().is_zero() {
            return Err(err("deploy.verify_timeout must be longer than 0s"));
        }
        if self.engine_timeout.get().is_zero() {
            return Err(err("deploy.engine_timeout must be longer than 0s"));
        }
        if !self.environment.is_empty()
            && !self
                .environment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err(format!(
                "deploy.environment {:?}: letters, digits, - and _ (it names env/<environment>.env)",
                self.environment
            )));
        }
        if !self.github_repo.is_empty() && self.github_repo.split('/').count() != 2 {
            return Err(err(format!(
                "deploy.github_repo {:?} is not owner/name",
                self.github_repo
            )));
        }
        Ok(())
    }
}

/// `[secrets]`: git-crypt encrypted files that become versioned Docker secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// The directory of encrypted secret files (one file per secret, named as the secret).
    pub dir: PathBuf,
    /// The exported git-crypt key (`git-crypt export-key FILE`; binary, so a path, never a
    /// value). "": encrypted files cannot be read.
    pub key_file: PathBuf,
    /// Docker secret names are `<prefix><name>_<12 hex of SHA-256>`; "": `<stack>_`.
    pub prefix: String,
    /// Paths (relative to `dir`) allowed to be plaintext in the repository.
    pub allow_plaintext: Vec<String>,
    /// `secrets rotate`: length and alphabet of generated values.
    pub rotate_length: usize,
    pub rotate_alphabet: String,
    /// `secrets serve`: where the secrets page listens.
    pub listen: String,
    /// The token that signs in to the secrets page (`admin_token_file` for a Docker secret).
    pub admin_token: Secret,
    /// Cookies only over HTTPS (turn off only for a page reached on loopback).
    pub secure_cookies: bool,
    /// How long a sign-in lasts.
    pub session_ttl: TextDuration,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        SecretsConfig {
            dir: "deploy/secrets".into(),
            key_file: PathBuf::new(),
            prefix: String::new(),
            allow_plaintext: Vec::new(),
            rotate_length: 32,
            rotate_alphabet: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                .into(),
            listen: "127.0.0.1:8095".into(),
            admin_token: Secret::default(),
            secure_cookies: true,
            session_ttl: TextDuration::from_secs(8 * 3600),
        }
    }
}

impl SecretsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(8..=4096).contains(&self.rotate_length) {
            return Err(err(format!(
                "secrets.rotate_length must be 8 to 4096, got {}",
                self.rotate_length
            )));
        }
        let mut alphabet: Vec<char> = self.rotate_alphabet.chars().collect();
        alphabet.sort_unstable();
        alphabet.dedup();
        if alphabet.len() < 10 || alphabet.iter().any(|c| c.is_control()) {
            return Err(err(
                "secrets.rotate_alphabet needs at least 10 distinct printable characters",
            ));
        }
        if !self.prefix.is_empty()
            && !self
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(err(format!(
                "secrets.prefix {:?}: letters, digits, -, _ and .",
                self.prefix
            )));
        }
        Ok(())
    }
}

/// Where the repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Config {
    /// The parsed repository location.
    pub fn location(&self) -> Result<Location, ConfigError> {
        let loc = self.repository.location.trim();
        if let Some(rest) = loc.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(err(
                    "repository.location: s3://BUCKET/PREFIX needs a bucket",
                ));
            }
            return Ok(Location::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        if loc.contains("://") {
            return Err(err(format!(
                "repository.location {loc:?}: only local paths and s3://bucket/prefix are supported"
            )));
        }
        if loc.is_empty() {
            return Err(err("repository.location is empty"));
        }
        Ok(Location::Local(PathBuf::from(loc)))
    }

    /// Checks what every command needs: durations, cron expressions, the deploy section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.hetzner.poll_interval.get().is_zero() {
            return Err(err("hetzner.poll_interval must be longer than 0s"));
        }
        crate::cron::Cron::parse(&self.schedule.backup)
            .map_err(|e| err(format!("schedule.backup: {e}")))?;
        crate::cron::Cron::parse(&self.schedule.status)
            .map_err(|e| err(format!("schedule.status: {e}")))?;
        if !matches!(self.schedule.backup_mode.as_str(), "run" | "ephemeral") {
            return Err(err(format!(
                "schedule.backup_mode must be \"run\" or \"ephemeral\", got {:?}",
                self.schedule.backup_mode
            )));
        }
        self.deploy.validate()?;
        self.secrets.validate()
    }

    /// Checks what the backup commands (and `schedule`) need besides: a location, a password,
    /// S3 settings when on S3, a retention that keeps something, valid excludes.
    pub fn validate_backup(&self) -> Result<(), ConfigError> {
        self.backup_checks()
            .map_err(|e| err(format!("invalid configuration: {e}")))
    }

    fn backup_checks(&self) -> Result<(), ConfigError> {
        if let Location::S3 { .. } = self.location()? {
            let s3 = &self.repository.s3;
            if s3.endpoint.is_empty() {
                return Err(err(
                    "repository.s3.endpoint is required for an s3:// location (R2: https://<account>.r2.cloudflarestorage.com)",
                ));
            }
            if s3.access_key_id.is_empty() || s3.secret_access_key.is_empty() {
                return Err(err(
                    "repository.s3.access_key_id and secret_access_key (or their _file forms) are required for an s3:// location",
                ));
            }
            if !(1..=64).contains(&s3.connections) {
                return Err(err(format!(
                    "repository.s3.connections must be 1 to 64, got {}",
                    s3.connections
                )));
            }
        }
        if self.repository.password.is_empty() {
            return Err(err(
                "repository.password_file (or repository.password) is required",
            ));
        }
        let r = &self.retention;
        if r.keep_daily == 0 && r.keep_weekly == 0 && r.keep_monthly == 0 {
            return Err(err(
                "retention keeps nothing (keep_daily, keep_weekly and keep_monthly are all 0): forget would delete every snapshot",
            ));
        }
        for pattern in &self.backup.exclude {
            ignore::overrides::OverrideBuilder::new("/")
                .add(&format!("!{pattern}"))
                .map_err(|e| {
                    err(format!(
                        "backup.exclude: {pattern:?} is not a valid glob: {e}"
                    ))
                })?;
        }
        if !self.backup.daemon_url.is_empty() && self.backup.daemon_data_dir.is_empty() {
            return Err(err(
                "backup.daemon_url is set but backup.daemon_data_dir is not: the checkpoint is read from the daemon's data directory",
            ));
        }
        Ok(())
    }

    /// The snapshot host: configured, else this machine's name.
    pub fn host(&self) -> String {
        if !self.backup.host.is_empty() {
            return self.backup.host.clone();
        }
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "localhost".into())
    }
}

/// Loads and validates the configuration. `env` is the process environment (tests pass their own).
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let config = load_for_deploy(file, env)?;
    config.validate_backup()?;
    Ok(config)
}

/// Loads and validates what the `deploy` commands need: a host running only deployments needs
/// no backup repository or password.
pub fn load_for_deploy(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let (mut config, origins): (Config, _) = LAYERS.load_with_origins(file, env, Vec::new())?;
    config.repository.password_key =
        if origins.of("repository", "password") == Some("repository.password_file") {
            "repository.password_file"
        } else {
            "repository.password"
        };
    config
        .validate()
        .map_err(|e| err(format!("invalid configuration: {e}")))?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_example_file_parses_and_validates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("sidecar.example.toml");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "hunter2\n").expect("write");
        let text = std::fs::read_to_string(&example)
            .expect("example")
            .replace("/run/secrets/restic-password", &pw.display().to_string());
        let file = dir.path().join("sidecar.toml");
        std::fs::write(&file, text).expect("write");
        let keys = env(&[
            ("CONCIERGE_SIDECAR_REPOSITORY_S3__ACCESS_KEY_ID", "AK"),
            ("CONCIERGE_SIDECAR_REPOSITORY_S3__SECRET_ACCESS_KEY", "SK"),
        ]);
        let c = load(Some(&file), keys).expect("example config");
        assert_eq!(c.repository.password.expose(), "hunter2");
        assert_eq!(
            c.location().expect("location"),
            Location::S3 {
                bucket: "backups".into(),
                prefix: "concierge".into()
            }
        );
        assert_eq!(c.repository.s3.region, "auto");
        assert_eq!(
            (
                c.retention.keep_daily,
                c.retention.keep_weekly,
                c.retention.keep_monthly
            ),
            (7, 4, 12)
        );
    }

    #[test]
    fn environment_variables_override_the_file_with_typed_values() {
        let c = load(
            None,
            env(&[
                ("CONCIERGE_SIDECAR_REPOSITORY__LOCATION", "/tmp/repo"),
                ("CONCIERGE_SIDECAR_REPOSITORY__PASSWORD", "pw"),
                ("CONCIERGE_SIDECAR_RETENTION__KEEP_DAILY", "3"),
                ("CONCIERGE_SIDECAR_BACKUP__SOURCES", "/a, /b"),
                ("CONCIERGE_SIDECAR_REPOSITORY_S3__PATH_STYLE", "false"),
            ]),
        )
        .expect("config");
        assert_eq!(c.retention.keep_daily, 3);
        assert_eq!(c.backup.sources, ["/a", "/b"]);
        assert!(!c.repository.s3.path_style);
        assert_eq!(
            c.location().expect("location"),
            Location::Local("/tmp/repo".into())
        );
    }

    #[test]
    fn mistakes_are_named_with_their_key() {
        let base = [("CONCIERGE_SIDECAR_REPOSITORY__PASSWORD", "pw")];
        let with = |extra: (&str, &str)| {
            let mut e = env(&base);
            e.push((extra.0.to_owned(), extra.1.to_owned()));
            load(None, e).expect_err("invalid").to_string()
        };
        assert!(
            with(("CONCIERGE_SIDECAR_RETENTION__KEEP_DAILY", "seven"))
                .contains("retention.keep_daily")
        );
        assert!(with(("CONCIERGE_SIDECAR_NOPE__X", "1")).contains("unknown section NOPE"));
        let colour = with(("CONCIERGE_SIDECAR_BACKUP__COLOUR", "1"));
        assert!(
            colour.contains("[backup]")
                && colour.contains("colour")
                && colour.contains("CONCIERGE_SIDECAR_BACKUP__COLOUR"),
            "{colour}"
        );
        assert!(
            with(("CONCIERGE_SIDECAR_BACKUP_HOST", "x")).contains("CONCIERGE_SIDECAR_BACKUP__HOST")
        );
        let glob = with(("CONCIERGE_SIDECAR_BACKUP__EXCLUDE", "*.tmp, cache/[a"));
        assert!(
            glob.contains("backup.exclude") && glob.contains("cache/[a"),
            "{glob}"
        );
        let age = with(("CONCIERGE_SIDECAR_STATUS__MAX_AGE", "26 hours"));
        assert!(
            age.contains("[status]") && age.contains("26 hours"),
            "{age}"
        );
        assert!(
            with(("CONCIERGE_SIDECAR_REPOSITORY__LOCATION", "s3://b/p"))
                .contains("repository.s3.endpoint")
        );
        let none = load(None, Vec::new()).expect_err("no password").to_string();
        assert!(none.contains("password_file"), "{none}");
    }

    #[test]
    fn secrets_come_from_files_and_never_show_in_debug_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("key");
        std::fs::write(&f, "s3cr3t-value\n").expect("write");
        let c = load(
            None,
            env(&[
                (
                    "CONCIERGE_SIDECAR_REPOSITORY__PASSWORD_FILE",
                    f.to_str().expect("utf8"),
                ),
                ("CONCIERGE_SIDECAR_HETZNER__TOKEN", "hz-token-value"),
            ]),
        )
        .expect("config");
        assert_eq!(c.repository.password.expose(), "s3cr3t-value");
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cr3t-value") && !shown.contains("hz-token-value"),
            "{shown}"
        );
        let both = load(
            None,
            env(&[
                (
                    "CONCIERGE_SIDECAR_REPOSITORY__PASSWORD_FILE",
                    f.to_str().expect("utf8"),
                ),
                ("CONCIERGE_SIDECAR_REPOSITORY__PASSWORD", "x"),
            ]),
        )
        .expect_err("both");
        assert!(both.to_string().contains("both set"), "{both}");
    }

    #[test]
    fn a_retention_that_keeps_nothing_is_refused() {
        let e = load(
            None,
            env(&[
                ("CONCIERGE_SIDECAR_REPOSITORY__PASSWORD", "pw"),
                ("CONCIERGE_SIDECAR_RETENTION__KEEP_DAILY", "0"),
                ("CONCIERGE_SIDECAR_RETENTION__KEEP_WEEKLY", "0"),
                ("CONCIERGE_SIDECAR_RETENTION__KEEP_MONTHLY", "0"),
            ]),
        )
        .expect_err("keeps nothing");
        assert!(e.to_string().contains("keeps nothing"));
    }
}
