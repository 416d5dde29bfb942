//! `concierge-bench retrieval-qdrant`: retrieval quality of the same WordNet subset on the
//! embedded indexes (a primary) and through Qdrant (a replica), in one run, over HTTP: nDCG@10,
//! recall@100 and MRR@10 per mode (keyword, dense, hybrid with the default RRF k = 60).
//!
//! Qdrant here is the tests' stand-in (qdrant-client's local mode, exact search, Python), so the
//! corpus is a subset: the documents relevant to the first `--queries` judged queries plus the
//! first documents of the corpus up to `--documents`; both backends hold exactly that subset, and
//! every relevant document of every query run is in it. Quality is what this compares (the
//! fusion happens in Qdrant, the BM25 leg is our sparse vectors with Qdrant's IDF); the
//! stand-in's latencies are printed but are not Qdrant's.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::ensure;
use concierge_tests::QdrantServer;
use serde::Serialize;
use serde_json::{Value, json};

use crate::beir;
use crate::daemon_process::{DaemonProcess, percentile};
use crate::daemon_status::wait;
use crate::http_client::Connection;
use crate::ir_metrics::{ndcg_at, recall_at, reciprocal_rank_at};
use crate::progress::Progress;
use crate::qdrant_sync::{TOKEN, qdrant_cursor, start_replica, status};
use crate::run_info::RunInfo;

/// Arguments of `concierge-bench retrieval-qdrant`.
#[derive(Debug, clap::Args)]
pub struct RetrievalQdrantArgs {
    /// The dataset (BEIR layout; `prepare-wordnet --beir-only` writes WordNet's).
    #[arg(long, default_value = "bench/data/wordnet")]
    pub data: PathBuf,
    /// Judged queries to run (the first ones in file order).
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Documents in the subset (the relevant ones first, then the corpus in file order).
    #[arg(long, default_value_t = 5_000)]
    pub documents: usize,
    /// The model directory.
    #[arg(long, default_value = "models/weights/all-MiniLM-L6-v2")]
    pub model_dir: PathBuf,
    /// Where the report goes.
    #[arg(long, default_value = "bench/out/retrieval-qdrant")]
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
struct Row {
    mode: &'static str,
    backend: &'static str,
    ndcg_at_10: f64,
    recall_at_100: f64,
    mrr_at_10: f64,
    p50_ms: f64,
    p99_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    run: RunInfo,
    documents: usize,
    queries: usize,
    rows: Vec<Row>,
}

const PREFIX: &str = "beir:doc:";

pub fn run(args: &RetrievalQdrantArgs) -> anyhow::Result<()> {
    let run = RunInfo::now();
    ensure!(
        args.data.join("corpus.jsonl").is_file(),
        "{} holds no corpus.jsonl: concierge-bench prepare-wordnet --beir-only (after bench/data/prepare.sh unpacked WordNet)",
        args.data.display()
    );
    let dataset = beir::read(&args.data)?;
    let queries: Vec<&beir::Query> = dataset.queries.iter().take(args.queries).collect();
    ensure!(!queries.is_empty(), "the dataset has no judged queries");
    let relevant: HashSet<&str> = queries
        .iter()
        .flat_map(|q| dataset.qrels[&q.id].keys().map(String::as_str))
        .collect();
    let mut subset: Vec<&beir::CorpusDoc> = dataset
        .corpus
        .iter()
        .filter(|d| relevant.contains(d.id.as_str()))
        .collect();
    for d in &dataset.corpus {
        if subset.len() >= args.documents.max(relevant.len()) {
            break;
        }
        if !relevant.contains(d.id.as_str()) {
            subset.push(d);
        }
    }
    eprintln!(
        "retrieval-qdrant: {} documents ({} relevant), {} queries",
        subset.len(),
        relevant.len(),
        queries.len()
    );

    let data = tempfile::tempdir()?;
    let q = QdrantServer::start();
    let url = q.url();
    let auth = format!("Bearer {TOKEN}");
    let primary = DaemonProcess::start(
        &data.path().join("primary"),
        &args.model_dir,
        &[
            ("CONCIERGE_QDRANT__URL", url.as_str()),
            ("CONCIERGE_AUTH__API_TOKENS", TOKEN),
        ],
    )?;
    let mut last = 0;
    {
        let mut c = Connection::new(&primary.address);
        let pb = Progress::new(subset.len(), "ingest");
        for batch in subset.chunks(100) {
            let documents: Vec<Value> = batch
                .iter()
                .map(|d| json!({"id": format!("{PREFIX}{}", d.id), "title": d.title, "text": d.text, "updated_at": 1}))
                .collect();
            let (code, body) = c.request(
                "POST",
                "/v1/documents",
                &json!({"documents": documents}).to_string(),
                &[
                    ("Content-Type", "application/json"),
                    ("Authorization", &auth),
                ],
            )?;
            ensure!(code == 202, "POST /v1/documents answered {code}: {body}");
            last = serde_json::from_str::<Value>(&body)?["seq"]
                .as_u64()
                .unwrap_or(last);
            pb.inc(batch.len() as u64);
        }
        pb.finish();
    }
    let address = primary.address.clone();
    wait("indexed and in Qdrant", Duration::from_secs(7200), || {
        let s = status(&address)?;
        Ok(s["dense"]["seq"].as_u64().unwrap_or(0) >= last
            && s["keyword"]["seq"].as_u64().unwrap_or(0) >= last
            && qdrant_cursor(&s) >= last)
    })?;
    let primary_url = format!("http://{address}");
    let replica = start_replica(
        &data.path().join("replica"),
        &args.model_dir,
        &primary_url,
        &url,
    )?;

    let mut rows = Vec::new();
    for (mode, name) in [
        ("keyword", "keyword"),
        ("dense", "dense"),
        ("hybrid", "hybrid RRF k=60"),
    ] {
        for (backend, process) in [("embedded", &primary), ("Qdrant", &replica)] {
            let mut c = Connection::new(&process.address);
            let pb = Progress::new(queries.len(), &format!("{name}, {backend}"));
            let (mut ndcg, mut recall, mut mrr) = (0.0, 0.0, 0.0);
            let mut ms = Vec::with_capacity(queries.len());
            for query in &queries {
                let body = json!({"query": query.text, "k": 100, "mode": mode}).to_string();
                let t = Instant::now();
                let (code, answer) = c.request(
                    "POST",
                    "/v1/search",
                    &body,
                    &[
                        ("Content-Type", "application/json"),
                        ("Authorization", &auth),
                    ],
                )?;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                ensure!(
                    code == 200,
                    "{backend} {mode}: search answered {code}: {answer}"
                );
                let ranking: Vec<String> = serde_json::from_str::<Value>(&answer)?["hits"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|h| h["document"]["id"].as_str())
                    .map(|id| id.strip_prefix(PREFIX).unwrap_or(id).to_owned())
                    .collect();
                let judged = &dataset.qrels[&query.id];
                ndcg += ndcg_at(10, &ranking, judged);
                recall += recall_at(100, &ranking, judged);
                mrr += reciprocal_rank_at(10, &ranking, judged);
                pb.inc(1);
            }
            pb.finish();
            ms.sort_by(f64::total_cmp);
            let n = queries.len() as f64;
            rows.push(Row {
                mode: name,
                backend,
                ndcg_at_10: ndcg / n,
                recall_at_100: recall / n,
                mrr_at_10: mrr / n,
                p50_ms: percentile(&ms, 0.5),
                p99_ms: percentile(&ms, 0.99),
            });
        }
    }
    replica.stop()?;
    primary.stop()?;
    drop(q);

    let report = Report {
        run,
        documents: subset.len(),
        queries: queries.len(),
        rows,
    };
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("retrieval-qdrant.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    let mut md = format!(
        "# Retrieval quality: embedded indexes (a primary) and through Qdrant (a replica), WordNet subset\n\n{}\n\n\
         {} documents, the first {} judged queries, k = 100 over HTTP. Qdrant is the tests' stand-in (qdrant-client's local mode): its latencies are not Qdrant's.\n\n\
         | mode | backend | nDCG@10 | recall@100 | MRR@10 | p50 ms | p99 ms |\n|---|---|---:|---:|---:|---:|---:|\n",
        report.run.markdown_line(),
        report.documents,
        report.queries
    );
    for r in &report.rows {
        md.push_str(&format!(
            "| {} | {} | {:.4} | {:.4} | {:.4} | {:.1} | {:.1} |\n",
            r.mode, r.backend, r.ndcg_at_10, r.recall_at_100, r.mrr_at_10, r.p50_ms, r.p99_ms
        ));
    }
    std::fs::write(args.out.join("retrieval-qdrant.md"), &md)?;
    println!("{md}");
    Ok(())
}
