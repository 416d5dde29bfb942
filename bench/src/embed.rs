//! `concierge-bench embed`: embedding throughput of Concierge's embedder beside ONNX Runtime.
//!
//! For short (~15 tokens) and long (~128 tokens) texts, at each batch size and thread count, it
//! embeds batch after batch for a fixed time and reports sentences per second (wall clock) and per
//! CPU-second, for each backend of `BertEmbedder` (`native`: our forward pass; `candle-bert`:
//! candle-transformers' `BertModel`), and ONNX Runtime runs the same model on the same texts with
//! the same settings (`bench/peers/onnx_embed.py`, kept running and asked row by row). Each row
//! takes `--rounds` rounds that alternate the two sides, and each side keeps its best round, so
//! both are measured on the same machine in the same minutes; the table shows each backend / ONNX
//! Runtime. Then the backlog: `--backlog` chunk-like texts drained in the indexer's calls by one
//! embedder on `--backlog-threads` threads, beside ONNX Runtime with that many one-thread sessions
//! (at each of `--backlog-peer-batches`). Writes `embed.json` and `embed.md` into `--out`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use concierge_models::{Backend, BertEmbedder, Embedder, EmbedderConfig};
use serde::Serialize;

use crate::cpu_time::process_cpu_time;
use crate::peer::OnnxPeer;
use crate::progress::Progress;
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
    /// Measuring time per row, side and round, in seconds (after one warm-up batch; at least
    /// three batches).
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Rounds per row: each alternates our runs with ONNX Runtime's, and each side keeps its
    /// best round.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Text sets to measure (`short`, `long`).
    #[arg(long, value_delimiter = ',', default_value = "short,long")]
    pub lengths: Vec<String>,
    /// Token length of the long texts (special tokens included).
    #[arg(long, default_value_t = 128)]
    pub long_tokens: usize,
    /// Where the JSON and Markdown reports go.
    #[arg(long, default_value = "bench/out/embed")]
    pub out: PathBuf,
    /// Python for the ONNX Runtime peer: a path, `auto` (bench/.venv, then python3) or `none`.
    #[arg(long, default_value = "auto")]
    pub python: String,
    /// Chunk-like texts in the backlog run (0 skips it): drained in the indexer's calls of
    /// `--backlog-call` texts by one embedder on `--backlog-threads` threads, beside ONNX Runtime
    /// with that many one-thread sessions.
    #[arg(long, default_value_t = 10_000)]
    pub backlog: usize,
    /// Threads of the backlog run (ONNX Runtime: sessions of one thread each).
    #[arg(long, default_value_t = 2)]
    pub backlog_threads: usize,
    /// Texts per embedding call in the backlog run (the indexer reads 256 log entries at a time).
    #[arg(long, default_value_t = 256)]
    pub backlog_call: usize,
    /// Batch sizes ONNX Runtime drains the backlog with, each a separate run; the fastest is the
    /// one compared (with long texts it is faster at small batches than at our 32).
    #[arg(long, value_delimiter = ',', default_value = "32,8")]
    pub backlog_peer_batches: Vec<usize>,
    /// Only the backlog run, not the per-batch-size rows.
    #[arg(long)]
    pub backlog_only: bool,
}

/// The backlog run: the same texts drained by both sides.
#[derive(Debug, Serialize)]
struct BacklogRow {
    texts: usize,
    mean_tokens: f64,
    threads: usize,
    call: usize,
    batch: usize,
    concierge_wall_s: f64,
    concierge_cpu_s: f64,
    /// ONNX Runtime's runs, one per batch size.
    onnxruntime: Vec<PeerBacklogRun>,
    /// The fastest ONNX Runtime run's wall time / ours (texts per second, ours / theirs).
    ratio_to_onnxruntime: Option<f64>,
    /// The least cosine between our vector and ONNX Runtime's for the same text.
    min_cosine_to_onnxruntime: Option<f64>,
}

/// One ONNX Runtime backlog run.
#[derive(Debug, Serialize)]
struct PeerBacklogRun {
    batch: usize,
    wall_s: f64,
    cpu_s: f64,
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
    rounds: usize,
    backends: Vec<&'static str>,
    peer: Option<String>,
    peer_parity_min_cosine: Option<f64>,
    peer_skipped: Option<String>,
    rows: Vec<Row>,
    backlog: Option<BacklogRow>,
}

pub fn run(args: &EmbedArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.seconds > 0.0, "--seconds must be positive");
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    anyhow::ensure!(
        !args.batch_sizes.contains(&0),
        "--batch-sizes must be at least 1"
    );
    anyhow::ensure!(
        !args.backends.is_empty() && !args.threads.is_empty(),
        "--backends and --threads need a value"
    );
    anyhow::ensure!(
        args.backlog_threads > 0 && args.backlog_call > 0,
        "--backlog-threads and --backlog-call must be at least 1"
    );
    anyhow::ensure!(
        !args.backlog_peer_batches.contains(&0),
        "--backlog-peer-batches must be at least 1"
    );
    anyhow::ensure!(
        !args.backlog_only || args.backlog > 0,
        "--backlog-only needs --backlog above 0"
    );
    let batch_size = args.batch_sizes.iter().copied().max().unwrap_or(1);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut embedders = Vec::new();
    let row_threads: &[usize] = if args.backlog_only {
        &[1]
    } else {
        &args.threads
    };
    for &backend in &args.backends {
        for &threads in row_threads {
            let config = EmbedderConfig {
                threads,
                batch_size,
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
    let sets: Vec<(&'static str, Vec<String>)> = if args.backlog_only {
        Vec::new()
    } else {
        let mut sets = Vec::new();
        for length in &args.lengths {
            match length.as_str() {
                "short" => sets.push(("short", texts::short_texts(pool))),
                "long" => sets.push(("long", texts::long_texts(first, pool, args.long_tokens)?)),
                other => anyhow::bail!("--lengths: {other:?} is not short or long"),
            }
        }
        sets
    };
    let backlog_texts = texts::backlog_texts(first, args.backlog)?;
    let texts_path = args.out.join("texts.json");
    let mut texts_json: BTreeMap<&str, &Vec<String>> =
        sets.iter().map(|(name, t)| (*name, t)).collect();
    if !backlog_texts.is_empty() {
        texts_json.insert("backlog", &backlog_texts);
    }
    std::fs::write(&texts_path, serde_json::to_vec(&texts_json)?)?;

    let backlog_mean_tokens = mean_tokens(first, &backlog_texts)?;
    let mut peer = match OnnxPeer::start(&args.python, &args.model_dir, &texts_path, &args.threads)
    {
        Ok(peer) => Some(peer),
        Err(reason) => {
            eprintln!("ONNX Runtime peer skipped: {reason}");
            None
        }
    };
    let (peer_name, parity) = match &peer {
        Some(p) => (Some(p.name.clone()), Some(p.parity_min_cosine)),
        None => (None, None),
    };
    let mut skipped = peer
        .is_none()
        .then(|| "it could not start (see the log)".to_string());

    // Rounds alternate our runs with the peer's, row by row, and each side keeps its best round:
    // on a shared machine the speed moves by tens of percent within minutes, and interference
    // only ever slows a run down.
    let per_round = sets.len() * args.batch_sizes.len() * args.threads.len();
    let progress = Progress::new(per_round * args.rounds, "embed rows");
    let mut rows = Vec::new();
    for (length, set) in &sets {
        let mean_tokens = mean_tokens(first, set)?;
        for &batch in &args.batch_sizes {
            for &threads in &args.threads {
                let mut concierge: BTreeMap<&'static str, Throughput> = BTreeMap::new();
                let mut onnxruntime: Option<Throughput> = None;
                for _ in 0..args.rounds {
                    for (backend, _, embedder) in embedders.iter().filter(|(_, t, _)| *t == threads)
                    {
                        let seconds = Duration::from_secs_f64(args.seconds);
                        let t = measure(embedder, set, batch, seconds)?;
                        keep_best(concierge.entry(backend.name()).or_insert(t), t);
                    }
                    if let Some(p) = &mut peer {
                        match p.measure(length, batch, threads, args.seconds) {
                            Ok(t) => keep_best(onnxruntime.get_or_insert(t), t),
                            Err(err) => {
                                eprintln!("ONNX Runtime peer stopped: {err:#}");
                                skipped = Some(format!("it stopped: {err:#}"));
                                peer = None;
                            }
                        }
                    }
                    progress.inc(1);
                }
                let ratio_to_onnxruntime = match &onnxruntime {
                    Some(theirs) => concierge
                        .iter()
                        .map(|(name, ours)| (*name, ours.sentences_per_s / theirs.sentences_per_s))
                        .collect(),
                    None => BTreeMap::new(),
                };
                rows.push(Row {
                    length,
                    mean_tokens,
                    batch,
                    threads,
                    concierge,
                    onnxruntime,
                    ratio_to_onnxruntime,
                });
            }
        }
    }
    progress.finish();
    drop(embedders);

    let backlog = if backlog_texts.is_empty() {
        None
    } else {
        let embedder = BertEmbedder::load(
            &args.model_dir,
            &EmbedderConfig {
                threads: args.backlog_threads,
                ..EmbedderConfig::default()
            },
        )?;
        let (mut row, ours) = drain_backlog(
            &embedder,
            args.backlog_threads,
            &backlog_texts,
            args.backlog_call,
            backlog_mean_tokens,
        )?;
        drop(embedder);
        for &batch in &args.backlog_peer_batches {
            let Some(p) = &mut peer else { break };
            let path = args.out.join("backlog-onnxruntime.f32");
            match p.backlog(args.backlog_threads, args.backlog_call, batch, &path) {
                Ok(theirs) => {
                    let cos = min_cosine_to_file(&ours, &path).ok();
                    row.min_cosine_to_onnxruntime = match (row.min_cosine_to_onnxruntime, cos) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    row.onnxruntime.push(PeerBacklogRun {
                        batch,
                        wall_s: theirs.wall_s,
                        cpu_s: theirs.cpu_s,
                    });
                }
                Err(err) => {
                    eprintln!("ONNX Runtime peer's backlog failed: {err:#}");
                    skipped = Some(format!("its backlog run failed: {err:#}"));
                }
            }
        }
        row.ratio_to_onnxruntime = row
            .onnxruntime
            .iter()
            .map(|r| r.wall_s)
            .reduce(f64::min)
            .map(|fastest| fastest / row.concierge_wall_s);
        Some(row)
    };
    let report = Report {
        run: crate::run_info::RunInfo::now(),
        model: model_id(&args.model_dir),
        seconds_per_row: args.seconds,
        backends: args.backends.iter().map(|b| b.name()).collect(),
        rounds: args.rounds,
        peer: peer_name,
        peer_parity_min_cosine: parity,
        peer_skipped: skipped,
        rows,
        backlog,
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

/// Keeps the faster of two measurements of the same row.
fn keep_best(best: &mut Throughput, candidate: Throughput) {
    if candidate.sentences_per_s > best.sentences_per_s {
        *best = candidate;
    }
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

/// Drains `texts` in calls of `call` texts, as the indexer does with a backlog, timing wall clock
/// and CPU. Returns the row (without the peer's figures) and the vectors.
fn drain_backlog(
    embedder: &BertEmbedder,
    threads: usize,
    texts: &[String],
    call: usize,
    mean_tokens: f64,
) -> anyhow::Result<(BacklogRow, Vec<Vec<f32>>)> {
    let progress = Progress::new(texts.len(), "backlog");
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // Warm-up: one small call (pages the weights in, starts the pool's threads).
    embedder.embed(&refs[..refs.len().min(threads * 2)])?;
    let cpu_start = process_cpu_time();
    let start = Instant::now();
    let mut vectors = Vec::with_capacity(texts.len());
    for chunk in refs.chunks(call) {
        vectors.extend(embedder.embed(chunk)?);
        progress.inc(chunk.len() as u64);
    }
    let wall = start.elapsed().as_secs_f64();
    progress.finish();
    let cpu = match (cpu_start, process_cpu_time()) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => f64::NAN,
    };
    let row = BacklogRow {
        texts: texts.len(),
        mean_tokens,
        threads,
        call,
        batch: EmbedderConfig::default().batch_size,
        concierge_wall_s: wall,
        concierge_cpu_s: cpu,
        onnxruntime: Vec::new(),
        ratio_to_onnxruntime: None,
        min_cosine_to_onnxruntime: None,
    };
    Ok((row, vectors))
}

/// The least cosine between `ours` and the row-major f32 vectors the peer wrote to `path`.
fn min_cosine_to_file(ours: &[Vec<f32>], path: &std::path::Path) -> anyhow::Result<f64> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let dim = ours.first().map_or(0, Vec::len);
    anyhow::ensure!(
        dim > 0 && bytes.len() == ours.len() * dim * 4,
        "{} holds {} bytes, not {} vectors of {dim}",
        path.display(),
        bytes.len(),
        ours.len()
    );
    let theirs: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(ours
        .iter()
        .zip(theirs.chunks_exact(dim))
        .map(|(a, b)| {
            let dot: f64 = a
                .iter()
                .zip(b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            dot / (na * nb).max(f64::MIN_POSITIVE)
        })
        .fold(1.0, f64::min))
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
    if let Some(b) = &report.backlog {
        md.push_str(&backlog_markdown(b));
    }
    md
}

fn backlog_markdown(b: &BacklogRow) -> String {
    let rate = |wall: f64| b.texts as f64 / wall;
    let mut md = format!(
        "\nBacklog: {} chunk-like texts (mean {:.0} tokens, lengths {:?}) in calls of {} texts, \
         batches of {}, {} threads, each embedding its share of a call (ONNX Runtime: {} sessions \
         of one thread sharing the batches of each call, texts sorted by length within a call).\n\n| side | wall s | texts/s | CPU s |\n|---|---:|---:|---:|\n\
         | concierge (native) | {:.1} | {:.1} | {:.1} |\n",
        b.texts,
        b.mean_tokens,
        texts::BACKLOG_TOKENS,
        b.call,
        b.batch,
        b.threads,
        b.threads,
        b.concierge_wall_s,
        rate(b.concierge_wall_s),
        b.concierge_cpu_s,
    );
    for r in &b.onnxruntime {
        md.push_str(&format!(
            "| ONNX Runtime, batches of {} | {:.1} | {:.1} | {:.1} |\n",
            r.batch,
            r.wall_s,
            rate(r.wall_s),
            r.cpu_s
        ));
    }
    if let Some(ratio) = b.ratio_to_onnxruntime {
        md.push_str(&format!(
            "\nconcierge / ONNX Runtime (its fastest run): **{ratio:.2}×**"
        ));
        if let Some(cos) = b.min_cosine_to_onnxruntime {
            md.push_str(&format!(
                "; least cosine between the two sides' vectors: {cos:.6}"
            ));
        }
        md.push_str(".\n");
    }
    md
}
