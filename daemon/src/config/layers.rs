//! Building a [`Config`] from its layers: compiled defaults, the file, the environment, flags,
//! and `<key>_file` secrets. Every error names the key (and the variable or file) at fault.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::{Config, SECRET_KEYS};

/// Prefix of the daemon's environment variables (`CONCIERGE_SERVER__LISTEN`).
const ENV_PREFIX: &str = "CONCIERGE_";

/// What the command line overrides.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--config FILE`; without it `concierge.toml` is read when it exists.
    pub config: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
}

/// Loads the configuration from all its layers and validates it.
pub fn load(
    flags: &Flags,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<Config> {
    let defaults = Table::try_from(Config::default())?;
    let mut tree = defaults.clone();

    let file = match &flags.config {
        Some(path) => Some(path.clone()),
        None => super::default_file()
            .is_file()
            .then(|| super::default_file().to_owned()),
    };
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read the configuration file {}: {e}", path.display())
        })?;
        let parsed: Table = text
            .parse()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        merge(&mut tree, parsed, &format!("{}", path.display()))?;
    }

    let mut from_env = Table::new();
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !k.starts_with("CONCIERGE_SIDECAR_"))
        .collect();
    vars.sort();
    for (name, value) in vars {
        let Some((section, key)) = name[ENV_PREFIX.len()..].split_once("__") else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let typed = typed_env_value(&defaults, &section, &key, &value)
            .map_err(|e| anyhow::anyhow!("environment variable {name}: {e}"))?;
        section_mut(&mut from_env, &section)?.insert(key, typed);
    }
    merge(&mut tree, from_env, "the environment")?;

    if let Some(listen) = &flags.listen {
        section_mut(&mut tree, "server")?.insert("listen".into(), Value::String(listen.clone()));
    }
    if let Some(dir) = &flags.data_dir {
        section_mut(&mut tree, "storage")?
            .insert("data_dir".into(), Value::String(dir.display().to_string()));
    }

    resolve_secret_files(&mut tree)?;
    let config = deserialize(tree)?;
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    Ok(config)
}

fn section_mut<'a>(tree: &'a mut Table, section: &str) -> anyhow::Result<&'a mut Table> {
    match tree
        .entry(section.to_owned())
        .or_insert_with(|| Value::Table(Table::new()))
    {
        Value::Table(t) => Ok(t),
        other @ (Value::String(_)
        | Value::Integer(_)
        | Value::Float(_)
        | Value::Boolean(_)
        | Value::Datetime(_)
        | Value::Array(_)) => anyhow::bail!(
            "`{section}` must be a table ([{section}]), found {}",
            other.type_str()
        ),
    }
}

/// Overlays `layer` on `tree`, section by section.
fn merge(tree: &mut Table, layer: Table, origin: &str) -> anyhow::Result<()> {
    for (section, value) in layer {
        let Value::Table(keys) = value else {
            anyhow::bail!(
                "{origin}: `{section}` must be a section ([{section}]), not a {}",
                value.type_str()
            );
        };
        let target = section_mut(tree, &section)?;
        for (key, v) in keys {
            target.insert(key, v);
        }
    }
    Ok(())
}

/// An environment variable's text as the type the key has (lists are comma-separated).
fn typed_env_value(defaults: &Table, section: &str, key: &str, raw: &str) -> Result<Value, String> {
    let base = key
        .strip_suffix("_file")
        .filter(|b| SECRET_KEYS.contains(&(section, b)));
    if base.is_some() {
        return Ok(Value::String(raw.to_owned()));
    }
    let default = defaults
        .get(section)
        .and_then(Value::as_table)
        .and_then(|t| t.get(key));
    Ok(match default {
        Some(Value::Integer(_)) => Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| format!("`{section}.{key}` must be a whole number, got {raw:?}"))?,
        ),
        Some(Value::Float(_)) => Value::Float(
            raw.trim()
                .parse()
                .map_err(|_| format!("`{section}.{key}` must be a number, got {raw:?}"))?,
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
        Some(Value::String(_) | Value::Datetime(_) | Value::Table(_)) | None => {
            Value::String(raw.to_owned())
        }
    })
}

/// Replaces `<key>_file` of every secret key by the file's content (lists: one per line).
fn resolve_secret_files(tree: &mut Table) -> anyhow::Result<()> {
    for (section, key) in SECRET_KEYS {
        let Some(Value::Table(t)) = tree.get_mut(*section) else {
            continue;
        };
        let file_key = format!("{key}_file");
        let Some(path) = t.remove(&file_key) else {
            continue;
        };
        let Value::String(path) = path else {
            anyhow::bail!("`{section}.{file_key}` must be a file path");
        };
        if t.contains_key(*key) && t.get(*key) != Config::default_value(section, key).as_ref() {
            anyhow::bail!("`{section}.{key}` and `{section}.{file_key}` are both set; keep one");
        }
        let text = std::fs::read_to_string(Path::new(&path))
            .map_err(|e| anyhow::anyhow!("`{section}.{file_key}`: cannot read {path}: {e}"))?;
        let is_list = matches!(Config::default_value(section, key), Some(Value::Array(_)));
        let value = if is_list {
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
        t.insert((*key).to_owned(), value);
    }
    Ok(())
}

impl Config {
    fn default_value(section: &str, key: &str) -> Option<Value> {
        Table::try_from(Config::default())
            .ok()?
            .get(section)?
            .as_table()?
            .get(key)
            .cloned()
    }
}

fn section<T: DeserializeOwned>(tree: &BTreeMap<String, Value>, name: &str) -> anyhow::Result<T> {
    let value = tree
        .get(name)
        .cloned()
        .unwrap_or_else(|| Value::Table(Table::new()));
    T::deserialize(value).map_err(|e| anyhow::anyhow!("[{name}]: {}", e.to_string().trim()))
}

/// Deserialises section by section so that an error names its section.
fn deserialize(tree: Table) -> anyhow::Result<Config> {
    let tree: BTreeMap<String, Value> = tree.into_iter().collect();
    const SECTIONS: [&str; 12] = [
        "server",
        "storage",
        "auth",
        "models",
        "aircall",
        "guesty",
        "rocketchat",
        "llm",
        "answers",
        "search",
        "qdrant",
        "firestore",
    ];
    if let Some(unknown) = tree.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
        anyhow::bail!(
            "unknown section [{unknown}] (known: {})",
            SECTIONS.join(", ")
        );
    }
    Ok(Config {
        server: section(&tree, "server")?,
        storage: section(&tree, "storage")?,
        auth: section(&tree, "auth")?,
        models: section(&tree, "models")?,
        aircall: section(&tree, "aircall")?,
        guesty: section(&tree, "guesty")?,
        rocketchat: section(&tree, "rocketchat")?,
        llm: section(&tree, "llm")?,
        answers: section(&tree, "answers")?,
        search: section(&tree, "search")?,
        qdrant: section(&tree, "qdrant")?,
        firestore: section(&tree, "firestore")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn flags_with(file: Option<&Path>) -> Flags {
        Flags {
            config: file.map(Path::to_owned),
            ..Flags::default()
        }
    }

    #[test]
    fn defaults_need_no_file_and_are_valid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("none.toml");
        let err = load(&flags_with(Some(&missing)), env(&[]))
            .expect_err("an explicit missing file is an error");
        assert!(err.to_string().contains("none.toml"), "{err}");
        let c = load(&Flags::default(), env(&[])).expect("defaults");
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.storage.data_dir, PathBuf::from("./data"));
        assert_eq!(c.llm_provider(), "extractive");
    }

    #[test]
    fn file_then_environment_then_flags_each_win_over_the_layer_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:9000\"\nmax_body_bytes = 2048\n[search]\nrrf_k = 10\n[auth]\napi_tokens = [\"a\"]\n").expect("write");
        let c = load(
            &flags_with(Some(&file)),
            env(&[
                ("CONCIERGE_SERVER__MAX_BODY_BYTES", "4096"),
                ("CONCIERGE_AUTH__API_TOKENS", "x, y"),
                ("CONCIERGE_SEARCH__DENSE_WEIGHT", "0.5"),
            ]),
        )
        .expect("loads");
        assert_eq!(c.server.listen.port(), 9000);
        assert_eq!(c.server.max_body_bytes, 4096);
        assert_eq!(c.auth.api_tokens, ["x", "y"]);
        assert_eq!(c.search.rrf_k, 10.0);
        assert_eq!(c.search.dense_weight, 0.5);
        let flags = Flags {
            config: Some(file),
            listen: Some("127.0.0.1:9100".into()),
            data_dir: Some("/tmp/d".into()),
        };
        let c = load(
            &flags,
            env(&[("CONCIERGE_SERVER__LISTEN", "127.0.0.1:9050")]),
        )
        .expect("loads");
        assert_eq!(c.server.listen.port(), 9100);
        assert_eq!(c.storage.data_dir, PathBuf::from("/tmp/d"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_that_name_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[server]\nlistne = \"127.0.0.1:1\"\n").expect("write");
        let err = load(&flags_with(Some(&file)), env(&[]))
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("[server]") && err.contains("listne"), "{err}");
        std::fs::write(&file, "[sever]\nlisten = \"x\"\n").expect("write");
        let err = load(&flags_with(Some(&file)), env(&[]))
            .expect_err("unknown section")
            .to_string();
        assert!(err.contains("[sever]"), "{err}");
        let err = load(
            &Flags::default(),
            env(&[("CONCIERGE_SERVER__MAX_BODY_BYTES", "lots")]),
        )
        .expect_err("bad number")
        .to_string();
        assert!(
            err.contains("CONCIERGE_SERVER__MAX_BODY_BYTES")
                && err.contains("server.max_body_bytes"),
            "{err}"
        );
        let err = load(
            &Flags::default(),
            env(&[("CONCIERGE_SERVER__LISTEN", "everywhere")]),
        )
        .expect_err("bad address")
        .to_string();
        assert!(err.contains("[server]"), "{err}");
        let err = load(
            &Flags::default(),
            env(&[("CONCIERGE_GUESTY__SECRET", "plain")]),
        )
        .expect_err("bad secret")
        .to_string();
        assert!(
            err.contains("guesty.secret") && !err.contains("plain"),
            "{err}"
        );
    }

    #[test]
    fn secrets_can_come_from_files_and_lists_from_one_line_each() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, "t1\n\nt2\n").expect("write");
        let key = dir.path().join("key");
        std::fs::write(&key, "sk-123\n").expect("write");
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            format!(
                "[auth]\napi_tokens_file = {:?}\n",
                tokens.display().to_string()
            ),
        )
        .expect("write");
        let c = load(
            &flags_with(Some(&file)),
            env(&[("CONCIERGE_LLM__API_KEY_FILE", &key.display().to_string())]),
        )
        .expect("loads");
        assert_eq!(c.auth.api_tokens, ["t1", "t2"]);
        assert_eq!(c.llm.api_key.as_deref(), Some("sk-123"));
        let err = load(
            &Flags::default(),
            env(&[("CONCIERGE_LLM__API_KEY_FILE", "/nonexistent/key")]),
        )
        .expect_err("missing file")
        .to_string();
        assert!(err.contains("llm.api_key_file"), "{err}");
    }

    #[test]
    fn an_oidc_issuer_is_refused_until_jwt_verification_exists() {
        let err = load(
            &Flags::default(),
            env(&[(
                "CONCIERGE_AUTH__OIDC_ISSUER",
                "https://sso.example.com/realms/ops",
            )]),
        )
        .expect_err("refused")
        .to_string();
        assert!(err.contains("auth.oidc_issuer"), "{err}");
    }

    #[test]
    fn listening_beyond_loopback_needs_a_token() {
        let err = load(
            &Flags {
                listen: Some("0.0.0.0:8080".into()),
                ..Flags::default()
            },
            env(&[]),
        )
        .expect_err("refused")
        .to_string();
        assert!(err.contains("auth.api_tokens"), "{err}");
        let c = load(
            &Flags {
                listen: Some("0.0.0.0:8080".into()),
                ..Flags::default()
            },
            env(&[("CONCIERGE_AUTH__API_TOKENS", "secret-token")]),
        )
        .expect("allowed");
        assert!(!c.server.listen.ip().is_loopback());
    }

    #[test]
    fn the_example_file_documents_and_parses_every_key() {
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/concierge.example.toml");
        let text = std::fs::read_to_string(&example).expect("config/concierge.example.toml exists");
        let c = load(&flags_with(Some(&example)), env(&[])).expect("the example parses");
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        // Every key of every section appears in the example (commented out or set).
        let defaults = Table::try_from(Config::default()).expect("serialises");
        for (section, keys) in &defaults {
            assert!(
                text.contains(&format!("[{section}]")),
                "[{section}] missing from the example"
            );
            for key in keys.as_table().expect("table").keys() {
                assert!(
                    text.contains(&format!("{key} =")),
                    "{section}.{key} missing from the example"
                );
            }
        }
        for (section, key) in SECRET_KEYS {
            assert!(
                text.contains(&format!("{key} =")) || text.contains(&format!("{key}_file =")),
                "{section}.{key} missing from the example"
            );
        }
    }
}
