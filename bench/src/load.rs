//! `concierge-bench load`: the real `concierge serve` under an open-loop load of Aircall webhooks
//! at fixed rates (latency measured from each request's scheduled time, so a stalled server is
//! not hidden by a stalled client), the time from acknowledgement to searchable in both indexes,
//! search latency over HTTP, and the daemon's resident memory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::daemon_process::{DaemonProcess, percentile};
use crate::http_client::Connection;
use crate::progress::Progress;

/// Arguments of `concierge-bench load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Webhook rates to hold, requests per second.
    #[arg(long, value_delimiter = ',', default_value = "5,50,200,1000")]
    pub rates: Vec<u32>,
    /// Seconds per rate.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Client connections (workers).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// The model directory.
    #[arg(long, default_value = "models/weights/all-MiniLM-L6-v2")]
    pub model_dir: PathBuf,
    /// Where the report goes.
    #[arg(long, default_value = "bench/out/load")]
    pub out: PathBuf,
}

const TOKEN: &str = "bench-token";

#[derive(Debug, Serialize)]
struct RateRow {
    target_rps: u32,
    /// Acknowledged → searchable in both indexes (sampled), p50 and p99.
    searchable_p50_ms: f64,
    searchable_p99_ms: f64,
    /// Seconds after the last request until the indexes included everything.
    drain_seconds: f64,
    sent: usize,
    acknowledged: usize,
    errors: usize,
    achieved_rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    rows: Vec<RateRow>,
    documents: u64,
    search_p50_ms: f64,
    search_p99_ms: f64,
    rss_idle_mb: f64,
    rss_after_mb: f64,
}

/// One request: latency from its scheduled time (ms), acknowledged?, and for sampled ones the
/// acknowledgement time and sequence.
type Outcome = (f64, bool, Option<(Instant, u64)>);

fn webhook(n: u64, sentence: &str) -> String {
    json!({
        "resource": "call", "event": "call.commented", "timestamp": 1_767_225_900 + n as i64, "token": TOKEN,
        "data": {"id": 5_000_000 + n, "direction": "inbound", "status": "done", "started_at": 1_767_225_700, "answered_at": 1_767_225_712, "duration": 60 + n % 300,
                 "raw_digits": format!("+33 6 11 {:02} {:04}", n % 100, n % 10_000), "user": {"name": "Jane Agent"}, "number": {"name": "Support FR"},
                 "comments": [{"content": sentence, "posted_at": 1_767_225_900, "posted_by": {"name": "Jane Agent"}}], "tags": [{"name": "bench"}]}
    })
    .to_string()
}

pub fn run(args: &LoadArgs) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let daemon = DaemonProcess::start(
        &data.path().join("data"),
        &args.model_dir,
        &[("CONCIERGE_AIRCALL__TOKENS", TOKEN)],
    )?;
    let address = daemon.address.clone();
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle_mb = daemon.rss_mb();
    let sentences = crate::texts::short_texts(512);

    // Watch the indexes: (time, sequence both legs include).
    let watch: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let stop_watch = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (watch, stop, address) = (watch.clone(), stop_watch.clone(), address.clone());
        std::thread::spawn(move || {
            let mut c = Connection::new(&address);
            while !stop.load(Ordering::Relaxed) {
                if let Ok((200, body)) = c.request("GET", "/v1/admin/status", "", &[]) {
                    let v: Value = serde_json::from_str(&body).unwrap_or_default();
                    let seq = v["dense"]["seq"]
                        .as_u64()
                        .unwrap_or(0)
                        .min(v["keyword"]["seq"].as_u64().unwrap_or(0));
                    watch.lock().map(|mut w| w.push((Instant::now(), seq))).ok();
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    let mut rows = Vec::new();
    let mut samples: Vec<(Instant, u64)> = Vec::new();
    let mut n_base = 0u64;
    for &rate in &args.rates {
        let total = (u64::from(rate) * args.seconds) as usize;
        let progress = Progress::new(total, &format!("{rate} req/s"));
        let next = Arc::new(AtomicUsize::new(0));
        let results: Arc<Mutex<Vec<Outcome>>> = Arc::new(Mutex::new(Vec::with_capacity(total)));
        let start = Instant::now() + Duration::from_millis(50);
        std::thread::scope(|s| {
            for _ in 0..args.connections {
                let (next, results, address, sentences, progress) = (
                    next.clone(),
                    results.clone(),
                    address.clone(),
                    &sentences,
                    &progress,
                );
                s.spawn(move || {
                    let mut c = Connection::new(&address);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            return;
                        }
                        let scheduled = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
                        if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let n = n_base + i as u64;
                        let body = webhook(n, &sentences[n as usize % sentences.len()]);
                        let r = c.request(
                            "POST",
                            "/v1/webhooks/aircall",
                            &body,
                            &[("Content-Type", "application/json")],
                        );
                        let done = Instant::now();
                        let ms = done.duration_since(scheduled).as_secs_f64() * 1e3;
                        let (ok, sample) = match r {
                            Ok((202, b)) => {
                                let seq = serde_json::from_str::<Value>(&b)
                                    .ok()
                                    .and_then(|v| v["seq"].as_u64());
                                (
                                    true,
                                    (i % 10 == 0).then_some(()).and(seq.map(|s| (done, s))),
                                )
                            }
                            _ => (false, None),
                        };
                        results.lock().map(|mut v| v.push((ms, ok, sample))).ok();
                        progress.inc(1);
                    }
                });
            }
        });
        progress.finish();
        let elapsed = start.elapsed().as_secs_f64();
        let results = results.lock().map(|v| v.clone()).unwrap_or_default();
        let mut lat: Vec<f64> = results
            .iter()
            .filter(|(_, ok, _)| *ok)
            .map(|(ms, _, _)| *ms)
            .collect();
        lat.sort_by(f64::total_cmp);
        let acknowledged = lat.len();
        let rate_samples: Vec<(Instant, u64)> = results.iter().filter_map(|(_, _, s)| *s).collect();
        // Let the indexer drain before the next rate, so each row measures its own backlog.
        let sent_done = Instant::now();
        let last_seq = rate_samples.iter().map(|(_, s)| *s).max().unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(900);
        while watch
            .lock()
            .map(|w| w.last().map_or(0, |(_, s)| *s))
            .unwrap_or(0)
            < last_seq
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let drain_seconds = sent_done.elapsed().as_secs_f64();
        let log = watch.lock().map(|w| w.clone()).unwrap_or_default();
        let mut searchable: Vec<f64> = rate_samples
            .iter()
            .filter_map(|(acked, seq)| {
                log.iter()
                    .find(|(t, s)| *s >= *seq && *t >= *acked)
                    .map(|(t, _)| t.duration_since(*acked).as_secs_f64() * 1e3)
            })
            .collect();
        searchable.sort_by(f64::total_cmp);
        samples.extend(rate_samples);
        rows.push(RateRow {
            target_rps: rate,
            searchable_p50_ms: percentile(&searchable, 0.5),
            searchable_p99_ms: percentile(&searchable, 0.99),
            drain_seconds,
            sent: results.len(),
            acknowledged,
            errors: results.len() - acknowledged,
            achieved_rps: acknowledged as f64 / elapsed,
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
            max_ms: lat.last().copied().unwrap_or(f64::NAN),
        });
        n_base += total as u64;
    }

    stop_watch.store(true, Ordering::Relaxed);
    let _ = watcher.join();

    // Search over HTTP on what was ingested.
    let mut c = Connection::new(&address);
    let mut search_ms = Vec::new();
    for q in sentences.iter().take(300) {
        let t = Instant::now();
        let (s, b) = c.request(
            "POST",
            "/v1/search",
            &json!({"query": q, "k": 10}).to_string(),
            &[("Content-Type", "application/json")],
        )?;
        anyhow::ensure!(s == 200, "search answered {s}: {b}");
        search_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    search_ms.sort_by(f64::total_cmp);
    let (_, status) = c.request("GET", "/v1/admin/status", "", &[])?;
    let documents = serde_json::from_str::<Value>(&status)
        .ok()
        .and_then(|v| v["durable_seq"].as_u64())
        .unwrap_or(0);
    let rss_after_mb = daemon.rss_mb();
    daemon.stop()?;

    let report = Report {
        rows,
        documents,
        search_p50_ms: percentile(&search_ms, 0.5),
        search_p99_ms: percentile(&search_ms, 0.99),
        rss_idle_mb,
        rss_after_mb,
    };
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("load.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    let mut md = format!(
        "# Webhook load on `concierge serve` ({} connections, open loop, {} s per rate, indexes drained between rates)\n\n| target req/s | sent | 202 | errors | achieved req/s | ack p50 ms | ack p99 ms | ack max ms | searchable p50 / p99 ms | drained after |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        args.connections, args.seconds
    );
    for r in &report.rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {:.0} / {:.0} | {:.1} s |\n",
            r.target_rps,
            r.sent,
            r.acknowledged,
            r.errors,
            r.achieved_rps,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.searchable_p50_ms,
            r.searchable_p99_ms,
            r.drain_seconds
        ));
    }
    md.push_str(&format!(
        "\n| measure | value |\n|---|---:|\n| search over HTTP at {} documents, p50 / p99 | {:.1} / {:.1} ms |\n| resident memory idle / after | {:.0} / {:.0} MB |\n",
        report.documents, report.search_p50_ms, report.search_p99_ms, report.rss_idle_mb, report.rss_after_mb
    ));
    std::fs::write(args.out.join("load.md"), &md)?;
    println!("{md}");
    Ok(())
}
