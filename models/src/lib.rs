//! Concierge's machine-learning models, on [candle](https://github.com/huggingface/candle), on the CPU.
//!
//! This crate owns turning text into vectors: the [`Embedder`] trait and its candle implementation,
//! [`BertEmbedder`], which reproduces sentence-transformers' `all-MiniLM-L6-v2` (mean pooling over
//! the attention mask, then L2 normalisation); and writing answers: the [`Generator`] trait over a
//! grounded [`Prompt`], with [`OpenAiGenerator`] (any OpenAI-compatible API) and
//! [`ExtractiveGenerator`] (no LLM: the passages' most relevant sentences, cited).
//!
//! It does not download anything: `models/fetch.sh` puts the weights in `models/weights/`, checked
//! against `models/manifest.toml`, and [`BertEmbedder::load`] reads them from a directory.
//!
//! ```no_run
//! use concierge_models::{BertEmbedder, Embedder, EmbedderConfig};
//!
//! let embedder = BertEmbedder::load("models/weights/all-MiniLM-L6-v2", &EmbedderConfig::default())?;
//! let vectors = embedder.embed(&["The guest in unit 4 called twice.", "Late check-in"])?;
//! assert_eq!(vectors.len(), 2);
//! assert_eq!(vectors[0].len(), embedder.dim());
//! # Ok::<(), concierge_models::ModelError>(())
//! ```

mod bert_embedder;
mod bert_forward;
mod candle_threads;
mod embedder;
mod error;
mod generate;
mod model_dir;
mod pooling;
mod tokenize;

pub use bert_embedder::BertEmbedder;
pub use candle_threads::confine_candle_elementwise_threads;
pub use embedder::{Backend, Embedder, EmbedderConfig};
pub use error::{LlmError, ModelError};
pub use generate::{
    ChatMessage, ExtractiveGenerator, Generator, LocalGenerator, OpenAiConfig, OpenAiGenerator,
    Passage, Prompt, Role, SMOLLM2_GGUF, SYSTEM_INSTRUCTIONS, gguf_tokenizer, tokenizer_json,
};
pub use model_dir::ModelDir;
