//! What operators and integrators touch, black-box against the real daemon: request ids, the
//! access log's identity, browsing documents page by page, a fetched document posted back,
//! webhook and answer counters, `/metrics` read by Prometheus's own parser, and
//! `concierge ingest`'s summary and `--wait-indexed`.

use std::process::Command;

use concierge_tests::{Daemon, binary, model_dir, temp_dir, workspace_root};
use serde_json::{Value, json};

fn start(env: &[(&str, &str)]) -> Daemon {
    Daemon::with_model(env)
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn a_request_id_is_taken_from_the_caller_or_made_and_comes_back_in_the_header_and_problem() {
    let d = start(&[]);
    let given = d.exchange(
        "GET",
        "/v1/documents/nope:nope:1",
        None,
        &[("x-request-id", "caller-chosen-42")],
    );
    assert_eq!(given.status, 404, "{}", given.body);
    assert_eq!(given.header("x-request-id"), Some("caller-chosen-42"));
    let problem = json_of(&given.body);
    assert_eq!(problem["request_id"], "caller-chosen-42");
    assert_eq!(problem["code"], "not_found");

    // An unusable id (a space in it) is replaced, not echoed.
    let made = d.exchange(
        "PATCH",
        "/v1/search",
        None,
        &[("x-request-id", "two words")],
    );
    assert_eq!(made.status, 405, "{}", made.body);
    let id = made.header("x-request-id").expect("an id").to_owned();
    assert_eq!(id.len(), 32, "{id}");
    let problem = json_of(&made.body);
    assert_eq!(problem["request_id"], id.as_str());
    assert_eq!(problem["code"], "method_not_allowed");
    assert_eq!(
        made.header("content-type"),
        Some("application/problem+json")
    );

    // A bad query string is a problem body too, with its own code.
    let (status, body) = d.get("/v1/documents?limit=many");
    assert_eq!(status, 400, "{body}");
    assert_eq!(json_of(&body)["code"], "invalid_parameters", "{body}");
    // Successful answers carry an id as well.
    let ok = d.exchange("GET", "/healthz", None, &[]);
    assert_eq!(ok.status, 200);
    assert!(ok.header("x-request-id").is_some_and(|v| v.len() == 32));
}

#[test]
fn the_access_log_names_the_route_status_and_token_list_and_never_the_token() {
    let dir = temp_dir();
    let log = dir.path().join("daemon.log");
    let model = model_dir();
    let mut command = Command::new(binary("concierge"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--model-dir")
        .arg(&model)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env(
            "CONCIERGE_AUTH__READ_TOKENS",
            "reader-secret-1,reader-secret-2",
        )
        .stderr(std::fs::File::create(&log).expect("log file"));
    let d = Daemon::from_command(command, dir.path().join("data"));
    let reply = d.exchange(
        "GET",
        "/v1/admin/status",
        None,
        &[
            ("Authorization", "Bearer reader-secret-2"),
            ("x-request-id", "trace-me"),
        ],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    d.kill();
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        !text.contains("reader-secret"),
        "a token in the log:\n{text}"
    );
    let access: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .filter(|v| v["target"] == "concierge::access")
        .collect();
    let line = access
        .iter()
        .find(|v| v["fields"]["route"] == "/v1/admin/status")
        .unwrap_or_else(|| panic!("no access line for the status:\n{text}"));
    assert_eq!(line["fields"]["method"], "GET", "{line}");
    assert_eq!(line["fields"]["status"], 200, "{line}");
    assert_eq!(line["fields"]["via"], "token", "{line}");
    assert_eq!(line["fields"]["caller"], "auth.read_tokens[1]", "{line}");
    assert!(line["fields"]["duration_ms"].is_number(), "{line}");
    assert_eq!(line["span"]["request_id"], "trace-me", "{line}");
}

#[test]
fn documents_are_listed_a_page_at_a_time_by_source_and_kind_without_the_deleted_ones() {
    let d = start(&[]);
    for (id, at) in [
        ("ops:note:1", 1),
        ("ops:note:2", 1),
        ("ops:note:3", 1),
        ("ops:task:1", 1),
        ("guesty:reservation:9", 1),
        ("ops:note:4", 1),
    ] {
        let doc = json!({"id": id, "title": id, "text": "boiler check", "updated_at": at});
        assert_eq!(d.post_json("/v1/documents", &doc.to_string()).0, 202);
    }
    assert_eq!(
        d.request("DELETE", "/v1/documents/ops:note:2?updated_at=5", None, &[])
            .0,
        202
    );

    let mut seen = Vec::new();
    let mut path = "/v1/documents?source=ops&kind=note&limit=2".to_owned();
    loop {
        let (status, body) = d.get(&path);
        assert_eq!(status, 200, "{body}");
        let page = json_of(&body);
        let docs = page["documents"].as_array().expect("documents");
        assert!(docs.len() <= 2, "{body}");
        seen.extend(
            docs.iter()
                .map(|d| d["id"].as_str().unwrap_or("").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/documents?source=ops&kind=note&limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["ops:note:1", "ops:note:3", "ops:note:4"]);

    let (_, body) = d.get("/v1/documents?source=ops");
    let all_ops: Vec<_> = json_of(&body)["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .map(|d| d["id"].clone())
        .collect();
    assert_eq!(all_ops.len(), 4, "{body}");
    let (_, body) = d.get("/v1/documents");
    assert_eq!(
        json_of(&body)["documents"].as_array().map(Vec::len),
        Some(5)
    );

    for bad in [
        "/v1/documents?kind=note",
        "/v1/documents?source=o:ps",
        "/v1/documents?limit=0",
        "/v1/documents?limit=1001",
        "/v1/documents?cursor=%%%",
        "/v1/documents?source=guesty&cursor=b3BzOm5vdGU6MQ",
    ] {
        let (status, body) = d.get(bad);
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(json_of(&body)["code"], "invalid_request", "{body}");
    }
    let (_, body) = d.get("/v1/documents?surprise=1");
    assert_eq!(json_of(&body)["code"], "invalid_parameters", "{body}");

    // The status counts live documents per source and kind.
    let (_, body) = d.get("/v1/admin/status");
    let counts = &json_of(&body)["documents"];
    assert_eq!(counts["total"], 5, "{counts}");
    assert_eq!(counts["by_kind"]["ops:note"], 3, "{counts}");
    assert_eq!(counts["by_kind"]["guesty:reservation"], 1, "{counts}");
}

#[test]
fn a_fetched_document_posted_back_changes_only_what_was_edited() {
    let d = start(&[]);
    let doc = json!({"id": "ops:note:7", "title": "Pool", "text": "heater broken",
        "updated_at": 10, "metadata": {"unit": "A"}});
    assert_eq!(d.post_json("/v1/documents", &doc.to_string()).0, 202);
    let (_, body) = d.get("/v1/documents/ops:note:7");
    let mut fetched = json_of(&body);
    assert_eq!(fetched["version"], 1);
    // Sent back unchanged: accepted, nothing changes.
    let (status, body) = d.post_json("/v1/documents", &fetched.to_string());
    assert_eq!(status, 202, "{body}");
    assert_eq!(json_of(&body)["outcomes"][0], "unchanged", "{body}");
    // Edited: applied, the version is the store's, not the one sent.
    fetched["text"] = json!("heater fixed");
    fetched["updated_at"] = json!(11);
    fetched["version"] = json!(99);
    let (status, body) = d.post_json("/v1/documents", &fetched.to_string());
    assert_eq!(status, 202, "{body}");
    let (_, body) = d.get("/v1/documents/ops:note:7");
    let now = json_of(&body);
    assert_eq!(now["text"], "heater fixed");
    assert_eq!(now["version"], 2);
    // A source or kind that contradicts the id is refused, naming the field.
    for (field, value) in [("source", "guesty"), ("kind", "task")] {
        let mut wrong = now.clone();
        wrong[field] = json!(value);
        wrong["updated_at"] = json!(12);
        let (status, body) = d.post_json("/v1/documents", &wrong.to_string());
        assert_eq!(status, 422, "{body}");
        assert!(body.contains(field), "{body}");
    }
    let (status, body) = d.post_json(
        "/v1/documents",
        &json!({"id": "ops:note:8", "updated_at": 1, "version": "one"}).to_string(),
    );
    assert_eq!(
        status, 422,
        "a read-only field is still type-checked: {body}"
    );
}

/// The value of a sample (`name{labels}` exactly as written).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn webhooks_are_counted_by_source_and_outcome_and_answers_by_outcome() {
    const GUESTY_SECRET: &str = "whsec_Y29uY2llcmdlLWZpeHR1cmUtc2VjcmV0LTMyYnl0ZXM=";
    let d = start(&[
        // The Aircall fixtures' own token.
        ("CONCIERGE_AIRCALL__TOKENS", "wh_tok_fixture_3f9c2a7b81"),
        ("CONCIERGE_GUESTY__SECRET", GUESTY_SECRET),
    ]);
    concierge_tests::post_fixture_webhooks(&d, GUESTY_SECRET, "msg_m_");
    let (status, _) = d.request(
        "POST",
        "/v1/webhooks/aircall",
        Some(r#"{"event":"call.created","token":"wrong","timestamp":1,"data":{"id":1}}"#),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(status, 403);
    let (status, body) = d.post_json(
        "/v1/ask",
        r#"{"question": "what did the caller ask about?", "min_seq": 1}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = d.post_json("/v1/ask", r#"{"question": ""}"#);
    assert_eq!(status, 422);

    let (_, metrics) = d.get("/metrics");
    let aircall_applied = sample(
        &metrics,
        "concierge_webhooks_total{source=\"aircall\",outcome=\"applied\"}",
    );
    assert!(aircall_applied.is_some_and(|n| n >= 1.0), "{metrics}");
    assert!(
        sample(
            &metrics,
            "concierge_webhooks_total{source=\"guesty\",outcome=\"applied\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "concierge_webhooks_total{source=\"aircall\",outcome=\"refused\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    let answered: f64 = ["known", "dont_know", "fallback"]
        .iter()
        .filter_map(|o| {
            sample(
                &metrics,
                &format!("concierge_answers_total{{outcome=\"{o}\"}}"),
            )
        })
        .sum();
    assert_eq!(
        answered, 1.0,
        "one answer; the empty question is not one: {metrics}"
    );
    assert_eq!(
        sample(&metrics, "concierge_answers_total{outcome=\"failed\"}"),
        Some(0.0)
    );
}

#[test]
fn prometheus_own_parser_reads_the_whole_exposition() {
    let d = start(&[]);
    // Traffic of every kind, and a backup report, so each family has samples.
    let doc = json!({"id": "ops:m:1", "text": "pool heater", "updated_at": 1}).to_string();
    assert_eq!(d.post_json("/v1/documents", &doc).0, 202);
    let _ = d.post_json("/v1/search", r#"{"query": "pool", "min_seq": 1}"#);
    let _ = d.get("/nowhere");
    let run = json!({"outcome": "ok", "started_at": "2026-12-07T01:00:00Z",
        "finished_at": "2026-12-07T01:01:00Z", "started_at_unix": 1_796_605_200,
        "finished_at_unix": 1_796_605_260, "duration_s": 60.0, "repository": "s3:r2/b",
        "host": "node-1", "snapshot_id": "abc", "files": 3, "bytes_added": 10,
        "bytes_processed": 20, "forgotten": 0, "error_kind": null, "error": null});
    let status = json!({"last_run": run, "last_success": run}).to_string();
    let (code, body) = d.request(
        "PUT",
        "/v1/admin/backup-status",
        Some(&status),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(code, 204, "{body}");
    let (_, metrics) = d.get("/metrics");
    assert_eq!(
        sample(&metrics, "concierge_backup_last_success_timestamp_seconds"),
        Some(1_796_605_260.0),
        "{metrics}"
    );
    let python = workspace_root().join("tests/.venv-api/bin/python");
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
names = [f.name for f in text_string_to_metric_families(sys.stdin.read())]
assert len(names) == len(set(names)), "a family twice"
print(len(names))
"#;
    let mut child = Command::new(&python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{} (scripts/test-tools.sh installs it): {e}",
                python.display()
            )
        });
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), metrics.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("parser");
    assert!(
        out.status.success(),
        "prometheus_client refused /metrics: {}\n{metrics}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families: usize = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a count");
    assert!(families >= 25, "{families} families");
}

#[test]
fn ingest_prints_a_summary_and_waits_until_both_indexes_serve_the_load() {
    let dir = temp_dir();
    let input = dir.path().join("docs.jsonl");
    let mut lines = String::new();
    for i in 0..40 {
        lines.push_str(
            &json!({"id": format!("ops:note:{i}"), "text": format!("boiler {i} serviced"),
                "updated_at": 1})
            .to_string(),
        );
        lines.push('\n');
    }
    lines.push_str(&json!({"id": "ops:note:0", "text": "older", "updated_at": 0}).to_string());
    lines.push_str("\nnot json\n");
    std::fs::write(&input, lines).expect("input");
    let data = dir.path().join("data");
    let model = model_dir();
    let out = concierge_tests::ingest_and_wait(&input, &data);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a bad line fails the load: {stderr}"
    );
    assert!(
        stderr.contains("40 applied, 1 stale, 0 unchanged, 1 failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("both indexes serve everything loaded (sequence 40)"),
        "{stderr}"
    );
    // The indexes were saved whole: a daemon on the directory serves the load at once.
    let d = Daemon::start(
        &[
            "--model-dir",
            model.to_str().expect("utf-8"),
            "--data-dir",
            data.to_str().expect("utf-8"),
        ],
        &workspace_root(),
    );
    let (_, body) = d.get("/v1/admin/status");
    let status = json_of(&body);
    assert_eq!(status["dense"]["seq"], 40, "{status}");
    assert_eq!(status["keyword"]["seq"], 40, "{status}");
}

#[test]
fn inputs_the_fuzzer_found_are_answered_not_failed() {
    // Found by schemathesis: a passage without a sentence of two words made the extractive
    // answerer return nothing (502), and a time range without bounds panicked tantivy (500).
    let d = start(&[]);
    let doc = json!({"id": "z:z:1", "title": "", "text": "0", "updated_at": 1});
    assert_eq!(d.post_json("/v1/documents", &doc.to_string()).0, 202);
    let (status, body) = d.post_json(
        "/v1/ask",
        r#"{"question": "-(", "k": 1, "min_similarity": 0.0, "min_seq": 1}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body)["answer"], "0 [1]", "{body}");
    for path in ["/v1/ask", "/v1/search"] {
        let field = if path == "/v1/ask" {
            "question"
        } else {
            "query"
        };
        let body = json!({field: "zero", "filter": {"updated_at": {}}, "min_seq": 1});
        let (status, answer) = d.post_json(path, &body.to_string());
        assert_eq!(status, 200, "{path}: {answer}");
    }
}
