//! `concierge ingest [FILE|-]`: bulk-loads documents into the data directory, one JSON object per
//! line, and prints one JSON receipt line per document once it is durably stored.
//!
//! Input line: `{"id": "source:kind:external_id", "title": "...", "text": "...",
//! "updated_at": <ms since epoch>, "metadata": {...}}`, or `{"id": ..., "updated_at": ...,
//! "deleted": true}`. Output line: `{"line": n, "id": ..., "seq": ..., "outcome": ...}`; a line
//! that cannot be ingested is reported on stderr and the load goes on (exit code 1 at the end).
//! On a terminal a progress bar shows the load (bytes of a file, lines of standard input); at
//! the end a summary goes to stderr: applied, stale, unchanged, failed. Indexing happens in the
//! background and resumes at the next start if the load stops first; with `--wait-indexed` the
//! command waits until both indexes serve everything loaded (a bar of change-log entries), up
//! to `--wait-timeout` seconds (exit 1 when they did not get there).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use concierge_engine::{Document, Engine, EngineConfig, IngestRequest, Outcome};
use concierge_models::{BertEmbedder, EmbedderConfig};
use serde::{Deserialize, Serialize};

use super::model_args::ModelArgs;

/// Arguments of `concierge ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// JSON-lines file of documents; `-` (the default) reads standard input.
    #[arg(default_value = "-")]
    pub input: String,
    /// The data directory (`[storage] data_dir`).
    #[arg(long, env = "CONCIERGE_STORAGE__DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Wait until both indexes serve everything loaded before exiting.
    #[arg(long)]
    pub wait_indexed: bool,
    /// With --wait-indexed: give up (exit 1) after this many seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub wait_timeout: u64,
}

/// What the load did, line by line.
#[derive(Debug, Default)]
struct Tally {
    applied: u64,
    stale: u64,
    unchanged: u64,
    failed: u64,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} applied, {} stale, {} unchanged, {} failed",
            self.applied, self.stale, self.unchanged, self.failed
        )
    }
}

/// A bar on stderr when it is a terminal: bytes of a file of known size, else a line counter.
fn load_bar(total_bytes: Option<u64>) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match total_bytes {
        Some(n) => {
            let bar = indicatif::ProgressBar::new(n);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} {msg} ({eta} left)",
            ) {
                bar.set_style(style);
            }
            bar
        }
        None => indicatif::ProgressBar::new_spinner(),
    };
    Some(bar)
}

/// One input line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    text: String,
    updated_at: i64,
    #[serde(default)]
    metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    deleted: bool,
}

#[derive(Debug, Serialize)]
struct Receipt<'a> {
    line: usize,
    id: &'a str,
    seq: u64,
    outcome: &'static str,
}

fn request(line: Line) -> anyhow::Result<IngestRequest> {
    if line.deleted {
        return Ok(IngestRequest::delete(line.id, line.updated_at));
    }
    let mut doc = Document::new(line.id, line.title, line.text, line.updated_at)?;
    doc.metadata = line.metadata;
    Ok(IngestRequest::upsert(doc))
}

pub fn run(args: &IngestArgs) -> anyhow::Result<()> {
    let config = EmbedderConfig {
        threads: args.model.threads,
        ..EmbedderConfig::default()
    };
    let embedder = Arc::new(BertEmbedder::load(args.model.dir(), &config)?);
    let engine = Engine::open(EngineConfig::new(&args.data_dir), embedder)
        .with_context(|| format!("opening the data directory {}", args.data_dir.display()))?;
    let (input, size): (Box<dyn BufRead>, Option<u64>) = if args.input == "-" {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let file =
            std::fs::File::open(&args.input).with_context(|| format!("opening {}", args.input))?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(std::io::BufReader::new(file)), size)
    };
    let bar = load_bar(size);
    let started_seq = engine.durable_seq();
    let mut stdout = std::io::stdout().lock();
    let mut tally = Tally::default();
    for (n, line) in input.lines().enumerate() {
        let n = n + 1;
        let line = line.with_context(|| format!("reading line {n}"))?;
        if let Some(bar) = &bar {
            if size.is_some() {
                bar.inc(line.len() as u64 + 1);
            } else {
                bar.set_message(format!("{n} lines"));
                bar.tick();
            }
        }
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<Line>(&line)
            .map_err(anyhow::Error::from)
            .and_then(request);
        let req = match parsed {
            Ok(req) => req,
            Err(e) => {
                let message = format!("concierge: line {n}: {e:#}");
                match &bar {
                    Some(bar) => bar.println(message),
                    None => eprintln!("{message}"),
                }
                tally.failed += 1;
                continue;
            }
        };
        let id = req.operations[0].id().to_owned();
        match engine.ingest(req) {
            Ok(receipt) => {
                let outcome = match receipt.outcomes.first() {
                    Some(Outcome::Applied { .. }) => {
                        tally.applied += 1;
                        "applied"
                    }
                    Some(Outcome::Stale) => {
                        tally.stale += 1;
                        "stale"
                    }
                    Some(Outcome::Unchanged) | None => {
                        tally.unchanged += 1;
                        "unchanged"
                    }
                };
                let out = Receipt {
                    line: n,
                    id: &id,
                    seq: receipt.seq,
                    outcome,
                };
                serde_json::to_writer(&mut stdout, &out).context("writing a receipt")?;
                writeln!(stdout).context("writing a receipt")?;
                stdout.flush().context("writing a receipt")?;
            }
            Err(e @ concierge_engine::Error::InvalidInput(_)) => {
                let message = format!("concierge: line {n}: {e}");
                match &bar {
                    Some(bar) => bar.println(message),
                    None => eprintln!("{message}"),
                }
                tally.failed += 1;
            }
            Err(e) => return Err(e).with_context(|| format!("ingesting line {n}")),
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    eprintln!("concierge: loaded: {tally}");
    let waited = if args.wait_indexed {
        wait_indexed(&engine, started_seq, Duration::from_secs(args.wait_timeout))
    } else {
        Ok(())
    };
    engine.close().context("closing the engine")?;
    waited?;
    if tally.failed > 0 {
        anyhow::bail!("{} line(s) could not be ingested (see above)", tally.failed);
    }
    Ok(())
}

/// Waits until both indexes include the change log up to its durable end, with a bar of
/// entries indexed since `from` on a terminal (a log line every 10 s elsewhere).
fn wait_indexed(engine: &Engine, from: u64, timeout: Duration) -> anyhow::Result<()> {
    let target = engine.durable_seq();
    let deadline = Instant::now() + timeout;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(target.saturating_sub(from));
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} entries indexed {msg}")
        {
            bar.set_style(style);
        }
        bar
    });
    let mut logged = Instant::now();
    loop {
        let status = engine.status().context("reading the indexes' status")?;
        let reached = status
            .dense
            .seq
            .unwrap_or(0)
            .min(status.keyword.seq.unwrap_or(0));
        let ready = status.dense.state == concierge_engine::IndexState::Ready
            && status.keyword.state == concierge_engine::IndexState::Ready;
        if let Some(bar) = &bar {
            bar.set_position(reached.saturating_sub(from).min(target - from.min(target)));
            bar.set_message(status.last_error.clone().unwrap_or_default());
        } else if logged.elapsed() >= Duration::from_secs(10) {
            eprintln!("concierge: indexed through {reached} of {target}");
            logged = Instant::now();
        }
        if ready && reached >= target {
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            eprintln!("concierge: both indexes serve everything loaded (sequence {target})");
            return Ok(());
        }
        if Instant::now() >= deadline {
            if let Some(bar) = bar {
                bar.abandon();
            }
            let why = status
                .last_error
                .map(|e| format!(" (the indexer's last error: {e})"))
                .unwrap_or_default();
            anyhow::bail!(
                "the indexes reached sequence {reached} of {target} within {} s{why}; they go on at the next start",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
