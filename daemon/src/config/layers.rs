//! Building a [`Config`] from its layers (compiled defaults, the file, the environment, flags,
//! `<key>_file` secrets) with the project's one layering, [`concierge_infra::layered_config`].

use std::path::PathBuf;

use concierge_infra::layered_config::Layers;
use toml::Value;

use super::{Config, SECRET_KEYS};

/// How the daemon's configuration is spelled outside: `CONCIERGE_<SECTION>__<KEY>`.
const LAYERS: Layers<'static> = Layers {
    env_prefix: "CONCIERGE_",
    // The sidecar's and the benchmarks' variables, and `models/fetch.sh`'s.
    not_keys: &[
        "CONCIERGE_SIDECAR_",
        "CONCIERGE_BENCH_",
        "CONCIERGE_TEST_",
        "CONCIERGE_MODELS_DIR",
    ],
    secret_keys: SECRET_KEYS,
    default_file: "concierge.toml",
};

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
    let mut overrides = Vec::new();
    if let Some(listen) = &flags.listen {
        overrides.push(("server", "listen", Value::String(listen.clone())));
    }
    if let Some(dir) = &flags.data_dir {
        overrides.push((
            "storage",
            "data_dir",
            Value::String(dir.display().to_string()),
        ));
    }
    let config: Config = LAYERS.load(flags.config.as_deref(), env, overrides)?;
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use toml::Table;

    use super::*;
    use crate::config::Secret;

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
        assert_eq!(c.auth.api_tokens, [Secret::from("x"), Secret::from("y")]);
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
    fn listen_takes_a_host_name_and_says_what_it_wants_otherwise() {
        let c = load(
            &Flags {
                listen: Some("localhost:9123".into()),
                ..Flags::default()
            },
            env(&[]),
        )
        .expect("a host name resolves");
        assert_eq!(c.server.listen.port(), 9123);
        assert!(c.server.listen.ip().is_loopback());
        let err = load(
            &Flags {
                listen: Some("8080".into()),
                ..Flags::default()
            },
            env(&[]),
        )
        .expect_err("no host")
        .to_string();
        assert!(err.contains("an IP address and port"), "{err}");
    }

    #[test]
    fn a_malformed_environment_variable_is_an_error_naming_it() {
        let err = load(
            &Flags::default(),
            env(&[("CONCIERGE_SERVER_LISTEN", "127.0.0.1:9")]),
        )
        .expect_err("one underscore")
        .to_string();
        assert!(
            err.contains("CONCIERGE_SERVER_LISTEN") && err.contains("CONCIERGE_SERVER__LISTEN"),
            "{err}"
        );
        // Other programs' variables are theirs.
        load(
            &Flags::default(),
            env(&[
                ("CONCIERGE_SIDECAR_REPOSITORY__PASSWORD", "x"),
                ("CONCIERGE_MODELS_DIR", "/models"),
            ]),
        )
        .expect("not the daemon's");
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
        assert_eq!(c.auth.api_tokens, [Secret::from("t1"), Secret::from("t2")]);
        assert_eq!(c.llm.api_key.as_ref().map(Secret::expose), Some("sk-123"));
        assert!(
            !format!("{c:?}").contains("sk-123"),
            "secrets are redacted in Debug"
        );
        let err = load(
            &Flags::default(),
            env(&[("CONCIERGE_LLM__API_KEY_FILE", "/nonexistent/key")]),
        )
        .expect_err("missing file")
        .to_string();
        assert!(err.contains("llm.api_key_file"), "{err}");
    }

    #[test]
    fn an_oidc_issuer_needs_its_audience_and_roles_lists_come_from_the_environment() {
        let err = load(
            &Flags::default(),
            env(&[(
                "CONCIERGE_AUTH__OIDC_ISSUER",
                "https://sso.example.com/realms/ops",
            )]),
        )
        .expect_err("refused")
        .to_string();
        assert!(err.contains("auth.oidc_audience"), "{err}");
        let c = load(
            &Flags::default(),
            env(&[
                (
                    "CONCIERGE_AUTH__OIDC_ISSUER",
                    "https://sso.example.com/realms/ops",
                ),
                ("CONCIERGE_AUTH__OIDC_AUDIENCE", "concierge"),
                ("CONCIERGE_AUTH__OIDC_ADMIN_ROLES", "ops-lead,it"),
            ]),
        )
        .expect("loads");
        assert_eq!(c.auth.oidc_admin_roles, ["ops-lead", "it"]);
        assert_eq!(c.auth.oidc_read_roles, ["concierge-read"]);
        let settings = c.auth.oidc().expect("valid").expect("on");
        assert_eq!(settings.audience, "concierge");
        assert!(!settings.accept_azp);
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
