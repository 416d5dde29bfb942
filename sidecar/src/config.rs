//! The sidecar's configuration (`sidecar.toml`, DESIGN §7): compiled defaults, then the file
//! (`--config FILE`, else `sidecar.toml` when it exists), then the environment
//! (`CONCIERGE_SIDECAR_<SECTION>__<KEY>`; the `[repository.s3]` section is `REPOSITORY_S3`),
//! then secrets given as `<key>_file` (the file's content, trailing newline dropped). Every error
//! names the key and where it came from; secrets never appear in `Debug` output or errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

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
];

/// A configuration problem.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// A secret string: never printed.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<redacted>")
        }
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
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
}

/// `[repository]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepositoryConfig {
    /// A local path, or `s3://bucket/prefix` (then `[repository.s3]` says where).
    pub location: String,
    /// The repository password (prefer `password_file`).
    pub password: Secret,
    /// Attempts per S3 request (transient failures are retried with backoff).
    pub retries: u32,
    pub s3: S3Section,
}

impl Default for RepositoryConfig {
    fn default() -> Self {
        RepositoryConfig {
            location: "/srv/backups/repo".into(),
            password: Secret::default(),
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
    pub timeout: String,
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
            timeout: "5m".into(),
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
    pub max_age: String,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            file: "/var/lib/concierge-sidecar/status.json".into(),
            max_age: "26h".into(),
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
    pub timeout: String,
    /// SSH keys (names or ids) put on the server; none: Hetzner generates a root password,
    /// which is never read or logged.
    pub ssh_keys: Vec<String>,
    /// How often the report (and actions) are polled, e.g. `"15s"`.
    pub poll_interval: String,
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
            timeout: "2h".into(),
            ssh_keys: Vec::new(),
            poll_interval: "15s".into(),
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

    /// Checks what every command needs: a location, a password, S3 settings when on S3,
    /// durations and a retention that keeps something.
    pub fn validate(&self) -> Result<(), ConfigError> {
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
            parse_duration(&s3.timeout).map_err(|e| err(format!("repository.s3.timeout: {e}")))?;
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
        parse_duration(&self.status.max_age).map_err(|e| err(format!("status.max_age: {e}")))?;
        parse_duration(&self.hetzner.timeout).map_err(|e| err(format!("hetzner.timeout: {e}")))?;
        parse_duration(&self.hetzner.poll_interval)
            .map_err(|e| err(format!("hetzner.poll_interval: {e}")))?;
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

/// `"90s"`, `"30m"`, `"26h"`, `"7d"`, or a combination (`"1h30m"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration (use e.g. 90s, 30m, 26h, 7d)".into());
    }
    let mut total_ms = 0u64;
    let mut number = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit_ms = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => {
                return Err(format!(
                    "{text:?}: unknown unit {c:?} (use ms, s, m, h or d)"
                ));
            }
        };
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{text:?}: a number must come before {c:?}"))?;
        total_ms = total_ms.saturating_add(n.saturating_mul(unit_ms));
        number.clear();
    }
    if !number.is_empty() {
        return Err(format!(
            "{text:?}: the last number has no unit (ms, s, m, h or d)"
        ));
    }
    Ok(Duration::from_millis(total_ms))
}

fn table_of<'a>(value: &'a mut Table, dotted: &str) -> Result<&'a mut Table, ConfigError> {
    let mut t = value;
    for part in dotted.split('.') {
        t = match t
            .entry(part.to_owned())
            .or_insert_with(|| Value::Table(Table::new()))
        {
            Value::Table(inner) => inner,
            other @ (Value::String(_)
            | Value::Integer(_)
            | Value::Float(_)
            | Value::Boolean(_)
            | Value::Datetime(_)
            | Value::Array(_)) => {
                return Err(err(format!(
                    "`{dotted}` must be a section, found a {}",
                    other.type_str()
                )));
            }
        };
    }
    Ok(t)
}

fn lookup<'a>(tree: &'a Table, section: &str, key: &str) -> Option<&'a Value> {
    let mut t = tree;
    for part in section.split('.') {
        t = t.get(part)?.as_table()?;
    }
    t.get(key)
}

/// Loads and validates the configuration. `env` is the process environment (tests pass their own).
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let defaults = Table::try_from(Config::default()).map_err(|e| err(e.to_string()))?;
    let mut tree = defaults.clone();
    let file = file.map(Path::to_path_buf).or_else(|| {
        Path::new(DEFAULT_FILE)
            .is_file()
            .then(|| PathBuf::from(DEFAULT_FILE))
    });
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(format!(
                "cannot read the configuration file {}: {e}",
                path.display()
            ))
        })?;
        let parsed: Table = text
            .parse()
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
        overlay(&mut tree, parsed, "", &path.display().to_string())?;
    }
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    vars.sort();
    let sections: BTreeMap<String, &str> = [
        "repository",
        "repository.s3",
        "backup",
        "retention",
        "status",
        "alert",
        "hetzner",
        "schedule",
    ]
    .into_iter()
    .map(|s| (s.replace('.', "_").to_ascii_uppercase(), s))
    .collect();
    for (name, raw) in vars {
        let Some((section, key)) = name[ENV_PREFIX.len()..].split_once("__") else {
            return Err(err(format!(
                "environment variable {name}: expected {ENV_PREFIX}<SECTION>__<KEY>"
            )));
        };
        let Some(section) = sections.get(section).copied() else {
            return Err(err(format!(
                "environment variable {name}: unknown section {section} (known: {})",
                sections.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        };
        let key = key.to_ascii_lowercase();
        let value = typed(&defaults, section, &key, &raw)
            .map_err(|e| err(format!("environment variable {name}: {e}")))?;
        table_of(&mut tree, section)?.insert(key, value);
    }
    for (section, key) in SECRET_KEYS {
        let file_key = format!("{key}_file");
        let Some(path) = table_of(&mut tree, section)?.remove(&file_key) else {
            continue;
        };
        let Value::String(path) = path else {
            return Err(err(format!("`{section}.{file_key}` must be a file path")));
        };
        let current = lookup(&tree, section, key);
        if current.is_some_and(|v| v.as_str() != Some("")) {
            return Err(err(format!(
                "`{section}.{key}` and `{section}.{file_key}` are both set; keep one"
            )));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| err(format!("`{section}.{file_key}`: cannot read {path}: {e}")))?;
        table_of(&mut tree, section)?.insert(
            (*key).to_owned(),
            Value::String(text.trim_end_matches(['\n', '\r']).to_owned()),
        );
    }
    let config: Config = Value::Table(tree)
        .try_into()
        .map_err(|e: toml::de::Error| err(format!("invalid configuration: {}", e.message())))?;
    config
        .validate()
        .map_err(|e| err(format!("invalid configuration: {e}")))?;
    Ok(config)
}

/// Overlays `layer` on `tree` key by key (sections merge; other values replace).
fn overlay(tree: &mut Table, layer: Table, path: &str, origin: &str) -> Result<(), ConfigError> {
    for (key, value) in layer {
        let dotted = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match (tree.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(inner)) => {
                overlay(existing, inner, &dotted, origin)?
            }
            (Some(Value::Table(_)), other) => {
                return Err(err(format!(
                    "{origin}: `{dotted}` must be a section, not a {}",
                    other.type_str()
                )));
            }
            (_, value) => {
                tree.insert(key, value);
            }
        }
    }
    Ok(())
}

/// An environment variable's text as the type the key has (lists are comma-separated).
fn typed(defaults: &Table, section: &str, key: &str, raw: &str) -> Result<Value, String> {
    if key
        .strip_suffix("_file")
        .is_some_and(|b| SECRET_KEYS.contains(&(section, b)))
    {
        return Ok(Value::String(raw.to_owned()));
    }
    Ok(match lookup(defaults, section, key) {
        Some(Value::Integer(_)) => Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| format!("`{section}.{key}` must be a whole number, got {raw:?}"))?,
        ),
        Some(Value::Boolean(_)) => Value::Boolean(
            raw.trim()
                .parse()
                .map_err(|_| format!("`{section}.{key}` must be true or false, got {raw:?}"))?,
        ),
        Some(Value::Array(_)) => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ),
        Some(Value::String(_)) => Value::String(raw.to_owned()),
        Some(Value::Table(_)) => {
            return Err(format!("`{section}.{key}` is a section, not a value"));
        }
        Some(Value::Float(_) | Value::Datetime(_)) | None => {
            return Err(format!("unknown key `{section}.{key}`"));
        }
    })
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
        assert!(
            with(("CONCIERGE_SIDECAR_BACKUP__COLOUR", "1")).contains("unknown key `backup.colour`")
        );
        assert!(with(("CONCIERGE_SIDECAR_STATUS__MAX_AGE", "26 hours")).contains("status.max_age"));
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
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("26h"), Ok(Duration::from_secs(26 * 3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("26").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("3w").is_err());
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
