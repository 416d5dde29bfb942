//! `concierge-bench ask`: answer latency of the real `concierge serve` over HTTP, split into
//! retrieval and generation, against a fake OpenAI-compatible LLM that answers after a fixed
//! delay (the reference: the LLM's own time), so what Concierge adds on top of the LLM is the
//! client-measured total minus that delay. The extractive answerer (no LLM) is measured in the
//! same run on the same questions.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use concierge_tests::{FakeResponse, FakeServer};
use serde::Serialize;
use serde_json::{Value, json};

use crate::daemon_process::{DaemonProcess, percentile};
use crate::http_client::Connection;
use crate::progress::Progress;

/// Arguments of `concierge-bench ask`.
#[derive(Debug, clap::Args)]
pub struct AskArgs {
    /// Documents in the daemon.
    #[arg(long, default_value_t = 2_000)]
    pub documents: usize,
    /// Questions asked per generator.
    #[arg(long, default_value_t = 200)]
    pub questions: usize,
    /// The fake LLM's fixed answer time, milliseconds.
    #[arg(long, default_value_t = 200)]
    pub llm_delay_ms: u64,
    /// The model directory.
    #[arg(long, default_value = "models/weights/all-MiniLM-L6-v2")]
    pub model_dir: PathBuf,
    /// Where the report goes.
    #[arg(long, default_value = "bench/out/ask")]
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
struct Row {
    generator: String,
    answered: usize,
    known: usize,
    retrieval_p50_ms: f64,
    retrieval_p99_ms: f64,
    generation_p50_ms: f64,
    generation_p99_ms: f64,
    total_p50_ms: f64,
    total_p99_ms: f64,
    /// Client-measured total minus the LLM's own time (the fake's delay); for the extractive
    /// answerer, the whole time.
    overhead_p50_ms: f64,
    overhead_p99_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    run: crate::run_info::RunInfo,
    documents: usize,
    questions: usize,
    llm_delay_ms: u64,
    rows: Vec<Row>,
}

/// Documents: operations notes built from the benchmark's sentences, numbered.
fn document(i: usize, sentence: &str) -> Value {
    json!({"id": format!("aircall:call:{}", 1_000_000 + i), "title": format!("Call {i}"),
           "text": format!("{sentence} Logged as call {i} for unit {}.", i % 50), "updated_at": 1})
}

fn fake_llm(delay: Duration) -> FakeServer {
    FakeServer::start(move |r| {
        if r.path.ends_with("/models") {
            return FakeResponse::json(200, json!({"data": [{"id": "bench-model"}]}));
        }
        FakeResponse::json(
            200,
            json!({"id": "c", "object": "chat.completion", "created": 1, "model": "bench-model",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "The guest asked about it, as the note says [1]."}, "finish_reason": "stop"}]}),
        )
        .delayed(delay)
    })
}

fn measure(
    daemon: &DaemonProcess,
    questions: &[String],
    min_seq: u64,
    delay_ms: f64,
) -> anyhow::Result<Row> {
    let mut c = Connection::new(&daemon.address);
    let (mut retrieval, mut generation, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let (mut known, mut generator) = (0, String::new());
    let pb = Progress::new(questions.len(), "asking");
    for q in questions {
        let body = json!({"question": q, "min_seq": min_seq}).to_string();
        let t = Instant::now();
        let (s, b) = c.request(
            "POST",
            "/v1/ask",
            &body,
            &[("Content-Type", "application/json")],
        )?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(s == 200, "ask answered {s}: {b}");
        let v: Value = serde_json::from_str(&b)?;
        total.push(ms);
        retrieval.push(v["timings"]["retrieval_ms"].as_f64().unwrap_or(f64::NAN));
        generation.push(v["timings"]["generation_ms"].as_f64().unwrap_or(f64::NAN));
        known += usize::from(v["known"] == true);
        generator = v["generator"].as_str().unwrap_or("").to_owned();
        pb.inc(1);
    }
    pb.finish();
    for v in [&mut retrieval, &mut generation, &mut total] {
        v.sort_by(f64::total_cmp);
    }
    let overhead: Vec<f64> = total.iter().map(|t| t - delay_ms).collect();
    Ok(Row {
        generator,
        answered: total.len(),
        known,
        retrieval_p50_ms: percentile(&retrieval, 0.5),
        retrieval_p99_ms: percentile(&retrieval, 0.99),
        generation_p50_ms: percentile(&generation, 0.5),
        generation_p99_ms: percentile(&generation, 0.99),
        total_p50_ms: percentile(&total, 0.5),
        total_p99_ms: percentile(&total, 0.99),
        overhead_p50_ms: percentile(&overhead, 0.5),
        overhead_p99_ms: percentile(&overhead, 0.99),
    })
}

/// Starts a daemon with `env`, loads the documents, returns it with the last sequence.
fn loaded_daemon(
    args: &AskArgs,
    data: &std::path::Path,
    env: &[(&str, &str)],
    docs: &[Value],
) -> anyhow::Result<(DaemonProcess, u64)> {
    let daemon = DaemonProcess::start(data, &args.model_dir, env)?;
    let mut c = Connection::new(&daemon.address);
    let mut seq = 0;
    for batch in docs.chunks(500) {
        let (s, b) = c.request(
            "POST",
            "/v1/documents",
            &json!({ "documents": batch }).to_string(),
            &[("Content-Type", "application/json")],
        )?;
        anyhow::ensure!(s == 202, "ingest answered {s}: {b}");
        seq = serde_json::from_str::<Value>(&b)?["seq"]
            .as_u64()
            .unwrap_or(seq);
    }
    // Embedding the documents takes a while on a small machine: wait until both indexes have them.
    let pb = Progress::new(seq as usize, "indexing");
    let deadline = Instant::now() + Duration::from_secs(1_800);
    loop {
        let (s, b) = c.request("GET", "/v1/admin/status", "", &[])?;
        anyhow::ensure!(s == 200, "status answered {s}: {b}");
        let v: Value = serde_json::from_str(&b)?;
        let at = v["dense"]["seq"]
            .as_u64()
            .unwrap_or(0)
            .min(v["keyword"]["seq"].as_u64().unwrap_or(0));
        pb.set_position(at);
        if at >= seq {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the indexes never caught up: {b}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    pb.finish();
    Ok((daemon, seq))
}

pub fn run(args: &AskArgs) -> anyhow::Result<()> {
    let sentences = crate::texts::short_texts(args.documents.max(args.questions));
    let docs: Vec<Value> = sentences
        .iter()
        .take(args.documents)
        .enumerate()
        .map(|(i, s)| document(i, s))
        .collect();
    let questions: Vec<String> = sentences
        .iter()
        .take(args.questions)
        .map(|s| {
            format!(
                "Which call says that {}",
                s.trim_end_matches('.').to_lowercase()
            )
        })
        .collect();
    let llm = fake_llm(Duration::from_millis(args.llm_delay_ms));
    let scratch = tempfile::tempdir()?;
    let base = format!("{}/openai/v1", llm.base);
    let mut rows = Vec::new();
    let env: [(&str, &str); 3] = [
        ("CONCIERGE_LLM__BASE_URL", &base),
        ("CONCIERGE_LLM__MODEL", "bench-model"),
        ("CONCIERGE_LLM__API_KEY", "bench-key"),
    ];
    for (name, env) in [("llm", &env[..]), ("extractive", &[][..])] {
        let (daemon, seq) = loaded_daemon(args, &scratch.path().join(name), env, &docs)?;
        let delay = if name == "llm" {
            args.llm_delay_ms as f64
        } else {
            0.0
        };
        // One unmeasured question: waits for the indexes and warms up.
        measure(&daemon, &questions[..1], seq, delay)?;
        rows.push(measure(&daemon, &questions, seq, delay)?);
        daemon.stop()?;
    }
    let report = Report {
        run: crate::run_info::RunInfo::now(),
        documents: args.documents,
        questions: args.questions,
        llm_delay_ms: args.llm_delay_ms,
        rows,
    };
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("ask.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    let mut md = format!(
        "# `/v1/ask` over HTTP ({} documents, {} questions; the fake LLM answers in {} ms)\n\n{}\n\n| generator | known | retrieval p50 / p99 ms | generation p50 / p99 ms | total p50 / p99 ms | added by Concierge p50 / p99 ms |\n|---|---:|---:|---:|---:|---:|\n",
        report.documents,
        report.questions,
        report.llm_delay_ms,
        report.run.markdown_line()
    );
    for r in &report.rows {
        md.push_str(&format!(
            "| {} | {}/{} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} |\n",
            r.generator,
            r.known,
            r.answered,
            r.retrieval_p50_ms,
            r.retrieval_p99_ms,
            r.generation_p50_ms,
            r.generation_p99_ms,
            r.total_p50_ms,
            r.total_p99_ms,
            r.overhead_p50_ms,
            r.overhead_p99_ms
        ));
    }
    md.push_str("\n\"Added by Concierge\" is the client-measured total minus the LLM's own time (its fixed delay); for the extractive answerer there is no LLM, so it is the whole answer.\n");
    std::fs::write(args.out.join("ask.md"), &md)?;
    println!("{md}");
    Ok(())
}
