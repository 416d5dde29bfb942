//! The daemon's HTTP API, black-box: the real `concierge serve` with the real model on an
//! ephemeral port — documents, search, admin, auth, errors as problem+json, graceful restarts.

use concierge_tests::{Daemon, model_dir, workspace_root};
use serde_json::{Value, json};

fn start(env: &[(&str, &str)]) -> Daemon {
    Daemon::with_model(env)
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn problem(status: u16, body: &str, expected: u16) -> Value {
    assert_eq!(status, expected, "{body}");
    let p = json_of(body);
    assert_eq!(p["status"], expected, "{body}");
    assert!(
        p["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    p
}

#[test]
fn a_posted_document_is_stored_searchable_and_deletable() {
    let d = start(&[]);
    let doc = json!({"id": "guesty:reservation:r1", "title": "Reservation r1", "text": "Late arrival, door code HMXK4Q, two guests.", "updated_at": 1_000, "metadata": {"listing": "L1"}});
    let (status, body) = d.post_json("/v1/documents", &doc.to_string());
    assert_eq!(status, 202, "{body}");
    let seq = json_of(&body)["seq"].as_u64().expect("seq");
    let (status, body) = d.get("/v1/documents/guesty:reservation:r1");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body)["metadata"]["listing"], "L1");
    let (status, body) = d.post_json(
        "/v1/search",
        &json!({"query": "HMXK4Q", "min_seq": seq, "filter": {"metadata": {"listing": "L1"}}})
            .to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let hits = json_of(&body)["hits"].clone();
    assert_eq!(hits[0]["document"]["id"], "guesty:reservation:r1", "{body}");
    assert_eq!(hits[0]["keyword"]["rank"], 1);
    let (status, body) = d.request(
        "DELETE",
        "/v1/documents/guesty:reservation:r1?updated_at=2000",
        None,
        &[],
    );
    assert_eq!(status, 202, "{body}");
    let (status, body) = d.get("/v1/documents/guesty:reservation:r1");
    problem(status, &body, 404);
    // A batch with an idempotency key, delivered twice, writes once.
    let batch = json!({"documents": [{"id": "aircall:call:1", "text": "Caller asked about parking.", "updated_at": 5}], "idempotency_key": "evt-9"}).to_string();
    let first = json_of(&d.post_json("/v1/documents", &batch).1);
    let second = json_of(&d.post_json("/v1/documents", &batch).1);
    assert_eq!(second["duplicate"], true);
    assert_eq!(first["seq"], second["seq"]);
}

#[test]
fn bad_requests_get_the_right_status_and_a_problem_body_and_change_nothing() {
    let d = start(&[("CONCIERGE_SERVER__MAX_BODY_BYTES", "4096")]);
    let (s, b) = d.post_json("/v1/documents", "{\"id\": ");
    problem(s, &b, 400);
    let (s, b) = d.request(
        "POST",
        "/v1/documents",
        Some("id=1"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
    );
    problem(s, &b, 415);
    let big =
        json!({"id": "aircall:call:2", "text": "x".repeat(10_000), "updated_at": 1}).to_string();
    let (s, b) = d.post_json("/v1/documents", &big);
    problem(s, &b, 413);
    let (s, b) = d.post_json(
        "/v1/documents",
        &json!({"id": "aircall:call:3", "text": "no time"}).to_string(),
    );
    let p = problem(s, &b, 422);
    assert!(
        p["detail"].as_str().expect("detail").contains("updated_at"),
        "{b}"
    );
    let (s, b) = d.post_json(
        "/v1/documents",
        &json!({"id": "not an id", "text": "x", "updated_at": 1}).to_string(),
    );
    problem(s, &b, 422);
    let (s, b) = d.post_json("/v1/search", &json!({"query": "x", "k": 0}).to_string());
    problem(s, &b, 422);
    let (s, b) = d.post_json(
        "/v1/search",
        &json!({"query": "x", "colour": "red"}).to_string(),
    );
    problem(s, &b, 422);
    let status = json_of(&d.get("/v1/admin/status").1);
    assert_eq!(
        status["durable_seq"], 0,
        "a refused request wrote something: {status}"
    );
}

#[test]
fn with_tokens_configured_every_route_but_health_needs_a_valid_bearer_token() {
    let d = start(&[("CONCIERGE_AUTH__API_TOKENS", "tok-1,tok-2")]);
    assert_eq!(d.get("/healthz").0, 200);
    assert_eq!(d.get("/readyz").0, 200);
    let missing = d.exchange("GET", "/v1/admin/status", None, &[]);
    problem(missing.status, &missing.body, 401);
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    for wrong in ["Bearer nope", "Basic dG9rLTE6", "Bearer"] {
        let r = d.exchange("GET", "/v1/admin/status", None, &[("Authorization", wrong)]);
        problem(r.status, &r.body, 401);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\""),
            "{wrong}"
        );
    }
    // Two Authorization headers, a valid one first: refused, not resolved in the caller's favour.
    let (s, b) = d.request(
        "GET",
        "/v1/admin/status",
        None,
        &[
            ("Authorization", "Bearer tok-1"),
            ("Authorization", "Bearer nope"),
        ],
    );
    problem(s, &b, 400);
    let (s, b) = d.request(
        "GET",
        "/v1/admin/status",
        None,
        &[("Authorization", "Bearer tok-2")],
    );
    assert_eq!(s, 200, "{b}");
    let doc = json!({"id": "aircall:call:1", "text": "x y z", "updated_at": 1}).to_string();
    let (s, _) = d.request(
        "POST",
        "/v1/documents",
        Some(&doc),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(s, 401);
}

#[test]
fn sigterm_flushes_and_a_restart_serves_what_was_acknowledged() {
    let keep = tempfile::tempdir().expect("tempdir");
    // A data directory that outlives the first daemon.
    let kept = keep.path().join("data");
    let model = model_dir();
    let args = [
        "--model-dir",
        model.to_str().expect("utf-8"),
        "--data-dir",
        kept.to_str().expect("utf-8"),
    ];
    let d = Daemon::start(&args, &workspace_root());
    let mut last = 0;
    for i in 0..20 {
        let doc = json!({"id": format!("aircall:call:{i}"), "text": format!("Call {i} about the pool heater."), "updated_at": 1});
        let (s, b) = d.post_json("/v1/documents", &doc.to_string());
        assert_eq!(s, 202, "{b}");
        last = json_of(&b)["seq"].as_u64().expect("seq");
    }
    assert!(d.terminate().success());
    let d = Daemon::start(&args, &workspace_root());
    let (s, b) = d.post_json(
        "/v1/search",
        &json!({"query": "pool heater", "k": 20, "min_seq": last, "mode": "keyword"}).to_string(),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(json_of(&b)["hits"].as_array().expect("hits").len(), 20);
    let status = json_of(&d.get("/v1/admin/status").1);
    assert_eq!(status["durable_seq"], last);
    let (s, b) = d.post_json(
        "/v1/admin/checkpoint",
        &json!({"name": "nightly"}).to_string(),
    );
    assert_eq!(s, 200, "{b}");
    assert!(kept.join("checkpoints/nightly/store").is_dir());
    let (s, b) = d.post_json(
        "/v1/admin/checkpoint",
        &json!({"name": "../escape"}).to_string(),
    );
    problem(s, &b, 422);
}

#[test]
fn every_path_of_the_openapi_document_is_served_and_metrics_count_requests() {
    let d = start(&[]);
    let (s, b) = d.get("/openapi.json");
    assert_eq!(s, 200, "{b}");
    let doc = json_of(&b);
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 12);
    for (path, methods) in paths {
        for method in methods.as_object().expect("methods").keys() {
            let concrete = path.replace("{id}", "aircall:call:1");
            let body = (method != "get" && method != "delete").then_some("{}");
            let headers: &[(&str, &str)] = &[("Content-Type", "application/json")];
            let (status, b) = d.request(&method.to_uppercase(), &concrete, body, headers);
            assert!(
                !(status == 404 && b.contains("no route for")),
                "{method} {path} is documented but not served: {b}"
            );
            assert_ne!(
                status, 405,
                "{method} {path} is documented but not served: {b}"
            );
        }
    }
    let (s, metrics) = d.get("/metrics");
    assert_eq!(s, 200);
    assert!(
        metrics.contains(
            "concierge_http_requests_total{route=\"/v1/search\",method=\"POST\",status=\"422\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("concierge_http_request_duration_seconds_bucket{route=\"/openapi.json\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("concierge_consumer_lag")
            && metrics.contains("concierge_index_chunks{index=\"dense\"}"),
        "{metrics}"
    );
}

#[test]
fn a_search_does_not_wait_for_the_indexer_to_finish_its_embedding_batch() {
    let d = start(&[]);
    let docs: Vec<Value> = (0..400)
        .map(|i| json!({"id": format!("aircall:call:{i}"), "text": format!("Guest {i} asked about the boiler, the parking garage, a late checkout and fresh towels. ").repeat(4), "updated_at": 1}))
        .collect();
    let (s, b) = d.post_json("/v1/documents", &json!({"documents": docs}).to_string());
    assert_eq!(s, 202, "{b}");
    // The indexer is now embedding hundreds of ~100-token chunks (seconds of work on one core).
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    let (s, b) = d.post_json(
        "/v1/search",
        &json!({"query": "boiler repair", "k": 5}).to_string(),
    );
    assert_eq!(s, 200, "{b}");
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(2),
        "a search waited {took:?} behind the indexer"
    );
}

/// The value of an unlabelled series in a Prometheus text page.
fn series(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

#[test]
fn metrics_time_each_acknowledged_write_until_searchable_and_count_embedding_work() {
    let d = start(&[]);
    let docs: Vec<Value> = (0..3)
        .map(|i| json!({"id": format!("aircall:call:m{i}"), "text": format!("Guest {i} asked for a late checkout."), "updated_at": 1}))
        .collect();
    for doc in &docs {
        let (s, b) = d.post_json("/v1/documents", &doc.to_string());
        assert_eq!(s, 202, "{b}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let metrics = loop {
        let (s, metrics) = d.get("/metrics");
        assert_eq!(s, 200);
        if series(&metrics, "concierge_ingest_to_searchable_seconds_count") == Some(3.0) {
            break metrics;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "three writes were never timed: {metrics}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let sum = series(&metrics, "concierge_ingest_to_searchable_seconds_sum").expect("sum");
    assert!(sum > 0.0 && sum < 90.0, "{metrics}");
    assert_eq!(
        series(
            &metrics,
            "concierge_ingest_to_searchable_seconds_bucket{le=\"+Inf\"}"
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        series(&metrics, "concierge_embedded_chunks_total"),
        Some(3.0),
        "one chunk per short document: {metrics}"
    );
    assert!(
        series(&metrics, "concierge_embedding_seconds_total").is_some_and(|s| s > 0.0),
        "{metrics}"
    );
    assert!(
        series(&metrics, "concierge_embedding_batches_total").is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
}

#[test]
fn search_hits_leave_the_whole_text_out_unless_asked_and_duplicate_keys_are_refused() {
    let d = start(&[]);
    // 19 KB, about 20 chunks: long beside a hit, and embedded well within the search's 10 s
    // min_seq wait on one thread of a slow CPU (76 KB took 16 s on a 2-core EPYC).
    let long: String = "The lockbox code for unit 7 changed. ".repeat(500);
    let doc = json!({"id": "guesty:listing:l7", "text": long, "updated_at": 1}).to_string();
    let (s, b) = d.post_json("/v1/documents", &doc);
    assert_eq!(s, 202, "{b}");
    let seq = json_of(&b)["seq"].as_u64().expect("seq");
    let query = |include: bool| {
        json!({"query": "lockbox code unit 7", "k": 1, "min_seq": seq, "include_text": include})
            .to_string()
    };
    let (s, b) = d.post_json("/v1/search", &query(false));
    assert_eq!(s, 200, "{b}");
    let hit = &json_of(&b)["hits"][0];
    assert!(hit["document"]["text"].is_null(), "{hit}");
    assert_eq!(hit["document"]["text_bytes"], long.len());
    assert!(hit["chunk"]["snippet"]["text"].is_string(), "{hit}");
    assert!(
        b.len() < long.len() / 2,
        "the answer is small: {} bytes",
        b.len()
    );
    let (s, b) = d.post_json("/v1/search", &query(true));
    assert_eq!(s, 200, "{b}");
    assert_eq!(json_of(&b)["hits"][0]["document"]["text"], long.as_str());

    // The same key twice is refused on every JSON body, nested ones included.
    for (path, body) in [
        (
            "/v1/documents",
            r#"{"id": "a:b:c", "text": "one", "text": "two", "updated_at": 1}"#,
        ),
        (
            "/v1/documents",
            r#"{"id": "a:b:c", "text": "x", "updated_at": 1, "metadata": {"k": 1, "k": 2}}"#,
        ),
        ("/v1/search", r#"{"query": "x", "k": 1, "k": 2}"#),
    ] {
        let (s, b) = d.post_json(path, body);
        let p = problem(s, &b, 422);
        assert!(
            p["detail"]
                .as_str()
                .is_some_and(|t| t.contains("duplicate")),
            "{b}"
        );
    }
    assert_eq!(d.get("/v1/documents/a:b:c").0, 404);
    // Admin bodies are what they say.
    let (s, b) = d.post_json("/v1/admin/checkpoint", "[]");
    problem(s, &b, 422);
    let r = d.request(
        "PUT",
        "/v1/admin/backup-status",
        Some("{}"),
        &[("Content-Type", "application/json")],
    );
    problem(r.0, &r.1, 422);
}

#[test]
fn each_route_answers_403_naming_the_scope_to_a_token_without_it_and_serves_one_with_it() {
    let d = start(&[
        ("CONCIERGE_AUTH__READ_TOKENS", "reader-1"),
        ("CONCIERGE_AUTH__WRITE_TOKENS", "writer-1"),
        ("CONCIERGE_AUTH__ADMIN_TOKENS", "admin-1"),
        ("CONCIERGE_AUTH__API_TOKENS", "legacy-1"),
    ]);
    let doc = json!({"id": "ops:scope:1", "text": "pool heater", "updated_at": 1}).to_string();
    // (method, path, body, the scope it needs: 0 read, 1 write, 2 admin); deletes come last.
    let routes: &[(&str, &str, Option<&str>, usize)] = &[
        ("GET", "/v1/admin/status", None, 0),
        ("GET", "/metrics", None, 0),
        ("GET", "/openapi.json", None, 0),
        ("POST", "/v1/search", Some(r#"{"query": "heater"}"#), 0),
        ("POST", "/v1/ask", Some(r#"{"question": "heater?"}"#), 0),
        ("GET", "/v1/documents/ops:scope:1", None, 0),
        ("POST", "/v1/documents", Some(doc.as_str()), 1),
        ("POST", "/v1/admin/checkpoint", Some("{}"), 1),
        ("PUT", "/v1/admin/backup-status", Some("{}"), 1),
        ("POST", "/v1/admin/reindex", None, 2),
        ("DELETE", "/v1/documents/ops:scope:1", None, 2),
    ];
    let tokens = [
        ("reader-1", 0),
        ("writer-1", 1),
        ("admin-1", 2),
        ("legacy-1", 2),
    ];
    for (method, path, body, needed) in routes {
        for (token, level) in tokens {
            let auth = format!("Bearer {token}");
            let (s, b) = d.request(
                method,
                path,
                *body,
                &[
                    ("Content-Type", "application/json"),
                    ("Authorization", &auth),
                ],
            );
            if level >= *needed {
                assert!(
                    !matches!(s, 401 | 403),
                    "{method} {path} with {token}: {s} {b}"
                );
            } else {
                let p = problem(s, &b, 403);
                let scope = ["read", "write", "admin"][*needed];
                assert!(
                    p["detail"]
                        .as_str()
                        .unwrap_or("")
                        .contains(&format!("`{scope}`")),
                    "{method} {path} with {token}: {b}"
                );
            }
        }
    }
    // The document is gone (deleted with the admin token), and an unknown token is still a 401.
    let (s, _) = d.request(
        "GET",
        "/v1/documents/ops:scope:1",
        None,
        &[("Authorization", "Bearer admin-1")],
    );
    assert_eq!(s, 404);
    let r = d.exchange(
        "GET",
        "/v1/admin/status",
        None,
        &[("Authorization", "Bearer writer-2")],
    );
    problem(r.status, &r.body, 401);
}

/// The family a sample line belongs to (histogram and summary suffixes folded in).
fn family_of(sample: &str) -> &str {
    let name = sample.split(['{', ' ']).next().unwrap_or("");
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

#[test]
fn metrics_follow_the_text_format_every_family_whole_after_its_help_and_type() {
    let d = start(&[]);
    // Some traffic, so every family has samples.
    let doc = json!({"id": "ops:m:1", "text": "pool heater", "updated_at": 1}).to_string();
    assert_eq!(d.post_json("/v1/documents", &doc).0, 202);
    let _ = d.post_json("/v1/search", r#"{"query": "pool", "min_seq": 1}"#);
    let (s, metrics) = d.get("/metrics");
    assert_eq!(s, 200);
    let mut helped = std::collections::HashSet::new();
    let mut typed = std::collections::HashSet::new();
    let mut finished = std::collections::HashSet::new();
    let mut current: Option<String> = None;
    for line in metrics.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap_or("").to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap_or("").to_owned());
            continue;
        }
        let family = family_of(line).to_owned();
        assert!(
            helped.contains(&family),
            "{family} has no HELP before {line:?}"
        );
        assert!(
            typed.contains(&family),
            "{family} has no TYPE before {line:?}"
        );
        if current.as_deref() != Some(family.as_str()) {
            assert!(
                !finished.contains(&family),
                "{family} comes back after another family: {line:?}\n{metrics}"
            );
            if let Some(previous) = current.replace(family.clone()) {
                finished.insert(previous);
            }
        }
    }
    assert!(
        metrics.contains("concierge_build_info{version=\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("le=\"60\""),
        "latency buckets reach 60 s: {metrics}"
    );
    assert!(
        metrics.contains("concierge_index_lag{index=\"keyword\"}"),
        "{metrics}"
    );
}

#[test]
fn version_says_what_runs_without_a_token() {
    let d = start(&[("CONCIERGE_AUTH__API_TOKENS", "tok-1")]);
    let (s, body) = d.get("/version");
    assert_eq!(s, 200, "{body}");
    let v = json_of(&body);
    assert_eq!(v["name"], "concierge");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["role"], "primary");
    assert_eq!(v["search_backend"], "local");
    assert_eq!(v["model"], "all-MiniLM-L6-v2");
    assert_eq!(v["dimension"], 384);
}
