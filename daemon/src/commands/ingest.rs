//! `concierge ingest [FILE|-]`: bulk-loads documents into the data directory, one JSON object per
//! line, and prints one JSON receipt line per document once it is durably stored.
//!
//! Input line: `{"id": "source:kind:external_id", "title": "...", "text": "...",
//! "updated_at": <ms since epoch>, "metadata": {...}}`, or `{"id": ..., "updated_at": ...,
//! "deleted": true}`. Output line: `{"line": n, "id": ..., "seq": ..., "outcome": ...}`; a line
//! that cannot be ingested is reported on stderr and the load goes on (exit code 1 at the end).
//! Indexing happens in the background and resumes at the next start if the load stops first.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

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
    let input: Box<dyn BufRead> = if args.input == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file =
            std::fs::File::open(&args.input).with_context(|| format!("opening {}", args.input))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut stdout = std::io::stdout().lock();
    let mut failed = 0usize;
    for (n, line) in input.lines().enumerate() {
        let n = n + 1;
        let line = line.with_context(|| format!("reading line {n}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<Line>(&line)
            .map_err(anyhow::Error::from)
            .and_then(request);
        let req = match parsed {
            Ok(req) => req,
            Err(e) => {
                eprintln!("concierge: line {n}: {e:#}");
                failed += 1;
                continue;
            }
        };
        let id = req.operations[0].id().to_owned();
        match engine.ingest(req) {
            Ok(receipt) => {
                let outcome = match receipt.outcomes.first() {
                    Some(Outcome::Applied { .. }) => "applied",
                    Some(Outcome::Stale) => "stale",
                    Some(Outcome::Unchanged) | None => "unchanged",
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
                eprintln!("concierge: line {n}: {e}");
                failed += 1;
            }
            Err(e) => return Err(e).with_context(|| format!("ingesting line {n}")),
        }
    }
    engine.close().context("closing the engine")?;
    if failed > 0 {
        anyhow::bail!("{failed} line(s) could not be ingested (see above)");
    }
    Ok(())
}
