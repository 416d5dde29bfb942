//! `concierge-bench firestore`: the Firestore write-behind of a real `concierge serve` against
//! the real Firestore emulator (`../shared/real-components.md` §1), four measurements in one run:
//!
//! 1. **Latency** at fixed webhook rates (default 50 and 200 Aircall webhooks/s, open loop):
//!    acknowledged (202) → confirmed by Firestore (the `firestore` consumer's durable cursor in
//!    `/v1/admin/status` passed the webhook's `seq`), p50/p99 over every webhook.
//! 2. **Catch-up after an outage**: the emulator is stopped, webhooks go on at 50/s for 60 s
//!    (ingest keeps acknowledging), the emulator is started again on the same port; the time from
//!    its first answer until Firestore holds everything, split into the consumer's remaining
//!    backoff (until the first confirmed write) and the transfer.
//! 3. **Throughput**: a backlog of 10 000 generic documents (ingested while the emulator is down)
//!    drained once it is up: documents/s and `batchWrite` requests/s.
//! 4. **Rebuild**: `concierge restore-from-firestore` of those 10 000 documents into an empty
//!    data directory, timed (the indexes build at the next start, as the embedding benchmark
//!    measures).
//!
//! After 2 and 3 the emulator's collection is counted: everything acknowledged must be there.
//! The emulator keeps its data in memory, so each restart starts it empty, which is what makes
//! those counts exact.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use concierge_tests::FirestoreEmulator;
use serde::Serialize;
use serde_json::{Value, json};

use crate::daemon_process::DaemonProcess;
use crate::daemon_status;
use crate::http_client::Connection;
use crate::load::{Schedule, Sender, Workload, searchable, step, watch_status};
use crate::progress::Progress;
use crate::run_info::RunInfo;

/// The collection the daemon writes (its default).
const COLLECTION: &str = "concierge_documents";
/// The Aircall token the started daemon accepts.
const AIRCALL_TOKEN: &str = "bench-token";

/// Arguments of `concierge-bench firestore`.
#[derive(Debug, clap::Args)]
pub struct FirestoreArgs {
    /// Webhook rates for the latency steps, per second.
    #[arg(long, value_delimiter = ',', default_value = "50,200")]
    pub rates: Vec<u32>,
    /// Seconds per latency step.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// How long Firestore is down in the catch-up step, seconds.
    #[arg(long, default_value_t = 60)]
    pub outage_seconds: u64,
    /// Webhooks per second during the outage.
    #[arg(long, default_value_t = 50)]
    pub outage_rate: u32,
    /// Documents in the throughput backlog and the rebuild.
    #[arg(long, default_value_t = 10_000)]
    pub documents: usize,
    /// Client connections of the open loop.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// The model directory.
    #[arg(long, default_value = "models/weights/all-MiniLM-L6-v2")]
    pub model_dir: PathBuf,
    /// Where the report goes.
    #[arg(long, default_value = "bench/out/firestore")]
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
struct LatencyRow {
    rate: u32,
    sent: usize,
    acknowledged: usize,
    ack_p50_ms: f64,
    ack_p99_ms: f64,
    in_firestore_p50_ms: f64,
    in_firestore_p99_ms: f64,
    drained_after_s: f64,
}

#[derive(Debug, Serialize)]
struct CatchUp {
    outage_seconds: u64,
    rate: u32,
    acknowledged_during_outage: usize,
    /// The emulator's first answer → Firestore holds everything.
    catch_up_s: f64,
    /// Of which: until the consumer's first confirmed write (its backoff running out).
    first_write_s: f64,
    documents_in_firestore: usize,
}

#[derive(Debug, Serialize)]
struct Throughput {
    documents: usize,
    /// Requests the daemon counted for the backlog.
    requests: u64,
    /// First confirmed write → the last.
    transfer_s: f64,
    documents_per_s: f64,
    requests_per_s: f64,
    documents_in_firestore: usize,
}

#[derive(Debug, Serialize)]
struct Rebuild {
    documents: u64,
    seconds: f64,
    documents_per_s: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    run: RunInfo,
    latency: Vec<LatencyRow>,
    catch_up: CatchUp,
    throughput: Throughput,
    rebuild: Rebuild,
}

/// The `firestore` consumer's durable cursor, from a status.
fn firestore_cursor(status: &Value) -> u64 {
    daemon_status::consumer(status, "firestore")["cursor"]
        .as_u64()
        .unwrap_or(0)
}

fn sync(status: &Value) -> &Value {
    daemon_status::sync(status, "firestore")
}

fn status(address: &str) -> anyhow::Result<Value> {
    daemon_status::status(address, None)
}

/// Waits (bounded) until `check` holds of the status; the time it took.
fn wait_status(
    address: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Duration> {
    daemon_status::wait(what, timeout, || Ok(check(&status(address)?)))
}

/// Waits until the emulator on `emulator` answers a request; when it did.
fn wait_answering(emulator: &FirestoreEmulator) -> Instant {
    loop {
        let (code, _) = emulator.get(&format!("{COLLECTION}?pageSize=1"));
        if code == 200 {
            return Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn run(args: &FirestoreArgs) -> anyhow::Result<()> {
    let run = RunInfo::now();
    anyhow::ensure!(args.seconds > 0, "--seconds must be at least 1");
    let data = tempfile::tempdir()?;
    let emulator = FirestoreEmulator::start();
    let port: u16 = emulator
        .host
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .context("the emulator's port")?;
    let daemon = DaemonProcess::start(
        &data.path().join("data"),
        &args.model_dir,
        &[
            ("CONCIERGE_AIRCALL__TOKENS", AIRCALL_TOKEN),
            ("CONCIERGE_FIRESTORE__PROJECT_ID", emulator.project.as_str()),
            ("CONCIERGE_FIRESTORE__EMULATOR_HOST", emulator.host.as_str()),
        ],
    )?;
    let address = daemon.address.clone();
    let sentences = crate::texts::short_texts(512);
    let sender = Sender {
        address: &address,
        workload: Workload::Webhook,
        token: AIRCALL_TOKEN,
        auth: None,
        sentences: &sentences,
        sample_every: 1,
    };
    let log: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_status(
        address.clone(),
        None,
        log.clone(),
        stop.clone(),
        firestore_cursor,
    );
    // Warm-up, not counted: the emulator's first requests (JIT) and the daemon's first batches.
    let (warm, _) = step(&sender, Schedule::Rate(20), 3, args.connections, 0);
    let _ = searchable(&warm, &log);
    let mut first = warm.len() as u64 + 1;

    // 1. Latency at fixed rates.
    let mut latency = Vec::new();
    for &rate in &args.rates {
        let (results, _) = step(
            &sender,
            Schedule::Rate(rate),
            args.seconds,
            args.connections,
            first,
        );
        first += results.len() as u64 + 1;
        let mut ack: Vec<f64> = results
            .iter()
            .filter(|(_, ok, _)| *ok)
            .map(|(ms, _, _)| *ms)
            .collect();
        ack.sort_by(f64::total_cmp);
        let (p50, p99, drained) = searchable(&results, &log);
        latency.push(LatencyRow {
            rate,
            sent: results.len(),
            acknowledged: ack.len(),
            ack_p50_ms: crate::daemon_process::percentile(&ack, 0.5),
            ack_p99_ms: crate::daemon_process::percentile(&ack, 0.99),
            in_firestore_p50_ms: p50,
            in_firestore_p99_ms: p99,
            drained_after_s: drained,
        });
    }

    // 2. Catch-up after an outage.
    drop(emulator);
    let (results, _) = step(
        &sender,
        Schedule::Rate(args.outage_rate),
        args.outage_seconds,
        args.connections,
        first,
    );
    let acknowledged: Vec<u64> = results
        .iter()
        .filter_map(|(_, _, s)| s.map(|s| s.1))
        .collect();
    let last_seq = acknowledged.iter().copied().max().unwrap_or(0);
    let written_before = sync(&status(&address)?)["written"].as_u64().unwrap_or(0);
    let emulator = FirestoreEmulator::start_on(port);
    let up = wait_answering(&emulator);
    let first_write = wait_status(
        &address,
        "a first write after the outage",
        Duration::from_secs(600),
        |s| sync(s)["written"].as_u64().unwrap_or(0) > written_before,
    )?;
    wait_status(
        &address,
        "catching up after the outage",
        Duration::from_secs(900),
        |s| firestore_cursor(s) >= last_seq,
    )?;
    let catch_up_s = up.elapsed().as_secs_f64();
    let in_firestore = emulator.list(COLLECTION).len();
    anyhow::ensure!(
        in_firestore == acknowledged.len(),
        "after the outage Firestore holds {in_firestore} documents, {} were acknowledged",
        acknowledged.len()
    );
    let catch_up = CatchUp {
        outage_seconds: args.outage_seconds,
        rate: args.outage_rate,
        acknowledged_during_outage: acknowledged.len(),
        catch_up_s,
        first_write_s: first_write.as_secs_f64(),
        documents_in_firestore: in_firestore,
    };

    // 3. Throughput on a backlog.
    drop(emulator);
    let mut last_seq = 0;
    {
        let progress = Progress::new(args.documents, "backlog ingested");
        let mut c = Connection::new(&address);
        for start in (0..args.documents).step_by(100) {
            let end = (start + 100).min(args.documents);
            let documents: Vec<Value> = (start..end)
                .map(|i| {
                    json!({
                        "id": format!("ops:bench:{i}"),
                        "title": format!("Note {i}"),
                        "text": format!("{} {} {}", sentences[i % 512], sentences[(i * 7 + 3) % 512], sentences[(i * 13 + 5) % 512]),
                        "updated_at": 1_767_225_600_000i64 + i as i64,
                        "metadata": {"unit": i % 40, "tags": ["bench", "firestore"]}
                    })
                })
                .collect();
            let (code, body) = c.request(
                "POST",
                "/v1/documents",
                &json!({"documents": documents}).to_string(),
                &[("Content-Type", "application/json")],
            )?;
            anyhow::ensure!(code == 202, "POST /v1/documents answered {code}: {body}");
            let receipt: Value = serde_json::from_str(&body)?;
            last_seq = last_seq.max(receipt["seq"].as_u64().unwrap_or(0));
            progress.inc((end - start) as u64);
        }
        progress.finish();
    }
    let before = status(&address)?;
    let (written_before, requests_before) = (
        sync(&before)["written"].as_u64().unwrap_or(0),
        sync(&before)["requests"].as_u64().unwrap_or(0),
    );
    let emulator = FirestoreEmulator::start_on(port);
    wait_answering(&emulator);
    wait_status(
        &address,
        "a first backlog write",
        Duration::from_secs(600),
        |s| sync(s)["written"].as_u64().unwrap_or(0) > written_before,
    )?;
    let transfer_started = Instant::now();
    let requests_at_start = sync(&status(&address)?)["requests"].as_u64().unwrap_or(0);
    wait_status(
        &address,
        "draining the backlog",
        Duration::from_secs(1800),
        |s| firestore_cursor(s) >= last_seq,
    )?;
    let transfer_s = transfer_started.elapsed().as_secs_f64();
    let after = status(&address)?;
    let requests = sync(&after)["requests"].as_u64().unwrap_or(0);
    let in_firestore = emulator.list(COLLECTION).len();
    anyhow::ensure!(
        in_firestore == args.documents,
        "after the backlog Firestore holds {in_firestore} documents, {} were acknowledged",
        args.documents
    );
    // The requests confirmed before the clock started are not in the rate.
    let timed_requests = requests.saturating_sub(requests_at_start).max(1);
    let throughput = Throughput {
        documents: args.documents,
        requests: requests - requests_before,
        transfer_s,
        documents_per_s: args.documents as f64 / transfer_s,
        requests_per_s: timed_requests as f64 / transfer_s,
        documents_in_firestore: in_firestore,
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watcher.join();
    daemon.stop()?;

    // 4. Rebuild a node from those documents.
    let restored = data.path().join("restored");
    let exe = std::env::current_exe()?
        .parent()
        .map(|p| p.join("concierge"))
        .context("locating target/<profile>/concierge")?;
    let started = Instant::now();
    let out = std::process::Command::new(&exe)
        .args(["restore-from-firestore", "--data-dir"])
        .arg(&restored)
        .arg("--model-dir")
        .arg(&args.model_dir)
        .env("CONCIERGE_FIRESTORE__PROJECT_ID", &emulator.project)
        .env("CONCIERGE_FIRESTORE__EMULATOR_HOST", &emulator.host)
        .output()
        .context("running concierge restore-from-firestore")?;
    let seconds = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "restore-from-firestore failed: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let documents: u64 = stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no count in {stdout:?}"))?;
    anyhow::ensure!(
        documents == args.documents as u64,
        "restored {documents} documents, {} expected",
        args.documents
    );
    let rebuild = Rebuild {
        documents,
        seconds,
        documents_per_s: documents as f64 / seconds,
    };

    let report = Report {
        run,
        latency,
        catch_up,
        throughput,
        rebuild,
    };
    write_report(args, &report)
}

fn write_report(args: &FirestoreArgs, r: &Report) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("firestore.json"),
        serde_json::to_vec_pretty(r)?,
    )?;
    let mut md = format!(
        "# Firestore write-behind: the real daemon against the Firestore emulator\n\n{}\n\n\
         ## Acknowledged → in Firestore, Aircall webhooks at fixed rates ({} s per step, open loop)\n\n\
         | webhooks/s | sent | acknowledged | 202 p50 / p99 ms | in Firestore p50 / p99 ms | drained after |\n|---:|---:|---:|---:|---:|---:|\n",
        r.run.markdown_line(),
        args.seconds
    );
    for row in &r.latency {
        md.push_str(&format!(
            "| {} | {} | {} | {:.1} / {:.1} | {:.0} / {:.0} | {:.1} s |\n",
            row.rate,
            row.sent,
            row.acknowledged,
            row.ack_p50_ms,
            row.ack_p99_ms,
            row.in_firestore_p50_ms,
            row.in_firestore_p99_ms,
            row.drained_after_s
        ));
    }
    let c = &r.catch_up;
    md.push_str(&format!(
        "\n## Catch-up after a {} s outage at {} webhooks/s\n\n\
         {} webhooks acknowledged while Firestore was down; once the emulator answered again, \
         Firestore held all of them ({} documents) after **{:.1} s**, of which {:.1} s until the \
         consumer's first write (its backoff, capped at 30 s, running out).\n",
        c.outage_seconds,
        c.rate,
        c.acknowledged_during_outage,
        c.documents_in_firestore,
        c.catch_up_s,
        c.first_write_s
    ));
    let t = &r.throughput;
    md.push_str(&format!(
        "\n## Sync throughput on a backlog\n\n\
         {} generic documents (~3 sentences each) ingested while the emulator was down, drained in \
         {:.1} s after the first confirmed write: **{:.0} documents/s**, {:.1} `batchWrite` \
         requests/s ({} requests in all; Firestore held {} documents after).\n",
        t.documents,
        t.transfer_s,
        t.documents_per_s,
        t.requests_per_s,
        t.requests,
        t.documents_in_firestore
    ));
    let b = &r.rebuild;
    md.push_str(&format!(
        "\n## Rebuild from Firestore\n\n\
         `concierge restore-from-firestore` of {} documents into an empty data directory: \
         **{:.1} s** ({:.0} documents/s; the indexes build at the next start).\n",
        b.documents, b.seconds, b.documents_per_s
    ));
    std::fs::write(args.out.join("firestore.md"), &md)?;
    println!("{md}");
    Ok(())
}
