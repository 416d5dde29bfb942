//! `concierge ingest`: bulk loads, and the promise that an acknowledged document survives
//! `kill -9` of the process that acknowledged it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use concierge_engine::{Engine, EngineConfig, SearchMode, SearchRequest};
use concierge_models::{BertEmbedder, EmbedderConfig};
use concierge_tests::{binary, model_dir, temp_dir};

fn reopen(data: &std::path::Path) -> Engine {
    let embedder =
        Arc::new(BertEmbedder::load(model_dir(), &EmbedderConfig::default()).expect("model"));
    Engine::open(EngineConfig::new(data), embedder).expect("the store reopens")
}

fn line(i: usize) -> String {
    format!(
        r#"{{"id":"aircall:call:{i}","title":"Call {i}","text":"Caller number {i} asked about the lockbox code for unit {i}.","updated_at":{}}}"#,
        1_000 + i
    )
}

#[test]
fn every_document_acknowledged_before_a_sigkill_is_in_the_store_after_restart() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let model = model_dir();
    let mut child = Command::new(binary("concierge"))
        .args(["ingest", "--data-dir"])
        .arg(&data)
        .arg("--model-dir")
        .arg(&model)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("concierge ingest starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        // Keep feeding until the pipe breaks (the child was killed).
        for i in 0..100_000 {
            if writeln!(stdin, "{}", line(i)).is_err() {
                return;
            }
        }
    });
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut acked: Vec<(String, u64)> = Vec::new();
    let started = Instant::now();
    let mut lines = stdout.lines();
    while acked.len() < 300 {
        let l = lines
            .next()
            .expect("the child is still acknowledging")
            .expect("a line");
        let v: serde_json::Value = serde_json::from_str(&l).expect("a JSON receipt");
        acked.push((
            v["id"].as_str().expect("id").to_owned(),
            v["seq"].as_u64().expect("seq"),
        ));
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "ingest is too slow"
        );
    }
    child.kill().expect("SIGKILL");
    // Receipts already printed before the kill are acknowledgements too.
    for l in lines.map_while(Result::ok) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l) {
            acked.push((
                v["id"].as_str().unwrap_or_default().to_owned(),
                v["seq"].as_u64().unwrap_or_default(),
            ));
        }
    }
    child.wait().expect("reaped");
    writer.join().expect("writer thread");

    let engine = reopen(&data);
    let last = acked.iter().map(|(_, s)| *s).max().expect("some");
    assert!(
        engine.durable_seq() >= last,
        "sequence {last} was acknowledged but the store ends at {}",
        engine.durable_seq()
    );
    for (id, _) in &acked {
        assert!(
            engine.get(id).expect("get").is_some(),
            "{id} was acknowledged but is missing after SIGKILL"
        );
    }
    // The indexes catch up from the change log after the crash.
    let (id, seq) = acked.last().expect("some").clone();
    let n = id.rsplit(':').next().expect("n");
    let found = engine
        .search(
            &SearchRequest::new(format!("caller number {n} unit {n}"))
                .mode(SearchMode::Keyword)
                .min_seq(seq),
        )
        .expect("search");
    assert_eq!(found.hits[0].document.id, id);
}

#[test]
fn a_bad_line_is_reported_with_its_number_and_the_rest_is_stored() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let input = dir.path().join("docs.jsonl");
    let body = [
        line(1),
        r#"{"id":"not-an-id","updated_at":1,"text":"x"}"#.to_owned(),
        "{oops".to_owned(),
        line(2),
        String::new(),
    ]
    .join("\n");
    std::fs::write(&input, body).expect("write input");
    let out = Command::new(binary("concierge"))
        .args(["ingest", "--data-dir"])
        .arg(&data)
        .arg("--model-dir")
        .arg(model_dir())
        .arg(&input)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("line 2") && stderr.contains("not-an-id"),
        "{stderr}"
    );
    assert!(stderr.contains("line 3"), "{stderr}");
    let receipts: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(receipts.len(), 2);
    assert_eq!(receipts[1]["line"], 4);
    assert_eq!(receipts[1]["outcome"], "applied");
    let engine = reopen(&data);
    assert!(engine.get("aircall:call:1").expect("get").is_some());
    assert!(engine.get("aircall:call:2").expect("get").is_some());
}
