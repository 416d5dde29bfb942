//! `concierge-bench embed`: embedding throughput of Concierge's embedder beside ONNX Runtime.
//!
//! For short (~15 tokens) and long (~128 tokens) texts, at each batch size and thread count, it
//! embeds batch after batch for a fixed time and reports sentences per second (wall clock) and per
//! CPU-second, for each backend of `BertEmbedder` (`native`: our forward pass; `candle-bert`:
//! candle-transformers' `BertModel`). ONNX Runtime then runs the same model on the same texts with
//! the same settings (`bench/peers/onnx_embed.py`), and the table shows each backend / ONNX Runtime.
//! Writes `embed.json` and `embed.md` into `--out`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use concierge_models::{Backend, BertEmbedder, Embedder, EmbedderConfig};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::cpu_time::process_cpu_time;
use crate::peer::{self, PeerRun};
use crate::texts;

/// Arguments of `concierge-bench embed`.
#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    /// The model directory.
    #[arg(long, default_value = "models/weights/all-MiniLM-L6-v2")]
    pub model_dir: PathBuf,
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub batch_sizes: Vec<usize>,
    /// Thread counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub threads: Vec<usize>,
    /// Embedder backends to measure (`native`, `candle-bert`).
    #[arg(long, value_delimiter = ',', default_value = "native,candle-bert")]
    pub backends: Vec<Backend>,
    /// Measuring time per row, in seconds (after one warm-up batch; at least three batches).
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Token length of the long texts (special tokens included).
    #[arg(long, default_value_t = 128)]
    pub long_tokens: usize,
    /// Where the JSON and Markdown reports go.
    #[arg(long, default_value = "bench/out/embed")]
    pub out: PathBuf,
    /// Python for the ONNX Runtime peer: a path, `auto` (bench/.venv, then python3) or `none`.
    #[arg(long, default_value = "auto")]
    pub python: String,
}

/// Throughput of one configuration.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize)]
pub struct Throughput {
    pub sentences_per_s: f64,
    pub sentences_per_cpu_s: f64,
}

#[derive(Debug, Serialize)]
struct Row {
    length: &'static str,
    mean_tokens: f64,
    batch: usize,
    threads: usize,
    /// Per backend name.
    concierge: BTreeMap<&'static str, Throughput>,
    onnxruntime: Option<Throughput>,
    /// Per backend name: backend / ONNX Runtime, sentences per second.
    ratio_to_onnxruntime: BTreeMap<&'static str, f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    run: crate::run_info::RunInfo,
    model: String,
    seconds_per_row: f64,
    backends: Vec<&'static str>,
    peer: Option<String>,
    peer_parity_min_cosine: Option<f64>,
    peer_skipped: Option<String>,
    rows: Vec<Row>,
}

pub fn run(args: &EmbedArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.seconds > 0.0, "--seconds must be positive");
    anyhow::ensure!(
        !args.batch_sizes.contains(&0),
        "--batch-sizes must be at least 1"
    );
    anyhow::ensure!(
        !args.backends.is_empty() && !args.threads.is_empty(),
        "--backends and --threads need a value"
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut embedders = Vec::new();
    for &backend in &args.backends {
        for &threads in &args.threads {
            let config = EmbedderConfig {
                threads,
                batch_size: args.batch_sizes.iter().copied().max().unwrap_or(1),
                backend,
                ..EmbedderConfig::default()
            };
            let embedder = BertEmbedder::load(&args.model_dir, &config)
                .with_context(|| format!("loading the model from {}", args.model_dir.display()))?;
            embedders.push((backend, threads, embedder));
        }
    }
    let first = &embedders[0].2;
    let pool = 256;
    let sets: [(&'static str, Vec<String>); 2] = [
        ("short", texts::short_texts(pool)),
        ("long", texts::long_texts(first, pool, args.long_tokens)?),
    ];
    let texts_path = args.out.join("texts.json");
    let texts_json: BTreeMap<&str, &Vec<String>> =
        sets.iter().map(|(name, t)| (*name, t)).collect();
    std::fs::write(&texts_path, serde_json::to_vec(&texts_json)?)?;

    let total = sets.len() * args.batch_sizes.len() * embedders.len();
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix("concierge");
    let mut rows = Vec::new();
    for (length, set) in &sets {
        let mean_tokens = mean_tokens(first, set)?;
        for &batch in &args.batch_sizes {
            for &threads in &args.threads {
                let mut concierge = BTreeMap::new();
                for (backend, _, embedder) in embedders.iter().filter(|(_, t, _)| *t == threads) {
                    bar.set_message(format!(
                        "{}: {length} texts, batch {batch}, {threads} thread(s)",
                        backend.name()
                    ));
                    let throughput =
                        measure(embedder, set, batch, Duration::from_secs_f64(args.seconds))?;
                    concierge.insert(backend.name(), throughput);
                    bar.inc(1);
                }
                rows.push(Row {
                    length,
                    mean_tokens,
                    batch,
                    threads,
                    concierge,
                    onnxruntime: None,
                    ratio_to_onnxruntime: BTreeMap::new(),
                });
            }
        }
    }
    bar.finish_and_clear();
    drop(embedders);

    let peer_run = peer::run_onnx(
        &args.python,
        &args.model_dir,
        &texts_path,
        &args.batch_sizes,
        &args.threads,
        args.seconds,
    );
    let (peer_name, parity, skipped) = match &peer_run {
        PeerRun::Ran(result) => {
            for row in &mut rows {
                let found = result.rows.iter().find(|r| {
                    r.length == row.length && r.batch == row.batch && r.threads == row.threads
                });
                if let Some(found) = found {
                    row.onnxruntime = Some(found.throughput);
                    for (name, ours) in &row.concierge {
                        row.ratio_to_onnxruntime.insert(
                            name,
                            ours.sentences_per_s / found.throughput.sentences_per_s,
                        );
                    }
                }
            }
            (
                Some(result.peer.clone()),
                Some(result.parity_min_cosine),
                None,
            )
        }
        PeerRun::Skipped(reason) => {
            eprintln!("ONNX Runtime peer skipped: {reason}");
            (None, None, Some(reason.clone()))
        }
    };
    let report = Report {
        run: crate::run_info::RunInfo::now(),
        model: model_id(&args.model_dir),
        seconds_per_row: args.seconds,
        backends: args.backends.iter().map(|b| b.name()).collect(),
        peer: peer_name,
        peer_parity_min_cosine: parity,
        peer_skipped: skipped,
        rows,
    };
    let markdown = markdown(&report);
    std::fs::write(
        args.out.join("embed.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    std::fs::write(args.out.join("embed.md"), &markdown)?;
    println!("{markdown}");
    eprintln!(
        "wrote {} and {}",
        args.out.join("embed.json").display(),
        args.out.join("embed.md").display()
    );
    Ok(())
}

fn model_id(dir: &std::path::Path) -> String {
    concierge_models::ModelDir::open(dir)
        .map(|d| d.model_id())
        .unwrap_or_else(|_| dir.display().to_string())
}

fn mean_tokens(embedder: &dyn Embedder, texts: &[String]) -> anyhow::Result<f64> {
    let mut total = 0usize;
    for text in texts {
        total += embedder.count_tokens(text)?;
    }
    Ok(total as f64 / texts.len().max(1) as f64)
}

/// Embeds `batch`-sized slices of `texts` (cycling) until `duration` has passed and at least three
/// batches ran, after one warm-up batch.
fn measure(
    embedder: &dyn Embedder,
    texts: &[String],
    batch: usize,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let slice = |k: usize| -> Vec<&str> {
        (0..batch)
            .map(|i| refs[(k * batch + i) % refs.len()])
            .collect()
    };
    embedder.embed(&slice(0))?;
    let cpu_start = process_cpu_time();
    let start = Instant::now();
    let mut batches = 0usize;
    while batches < 3 || start.elapsed() < duration {
        let vectors = embedder.embed(&slice(batches + 1))?;
        std::hint::black_box(vectors);
        batches += 1;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = match (cpu_start, process_cpu_time()) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => f64::NAN,
    };
    let sentences = (batches * batch) as f64;
    Ok(Throughput {
        sentences_per_s: sentences / wall,
        sentences_per_cpu_s: sentences / cpu,
    })
}

fn markdown(report: &Report) -> String {
    let peer = report.peer.as_deref().unwrap_or("ONNX Runtime (not run)");
    let mut md = format!(
        "Embedding throughput of {}: Concierge's embedder ({}) vs {peer}, {} s per row, same texts, same run. \
         Sentences per second, wall clock (per CPU-second in parentheses).\n\n{}\n\n",
        report.model,
        report.backends.join(", "),
        report.seconds_per_row,
        report.run.markdown_line()
    );
    if let Some(cos) = report.peer_parity_min_cosine {
        md.push_str(&format!(
            "ONNX Runtime's vectors vs sentence-transformers: min cosine {cos:.6}.\n\n"
        ));
    }
    if let Some(reason) = &report.peer_skipped {
        md.push_str(&format!("ONNX Runtime was skipped: {reason}\n\n"));
    }
    let fmt = |t: Option<&Throughput>| {
        t.map_or("–".to_string(), |t| {
            format!("{:.1} ({:.1})", t.sentences_per_s, t.sentences_per_cpu_s)
        })
    };
    md.push_str("| texts | tokens | batch | threads |");
    for name in &report.backends {
        md.push_str(&format!(" {name} |"));
    }
    md.push_str(" ONNX Runtime |");
    for name in &report.backends {
        md.push_str(&format!(" {name} / ORT |"));
    }
    md.push_str("\n|---|---:|---:|---:|");
    md.push_str(&"---:|".repeat(2 * report.backends.len() + 1));
    md.push('\n');
    for row in &report.rows {
        md.push_str(&format!(
            "| {} | {:.0} | {} | {} |",
            row.length, row.mean_tokens, row.batch, row.threads
        ));
        for name in &report.backends {
            md.push_str(&format!(" {} |", fmt(row.concierge.get(name))));
        }
        md.push_str(&format!(" {} |", fmt(row.onnxruntime.as_ref())));
        for name in &report.backends {
            let ratio = row
                .ratio_to_onnxruntime
                .get(name)
                .map_or("–".to_string(), |r| format!("{r:.2}×"));
            md.push_str(&format!(" {ratio} |"));
        }
        md.push('\n');
    }
    md
}
