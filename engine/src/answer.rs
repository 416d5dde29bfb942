//! Retrieval-augmented answers: a hybrid search for the question, the dense similarity of every
//! passage found (also of passages only the keyword leg found: their stored vector against the
//! question's), the "don't know" decision on that similarity (never on a fused score), a prompt
//! with the relevant passages numbered `[1]..[n]`, the generator's answer streamed through the
//! citation check (markers outside `1..=n` removed), and a fallback generator when the first one
//! fails. Not here: generators themselves (`concierge-models`), HTTP and chat delivery (the
//! daemon).

use std::time::Instant;

use concierge_models::{Generator, Passage, Prompt};
use serde::Serialize;

use crate::chunk_store;
use crate::citations::CitationFilter;
use crate::distance::dot;
use crate::document::Document;
use crate::error::{Error, InvalidInput, Result};
use crate::filter::Filter;
use crate::fusion::Fusion;
use crate::keyword::Snippet;
use crate::search::{self, SearchMode, SearchRequest};
use crate::shared::Shared;

/// Most passages one answer uses.
pub const MAX_PASSAGES: usize = 20;

/// A question.
#[derive(Debug, Clone, PartialEq)]
pub struct AskRequest {
    /// The question as asked.
    pub question: String,
    /// Passages to retrieve (1..=20).
    pub k: usize,
    /// Constraints on the documents used.
    pub filter: Filter,
    /// Passages less similar to the question than this (cosine, dense) are not used; when none
    /// is left the answer says it does not know.
    pub min_similarity: f32,
    /// Upper bound on the answer's length, in tokens (LLM generators).
    pub max_tokens: u32,
    /// Wait (bounded) until the indexes include this sequence.
    pub min_seq: Option<u64>,
    /// How the search's two legs are fused.
    pub fusion: Fusion,
}

impl AskRequest {
    /// A question with the defaults: 5 passages, similarity 0.3, 400 tokens.
    pub fn new(question: impl Into<String>) -> Self {
        AskRequest {
            question: question.into(),
            k: 5,
            filter: Filter::default(),
            min_similarity: 0.3,
            max_tokens: 400,
            min_seq: None,
            fusion: Fusion::default(),
        }
    }

    /// Checks the question and its limits.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        let field = |field, reason: String| InvalidInput::Field { field, reason };
        if self.question.trim().is_empty() {
            return Err(field("question", "is empty".to_owned()));
        }
        if !(1..=MAX_PASSAGES).contains(&self.k) {
            return Err(field(
                "k",
                format!("must be within 1..={MAX_PASSAGES}, got {}", self.k),
            ));
        }
        if !(self.min_similarity.is_finite() && (-1.0..=1.0).contains(&self.min_similarity)) {
            return Err(field(
                "min_similarity",
                format!("must be within -1..=1, got {}", self.min_similarity),
            ));
        }
        if !(1..=8192).contains(&self.max_tokens) {
            return Err(field(
                "max_tokens",
                format!("must be within 1..=8192, got {}", self.max_tokens),
            ));
        }
        Ok(())
    }
}

/// A document the answer drew on (or, when it does not know, one it found instead).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Source {
    /// The number the answer cites it by; 0 for documents found but not given to the generator.
    pub number: usize,
    /// The document as stored.
    pub document: Document,
    /// The passage's fragment, with the question's terms highlighted.
    pub snippet: Snippet,
    /// Cosine similarity of the passage to the question.
    pub similarity: f32,
    /// Whether the answer cites it.
    pub cited: bool,
}

/// Where the time went, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AnswerTimings {
    /// Search, similarity and passage loading.
    pub retrieval_ms: f64,
    /// The generator (and the fallback, if it ran).
    pub generation_ms: f64,
    /// Everything.
    pub total_ms: f64,
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    /// The text, with only valid citation markers.
    pub answer: String,
    /// False when nothing relevant enough was found (the text then says so and cites nothing).
    pub known: bool,
    /// Passage numbers the answer cites, in order of first citation.
    pub cited: Vec<usize>,
    /// Citation markers the generator wrote that pointed at no passage, removed.
    pub removed_citations: Vec<String>,
    /// The passages given to the generator (numbered), or what was found instead.
    pub sources: Vec<Source>,
    /// The generator that wrote the answer (`none` when it did not know).
    pub generator: String,
    /// Why the first generator's answer was replaced by the fallback's, if it was.
    pub fallback: Option<String>,
    /// Where the time went.
    pub timings: AnswerTimings,
}

/// What a caller streaming the answer receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerEvent<'a> {
    /// More (checked) answer text.
    Text(&'a str),
    /// The generator failed part-way: drop the text so far, the fallback's answer follows.
    Restart {
        /// Why.
        reason: &'a str,
    },
}

/// A passage found for a question, from whichever search found it (the embedded indexes, or
/// Qdrant on a replica): its document, the fragment shown, the whole chunk given to the
/// generator, and its dense similarity to the question (what "don't know" is decided on).
#[derive(Debug, Clone, PartialEq)]
pub struct Retrieved {
    pub document: Document,
    pub snippet: Snippet,
    pub text: String,
    pub similarity: f32,
}

fn retrieve(shared: &Shared, req: &AskRequest) -> Result<Vec<Retrieved>> {
    let search = SearchRequest {
        query: req.question.clone(),
        k: req.k,
        mode: SearchMode::Hybrid,
        filter: req.filter.clone(),
        fusion: req.fusion,
        min_seq: req.min_seq,
        ef: None,
    };
    let (response, vector) = search::search_with_vector(shared, &search, None)?;
    let query = match vector {
        Some(v) => v,
        None => search::embed_query(shared, &req.question)?,
    };
    let mut found = Vec::with_capacity(response.hits.len());
    for hit in response.hits {
        let Some(chunk) = hit.chunk else { continue };
        let Some(record) = chunk_store::chunk_text(&shared.store, chunk.id)? else {
            continue;
        };
        let similarity = match hit.dense {
            Some(leg) => leg.score,
            None => chunk_store::vectors(&shared.store, &[chunk.id], query.len())?
                .into_iter()
                .next()
                .flatten()
                .map_or(f32::MIN, |v| dot(&query, &v)),
        };
        found.push(Retrieved {
            document: hit.document,
            snippet: chunk.snippet,
            text: record.text,
            similarity,
        });
    }
    Ok(found)
}

fn dont_know(found: &[Retrieved]) -> String {
    let mut text = "I don't know: nothing stored answers this closely enough.".to_owned();
    if !found.is_empty() {
        let list: Vec<String> = found
            .iter()
            .take(3)
            .map(|f| {
                let title = f.document.title.trim();
                if title.is_empty() {
                    f.document.id.clone()
                } else {
                    format!("\u{201c}{title}\u{201d} ({})", f.document.id)
                }
            })
            .collect();
        text.push_str(&format!(" The closest matches were {}.", list.join(", ")));
    }
    text
}

/// Runs one generator through the citation check; `Err` carries the generator's error.
fn generate_checked(
    generator: &dyn Generator,
    prompt: &Prompt,
    on_event: &mut dyn FnMut(AnswerEvent<'_>),
    emitted: &mut bool,
) -> std::result::Result<(String, CitationFilter), concierge_models::ModelError> {
    let mut filter = CitationFilter::new(prompt.passages.len());
    let mut text = String::new();
    generator.generate_stream(prompt, &mut |piece| {
        let out = filter.push(piece);
        if !out.is_empty() {
            *emitted = true;
            on_event(AnswerEvent::Text(&out));
            text.push_str(&out);
        }
    })?;
    let tail = filter.finish();
    if !tail.is_empty() {
        *emitted = true;
        on_event(AnswerEvent::Text(&tail));
        text.push_str(&tail);
    }
    if text.trim().is_empty() {
        return Err(concierge_models::LlmError::Failed("the answer was empty".to_owned()).into());
    }
    Ok((text.trim().to_owned(), filter))
}

pub(crate) fn ask(
    shared: &Shared,
    req: &AskRequest,
    generator: &dyn Generator,
    fallback: Option<&dyn Generator>,
    on_event: &mut dyn FnMut(AnswerEvent<'_>),
) -> Result<Answer> {
    let started = Instant::now();
    req.validate()?;
    let found = retrieve(shared, req)?;
    answer_from(found, started, req, generator, fallback, on_event)
}

/// The answer to `req` from passages already `found` (best first; retrieval began at
/// `started`): the "don't know" decision on their similarity, the prompt, the generator with
/// the citation check, and the fallback.
pub fn answer_from(
    found: Vec<Retrieved>,
    started: Instant,
    req: &AskRequest,
    generator: &dyn Generator,
    fallback: Option<&dyn Generator>,
    on_event: &mut dyn FnMut(AnswerEvent<'_>),
) -> Result<Answer> {
    let retrieval_ms = started.elapsed().as_secs_f64() * 1e3;
    let (relevant, others): (Vec<Retrieved>, Vec<Retrieved>) = found
        .into_iter()
        .partition(|f| f.similarity >= req.min_similarity);
    if relevant.is_empty() {
        let text = dont_know(&others);
        on_event(AnswerEvent::Text(&text));
        let total_ms = started.elapsed().as_secs_f64() * 1e3;
        return Ok(Answer {
            answer: text,
            known: false,
            cited: Vec::new(),
            removed_citations: Vec::new(),
            sources: others
                .into_iter()
                .map(|f| Source {
                    number: 0,
                    document: f.document,
                    snippet: f.snippet,
                    similarity: f.similarity,
                    cited: false,
                })
                .collect(),
            generator: "none".to_owned(),
            fallback: None,
            timings: AnswerTimings {
                retrieval_ms,
                generation_ms: 0.0,
                total_ms,
            },
        });
    }
    let prompt = Prompt {
        question: req.question.clone(),
        passages: relevant
            .iter()
            .enumerate()
            .map(|(i, f)| Passage {
                number: i + 1,
                title: f.document.title.clone(),
                text: f.text.clone(),
            })
            .collect(),
        max_tokens: req.max_tokens,
    };
    let generation_started = Instant::now();
    let mut emitted = false;
    let mut used = generator.name();
    let mut fallback_reason = None;
    let (text, filter) = match generate_checked(generator, &prompt, on_event, &mut emitted) {
        Ok(done) => done,
        Err(e) => {
            let Some(fallback) = fallback else {
                return Err(Error::Generation(e));
            };
            let reason = e.to_string();
            tracing::warn!(generator = %used, error = %reason, fallback = %fallback.name(), "the generator failed; answering with the fallback");
            if emitted {
                on_event(AnswerEvent::Restart { reason: &reason });
            }
            used = fallback.name();
            fallback_reason = Some(reason);
            let mut emitted = false;
            generate_checked(fallback, &prompt, on_event, &mut emitted)
                .map_err(Error::Generation)?
        }
    };
    let generation_ms = generation_started.elapsed().as_secs_f64() * 1e3;
    let cited = filter.cited().to_vec();
    let sources = relevant
        .into_iter()
        .enumerate()
        .map(|(i, f)| Source {
            number: i + 1,
            cited: cited.contains(&(i + 1)),
            document: f.document,
            snippet: f.snippet,
            similarity: f.similarity,
        })
        .collect();
    Ok(Answer {
        answer: text,
        known: true,
        cited,
        removed_citations: filter.removed().to_vec(),
        sources,
        generator: used,
        fallback: fallback_reason,
        timings: AnswerTimings {
            retrieval_ms,
            generation_ms,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
        },
    })
}
