//! Qdrant sync with the real daemon against Qdrant's REST API as `tests/qdrant/server.py` serves
//! it (qdrant-client's local mode; every body checked against Qdrant's generated models): one
//! point per chunk with deterministic ids, vectors and payload; re-ingest without duplicates;
//! stale chunks of a shrunk document and every point of a deleted one removed; the watermark;
//! faults retried while ingest goes on; a collection made for other vectors refused at start.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use concierge_tests::{Daemon, QdrantServer, model_dir, temp_dir, workspace_root};
use serde_json::{Value, json};

const COLLECTION: &str = "concierge_chunks";

fn start(qdrant: &QdrantServer, data_dir: &std::path::Path) -> Daemon {
    start_with(&qdrant.url(), data_dir, &[])
}

/// The daemon with the model, `data_dir` and Qdrant at `qdrant_url`, plus `extra` variables.
fn start_with(qdrant_url: &str, data_dir: &std::path::Path, extra: &[(&str, &str)]) -> Daemon {
    let model = model_dir();
    let mut env = vec![("CONCIERGE_QDRANT__URL", qdrant_url)];
    env.extend_from_slice(extra);
    Daemon::start_with_env(
        &[
            "--model-dir",
            model.to_str().expect("utf-8"),
            "--data-dir",
            data_dir.to_str().expect("utf-8"),
        ],
        &env,
        &workspace_root(),
    )
}

fn document(id: &str, text: &str, updated_at: i64) -> String {
    json!({
        "id": id,
        "title": "Maintenance",
        "text": text,
        "updated_at": updated_at,
        "metadata": {"unit": 12, "tags": ["pool", "heater"], "guest": {"name": "Ana"}}
    })
    .to_string()
}

fn ingest(d: &Daemon, body: &str) -> u64 {
    let (s, b) = d.post_json("/v1/documents", body);
    assert_eq!(s, 202, "{b}");
    serde_json::from_str::<Value>(&b).expect("receipt")["seq"]
        .as_u64()
        .expect("seq")
}

/// The watermark point's `seq` (0 before the first batch).
fn watermark(q: &QdrantServer) -> u64 {
    q.points(COLLECTION, false)
        .iter()
        .find(|p| p["payload"]["concierge_watermark"] == true)
        .and_then(|p| p["payload"]["seq"].as_u64())
        .unwrap_or(0)
}

/// Waits until Qdrant's watermark reaches `seq`; the chunk points then (not the document
/// points).
fn wait_for(q: &QdrantServer, seq: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, _) = q.call("GET", &format!("/collections/{COLLECTION}"), None);
        if status == 200 && watermark(q) >= seq {
            return q
                .points(COLLECTION, true)
                .into_iter()
                // Chunk points (the document points carry no ordinal).
                .filter(|p| p["payload"]["ordinal"].is_u64())
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "Qdrant never reached seq {seq} (watermark {})",
            if status == 200 { watermark(q) } else { 0 }
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The daemon's status and its `qdrant` sync entry.
fn qdrant_status(d: &Daemon) -> (Value, Value) {
    let (_, body) = d.get("/v1/admin/status");
    let status: Value = serde_json::from_str(&body).expect("status");
    let sync = status["sync"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "qdrant"))
        .cloned()
        .unwrap_or_default();
    (status, sync)
}

fn of(points: &[Value], id: &str) -> Vec<Value> {
    points
        .iter()
        .filter(|p| p["payload"]["document_id"] == id)
        .cloned()
        .collect()
}

fn ids(points: &[Value]) -> BTreeSet<String> {
    points
        .iter()
        .map(|p| p["id"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn long_text() -> String {
    (0..120)
        .map(|i| {
            format!("Sentence {i} says the pool heater in unit {i} was checked by the night team.")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn every_chunk_becomes_one_point_and_reingest_shrink_and_delete_leave_no_stale_point() {
    let q = QdrantServer::start();
    let dir = temp_dir();
    let d = start(&q, &dir.path().join("data"));
    let mut last = 0;
    for i in 0..5 {
        last = ingest(
            &d,
            &document(
                &format!("ops:note:{i}"),
                &format!("Guest {i} asked for late check-in."),
                1_700_000_000_000,
            ),
        );
    }
    last = last.max(ingest(
        &d,
        &document("ops:long:1", &long_text(), 1_700_000_000_000),
    ));
    let points = wait_for(&q, last);

    // One point per chunk: the long document has several, the short ones one each.
    let long = of(&points, "ops:long:1");
    assert!(long.len() >= 3, "{} chunks", long.len());
    for i in 0..5 {
        assert_eq!(of(&points, &format!("ops:note:{i}")).len(), 1);
    }
    // Vectors and payload.
    let p = &of(&points, "ops:note:3")[0];
    assert_eq!(p["vector"]["dense"].as_array().map(Vec::len), Some(384));
    let norm: f64 = p["vector"]["dense"]
        .as_array()
        .map(|v| v.iter().map(|x| x.as_f64().unwrap_or(0.0).powi(2)).sum())
        .unwrap_or(0.0);
    assert!((norm - 1.0).abs() < 1e-3, "unit vectors: {norm}");
    let sparse = &p["vector"]["bm25"];
    let indices = sparse["indices"].as_array().cloned().unwrap_or_default();
    assert!(
        !indices.is_empty() && indices.len() == sparse["values"].as_array().map_or(0, Vec::len)
    );
    let payload = &p["payload"];
    assert_eq!(payload["title"], "Maintenance");
    assert_eq!(payload["source"], "ops");
    assert_eq!(payload["kind"], "note");
    assert_eq!(payload["text"], "Guest 3 asked for late check-in.");
    assert_eq!(payload["ordinal"], 0);
    assert_eq!(payload["metadata"]["guest"]["name"], "Ana");
    assert_eq!(payload["updated_at"], 1_700_000_000_000i64);
    assert!(
        payload["meta_terms"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "unit\u{1}12"))
    );
    let ordinals: BTreeSet<u64> = long
        .iter()
        .filter_map(|p| p["payload"]["ordinal"].as_u64())
        .collect();
    assert_eq!(ordinals.len(), long.len(), "one point per ordinal");

    // Each document also has one point without vectors holding the whole document.
    let documents: Vec<Value> = q
        .points(COLLECTION, false)
        .into_iter()
        .filter(|p| p["payload"]["concierge_document"].is_object())
        .collect();
    assert_eq!(documents.len(), 6);
    let long_doc = documents
        .iter()
        .find(|p| p["payload"]["document_id"] == "ops:long:1")
        .expect("the long document's point");
    assert_eq!(
        long_doc["payload"]["concierge_document"]["text"],
        long_text()
    );
    assert_eq!(long_doc["payload"]["concierge_document"]["version"], 1);

    // The same content again (newer): the same point ids, no duplicate.
    let before = ids(&long);
    let seq = ingest(&d, &document("ops:long:1", &long_text(), 1_700_000_000_500));
    let points = wait_for(&q, seq);
    let again = of(&points, "ops:long:1");
    assert_eq!(
        ids(&again),
        before,
        "deterministic ids: no duplicate points"
    );
    assert!(again.iter().all(|p| p["payload"]["version"] == 2));

    // The document shrinks to one chunk: its stale chunks go.
    let seq = ingest(
        &d,
        &document("ops:long:1", "Heater fixed.", 1_700_000_001_000),
    );
    let points = wait_for(&q, seq);
    let shrunk = of(&points, "ops:long:1");
    assert_eq!(shrunk.len(), 1, "{shrunk:#?}");
    assert_eq!(shrunk[0]["payload"]["text"], "Heater fixed.");

    // A delete removes every point of the document, and only of it.
    let (s, b) = d.request("DELETE", "/v1/documents/ops:note:2", None, &[]);
    assert_eq!(s, 202, "{b}");
    let seq = serde_json::from_str::<Value>(&b).expect("receipt")["seq"]
        .as_u64()
        .expect("seq");
    let points = wait_for(&q, seq);
    assert!(of(&points, "ops:note:2").is_empty());
    assert_eq!(points.len(), 4 + 1, "four notes and the shrunk document");

    // Status and metrics.
    let (status, sync) = qdrant_status(&d);
    assert_eq!(sync["state"], "ok", "{status}");
    assert!(sync["written"].as_u64().unwrap_or(0) >= 9, "{sync}");
    let (_, metrics) = d.get("/metrics");
    assert!(metrics.contains("concierge_sync_written_total{consumer=\"qdrant\"}"));
    assert!(metrics.contains("concierge_consumer_lag{consumer=\"qdrant\"}"));
}

#[test]
fn qdrant_faults_are_retried_while_ingest_keeps_acknowledging() {
    let q = QdrantServer::start();
    let dir = temp_dir();
    let d = start(&q, &dir.path().join("data"));
    // A first document makes the collection.
    let seq = ingest(&d, &document("ops:note:0", "first", 1_700_000_000_000));
    wait_for(&q, seq);
    // Two 503s, then a 429 with Retry-After: 1 on every upsert.
    q.fault(503, 2, "PUT", "/points", None);
    q.fault(429, 1, "PUT", "/points", Some(1));
    let mut last = 0;
    for i in 1..=10 {
        last = ingest(
            &d,
            &document(
                &format!("ops:note:{i}"),
                &format!("note {i}"),
                1_700_000_000_000,
            ),
        );
    }
    let points = wait_for(&q, last);
    assert_eq!(points.len(), 11);
    let (status, sync) = qdrant_status(&d);
    assert!(sync["retries"].as_u64().unwrap_or(0) >= 1, "{sync}");
    assert_eq!(sync["dead_letters"], 0, "{sync}");
    assert_eq!(status["dead_letters"], 0, "{status}");
    // A refusal (400) is final: the documents of that request go to the dead letters with
    // Qdrant's message, the others arrive.
    q.fault(400, 1, "PUT", "/points", None);
    let bad = ingest(&d, &document("ops:note:bad", "refused", 1_700_000_000_000));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let (_, body) = d.get("/v1/admin/status");
        let v: Value = serde_json::from_str(&body).expect("status");
        if v["dead_letters"] == 1 && watermark(&q) >= bad {
            break v;
        }
        assert!(Instant::now() < deadline, "no dead letter: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let letters = status["recent_dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        letters.iter().any(|l| l["entry"]["id"] == "ops:note:bad"
            && l["consumer"] == "qdrant"
            && l["error"]
                .as_str()
                .unwrap_or("")
                .contains("injected fault 400")),
        "{letters:?}"
    );
    let good = ingest(
        &d,
        &document("ops:note:good", "accepted", 1_700_000_000_000),
    );
    let points = wait_for(&q, good);
    assert!(of(&points, "ops:note:bad").is_empty());
    assert_eq!(of(&points, "ops:note:good").len(), 1);

    // The operator lists the letter, and retries it: a new entry, the letter gone, the
    // document in Qdrant.
    let (code, body) = d.get("/v1/admin/dead-letters?consumer=qdrant");
    assert_eq!(code, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).expect("letters");
    assert_eq!(listed["total"], 1, "{listed}");
    let letter = &listed["dead_letters"][0];
    assert_eq!(letter["entry"]["id"], "ops:note:bad", "{listed}");
    let letter_seq = letter["entry"]["seq"].as_u64().expect("seq");
    let (code, body) = d.request(
        "POST",
        &format!("/v1/admin/dead-letters/qdrant/{letter_seq}/retry"),
        None,
        &[],
    );
    assert_eq!(code, 202, "{body}");
    let retried = serde_json::from_str::<Value>(&body).expect("receipt")["seq"]
        .as_u64()
        .expect("seq");
    assert!(
        retried > good,
        "a new change-log entry: {retried} after {good}"
    );
    let points = wait_for(&q, retried);
    assert_eq!(
        of(&points, "ops:note:bad").len(),
        1,
        "the retried document arrived"
    );
    let (_, body) = d.get("/v1/admin/dead-letters");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("letters")["total"],
        0,
        "{body}"
    );
    let (code, body) = d.request(
        "POST",
        &format!("/v1/admin/dead-letters/qdrant/{letter_seq}/retry"),
        None,
        &[],
    );
    assert_eq!(code, 404, "a retried letter is gone: {body}");

    // Another refusal, dropped for good this time.
    q.fault(400, 1, "PUT", "/points", None);
    let dropped = ingest(&d, &document("ops:note:drop", "refused", 1_700_000_000_000));
    let deadline = Instant::now() + Duration::from_secs(60);
    while watermark(&q) < dropped || d.get("/v1/admin/status").1.contains("\"dead_letters\":0") {
        assert!(Instant::now() < deadline, "no second dead letter");
        std::thread::sleep(Duration::from_millis(100));
    }
    let path = format!("/v1/admin/dead-letters/qdrant/{dropped}");
    assert_eq!(d.request("DELETE", &path, None, &[]).0, 204);
    assert_eq!(d.request("DELETE", &path, None, &[]).0, 404);
    let (code, body) = d.request("DELETE", "/v1/admin/dead-letters/qdrant/x", None, &[]);
    assert_eq!(code, 422, "{body}");
    let (_, body) = d.get("/v1/admin/status");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("status")["dead_letters"],
        0
    );
}

#[test]
fn qdrant_down_at_start_delays_the_sync_and_never_the_daemon() {
    // Nothing listens on the port yet.
    let port = concierge_tests::free_port();
    let dir = temp_dir();
    let url = format!("http://127.0.0.1:{port}");
    let d = start_with(url.as_str(), &dir.path().join("data"), &[]);
    let mut last = 0;
    for i in 0..20 {
        last = ingest(
            &d,
            &document(
                &format!("ops:note:{i}"),
                "kept while Qdrant is down",
                1_700_000_000_000,
            ),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (v, sync) = qdrant_status(&d);
        if sync["state"] == "degraded" {
            assert!(
                sync["last_error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("cannot be reached"),
                "{sync}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never degraded: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(d.get("/readyz").0, 200, "ready while Qdrant is down");
    // Qdrant comes up on that port: everything arrives, once.
    let q = QdrantServer::start_on(port);
    let points = wait_for(&q, last);
    assert_eq!(points.len(), 20);
    assert_eq!(ids(&points).len(), 20);
}

#[test]
fn a_sigkill_during_a_stream_leaves_every_acknowledged_chunk_in_qdrant_once() {
    let q = QdrantServer::start();
    let dir = temp_dir();
    let data = dir.path().join("data");
    let d = start(&q, &data);
    let mut acknowledged = std::collections::BTreeMap::new();
    for i in 0..90 {
        let id = format!("ops:stream:{}", i % 60);
        let (s, _) = d.post_json(
            "/v1/documents",
            &document(
                &id,
                &format!("revision {i} of the heater log"),
                1_700_000_000_000 + i,
            ),
        );
        if s == 202 {
            acknowledged.insert(id, format!("revision {i} of the heater log"));
        }
    }
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &d.pid().to_string()])
        .status();
    drop(d);
    let d = start(&q, &data);
    let (_, body) = d.get("/v1/admin/status");
    let durable = serde_json::from_str::<Value>(&body).expect("status")["durable_seq"]
        .as_u64()
        .expect("durable_seq");
    let points = wait_for(&q, durable);
    // One point per (one-chunk) document, at its latest text: redelivery made no duplicate.
    assert_eq!(points.len(), acknowledged.len());
    assert_eq!(ids(&points).len(), acknowledged.len());
    for (id, text) in &acknowledged {
        let p = of(&points, id);
        assert_eq!(p.len(), 1, "{id}");
        assert_eq!(p[0]["payload"]["text"], text.as_str(), "{id}");
    }
}

#[test]
fn every_fixture_webhook_lands_as_points_with_the_documents_payload() {
    const AIRCALL_TOKEN: &str = "wh_tok_fixture_3f9c2a7b81";
    const GUESTY_SECRET: &str = "whsec_Y29uY2llcmdlLWZpeHR1cmUtc2VjcmV0LTMyYnl0ZXM=";
    let q = QdrantServer::start();
    let dir = temp_dir();
    let url = q.url();
    let d = start_with(
        url.as_str(),
        &dir.path().join("data"),
        &[
            ("CONCIERGE_AIRCALL__TOKENS", AIRCALL_TOKEN),
            ("CONCIERGE_GUESTY__SECRET", GUESTY_SECRET),
        ],
    );
    concierge_tests::post_fixture_webhooks(&d, GUESTY_SECRET, "msg_q_");
    let (_, body) = d.get("/v1/admin/status");
    let durable = serde_json::from_str::<Value>(&body).expect("status")["durable_seq"]
        .as_u64()
        .expect("durable_seq");
    let points = wait_for(&q, durable);
    for id in [
        "aircall:call:987654321",
        "guesty:reservation:6651f0c2a1b2c3d4e5f60718",
    ] {
        let stored: Value =
            serde_json::from_str(&d.get(&format!("/v1/documents/{id}")).1).expect("doc");
        let mine = of(&points, id);
        assert!(!mine.is_empty(), "{id} has no point");
        for p in &mine {
            let payload = &p["payload"];
            assert_eq!(payload["title"], stored["title"], "{id}");
            assert_eq!(payload["source"], stored["source"], "{id}");
            assert_eq!(payload["kind"], stored["kind"], "{id}");
            assert_eq!(payload["metadata"], stored["metadata"], "{id}");
            assert_eq!(payload["version"], stored["version"], "{id}");
            assert_eq!(payload["updated_at"], stored["updated_at"], "{id}");
            let text = payload["text"].as_str().unwrap_or("");
            assert!(!text.is_empty(), "{id}: a chunk of the document's text");
        }
    }
}

#[test]
fn a_collection_made_for_other_vectors_is_refused_at_start_with_the_reason() {
    let q = QdrantServer::start();
    let (s, b) = q.call(
        "PUT",
        &format!("/collections/{COLLECTION}"),
        Some(&json!({"vectors": {"dense": {"size": 8, "distance": "Cosine"}}, "sparse_vectors": {"bm25": {"modifier": "idf"}}})),
    );
    assert_eq!(s, 200, "{b}");
    let dir = temp_dir();
    let out = std::process::Command::new(concierge_tests::binary("concierge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--model-dir"])
        .arg(model_dir())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("CONCIERGE_QDRANT__URL", q.url())
        .current_dir(workspace_root())
        .output()
        .expect("run concierge serve");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("size 8") && err.contains("needs size 384"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "it must not claim to listen");
}

#[test]
fn the_qdrant_search_backend_needs_qdrant_url() {
    let dir = temp_dir();
    let out = std::process::Command::new(concierge_tests::binary("concierge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("CONCIERGE_SEARCH__BACKEND", "qdrant")
        .current_dir(workspace_root())
        .output()
        .expect("run concierge serve");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("search.backend = \"qdrant\" needs qdrant.url"),
        "{out:?}"
    );
}

#[test]
fn a_collection_another_node_made_meanwhile_409_is_checked_and_used_with_the_api_key() {
    use concierge_tests::{FakeResponse, FakeServer};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let looked = AtomicUsize::new(0);
    let ok = |result: Value| {
        FakeResponse::json(
            200,
            json!({"result": result, "status": "ok", "time": 0.001}),
        )
    };
    let fake = FakeServer::start(move |req| {
        let path = req.path.split('?').next().unwrap_or("").to_owned();
        match (req.method.as_str(), path.as_str()) {
            // The first look finds nothing; by the time we create it, another node has.
            ("GET", "/collections/concierge_chunks")
                if looked.fetch_add(1, Ordering::SeqCst) == 0 =>
            {
                FakeResponse::json(
                    404,
                    json!({"status": {"error": "Not found: Collection `concierge_chunks` doesn't exist!"}, "time": 0.0}),
                )
            }
            ("GET", "/collections/concierge_chunks") => {
                ok(json!({"status": "green", "config": {"params": {
                "vectors": {"dense": {"size": 384, "distance": "Cosine"}},
                "sparse_vectors": {"bm25": {"modifier": "idf"}}}}}))
            }
            ("PUT", "/collections/concierge_chunks") => FakeResponse::json(
                409,
                json!({"status": {"error": "Wrong input: Collection `concierge_chunks` already exists!"}, "time": 0.0}),
            ),
            ("POST", "/collections/concierge_chunks/points") => ok(json!([])),
            _ => ok(json!({"operation_id": 1, "status": "completed"})),
        }
    });
    let dir = temp_dir();
    let d = start_with(
        fake.base.as_str(),
        &dir.path().join("data"),
        &[("CONCIERGE_QDRANT__API_KEY", "qk-secret-1")],
    );
    ingest(
        &d,
        &document("ops:note:1", "pool heater", 1_700_000_000_000),
    );
    let upserts = fake.wait_for(
        "/collections/concierge_chunks/points?wait=true",
        2,
        Duration::from_secs(60),
    );
    let points: Vec<Value> = upserts
        .iter()
        .filter(|r| r.method == "PUT")
        .flat_map(|r| r.json()["points"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(
        points
            .iter()
            .any(|p| p["payload"]["document_id"] == "ops:note:1"),
        "{points:#?}"
    );
    assert!(
        points
            .iter()
            .any(|p| p["payload"]["concierge_watermark"] == true)
    );
    // The payload indexes were asked for, and every request carried the API key.
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.path.starts_with("/collections/concierge_chunks/index"))
    );
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.header("api-key") == Some("qk-secret-1"))
    );
}

/// A node that searches and answers through Qdrant (`search.backend = "qdrant"`), with a data
/// directory of its own that it never writes.
fn start_searching_through(q: &QdrantServer, data_dir: &std::path::Path) -> Daemon {
    let url = q.url();
    start_with(
        url.as_str(),
        data_dir,
        &[("CONCIERGE_SEARCH__BACKEND", "qdrant")],
    )
}

fn top(d: &Daemon, query: &str, mode: &str, filter: Value, min_seq: u64) -> Vec<String> {
    let (s, b) = d.post_json(
        "/v1/search",
        &json!({"query": query, "k": 5, "mode": mode, "filter": filter, "min_seq": min_seq})
            .to_string(),
    );
    assert_eq!(s, 200, "{query}: {b}");
    serde_json::from_str::<Value>(&b).expect("hits")["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| h["document"]["id"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn searches_through_qdrant_find_what_the_embedded_indexes_find_and_answers_cite_it() {
    const AIRCALL_TOKEN: &str = "wh_tok_fixture_3f9c2a7b81";
    const GUESTY_SECRET: &str = "whsec_Y29uY2llcmdlLWZpeHR1cmUtc2VjcmV0LTMyYnl0ZXM=";
    let q = QdrantServer::start();
    let dir = temp_dir();
    let url = q.url();
    let primary = start_with(
        url.as_str(),
        &dir.path().join("primary"),
        &[
            ("CONCIERGE_AIRCALL__TOKENS", AIRCALL_TOKEN),
            ("CONCIERGE_GUESTY__SECRET", GUESTY_SECRET),
        ],
    );
    concierge_tests::post_fixture_webhooks(&primary, GUESTY_SECRET, "msg_qs_");
    for i in 0..8 {
        ingest(
            &primary,
            &document(
                &format!("ops:note:{i}"),
                &format!("Unit {i}: the dishwasher was serviced and towels restocked."),
                1_700_000_000_000,
            ),
        );
    }
    let (_, body) = primary.get("/v1/admin/status");
    let durable = serde_json::from_str::<Value>(&body).expect("status")["durable_seq"]
        .as_u64()
        .expect("durable_seq");
    let through = start_searching_through(&q, &dir.path().join("through"));

    // Meaning-only and rare-token queries: the same top document on both backends.
    for (query, expected) in [
        ("backup code 4471 key box", "aircall:call:987654321"),
        ("HMX8Q2P4ZT", "guesty:reservation:6651f0c2a1b2c3d4e5f60718"),
        (
            "flight lands late, where do we park?",
            "guesty:conversation:6651f0c2a1b2c3d4e5f69999",
        ),
        (
            "bright flat above the beach with a balcony",
            "guesty:listing:64aa00bb11cc22dd33ee44ff",
        ),
    ] {
        let local = top(&primary, query, "hybrid", json!({}), durable);
        let remote = top(&through, query, "hybrid", json!({}), durable);
        assert_eq!(
            local.first().map(String::as_str),
            Some(expected),
            "local: {query}"
        );
        assert_eq!(
            remote.first().map(String::as_str),
            Some(expected),
            "qdrant: {query} {remote:?}"
        );
    }
    // Each leg alone, and filters, through Qdrant.
    assert_eq!(
        top(&through, "HMX8Q2P4ZT", "keyword", json!({}), 0)
            .first()
            .map(String::as_str),
        Some("guesty:reservation:6651f0c2a1b2c3d4e5f60718")
    );
    assert_eq!(
        top(
            &through,
            "bright flat above the beach with a balcony",
            "dense",
            json!({}),
            0
        )
        .first()
        .map(String::as_str),
        Some("guesty:listing:64aa00bb11cc22dd33ee44ff")
    );
    let only_ops = top(
        &through,
        "dishwasher towels",
        "hybrid",
        json!({"source": "ops", "metadata": {"unit": 12}}),
        0,
    );
    assert_eq!(only_ops.len(), 5, "{only_ops:?}");
    assert!(
        only_ops.iter().all(|id| id.starts_with("ops:note:")),
        "{only_ops:?}"
    );
    let none = top(
        &through,
        "dishwasher towels",
        "hybrid",
        json!({"source": "guesty", "kind": "note"}),
        0,
    );
    assert!(none.is_empty(), "{none:?}");
    // Hydrated from the document points: the whole document, its best chunk.
    let (s, b) = through.post_json(
        "/v1/search",
        &json!({"query": "backup code 4471 key box", "k": 1, "include_text": true}).to_string(),
    );
    assert_eq!(s, 200, "{b}");
    let hit = &serde_json::from_str::<Value>(&b).expect("hits")["hits"][0];
    let stored: Value =
        serde_json::from_str(&primary.get("/v1/documents/aircall:call:987654321").1).expect("doc");
    assert_eq!(hit["document"], stored);
    assert!(
        hit["chunk"]["snippet"]["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{hit}"
    );

    // Read-your-writes: a write on the primary, searched through Qdrant with its seq.
    let seq = ingest(
        &primary,
        &document(
            "ops:note:fresh",
            "The sauna heater in the garden studio tripped the breaker.",
            1_700_000_000_000,
        ),
    );
    assert_eq!(
        top(&through, "sauna breaker tripped", "hybrid", json!({}), seq)
            .first()
            .map(String::as_str),
        Some("ops:note:fresh")
    );
    // A sequence Qdrant will not reach in time: the engine's own answer (bounded wait).
    let (s, b) = through.post_json(
        "/v1/search",
        &json!({"query": "x", "min_seq": seq + 1000}).to_string(),
    );
    assert!(matches!(s, 503 | 504), "{s} {b}");

    // An answer through Qdrant cites the right document.
    let (s, b) = through.post_json(
        "/v1/ask",
        &json!({"question": "What is the backup code for the key box?"}).to_string(),
    );
    assert_eq!(s, 200, "{b}");
    let answer: Value = serde_json::from_str(&b).expect("answer");
    assert_eq!(answer["known"], true, "{answer}");
    assert!(
        answer["sources"].as_array().is_some_and(|s| s
            .iter()
            .any(|s| s["document"]["id"] == "aircall:call:987654321"
                || s["id"] == "aircall:call:987654321")),
        "{answer}"
    );
}

/// A replica: no store, searches through `q`, writes to `primary`.
fn start_replica(q: &QdrantServer, primary: &Daemon, data_dir: &std::path::Path) -> Daemon {
    let url = q.url();
    let primary_url = format!("http://{}", primary.address);
    start_with(
        url.as_str(),
        data_dir,
        &[
            ("CONCIERGE_CLUSTER__ROLE", "replica"),
            ("CONCIERGE_CLUSTER__PRIMARY_URL", primary_url.as_str()),
            ("CONCIERGE_CLUSTER__PRIMARY_TOKEN", "primary-admin"),
            ("CONCIERGE_AUTH__API_TOKENS", "replica-admin"),
            ("CONCIERGE_SEARCH__BACKEND", "qdrant"),
        ],
    )
}

fn with_token(d: &Daemon, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    d.request(
        method,
        path,
        body,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer replica-admin"),
        ],
    )
}

#[test]
fn replicas_forward_writes_to_the_primary_read_through_qdrant_and_keep_searching_when_it_dies() {
    const AIRCALL_TOKEN: &str = "wh_tok_fixture_3f9c2a7b81";
    let q = QdrantServer::start();
    let dir = temp_dir();
    let url = q.url();
    let primary = start_with(
        url.as_str(),
        &dir.path().join("primary"),
        &[
            ("CONCIERGE_AIRCALL__TOKENS", AIRCALL_TOKEN),
            ("CONCIERGE_AUTH__API_TOKENS", "primary-admin"),
        ],
    );
    let a = start_replica(&q, &primary, &dir.path().join("replica-a"));
    let b = start_replica(&q, &primary, &dir.path().join("replica-b"));
    let (s, ready) = b.get("/readyz");
    assert_eq!(s, 200, "{ready}");
    assert!(ready.contains("\"replica\""), "{ready}");

    // A webhook posted to replica A: acknowledged with the primary's seq...
    let call =
        std::fs::read_to_string(concierge_tests::fixture("webhooks/aircall-call.ended.json"))
            .expect("fixture");
    let (s, body) = a.post_json("/v1/webhooks/aircall", &call);
    assert_eq!(s, 202, "{body}");
    let seq = serde_json::from_str::<Value>(&body).expect("receipt")["seq"]
        .as_u64()
        .expect("the primary's seq");
    // ...and found on replica B with that min_seq.
    let (s, body) = with_token(
        &b,
        "POST",
        "/v1/search",
        Some(&json!({"query": "who called about the key box", "min_seq": seq}).to_string()),
    );
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("aircall:call:987654321"), "{body}");
    // A refused webhook is the primary's refusal, passed back.
    let (s, body) = a.post_json(
        "/v1/webhooks/aircall",
        &call.replace(AIRCALL_TOKEN, "wrong"),
    );
    assert_eq!(s, 403, "{body}");

    // A document through replica A, read back on replica B (from Qdrant) and on the primary.
    let (s, body) = with_token(
        &a,
        "POST",
        "/v1/documents",
        Some(&document(
            "ops:note:via-a",
            "The boiler in unit 7 was bled on Monday.",
            1_700_000_000_000,
        )),
    );
    assert_eq!(s, 202, "{body}");
    let seq = serde_json::from_str::<Value>(&body).expect("receipt")["seq"]
        .as_u64()
        .expect("seq");
    let (s, body) = with_token(
        &b,
        "POST",
        "/v1/search",
        Some(&json!({"query": "boiler bled", "k": 1, "min_seq": seq}).to_string()),
    );
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("ops:note:via-a"), "{body}");
    let (s, on_b) = with_token(&b, "GET", "/v1/documents/ops:note:via-a", None);
    assert_eq!(s, 200, "{on_b}");
    let on_primary = primary
        .request(
            "GET",
            "/v1/documents/ops:note:via-a",
            None,
            &[("Authorization", "Bearer primary-admin")],
        )
        .1;
    assert_eq!(
        serde_json::from_str::<Value>(&on_b).expect("doc"),
        serde_json::from_str::<Value>(&on_primary).expect("doc")
    );
    // A replica's token is checked by the replica itself.
    let (s, _) = b.request("GET", "/v1/documents/ops:note:via-a", None, &[]);
    assert_eq!(s, 401);

    // An answer on a replica cites the right document.
    let (s, body) = with_token(
        &b,
        "POST",
        "/v1/ask",
        Some(
            &json!({"question": "What was done to the boiler in unit 7?", "min_seq": seq})
                .to_string(),
        ),
    );
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("ops:note:via-a"), "{body}");
    // No store on either replica.
    assert!(!dir.path().join("replica-a").exists());
    assert!(!dir.path().join("replica-b").exists());

    // The primary dies: writes get a clear 503, searches go on.
    primary.kill();
    let (s, body) = with_token(
        &a,
        "POST",
        "/v1/documents",
        Some(&document(
            "ops:note:lost",
            "never stored",
            1_700_000_000_000,
        )),
    );
    assert_eq!(s, 503, "{body}");
    assert!(
        body.contains("primary") && body.contains("cannot be reached"),
        "{body}"
    );
    let (s, body) = a.post_json("/v1/webhooks/aircall", &call);
    assert_eq!(s, 503, "{body}");
    for replica in [&a, &b] {
        let (s, body) = with_token(
            replica,
            "POST",
            "/v1/search",
            Some(&json!({"query": "boiler bled", "k": 1}).to_string()),
        );
        assert_eq!(s, 200, "{body}");
        assert!(body.contains("ops:note:via-a"), "{body}");
    }
    assert_eq!(
        a.get("/readyz").0,
        200,
        "a replica's readiness is Qdrant's and the model's"
    );
}

#[test]
fn a_replica_that_would_search_its_own_store_is_refused_at_start() {
    let dir = temp_dir();
    let out = std::process::Command::new(concierge_tests::binary("concierge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("CONCIERGE_CLUSTER__ROLE", "replica")
        .env("CONCIERGE_CLUSTER__PRIMARY_URL", "http://127.0.0.1:9")
        .current_dir(workspace_root())
        .output()
        .expect("run concierge serve");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("search.backend = \"qdrant\""),
        "{out:?}"
    );
}

#[test]
fn a_qdrant_slower_than_qdrant_timeout_ms_is_retried_like_an_outage_and_nothing_is_lost() {
    use concierge_tests::{FakeResponse, FakeServer};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let slow = Arc::new(AtomicBool::new(true));
    let slow_in = slow.clone();
    let ok = |result: Value| {
        FakeResponse::json(
            200,
            json!({"result": result, "status": "ok", "time": 0.001}),
        )
    };
    let fake = FakeServer::start(move |req| {
        let path = req.path.split('?').next().unwrap_or("").to_owned();
        match (req.method.as_str(), path.as_str()) {
            ("GET", "/collections/concierge_chunks") => {
                ok(json!({"status": "green", "config": {"params": {
                "vectors": {"dense": {"size": 384, "distance": "Cosine"}},
                "sparse_vectors": {"bm25": {"modifier": "idf"}}}}}))
            }
            ("POST", "/collections/concierge_chunks/points") => ok(json!([])),
            ("PUT", "/collections/concierge_chunks/points") if slow_in.load(Ordering::SeqCst) => {
                ok(json!({"operation_id": 1, "status": "completed"}))
                    .delayed(Duration::from_millis(1500))
            }
            _ => ok(json!({"operation_id": 1, "status": "completed"})),
        }
    });
    let dir = temp_dir();
    let d = start_with(
        fake.base.as_str(),
        &dir.path().join("data"),
        &[("CONCIERGE_QDRANT__TIMEOUT_MS", "400")],
    );
    ingest(
        &d,
        &document("ops:note:slow", "pool heater", 1_700_000_000_000),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, sync) = qdrant_status(&d);
        if sync["state"] == "degraded" {
            assert!(
                sync["last_error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("timeout"),
                "{sync}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never degraded: {sync}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Qdrant is fast again: the document arrives, the consumer recovers, nothing dead-lettered.
    slow.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, sync) = qdrant_status(&d);
        if sync["state"] == "ok" && consumer_caught_up(&status) {
            assert_eq!(status["dead_letters"], 0, "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let upserted = fake
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.starts_with("/collections/concierge_chunks/points"))
        .any(|r| r.body.contains("ops:note:slow"));
    assert!(upserted);
}

fn consumer_caught_up(status: &Value) -> bool {
    status["consumers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "qdrant"))
        .is_some_and(|c| c["lag"] == 0)
}
