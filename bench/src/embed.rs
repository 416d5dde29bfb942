//! `concierge-bench embed`: embedding throughput of the candle embedder beside ONNX Runtime.
//!
//! For short (~12 tokens) and long (~128 tokens) texts, at each batch size and thread count, it
//! embeds batch after batch for a fixed time and reports sentences per second (wall clock) and per
//! CPU-second. ONNX Runtime then runs the same model on the same texts with the same settings
//! (`bench/peers/onnx_embed.py`), and the table shows candle / ONNX Runtime per row.
//! Writes `embed.json` and `embed.md` into `--out`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use concierge_models::{BertEmbedder, Embedder, EmbedderConfig};
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
    candle: Throughput,
    onnxruntime: Option<Throughput>,
    /// candle / ONNX Runtime, sentences per second.
    ratio: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    seconds_per_row: f64,
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
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut embedders = BTreeMap::new();
    for &threads in &args.threads {
        let config = EmbedderConfig {
            threads,
            batch_size: args.batch_sizes.iter().copied().max().unwrap_or(1),
            max_tokens: None,
        };
        let embedder = BertEmbedder::load(&args.model_dir, &config)
            .with_context(|| format!("loading the model from {}", args.model_dir.display()))?;
        embedders.insert(threads, embedder);
    }
    let first = embedders
        .values()
        .next()
        .context("--threads needs at least one value")?;
    let pool = 256;
    let sets: [(&'static str, Vec<String>); 2] = [
        ("short", texts::short_texts(pool)),
        ("long", texts::long_texts(first, pool, args.long_tokens)?),
    ];
    let texts_path = args.out.join("texts.json");
    let texts_json: BTreeMap<&str, &Vec<String>> =
        sets.iter().map(|(name, t)| (*name, t)).collect();
    std::fs::write(&texts_path, serde_json::to_vec(&texts_json)?)?;

    let total = sets.len() * args.batch_sizes.len() * args.threads.len();
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix("candle");
    let mut rows = Vec::new();
    for (length, set) in &sets {
        let mean_tokens = mean_tokens(first, set)?;
        for &batch in &args.batch_sizes {
            for (&threads, embedder) in &embedders {
                bar.set_message(format!(
                    "{length} texts, batch {batch}, {threads} thread(s)"
                ));
                let candle = measure(embedder, set, batch, Duration::from_secs_f64(args.seconds))?;
                rows.push(Row {
                    length,
                    mean_tokens,
                    batch,
                    threads,
                    candle,
                    onnxruntime: None,
                    ratio: None,
                });
                bar.inc(1);
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
                if let Some(found) = result.rows.iter().find(|r| {
                    r.length == row.length && r.batch == row.batch && r.threads == row.threads
                }) {
                    row.onnxruntime = Some(found.throughput);
                    row.ratio = Some(row.candle.sentences_per_s / found.throughput.sentences_per_s);
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
        model: first_model_id(&args.model_dir),
        seconds_per_row: args.seconds,
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

fn first_model_id(dir: &std::path::Path) -> String {
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
        "Embedding throughput, {} on candle vs {peer}, {} s per row. Sentences per second (wall clock) and per CPU-second.\n\n",
        report.model, report.seconds_per_row
    );
    if let Some(cos) = report.peer_parity_min_cosine {
        md.push_str(&format!(
            "ONNX Runtime's vectors vs sentence-transformers: min cosine {cos:.6}.\n\n"
        ));
    }
    if let Some(reason) = &report.peer_skipped {
        md.push_str(&format!("ONNX Runtime was skipped: {reason}\n\n"));
    }
    md.push_str("| texts | tokens | batch | threads | candle sent/s | candle sent/CPU-s | ORT sent/s | ORT sent/CPU-s | candle / ORT |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let fmt = |x: f64| {
        if x.is_finite() {
            format!("{x:.1}")
        } else {
            "–".into()
        }
    };
    for row in &report.rows {
        let (ort_s, ort_cpu) = row.onnxruntime.map_or(("–".into(), "–".into()), |t| {
            (fmt(t.sentences_per_s), fmt(t.sentences_per_cpu_s))
        });
        let ratio = row.ratio.map_or("–".into(), |r| format!("{r:.2}×"));
        md.push_str(&format!(
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |\n",
            row.length,
            row.mean_tokens,
            row.batch,
            row.threads,
            fmt(row.candle.sentences_per_s),
            fmt(row.candle.sentences_per_cpu_s),
            ort_s,
            ort_cpu,
            ratio
        ));
    }
    md
}
