//! Aircall and Guesty webhooks against the real daemon: every fixture is ingested and found by
//! search; bad tokens, bad or stale signatures, malformed and oversized bodies get the right
//! status and change nothing; redeliveries and out-of-order events keep one correct document.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use concierge_tests::{Daemon, fixture, model_dir, workspace_root};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const AIRCALL_TOKEN: &str = "wh_tok_fixture_3f9c2a7b81";
const GUESTY_SECRET: &str = "whsec_Y29uY2llcmdlLWZpeHR1cmUtc2VjcmV0LTMyYnl0ZXM=";

fn start() -> Daemon {
    let model = model_dir();
    Daemon::start_with_env(
        &["--model-dir", model.to_str().expect("utf-8")],
        &[
            ("CONCIERGE_AIRCALL__TOKENS", AIRCALL_TOKEN),
            ("CONCIERGE_GUESTY__SECRET", GUESTY_SECRET),
            ("CONCIERGE_SERVER__MAX_BODY_BYTES", "65536"),
        ],
        &workspace_root(),
    )
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(&format!("webhooks/{name}"))).expect("fixture")
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// HMAC-SHA256, written out so the test does not trust the daemon's own implementation.
fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let inner = Sha256::new()
        .chain_update(k.map(|b| b ^ 0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(k.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Posts a Guesty body signed now (the fixtures' own signatures carry a fixed, stale time).
fn post_guesty(d: &Daemon, id: &str, body: &str, ts: i64) -> (u16, String) {
    let sig = concierge_tests::svix_signature(GUESTY_SECRET, id, ts, body);
    let ts = ts.to_string();
    d.request(
        "POST",
        "/v1/webhooks/guesty",
        Some(body),
        &[
            ("Content-Type", "application/json"),
            ("svix-id", id),
            ("svix-timestamp", &ts),
            ("svix-signature", &sig),
        ],
    )
}

fn post_aircall(d: &Daemon, body: &str) -> (u16, String) {
    d.post_json("/v1/webhooks/aircall", body)
}

fn search(d: &Daemon, query: &str, min_seq: u64) -> Vec<Value> {
    let (s, b) = d.post_json(
        "/v1/search",
        &json!({"query": query, "k": 5, "min_seq": min_seq}).to_string(),
    );
    assert_eq!(s, 200, "{b}");
    json_of(&b)["hits"].as_array().cloned().unwrap_or_default()
}

fn doc(d: &Daemon, id: &str) -> Value {
    let (s, b) = d.get(&format!("/v1/documents/{id}"));
    assert_eq!(s, 200, "{b}");
    json_of(&b)
}

#[test]
fn every_fixture_is_ingested_and_found_by_search() {
    let d = start();
    let mut seq = 0;
    for name in concierge_tests::AIRCALL_EVENT_FIXTURES {
        let (s, b) = post_aircall(&d, &read(name));
        assert_eq!(s, 202, "{name}: {b}");
        seq = seq.max(json_of(&b)["seq"].as_u64().unwrap_or(0));
    }
    let (s, b) = post_aircall(&d, &read("aircall-transcription.created.json"));
    assert_eq!(s, 202, "{b}");
    assert_eq!(json_of(&b)["kept"], "raw");
    let ts = now();
    for (i, name) in concierge_tests::GUESTY_EVENT_FIXTURES.iter().enumerate() {
        let (s, b) = post_guesty(&d, &format!("msg_test_{i}"), &read(name), ts);
        assert_eq!(s, 202, "{name}: {b}");
        seq = seq.max(json_of(&b)["seq"].as_u64().unwrap_or(0));
    }
    let top = |q: &str| {
        search(&d, q, seq)
            .first()
            .map(|h| h["document"]["id"].as_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    assert_eq!(top("backup code 4471 key box"), "aircall:call:987654321");
    assert_eq!(
        top("HMX8Q2P4ZT"),
        "guesty:reservation:6651f0c2a1b2c3d4e5f60718"
    );
    assert_eq!(
        top("flight lands late, where do we park?"),
        "guesty:conversation:6651f0c2a1b2c3d4e5f69999"
    );
    assert_eq!(
        top("bright flat above the beach with a balcony"),
        "guesty:listing:64aa00bb11cc22dd33ee44ff"
    );
    let reservation = doc(&d, "guesty:reservation:6651f0c2a1b2c3d4e5f60718");
    assert_eq!(
        reservation["metadata"]["status"], "canceled",
        "the v2 update wins: {reservation}"
    );
    assert_eq!(
        reservation["metadata"]["guest"], "Ana Example",
        "the lean v2 event keeps what the full one said"
    );
    assert_eq!(reservation["metadata"]["planned_arrival"], "23:45");
    let call = doc(&d, "aircall:call:987654321");
    assert!(
        call["text"].as_str().expect("text").contains("4471"),
        "{call}"
    );
    assert_eq!(call["metadata"]["agent"], "Jane Agent");
}

#[test]
fn redeliveries_and_out_of_order_events_keep_one_correct_document() {
    let d = start();
    let ended = read("aircall-call.ended.json");
    let (_, first) = post_aircall(&d, &ended);
    let (s, second) = post_aircall(&d, &ended);
    assert_eq!(s, 202);
    assert_eq!(json_of(&second)["duplicate"], true, "{second}");
    assert_eq!(json_of(&first)["seq"], json_of(&second)["seq"]);
    // call.answered is older than call.ended: it must not bring back an unfinished call.
    let (s, b) = post_aircall(&d, &read("aircall-call.answered.json"));
    assert_eq!(s, 202, "{b}");
    let call = doc(&d, "aircall:call:987654321");
    assert_eq!(call["metadata"]["status"], "done", "{call}");
    assert_eq!(call["metadata"]["duration"], 105);
    // Guesty: the newer full reservation first, the older one second.
    let ts = now();
    assert_eq!(
        post_guesty(&d, "msg_a", &read("guesty-reservation.updated.json"), ts).0,
        202
    );
    assert_eq!(
        post_guesty(&d, "msg_b", &read("guesty-reservation.new.json"), ts).0,
        202
    );
    let r = doc(&d, "guesty:reservation:6651f0c2a1b2c3d4e5f60718");
    assert_eq!(r["metadata"]["planned_arrival"], "23:45", "{r}");
    // The same svix-id twice is one delivery.
    let (_, b) = post_guesty(&d, "msg_a", &read("guesty-reservation.updated.json"), ts);
    assert_eq!(json_of(&b)["duplicate"], true, "{b}");
}

#[test]
fn bad_proofs_and_bad_bodies_are_refused_and_change_nothing() {
    let d = start();
    let problem = |(s, b): (u16, String), want: u16| {
        assert_eq!(s, want, "{b}");
        assert_eq!(json_of(&b)["status"], want, "{b}");
    };
    let wrong_token = read("aircall-call.ended.json").replace(AIRCALL_TOKEN, "wh_tok_wrong");
    problem(post_aircall(&d, &wrong_token), 403);
    problem(post_aircall(&d, "{\"event\": "), 400);
    problem(
        post_aircall(&d, &json!({"event": "call.ended"}).to_string()),
        422,
    );
    problem(
        d.request(
            "POST",
            "/v1/webhooks/aircall",
            Some(&read("aircall-call.ended.json")),
            &[("Content-Type", "text/plain")],
        ),
        415,
    );
    let big = json!({"event": "call.ended", "timestamp": 1, "token": AIRCALL_TOKEN, "data": {"id": 1, "pad": "x".repeat(70_000)}}).to_string();
    problem(post_aircall(&d, &big), 413);

    let body = read("guesty-reservation.new.json");
    // The fixture's own headers are valid but dated 2026-01-01: stale now.
    let secrets = json_of(&read("secrets-and-headers.json"));
    let h = &secrets["guesty_headers"]["guesty-reservation.new.json"];
    let (id, ts, sig) = (
        h["svix-id"].as_str().expect("id"),
        h["svix-timestamp"].as_str().expect("ts"),
        h["svix-signature"].as_str().expect("sig"),
    );
    problem(
        d.request(
            "POST",
            "/v1/webhooks/guesty",
            Some(&body),
            &[
                ("Content-Type", "application/json"),
                ("svix-id", id),
                ("svix-timestamp", ts),
                ("svix-signature", sig),
            ],
        ),
        403,
    );
    problem(
        d.request(
            "POST",
            "/v1/webhooks/guesty",
            Some(&body),
            &[("Content-Type", "application/json")],
        ),
        401,
    );
    let tampered = body.replace("confirmed", "canceled");
    let (s, b) = {
        let key = STANDARD
            .decode(GUESTY_SECRET.trim_start_matches("whsec_"))
            .expect("secret");
        let t = now().to_string();
        let sig = format!(
            "v1,{}",
            STANDARD.encode(hmac(&key, format!("msg_x.{t}.{body}").as_bytes()))
        );
        d.request(
            "POST",
            "/v1/webhooks/guesty",
            Some(&tampered),
            &[
                ("Content-Type", "application/json"),
                ("svix-id", "msg_x"),
                ("svix-timestamp", &t),
                ("svix-signature", &sig),
            ],
        )
    };
    problem((s, b), 403);
    let status = json_of(&d.get("/v1/admin/status").1);
    assert_eq!(
        status["durable_seq"], 0,
        "a refused webhook wrote something: {status}"
    );
}

fn call_event(i: u64) -> String {
    let mut v = json_of(&read("aircall-call.ended.json"));
    v["data"]["id"] = json!(1_000_000 + i);
    v["timestamp"] = json!(1_767_225_840 + i as i64);
    v["data"]["raw_digits"] = json!(format!("+33 6 00 00 {i:04}"));
    v.to_string()
}

fn restart_on(data: &std::path::Path) -> Daemon {
    let model = model_dir();
    Daemon::start_with_env(
        &[
            "--model-dir",
            model.to_str().expect("utf-8"),
            "--data-dir",
            data.to_str().expect("utf-8"),
        ],
        &[("CONCIERGE_AIRCALL__TOKENS", AIRCALL_TOKEN)],
        &workspace_root(),
    )
}

#[test]
fn every_webhook_acknowledged_before_a_sigkill_is_searchable_after_restart() {
    let keep = tempfile::tempdir().expect("tempdir");
    let data = keep.path().join("data");
    let d = restart_on(&data);
    let address = d.address.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let sender = std::thread::spawn(move || {
        for i in 0..10_000u64 {
            let body = call_event(i);
            let r = std::panic::catch_unwind(|| {
                concierge_tests::http_request(
                    &address,
                    "POST",
                    "/v1/webhooks/aircall",
                    Some(&body),
                    &[("Content-Type", "application/json")],
                )
            });
            match r {
                Ok((202, b)) => {
                    if tx
                        .send((1_000_000 + i, json_of(&b)["seq"].as_u64().unwrap_or(0)))
                        .is_err()
                    {
                        return;
                    }
                }
                _ => return,
            }
        }
    });
    let mut acked = Vec::new();
    while acked.len() < 150 {
        acked.push(
            rx.recv_timeout(std::time::Duration::from_secs(60))
                .expect("acknowledgements keep coming"),
        );
    }
    d.kill();
    let _ = sender.join();
    acked.extend(rx.try_iter());
    let d = restart_on(&data);
    let last = acked.iter().map(|(_, s)| *s).max().expect("some");
    for (call, _) in &acked {
        let (s, b) = d.get(&format!("/v1/documents/aircall:call:{call}"));
        assert_eq!(
            s, 200,
            "call {call} was acknowledged but is gone after SIGKILL: {b}"
        );
    }
    let (call, _) = acked.last().expect("some");
    let digits = format!("{:04}", call - 1_000_000);
    let (s, b) = d.post_json("/v1/search", &json!({"query": format!("+33 6 00 00 {digits}"), "k": 1, "mode": "keyword", "min_seq": last}).to_string());
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        json_of(&b)["hits"][0]["document"]["id"],
        format!("aircall:call:{call}"),
        "{b}"
    );
}

#[test]
fn sigterm_drains_in_flight_webhooks_and_exits_cleanly() {
    let keep = tempfile::tempdir().expect("tempdir");
    let data = keep.path().join("data");
    let d = restart_on(&data);
    let address = d.address.clone();
    let workers: Vec<_> = (0..4u64)
        .map(|w| {
            let address = address.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..2_000u64 {
                    let n = w * 10_000 + i;
                    let body = call_event(n);
                    match std::panic::catch_unwind(|| {
                        concierge_tests::http_request(
                            &address,
                            "POST",
                            "/v1/webhooks/aircall",
                            Some(&body),
                            &[("Content-Type", "application/json")],
                        )
                    }) {
                        Ok((202, _)) => acked.push(1_000_000 + n),
                        Ok((503, _)) => {}
                        Ok((other, b)) => panic!("unexpected {other} during shutdown: {b}"),
                        Err(_) => break, // the listener closed
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(800));
    let status = d.terminate();
    assert!(status.success(), "{status:?}");
    let acked: Vec<u64> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    assert!(!acked.is_empty());
    let d = restart_on(&data);
    for call in &acked {
        assert_eq!(
            d.get(&format!("/v1/documents/aircall:call:{call}")).0,
            200,
            "call {call} acknowledged before SIGTERM is missing"
        );
    }
}
