//! Aircall transcripts: `transcription.created` is acknowledged at once, the transcript is fetched
//! from the Aircall API (a fake on loopback speaking its wire format: Basic auth, 403 on bad
//! credentials, 429 with Retry-After) and merged into the call's document; a fetch the daemon
//! could not make is resumed at the next start.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use concierge_tests::{Daemon, fixture, model_dir, workspace_root};
use serde_json::{Value, json};

const TOKEN: &str = "wh_tok_fixture_3f9c2a7b81";

/// A fake Aircall API: answers the first request with 429, then serves the fixture transcript
/// to requests with the right Basic credentials. Records the requests it saw.
/// Requests a fake server saw: (path, status it answered).
type Seen = Arc<Mutex<Vec<(String, u16)>>>;

fn fake_aircall() -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let transcript =
        std::fs::read_to_string(fixture("webhooks/aircall-transcription-api-response.json"))
            .expect("fixture");
    let expected_auth = format!("Basic {}", STANDARD.encode("api-id-1:api-secret-1"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut auth = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line
                    .strip_prefix("authorization: ")
                    .or_else(|| line.strip_prefix("Authorization: "))
                {
                    auth = v.trim().to_owned();
                }
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_owned();
            let first = log.lock().expect("log").is_empty();
            let (status, extra, body) = if auth != expected_auth {
                (403, "", r#"{"message":"Forbidden"}"#.to_owned())
            } else if first {
                (
                    429,
                    "Retry-After: 0\r\n",
                    r#"{"message":"Too many requests"}"#.to_owned(),
                )
            } else if path == "/v1/calls/987654321/transcription" {
                (200, "", transcript.clone())
            } else {
                (404, "", r#"{"message":"Not found"}"#.to_owned())
            };
            log.lock().expect("log").push((path, status));
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (base, seen)
}

fn start(data: &std::path::Path, api: Option<&str>) -> Daemon {
    let model = model_dir();
    let mut env = vec![("CONCIERGE_AIRCALL__TOKENS", TOKEN.to_owned())];
    if let Some(base) = api {
        env.extend([
            ("CONCIERGE_AIRCALL__API_BASE", base.to_owned()),
            ("CONCIERGE_AIRCALL__API_ID", "api-id-1".to_owned()),
            ("CONCIERGE_AIRCALL__API_TOKEN", "api-secret-1".to_owned()),
        ]);
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Daemon::start_with_env(
        &[
            "--model-dir",
            model.to_str().expect("utf-8"),
            "--data-dir",
            data.to_str().expect("utf-8"),
        ],
        &env,
        &workspace_root(),
    )
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(&format!("webhooks/{name}"))).expect("fixture")
}

fn wait_for_transcript(d: &Daemon) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, b) = d.get("/v1/documents/aircall:call:987654321");
        if s == 200 {
            let doc: Value = serde_json::from_str(&b).expect("json");
            if doc["metadata"]["transcript"].is_array() {
                return doc;
            }
        }
        assert!(Instant::now() < deadline, "no transcript arrived: {b}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_transcript_is_fetched_after_the_ack_retried_on_429_and_merged_into_its_call() {
    let (base, seen) = fake_aircall();
    let keep = tempfile::tempdir().expect("tempdir");
    let d = start(&keep.path().join("data"), Some(&base));
    assert_eq!(
        d.post_json("/v1/webhooks/aircall", &read("aircall-call.commented.json"))
            .0,
        202
    );
    let (s, b) = d.post_json(
        "/v1/webhooks/aircall",
        &read("aircall-transcription.created.json"),
    );
    assert_eq!(s, 202, "{b}");
    assert_eq!(
        serde_json::from_str::<Value>(&b).expect("json")["transcript"],
        "fetching"
    );
    let doc = wait_for_transcript(&d);
    let text = doc["text"].as_str().expect("text");
    assert!(
        text.contains("Caller: The key box code doesn't work") && text.contains("backup code 4471"),
        "{text}"
    );
    assert!(
        text.contains("Comment by Jane Agent"),
        "the call's comments were lost: {text}"
    );
    let statuses: Vec<u16> = seen.lock().expect("log").iter().map(|(_, s)| *s).collect();
    assert_eq!(
        statuses,
        [429, 200],
        "one throttled attempt, then the transcript"
    );
    let seq = doc["version"].as_u64().unwrap_or(0);
    let (s, b) = d.post_json(
        "/v1/search",
        &json!({"query": "key box keeps blinking red", "k": 1, "min_seq": seq}).to_string(),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        serde_json::from_str::<Value>(&b).expect("json")["hits"][0]["document"]["id"],
        "aircall:call:987654321"
    );
}

#[test]
fn a_transcript_the_daemon_could_not_fetch_is_fetched_at_the_next_start() {
    let keep = tempfile::tempdir().expect("tempdir");
    let data = keep.path().join("data");
    let d = start(&data, None);
    assert_eq!(
        d.post_json("/v1/webhooks/aircall", &read("aircall-call.ended.json"))
            .0,
        202
    );
    assert_eq!(
        d.post_json(
            "/v1/webhooks/aircall",
            &read("aircall-transcription.created.json")
        )
        .0,
        202
    );
    assert!(d.terminate().success());
    let (base, _) = fake_aircall();
    let d = start(&data, Some(&base));
    let doc = wait_for_transcript(&d);
    assert!(doc["text"].as_str().expect("text").contains("4471"));
}
