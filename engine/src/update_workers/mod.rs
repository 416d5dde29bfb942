//! The engine's background work, one file per worker (in the manner of Qdrant's
//! `update_workers/`):
//!
//! - [`consumer`]: what a change-log consumer is and the driver that delivers to it (retries,
//!   dead letters). The Firestore and Qdrant sync consumers are added as siblings of `apply`.
//! - [`apply`]: the index consumer — chunk, embed what has no stored vector, write chunks and
//!   vectors, apply to the dense and keyword indexes.
//! - [`indexer`]: the thread that drives it (batches, commits, snapshots, the cursor).
//! - [`rebuild`]: background rebuilds of the dense and keyword indexes.
//! - [`checkpoint`]: consistent checkpoints of the store and both indexes.
//! - [`sync`]: the sync consumers (Firestore, Qdrant): the current state of changed documents
//!   handed to an outside copy, per-document retries, dead letters, a cursor of their own.

pub(crate) mod apply;
pub(crate) mod checkpoint;
pub(crate) mod consumer;
pub(crate) mod indexer;
pub(crate) mod rebuild;
pub(crate) mod sync;

pub(crate) use apply::INDEXER;
pub use checkpoint::CheckpointInfo;
pub(crate) use indexer::{Indexer, Request};
pub use sync::{SyncChange, SyncChunk, SyncHealth, SyncSink, SyncStatus, WriteOutcome};
