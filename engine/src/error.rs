//! The engine's one error type. Every module's failure converts into [`Error`]; callers (the
//! daemon's HTTP layer, the CLI) map it exhaustively to a status or an exit code.

use std::path::PathBuf;

/// What went wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller sent something the engine cannot accept (bad id, empty text, bad filter...).
    #[error("invalid input: {0}")]
    InvalidInput(#[from] InvalidInput),
    /// A durable write failed earlier; no write is accepted until the engine is reopened.
    #[error("the store is poisoned and refuses writes until restart: {cause}")]
    Poisoned {
        /// The failure that poisoned the store.
        cause: String,
    },
    /// RocksDB reported an error.
    #[error("storage error: {0}")]
    Storage(#[from] rocksdb::Error),
    /// The data directory was written by an incompatible version of Concierge.
    #[error("{path} has store format {found}, this build reads format {expected}")]
    FormatVersion {
        /// The store directory.
        path: PathBuf,
        /// The version found on disk.
        found: u32,
        /// The version this build writes.
        expected: u32,
    },
    /// The store was built with a different embedding model than the one configured.
    #[error(
        "the store holds vectors of model {stored} (dimension {stored_dim}) but the configured model is {configured} (dimension {configured_dim}); use the same model or start from an empty data directory"
    )]
    ModelMismatch {
        /// Model id recorded in the store.
        stored: String,
        /// Dimension recorded in the store.
        stored_dim: usize,
        /// Model id of the configured embedder.
        configured: String,
        /// Dimension of the configured embedder.
        configured_dim: usize,
    },
    /// A stored record could not be decoded (corruption or a bug).
    #[error("corrupt record in {what}: {detail}")]
    Corrupt {
        /// Which record.
        what: String,
        /// Why it could not be decoded.
        detail: String,
    },
    /// Embedding failed.
    #[error("embedding failed: {0}")]
    Embedding(#[from] concierge_models::ModelError),
    /// The answer generator (and its fallback, if any) failed.
    #[error("answer generation failed: {0}")]
    Generation(concierge_models::ModelError),
    /// The keyword index (tantivy) failed.
    #[error("keyword index error: {0}")]
    Keyword(#[from] tantivy::TantivyError),
    /// The dense index (HNSW) failed to load or dump.
    #[error("dense index error: {0}")]
    Dense(String),
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the engine was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `min_seq` was not reached by the indexes within the allowed wait.
    #[error(
        "the indexes have not reached sequence {wanted} within {waited_ms} ms (they are at {reached})"
    )]
    NotYetIndexed {
        /// The sequence asked for.
        wanted: u64,
        /// The sequence both indexes include.
        reached: u64,
        /// How long the engine waited.
        waited_ms: u64,
    },
    /// The engine is shutting down.
    #[error("the engine is closed")]
    Closed,
    /// The data disk has less free space than the engine keeps (`min_free_bytes`): writes are
    /// refused, the store stays sound, and writes resume once space is freed.
    #[error(
        "the data disk has {available} bytes free, less than the {min_free} kept free (storage.min_free_bytes): writes are refused until space is freed"
    )]
    StorageFull {
        /// Bytes available when the write was refused.
        available: u64,
        /// The configured floor.
        min_free: u64,
    },
}

/// Input the engine refuses, with a message meant for the caller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidInput {
    /// A document id is not `source:kind:external_id`.
    #[error("document id {id:?} is not of the form source:kind:external_id ({reason})")]
    DocumentId {
        /// The rejected id.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A field of a document is not acceptable.
    #[error("field `{field}`: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A search request is not acceptable.
    #[error("search: {0}")]
    Search(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Error::Corrupt {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
