//! Concierge's retrieval engine: every acknowledged document is durable in RocksDB, searchable
//! within about a second, and found by meaning (HNSW over sentence embeddings) and by keyword
//! (tantivy BM25), fused into one ranking.
//!
//! What it does: canonical [`Document`]s with out-of-order-safe upserts and deletes; one synced
//! write batch per [`Engine::ingest`] call (documents, change-log entries, idempotency key);
//! a change log with durable consumer cursors; chunking; dense and keyword indexes derived from
//! the store, snapshotted, replayed and rebuilt without re-embedding; hybrid search with
//! filters inside both legs and RRF/DBSF fusion; consistent checkpoints for backups.
//!
//! What it does not do: HTTP, webhooks, async (the daemon wraps this synchronous API), or
//! talk to Qdrant/Firestore (separate consumers of the change log).
//!
//! ```no_run
//! use std::sync::Arc;
//! use concierge_engine::{Document, Engine, EngineConfig, IngestRequest, SearchRequest};
//! use concierge_models::{BertEmbedder, EmbedderConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let embedder = Arc::new(BertEmbedder::load("models/weights/all-MiniLM-L6-v2", &EmbedderConfig::default())?);
//! let engine = Engine::open(EngineConfig::new("./data"), embedder)?;
//! let doc = Document::new("guesty:reservation:42", "Reservation 42", "Late check-in, door code HMXK4Q.", 1_700_000_000_000)?;
//! let receipt = engine.ingest(IngestRequest::upsert(doc))?;
//! let found = engine.search(&SearchRequest::new("HMXK4Q").min_seq(receipt.seq))?;
//! assert_eq!(found.hits[0].document.id, "guesty:reservation:42");
//! engine.close()?;
//! # Ok(())
//! # }
//! ```

mod ann;
mod answer;
mod browse;
mod changelog;
mod chunk_store;
mod chunking;
mod citations;
mod config;
mod dead_letters;
mod dense;
mod dense_snapshot;
mod disk_space;
mod distance;
mod document;
mod engine;
mod error;
mod filter;
mod fusion;
mod ingest;
mod keyword;
mod metrics;
mod search;
mod shared;
pub mod sparse;
mod store;
mod update_workers;

pub use ann::{AnnIndex, BruteForce, FrozenAnn};
pub use answer::{
    Answer, AnswerEvent, AnswerTimings, AskRequest, MAX_PASSAGES, Retrieved, Source, answer_from,
};
pub use browse::{DocumentCounts, DocumentPage, MAX_PAGE, id_prefix};
pub use changelog::{ChangeEntry, ChangeKind, DeadLetter};
pub use chunking::ChunkingConfig;
pub use config::{DEFAULT_MIN_FREE_BYTES, EngineConfig, MAX_DENSE_FREEZE_AFTER};
pub use dead_letters::LetterKey;
pub use dense::{DenseStats, HnswParams};
pub use document::{Document, DocumentId, Operation, Outcome};
pub use engine::{ConsumerLag, Engine, EngineStatus, IndexStatus};
pub use error::{Error, InvalidInput, Result};
pub use filter::{Filter, TimeRange, metadata_terms_of};
pub use fusion::{Fusion, FusionMethod, LegRank};
pub use ingest::{
    IngestReceipt, IngestRequest, MAX_IDEMPOTENCY_KEY_BYTES, MAX_OPERATIONS, Updated,
};
pub use keyword::Snippet;
pub use metrics::{EngineMetrics, Histogram, SEARCHABLE_BUCKETS};
pub use search::{HitChunk, MAX_K, SearchHit, SearchMode, SearchRequest, SearchResponse};
pub use shared::{IndexState, RebuildProgress};
pub use store::FORMAT_VERSION;
pub use update_workers::{
    CheckpointInfo, SyncChange, SyncChunk, SyncHealth, SyncSink, SyncStatus, WriteOutcome,
};
