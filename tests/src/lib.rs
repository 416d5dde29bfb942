//! The black-box test harness: find the real binaries the workspace built, run them in a
//! temporary directory, and read their output.
//!
//! Binaries come from the same target directory as the test binary (`target/debug/`); the README's
//! test command builds them first (`cargo build --workspace --bins`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file of `tests/fixtures/` (copies of the reference data in `shared/fixtures/`).
pub fn fixture(name: &str) -> PathBuf {
    workspace_root().join("tests/fixtures").join(name)
}

/// The installed all-MiniLM-L6-v2 directory (`models/fetch.sh` puts it there).
pub fn model_dir() -> PathBuf {
    workspace_root().join("models/weights/all-MiniLM-L6-v2")
}

/// The path of a workspace binary, e.g. `concierge`; panics with the command to build it.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test-binary> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built; run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// Runs a workspace binary with `args` in `cwd` and returns its output.
pub fn run(name: &str, args: &[&str], cwd: &Path) -> Output {
    Command::new(binary(name))
        .args(args)
        .current_dir(cwd)
        .env_remove("CONCIERGE_MODELS__DIR")
        .env_remove("CONCIERGE_MODELS__EMBEDDER")
        .output()
        .unwrap_or_else(|err| panic!("cannot start {name}: {err}"))
}

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}
