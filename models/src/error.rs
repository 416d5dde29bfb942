//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A file the model needs is not in its directory.
    #[error("model file {path} is missing; run `models/fetch.sh` to fetch the model files")]
    MissingFile {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// A model file exists but could not be read.
    #[error("cannot read model file {path}: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON configuration file of the model is malformed.
    #[error("model configuration {path} is invalid: {source}")]
    Config {
        /// The file that failed to parse.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The model files are readable but describe something this crate cannot run.
    #[error("unsupported model in {path}: {reason}")]
    Unsupported {
        /// The model directory.
        path: PathBuf,
        /// What is not supported.
        reason: String,
    },
    /// The tokenizer could not be loaded or failed on an input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A tensor operation failed (shape mismatch, missing weight, ...).
    #[error("model computation: {0}")]
    Tensor(#[from] candle_core::Error),
    /// The embedder's thread pool could not be started.
    #[error("cannot start the embedding thread pool: {0}")]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
    /// A configuration value is out of range.
    #[error("invalid model setting: {0}")]
    InvalidSetting(String),
    /// A remote LLM call failed.
    #[error(transparent)]
    Llm(#[from] LlmError),
}

/// How a call to an OpenAI-compatible LLM API failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// The API refused the key (401/403): check `llm.api_key`.
    #[error("the LLM API refused the key (check llm.api_key): {detail}")]
    Unauthorized {
        /// The API's message.
        detail: String,
    },
    /// The model id is unknown or retired: check `llm.model`.
    #[error("the LLM API does not serve model {model:?} (check llm.model): {detail}")]
    UnknownModel {
        /// The configured model id.
        model: String,
        /// The API's message.
        detail: String,
    },
    /// The API rejected the request for good (another 4xx).
    #[error("the LLM API rejected the request ({status}): {detail}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The API's message.
        detail: String,
    },
    /// Rate-limited, overloaded or unreachable, still after the retries.
    #[error("the LLM API is unavailable after {attempts} attempt(s){}: {detail}", status.map(|s| format!(" (last status {s})")).unwrap_or_default())]
    Unavailable {
        /// The last HTTP status, if an answer came.
        status: Option<u16>,
        /// What went wrong last.
        detail: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The answer did not follow the protocol (not JSON, malformed stream chunk, cut short).
    #[error("the LLM API answered outside the protocol: {0}")]
    Protocol(String),
    /// The API reported a failed generation in its body.
    #[error("the LLM failed to generate: {0}")]
    Failed(String),
}

impl From<tokenizers::Error> for ModelError {
    fn from(err: tokenizers::Error) -> Self {
        ModelError::Tokenizer(err.to_string())
    }
}
