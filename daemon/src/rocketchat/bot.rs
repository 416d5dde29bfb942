//! The bot: what happens to a verified question. Bots (itself included) are ignored; a
//! redelivered question is not answered twice (its Q&A document exists, or it is in flight); the
//! answer is searched and generated, stored as a Q&A document, and either returned within
//! `rocketchat.reply_budget_ms` or handed to the reply worker, which posts it into the
//! question's thread later. The HTTP handler only checks the token and converts.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concierge_engine::{Engine, Filter, Fusion, IngestRequest};
use serde_json::{Value, json};

use super::{OutgoingMessage, qa_document, reply};
use crate::answers::{AnswerView, Answerer};
use crate::config::RocketChat as RocketChatConfig;
use crate::workers::Workers;
use crate::workers::rocketchat_replies;

/// What the webhook answers.
#[derive(Debug)]
pub enum Reply {
    /// Nothing to say in the response (`{}`): ignored, a redelivery, or posted later.
    Nothing,
    /// The message to put in the response (RocketChat posts it in the thread).
    Message(Value),
}

/// Why a question could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error(transparent)]
    Engine(#[from] concierge_engine::Error),
    #[error("a background task failed: {0}")]
    Task(String),
}

/// Message ids of questions being answered now.
#[derive(Debug, Default)]
struct InFlight(Mutex<HashSet<String>>);

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

/// Answers RocketChat questions.
#[derive(Debug, Clone)]
pub struct Bot {
    engine: Arc<Engine>,
    answerer: Arc<Answerer>,
    fusion: Fusion,
    config: RocketChatConfig,
    in_flight: Arc<InFlight>,
    workers: Workers,
}

impl Bot {
    pub fn new(
        engine: Arc<Engine>,
        answerer: Arc<Answerer>,
        fusion: Fusion,
        config: RocketChatConfig,
        workers: Workers,
    ) -> Self {
        Bot {
            engine,
            answerer,
            fusion,
            config,
            in_flight: Arc::default(),
            workers,
        }
    }

    /// Takes a message whose token was checked.
    pub async fn handle(&self, message: OutgoingMessage) -> Result<Reply, BotError> {
        let own = message.user_id.is_some() && message.user_id == self.config.user_id;
        if message.bot || own {
            return Ok(Reply::Nothing);
        }
        let question = message.question();
        if question.is_empty() {
            return Ok(Reply::Message(json!({
                "text": "Ask me a question after the trigger word, for example: why did the guest in unit 4 call twice yesterday?",
                "tmid": message.thread(),
            })));
        }
        let qa_id = message.qa_id();
        let engine = self.engine.clone();
        let answered = tokio::task::spawn_blocking(move || engine.get(&qa_id))
            .await
            .map_err(|e| BotError::Task(e.to_string()))??;
        if answered.is_some() {
            tracing::info!(message_id = %message.message_id, "question already answered; ignoring the redelivery");
            return Ok(Reply::Nothing);
        }
        if !self.in_flight.lock().insert(message.message_id.clone()) {
            tracing::info!(message_id = %message.message_id, "question being answered; ignoring the redelivery");
            return Ok(Reply::Nothing);
        }
        let claim = Claim(self.in_flight.clone(), message.message_id.clone());
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        let asked = message.clone();
        self.workers.spawn("rocketchat answer", async move {
            let body = this.answer_and_record(&asked, question).await;
            drop(claim);
            let _ = tx.send(body);
        });
        let budget = Duration::from_millis(self.config.reply_budget_ms);
        match tokio::time::timeout(budget, &mut rx).await {
            Ok(Ok(body)) => Ok(Reply::Message(body)),
            Ok(Err(_)) => Err(BotError::Task(
                "the answer task ended without an answer".into(),
            )),
            Err(_) => {
                tracing::info!(message_id = %message.message_id, budget_ms = budget.as_millis() as u64, "answer not ready within the reply budget; posting it later");
                rocketchat_replies::post_when_ready(&self.workers, &self.config, message, rx);
                Ok(Reply::Nothing)
            }
        }
    }

    /// Answers, stores the Q&A document, and returns the reply body. Failures become a reply
    /// that says so (the cause is logged), so the asker is never left without an answer.
    async fn answer_and_record(&self, message: &OutgoingMessage, question: String) -> Value {
        let engine = self.engine.clone();
        let answerer = self.answerer.clone();
        let fusion = self.fusion;
        let asked = message.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut request = answerer.request(question.clone(), Filter::default());
            request.fusion = fusion;
            let answer = answerer.ask(&engine, &request, &mut |_| {})?;
            let view = AnswerView::new(answer, &answerer);
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let doc = qa_document(&asked, &question, &view, now_ms)
                .map_err(|reason| anyhow::anyhow!("the Q&A document: {reason}"))?;
            engine.ingest(IngestRequest::upsert(doc))?;
            Ok::<_, anyhow::Error>(reply(&asked, &view))
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r);
        result.unwrap_or_else(|e| {
            tracing::error!(message_id = %message.message_id, error = %format!("{e:#}"), "answering a RocketChat question failed");
            json!({
                "text": "Sorry, I could not answer this right now; the cause is in Concierge's log.",
                "tmid": message.thread(),
            })
        })
    }
}
