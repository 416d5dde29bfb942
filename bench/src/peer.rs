//! Running a Python peer (ONNX Runtime) on the same texts, in the same run, measurement by
//! measurement beside ours.
//!
//! Peers are optional: when Python or its packages are missing the benchmark says so and goes on.
//! `bench/peers/setup.sh` installs them into `bench/.venv`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::Context;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::embed::Throughput;

/// The exit code with which a peer script says its packages are not installed.
const PEER_MISSING_PACKAGES: i32 = 3;

/// The peer's backlog run: its sessions drained the same texts.
#[derive(Debug, Deserialize)]
pub struct PeerBacklog {
    pub wall_s: f64,
    pub cpu_s: f64,
}

/// The peer's first line: who it is and how close its vectors are to the reference.
#[derive(Debug, Deserialize)]
struct Hello {
    peer: String,
    parity_min_cosine: f64,
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

/// `bench/peers/onnx_embed.py`, running: it answers one measurement request at a time, so the
/// benchmark can alternate its own runs with the peer's and both see the same machine.
#[derive(Debug)]
pub struct OnnxPeer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// `ONNX Runtime <version>`.
    pub name: String,
    /// The least cosine of its vectors to the sentence-transformers reference.
    pub parity_min_cosine: f64,
}

impl OnnxPeer {
    /// Starts the peer on `texts` (JSON `{"short": [...], "long": [...], "backlog": [...]}`, each
    /// optional) with sessions of each of `threads`; `Err` says why it cannot run.
    pub fn start(
        python_choice: &str,
        model_dir: &Path,
        texts: &Path,
        threads: &[usize],
    ) -> Result<Self, String> {
        let Some(python) = python(python_choice) else {
            return Err("--python none".into());
        };
        let threads = threads
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        eprintln!(
            "starting the ONNX Runtime peer with {} ...",
            python.display()
        );
        let mut child = Command::new(&python)
            .arg(peers_dir().join("onnx_embed.py"))
            .arg("--model-dir")
            .arg(model_dir)
            .arg("--texts")
            .arg(texts)
            .arg("--threads")
            .arg(threads)
            .arg("--reference")
            .arg(
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../tests/fixtures/minilm-reference.json"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|err| format!("cannot start {}: {err}", python.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the peer's pipes are missing".into());
        };
        let mut peer = OnnxPeer {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            name: String::new(),
            parity_min_cosine: f64::NAN,
        };
        match peer.read_line::<Hello>() {
            Ok(hello) => {
                peer.name = hello.peer;
                peer.parity_min_cosine = hello.parity_min_cosine;
                Ok(peer)
            }
            Err(err) => {
                let status = peer.child.wait().ok().and_then(|s| s.code());
                Err(if status == Some(PEER_MISSING_PACKAGES) {
                    "its Python packages are not installed (run bench/peers/setup.sh)".into()
                } else {
                    format!("the peer did not start ({err})")
                })
            }
        }
    }

    /// Sentences per second for `batch`-sized batches of the `length` texts on a session of
    /// `threads` threads, measured for `seconds`.
    pub fn measure(
        &mut self,
        length: &str,
        batch: usize,
        threads: usize,
        seconds: f64,
    ) -> anyhow::Result<Throughput> {
        self.request(&serde_json::json!({
            "op": "measure", "length": length, "batch": batch, "threads": threads,
            "seconds": seconds,
        }))
    }

    /// Drains the backlog texts with `sessions` one-thread sessions, in calls of `call` texts
    /// and batches of `batch`, writing the vectors (f32, row-major) to `vectors_out`.
    pub fn backlog(
        &mut self,
        sessions: usize,
        call: usize,
        batch: usize,
        vectors_out: &Path,
    ) -> anyhow::Result<PeerBacklog> {
        self.request(&serde_json::json!({
            "op": "backlog", "sessions": sessions, "call": call, "batch": batch,
            "vectors_out": vectors_out,
        }))
    }

    fn request<T: DeserializeOwned>(&mut self, request: &serde_json::Value) -> anyhow::Result<T> {
        writeln!(self.stdin, "{request}").context("writing to the peer")?;
        self.stdin.flush().context("writing to the peer")?;
        self.read_line()
    }

    fn read_line<T: DeserializeOwned>(&mut self) -> anyhow::Result<T> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .context("reading from the peer")?;
        anyhow::ensure!(!line.is_empty(), "the peer exited");
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("the peer wrote {:?}, not JSON", line.trim()))?;
        if let Some(err) = value.get("error") {
            anyhow::bail!("the peer refused: {err}");
        }
        serde_json::from_value(value).context("the peer's answer has an unexpected shape")
    }
}

impl Drop for OnnxPeer {
    fn drop(&mut self) {
        // Closing its input ends it; wait so no zombie is left.
        let _ = self.stdin.flush();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
