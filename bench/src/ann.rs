//! `concierge-bench ann`: the dense index on real MiniLM vectors beside exact brute force and
//! hnswlib, plus the whole engine at the same scale (ingest-to-searchable time, hybrid query
//! latency, restart time).
//!
//! Corpus: real English sentences (see `corpus`), embedded once with the real model and cached
//! under `bench/data/cache/`. Queries are held-out sentences; ground truth is the exact top-10.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use concierge_engine::{
    AnnIndex, BruteForce, Engine, EngineConfig, HnswParams, SearchMode, SearchRequest,
};
use concierge_models::{BertEmbedder, Embedder, EmbedderConfig};
use serde::Serialize;

use crate::corpus;
use crate::corpus_vectors::{CachedEmbedder, ingest_all, vectors, wait_ready};
use crate::progress::Progress;
use crate::svg::{Series, line_chart};

/// Arguments of `concierge-bench ann`.
#[derive(Debug, clap::Args)]
pub struct AnnArgs {
    /// Vectors in the index.
    #[arg(long, default_value_t = 100_000)]
    pub count: usize,
    /// Held-out query sentences.
    #[arg(long, default_value_t = 1_000)]
    pub queries: usize,
    /// HNSW links per node.
    #[arg(long, default_value_t = 16)]
    pub m: usize,
    /// HNSW ef_construction.
    #[arg(long, default_value_t = 200)]
    pub ef_construction: usize,
    /// ef values of the recall/throughput sweep.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,16,24,32,48,64,96,128,192,256,384,512"
    )]
    pub efs: Vec<usize>,
    /// Threads for building the graphs (ours and hnswlib's); queries always run on one.
    #[arg(long, default_value_t = 2)]
    pub build_threads: usize,
    /// Also load the whole engine at this scale (ingest, hybrid latency, restart).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub engine: bool,
    /// The model directory.
    #[arg(long, default_value = "models/weights/all-MiniLM-L6-v2")]
    pub model_dir: PathBuf,
    /// Python for the hnswlib peer: `auto` (bench/.venv, else python3), a path, or `none`.
    #[arg(long, default_value = "auto")]
    pub python: String,
    /// Where vectors are cached.
    #[arg(long, default_value = "bench/data/cache")]
    pub cache: PathBuf,
    /// Where the report goes.
    #[arg(long, default_value = "bench/out/ann")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
struct Point {
    ef: usize,
    recall: f64,
    qps: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Curve {
    name: String,
    build_seconds: f64,
    memory_bytes_per_vector: f64,
    points: Vec<Point>,
}

#[derive(Debug, Serialize)]
struct EngineReport {
    chunks: usize,
    ingest_acknowledged_seconds: f64,
    indexed_seconds: f64,
    hybrid_p50_ms: f64,
    hybrid_p99_ms: f64,
    dense_p50_ms: f64,
    keyword_p50_ms: f64,
    close_seconds: f64,
    reopen_seconds: f64,
    ready_seconds: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    count: usize,
    queries: usize,
    dim: usize,
    m: usize,
    ef_construction: usize,
    build_threads: usize,
    brute_force_qps: f64,
    curves: Vec<Curve>,
    peer_skipped: Option<String>,
    engine: Option<EngineReport>,
}

fn rss_bytes() -> f64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<f64>().ok())
        })
        .map_or(0.0, |pages| pages * 4096.0)
}

fn bar(len: usize, what: &str) -> Progress {
    Progress::new(len, what)
}

fn recall(found: &[Vec<u64>], truth: &[Vec<u64>]) -> f64 {
    let hit: usize = found
        .iter()
        .zip(truth)
        .map(|(f, t)| f.iter().filter(|id| t.contains(id)).count())
        .sum();
    let all: usize = truth.iter().map(Vec::len).sum();
    hit as f64 / all.max(1) as f64
}

pub fn run(args: &AnnArgs) -> anyhow::Result<()> {
    let k = 10;
    eprintln!("corpus: collecting sentences ...");
    let texts = corpus::sentences(args.count + args.queries)?;
    let embedder = BertEmbedder::load(
        &args.model_dir,
        &EmbedderConfig {
            threads: args.build_threads,
            ..EmbedderConfig::default()
        },
    )?;
    let all = vectors(&args.cache, &texts, &embedder)?;
    let dim = embedder.dim();
    let (base, queries) = all.split_at(args.count);

    // Exact brute force: the ground truth and the reference speed (one thread).
    let mut exact = BruteForce::new(dim);
    for (i, v) in base.iter().enumerate() {
        exact.push(i as u64, v);
    }
    let pb = bar(queries.len(), "brute force");
    let started = Instant::now();
    let truth: Vec<Vec<u64>> = queries
        .iter()
        .map(|q| {
            pb.inc(1);
            exact.search(q, k).into_iter().map(|(id, _)| id).collect()
        })
        .collect();
    let brute_force_qps = queries.len() as f64 / started.elapsed().as_secs_f64();
    pb.finish();
    drop(exact);

    // Our index.
    rayon_threads(args.build_threads)?;
    let params = HnswParams {
        m: args.m,
        ef_construction: args.ef_construction,
        ef_search: 64,
    };
    let before = rss_bytes();
    let index = AnnIndex::new(dim, params, base.len());
    let pb = bar(base.len(), "building hnsw");
    let started = Instant::now();
    for (c, chunk) in base.chunks(5_000).enumerate() {
        index.insert_parallel(
            chunk
                .iter()
                .enumerate()
                .map(|(i, v)| ((c * 5_000 + i) as u64, v.clone()))
                .collect(),
        );
        pb.inc(chunk.len() as u64);
    }
    let build_seconds = started.elapsed().as_secs_f64();
    pb.finish();
    let memory = (rss_bytes() - before) / base.len() as f64;
    let mut points = Vec::new();
    let pb = bar(args.efs.len(), "ef sweep");
    for &ef in &args.efs {
        let started = Instant::now();
        let mut found = Vec::with_capacity(queries.len());
        for q in queries {
            found.push(
                index
                    .search(q, k, ef)?
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect::<Vec<_>>(),
            );
        }
        let qps = queries.len() as f64 / started.elapsed().as_secs_f64();
        points.push(Point {
            ef,
            recall: recall(&found, &truth),
            qps,
        });
        pb.inc(1);
    }
    pb.finish();
    drop(index);
    let mut curves = vec![Curve {
        name: "concierge (hnsw_rs + wrapper)".into(),
        build_seconds,
        memory_bytes_per_vector: memory,
        points,
    }];

    // The peer, on the same files.
    let peer_skipped = match run_hnswlib(args, base, queries, &truth, dim) {
        Ok(curve) => {
            curves.push(curve);
            None
        }
        Err(reason) => {
            eprintln!("hnswlib peer skipped: {reason:#}");
            Some(format!("{reason:#}"))
        }
    };

    let engine = if args.engine {
        Some(engine_at_scale(
            args,
            &texts[..args.count],
            base,
            &texts[args.count..],
        )?)
    } else {
        None
    };
    let report = Report {
        count: args.count,
        queries: args.queries,
        dim,
        m: args.m,
        ef_construction: args.ef_construction,
        build_threads: args.build_threads,
        brute_force_qps,
        curves,
        peer_skipped,
        engine,
    };
    write_report(args, &report)
}

fn rayon_threads(n: usize) -> anyhow::Result<()> {
    // The global pool is what hnsw_rs's parallel insert uses.
    match rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
    {
        Ok(()) => Ok(()),
        Err(e) => {
            eprintln!("rayon global pool already set: {e}");
            Ok(())
        }
    }
}

fn run_hnswlib(
    args: &AnnArgs,
    base: &[Vec<f32>],
    queries: &[Vec<f32>],
    truth: &[Vec<u64>],
    dim: usize,
) -> anyhow::Result<Curve> {
    let python = crate::peer::python(&args.python).context("--python none")?;
    let dir = tempfile::tempdir()?;
    let (b, q, t) = (
        dir.path().join("base.f32"),
        dir.path().join("queries.f32"),
        dir.path().join("truth.json"),
    );
    corpus::write_f32(&b, base)?;
    corpus::write_f32(&q, queries)?;
    std::fs::write(&t, serde_json::to_vec(truth)?)?;
    let efs = args
        .efs
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    eprintln!("running the hnswlib peer with {} ...", python.display());
    let out = Command::new(&python)
        .arg(crate::peer::peers_dir().join("hnswlib_ann.py"))
        .args([
            "--base".as_ref(),
            b.as_os_str(),
            "--queries".as_ref(),
            q.as_os_str(),
            "--truth".as_ref(),
            t.as_os_str(),
        ])
        .args([
            "--dim",
            &dim.to_string(),
            "--m",
            &args.m.to_string(),
            "--ef-construction",
            &args.ef_construction.to_string(),
            "--efs",
            &efs,
            "--threads-build",
            &args.build_threads.to_string(),
        ])
        .output()
        .context("starting python")?;
    anyhow::ensure!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    #[derive(serde::Deserialize)]
    struct PeerPoint {
        ef: usize,
        recall: f64,
        qps: f64,
    }
    #[derive(serde::Deserialize)]
    struct PeerOut {
        peer: String,
        build_seconds: f64,
        memory_bytes: f64,
        points: Vec<PeerPoint>,
    }
    let p: PeerOut = serde_json::from_slice(&out.stdout).context("reading the peer's JSON")?;
    Ok(Curve {
        name: p.peer,
        build_seconds: p.build_seconds,
        memory_bytes_per_vector: p.memory_bytes / base.len() as f64,
        points: p
            .points
            .into_iter()
            .map(|p| Point {
                ef: p.ef,
                recall: p.recall,
                qps: p.qps,
            })
            .collect(),
    })
}

fn engine_at_scale(
    args: &AnnArgs,
    texts: &[String],
    base: &[Vec<f32>],
    queries: &[String],
) -> anyhow::Result<EngineReport> {
    let dir = tempfile::tempdir_in(args.cache.parent().unwrap_or(Path::new(".")))?;
    let embedder = Arc::new(CachedEmbedder::new(
        BertEmbedder::load(&args.model_dir, &EmbedderConfig::default())?,
        texts,
        base,
    ));
    let mut config = EngineConfig::new(dir.path());
    config.hnsw = HnswParams {
        m: args.m,
        ef_construction: args.ef_construction,
        ef_search: 64,
    };
    let engine = Engine::open(config.clone(), embedder.clone())?;
    let started = Instant::now();
    ingest_all(&engine, texts, "engine ingest")?;
    let acknowledged = started.elapsed().as_secs_f64();
    let pb = bar(engine.durable_seq() as usize, "engine indexing");
    wait_ready(&engine, Some(&pb))?;
    let indexed = started.elapsed().as_secs_f64();
    pb.finish();

    let latencies = |mode: SearchMode, n: usize| -> anyhow::Result<(f64, f64)> {
        let mut ms: Vec<f64> = Vec::new();
        for q in queries.iter().take(n) {
            let t = Instant::now();
            engine.search(&SearchRequest::new(q.clone()).k(10).mode(mode))?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(f64::total_cmp);
        let pick = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
        Ok((pick(0.5), pick(0.99)))
    };
    let (hybrid_p50, hybrid_p99) = latencies(SearchMode::Hybrid, queries.len())?;
    let (dense_p50, _) = latencies(SearchMode::Dense, 200)?;
    let (keyword_p50, _) = latencies(SearchMode::Keyword, 200)?;

    let t = Instant::now();
    engine.close()?;
    let close_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let engine = Engine::open(config, embedder)?;
    let reopen_seconds = t.elapsed().as_secs_f64();
    wait_ready(&engine, None)?;
    let ready_seconds = t.elapsed().as_secs_f64();
    engine.close()?;
    Ok(EngineReport {
        chunks: texts.len(),
        ingest_acknowledged_seconds: acknowledged,
        indexed_seconds: indexed,
        hybrid_p50_ms: hybrid_p50,
        hybrid_p99_ms: hybrid_p99,
        dense_p50_ms: dense_p50,
        keyword_p50_ms: keyword_p50,
        close_seconds,
        reopen_seconds,
        ready_seconds,
    })
}

/// Queries/s of the fastest sweep point reaching `target` recall.
fn qps_at(curve: &Curve, target: f64) -> Option<(f64, usize)> {
    curve
        .points
        .iter()
        .filter(|p| p.recall >= target)
        .map(|p| (p.qps, p.ef))
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

fn write_report(args: &AnnArgs, r: &Report) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    std::fs::write(args.out.join("ann.json"), serde_json::to_vec_pretty(r)?)?;
    let mut md = format!(
        "# Dense index: {} real MiniLM vectors (dim {}), {} held-out queries, k = 10\n\nM = {}, ef_construction = {}, graphs built on {} threads, queries on one thread.\n\n",
        r.count, r.dim, r.queries, r.m, r.ef_construction, r.build_threads
    );
    md.push_str("| index | build (s) | memory / vector | q/s @ recall 0.90 | q/s @ 0.95 | q/s @ 0.99 |\n|---|---:|---:|---:|---:|---:|\n");
    let cell = |c: &Curve, t: f64| {
        qps_at(c, t).map_or("not reached".to_owned(), |(q, ef)| {
            format!("{q:.0} (ef {ef})")
        })
    };
    for c in &r.curves {
        md.push_str(&format!(
            "| {} | {:.1} | {:.0} B | {} | {} | {} |\n",
            c.name,
            c.build_seconds,
            c.memory_bytes_per_vector,
            cell(c, 0.90),
            cell(c, 0.95),
            cell(c, 0.99)
        ));
    }
    md.push_str(&format!(
        "| exact brute force | 0 | {} B | {:.0} (recall 1.0) | | |\n",
        r.dim * 4,
        r.brute_force_qps
    ));
    if let Some(reason) = &r.peer_skipped {
        md.push_str(&format!("\nhnswlib peer skipped: {reason}\n"));
    }
    md.push_str("\n## Sweep\n\n| index | ef | recall@10 | q/s |\n|---|---:|---:|---:|\n");
    for c in &r.curves {
        for p in &c.points {
            md.push_str(&format!(
                "| {} | {} | {:.4} | {:.0} |\n",
                c.name, p.ef, p.recall, p.qps
            ));
        }
    }
    if let Some(e) = &r.engine {
        md.push_str(&format!(
            "\n## The whole engine at {} chunks\n\n| measure | value |\n|---|---:|\n| ingest, all acknowledged (1000 documents per call) | {:.1} s |\n| ingest to fully searchable (chunk, vectors CF, HNSW + tantivy) | {:.1} s |\n| hybrid query p50 / p99 (query embedding included) | {:.2} / {:.2} ms |\n| dense-only p50 / keyword-only p50 | {:.2} / {:.2} ms |\n| close (keyword commit + HNSW snapshot) | {:.2} s |\n| reopen (load snapshot, open index) | {:.2} s |\n| reopen to both indexes ready | {:.2} s |\n",
            e.chunks, e.ingest_acknowledged_seconds, e.indexed_seconds, e.hybrid_p50_ms, e.hybrid_p99_ms, e.dense_p50_ms, e.keyword_p50_ms, e.close_seconds, e.reopen_seconds, e.ready_seconds
        ));
    }
    std::fs::write(args.out.join("ann.md"), &md)?;
    let mut series: Vec<Series> = r
        .curves
        .iter()
        .map(|c| Series {
            label: c.name.clone(),
            points: c.points.iter().map(|p| (p.recall, p.qps)).collect(),
        })
        .collect();
    series.push(Series {
        label: "exact brute force".into(),
        points: vec![(1.0, r.brute_force_qps)],
    });
    std::fs::write(
        args.out.join("ann.svg"),
        line_chart(
            &format!(
                "recall@10 vs queries/s, {} MiniLM vectors, 1 thread",
                r.count
            ),
            "recall@10",
            "queries per second (log)",
            &series,
        ),
    )?;
    println!("{md}");
    eprintln!("wrote {}/ann.{{json,md,svg}}", args.out.display());
    Ok(())
}
