//! Concierge's retrieval engine (synchronous): documents, the durable RocksDB store and its change
//! log, chunking, the HNSW and BM25 indexes, hybrid search, and the Qdrant and Firestore sync
//! clients, as `ARCHITECTURE.md` describes.
//!
//! It is being built in this order (see the issue tracker): the foundation (this workspace and the
//! embedder in `concierge-models`) comes first, the engine next. Until then this crate exports
//! nothing, so nothing can depend on a part that does not exist yet.
