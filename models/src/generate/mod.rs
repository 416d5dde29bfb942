//! Answer generation: the [`Generator`] trait and the grounded [`Prompt`] every generator gets
//! (a question and numbered passages; rendered as chat messages for LLMs). Implementations:
//! [`OpenAiGenerator`] (any OpenAI-compatible chat-completions API, Groq by default),
//! [`ExtractiveGenerator`] (the embedded default: the passages' most relevant sentences, cited),
//! [`LocalGenerator`] (opt-in: SmolLM2-135M-Instruct on candle, from its GGUF).
//!
//! Not here: retrieval, citation checking and the "don't know" decision (the engine's `answer`),
//! HTTP serving (the daemon).

mod extractive;
mod local;
mod openai;
mod sse;

pub use extractive::ExtractiveGenerator;
pub use local::{LocalGenerator, SMOLLM2_GGUF, gguf_tokenizer, tokenizer_json};
pub use openai::{OpenAiConfig, OpenAiGenerator};

use crate::ModelError;

/// A passage the answer may cite as `[number]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    /// 1-based number the answer cites.
    pub number: usize,
    /// The document's title (may be empty).
    pub title: String,
    /// The passage text.
    pub text: String,
}

/// Who says a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Instructions.
    System,
    /// The asker.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The OpenAI wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Who says it.
    pub role: Role,
    /// What is said.
    pub content: String,
}

/// A grounded question: what every generator answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The question as asked.
    pub question: String,
    /// The passages the answer must come from, numbered from 1.
    pub passages: Vec<Passage>,
    /// Upper bound on the answer's length, in tokens (LLMs).
    pub max_tokens: u32,
}

/// The instructions LLM generators get.
pub const SYSTEM_INSTRUCTIONS: &str = "You answer questions from the operations team of a \
hospitality company (calls, bookings, guests, listings). Answer only from the numbered passages \
you are given, never from other knowledge. After every statement, cite the passages it comes \
from by number in square brackets, like [1] or [2][3]. Cite only numbers that appear in the \
passages. If the passages do not answer the question, say that you do not know. Be brief: a \
few sentences, plain text.";

impl Prompt {
    /// The chat messages an LLM gets: the instructions, then the passages and the question.
    pub fn messages(&self) -> Vec<ChatMessage> {
        let mut user = String::from("Passages:\n");
        for p in &self.passages {
            user.push_str(&format!(
                "\n[{}] {}\n{}\n",
                p.number,
                p.title.trim(),
                p.text.trim()
            ));
        }
        user.push_str(&format!("\nQuestion: {}", self.question.trim()));
        vec![
            ChatMessage {
                role: Role::System,
                content: SYSTEM_INSTRUCTIONS.to_owned(),
            },
            ChatMessage {
                role: Role::User,
                content: user,
            },
        ]
    }
}

/// Writes answers. Shared between threads behind an `Arc`.
pub trait Generator: Send + Sync + std::fmt::Debug {
    /// What answers, for responses and logs (`extractive`, `openai:<model>`).
    fn name(&self) -> String;

    /// The whole answer to `prompt`.
    fn generate(&self, prompt: &Prompt) -> Result<String, ModelError>;

    /// The answer to `prompt`, passing each piece of text to `on_text` as it is produced;
    /// returns the whole text. By default, one piece: the whole answer.
    fn generate_stream(
        &self,
        prompt: &Prompt,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<String, ModelError> {
        let text = self.generate(prompt)?;
        on_text(&text);
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_numbers_every_passage_and_ends_with_the_question() {
        let p = Prompt {
            question: "Why did the guest call?".to_owned(),
            passages: vec![
                Passage {
                    number: 1,
                    title: "Call 1".to_owned(),
                    text: "The boiler is broken.".to_owned(),
                },
                Passage {
                    number: 2,
                    title: String::new(),
                    text: "Late check-in.".to_owned(),
                },
            ],
            max_tokens: 100,
        };
        let m = p.messages();
        assert_eq!(m[0].role, Role::System);
        assert!(m[0].content.contains("[1]"));
        assert!(m[1].content.contains("[1] Call 1\nThe boiler is broken."));
        assert!(m[1].content.contains("[2] \nLate check-in."));
        assert!(m[1].content.ends_with("Question: Why did the guest call?"));
    }
}
