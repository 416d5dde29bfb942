//! `concierge-bench retrieval`: retrieval quality and latency of the whole engine on a dataset in
//! the BEIR layout (by default WordNet, from `bench/data/prepare.sh`): the corpus is ingested
//! through the engine (chunked, embedded, indexed in HNSW and tantivy), then every query is run
//! in each mode — keyword (BM25), dense, and hybrid with RRF at k = 1, 10, 60 and with DBSF — and
//! scored with nDCG@10, recall@100 and MRR@10, with query latency p50/p99 per mode.
//!
//! The corpus's vectors come from the cache `prepare-wordnet` filled (the same model; embedding
//! speed has its own benchmark); queries are embedded for real, so latency includes embedding.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, ensure};
use concierge_engine::{
    Document, Engine, EngineConfig, Fusion, FusionMethod, IngestRequest, Operation, SearchMode,
    SearchRequest,
};
use concierge_models::{BertEmbedder, EmbedderConfig};
use serde::Serialize;

use crate::beir;
use crate::corpus_vectors::{CachedEmbedder, vectors, wait_ready};
use crate::daemon_process::percentile;
use crate::ir_metrics::{ndcg_at, recall_at, reciprocal_rank_at};
use crate::plot::bars;
use crate::progress::Progress;
use crate::run_info::RunInfo;

/// Arguments of `concierge-bench retrieval`.
#[derive(Debug, clap::Args)]
pub struct RetrievalArgs {
    /// The dataset directory (BEIR layout: corpus.jsonl, queries.jsonl, qrels/test.tsv).
    #[arg(long, default_value = "bench/data/wordnet")]
    pub data: PathBuf,
    /// Judged queries to run (the first ones in file order; 0 for all).
    #[arg(long, default_value_t = 2_000)]
    pub queries: usize,
    /// The model directory.
    #[arg(long, default_value = "models/weights/all-MiniLM-L6-v2")]
    pub model_dir: PathBuf,
    /// Where corpus vectors are cached.
    #[arg(long, default_value = "bench/data/cache")]
    pub cache: PathBuf,
    /// Where the report goes.
    #[arg(long, default_value = "bench/out/retrieval")]
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
struct ModeRow {
    mode: String,
    ndcg_at_10: f64,
    recall_at_100: f64,
    mrr_at_10: f64,
    p50_ms: f64,
    p99_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    run: RunInfo,
    dataset: String,
    documents: usize,
    queries: usize,
    ingest_acknowledged_s: f64,
    ingest_searchable_s: f64,
    rows: Vec<ModeRow>,
}

const PREFIX: &str = "beir:doc:";

fn modes() -> Vec<(&'static str, SearchMode, Fusion)> {
    let rrf = |k: f32| Fusion {
        method: FusionMethod::Rrf,
        k,
        ..Fusion::default()
    };
    vec![
        ("keyword", SearchMode::Keyword, Fusion::default()),
        ("dense", SearchMode::Dense, Fusion::default()),
        ("hybrid RRF k=1", SearchMode::Hybrid, rrf(1.0)),
        ("hybrid RRF k=10", SearchMode::Hybrid, rrf(10.0)),
        ("hybrid RRF k=60", SearchMode::Hybrid, rrf(60.0)),
        (
            "hybrid DBSF",
            SearchMode::Hybrid,
            Fusion {
                method: FusionMethod::Dbsf,
                ..Fusion::default()
            },
        ),
    ]
}

pub fn run(args: &RetrievalArgs) -> anyhow::Result<()> {
    let run = RunInfo::now();
    ensure!(
        args.data.join("corpus.jsonl").is_file(),
        "{} holds no corpus.jsonl: run bench/data/prepare.sh (WordNet) or pass --data",
        args.data.display()
    );
    let dataset = beir::read(&args.data)?;
    let queries: Vec<&beir::Query> = if args.queries == 0 {
        dataset.queries.iter().collect()
    } else {
        dataset.queries.iter().take(args.queries).collect()
    };
    ensure!(!queries.is_empty(), "the dataset has no judged queries");
    eprintln!(
        "retrieval: {} documents, {} of {} judged queries",
        dataset.corpus.len(),
        queries.len(),
        dataset.queries.len()
    );

    // What the engine embeds for a one-chunk document: its text (after the title, if any).
    let texts: Vec<String> = dataset
        .corpus
        .iter()
        .map(|d| {
            if d.title.is_empty() {
                d.text.clone()
            } else {
                format!("{}\n{}", d.title, d.text)
            }
        })
        .collect();
    let model = |threads| {
        BertEmbedder::load(
            &args.model_dir,
            &EmbedderConfig {
                threads,
                ..EmbedderConfig::default()
            },
        )
    };
    let corpus_vectors = vectors(&args.cache, &texts, &model(2)?)?;
    let embedder = Arc::new(CachedEmbedder::new(model(1)?, &texts, &corpus_vectors));
    drop(corpus_vectors);

    std::fs::create_dir_all(&args.cache)?;
    let dir = tempfile::tempdir_in(&args.cache).context("a scratch engine directory")?;
    let engine = Engine::open(EngineConfig::new(dir.path()), embedder)?;
    let started = Instant::now();
    let pb = Progress::new(dataset.corpus.len(), "ingest");
    for batch in dataset.corpus.chunks(1_000) {
        let operations = batch
            .iter()
            .map(|d| {
                Document::new(
                    format!("{PREFIX}{}", d.id),
                    d.title.clone(),
                    d.text.clone(),
                    1,
                )
                .map(Operation::Upsert)
                .with_context(|| format!("document {:?}", d.id))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        engine.ingest(IngestRequest {
            operations,
            idempotency_key: None,
        })?;
        pb.inc(batch.len() as u64);
    }
    pb.finish();
    let acknowledged = started.elapsed().as_secs_f64();
    let pb = Progress::new(engine.durable_seq() as usize, "indexing");
    wait_ready(&engine, Some(&pb))?;
    pb.finish();
    let searchable = started.elapsed().as_secs_f64();

    let mut rows = Vec::new();
    for (name, mode, fusion) in modes() {
        let pb = Progress::new(queries.len(), name);
        let (mut ndcg, mut recall, mut mrr) = (0.0, 0.0, 0.0);
        let mut ms = Vec::with_capacity(queries.len());
        for q in &queries {
            let mut request = SearchRequest::new(q.text.clone()).k(100).mode(mode);
            request.fusion = fusion;
            let t = Instant::now();
            let response = engine
                .search(&request)
                .with_context(|| format!("query {:?}", q.id))?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            let ranking: Vec<String> = response
                .hits
                .iter()
                .map(|h| {
                    h.document
                        .id
                        .strip_prefix(PREFIX)
                        .unwrap_or(&h.document.id)
                        .to_owned()
                })
                .collect();
            let judged = &dataset.qrels[&q.id];
            ndcg += ndcg_at(10, &ranking, judged);
            recall += recall_at(100, &ranking, judged);
            mrr += reciprocal_rank_at(10, &ranking, judged);
            pb.inc(1);
        }
        pb.finish();
        ms.sort_by(f64::total_cmp);
        let n = queries.len() as f64;
        rows.push(ModeRow {
            mode: name.to_owned(),
            ndcg_at_10: ndcg / n,
            recall_at_100: recall / n,
            mrr_at_10: mrr / n,
            p50_ms: percentile(&ms, 0.5),
            p99_ms: percentile(&ms, 0.99),
        });
    }
    engine.close()?;

    let report = Report {
        run,
        dataset: args.data.display().to_string(),
        documents: dataset.corpus.len(),
        queries: queries.len(),
        ingest_acknowledged_s: acknowledged,
        ingest_searchable_s: searchable,
        rows,
    };
    write_report(args, &report)
}

fn write_report(args: &RetrievalArgs, r: &Report) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    std::fs::write(
        args.out.join("retrieval.json"),
        serde_json::to_vec_pretty(r)?,
    )?;
    let mut md = format!(
        "# Retrieval on {}: {} documents, {} queries\n\n{}\n\nEvery query asks for the top 100 (latency is for that, query embedding included, one query at a time).\n\n| mode | nDCG@10 | recall@100 | MRR@10 | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|---:|\n",
        r.dataset,
        r.documents,
        r.queries,
        r.run.markdown_line()
    );
    for row in &r.rows {
        md.push_str(&format!(
            "| {} | {:.4} | {:.4} | {:.4} | {:.1} | {:.1} |\n",
            row.mode, row.ndcg_at_10, row.recall_at_100, row.mrr_at_10, row.p50_ms, row.p99_ms
        ));
    }
    let best_leg = r
        .rows
        .iter()
        .filter(|x| !x.mode.starts_with("hybrid"))
        .max_by(|a, b| a.ndcg_at_10.total_cmp(&b.ndcg_at_10));
    let best_hybrid = r
        .rows
        .iter()
        .filter(|x| x.mode.starts_with("hybrid"))
        .max_by(|a, b| a.ndcg_at_10.total_cmp(&b.ndcg_at_10));
    if let (Some(leg), Some(h)) = (best_leg, best_hybrid) {
        md.push_str(&format!(
            "\nBest hybrid ({}) against the better single leg ({}): nDCG@10 {:.4} vs {:.4} ({:+.1} %).\n",
            h.mode,
            leg.mode,
            h.ndcg_at_10,
            leg.ndcg_at_10,
            (h.ndcg_at_10 / leg.ndcg_at_10 - 1.0) * 100.0
        ));
    }
    md.push_str(&format!(
        "\nIngest: {} documents acknowledged in {:.1} s, searchable in both indexes after {:.1} s (corpus vectors from the cache).\n",
        r.documents, r.ingest_acknowledged_s, r.ingest_searchable_s
    ));
    std::fs::write(args.out.join("retrieval.md"), &md)?;
    bars(
        &args.out.join("retrieval.svg"),
        &format!(
            "nDCG@10 per search mode, {} ({} queries)",
            r.dataset, r.queries
        ),
        "nDCG@10",
        &r.rows
            .iter()
            .map(|x| (x.mode.clone(), x.ndcg_at_10))
            .collect::<Vec<_>>(),
    )?;
    println!("{md}");
    eprintln!("wrote {}/retrieval.{{json,md,svg}}", args.out.display());
    Ok(())
}
