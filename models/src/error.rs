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
    #[error("invalid embedder setting: {0}")]
    InvalidSetting(String),
}

impl From<tokenizers::Error> for ModelError {
    fn from(err: tokenizers::Error) -> Self {
        ModelError::Tokenizer(err.to_string())
    }
}
