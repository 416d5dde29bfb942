//! Running a Python peer (ONNX Runtime) on the same texts, in the same run, and reading its JSON.
//!
//! Peers are optional: when Python or its packages are missing the benchmark says so and goes on.
//! `bench/peers/setup.sh` installs them into `bench/.venv`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::embed::Throughput;

/// The exit code with which a peer script says its packages are not installed.
const PEER_MISSING_PACKAGES: i32 = 3;

#[derive(Debug, Deserialize)]
pub struct PeerRow {
    pub length: String,
    pub batch: usize,
    pub threads: usize,
    #[serde(flatten)]
    pub throughput: Throughput,
}

/// The peer's backlog run: its sessions drained the same texts.
#[derive(Debug, Deserialize)]
pub struct PeerBacklog {
    pub wall_s: f64,
    pub cpu_s: f64,
}

#[derive(Debug, Deserialize)]
pub struct PeerResult {
    pub peer: String,
    pub parity_min_cosine: f64,
    pub rows: Vec<PeerRow>,
    #[serde(default)]
    pub backlog: Option<PeerBacklog>,
}

#[derive(Debug)]
pub enum PeerRun {
    Ran(PeerResult),
    Skipped(String),
}

pub fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// The Python to use: `auto` prefers `bench/.venv` (made by `bench/peers/setup.sh`).
pub fn python(choice: &str) -> Option<PathBuf> {
    match choice {
        "none" => None,
        "auto" => {
            let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
            Some(if venv.is_file() {
                venv
            } else {
                PathBuf::from("python3")
            })
        }
        path => Some(PathBuf::from(path)),
    }
}

/// What `bench/peers/onnx_embed.py` runs.
#[derive(Debug)]
pub struct OnnxSettings<'a> {
    /// `auto`, `none` or a path (see [`python`]).
    pub python: &'a str,
    pub model_dir: &'a Path,
    /// JSON `{"short": [...], "long": [...], "backlog": [...]}` (each optional).
    pub texts: &'a Path,
    pub batches: &'a [usize],
    pub threads: &'a [usize],
    pub seconds: f64,
    /// One-thread sessions sharing the backlog.
    pub backlog_sessions: usize,
    /// Texts per call and per batch in the backlog run.
    pub backlog_call: usize,
    pub backlog_batch: usize,
    /// Where the peer writes its backlog vectors.
    pub backlog_vectors: &'a Path,
}

/// Runs `bench/peers/onnx_embed.py` with the benchmark's settings.
pub fn run_onnx(settings: &OnnxSettings<'_>) -> PeerRun {
    let OnnxSettings {
        model_dir,
        texts,
        batches,
        threads,
        seconds,
        ..
    } = *settings;
    let Some(python) = python(settings.python) else {
        return PeerRun::Skipped("--python none".into());
    };
    let join = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    eprintln!(
        "running the ONNX Runtime peer with {} ...",
        python.display()
    );
    let output = Command::new(&python)
        .arg(peers_dir().join("onnx_embed.py"))
        .arg("--model-dir")
        .arg(model_dir)
        .arg("--texts")
        .arg(texts)
        .arg("--batch-sizes")
        .arg(join(batches))
        .arg("--threads")
        .arg(join(threads))
        .arg("--seconds")
        .arg(seconds.to_string())
        .arg("--backlog-sessions")
        .arg(settings.backlog_sessions.to_string())
        .arg("--backlog-call")
        .arg(settings.backlog_call.to_string())
        .arg("--backlog-batch")
        .arg(settings.backlog_batch.to_string())
        .arg("--vectors-out")
        .arg(settings.backlog_vectors)
        .arg("--reference")
        .arg(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/minilm-reference.json"),
        )
        .stderr(std::process::Stdio::inherit())
        .output();
    let output = match output {
        Ok(output) => output,
        Err(err) => return PeerRun::Skipped(format!("cannot start {}: {err}", python.display())),
    };
    match output.status.code() {
        Some(0) => match serde_json::from_slice::<PeerResult>(&output.stdout) {
            Ok(result) => PeerRun::Ran(result),
            Err(err) => {
                PeerRun::Skipped(format!("the peer's output is not the expected JSON: {err}"))
            }
        },
        Some(PEER_MISSING_PACKAGES) => PeerRun::Skipped(
            "its Python packages are not installed (run bench/peers/setup.sh)".into(),
        ),
        _ => PeerRun::Skipped(format!("the peer failed ({})", output.status)),
    }
}
