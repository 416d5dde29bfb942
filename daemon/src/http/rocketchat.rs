//! `POST /v1/rocketchat`: RocketChat's outgoing webhook. Token in the body (constant time);
//! messages from bots, the bot itself included, are ignored; a redelivered question is not
//! answered twice (its Q&A document exists, or it is being answered). The answer goes into the
//! question's thread: in the response when it is ready within `rocketchat.reply_budget_ms`,
//! otherwise the response is `{}` at once and the answer is posted through the REST API.
//! Every answered question is stored as a Q&A document.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use concierge_engine::{Filter, IngestRequest};
use serde_json::{Value, json};

use super::AppState;
use super::ask::AnswerView;
use super::error::ApiError;
use super::extract::JsonBody;
use crate::rocketchat::client::{PostError, RestClient};
use crate::rocketchat::{OutgoingMessage, qa_document, reply};
use crate::verify::constant_time_eq;

/// Message ids of questions being answered now.
#[derive(Debug, Default)]
pub struct InFlight(Mutex<HashSet<String>>);

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Removes its message id from the set when the answer is done, however it ends.
struct Claim(Arc<InFlight>, String);

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.lock().remove(&self.1);
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/rocketchat", post(rocketchat))
}

fn nothing() -> Response {
    // A non-empty body: RocketChat counts an empty one as a failed call.
    Json(json!({})).into_response()
}

async fn rocketchat(
    State(state): State<AppState>,
    JsonBody(message): JsonBody<OutgoingMessage>,
) -> Result<Response, ApiError> {
    let Some(expected) = state.config.rocketchat.token.clone() else {
        return Err(ApiError::NotFound(
            "the RocketChat integration is not configured (rocketchat.token)".to_owned(),
        ));
    };
    if !constant_time_eq(message.token.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::Forbidden("the RocketChat token does not match"));
    }
    let own = message.user_id.is_some() && message.user_id == state.config.rocketchat.user_id;
    if message.bot || own {
        return Ok(nothing());
    }
    let question = message.question();
    if question.is_empty() {
        return Ok(Json(json!({
            "text": "Ask me a question after the trigger word, for example: why did the guest in unit 4 call twice yesterday?",
            "tmid": message.thread(),
        }))
        .into_response());
    }
    let qa_id = message.qa_id();
    if state.blocking(move |e| e.get(&qa_id)).await?.is_some() {
        tracing::info!(message_id = %message.message_id, "question already answered; ignoring the redelivery");
        return Ok(nothing());
    }
    if !state.questions.lock().insert(message.message_id.clone()) {
        tracing::info!(message_id = %message.message_id, "question being answered; ignoring the redelivery");
        return Ok(nothing());
    }
    let claim = Claim(state.questions.clone(), message.message_id.clone());
    let budget = Duration::from_millis(state.config.rocketchat.reply_budget_ms);
    let mut task = tokio::spawn(answer_and_record(
        state.clone(),
        message.clone(),
        question,
        claim,
    ));
    match tokio::time::timeout(budget, &mut task).await {
        Ok(joined) => {
            Ok(Json(joined.map_err(|e| ApiError::Internal(e.to_string()))?).into_response())
        }
        Err(_) => {
            tracing::info!(message_id = %message.message_id, budget_ms = budget.as_millis() as u64, "answer not ready within the reply budget; posting it later");
            let rest = RestClient::new(&state.config.rocketchat);
            tokio::spawn(async move {
                let Ok(body) = task.await else { return };
                let room = message.channel_id.clone();
                let posted = match rest {
                    Some(client) => tokio::task::spawn_blocking(move || client.post(&room, &body))
                        .await
                        .unwrap_or_else(|e| {
                            Err(PostError::Unavailable {
                                attempts: 0,
                                detail: e.to_string(),
                            })
                        }),
                    None => Err(PostError::NotConfigured),
                };
                match posted {
                    Ok(()) => {
                        tracing::info!(message_id = %message.message_id, "answer posted to RocketChat")
                    }
                    Err(e) => {
                        tracing::error!(message_id = %message.message_id, error = %e, "could not post the answer to RocketChat")
                    }
                }
            });
            Ok(nothing())
        }
    }
}

/// Answers, stores the Q&A document, and returns the reply body. Failures become a reply that
/// says so (the cause is logged), so the asker is never left without an answer.
async fn answer_and_record(
    state: AppState,
    message: OutgoingMessage,
    question: String,
    claim: Claim,
) -> Value {
    let result = async {
        let answerer = state.answerer.clone();
        let mut request = answerer.request(question.clone(), Filter::default());
        request.fusion = state.fusion_defaults();
        let a = answerer.clone();
        let answer = state
            .blocking(move |engine| a.ask(engine, &request, &mut |_| {}))
            .await?;
        let view = AnswerView::new(answer, &answerer);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let doc = qa_document(&message, &question, &view, now_ms).map_err(ApiError::Internal)?;
        state
            .blocking(move |engine| engine.ingest(IngestRequest::upsert(doc)))
            .await?;
        Ok::<_, ApiError>(reply(&message, &view))
    }
    .await;
    drop(claim);
    result.unwrap_or_else(|e| {
        tracing::error!(message_id = %message.message_id, error = ?e, "answering a RocketChat question failed");
        json!({
            "text": "Sorry, I could not answer this right now; the cause is in Concierge's log.",
            "tmid": message.thread(),
        })
    })
}
