//! RocketChat, payload side (no I/O): the outgoing-webhook message, the question in it (trigger
//! word stripped), the reply (text, thread, source attachments with their Aircall/Guesty links)
//! and the Q&A document every answered question becomes (kind `qa`, source `rocketchat`).
//! `client.rs` posts replies through the REST API.

pub mod bot;
pub mod client;

use concierge_engine::Document;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::answers::AnswerView;
use concierge_infra::utc::parse_rfc3339_ms;

/// What RocketChat's outgoing webhook posts for a message (`sendMessage` event).
#[derive(Debug, Clone, Deserialize)]
pub struct OutgoingMessage {
    pub token: String,
    #[serde(default)]
    pub bot: bool,
    #[serde(default)]
    pub trigger_word: Option<String>,
    pub channel_id: String,
    #[serde(default)]
    pub channel_name: Option<String>,
    pub message_id: String,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub user_name: Option<String>,
    #[serde(default)]
    pub text: String,
    /// Parent message when the question was asked inside a thread.
    #[serde(default)]
    pub tmid: Option<String>,
}

/// Longest question answered, in bytes (RocketChat messages can be much longer).
const MAX_QUESTION_BYTES: usize = 2_000;

impl OutgoingMessage {
    /// The question: the text without the trigger word, trimmed.
    pub fn question(&self) -> String {
        let text = self.text.trim();
        let text = match &self.trigger_word {
            Some(t) if !t.is_empty() => text.strip_prefix(t.as_str()).unwrap_or(text),
            _ => text,
        };
        let mut q = text.trim().to_owned();
        if q.len() > MAX_QUESTION_BYTES {
            let mut cut = MAX_QUESTION_BYTES;
            while !q.is_char_boundary(cut) {
                cut -= 1;
            }
            q.truncate(cut);
        }
        q
    }

    /// The thread the answer goes to: the question's thread, or a new one under the question.
    pub fn thread(&self) -> &str {
        self.tmid.as_deref().unwrap_or(&self.message_id)
    }

    /// The id of the Q&A document of this message (also how a redelivery is recognised).
    pub fn qa_id(&self) -> String {
        let safe: String = self
            .message_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("rocketchat:qa:{safe}")
    }
}

/// The message body (for the webhook response and for `chat.postMessage`, which adds `roomId`).
pub fn reply(message: &OutgoingMessage, answer: &AnswerView) -> Value {
    let mut text = answer.answer.clone();
    let listed: Vec<_> = answer
        .sources
        .iter()
        .filter(|s| s.cited || !answer.known)
        .collect();
    let attachments: Vec<Value> = listed
        .iter()
        .map(|s| {
            let title = if s.number > 0 {
                format!("[{}] {}", s.number, display_title(&s.title, &s.id))
            } else {
                display_title(&s.title, &s.id)
            };
            let mut a =
                json!({"title": title, "text": s.snippet, "color": "#1d74f5", "collapsed": false});
            if let Some(link) = &s.link {
                a["title_link"] = json!(link);
            }
            a
        })
        .collect();
    if !answer.known && !listed.is_empty() {
        text.push_str("\n\nClosest matches are attached.");
    }
    json!({"text": text, "tmid": message.thread(), "attachments": attachments})
}

fn display_title(title: &str, id: &str) -> String {
    if title.trim().is_empty() {
        id.to_owned()
    } else {
        title.trim().to_owned()
    }
}

/// The question and its answer as a document, so later questions can find them.
pub fn qa_document(
    message: &OutgoingMessage,
    question: &str,
    answer: &AnswerView,
    now_ms: i64,
) -> Result<Document, String> {
    let cited: Vec<&str> = answer
        .sources
        .iter()
        .filter(|s| s.cited)
        .map(|s| s.id.as_str())
        .collect();
    let mut title: String = question.chars().take(120).collect();
    if title.len() < question.len() {
        title.push('…');
    }
    let asker = message.user_name.as_deref().unwrap_or("someone");
    let channel = message
        .channel_name
        .as_deref()
        .unwrap_or(&message.channel_id);
    let body = format!(
        "Question from {asker} in #{channel}: {question}\nAnswer: {}",
        answer.answer
    );
    let updated_at = message
        .timestamp
        .as_deref()
        .and_then(parse_rfc3339_ms)
        .unwrap_or(now_ms);
    let mut doc = Document::new(message.qa_id(), format!("Q: {title}"), body, updated_at)
        .map_err(|e| e.to_string())?;
    doc.metadata = json!({
        "asker": asker,
        "user_id": message.user_id,
        "channel": channel,
        "channel_id": message.channel_id,
        "message_id": message.message_id,
        "thread": message.thread(),
        "question": question,
        "known": answer.known,
        "cited": cited,
        "generator": answer.generator,
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> OutgoingMessage {
        serde_json::from_str(include_str!(
            "../../../tests/fixtures/webhooks/rocketchat-outgoing.json"
        ))
        .expect("the fixture parses")
    }

    #[test]
    fn the_trigger_word_is_stripped_and_the_thread_kept() {
        let m = fixture();
        assert_eq!(
            m.question(),
            "why did the guest at Seaview 2BR call, and what code did we give her?"
        );
        assert_eq!(m.thread(), "pQ1wE2rT3yU4iO5pA");
        assert_eq!(m.qa_id(), "rocketchat:qa:aX3kP9wQ2mR7tY5uZ");
        let mut top_level = m.clone();
        top_level.tmid = None;
        assert_eq!(top_level.thread(), "aX3kP9wQ2mR7tY5uZ");
    }

    #[test]
    fn an_over_long_question_is_cut_at_a_character_boundary() {
        let mut m = fixture();
        m.trigger_word = None;
        m.text = "é".repeat(3_000);
        let q = m.question();
        assert!(q.len() <= MAX_QUESTION_BYTES && q.chars().all(|c| c == 'é'));
    }
}
