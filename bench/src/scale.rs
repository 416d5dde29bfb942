//! `concierge-bench scale`: the real `concierge serve` on a data directory holding `--count`
//! chunks (real sentences, one chunk each): how long a restart takes until both indexes serve,
//! resident memory idle and after the searches, and search latency over HTTP per mode beside the
//! same queries run in-process on the engine in the same run (what the HTTP layer adds).
//!
//! The data directory is filled through the engine with the corpus vectors (see
//! `corpus_vectors`: the real model's vectors, computed once and cached), so the run measures
//! the daemon at scale rather than an hour of embedding.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concierge_engine::{Engine, EngineConfig, SearchMode, SearchRequest};
use concierge_models::{BertEmbedder, EmbedderConfig};
use serde::Serialize;
use serde_json::{Value, json};

use crate::corpus;
use crate::corpus_vectors::{CachedEmbedder, ingest_all, vectors, wait_ready};
use crate::daemon_process::{DaemonProcess, percentile};
use crate::http_client::Connection;
use crate::progress::Progress;

/// Arguments of `concierge-bench scale`.
#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// Chunks (one-sentence documents) in the data directory.
    #[arg(long, default_value_t = 100_000)]
    pub count: usize,
    /// Held-out query sentences per search mode.
    #[arg(long, default_value_t = 300)]
    pub queries: usize,
    /// Threads for embedding the corpus when it is not cached yet.
    #[arg(long, default_value_t = 2)]
    pub embed_threads: usize,
    /// The model directory.
    #[arg(long, default_value = "models/weights/all-MiniLM-L6-v2")]
    pub model_dir: PathBuf,
    /// Where vectors are cached (shared with `ann`).
    #[arg(long, default_value = "bench/data/cache")]
    pub cache: PathBuf,
    /// Where the report goes.
    #[arg(long, default_value = "bench/out/scale")]
    pub out: PathBuf,
    /// Keep the filled data directory here (reused by the next run when it holds `--count`
    /// chunks, so a rerun measures the daemon without refilling); default: a temporary one.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct ModeRow {
    mode: &'static str,
    http_p50_ms: f64,
    http_p99_ms: f64,
    engine_p50_ms: f64,
    engine_p99_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    run: crate::run_info::RunInfo,
    chunks: usize,
    queries: usize,
    fill_seconds: f64,
    restart_to_ready_seconds: f64,
    rss_ready_mb: f64,
    rss_ready_anon_mb: f64,
    rss_after_searches_mb: f64,
    data_dir_mb: f64,
    stop_seconds: f64,
    modes: Vec<ModeRow>,
}

const MODES: [(SearchMode, &str); 3] = [
    (SearchMode::Hybrid, "hybrid"),
    (SearchMode::Dense, "dense"),
    (SearchMode::Keyword, "keyword"),
];

fn sorted(mut ms: Vec<f64>) -> Vec<f64> {
    ms.sort_by(f64::total_cmp);
    ms
}

fn dir_mb(path: &std::path::Path) -> f64 {
    fn walk(p: &std::path::Path) -> u64 {
        std::fs::read_dir(p).map_or(0, |entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
    }
    walk(path) as f64 / 1e6
}

/// Fills `dir` with the documents unless it already holds them; returns the in-process
/// latencies (ms, sorted) per mode.
fn fill(
    args: &ScaleArgs,
    dir: &std::path::Path,
    texts: &[String],
    base: &[Vec<f32>],
    queries: &[String],
) -> anyhow::Result<Vec<Vec<f64>>> {
    let bert = BertEmbedder::load(&args.model_dir, &EmbedderConfig::default())?;
    // Queries embed as in `concierge serve`: their own pool of two threads over the same weights.
    let queries_embedder = Arc::new(bert.with_own_pool(2)?);
    let embedder = Arc::new(CachedEmbedder::new(bert, texts, base));
    let engine =
        Engine::open_with_query_embedder(EngineConfig::new(dir), embedder, queries_embedder)?;
    let filled = engine.durable_seq() as usize;
    anyhow::ensure!(
        filled == 0 || filled == texts.len(),
        "{} holds {filled} changes, not 0 or {}: remove it or pass another --data-dir",
        dir.display(),
        texts.len()
    );
    if filled == 0 {
        ingest_all(&engine, texts, "fill: ingest")?;
    }
    let pb = Progress::new(engine.durable_seq() as usize, "fill: indexing");
    wait_ready(&engine, Some(&pb))?;
    pb.finish();
    let mut per_mode = Vec::new();
    for (mode, _) in MODES {
        let mut ms = Vec::with_capacity(queries.len());
        for q in queries {
            let t = Instant::now();
            engine.search(&SearchRequest::new(q.clone()).k(10).mode(mode))?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        per_mode.push(sorted(ms));
    }
    engine.close()?;
    Ok(per_mode)
}

pub fn run(args: &ScaleArgs) -> anyhow::Result<()> {
    eprintln!("corpus: collecting sentences ...");
    let texts = corpus::sentences(args.count + args.queries)?;
    let embedder = BertEmbedder::load(
        &args.model_dir,
        &EmbedderConfig {
            threads: args.embed_threads,
            ..EmbedderConfig::default()
        },
    )?;
    let all = vectors(&args.cache, &texts, &embedder)?;
    drop(embedder);
    let (base_texts, query_texts) = texts.split_at(args.count);
    let base = &all[..args.count];

    let scratch = tempfile::tempdir_in(args.cache.parent().unwrap_or(std::path::Path::new(".")))?;
    let data = args
        .data_dir
        .clone()
        .unwrap_or_else(|| scratch.path().join("data"));
    let started = Instant::now();
    let engine_ms = fill(args, &data, base_texts, base, query_texts)?;
    let fill_seconds = started.elapsed().as_secs_f64();
    drop(all);

    // The daemon on the filled directory: a restart with nothing to re-embed.
    let started = Instant::now();
    let daemon = DaemonProcess::start(&data, &args.model_dir, &[])?;
    let mut c = Connection::new(&daemon.address);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (s, body) = c.request("GET", "/v1/admin/status", "", &[])?;
        anyhow::ensure!(s == 200, "status answered {s}: {body}");
        let v: Value = serde_json::from_str(&body)?;
        let want = v["durable_seq"].as_u64().unwrap_or(u64::MAX);
        let ready = |leg: &str| {
            v[leg]["state"]["state"] == "ready" && v[leg]["seq"].as_u64().is_some_and(|q| q >= want)
        };
        if ready("dense") && ready("keyword") {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the daemon never got ready: {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let restart_to_ready_seconds = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let rss_ready_mb = daemon.rss_mb();
    let rss_ready_anon_mb = daemon.rss_anon_mb();

    let pb = Progress::new(query_texts.len() * MODES.len(), "search over http");
    let mut modes = Vec::new();
    for ((_, name), engine) in MODES.iter().zip(&engine_ms) {
        let mut ms = Vec::with_capacity(query_texts.len());
        for q in query_texts {
            let body = json!({"query": q, "k": 10, "mode": name}).to_string();
            let t = Instant::now();
            let (s, b) = c.request(
                "POST",
                "/v1/search",
                &body,
                &[("Content-Type", "application/json")],
            )?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(s == 200, "search answered {s}: {b}");
            pb.inc(1);
        }
        let http = sorted(ms);
        modes.push(ModeRow {
            mode: name,
            http_p50_ms: percentile(&http, 0.5),
            http_p99_ms: percentile(&http, 0.99),
            engine_p50_ms: percentile(engine, 0.5),
            engine_p99_ms: percentile(engine, 0.99),
        });
    }
    pb.finish();
    let rss_after_searches_mb = daemon.rss_mb();
    let stop_seconds = daemon.stop()?.as_secs_f64();

    let report = Report {
        run: crate::run_info::RunInfo::now(),
        chunks: args.count,
        queries: query_texts.len(),
        fill_seconds,
        restart_to_ready_seconds,
        rss_ready_mb,
        rss_ready_anon_mb,
        rss_after_searches_mb,
        data_dir_mb: dir_mb(&data),
        stop_seconds,
        modes,
    };
    write_report(args, &report)
}

fn write_report(args: &ScaleArgs, r: &Report) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("scale.json"), serde_json::to_vec_pretty(r)?)?;
    let mut md = format!(
        "# `concierge serve` at {} chunks\n\n{}\n\n| search mode | HTTP p50 / p99 ms | engine in-process p50 / p99 ms (same queries, same run) |\n|---|---:|---:|\n",
        r.chunks,
        r.run.markdown_line()
    );
    for m in &r.modes {
        md.push_str(&format!(
            "| {} | {:.1} / {:.1} | {:.1} / {:.1} |\n",
            m.mode, m.http_p50_ms, m.http_p99_ms, m.engine_p50_ms, m.engine_p99_ms
        ));
    }
    md.push_str(&format!(
        "\n| measure | value |\n|---|---:|\n| fill through the engine (cached vectors) | {:.0} s |\n| restart to both indexes ready | {:.1} s |\n| resident memory, ready (of which anonymous) / after {} searches | {:.0} ({:.0}) / {:.0} MB |\n| data directory on disk | {:.0} MB |\n| SIGTERM to exit (drain, flush) | {:.1} s |\n",
        r.fill_seconds,
        r.restart_to_ready_seconds,
        r.queries * MODES.len(),
        r.rss_ready_mb,
        r.rss_ready_anon_mb,
        r.rss_after_searches_mb,
        r.data_dir_mb,
        r.stop_seconds
    ));
    std::fs::write(args.out.join("scale.md"), &md)?;
    println!("{md}");
    Ok(())
}
