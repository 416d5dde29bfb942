//! The answer generators the configuration asks for (`[llm]`, `[answers]`): the extractive
//! answerer by default; an OpenAI-compatible LLM (Groq by default) when `llm.base_url` /
//! `provider = "openai"` is set, or the local SmolLM2 with `provider = "local"`, each with the
//! extractive answerer as its fallback. Also the links of sources
//! (`[answers]` templates) and the check of the configured model against the API's list.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use concierge_engine::{Answer, AnswerEvent, AnswerTimings, AskRequest, Document, Engine, Filter};
use concierge_models::{
    Embedder, ExtractiveGenerator, Generator, LocalGenerator, OpenAiConfig, OpenAiGenerator,
};
use serde::Serialize;

use crate::config::Config;

/// Groq's OpenAI-compatible base, used when `provider = "openai"` names no `base_url`.
pub const GROQ_BASE_URL: &str = "https://api.groq.com/openai/v1";
/// The local model's directory under `[models] dir` unless `llm.model` names another.
pub const LOCAL_MODEL: &str = "SmolLM2-135M-Instruct";

/// What answers questions.
#[derive(Debug, Clone)]
pub struct Answerer {
    /// The configured generator.
    pub generator: Arc<dyn Generator>,
    /// Used when the generator fails (the extractive answerer behind an LLM).
    pub fallback: Option<Arc<dyn Generator>>,
    /// The LLM client, to check its model at start.
    openai: Option<Arc<OpenAiGenerator>>,
    config: crate::config::Answers,
    /// How the answers turned out, for `/metrics`.
    pub outcomes: Arc<AnswerOutcomes>,
}

/// Answers counted by outcome: `known` (the generator answered), `dont_know` (nothing close
/// enough was found), `fallback` (the generator failed and the fallback answered), `failed`
/// (no answer at all).
#[derive(Debug, Default)]
pub struct AnswerOutcomes {
    counts: [std::sync::atomic::AtomicU64; 4],
}

impl AnswerOutcomes {
    /// The outcomes' names, in the order `counts` returns them.
    pub const NAMES: [&'static str; 4] = ["known", "dont_know", "fallback", "failed"];

    /// Counts an answer, or a failure to answer (`None`) that was not the question's fault.
    fn record(&self, answer: Option<&Answer>) {
        let slot = match answer {
            Some(a) if !a.known => 1,
            Some(a) if a.fallback.is_some() => 2,
            Some(_) => 0,
            None => 3,
        };
        self.counts[slot].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The count of each outcome of `NAMES`.
    pub fn counts(&self) -> [u64; 4] {
        std::array::from_fn(|i| self.counts[i].load(std::sync::atomic::Ordering::Relaxed))
    }
}

impl Answerer {
    /// From the validated configuration; `embedder` ranks the extractive answer's sentences.
    pub fn from_config(config: &Config, embedder: Arc<dyn Embedder>) -> anyhow::Result<Self> {
        let extractive: Arc<dyn Generator> = Arc::new(ExtractiveGenerator::new(embedder));
        let (generator, fallback, openai) = match config.llm_provider() {
            "openai" => {
                let mut c = OpenAiConfig::new(
                    config.llm.base_url.as_deref().unwrap_or(GROQ_BASE_URL),
                    config.llm.model.clone().unwrap_or_default(),
                );
                c.api_key = config.llm.api_key.as_ref().map(|k| k.expose().to_owned());
                c.timeout = Duration::from_millis(config.llm.timeout_ms.max(1));
                let client =
                    Arc::new(OpenAiGenerator::new(c).map_err(|e| anyhow::anyhow!("[llm]: {e}"))?);
                let generator: Arc<dyn Generator> = client.clone();
                (generator, Some(extractive), Some(client))
            }
            "local" => {
                let dir = config
                    .models
                    .dir
                    .join(config.llm.model.as_deref().unwrap_or(LOCAL_MODEL));
                tracing::info!(dir = %dir.display(), "loading the local answer model");
                let local: Arc<dyn Generator> = Arc::new(LocalGenerator::load(&dir).with_context(|| {
                    format!(
                        "[llm] provider = \"local\": loading {} (run models/fetch.sh {LOCAL_MODEL})",
                        dir.display()
                    )
                })?);
                (local, Some(extractive), None)
            }
            _ => (extractive, None, None),
        };
        Ok(Answerer {
            generator,
            fallback,
            openai,
            config: config.answers.clone(),
            outcomes: Arc::default(),
        })
    }

    /// Answers `request` with the configured generator and fallback (blocking: run it on the
    /// blocking pool).
    pub fn ask(
        &self,
        engine: &Engine,
        request: &AskRequest,
        on_event: &mut dyn FnMut(AnswerEvent<'_>),
    ) -> concierge_engine::Result<Answer> {
        let result = engine.ask(
            request,
            self.generator.as_ref(),
            self.fallback.as_deref(),
            on_event,
        );
        if !matches!(result, Err(concierge_engine::Error::InvalidInput(_))) {
            self.outcomes.record(result.as_ref().ok());
        }
        result
    }

    /// Answers `request` from passages found through Qdrant (`search.backend = "qdrant"`), with
    /// the same generator, fallback and checks (blocking).
    pub fn ask_through_qdrant(
        &self,
        qdrant: &crate::qdrant::search::QdrantSearch,
        request: &AskRequest,
        on_event: &mut dyn FnMut(AnswerEvent<'_>),
    ) -> Result<Answer, crate::qdrant::search::SearchError> {
        let result = self.qdrant_answer(qdrant, request, on_event);
        if !matches!(
            result,
            Err(crate::qdrant::search::SearchError::Engine(
                concierge_engine::Error::InvalidInput(_)
            ))
        ) {
            self.outcomes.record(result.as_ref().ok());
        }
        result
    }

    fn qdrant_answer(
        &self,
        qdrant: &crate::qdrant::search::QdrantSearch,
        request: &AskRequest,
        on_event: &mut dyn FnMut(AnswerEvent<'_>),
    ) -> Result<Answer, crate::qdrant::search::SearchError> {
        let started = std::time::Instant::now();
        request.validate().map_err(concierge_engine::Error::from)?;
        let mut search = concierge_engine::SearchRequest::new(request.question.clone())
            .k(request.k)
            .filter(request.filter.clone());
        search.fusion = request.fusion;
        search.min_seq = request.min_seq;
        let found = qdrant.retrieve(&search)?;
        Ok(concierge_engine::answer_from(
            found,
            started,
            request,
            self.generator.as_ref(),
            self.fallback.as_deref(),
            on_event,
        )?)
    }

    /// A question with the configured defaults.
    pub fn request(&self, question: String, filter: Filter) -> AskRequest {
        let mut r = AskRequest::new(question);
        r.k = self.config.passages;
        r.min_similarity = self.config.min_similarity;
        r.max_tokens = self.config.max_tokens;
        r.filter = filter;
        r
    }

    /// Where a person opens `doc` (Aircall call, Guesty reservation, listing, conversation).
    pub fn link(&self, doc: &Document) -> Option<String> {
        let mut parts = doc.id.splitn(3, ':');
        let (source, kind, external) = (parts.next()?, parts.next()?, parts.next()?);
        let template = match (source, kind) {
            ("aircall", "call") => &self.config.aircall_call_link,
            ("guesty", "reservation") => &self.config.guesty_reservation_link,
            ("guesty", "listing") => &self.config.guesty_listing_link,
            ("guesty", "conversation") => &self.config.guesty_conversation_link,
            _ => return None,
        };
        (!template.is_empty()).then(|| template.replace("{id}", external))
    }

    /// Checks the configured model against the API's list; logs what is wrong (answers then
    /// come from the fallback until it is fixed). Blocking: run it off the async runtime.
    pub fn check_model(&self) {
        let Some(client) = &self.openai else { return };
        let name = client.name();
        match client.list_models() {
            Ok(models) if models.is_empty() => {
                tracing::info!(generator = %name, "the LLM API lists no models; not checking the model id")
            }
            Ok(models) => {
                let model = name.trim_start_matches("openai:");
                if models.iter().any(|m| m == model) {
                    tracing::info!(generator = %name, "the LLM API serves the configured model");
                } else {
                    tracing::error!(generator = %name, available = %models.join(", "), "the LLM API does not serve llm.model; answers fall back to the extractive answerer");
                }
            }
            Err(e) => {
                tracing::error!(generator = %name, error = %e, "could not check llm.model against the LLM API")
            }
        }
    }
}

/// A source as clients show it.
#[derive(Debug, Clone, Serialize)]
pub struct SourceView {
    /// The number the answer cites (0: found, not used).
    pub number: usize,
    pub id: String,
    pub title: String,
    /// Where a person opens it (Aircall, Guesty), if known.
    pub link: Option<String>,
    pub snippet: String,
    pub similarity: f32,
    pub cited: bool,
}

/// The response of `/v1/ask` (and what the RocketChat bot posts).
#[derive(Debug, Clone, Serialize)]
pub struct AnswerView {
    pub answer: String,
    pub known: bool,
    /// Passage numbers cited, in order.
    pub citations: Vec<usize>,
    pub removed_citations: Vec<String>,
    pub sources: Vec<SourceView>,
    pub generator: String,
    pub fallback: Option<String>,
    pub timings: AnswerTimings,
}

impl AnswerView {
    pub fn new(answer: Answer, answerer: &Answerer) -> Self {
        AnswerView {
            sources: answer
                .sources
                .into_iter()
                .map(|s| SourceView {
                    number: s.number,
                    link: answerer.link(&s.document),
                    id: s.document.id,
                    title: s.document.title,
                    snippet: s.snippet.text,
                    similarity: s.similarity,
                    cited: s.cited,
                })
                .collect(),
            answer: answer.answer,
            known: answer.known,
            citations: answer.cited,
            removed_citations: answer.removed_citations,
            generator: answer.generator,
            fallback: answer.fallback,
            timings: answer.timings,
        }
    }
}
