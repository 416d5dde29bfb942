//! Layered configuration, the same for every Concierge program: compiled defaults, then a TOML
//! file, then `<PREFIX><SECTION>__<KEY>` environment variables, then command-line flags, then
//! secrets given as `<key>_file` (Docker secrets: the file's content). Each layer overrides the
//! one before key by key.
//!
//! The behaviour is strict: an unknown section or key, a value of the wrong type or a malformed
//! environment variable (one with the program's prefix that is not `<SECTION>__<KEY>`) is an
//! error that names the key and where it was set. A [`Secret`] never shows in `Debug` output and
//! a secret's value never appears in an error.
//!
//! What a valid configuration means beyond its types (ranges, keys that need each other) is the
//! program's own: each validates the value [`Layers::load`] returns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

pub use duration::TextDuration;

mod duration;

/// A configuration problem, naming the key and the layer it came from.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// An error of the program's own validation.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError(message.into())
    }
}

fn err(message: impl Into<String>) -> ConfigError {
    ConfigError(message.into())
}

/// A secret string (a token, a password, a signing key): `Debug` shows `<redacted>` (or `""`
/// when empty); the value is only reachable through [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value, for the one place that sends or compares it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "<redacted>"
        })
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

/// What a program's configuration looks like from outside.
#[derive(Debug, Clone, Copy)]
pub struct Layers<'a> {
    /// Prefix of the program's environment variables, e.g. `CONCIERGE_`.
    pub env_prefix: &'a str,
    /// Variables with the prefix that are not configuration keys: other programs' prefixes
    /// (`CONCIERGE_SIDECAR_` for the daemon) and names read elsewhere (a flag's `env`).
    pub not_keys: &'a [&'a str],
    /// `(section, key)` pairs that are secrets: accepted as `<key>_file`, a list secret one
    /// entry per line. `section` is dotted for nested sections (`repository.s3`).
    pub secret_keys: &'a [(&'a str, &'a str)],
    /// Read when no file is named and it exists.
    pub default_file: &'a str,
}

/// A value set on the command line: `(section, key, value)`.
pub type Flag = (&'static str, &'static str, Value);

impl Layers<'_> {
    /// Builds `T` from its layers. `file` is `--config` (an explicit file must exist); `env`
    /// is the process environment (tests pass their own); `flags` are applied after it.
    pub fn load<T>(
        &self,
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: Vec<Flag>,
    ) -> Result<T, ConfigError>
    where
        T: Serialize + DeserializeOwned + Default,
    {
        self.load_with_origins(file, env, flags)
            .map(|(config, _)| config)
    }

    /// [`Layers::load`], and where each key that was set came from.
    pub fn load_with_origins<T>(
        &self,
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: Vec<Flag>,
    ) -> Result<(T, Origins), ConfigError>
    where
        T: Serialize + DeserializeOwned + Default,
    {
        let defaults = Table::try_from(T::default())
            .map_err(|e| err(format!("the compiled defaults do not serialise: {e}")))?;
        let sections = sections_of(&defaults);
        let mut tree = defaults.clone();
        let mut origins = Origins::default();

        let file = file.map(Path::to_path_buf).or_else(|| {
            Path::new(self.default_file)
                .is_file()
                .then(|| PathBuf::from(self.default_file))
        });
        if let Some(path) = &file {
            let origin = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|e| err(format!("cannot read the configuration file {origin}: {e}")))?;
            let parsed: Table = text.parse().map_err(|e| err(format!("{origin}: {e}")))?;
            overlay(&mut tree, parsed, "", &origin, &mut origins)?;
        }

        for (name, raw) in self.variables(env) {
            let (section, key) = self.variable_key(&name, &sections)?;
            let value = self
                .typed(&defaults, section, &key, &raw)
                .map_err(|e| err(format!("environment variable {name}: {e}")))?;
            origins.set(section, &key, &name);
            table_at(&mut tree, section)?.insert(key, value);
        }

        for (section, key, value) in flags {
            origins.set(section, key, &format!("--{}", key.replace('_', "-")));
            table_at(&mut tree, section)?.insert(key.to_owned(), value);
        }

        self.read_secret_files(&mut tree, &defaults, &mut origins)?;
        let config = deserialize(tree, &defaults, &origins)?;
        Ok((config, origins))
    }

    /// The environment's configuration variables, sorted (so errors are deterministic).
    fn variables(&self, env: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| {
                name.starts_with(self.env_prefix)
                    && !self
                        .not_keys
                        .iter()
                        .any(|n| name == n || (n.ends_with('_') && name.starts_with(n)))
            })
            .collect();
        vars.sort();
        vars
    }

    /// `(section, key)` of a variable, or the error saying what is wrong with its name.
    fn variable_key<'s>(
        &self,
        name: &str,
        sections: &'s BTreeMap<String, String>,
    ) -> Result<(&'s str, String), ConfigError> {
        let rest = &name[self.env_prefix.len()..];
        let Some((section, key)) = rest
            .split_once("__")
            .filter(|(s, k)| !s.is_empty() && !k.is_empty())
        else {
            return Err(err(format!(
                "environment variable {name}: expected {prefix}<SECTION>__<KEY> (two underscores between section and key){hint}",
                prefix = self.env_prefix,
                hint = rest
                    .split_once('_')
                    .filter(|(s, _)| sections.contains_key(*s))
                    .map(|(s, k)| format!("; did you mean {}{s}__{k}?", self.env_prefix))
                    .unwrap_or_default(),
            )));
        };
        let Some(section) = sections.get(section) else {
            return Err(err(format!(
                "environment variable {name}: unknown section {section} (known: {})",
                sections.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        };
        Ok((section.as_str(), key.to_ascii_lowercase()))
    }

    /// An environment variable's text as the type the key's default has; lists are
    /// comma-separated. Keys without a default (optional values) are strings.
    fn typed(
        &self,
        defaults: &Table,
        section: &str,
        key: &str,
        raw: &str,
    ) -> Result<Value, String> {
        if key
            .strip_suffix("_file")
            .is_some_and(|base| self.secret_keys.contains(&(section, base)))
        {
            return Ok(Value::String(raw.to_owned()));
        }
        let secret = self.secret_keys.contains(&(section, key));
        let shown = |raw: &str| {
            if secret {
                "a secret value (not shown)".to_owned()
            } else {
                format!("{raw:?}")
            }
        };
        Ok(match lookup(defaults, section, key) {
            Some(Value::Integer(_)) => Value::Integer(raw.trim().parse().map_err(|_| {
                format!(
                    "`{section}.{key}` must be a whole number, got {}",
                    shown(raw)
                )
            })?),
            Some(Value::Float(_)) => {
                Value::Float(raw.trim().parse().map_err(|_| {
                    format!("`{section}.{key}` must be a number, got {}", shown(raw))
                })?)
            }
            Some(Value::Boolean(_)) => Value::Boolean(raw.trim().parse().map_err(|_| {
                format!(
                    "`{section}.{key}` must be true or false, got {}",
                    shown(raw)
                )
            })?),
            Some(Value::Array(_)) => Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ),
            Some(Value::Table(_)) => {
                return Err(format!("`{section}.{key}` is a section, not a value"));
            }
            Some(Value::String(_) | Value::Datetime(_)) | None => Value::String(raw.to_owned()),
        })
    }

    /// Replaces each `<key>_file` of a secret key by the file's content (a list: one entry per
    /// line; a string: the trailing newline dropped).
    fn read_secret_files(
        &self,
        tree: &mut Table,
        defaults: &Table,
        origins: &mut Origins,
    ) -> Result<(), ConfigError> {
        for (section, key) in self.secret_keys {
            let file_key = format!("{key}_file");
            let Some(path) = table_at(tree, section)?.remove(&file_key) else {
                continue;
            };
            let Value::String(path) = path else {
                return Err(err(format!("`{section}.{file_key}` must be a file path")));
            };
            let default = lookup(defaults, section, key);
            if lookup(tree, section, key).is_some_and(|v| Some(v) != default) {
                return Err(err(format!(
                    "`{section}.{key}` and `{section}.{file_key}` are both set; keep one"
                )));
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| err(format!("`{section}.{file_key}`: cannot read {path}: {e}")))?;
            let value = if matches!(default, Some(Value::Array(_))) {
                Value::Array(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(|l| Value::String(l.to_owned()))
                        .collect(),
                )
            } else {
                Value::String(text.trim_end_matches(['\n', '\r']).to_owned())
            };
            table_at(tree, section)?.insert((*key).to_owned(), value);
            origins.set(section, key, &format!("{section}.{file_key}"));
        }
        Ok(())
    }
}

/// Where each key was last set (`section.key` → the file's path, the variable, the flag, or
/// `section.key_file` for a secret read from a file).
#[derive(Debug, Default)]
pub struct Origins(BTreeMap<String, String>);

impl Origins {
    fn set(&mut self, section: &str, key: &str, origin: &str) {
        self.0.insert(format!("{section}.{key}"), origin.to_owned());
    }
    /// Where `section.key` was set; `None` when it has its default.
    pub fn of(&self, section: &str, key: &str) -> Option<&str> {
        self.0.get(&format!("{section}.{key}")).map(String::as_str)
    }
}

/// Every section of the defaults (nested ones dotted) by its environment spelling
/// (`repository.s3` → `REPOSITORY_S3`).
fn sections_of(defaults: &Table) -> BTreeMap<String, String> {
    fn walk(t: &Table, path: &str, out: &mut BTreeMap<String, String>) {
        for (k, v) in t {
            if let Value::Table(inner) = v {
                let dotted = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                out.insert(
                    dotted.replace('.', "_").to_ascii_uppercase(),
                    dotted.clone(),
                );
                walk(inner, &dotted, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(defaults, "", &mut out);
    out
}

fn table_at<'t>(tree: &'t mut Table, dotted: &str) -> Result<&'t mut Table, ConfigError> {
    let mut t = tree;
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
                    "`{dotted}` must be a section ([{dotted}]), found a {}",
                    other.type_str()
                )));
            }
        };
    }
    Ok(t)
}

fn lookup<'t>(tree: &'t Table, section: &str, key: &str) -> Option<&'t Value> {
    let mut t = tree;
    for part in section.split('.') {
        t = t.get(part)?.as_table()?;
    }
    t.get(key)
}

/// Overlays a file's table on the tree key by key: sections merge, values replace; a value
/// where the defaults have a section, or a top-level value, is an error.
fn overlay(
    tree: &mut Table,
    layer: Table,
    path: &str,
    origin: &str,
    origins: &mut Origins,
) -> Result<(), ConfigError> {
    for (key, value) in layer {
        let dotted = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match (tree.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(inner)) => {
                overlay(existing, inner, &dotted, origin, origins)?
            }
            (Some(Value::Table(_)), other) => {
                return Err(err(format!(
                    "{origin}: `{dotted}` must be a section ([{dotted}]), not a {}",
                    other.type_str()
                )));
            }
            (None, Value::Table(inner)) if path.is_empty() => {
                // An unknown section: kept, so deserialising names it.
                tree.insert(key, Value::Table(inner));
            }
            (None, other) if path.is_empty() => {
                return Err(err(format!(
                    "{origin}: `{dotted}` must be inside a section, not a top-level {}",
                    other.type_str()
                )));
            }
            (_, value) => {
                origins.set(path, &key, origin);
                tree.insert(key, value);
            }
        }
    }
    Ok(())
}

/// Deserialises the merged tree. On failure the section at fault is found by deserialising
/// the defaults with only that section replaced, so the error names it (and, for an unknown
/// key, where it was set).
fn deserialize<T>(tree: Table, defaults: &Table, origins: &Origins) -> Result<T, ConfigError>
where
    T: DeserializeOwned,
{
    if let Some(unknown) = tree.keys().find(|k| !defaults.contains_key(*k)) {
        return Err(err(format!(
            "unknown section [{unknown}] (known: {})",
            defaults.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let whole = match Value::Table(tree.clone()).try_into::<T>() {
        Ok(config) => return Ok(config),
        Err(e) => e,
    };
    for (section, value) in &tree {
        let mut probe = defaults.clone();
        probe.insert(section.clone(), value.clone());
        if let Err(e) = Value::Table(probe).try_into::<T>() {
            let message = e.message().trim().to_owned();
            let origin = unknown_field(&message)
                .and_then(|field| origins.of(section, field))
                .map(|o| format!(" (set in {o})"))
                .unwrap_or_default();
            return Err(err(format!("[{section}]: {message}{origin}")));
        }
    }
    Err(err(format!(
        "invalid configuration: {}",
        whole.message().trim()
    )))
}

/// The field named by serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(field, _)| field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Config {
        server: Server,
        store: Store,
    }

    impl Default for Config {
        fn default() -> Self {
            Config {
                server: Server {
                    port: 8080,
                    ratio: 0.5,
                    verbose: false,
                    tokens: Vec::new(),
                    name: "x".into(),
                    key: None,
                },
                store: Store {
                    s3: S3 {
                        secret: Secret::default(),
                        timeout: TextDuration::from_secs(300),
                    },
                },
            }
        }
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Server {
        port: u16,
        ratio: f32,
        verbose: bool,
        tokens: Vec<Secret>,
        name: String,
        key: Option<Secret>,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Store {
        s3: S3,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct S3 {
        secret: Secret,
        timeout: TextDuration,
    }

    const LAYERS: Layers<'static> = Layers {
        env_prefix: "APP_",
        not_keys: &["APP_OTHER_", "APP_CONFIG"],
        secret_keys: &[
            ("server", "tokens"),
            ("server", "key"),
            ("store.s3", "secret"),
        ],
        default_file: "/nonexistent/app.toml",
    };

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load(
        file: Option<&Path>,
        vars: &[(&str, &str)],
        flags: Vec<Flag>,
    ) -> Result<Config, String> {
        LAYERS
            .load::<Config>(file, env(vars), flags)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_then_file_then_environment_then_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("app.toml");
        std::fs::write(
            &file,
            "[server]\nport = 9000\nname = \"file\"\nratio = 0.25\n[store.s3]\ntimeout = \"1h30m\"\n",
        )
        .expect("write");
        let c = load(None, &[], Vec::new()).expect("defaults");
        assert_eq!(c, Config::default());
        let c = load(
            Some(&file),
            &[
                ("APP_SERVER__NAME", "env"),
                ("APP_SERVER__VERBOSE", "true"),
                ("APP_SERVER__TOKENS", "a, b,"),
                ("APP_OTHER_THING", "ignored"),
                ("APP_CONFIG", "ignored"),
                ("UNRELATED", "ignored"),
            ],
            vec![("server", "port", Value::Integer(9100))],
        )
        .expect("layers");
        assert_eq!(c.server.port, 9100);
        assert_eq!(c.server.name, "env");
        assert_eq!(c.server.ratio, 0.25);
        assert!(c.server.verbose);
        assert_eq!(c.server.tokens, [Secret::from("a"), Secret::from("b")]);
        assert_eq!(c.store.s3.timeout.get().as_secs(), 5400);
    }

    #[test]
    fn a_malformed_variable_is_an_error_naming_it() {
        let e = load(None, &[("APP_SERVER_PORT", "1")], Vec::new()).expect_err("malformed");
        assert!(
            e.contains("APP_SERVER_PORT") && e.contains("did you mean APP_SERVER__PORT"),
            "{e}"
        );
        let e = load(None, &[("APP_NOPE__X", "1")], Vec::new()).expect_err("section");
        assert!(
            e.contains("unknown section NOPE") && e.contains("SERVER"),
            "{e}"
        );
        let e = load(None, &[("APP_SERVER__PORT", "lots")], Vec::new()).expect_err("type");
        assert!(
            e.contains("APP_SERVER__PORT") && e.contains("server.port"),
            "{e}"
        );
        let e = load(None, &[("APP_SERVER__COLOUR", "red")], Vec::new()).expect_err("key");
        assert!(
            e.contains("[server]") && e.contains("colour") && e.contains("APP_SERVER__COLOUR"),
            "{e}"
        );
        let e =
            load(None, &[("APP_STORE_S3__TIMEOUT", "26 hours")], Vec::new()).expect_err("duration");
        assert!(e.contains("[store]") && e.contains("26 hours"), "{e}");
    }

    #[test]
    fn file_mistakes_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("app.toml");
        for (text, expect) in [
            ("[server]\nprot = 1\n", "prot"),
            ("[sever]\nport = 1\n", "unknown section [sever]"),
            ("port = 1\n", "top-level"),
            ("server = 3\n", "must be a section"),
            ("[server\n", "app.toml"),
        ] {
            std::fs::write(&file, text).expect("write");
            let e = load(Some(&file), &[], Vec::new()).expect_err(text);
            assert!(e.contains(expect), "{text:?}: {e}");
        }
        let e = load(Some(&dir.path().join("none.toml")), &[], Vec::new()).expect_err("missing");
        assert!(e.contains("none.toml"), "{e}");
    }

    #[test]
    fn secrets_come_from_files_and_never_show() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, "t1\n\n t2 \n").expect("write");
        let key = dir.path().join("key");
        std::fs::write(&key, "s3cr3t-value\n").expect("write");
        let file = dir.path().join("app.toml");
        std::fs::write(
            &file,
            format!(
                "[server]\ntokens_file = {:?}\n",
                tokens.display().to_string()
            ),
        )
        .expect("write");
        let c = load(
            Some(&file),
            &[
                ("APP_SERVER__KEY_FILE", &key.display().to_string()),
                ("APP_STORE_S3__SECRET", "hz-token-value"),
            ],
            Vec::new(),
        )
        .expect("secrets");
        assert_eq!(c.server.tokens, [Secret::from("t1"), Secret::from("t2")]);
        assert_eq!(
            c.server.key.as_ref().map(Secret::expose),
            Some("s3cr3t-value")
        );
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("hz-token") && !shown.contains("t1"),
            "{shown}"
        );
        let e = load(
            None,
            &[
                ("APP_STORE_S3__SECRET", "x"),
                ("APP_STORE_S3__SECRET_FILE", &key.display().to_string()),
            ],
            Vec::new(),
        )
        .expect_err("both");
        assert!(e.contains("both set"), "{e}");
        let e = load(
            None,
            &[("APP_SERVER__KEY_FILE", "/nonexistent/key")],
            Vec::new(),
        )
        .expect_err("missing file");
        assert!(e.contains("server.key_file"), "{e}");
    }
}
