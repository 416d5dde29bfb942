//! `POST /v1/ask`: `{question, k, filter, stream, min_seq, min_similarity}` → the answer with its
//! citations checked, the sources (number, id, title, link, snippet) and timings; with
//! `stream: true`, server-sent events: `text` pieces as they are generated, `restart` if the LLM
//! failed part-way (the fallback's answer follows), then `answer` (the whole response) or
//! `error` (a problem body).

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use concierge_engine::{AnswerEvent, Filter};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::extract::JsonBody;
use crate::answers::AnswerView;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/ask", post(ask))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AskBody {
    question: String,
    #[serde(default)]
    k: Option<usize>,
    #[serde(default)]
    filter: Filter,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    min_seq: Option<u64>,
    #[serde(default)]
    min_similarity: Option<f32>,
}

async fn ask(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<AskBody>,
) -> Result<Response, ApiError> {
    let mut request = state.answerer.request(body.question, body.filter);
    if let Some(k) = body.k {
        request.k = k;
    }
    if let Some(s) = body.min_similarity {
        request.min_similarity = s;
    }
    request.min_seq = body.min_seq;
    request.fusion = state.fusion_defaults();
    // A bad question is a 422 before anything streams, not an error event after a 200.
    request
        .validate()
        .map_err(|e| ApiError::Engine(concierge_engine::Error::InvalidInput(e)))?;
    let answerer = state.answerer.clone();
    let engine = state.engine.clone();
    let qdrant = state.qdrant_search.clone();
    state.refuse_when_stopping()?;
    if !body.stream {
        let a = answerer.clone();
        let answer = tokio::task::spawn_blocking(move || {
            answer(
                engine.as_deref(),
                qdrant.as_deref(),
                &a,
                &request,
                &mut |_| {},
            )
        })
        .await
        .map_err(|e| ApiError::Internal(format!("answer task failed: {e}")))??;
        return Ok(Json(AnswerView::new(answer, &answerer)).into_response());
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let request_id = super::access::current();
    tokio::task::spawn_blocking(move || {
        let send = |name: &str, data: serde_json::Value| {
            let _ = tx.send(Event::default().event(name).data(data.to_string()));
        };
        let result = answer(
            engine.as_deref(),
            qdrant.as_deref(),
            &answerer,
            &request,
            &mut |event| match event {
                AnswerEvent::Text(t) => send("text", json!({ "text": t })),
                AnswerEvent::Restart { reason } => send("restart", json!({ "reason": reason })),
            },
        );
        match result {
            Ok(answer) => send(
                "answer",
                serde_json::to_value(AnswerView::new(answer, &answerer)).unwrap_or_default(),
            ),
            Err(e) => {
                let mut problem = e.problem_json();
                if let (Some(id), Some(fields)) = (request_id, problem.as_object_mut()) {
                    fields.insert("request_id".to_owned(), json!(id));
                }
                send("error", problem)
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Ok(Sse::new(stream).into_response())
}

/// Answers through the search backend in use: the embedded indexes, or Qdrant.
fn answer(
    engine: Option<&concierge_engine::Engine>,
    qdrant: Option<&crate::qdrant::search::QdrantSearch>,
    answerer: &crate::answers::Answerer,
    request: &concierge_engine::AskRequest,
    on_event: &mut dyn FnMut(AnswerEvent<'_>),
) -> Result<concierge_engine::Answer, ApiError> {
    match (qdrant, engine) {
        (Some(q), _) => answerer
            .ask_through_qdrant(q, request, on_event)
            .map_err(ApiError::from),
        (None, Some(engine)) => answerer
            .ask(engine, request, on_event)
            .map_err(ApiError::Engine),
        (None, None) => Err(ApiError::Internal(
            "neither a store nor Qdrant to answer from".to_owned(),
        )),
    }
}
