//! The OpenAI-compatible LLM client against a fake server that speaks the chat-completions wire
//! format (wire-formats.md §4): whole and streamed answers, 429 with `retry-after`, 500 then
//! success, malformed stream chunks, a refused key, an unknown model, the model list.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use concierge_models::{
    Generator, LlmError, ModelError, OpenAiConfig, OpenAiGenerator, Passage, Prompt,
};
use concierge_tests::{FakeResponse, FakeServer};
use serde_json::json;

const PATH: &str = "/openai/v1/chat/completions";

fn prompt() -> Prompt {
    Prompt {
        question: "Why did the guest call?".to_owned(),
        passages: vec![Passage {
            number: 1,
            title: "Call".to_owned(),
            text: "The boiler is broken.".to_owned(),
        }],
        max_tokens: 123,
    }
}

fn client(server: &FakeServer) -> OpenAiGenerator {
    let mut c = OpenAiConfig::new(format!("{}/openai/v1", server.base), "openai/gpt-oss-20b");
    c.api_key = Some("gsk_test_key".to_owned());
    c.timeout = Duration::from_secs(10);
    c.retry_base = Duration::from_millis(50);
    OpenAiGenerator::new(c).expect("a valid configuration")
}

fn completion(text: &str) -> serde_json::Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "openai/gpt-oss-20b",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
}

fn chunk(content: &str) -> String {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "openai/gpt-oss-20b",
           "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
    .to_string()
}

fn last_chunk() -> String {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "openai/gpt-oss-20b",
           "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "x_groq": {"id": "req_1", "usage": {"total_tokens": 9}}})
    .to_string()
}

/// A server answering with `script` in order (the last answer repeats).
fn scripted(script: Vec<FakeResponse>) -> FakeServer {
    let n = AtomicUsize::new(0);
    let script = Mutex::new(script);
    FakeServer::start(move |_| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        let s = script.lock().expect("script");
        s[i.min(s.len() - 1)].clone()
    })
}

#[test]
fn a_whole_answer_is_requested_with_the_key_the_model_and_max_completion_tokens() {
    let server = scripted(vec![FakeResponse::json(
        200,
        completion("It is the boiler [1]."),
    )]);
    let text = client(&server).generate(&prompt()).expect("an answer");
    assert_eq!(text, "It is the boiler [1].");
    let requests = server.requests_to(PATH);
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.header("authorization"), Some("Bearer gsk_test_key"));
    let body = r.json();
    assert_eq!(body["model"], "openai/gpt-oss-20b");
    assert_eq!(body["max_completion_tokens"], 123);
    assert!(body.get("max_tokens").is_none(), "max_tokens is deprecated");
    assert_eq!(body["stream"], false);
    assert_eq!(body["messages"][0]["role"], "system");
    assert!(
        body["messages"][1]["content"]
            .as_str()
            .is_some_and(|c| c.contains("[1] Call\nThe boiler is broken."))
    );
}

#[test]
fn a_streamed_answer_arrives_in_pieces_and_ignores_the_usage_chunk() {
    let server = scripted(vec![FakeResponse::sse(&[
        json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}).to_string(),
        chunk("It is "),
        chunk("the boiler"),
        chunk(" [1]."),
        last_chunk(),
        "[DONE]".to_owned(),
    ])]);
    let mut pieces = Vec::new();
    let text = client(&server)
        .generate_stream(&prompt(), &mut |p| pieces.push(p.to_owned()))
        .expect("an answer");
    assert_eq!(text, "It is the boiler [1].");
    assert_eq!(pieces, ["It is ", "the boiler", " [1]."]);
    assert_eq!(server.requests_to(PATH)[0].json()["stream"], true);
}

#[test]
fn a_429_is_retried_after_the_retry_after_the_server_asked_for() {
    let server = scripted(vec![
        FakeResponse::json(429, json!({"error": {"message": "Rate limit reached for model `openai/gpt-oss-20b`. Please try again in 1s", "type": "tokens", "code": "rate_limit_exceeded"}}))
            .header("retry-after", "1"),
        FakeResponse::json(200, completion("Fine [1].")),
    ]);
    let started = Instant::now();
    let text = client(&server)
        .generate(&prompt())
        .expect("an answer after the retry");
    assert_eq!(text, "Fine [1].");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "did not wait for retry-after: {:?}",
        started.elapsed()
    );
    assert_eq!(server.requests_to(PATH).len(), 2);
}

#[test]
fn a_500_then_success_gives_the_answer() {
    let server = scripted(vec![
        FakeResponse::json(
            500,
            json!({"error": {"message": "internal", "type": "internal_server_error"}}),
        ),
        FakeResponse::json(503, json!({"error": {"message": "overloaded"}})),
        FakeResponse::sse(&[chunk("Recovered [1]."), last_chunk(), "[DONE]".to_owned()]),
    ]);
    let text = client(&server)
        .generate_stream(&prompt(), &mut |_| {})
        .expect("an answer on the third attempt");
    assert_eq!(text, "Recovered [1].");
    assert_eq!(server.requests_to(PATH).len(), 3);
}

#[test]
fn retries_stop_after_the_attempts_and_say_how_many_were_made() {
    let server = scripted(vec![FakeResponse::json(
        503,
        json!({"error": {"message": "overloaded"}}),
    )]);
    let err = client(&server).generate(&prompt()).expect_err("always 503");
    assert!(
        matches!(
            err,
            ModelError::Llm(LlmError::Unavailable {
                status: Some(503),
                attempts: 3,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(server.requests_to(PATH).len(), 3);
}

#[test]
fn a_malformed_stream_chunk_is_a_protocol_error_not_a_panic_or_garbage() {
    let server = scripted(vec![FakeResponse::sse(&[
        chunk("Half an answer"),
        "{\"choices\": [{\"delta\": {\"content\": \"broken".to_owned(),
        "[DONE]".to_owned(),
    ])]);
    let mut pieces = Vec::new();
    let err = client(&server)
        .generate_stream(&prompt(), &mut |p| pieces.push(p.to_owned()))
        .expect_err("malformed chunk");
    assert!(
        matches!(err, ModelError::Llm(LlmError::Protocol(_))),
        "{err}"
    );
    assert!(err.to_string().contains("malformed stream chunk"), "{err}");
    assert_eq!(pieces, ["Half an answer"]);
    assert_eq!(
        server.requests_to(PATH).len(),
        1,
        "a stream that already produced text is not retried"
    );
}

#[test]
fn a_stream_cut_before_done_is_an_error() {
    let server = scripted(vec![FakeResponse::sse(&[chunk("Cut"), chunk(" short")])]);
    let err = client(&server)
        .generate_stream(&prompt(), &mut |_| {})
        .expect_err("no [DONE]");
    assert!(err.to_string().contains("before [DONE]"), "{err}");
}

#[test]
fn a_refused_key_and_an_unknown_model_fail_at_once_with_the_key_to_check() {
    let server = scripted(vec![FakeResponse::json(
        401,
        json!({"error": {"message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key"}}),
    )]);
    let err = client(&server).generate(&prompt()).expect_err("401");
    assert!(
        matches!(err, ModelError::Llm(LlmError::Unauthorized { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("llm.api_key"), "{err}");
    assert_eq!(server.requests_to(PATH).len(), 1, "a 401 is not retried");

    let server = scripted(vec![FakeResponse::json(
        404,
        json!({"error": {"message": "The model `llama-3.1-8b-instant` does not exist or you do not have access to it.", "type": "invalid_request_error", "code": "model_not_found"}}),
    )]);
    let err = client(&server).generate(&prompt()).expect_err("404");
    assert!(
        matches!(err, ModelError::Llm(LlmError::UnknownModel { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("llm.model"), "{err}");
}

#[test]
fn the_model_list_is_read_from_the_models_endpoint() {
    let server = FakeServer::start(|r| {
        assert_eq!(r.path, "/openai/v1/models");
        FakeResponse::json(
            200,
            json!({"object": "list", "data": [{"id": "openai/gpt-oss-20b", "object": "model"}, {"id": "qwen/qwen3-32b", "object": "model"}]}),
        )
    });
    let models = client(&server).list_models().expect("the list");
    assert_eq!(models, ["openai/gpt-oss-20b", "qwen/qwen3-32b"]);
}

#[test]
fn a_server_that_ignores_stream_true_still_gives_its_whole_answer() {
    let server = scripted(vec![FakeResponse::json(
        200,
        completion("Whole answer [1]."),
    )]);
    let mut pieces = Vec::new();
    let text = client(&server)
        .generate_stream(&prompt(), &mut |p| pieces.push(p.to_owned()))
        .expect("an answer");
    assert_eq!(text, "Whole answer [1].");
    assert_eq!(pieces, ["Whole answer [1]."]);
}
