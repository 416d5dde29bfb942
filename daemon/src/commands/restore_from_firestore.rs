//! `concierge restore-from-firestore --data-dir D`: rebuilds a node's store from the Firestore
//! copy (`[firestore]`): pages through the collection and writes every document into an
//! empty data directory; the indexes then build as after any start. A progress bar on a
//! terminal, log lines elsewhere.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use concierge_engine::{Engine, EngineConfig, IngestRequest, Operation};
use concierge_models::{BertEmbedder, EmbedderConfig};

use super::model_args::ModelArgs;
use crate::config;
use crate::firestore::CollectionReader;

/// Arguments of `concierge restore-from-firestore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The data directory to fill: it must be empty or not exist.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Configuration file (default: ./concierge.toml when it exists): its `[firestore]`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(args: &RestoreArgs) -> anyhow::Result<()> {
    let flags = config::Flags {
        config: args.config.clone(),
        ..config::Flags::default()
    };
    let config = config::load(&flags, std::env::vars())?;
    let target = config
        .firestore
        .target()
        .map_err(anyhow::Error::msg)?
        .context("[firestore] is not configured (firestore.project_id and emulator_host or credentials_file)")?;
    if let Ok(mut entries) = std::fs::read_dir(&args.data_dir)
        && entries.next().is_some()
    {
        anyhow::bail!(
            "{} is not empty: restore-from-firestore only fills an empty data directory (move the old one away first)",
            args.data_dir.display()
        );
    }
    let embedder = Arc::new(BertEmbedder::load(
        args.model.dir(),
        &EmbedderConfig {
            threads: args.model.threads,
            ..EmbedderConfig::default()
        },
    )?);
    let engine = Engine::open(EngineConfig::new(&args.data_dir), embedder)
        .with_context(|| format!("opening the data directory {}", args.data_dir.display()))?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message("documents restored from Firestore");
        bar
    });
    let mut reader = CollectionReader::new(target);
    let mut restored = 0u64;
    while let Some(page) = reader.next_page() {
        let docs = page.map_err(anyhow::Error::msg)?;
        let n = docs.len() as u64;
        if n == 0 {
            continue;
        }
        engine
            .ingest(IngestRequest {
                operations: docs.into_iter().map(Operation::Upsert).collect(),
                idempotency_key: None,
            })
            .context("writing restored documents")?;
        restored += n;
        match &bar {
            Some(bar) => bar.set_position(restored),
            None => tracing::warn!(restored, "restoring from Firestore"),
        }
    }
    if let Some(bar) = bar {
        bar.finish_with_message("documents restored from Firestore");
    }
    engine.close().context("closing the engine")?;
    println!(
        "restored {restored} documents into {}; the indexes build at the next start",
        args.data_dir.display()
    );
    Ok(())
}
