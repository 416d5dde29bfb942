//! Answers, black-box: the real daemon with the real model, `/v1/ask` (JSON and SSE) and the
//! RocketChat bot, against fake servers that speak the OpenAI-compatible chat-completions API and
//! RocketChat's REST API (wire-formats.md §3, §4). Citations always point at a passage given;
//! "don't know" when nothing is relevant; the extractive answerer without an LLM and as the
//! fallback; slow answers posted later into the right thread; every Q&A stored and searchable.

use std::time::{Duration, Instant};

use concierge_tests::{
    Daemon, FakeRequest, FakeResponse, FakeServer, fixture, model_dir, workspace_root,
};
use serde_json::{Value, json};

const AIRCALL_TOKEN: &str = "wh_tok_fixture_3f9c2a7b81";
const RC_TOKEN: &str = "rc_tok_fixture_Zq8fT2kLp0Xv";
const CALL: &str = "aircall:call:987654321";
const QUESTION: &str = "why did the guest at Seaview 2BR call, and what code did we give her?";
const CHAT: &str = "/openai/v1/chat/completions";
const POST: &str = "/api/v1/chat.postMessage";

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn start(env: &[(&str, &str)]) -> Daemon {
    let model = model_dir();
    let mut all = vec![
        ("CONCIERGE_AIRCALL__TOKENS", AIRCALL_TOKEN),
        ("CONCIERGE_ROCKETCHAT__TOKEN", RC_TOKEN),
    ];
    all.extend_from_slice(env);
    Daemon::start_with_env(
        &["--model-dir", model.to_str().expect("utf-8")],
        &all,
        &workspace_root(),
    )
}

fn llm_env(llm: &FakeServer) -> Vec<(&'static str, String)> {
    vec![
        ("CONCIERGE_LLM__BASE_URL", format!("{}/openai/v1", llm.base)),
        ("CONCIERGE_LLM__MODEL", "openai/gpt-oss-20b".to_owned()),
        ("CONCIERGE_LLM__API_KEY", "gsk_test_key".to_owned()),
    ]
}

fn start_with_llm(llm: &FakeServer, extra: &[(&str, &str)]) -> Daemon {
    let env = llm_env(llm);
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    start(&all)
}

/// Ingests the Aircall call fixtures; returns the last sequence.
fn ingest_call(d: &Daemon) -> u64 {
    let mut seq = 0;
    for name in [
        "aircall-call.created.json",
        "aircall-call.answered.json",
        "aircall-call.commented.json",
        "aircall-call.ended.json",
    ] {
        let body = std::fs::read_to_string(fixture(&format!("webhooks/{name}"))).expect("fixture");
        let (s, b) = d.post_json("/v1/webhooks/aircall", &body);
        assert_eq!(s, 202, "{name}: {b}");
        seq = seq.max(json_of(&b)["seq"].as_u64().unwrap_or(0));
    }
    seq
}

fn ask(d: &Daemon, body: Value) -> Value {
    let (s, b) = d.post_json("/v1/ask", &body.to_string());
    assert_eq!(s, 200, "{b}");
    json_of(&b)
}

/// The passages of a chat-completions request: (number, text) from the user message.
fn passages(r: &FakeRequest) -> Vec<(usize, String)> {
    let user = r.json()["messages"][1]["content"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let mut out: Vec<(usize, String)> = Vec::new();
    for line in user.lines() {
        if let Some(rest) = line.strip_prefix('[')
            && let Some((n, _)) = rest.split_once(']')
            && let Ok(n) = n.parse()
        {
            out.push((n, String::new()));
        } else if let Some(last) = out.last_mut() {
            last.1.push_str(line);
            last.1.push('\n');
        }
    }
    out
}

fn completion(text: &str) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "openai/gpt-oss-20b",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})
}

fn chunk(content: &str) -> String {
    json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]}).to_string()
}

/// An answer in the form the request asked for (whole or streamed in three pieces).
fn answer(r: &FakeRequest, text: &str) -> FakeResponse {
    if r.json()["stream"] == true {
        let third = text.len() / 3;
        let (a, rest) = text.split_at(
            text.char_indices()
                .map(|(i, _)| i)
                .find(|i| *i >= third)
                .unwrap_or(0),
        );
        let stop = json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).to_string();
        FakeResponse::sse(&[chunk(a), chunk(rest), stop, "[DONE]".to_owned()])
    } else {
        FakeResponse::json(200, completion(text))
    }
}

/// A fake LLM that cites the passage mentioning the backup code, as a grounded model would.
fn grounded_llm(delay: Duration) -> FakeServer {
    FakeServer::start(move |r| {
        if r.path == "/openai/v1/models" {
            return FakeResponse::json(200, json!({"data": [{"id": "openai/gpt-oss-20b"}]}));
        }
        let n = passages(r)
            .iter()
            .find(|(_, t)| t.contains("4471"))
            .map_or(99, |(n, _)| *n);
        answer(
            r,
            &format!("She could not open the key box, so we sent the backup code 4471 [{n}]."),
        )
        .delayed(delay)
    })
}

fn cited_ids(a: &Value) -> Vec<String> {
    a["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["cited"] == true)
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_question_about_a_fixture_call_is_answered_by_the_llm_with_a_citation_of_that_call() {
    let llm = grounded_llm(Duration::ZERO);
    let d = start_with_llm(&llm, &[]);
    let seq = ingest_call(&d);
    let a = ask(&d, json!({"question": QUESTION, "min_seq": seq}));
    assert_eq!(a["generator"], "openai:openai/gpt-oss-20b", "{a}");
    assert_eq!(a["known"], true, "{a}");
    assert!(
        a["answer"].as_str().is_some_and(|t| t.contains("4471 [")),
        "{a}"
    );
    assert_eq!(cited_ids(&a), [CALL], "{a}");
    let call = a["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["id"] == CALL)
        .cloned()
        .expect("the call is a source");
    assert_eq!(
        call["link"],
        "https://dashboard.aircall.io/conversations/987654321"
    );
    assert_eq!(a["citations"], json!([call["number"]]));
    assert!(
        a["timings"]["retrieval_ms"]
            .as_f64()
            .is_some_and(|t| t > 0.0),
        "{a}"
    );
    let chats = llm.requests_to(CHAT);
    assert_eq!(chats.len(), 1);
    assert_eq!(
        chats[0].header("authorization"),
        Some("Bearer gsk_test_key")
    );
    assert!(
        chats[0].json()["messages"][0]["content"]
            .as_str()
            .is_some_and(|s| s.contains("only from the numbered passages"))
    );
}

#[test]
fn the_extractive_answerer_answers_with_no_llm_configured() {
    let d = start(&[]);
    let seq = ingest_call(&d);
    let a = ask(&d, json!({"question": QUESTION, "min_seq": seq}));
    assert_eq!(a["generator"], "extractive", "{a}");
    assert_eq!(a["known"], true, "{a}");
    let text = a["answer"].as_str().expect("answer");
    assert!(
        text.contains("backup code 4471"),
        "the answer quotes the call: {a}"
    );
    assert_eq!(cited_ids(&a), [CALL], "{a}");
}

#[test]
fn a_question_about_nothing_stored_gets_dont_know_with_no_citation_and_no_llm_call() {
    let llm = grounded_llm(Duration::ZERO);
    let d = start_with_llm(&llm, &[]);
    let seq = ingest_call(&d);
    let a = ask(
        &d,
        json!({"question": "Which interest rate did the central bank announce for mortgages in 2031?", "min_seq": seq}),
    );
    assert_eq!(a["known"], false, "{a}");
    assert_eq!(a["citations"], json!([]), "{a}");
    let text = a["answer"].as_str().expect("answer");
    assert!(text.contains("don't know"), "{a}");
    assert!(!text.contains("[1]"), "{a}");
    assert!(cited_ids(&a).is_empty(), "{a}");
    assert!(
        llm.requests_to(CHAT).is_empty(),
        "the LLM was asked without relevant passages"
    );
}

#[test]
fn an_llm_citation_of_a_passage_it_was_not_given_is_removed() {
    let llm = FakeServer::start(|r| {
        assert_eq!(passages(r).len(), 3, "three passages were given");
        answer(r, "The boiler was fixed [1]. The guest was refunded [7].")
    });
    let d = start_with_llm(&llm, &[]);
    let docs: Vec<Value> = ["The boiler in flat 3 was repaired by the plumber.", "The guest in flat 3 asked about the boiler.", "Flat 3 has a new boiler since May."]
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"id": format!("notes:note:{i}"), "title": format!("Note {i}"), "text": t, "updated_at": 1}))
        .collect();
    let (s, b) = d.post_json("/v1/documents", &json!({"documents": docs}).to_string());
    assert_eq!(s, 202, "{b}");
    let seq = json_of(&b)["seq"].as_u64().expect("seq");
    for stream in [false, true] {
        let body = json!({"question": "what happened to the boiler in flat 3?", "k": 3, "min_similarity": -1.0, "min_seq": seq, "stream": stream});
        let a = if stream {
            sse_answer(&d, &body).1
        } else {
            ask(&d, body)
        };
        assert_eq!(
            a["answer"], "The boiler was fixed [1]. The guest was refunded.",
            "stream {stream}: {a}"
        );
        assert_eq!(a["removed_citations"], json!(["[7]"]), "{a}");
        assert_eq!(a["citations"], json!([1]), "{a}");
    }
}

/// Posts `/v1/ask` with `stream: true`; returns the (event, data) pairs and the final answer.
fn sse_answer(d: &Daemon, body: &Value) -> (Vec<(String, Value)>, Value) {
    let (s, raw) = d.post_json("/v1/ask", &body.to_string());
    assert_eq!(s, 200, "{raw}");
    let mut events = Vec::new();
    let mut name = String::new();
    for line in raw.lines() {
        if let Some(e) = line.strip_prefix("event: ") {
            name = e.trim().to_owned();
        } else if let Some(data) = line.strip_prefix("data: ") {
            events.push((name.clone(), json_of(data)));
        }
    }
    let last = events
        .last()
        .cloned()
        .unwrap_or_else(|| panic!("no events: {raw}"));
    assert_eq!(last.0, "answer", "{raw}");
    (events, last.1)
}

#[test]
fn a_streamed_answer_sends_checked_text_pieces_then_the_whole_answer() {
    let llm = grounded_llm(Duration::ZERO);
    let d = start_with_llm(&llm, &[]);
    let seq = ingest_call(&d);
    let (events, a) = sse_answer(
        &d,
        &json!({"question": QUESTION, "min_seq": seq, "stream": true}),
    );
    let texts: Vec<&str> = events
        .iter()
        .filter(|(e, _)| e == "text")
        .filter_map(|(_, v)| v["text"].as_str())
        .collect();
    assert!(texts.len() >= 2, "the answer came in pieces: {events:?}");
    assert_eq!(texts.concat().trim(), a["answer"].as_str().expect("answer"));
    assert_eq!(cited_ids(&a), [CALL]);
    assert_eq!(llm.requests_to(CHAT)[0].json()["stream"], true);
}

#[test]
fn an_llm_that_fails_mid_stream_is_replaced_by_the_extractive_answer() {
    let llm = FakeServer::start(|_| {
        FakeResponse::sse(&[
            chunk("She could not "),
            "{\"choices\": [{\"delta\": {\"content\": \"bro".to_owned(),
            "[DONE]".to_owned(),
        ])
    });
    let d = start_with_llm(&llm, &[]);
    let seq = ingest_call(&d);
    let (events, a) = sse_answer(
        &d,
        &json!({"question": QUESTION, "min_seq": seq, "stream": true}),
    );
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names.first(), Some(&"text"), "{names:?}");
    assert!(names.contains(&"restart"), "{names:?}");
    assert_eq!(a["generator"], "extractive", "{a}");
    assert!(
        a["fallback"]
            .as_str()
            .is_some_and(|f| f.contains("malformed stream chunk")),
        "{a}"
    );
    assert!(
        a["answer"].as_str().is_some_and(|t| t.contains("4471")),
        "{a}"
    );
    assert_eq!(cited_ids(&a), [CALL]);
}

#[test]
fn a_refused_llm_key_falls_back_to_the_extractive_answer_and_says_why() {
    let llm = FakeServer::start(|_| {
        FakeResponse::json(
            401,
            json!({"error": {"message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key"}}),
        )
    });
    let d = start_with_llm(&llm, &[]);
    let seq = ingest_call(&d);
    let a = ask(&d, json!({"question": QUESTION, "min_seq": seq}));
    assert_eq!(a["generator"], "extractive", "{a}");
    assert!(
        a["fallback"]
            .as_str()
            .is_some_and(|f| f.contains("llm.api_key")),
        "{a}"
    );
    assert_eq!(cited_ids(&a), [CALL]);
}

#[test]
fn bad_questions_get_a_problem_body() {
    let d = start(&[]);
    for body in [
        json!({"question": "  "}),
        json!({"question": "x", "k": 0}),
        json!({"question": "x", "k": 99}),
    ] {
        let (s, b) = d.post_json("/v1/ask", &body.to_string());
        assert_eq!(s, 422, "{body}: {b}");
        assert!(
            json_of(&b)["detail"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{b}"
        );
    }
    let (s, b) = d.post_json(
        "/v1/ask",
        &json!({"question": "x", "stream": "yes"}).to_string(),
    );
    assert!(s == 400 || s == 422, "{s}: {b}");
}

fn fake_rocketchat() -> FakeServer {
    FakeServer::start(|r| {
        if r.header("x-auth-token") != Some("bot-auth-token")
            || r.header("x-user-id") != Some("bot-user-id")
        {
            return FakeResponse::json(
                401,
                json!({"status": "error", "message": "You must be logged in to do this."}),
            );
        }
        let m = r.json();
        FakeResponse::json(
            200,
            json!({"ts": 1, "channel": m["roomId"], "success": true,
            "message": {"_id": "posted1", "rid": m["roomId"], "tmid": m["tmid"], "msg": m["text"]}}),
        )
    })
}

fn rocketchat_env(rc: &FakeServer, budget_ms: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CONCIERGE_ROCKETCHAT__API_BASE", rc.base.clone()),
        ("CONCIERGE_ROCKETCHAT__USER_ID", "bot-user-id".to_owned()),
        (
            "CONCIERGE_ROCKETCHAT__AUTH_TOKEN",
            "bot-auth-token".to_owned(),
        ),
        (
            "CONCIERGE_ROCKETCHAT__REPLY_BUDGET_MS",
            budget_ms.to_owned(),
        ),
    ]
}

fn outgoing() -> String {
    std::fs::read_to_string(fixture("webhooks/rocketchat-outgoing.json")).expect("fixture")
}

/// Waits until the Q&A document of the fixture's message is stored; returns it.
fn qa_document(d: &Daemon) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, b) = d.get("/v1/documents/rocketchat:qa:aX3kP9wQ2mR7tY5uZ");
        if s == 200 {
            return json_of(&b);
        }
        assert!(Instant::now() < deadline, "no Q&A document: {s} {b}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_slow_llm_makes_the_rocketchat_webhook_return_empty_and_the_answer_arrives_by_rest_in_the_thread()
 {
    let llm = grounded_llm(Duration::from_millis(2_500));
    let rc = fake_rocketchat();
    let rc_env = rocketchat_env(&rc, "300");
    let extra: Vec<(&str, &str)> = rc_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let d = start_with_llm(&llm, &extra);
    let seq = ingest_call(&d);
    // Let the indexes include the call before the question arrives.
    ask(
        &d,
        json!({"question": "warm up", "min_seq": seq, "min_similarity": 1.0}),
    );
    let started = Instant::now();
    let (s, b) = d.post_json("/v1/rocketchat", &outgoing());
    assert_eq!(s, 200, "{b}");
    assert_eq!(json_of(&b), json!({}), "nothing posted synchronously");
    assert!(
        started.elapsed() < Duration::from_millis(2_000),
        "the webhook waited for the LLM: {:?}",
        started.elapsed()
    );
    let posts = rc.wait_for(POST, 1, Duration::from_secs(30));
    assert_eq!(posts.len(), 1, "the answer was posted once");
    let m = posts[0].json();
    assert_eq!(m["roomId"], "GENERAL");
    assert_eq!(m["tmid"], "pQ1wE2rT3yU4iO5pA", "in the question's thread");
    assert!(
        m["text"].as_str().is_some_and(|t| t.contains("4471")),
        "{m}"
    );
    let links: Vec<&str> = m["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["title_link"].as_str())
        .collect();
    assert_eq!(
        links,
        ["https://dashboard.aircall.io/conversations/987654321"],
        "{m}"
    );
    // The Q&A is stored and found by later searches.
    let qa = qa_document(&d);
    assert_eq!(qa["metadata"]["asker"], "jdoe");
    assert_eq!(qa["metadata"]["channel"], "general");
    assert_eq!(qa["metadata"]["cited"], json!([CALL]));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, b) = d.post_json("/v1/search", &json!({"query": "Seaview key box code", "filter": {"source": "rocketchat", "kind": "qa"}}).to_string());
        assert_eq!(s, 200, "{b}");
        if json_of(&b)["hits"][0]["document"]["id"] == "rocketchat:qa:aX3kP9wQ2mR7tY5uZ" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the Q&A document is not searchable: {b}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_quick_answer_comes_back_in_the_webhook_response_and_a_redelivery_is_not_answered_twice() {
    let rc = fake_rocketchat();
    let rc_env = rocketchat_env(&rc, "20000");
    let extra: Vec<(&str, &str)> = rc_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let d = start(&extra);
    let seq = ingest_call(&d);
    ask(
        &d,
        json!({"question": "warm up", "min_seq": seq, "min_similarity": 1.0}),
    );
    let (s, b) = d.post_json("/v1/rocketchat", &outgoing());
    assert_eq!(s, 200, "{b}");
    let reply = json_of(&b);
    assert_eq!(reply["tmid"], "pQ1wE2rT3yU4iO5pA", "{reply}");
    assert!(
        reply["text"].as_str().is_some_and(|t| t.contains("4471")),
        "{reply}"
    );
    assert_eq!(
        reply["attachments"][0]["title_link"],
        "https://dashboard.aircall.io/conversations/987654321",
        "{reply}"
    );
    qa_document(&d);
    let (s, b) = d.post_json("/v1/rocketchat", &outgoing());
    assert_eq!(
        (s, json_of(&b)),
        (200, json!({})),
        "a redelivery is not answered again"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        rc.requests_to(POST).is_empty(),
        "nothing was posted by REST"
    );
}

#[test]
fn rocketchat_messages_from_bots_are_ignored_and_wrong_tokens_refused() {
    let d = start(&[]);
    let mut m = json_of(&outgoing());
    m["bot"] = json!(true);
    let (s, b) = d.post_json("/v1/rocketchat", &m.to_string());
    assert_eq!((s, json_of(&b)), (200, json!({})), "{b}");
    m["bot"] = json!(false);
    m["token"] = json!("wrong");
    let (s, b) = d.post_json("/v1/rocketchat", &m.to_string());
    assert_eq!(s, 403, "{b}");
    assert!(json_of(&b)["detail"].is_string(), "{b}");
    let (s, _) = d.get("/v1/documents/rocketchat:qa:aX3kP9wQ2mR7tY5uZ");
    assert_eq!(s, 404, "neither message was answered");
    let model = model_dir();
    let unconfigured = Daemon::start(
        &["--model-dir", model.to_str().expect("utf-8")],
        &workspace_root(),
    );
    let (s, b) = unconfigured.post_json("/v1/rocketchat", &outgoing());
    assert_eq!(s, 404, "{b}");
    assert!(b.contains("rocketchat.token"), "{b}");
}

#[test]
fn the_local_model_answers_when_configured_and_its_citations_are_checked() {
    let weights = workspace_root().join("models/weights");
    let d = start(&[
        ("CONCIERGE_LLM__PROVIDER", "local"),
        ("CONCIERGE_MODELS__DIR", weights.to_str().expect("utf-8")),
        ("CONCIERGE_ANSWERS__MAX_TOKENS", "60"),
    ]);
    let seq = ingest_call(&d);
    let a = ask(&d, json!({"question": QUESTION, "min_seq": seq}));
    assert_eq!(a["generator"], "local:SmolLM2-135M-Instruct", "{a}");
    assert_eq!(a["known"], true, "{a}");
    assert!(
        a["answer"].as_str().is_some_and(|t| !t.trim().is_empty()),
        "{a}"
    );
    let numbers: Vec<u64> = a["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .filter_map(|s| s["number"].as_u64())
        .collect();
    for c in a["citations"].as_array().expect("citations") {
        assert!(
            numbers.contains(&c.as_u64().expect("number")),
            "citation {c} points at no source: {a}"
        );
    }
}

#[test]
fn the_local_provider_without_its_model_fails_at_start_with_the_fetch_command() {
    let empty = concierge_tests::temp_dir();
    let model = model_dir();
    let out = std::process::Command::new(concierge_tests::binary("concierge"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--model-dir",
            model.to_str().expect("utf-8"),
            "--data-dir",
        ])
        .arg(empty.path().join("data"))
        .env("CONCIERGE_LLM__PROVIDER", "local")
        .env("CONCIERGE_MODELS__DIR", empty.path())
        .current_dir(workspace_root())
        .output()
        .expect("run concierge serve");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("models/fetch.sh SmolLM2-135M-Instruct"),
        "{stderr}"
    );
}
