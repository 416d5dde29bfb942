//! `concierge-bench load`: a bounded HTTP load generator for `concierge serve` — a running one
//! (`--url`) or a fresh one it starts — sending Aircall webhooks or hybrid searches, either at
//! fixed rates (open loop: latency counted from each request's scheduled time, so a stalled
//! server is not hidden by a stalled client) or with a fixed number of clients (closed loop: each
//! sends its next request when the previous is answered). Every step lasts `--seconds` and the
//! run stops by itself. Reported per step: throughput and latency p50/p90/p99/max; for webhooks
//! also the time from acknowledgement to searchable in both indexes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};

use crate::daemon_process::{DaemonProcess, percentile};
use crate::http_client::Connection;
use crate::progress::Progress;
use crate::run_info::RunInfo;

/// What the load sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Aircall `call.commented` webhooks (`POST /v1/webhooks/aircall`, 202 expected).
    Webhook,
    /// Hybrid searches (`POST /v1/search`, 200 expected).
    Search,
}

/// Arguments of `concierge-bench load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// A running daemon (`host:port` or `http://host:port`); without it a fresh `concierge serve`
    /// is started on an empty data directory and stopped at the end.
    #[arg(long)]
    pub url: Option<String>,
    /// What to send.
    #[arg(long, value_enum, default_value = "webhook")]
    pub workload: Workload,
    /// Open loop: request rates to hold, requests per second, one step each.
    #[arg(long, value_delimiter = ',', default_value = "5,50,200,1000")]
    pub rates: Vec<u32>,
    /// Closed loop instead of rates: numbers of concurrent clients, one step each.
    #[arg(long, value_delimiter = ',')]
    pub concurrency: Vec<usize>,
    /// Seconds per step.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Client connections (workers) of the open loop.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// The Aircall token the daemon accepts (a started daemon is configured with it).
    #[arg(
        long,
        env = "CONCIERGE_BENCH_AIRCALL_TOKEN",
        default_value = "bench-token"
    )]
    pub aircall_token: String,
    /// Bearer token for the daemon's API (search, status), if it requires one.
    #[arg(long, env = "CONCIERGE_BENCH_API_TOKEN")]
    pub api_token: Option<String>,
    /// The model directory (for a started daemon).
    #[arg(long, default_value = "models/weights/all-MiniLM-L6-v2")]
    pub model_dir: PathBuf,
    /// Where the report goes.
    #[arg(long, default_value = "bench/out/load")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Schedule {
    /// Requests per second (open loop).
    Rate(u32),
    /// Clients (closed loop).
    Concurrency(usize),
}

#[derive(Debug, Serialize)]
struct StepRow {
    schedule: Schedule,
    sent: usize,
    ok: usize,
    errors: usize,
    achieved_rps: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Webhooks: acknowledged → searchable in both indexes (sampled), p50 and p99.
    searchable_p50_ms: Option<f64>,
    searchable_p99_ms: Option<f64>,
    /// Webhooks: seconds after the step until the indexes included everything.
    drain_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    run: RunInfo,
    target: String,
    workload: Workload,
    seconds_per_step: u64,
    rows: Vec<StepRow>,
    /// Searches after the webhook steps, over what they ingested.
    search_after_p50_ms: Option<f64>,
    search_after_p99_ms: Option<f64>,
    documents: Option<u64>,
    /// A started daemon's resident memory, idle and at the end.
    rss_idle_mb: Option<f64>,
    rss_after_mb: Option<f64>,
}

/// One request: latency (ms), success, and for sampled webhooks the acknowledgement time and
/// sequence.
pub(crate) type Outcome = (f64, bool, Option<(Instant, u64)>);

pub(crate) fn webhook(token: &str, n: u64, sentence: &str) -> String {
    json!({
        "resource": "call", "event": "call.commented", "timestamp": 1_767_225_900 + n as i64, "token": token,
        "data": {"id": 5_000_000 + n, "direction": "inbound", "status": "done", "started_at": 1_767_225_700, "answered_at": 1_767_225_712, "duration": 60 + n % 300,
                 "raw_digits": format!("+33 6 11 {:02} {:04}", n % 100, n % 10_000), "user": {"name": "Jane Agent"}, "number": {"name": "Support FR"},
                 "comments": [{"content": sentence, "posted_at": 1_767_225_900, "posted_by": {"name": "Jane Agent"}}], "tags": [{"name": "bench"}]}
    })
    .to_string()
}

/// The per-request part every worker shares.
pub(crate) struct Sender<'a> {
    pub address: &'a str,
    pub workload: Workload,
    pub token: &'a str,
    pub auth: Option<String>,
    pub sentences: &'a [String],
    /// Every how many'th acknowledged webhook is followed downstream (1: all of them).
    pub sample_every: u64,
}

impl Sender<'_> {
    /// Sends request `n`; success, and the acknowledged sequence of a webhook.
    fn send(&self, c: &mut Connection, n: u64) -> (bool, Option<u64>) {
        let sentence = &self.sentences[n as usize % self.sentences.len()];
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &self.auth {
            headers.push(("Authorization", a.as_str()));
        }
        match self.workload {
            Workload::Webhook => {
                match c.request(
                    "POST",
                    "/v1/webhooks/aircall",
                    &webhook(self.token, n, sentence),
                    &headers,
                ) {
                    Ok((202, b)) => (
                        true,
                        serde_json::from_str::<Value>(&b)
                            .ok()
                            .and_then(|v| v["seq"].as_u64()),
                    ),
                    _ => (false, None),
                }
            }
            Workload::Search => {
                let body = json!({"query": sentence, "k": 10}).to_string();
                (
                    matches!(
                        c.request("POST", "/v1/search", &body, &headers),
                        Ok((200, _))
                    ),
                    None,
                )
            }
        }
    }
}

/// Runs one step; the outcomes and the step's wall time.
pub(crate) fn step(
    sender: &Sender<'_>,
    schedule: Schedule,
    seconds: u64,
    connections: usize,
    first: u64,
) -> (Vec<Outcome>, f64) {
    let results: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    let record = |o: Outcome| {
        if let Ok(mut v) = results.lock() {
            v.push(o);
        }
    };
    let start = Instant::now() + Duration::from_millis(50);
    let sample = |i: u64, ok: bool, seq: Option<u64>, done: Instant| {
        (ok && i.is_multiple_of(sender.sample_every.max(1)))
            .then_some(())
            .and(seq.map(|s| (done, s)))
    };
    match schedule {
        Schedule::Rate(rate) => {
            let total = (u64::from(rate) * seconds) as usize;
            let progress = Progress::new(total, &format!("{rate} req/s"));
            let next = AtomicUsize::new(0);
            std::thread::scope(|s| {
                for _ in 0..connections.max(1) {
                    s.spawn(|| {
                        let mut c = Connection::new(sender.address);
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= total {
                                return;
                            }
                            let scheduled =
                                start + Duration::from_secs_f64(i as f64 / f64::from(rate.max(1)));
                            if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                                std::thread::sleep(wait);
                            }
                            let n = first + i as u64;
                            let (ok, seq) = sender.send(&mut c, n);
                            let done = Instant::now();
                            record((
                                done.duration_since(scheduled).as_secs_f64() * 1e3,
                                ok,
                                sample(n, ok, seq, done),
                            ));
                            progress.inc(1);
                        }
                    });
                }
            });
            progress.finish();
        }
        Schedule::Concurrency(clients) => {
            let deadline = start + Duration::from_secs(seconds);
            let next = AtomicUsize::new(0);
            let stop = AtomicBool::new(false);
            let progress = Progress::new(seconds as usize, &format!("{clients} clients"));
            std::thread::scope(|s| {
                for _ in 0..clients.max(1) {
                    s.spawn(|| {
                        let mut c = Connection::new(sender.address);
                        if let Some(wait) = start.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                            let n = first + next.fetch_add(1, Ordering::Relaxed) as u64;
                            let sent = Instant::now();
                            let (ok, seq) = sender.send(&mut c, n);
                            let done = Instant::now();
                            record((
                                done.duration_since(sent).as_secs_f64() * 1e3,
                                ok,
                                sample(n, ok, seq, done),
                            ));
                        }
                    });
                }
                for _ in 0..seconds {
                    std::thread::sleep(Duration::from_secs(1));
                    progress.inc(1);
                }
            });
            stop.store(true, Ordering::Relaxed);
            progress.finish();
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    (results.into_inner().unwrap_or_default(), elapsed)
}

/// The sequence both indexes include, from a status.
fn indexed_seq(status: &Value) -> u64 {
    status["dense"]["seq"]
        .as_u64()
        .unwrap_or(0)
        .min(status["keyword"]["seq"].as_u64().unwrap_or(0))
}

/// Polls the daemon's status every 10 ms: (time, the sequence `reached` reads off it).
pub(crate) fn watch_status(
    address: String,
    auth: Option<String>,
    log: Arc<Mutex<Vec<(Instant, u64)>>>,
    stop: Arc<AtomicBool>,
    reached: fn(&Value) -> u64,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut c = Connection::new(&address);
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        while !stop.load(Ordering::Relaxed) {
            if let Ok((200, body)) = c.request("GET", "/v1/admin/status", "", &headers) {
                let v: Value = serde_json::from_str(&body).unwrap_or_default();
                let seq = reached(&v);
                if let Ok(mut w) = log.lock() {
                    w.push((Instant::now(), seq));
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

pub(crate) fn address_of(url: &str) -> String {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or(url)
        .trim_end_matches('/');
    rest.to_owned()
}

pub fn run(args: &LoadArgs) -> anyhow::Result<()> {
    let run = RunInfo::now();
    anyhow::ensure!(args.seconds > 0, "--seconds must be at least 1");
    if let Some(url) = &args.url {
        anyhow::ensure!(
            !url.starts_with("https://"),
            "--url: only plain http is supported (put the benchmark beside the daemon)"
        );
    }
    let data = tempfile::tempdir()?;
    let daemon = match &args.url {
        Some(_) => None,
        None => Some(DaemonProcess::start(
            &data.path().join("data"),
            &args.model_dir,
            &[("CONCIERGE_AIRCALL__TOKENS", args.aircall_token.as_str())],
        )?),
    };
    let address = match &daemon {
        Some(d) => d.address.clone(),
        None => address_of(args.url.as_deref().unwrap_or_default()),
    };
    let auth = args.api_token.as_ref().map(|t| format!("Bearer {t}"));
    // Is it there, and does it take our token?
    {
        let mut c = Connection::new(&address);
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let (status, body) = c
            .request("GET", "/v1/admin/status", "", &headers)
            .with_context(|| format!("no daemon answers at {address}"))?;
        anyhow::ensure!(
            status == 200,
            "GET /v1/admin/status at {address} answered {status} (pass --api-token?): {body}"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let rss_idle_mb = daemon.as_ref().map(DaemonProcess::rss_mb);
    let sentences = crate::texts::short_texts(512);
    let sender = Sender {
        address: &address,
        workload: args.workload,
        token: &args.aircall_token,
        auth: auth.clone(),
        sentences: &sentences,
        sample_every: 10,
    };

    let log: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let stop_watch = Arc::new(AtomicBool::new(false));
    let watcher = (args.workload == Workload::Webhook).then(|| {
        watch_status(
            address.clone(),
            auth.clone(),
            log.clone(),
            stop_watch.clone(),
            indexed_seq,
        )
    });

    let schedules: Vec<Schedule> = if args.concurrency.is_empty() {
        args.rates.iter().map(|r| Schedule::Rate(*r)).collect()
    } else {
        args.concurrency
            .iter()
            .map(|c| Schedule::Concurrency(*c))
            .collect()
    };
    // Distinct webhook ids across runs against one daemon.
    let mut first = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() % 1_000_000)
        * 1_000;
    let mut rows = Vec::new();
    for schedule in schedules {
        let (results, elapsed) = step(&sender, schedule, args.seconds, args.connections, first);
        first += results.len() as u64 + 1;
        let mut lat: Vec<f64> = results
            .iter()
            .filter(|(_, ok, _)| *ok)
            .map(|(ms, _, _)| *ms)
            .collect();
        lat.sort_by(f64::total_cmp);
        let ok = lat.len();
        let (searchable_p50_ms, searchable_p99_ms, drain_seconds) = if watcher.is_some() {
            let (p50, p99, drain) = searchable(&results, &log);
            (Some(p50), Some(p99), Some(drain))
        } else {
            (None, None, None)
        };
        rows.push(StepRow {
            schedule,
            sent: results.len(),
            ok,
            errors: results.len() - ok,
            achieved_rps: ok as f64 / elapsed,
            p50_ms: percentile(&lat, 0.5),
            p90_ms: percentile(&lat, 0.9),
            p99_ms: percentile(&lat, 0.99),
            max_ms: lat.last().copied().unwrap_or(f64::NAN),
            searchable_p50_ms,
            searchable_p99_ms,
            drain_seconds,
        });
    }
    stop_watch.store(true, Ordering::Relaxed);
    if let Some(w) = watcher {
        let _ = w.join();
    }

    // After webhooks: search over what was ingested.
    let (mut search_after_p50_ms, mut search_after_p99_ms, mut documents) = (None, None, None);
    if args.workload == Workload::Webhook {
        let mut c = Connection::new(&address);
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let mut ms = Vec::new();
        for q in sentences.iter().take(300) {
            let t = Instant::now();
            let (s, b) = c.request(
                "POST",
                "/v1/search",
                &json!({"query": q, "k": 10}).to_string(),
                &headers,
            )?;
            anyhow::ensure!(s == 200, "search answered {s}: {b}");
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(f64::total_cmp);
        search_after_p50_ms = Some(percentile(&ms, 0.5));
        search_after_p99_ms = Some(percentile(&ms, 0.99));
        let (_, status) = c.request("GET", "/v1/admin/status", "", &headers)?;
        documents = serde_json::from_str::<Value>(&status)
            .ok()
            .and_then(|v| v["durable_seq"].as_u64());
    }
    let rss_after_mb = daemon.as_ref().map(DaemonProcess::rss_mb);
    if let Some(d) = daemon {
        d.stop()?;
    }
    let report = Report {
        run,
        target: args
            .url
            .clone()
            .unwrap_or_else(|| "a fresh concierge serve".into()),
        workload: args.workload,
        seconds_per_step: args.seconds,
        rows,
        search_after_p50_ms,
        search_after_p99_ms,
        documents,
        rss_idle_mb,
        rss_after_mb,
    };
    write_report(args, &report)
}

/// Acknowledged → reached downstream (the sequence the watcher logs: searchable in both
/// indexes, confirmed by Firestore) for the sampled webhooks of a step, after waiting (bounded)
/// for the step's last one: p50, p99 (ms) and the drain time (s).
pub(crate) fn searchable(results: &[Outcome], log: &Mutex<Vec<(Instant, u64)>>) -> (f64, f64, f64) {
    let samples: Vec<(Instant, u64)> = results.iter().filter_map(|(_, _, s)| *s).collect();
    let sent_done = Instant::now();
    let last_seq = samples.iter().map(|(_, s)| *s).max().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(900);
    let newest = || {
        log.lock()
            .map(|w| w.last().map_or(0, |(_, s)| *s))
            .unwrap_or(0)
    };
    while newest() < last_seq && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let drain = sent_done.elapsed().as_secs_f64();
    let log = log.lock().map(|w| w.clone()).unwrap_or_default();
    let mut ms: Vec<f64> = samples
        .iter()
        .filter_map(|(acked, seq)| {
            log.iter()
                .find(|(t, s)| *s >= *seq && *t >= *acked)
                .map(|(t, _)| t.duration_since(*acked).as_secs_f64() * 1e3)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), percentile(&ms, 0.99), drain)
}

fn write_report(args: &LoadArgs, report: &Report) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("load.json"),
        serde_json::to_vec_pretty(report)?,
    )?;
    let what = match report.workload {
        Workload::Webhook => "Aircall webhooks",
        Workload::Search => "hybrid searches",
    };
    let mut md = format!(
        "# Load on {}: {what}, {} s per step\n\n{}\n\n| step | sent | ok | errors | achieved req/s | p50 ms | p90 ms | p99 ms | max ms | searchable p50 / p99 ms | drained after |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        report.target,
        report.seconds_per_step,
        report.run.markdown_line()
    );
    for r in &report.rows {
        let step = match r.schedule {
            Schedule::Rate(x) => format!("{x} req/s ({} connections, open loop)", args.connections),
            Schedule::Concurrency(c) => format!("{c} clients (closed loop)"),
        };
        let searchable = match (r.searchable_p50_ms, r.searchable_p99_ms) {
            (Some(a), Some(b)) => format!("{a:.0} / {b:.0}"),
            _ => "–".into(),
        };
        md.push_str(&format!(
            "| {step} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {searchable} | {} |\n",
            r.sent,
            r.ok,
            r.errors,
            r.achieved_rps,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.max_ms,
            r.drain_seconds.map_or("–".into(), |d| format!("{d:.1} s"))
        ));
    }
    if let (Some(p50), Some(p99)) = (report.search_after_p50_ms, report.search_after_p99_ms) {
        md.push_str(&format!(
            "\nSearch over HTTP afterwards at {} documents: p50 / p99 {p50:.1} / {p99:.1} ms.\n",
            report.documents.unwrap_or(0)
        ));
    }
    if let (Some(idle), Some(after)) = (report.rss_idle_mb, report.rss_after_mb) {
        md.push_str(&format!(
            "\nResident memory idle / after: {idle:.0} / {after:.0} MB.\n"
        ));
    }
    std::fs::write(args.out.join("load.md"), &md)?;
    println!("{md}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_becomes_the_address_to_connect_to() {
        assert_eq!(address_of("http://127.0.0.1:8080/"), "127.0.0.1:8080");
        assert_eq!(address_of("localhost:9"), "localhost:9");
    }

    #[test]
    fn the_webhook_carries_the_token_and_a_distinct_call_id() {
        let a: Value = serde_json::from_str(&webhook("t0k", 1, "hello")).expect("json");
        let b: Value = serde_json::from_str(&webhook("t0k", 2, "hello")).expect("json");
        assert_eq!(a["token"], "t0k");
        assert_ne!(a["data"]["id"], b["data"]["id"]);
    }
}
