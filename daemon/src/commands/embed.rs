//! `concierge embed TEXT...`: embeds texts with the configured model and prints them as JSON.
//!
//! The output is one JSON array with an object per text, in input order:
//! `{"text": ..., "dimension": 384, "values": [...]}`. With no TEXT (or `-`), texts are read from
//! standard input, one per line.

use std::io::{BufRead, Write};

use anyhow::Context;
use concierge_models::{BertEmbedder, Embedder, EmbedderConfig};
use serde::Serialize;

use super::model_args::ModelArgs;

/// Arguments of `concierge embed`.
#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    /// Texts to embed; none, or `-`, reads one text per line from standard input.
    pub texts: Vec<String>,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Serialize)]
struct EmbeddedText<'a> {
    text: &'a str,
    dimension: usize,
    values: &'a [f32],
}

pub fn run(args: &EmbedArgs) -> anyhow::Result<()> {
    let texts = if args.texts.is_empty() || args.texts == ["-"] {
        read_stdin_lines()?
    } else {
        args.texts.clone()
    };
    let config = EmbedderConfig {
        threads: args.model.threads,
        ..EmbedderConfig::default()
    };
    let embedder = BertEmbedder::load(args.model.dir(), &config)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = embedder.embed(&refs)?;
    let output: Vec<EmbeddedText<'_>> = texts
        .iter()
        .zip(&vectors)
        .map(|(text, values)| EmbeddedText {
            text,
            dimension: values.len(),
            values,
        })
        .collect();
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, &output).context("writing the vectors")?;
    writeln!(stdout).context("writing the vectors")?;
    Ok(())
}

fn read_stdin_lines() -> anyhow::Result<Vec<String>> {
    std::io::stdin()
        .lock()
        .lines()
        .collect::<Result<Vec<_>, _>>()
        .context("reading texts from standard input")
}
