//! Firestore write-behind against the real Firestore emulator with the real daemon: documents
//! arrive typed, updates and deletes follow, an older version never overwrites a newer, a
//! SIGKILL loses nothing, and an outage only delays (ingest keeps acknowledging).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use concierge_tests::{
    Daemon, FakeRequest, FakeResponse, FakeServer, FirestoreEmulator, http_exchange, model_dir,
    temp_dir, workspace_root,
};
use serde_json::{Value, json};

const COLLECTION: &str = "concierge_documents";

fn start(emulator_host: &str, data_dir: &std::path::Path) -> Daemon {
    start_with(emulator_host, data_dir, &[])
}

fn start_with(emulator_host: &str, data_dir: &std::path::Path, extra: &[(&str, &str)]) -> Daemon {
    let model = model_dir();
    let mut env = vec![
        ("CONCIERGE_FIRESTORE__PROJECT_ID", "concierge-test"),
        ("CONCIERGE_FIRESTORE__EMULATOR_HOST", emulator_host),
    ];
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

/// Forwards a request to the emulator and answers with its answer.
fn forward(emulator: &str, req: &FakeRequest) -> (u16, String) {
    let headers: Vec<(&str, &str)> = req
        .headers
        .iter()
        .filter(|(k, _)| k == "authorization" || k == "content-type")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let reply = http_exchange(emulator, &req.method, &req.path, Some(&req.body), &headers);
    (reply.status, reply.body)
}

fn document(id: &str, text: &str, updated_at: i64) -> String {
    json!({
        "id": id,
        "title": "Maintenance",
        "text": text,
        "updated_at": updated_at,
        "metadata": {"unit": 12, "urgent": true, "tags": ["pool", "heater"], "guest": {"name": "Ana"}}
    })
    .to_string()
}

/// Firestore's documents by our id (the `id` field).
fn by_id(docs: &[Value]) -> BTreeMap<String, Value> {
    docs.iter()
        .filter_map(|d| {
            Some((
                d["fields"]["id"]["stringValue"].as_str()?.to_owned(),
                d["fields"].clone(),
            ))
        })
        .collect()
}

fn version(fields: &Value) -> u64 {
    fields["version"]["integerValue"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn documents_arrive_typed_updates_and_deletes_follow_and_an_older_version_never_overwrites() {
    let emulator = FirestoreEmulator::start();
    let dir = temp_dir();
    let d = start(&emulator.host, &dir.path().join("data"));
    let ids: Vec<String> = (0..40).map(|i| format!("ops:note:{i}/a%b")).collect();
    for id in &ids {
        let (s, b) = d.post_json(
            "/v1/documents",
            &document(id, "the pool heater needs a technician", 1_700_000_000_000),
        );
        assert_eq!(s, 202, "{b}");
    }
    let docs = emulator.wait_for(COLLECTION, Duration::from_secs(30), |docs| {
        by_id(docs).len() == ids.len()
    });
    let all = by_id(&docs);
    let first = &all[&ids[0]];
    // Typed fields, and the id Firestore could not hold as it is ('/') read back from its own field.
    assert_eq!(
        first["text"]["stringValue"],
        "the pool heater needs a technician"
    );
    assert_eq!(
        first["updated_at"]["timestampValue"],
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(
        first["metadata"]["mapValue"]["fields"]["unit"]["integerValue"],
        "12"
    );
    assert_eq!(
        first["metadata"]["mapValue"]["fields"]["urgent"]["booleanValue"],
        true
    );
    assert_eq!(
        first["metadata"]["mapValue"]["fields"]["guest"]["mapValue"]["fields"]["name"]["stringValue"],
        "Ana"
    );
    assert_eq!(first["source"]["stringValue"], "ops");
    assert_eq!(version(first), 1);
    let name = docs
        .iter()
        .find(|x| x["fields"]["id"]["stringValue"] == ids[0].as_str())
        .expect("doc")["name"]
        .clone();
    assert!(
        name.as_str()
            .expect("name")
            .ends_with("/concierge_documents/ops:note:0%2Fa%25b"),
        "{name}"
    );

    // An update arrives; an older one changes nothing (here or there); a delete deletes.
    let (s, _) = d.post_json(
        "/v1/documents",
        &document(&ids[1], "fixed on tuesday", 1_700_000_100_000),
    );
    assert_eq!(s, 202);
    let (s, _) = d.post_json(
        "/v1/documents",
        &document(&ids[1], "an old, late copy", 1_600_000_000_000),
    );
    assert_eq!(s, 202);
    let (s, b) = d.request(
        "DELETE",
        &format!(
            "/v1/documents/{}",
            ids[2].replace('/', "%2F").replace("%b", "%25b")
        ),
        None,
        &[],
    );
    assert!(s == 200 || s == 202, "{s} {b}");
    let docs = emulator.wait_for(COLLECTION, Duration::from_secs(30), |docs| {
        let m = by_id(docs);
        !m.contains_key(&ids[2]) && m.get(&ids[1]).is_some_and(|f| version(f) == 2)
    });
    let m = by_id(&docs);
    assert_eq!(m[&ids[1]]["text"]["stringValue"], "fixed on tuesday");
    assert_eq!(m.len(), ids.len() - 1);
    // Status: the consumer caught up, nothing dead-lettered.
    let (_, status) = d.get("/v1/admin/status");
    let status: Value = serde_json::from_str(&status).expect("status");
    let sync = &status["sync"][0];
    assert_eq!(sync["name"], "firestore", "{status}");
    assert_eq!(sync["state"], "ok");
    assert_eq!(status["dead_letters"], 0);
}

#[test]
fn a_sigkill_during_a_stream_loses_nothing_acknowledged_in_firestore() {
    let emulator = FirestoreEmulator::start();
    let dir = temp_dir();
    let data = dir.path().join("data");
    let d = start(&emulator.host, &data);
    let mut acknowledged = BTreeMap::new();
    for i in 0..120 {
        let id = format!("ops:stream:{}", i % 80);
        let (s, _) = d.post_json(
            "/v1/documents",
            &document(&id, &format!("revision {i}"), 1_700_000_000_000 + i),
        );
        if s == 202 {
            acknowledged.insert(id, format!("revision {i}"));
        }
        if i == 100 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &d.pid().to_string()])
                .status();
            break;
        }
    }
    drop(d);
    let d = start(&emulator.host, &data);
    let docs = emulator.wait_for(COLLECTION, Duration::from_secs(60), |docs| {
        let m = by_id(docs);
        acknowledged.iter().all(|(id, text)| {
            m.get(id)
                .is_some_and(|f| f["text"]["stringValue"] == text.as_str())
        })
    });
    // Exactly once: one Firestore document per id (names are unique), the latest text each.
    assert_eq!(by_id(&docs).len(), acknowledged.len());
    assert_eq!(docs.len(), acknowledged.len());
    drop(d);
}

#[test]
fn ingest_keeps_acknowledging_while_firestore_is_down_and_everything_arrives_once_it_is_back() {
    // An address with nothing listening yet: the emulator comes later, on the same port.
    let port = concierge_tests::free_port();
    let host = format!("127.0.0.1:{port}");
    let dir = temp_dir();
    let d = start(&host, &dir.path().join("data"));
    for i in 0..30 {
        let (s, b) = d.post_json(
            "/v1/documents",
            &document(
                &format!("ops:outage:{i}"),
                "written while down",
                1_700_000_000_000,
            ),
        );
        assert_eq!(s, 202, "ingest never waits for Firestore: {b}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let (_, body) = d.get("/v1/admin/status");
        let v: Value = serde_json::from_str(&body).expect("status");
        if v["sync"][0]["state"] == "degraded" || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["sync"][0]["state"], "degraded", "{status}");
    assert!(
        status["sync"][0]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("cannot be reached"),
        "{status}"
    );
    let lag = status["consumers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "firestore"))
        .map(|c| c["lag"].as_u64().unwrap_or(0));
    assert!(lag.is_some_and(|l| l >= 30), "{status}");
    assert_eq!(d.get("/readyz").0, 200, "ready during an outage");
    // The lag in seconds counts from the oldest entry still waiting, in status and metrics.
    std::thread::sleep(Duration::from_millis(1100));
    let (_, body) = d.get("/v1/admin/status");
    let status: Value = serde_json::from_str(&body).expect("status");
    let waited = status["consumers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "firestore"))
        .and_then(|c| c["lag_seconds"].as_f64())
        .unwrap_or(0.0);
    assert!(waited >= 1.0, "{status}");
    let (_, metrics) = d.get("/metrics");
    assert!(
        metrics.contains("concierge_consumer_lag_seconds{consumer=\"firestore\"}"),
        "{metrics}"
    );

    let emulator = FirestoreEmulator::start_on(port);
    let docs = emulator.wait_for(COLLECTION, Duration::from_secs(60), |docs| {
        by_id(docs).len() == 30
    });
    assert_eq!(docs.len(), 30);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = d.get("/v1/admin/status");
        let v: Value = serde_json::from_str(&body).expect("status");
        if v["sync"][0]["state"] == "ok" {
            break;
        }
        assert!(Instant::now() < deadline, "still degraded: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_node_rebuilt_from_firestore_holds_the_same_documents_and_finds_them() {
    let emulator = FirestoreEmulator::start();
    let dir = temp_dir();
    let d = start(&emulator.host, &dir.path().join("a"));
    let ids: Vec<String> = (0..25)
        .map(|i| format!("guesty:reservation:r{i}"))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let (s, _) = d.post_json(
            "/v1/documents",
            &document(
                id,
                &format!("late check-in for booking {i}, pool heater"),
                1_700_000_000_000 + i as i64,
            ),
        );
        assert_eq!(s, 202);
    }
    emulator.wait_for(COLLECTION, Duration::from_secs(30), |docs| {
        by_id(docs).len() == ids.len()
    });
    let originals: Vec<Value> = ids
        .iter()
        .map(|id| serde_json::from_str(&d.get(&format!("/v1/documents/{id}")).1).expect("doc"))
        .collect();
    drop(d);

    let restored = dir.path().join("b");
    let model = model_dir();
    let run = |data: &std::path::Path| {
        std::process::Command::new(concierge_tests::binary("concierge"))
            .args(["restore-from-firestore", "--data-dir"])
            .arg(data)
            .args(["--model-dir", model.to_str().expect("utf-8")])
            .env("CONCIERGE_FIRESTORE__PROJECT_ID", "concierge-test")
            .env("CONCIERGE_FIRESTORE__EMULATOR_HOST", &emulator.host)
            .current_dir(workspace_root())
            .output()
            .expect("run restore-from-firestore")
    };
    let out = run(&restored);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("restored 25 documents"),
        "{out:?}"
    );
    // A directory with data in it is refused.
    let again = run(&restored);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is not empty"),
        "{again:?}"
    );

    let model = model_dir();
    let node = Daemon::start_with_env(
        &[
            "--model-dir",
            model.to_str().expect("utf-8"),
            "--data-dir",
            restored.to_str().expect("utf-8"),
        ],
        &[],
        &workspace_root(),
    );
    for (id, original) in ids.iter().zip(&originals) {
        let back: Value =
            serde_json::from_str(&node.get(&format!("/v1/documents/{id}")).1).expect("doc");
        for field in [
            "id",
            "title",
            "text",
            "metadata",
            "updated_at",
            "source",
            "kind",
        ] {
            assert_eq!(back[field], original[field], "{id}: {field}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, body) = node.post_json(
            "/v1/search",
            &json!({"query": "late check-in booking 7", "k": 5}).to_string(),
        );
        assert_eq!(s, 200, "{body}");
        if body.contains("guesty:reservation:r7") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restored node never found it: {body}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn throttling_and_per_write_errors_are_retried_or_dead_lettered_and_requests_keep_firestores_caps()
{
    let emulator = FirestoreEmulator::start();
    let upstream = emulator.host.clone();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let times = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let seen = times.clone();
    // In front of the emulator: 429 with Retry-After, then 503, then per-write faults:
    // ABORTED once for one document, INVALID_ARGUMENT always for another.
    let proxy = FakeServer::start(move |req| {
        if !req.path.ends_with(":batchWrite") {
            let (status, body) = forward(&upstream, req);
            return FakeResponse::json(status, serde_json::from_str(&body).unwrap_or(Value::Null));
        }
        if let Ok(mut t) = seen.lock() {
            t.push(Instant::now());
        }
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match n {
            0 => return FakeResponse::json(429, json!({"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}})).header("Retry-After", "1"),
            1 => return FakeResponse::json(503, json!({"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}})),
            _ => {}
        }
        let writes = req.json()["writes"].as_array().cloned().unwrap_or_default();
        let target = |w: &Value| {
            w["update"]["name"]
                .as_str()
                .or(w["delete"].as_str())
                .unwrap_or("")
                .to_owned()
        };
        // The write Firestore refuses is not forwarded (Firestore would not apply it either).
        let refused = |w: &Value| {
            target(w).ends_with("ops:bad:1") || (target(w).ends_with("ops:flaky:1") && n == 2)
        };
        let kept: Vec<Value> = writes.iter().filter(|w| !refused(w)).cloned().collect();
        let forwarded = FakeRequest {
            body: json!({"writes": kept}).to_string(),
            ..req.clone()
        };
        let (status, body) = forward(&upstream, &forwarded);
        let upstream_answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if status != 200 {
            return FakeResponse::json(status, upstream_answer);
        }
        let mut statuses = upstream_answer["status"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter();
        let mut answer = json!({"writeResults": [], "status": []});
        for w in &writes {
            let s = if target(w).ends_with("ops:bad:1") {
                json!({"code": 3, "message": "Property text contains an invalid nested entity"})
            } else if refused(w) {
                json!({"code": 10, "message": "Transaction contention, please retry"})
            } else {
                statuses.next().unwrap_or(json!({}))
            };
            answer["status"].as_array_mut().expect("array").push(s);
        }
        FakeResponse::json(status, answer)
    });
    let dir = temp_dir();
    let host = proxy.base.trim_start_matches("http://").to_owned();
    let d = start_with(
        &host,
        &dir.path().join("data"),
        &[("CONCIERGE_SERVER__MAX_BODY_BYTES", "20000000")],
    );
    let mut ids = vec!["ops:flaky:1".to_owned(), "ops:bad:1".to_owned()];
    ids.extend((0..20).map(|i| format!("ops:note:{i}")));
    for id in &ids {
        let (s, _) = d.post_json(
            "/v1/documents",
            &document(id, "some text", 1_700_000_000_000),
        );
        assert_eq!(s, 202);
    }
    // Large documents: twelve of ~0.9 MB (more than 10 MiB together) and one over 1 MiB.
    let big = "x".repeat(900_000);
    for i in 0..12 {
        let (s, b) = d.post_json(
            "/v1/documents",
            &document(&format!("aircall:transcript:{i}"), &big, 1_700_000_000_000),
        );
        assert_eq!(s, 202, "{b}");
    }
    let (s, _) = d.post_json(
        "/v1/documents",
        &document(
            "aircall:transcript:huge",
            &"y".repeat(1_200_000),
            1_700_000_000_000,
        ),
    );
    assert_eq!(s, 202);

    let good = ids.len() - 1 + 12;
    let docs = emulator.wait_for(COLLECTION, Duration::from_secs(90), |docs| {
        by_id(docs).len() >= good
    });
    let m = by_id(&docs);
    assert!(m.contains_key("ops:flaky:1"), "ABORTED was retried");
    assert!(
        !m.contains_key("ops:bad:1"),
        "INVALID_ARGUMENT is not retried"
    );
    assert!(
        !m.contains_key("aircall:transcript:huge"),
        "an over-1 MiB document is not sent"
    );
    assert_eq!(m.len(), good);
    // Retry-After was honoured between the 429 and the next try.
    let t = times.lock().expect("times").clone();
    assert!(
        t[1].duration_since(t[0]) >= Duration::from_millis(950),
        "{:?}",
        t[1].duration_since(t[0])
    );

    // Dead letters name the document and why; the consumer is healthy again and counted retries.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let (_, body) = d.get("/v1/admin/status");
        let v: Value = serde_json::from_str(&body).expect("status");
        if v["dead_letters"] == 2 || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["dead_letters"], 2, "{status}");
    let letters = status["recent_dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let reason = |id: &str| {
        letters
            .iter()
            .find(|l| l["entry"]["id"] == id)
            .map(|l| l["error"].as_str().unwrap_or("").to_owned())
    };
    assert!(
        reason("ops:bad:1")
            .is_some_and(|r| r.contains("status 3") && r.contains("invalid nested entity")),
        "{letters:?}"
    );
    assert!(
        reason("aircall:transcript:huge").is_some_and(|r| r.contains("1 MiB")),
        "{letters:?}"
    );
    assert_eq!(status["sync"][0]["state"], "ok", "{status}");
    assert!(
        status["sync"][0]["retries"].as_u64().unwrap_or(0) >= 2,
        "{status}"
    );

    // The requests the daemon counts are the requests the server saw, in status and metrics.
    let batch_writes = proxy
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(":batchWrite"))
        .count() as u64;
    assert_eq!(status["sync"][0]["requests"], batch_writes, "{status}");
    let (_, metrics) = d.get("/metrics");
    assert!(
        metrics.contains(&format!(
            "concierge_sync_requests_total{{consumer=\"firestore\"}} {batch_writes}"
        )),
        "{metrics}"
    );

    // Every request within Firestore's caps: at most 500 writes and 10 MiB.
    for req in proxy
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(":batchWrite"))
    {
        let writes = req.json()["writes"].as_array().map_or(0, Vec::len);
        assert!(writes <= 500, "{writes} writes in one request");
        assert!(
            req.body.len() <= 10 * 1024 * 1024,
            "{} bytes in one request",
            req.body.len()
        );
    }
}

/// Verifies an RS256 JWT with the public key through openssl (the test trusts no code of ours
/// for it); its claims.
fn verified_claims(
    jwt: &str,
    public_key: &std::path::Path,
    dir: &std::path::Path,
) -> Option<Value> {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = jwt.split('.');
    let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
    let data = dir.join(format!("jwt-{}.data", claims.len()));
    let sig = dir.join(format!("jwt-{}.sig", claims.len()));
    std::fs::write(&data, format!("{header}.{claims}")).ok()?;
    std::fs::write(&sig, URL_SAFE_NO_PAD.decode(signature).ok()?).ok()?;
    let ok = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(public_key)
        .arg("-signature")
        .arg(&sig)
        .arg(&data)
        .output()
        .ok()?
        .status
        .success();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    (ok && header["alg"] == "RS256")
        .then(|| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok())?
}

#[test]
fn a_service_account_signs_in_with_a_verified_jwt_and_renews_its_token_before_it_expires() {
    let dir = temp_dir();
    let key = dir.path().join("key.pem");
    let public = dir.path().join("public.pem");
    let keygen = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .output()
        .expect("openssl genpkey");
    assert!(keygen.status.success(), "{keygen:?}");
    let pubout = std::process::Command::new("openssl")
        .arg("pkey")
        .arg("-in")
        .arg(&key)
        .arg("-pubout")
        .arg("-out")
        .arg(&public)
        .output()
        .expect("openssl pkey");
    assert!(pubout.status.success());

    // The token endpoint: checks the assertion's signature, aud, exp and scope; tokens live 62 s.
    let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = issued.clone();
    let (public_key, scratch) = (public.clone(), dir.path().to_path_buf());
    let token_server = FakeServer::start(move |req| {
        let form: BTreeMap<String, String> = req
            .body
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.replace("%3A", ":")))
            .collect();
        if form.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return FakeResponse::json(400, json!({"error": "unsupported_grant_type"}));
        }
        let Some(claims) = form
            .get("assertion")
            .and_then(|a| verified_claims(a, &public_key, &scratch))
        else {
            return FakeResponse::json(
                400,
                json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
            );
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let exp = claims["exp"].as_i64().unwrap_or(0);
        let fine = claims["iss"] == "concierge@test-project.iam.gserviceaccount.com"
            && claims["aud"]
                .as_str()
                .is_some_and(|a| a.ends_with("/token"))
            && claims["scope"]
                .as_str()
                .is_some_and(|s| s.contains("https://www.googleapis.com/auth/datastore"))
            && exp > now
            && exp - claims["iat"].as_i64().unwrap_or(0) <= 3600;
        if !fine {
            return FakeResponse::json(
                400,
                json!({"error": "invalid_grant", "error_description": format!("bad claims {claims}")}),
            );
        }
        let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        FakeResponse::json(
            200,
            json!({"access_token": format!("tok-{n}"), "expires_in": 62, "token_type": "Bearer"}),
        )
    });
    // Firestore itself, faithful for batchWrite: every write confirmed.
    let firestore = FakeServer::start(|req| {
        let n = req.json()["writes"].as_array().map_or(0, Vec::len);
        if !req
            .header("authorization")
            .is_some_and(|a| a.starts_with("Bearer tok-"))
        {
            return FakeResponse::json(
                401,
                json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}),
            );
        }
        FakeResponse::json(
            200,
            json!({"writeResults": vec![json!({}); n], "status": vec![json!({}); n]}),
        )
    });
    let credentials = dir.path().join("service-account.json");
    std::fs::write(
        &credentials,
        json!({
            "type": "service_account",
            "project_id": "test-project",
            "client_email": "concierge@test-project.iam.gserviceaccount.com",
            "private_key": std::fs::read_to_string(&key).expect("key"),
            "token_uri": format!("{}/token", token_server.base),
        })
        .to_string(),
    )
    .expect("credentials");
    let model = model_dir();
    let d = Daemon::start_with_env(
        &["--model-dir", model.to_str().expect("utf-8")],
        &[
            ("CONCIERGE_FIRESTORE__PROJECT_ID", "test-project"),
            (
                "CONCIERGE_FIRESTORE__CREDENTIALS_FILE",
                credentials.to_str().expect("utf-8"),
            ),
            ("CONCIERGE_FIRESTORE__API_BASE", &firestore.base),
        ],
        &workspace_root(),
    );
    let (s, _) = d.post_json(
        "/v1/documents",
        &document("ops:note:1", "first", 1_700_000_000_000),
    );
    assert_eq!(s, 202);
    firestore.wait_for(
        "/v1/projects/test-project/databases/(default)/documents:batchWrite",
        1,
        Duration::from_secs(30),
    );
    // The token is renewed a minute before it expires (62 s: at once, on the next write).
    std::thread::sleep(Duration::from_secs(3));
    let (s, _) = d.post_json(
        "/v1/documents",
        &document("ops:note:2", "second", 1_700_000_000_000),
    );
    assert_eq!(s, 202);
    let writes = firestore.wait_for(
        "/v1/projects/test-project/databases/(default)/documents:batchWrite",
        2,
        Duration::from_secs(30),
    );
    let tokens: Vec<&str> = writes
        .iter()
        .filter_map(|w| w.header("authorization"))
        .collect();
    assert_eq!(tokens[0], "Bearer tok-1");
    assert_eq!(tokens[tokens.len() - 1], "Bearer tok-2", "{tokens:?}");
    assert_eq!(issued.load(std::sync::atomic::Ordering::SeqCst), 2);
    // The key is in no log line or status.
    let (_, status) = d.get("/v1/admin/status");
    assert!(!status.contains("PRIVATE KEY"));
}

#[test]
fn every_fixture_webhook_reaches_firestore_as_the_daemon_stored_it() {
    const AIRCALL_TOKEN: &str = "wh_tok_fixture_3f9c2a7b81";
    const GUESTY_SECRET: &str = "whsec_Y29uY2llcmdlLWZpeHR1cmUtc2VjcmV0LTMyYnl0ZXM=";
    let emulator = FirestoreEmulator::start();
    let dir = temp_dir();
    let d = start_with(
        &emulator.host,
        &dir.path().join("data"),
        &[
            ("CONCIERGE_AIRCALL__TOKENS", AIRCALL_TOKEN),
            ("CONCIERGE_GUESTY__SECRET", GUESTY_SECRET),
        ],
    );
    concierge_tests::post_fixture_webhooks(&d, GUESTY_SECRET, "msg_fs_");
    // Every document the daemon holds is in Firestore, field for field, at the same version.
    let wanted = [
        "aircall:call:987654321",
        "guesty:reservation:6651f0c2a1b2c3d4e5f60718",
    ];
    let stored: Vec<Value> = wanted
        .iter()
        .map(|id| serde_json::from_str(&d.get(&format!("/v1/documents/{id}")).1).expect("doc"))
        .collect();
    let docs = emulator.wait_for(COLLECTION, Duration::from_secs(30), |docs| {
        let m = by_id(docs);
        stored.iter().all(|s| {
            m.get(s["id"].as_str().unwrap_or(""))
                .is_some_and(|f| version(f) == s["version"].as_u64().unwrap_or(0))
        })
    });
    let m = by_id(&docs);
    for s in &stored {
        let f = &m[s["id"].as_str().expect("id")];
        assert_eq!(f["title"]["stringValue"], s["title"], "{}", s["id"]);
        assert_eq!(f["text"]["stringValue"], s["text"], "{}", s["id"]);
        assert_eq!(f["kind"]["stringValue"], s["kind"]);
        let metadata = f["metadata"]["mapValue"]["fields"]
            .as_object()
            .map_or(0, serde_json::Map::len);
        assert_eq!(
            metadata,
            s["metadata"].as_object().map_or(0, serde_json::Map::len),
            "{}",
            s["id"]
        );
    }
    assert!(m.len() >= 2, "{m:?}");
}
