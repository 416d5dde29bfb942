//! `POST /v1/rocketchat`: RocketChat's outgoing webhook. The token in the body is checked in
//! constant time; the rest is the bot's (`rocketchat/bot.rs`): bots ignored, redeliveries
//! answered once, the answer in the response within `rocketchat.reply_budget_ms` or posted into
//! the thread later, every answered question stored as a Q&A document.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::extract::JsonBody;
use crate::config::Secret;
use crate::rocketchat::OutgoingMessage;
use crate::rocketchat::bot::{BotError, Reply};
use crate::verify::constant_time_eq;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/rocketchat", post(rocketchat))
}

async fn rocketchat(
    State(state): State<AppState>,
    JsonBody(message): JsonBody<OutgoingMessage>,
) -> Result<Response, ApiError> {
    let Some(expected) = state.config.rocketchat.token.as_ref().map(Secret::expose) else {
        return Err(ApiError::NotFound(
            "the RocketChat integration is not configured (rocketchat.token)".to_owned(),
        ));
    };
    if !constant_time_eq(message.token.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::Forbidden("the RocketChat token does not match"));
    }
    state.refuse_when_stopping()?;
    let Some(bot) = state.bot.clone() else {
        return Err(ApiError::Unavailable(
            "this node keeps no store: RocketChat's webhook goes to the primary".to_owned(),
        ));
    };
    match bot.handle(message).await {
        // A non-empty body: RocketChat counts an empty one as a failed call.
        Ok(Reply::Nothing) => Ok(Json(json!({})).into_response()),
        Ok(Reply::Message(body)) => Ok(Json(body).into_response()),
        Err(BotError::Engine(e)) => Err(ApiError::Engine(e)),
        Err(BotError::Task(cause)) => Err(ApiError::Internal(cause)),
    }
}
