//! Answers that missed the webhook's reply budget: awaited here and posted into the question's
//! thread through RocketChat's REST API (`rocketchat/client.rs`, which never posts twice).

use tokio::sync::oneshot;

use super::Workers;
use crate::config::RocketChat as RocketChatConfig;
use crate::rocketchat::OutgoingMessage;
use crate::rocketchat::client::{PostError, RestClient};

/// Waits for the answer on `answer` and posts it; failures are logged.
pub fn post_when_ready(
    workers: &Workers,
    config: &RocketChatConfig,
    message: OutgoingMessage,
    answer: oneshot::Receiver<serde_json::Value>,
) {
    let rest = RestClient::new(config);
    let tracked = workers.clone();
    workers.spawn("rocketchat reply", async move {
        let Ok(body) = answer.await else { return };
        let room = message.channel_id.clone();
        let posted = match rest {
            Some(client) => tracked
                .blocking("rocketchat post", move || client.post(&room, &body))
                .await
                .unwrap_or_else(|| {
                    Err(PostError::Unavailable {
                        attempts: 0,
                        detail: "the posting task failed".to_owned(),
                    })
                }),
            None => Err(PostError::NotConfigured),
        };
        match posted {
            Ok(()) => tracing::info!(message_id = %message.message_id, "answer posted to RocketChat"),
            Err(e) => {
                tracing::error!(message_id = %message.message_id, error = %e, "could not post the answer to RocketChat")
            }
        }
    });
}
