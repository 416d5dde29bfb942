//! `concierge-bench qdrant`: the Qdrant sync of a real primary and searches through a real
//! replica, against Qdrant's REST API as the tests serve it (`tests/qdrant/server.py`:
//! qdrant-client's local mode, Python; no Qdrant server can be had here, so every number that
//! involves Qdrant's own work is the stand-in's, not Qdrant's). In one run:
//!
//! 1. **Sync throughput**: `--documents` generic documents ingested and embedded while Qdrant is
//!    down, then Qdrant started: chunks/s and requests/s from the consumer's first request after
//!    that until the watermark holds everything.
//! 2. **Latency**: Aircall webhooks at `--rate` (50/s) for `--seconds`: acknowledged → in Qdrant
//!    (the watermark passed the webhook's `seq`; the chunks wait for the primary's indexer to
//!    embed them, so this includes embedding).
//! 3. **Searches**: the same hybrid queries over HTTP on the primary (embedded indexes, the
//!    reference) and on a replica (through Qdrant), one at a time: p50/p99, and the replica's
//!    CPU time per query (its own process; Qdrant's work is in the stand-in's process).
//! 4. **Keyword agreement**: the same queries in keyword mode on both: how often the first
//!    document is the same, and the mean overlap of the top 10.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concierge_tests::QdrantServer;
use serde::Serialize;
use serde_json::{Value, json};

use crate::daemon_process::{DaemonProcess, percentile};
use crate::daemon_status::{self, wait};
use crate::http_client::Connection;
use crate::load::{Schedule, Sender, Workload, searchable, step, watch_status};
use crate::progress::Progress;
use crate::run_info::RunInfo;

const AIRCALL_TOKEN: &str = "bench-token";
pub(crate) const TOKEN: &str = "bench-admin";

/// Arguments of `concierge-bench qdrant`.
#[derive(Debug, clap::Args)]
pub struct QdrantArgs {
    /// Documents of the throughput backlog.
    #[arg(long, default_value_t = 2_000)]
    pub documents: usize,
    /// Webhooks per second of the latency step.
    #[arg(long, default_value_t = 50)]
    pub rate: u32,
    /// Seconds of the latency step.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Queries per backend (the stand-in Qdrant answers about one a second at 3 000 points).
    #[arg(long, default_value_t = 100)]
    pub queries: usize,
    /// The model directory.
    #[arg(long, default_value = "models/weights/all-MiniLM-L6-v2")]
    pub model_dir: PathBuf,
    /// Where the report goes.
    #[arg(long, default_value = "bench/out/qdrant")]
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
struct Throughput {
    documents: usize,
    chunks: u64,
    requests: u64,
    seconds: f64,
    chunks_per_s: f64,
    requests_per_s: f64,
}

#[derive(Debug, Serialize)]
struct Latency {
    rate: u32,
    acknowledged: usize,
    in_qdrant_p50_ms: f64,
    in_qdrant_p99_ms: f64,
}

#[derive(Debug, Serialize)]
struct SearchRow {
    node: &'static str,
    queries: usize,
    p50_ms: f64,
    p99_ms: f64,
    cpu_ms_per_query: Option<f64>,
}

/// How far the keyword leg through Qdrant (our sparse BM25 vectors, Qdrant's IDF) agrees with
/// the embedded keyword index (tantivy's BM25) on the same queries.
#[derive(Debug, Serialize)]
struct KeywordAgreement {
    queries: usize,
    /// Share of queries whose first document is the same.
    top1_same: f64,
    /// Mean share of the top-10 documents both return.
    overlap_at_10: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    run: RunInfo,
    throughput: Throughput,
    latency: Latency,
    searches: Vec<SearchRow>,
    keyword_agreement: KeywordAgreement,
}

/// The ids of the top 10 documents of a search.
fn top10(c: &mut Connection, auth: &str, query: &str, mode: &str) -> anyhow::Result<Vec<String>> {
    let body = json!({"query": query, "k": 10, "mode": mode}).to_string();
    let (code, answer) = c.request(
        "POST",
        "/v1/search",
        &body,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", auth),
        ],
    )?;
    anyhow::ensure!(code == 200, "search answered {code}: {answer}");
    Ok(serde_json::from_str::<Value>(&answer)?["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h["document"]["id"].as_str().map(str::to_owned))
        .collect())
}

pub(crate) fn status(address: &str) -> anyhow::Result<Value> {
    daemon_status::status(address, Some(TOKEN))
}

fn sync(status: &Value) -> &Value {
    daemon_status::sync(status, "qdrant")
}

pub(crate) fn qdrant_cursor(status: &Value) -> u64 {
    daemon_status::consumer(status, "qdrant")["cursor"]
        .as_u64()
        .unwrap_or(0)
}

/// A replica (no store, searches through Qdrant at `qdrant_url`, writes to `primary_url`), with
/// the benchmarks' token.
pub(crate) fn start_replica(
    data_dir: &std::path::Path,
    model_dir: &std::path::Path,
    primary_url: &str,
    qdrant_url: &str,
) -> anyhow::Result<DaemonProcess> {
    DaemonProcess::start(
        data_dir,
        model_dir,
        &[
            ("CONCIERGE_CLUSTER__ROLE", "replica"),
            ("CONCIERGE_CLUSTER__PRIMARY_URL", primary_url),
            ("CONCIERGE_CLUSTER__PRIMARY_TOKEN", TOKEN),
            ("CONCIERGE_AUTH__API_TOKENS", TOKEN),
            ("CONCIERGE_QDRANT__URL", qdrant_url),
            ("CONCIERGE_SEARCH__BACKEND", "qdrant"),
        ],
    )
}

pub fn run(args: &QdrantArgs) -> anyhow::Result<()> {
    let run = RunInfo::now();
    let data = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let primary = DaemonProcess::start(
        &data.path().join("primary"),
        &args.model_dir,
        &[
            ("CONCIERGE_QDRANT__URL", url.as_str()),
            ("CONCIERGE_AIRCALL__TOKENS", AIRCALL_TOKEN),
            ("CONCIERGE_AUTH__API_TOKENS", TOKEN),
        ],
    )?;
    let address = primary.address.clone();
    let sentences = crate::texts::short_texts(512);
    let auth = format!("Bearer {TOKEN}");

    // 1. A backlog embedded while Qdrant is down, then Qdrant.
    let mut last = 0;
    {
        let progress = Progress::new(args.documents, "backlog ingested");
        let mut c = Connection::new(&address);
        for start in (0..args.documents).step_by(100) {
            let end = (start + 100).min(args.documents);
            let documents: Vec<Value> = (start..end)
                .map(|i| json!({
                    "id": format!("ops:bench:{i}"),
                    "title": format!("Note {i}"),
                    "text": format!("{} {} {}", sentences[i % 512], sentences[(i * 7 + 3) % 512], sentences[(i * 13 + 5) % 512]),
                    "updated_at": 1_767_225_600_000i64 + i as i64,
                    "metadata": {"unit": i % 40}
                }))
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
            anyhow::ensure!(code == 202, "POST /v1/documents answered {code}: {body}");
            last = serde_json::from_str::<Value>(&body)?["seq"]
                .as_u64()
                .unwrap_or(last);
            progress.inc((end - start) as u64);
        }
        progress.finish();
    }
    wait("the backlog embedded", Duration::from_secs(1800), || {
        let s = status(&address)?;
        Ok(s["dense"]["seq"].as_u64().unwrap_or(0) >= last)
    })?;
    let before = status(&address)?;
    let requests_before = sync(&before)["requests"].as_u64().unwrap_or(0);
    let q = QdrantServer::start_on(port);
    // The clock starts at the consumer's first request after Qdrant came up (not while its
    // backoff from the outage runs out).
    wait(
        "a first request to Qdrant",
        Duration::from_secs(120),
        || Ok(sync(&status(&address)?)["requests"].as_u64().unwrap_or(0) > requests_before),
    )?;
    let seconds = wait("the backlog in Qdrant", Duration::from_secs(3600), || {
        Ok(qdrant_cursor(&status(&address)?) >= last)
    })?
    .as_secs_f64();
    let after = status(&address)?;
    let chunks = after["dense"]["chunks"].as_u64().unwrap_or(0);
    let requests = sync(&after)["requests"].as_u64().unwrap_or(0) - requests_before;
    let throughput = Throughput {
        documents: args.documents,
        chunks,
        requests,
        seconds,
        chunks_per_s: chunks as f64 / seconds,
        requests_per_s: requests as f64 / seconds,
    };

    // 2. Webhooks at a fixed rate: acknowledged → in Qdrant.
    let log: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_status(
        address.clone(),
        Some(auth.clone()),
        log.clone(),
        stop.clone(),
        qdrant_cursor,
    );
    let sender = Sender {
        address: &address,
        workload: Workload::Webhook,
        token: AIRCALL_TOKEN,
        auth: None,
        sentences: &sentences,
        sample_every: 1,
    };
    let (results, _) = step(
        &sender,
        Schedule::Rate(args.rate),
        args.seconds,
        32,
        10_000_000,
    );
    let (p50, p99, _) = searchable(&results, &log);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watcher.join();
    let latency = Latency {
        rate: args.rate,
        acknowledged: results.iter().filter(|(_, ok, _)| *ok).count(),
        in_qdrant_p50_ms: p50,
        in_qdrant_p99_ms: p99,
    };

    // 3. The same queries on the primary (embedded indexes) and on a replica (Qdrant).
    let primary_url = format!("http://{address}");
    let replica = start_replica(
        &data.path().join("replica"),
        &args.model_dir,
        &primary_url,
        &url,
    )?;
    let queries = crate::texts::short_texts(args.queries + 1000);
    let mut searches = Vec::new();
    for (node, process) in [
        ("primary (embedded indexes)", &primary),
        ("replica (through Qdrant)", &replica),
    ] {
        let mut c = Connection::new(&process.address);
        let progress = Progress::new(args.queries, node);
        // A few untimed queries first: connections, caches.
        for q in queries.iter().skip(args.queries).take(20) {
            let body = json!({"query": q, "k": 10}).to_string();
            c.request(
                "POST",
                "/v1/search",
                &body,
                &[
                    ("Content-Type", "application/json"),
                    ("Authorization", &auth),
                ],
            )?;
        }
        let cpu_before = process.cpu_time();
        let mut ms = Vec::with_capacity(args.queries);
        for q in queries.iter().take(args.queries) {
            let body = json!({"query": q, "k": 10}).to_string();
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
            anyhow::ensure!(code == 200, "{node}: search answered {code}: {answer}");
            progress.inc(1);
        }
        progress.finish();
        let cpu = match (cpu_before, process.cpu_time()) {
            (Some(a), Some(b)) => Some((b - a).as_secs_f64() * 1e3 / args.queries as f64),
            _ => None,
        };
        ms.sort_by(f64::total_cmp);
        searches.push(SearchRow {
            node,
            queries: args.queries,
            p50_ms: percentile(&ms, 0.5),
            p99_ms: percentile(&ms, 0.99),
            cpu_ms_per_query: cpu,
        });
    }
    // Keyword leg against keyword leg.
    let (mut same, mut overlap) = (0usize, 0.0f64);
    {
        let mut p = Connection::new(&primary.address);
        let mut r = Connection::new(&replica.address);
        let progress = Progress::new(args.queries, "keyword agreement");
        for q in queries.iter().take(args.queries) {
            let local = top10(&mut p, &auth, q, "keyword")?;
            let remote = top10(&mut r, &auth, q, "keyword")?;
            same += usize::from(!local.is_empty() && local.first() == remote.first());
            let shared = local.iter().filter(|id| remote.contains(id)).count();
            overlap += shared as f64 / local.len().max(1) as f64;
            progress.inc(1);
        }
        progress.finish();
    }
    let keyword_agreement = KeywordAgreement {
        queries: args.queries,
        top1_same: same as f64 / args.queries.max(1) as f64,
        overlap_at_10: overlap / args.queries.max(1) as f64,
    };
    replica.stop()?;
    primary.stop()?;
    drop(q);

    let report = Report {
        run,
        throughput,
        latency,
        searches,
        keyword_agreement,
    };
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("qdrant.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    let t = &report.throughput;
    let l = &report.latency;
    let mut md = format!(
        "# Qdrant sync and searches through a replica (Qdrant = qdrant-client's local mode behind tests/qdrant/server.py)\n\n{}\n\n\
         - Sync throughput: {} documents ({} chunks) embedded while Qdrant was down, in Qdrant {:.1} s after it came up: **{:.0} chunks/s**, {:.1} requests/s ({} requests).\n\
         - Acknowledged → in Qdrant at {} webhooks/s ({} acknowledged; includes the primary's embedding): p50 **{:.0} ms**, p99 **{:.0} ms**.\n\n\
         | searches over HTTP, hybrid, k = 10 | queries | p50 ms | p99 ms | CPU ms per query (the node's own process) |\n|---|---:|---:|---:|---:|\n",
        report.run.markdown_line(),
        t.documents,
        t.chunks,
        t.seconds,
        t.chunks_per_s,
        t.requests_per_s,
        t.requests,
        l.rate,
        l.acknowledged,
        l.in_qdrant_p50_ms,
        l.in_qdrant_p99_ms
    );
    for r in &report.searches {
        md.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {} |\n",
            r.node,
            r.queries,
            r.p50_ms,
            r.p99_ms,
            r.cpu_ms_per_query
                .map_or("–".to_owned(), |c| format!("{c:.1}"))
        ));
    }
    let k = &report.keyword_agreement;
    md.push_str(&format!(
        "\nKeyword leg through Qdrant (our sparse BM25 vectors, k1 1.2, b 0.75, each field's mean length from the primary's index, Qdrant's IDF) against the embedded keyword index (tantivy's BM25), {} queries: the same first document for **{:.0} %**, top-10 overlap **{:.0} %**.\n",
        k.queries,
        k.top1_same * 100.0,
        k.overlap_at_10 * 100.0
    ));
    std::fs::write(args.out.join("qdrant.md"), &md)?;
    println!("{md}");
    Ok(())
}
