//! Qdrant sync: the engine's sync consumer `qdrant` hands each changed document's current state,
//! with its stored chunks and vectors, to [`QdrantSink`], which keeps one point per chunk in
//! `[qdrant] collection`.
//!
//! - The collection is created on first use (or checked: a collection made for another model's
//!   dimension, another distance or without the BM25 sparse vector is refused with the reason,
//!   and the consumer stays degraded until an operator fixes the configuration; no document is
//!   dead-lettered for it).
//! - Point id: UUIDv5 of the chunk id ([`client::point_id`]), so a re-ingest never duplicates.
//!   Vectors: `dense` (the stored embedding, never recomputed) and `bm25` (our sparse BM25
//!   vector, [`concierge_engine::sparse`]). Payload: `document_id`, `ordinal`, `text` (the
//!   chunk), `title`, `source`, `kind`, `metadata`, `meta_terms` (the filter terms),
//!   `updated_at`, `version`, `seq`, `chunk_id`. Besides, one point without vectors per
//!   document (id: UUIDv5 of `doc:` + its id) holds the whole document (`concierge_document`),
//!   for hydrating search hits; vector searches never see it.
//! - A batch: points upserted with `wait=true` (at most [`MAX_POINTS`] per request), then a
//!   delete with `wait=true` per [`DELETE_DOCUMENTS`] documents of every point of theirs that is
//!   not one of their new points (a shrunk document loses its stale chunks), and of every point
//!   of the deleted documents.
//! - After each batch the watermark point (`concierge_watermark: true`, `seq`) records the
//!   highest change-log sequence Qdrant fully holds: replicas read it for `min_seq`.
//! - 429, 5xx, timeouts and refused connections are retried (by the engine, with backoff and
//!   the server's `Retry-After`); another 4xx dead-letters the documents of that request with
//!   Qdrant's message.

pub mod client;
pub mod search;

use std::time::Duration;

use concierge_engine::{SyncChange, SyncSink, WriteOutcome};
use serde_json::{Value, json};

pub use client::{QdrantClient, QdrantError, QdrantTarget};

/// Points per upsert request.
pub const MAX_POINTS: usize = 256;
/// Documents whose stale points one delete request removes.
pub const DELETE_DOCUMENTS: usize = 64;
/// The name of the watermark point's id.
pub const WATERMARK: &str = "concierge:watermark";
/// The prefix of a document point's id name (`doc:` + the document id).
pub const DOCUMENT_POINT: &str = "doc:";

/// The sink the engine's `qdrant` consumer writes through.
#[derive(Debug)]
pub struct QdrantSink {
    client: QdrantClient,
    dim: usize,
    model: String,
    /// The collection has been created or checked.
    ready: bool,
    requests: u64,
}

impl QdrantSink {
    pub fn new(target: QdrantTarget, dim: usize, model: &str) -> QdrantSink {
        QdrantSink {
            client: QdrantClient::new(target),
            dim,
            model: model.to_owned(),
            ready: false,
            requests: 0,
        }
    }

    fn outcome(e: &QdrantError) -> WriteOutcome {
        if e.retryable {
            WriteOutcome::Retry {
                reason: e.message.clone(),
                after: e.after,
            }
        } else {
            WriteOutcome::Failed(e.message.clone())
        }
    }

    /// The same sink with another time limit per request.
    pub fn with_timeout(mut self, timeout: Duration) -> QdrantSink {
        self.client = self.client.with_timeout(timeout);
        self
    }

    /// Creates or checks the collection and the model it holds (the start refuses a mismatch).
    pub fn check_model(&mut self) -> Result<(), QdrantError> {
        self.prepare()
    }

    /// Creates or checks the collection, and checks the watermark's model (once it passes).
    fn prepare(&mut self) -> Result<(), QdrantError> {
        if self.ready {
            return Ok(());
        }
        self.requests += 1 + client::INDEXED_FIELDS.len() as u64;
        self.client.ensure_collection(self.dim)?;
        self.requests += 1;
        let existing = self.client.retrieve(&[client::point_id(WATERMARK)])?;
        if let Some(model) = existing
            .first()
            .and_then(|p| p["payload"]["model"].as_str())
            && model != self.model
        {
            return Err(QdrantError {
                message: format!(
                    "the Qdrant collection {:?} holds vectors of the model {model:?}, this node embeds with {:?}: give [qdrant] collection another name",
                    self.client.collection(),
                    self.model
                ),
                retryable: false,
                after: None,
            });
        }
        self.ready = true;
        Ok(())
    }

    fn points_of(change: &SyncChange) -> Vec<Value> {
        let Some(doc) = &change.document else {
            return Vec::new();
        };
        let meta_terms = concierge_engine::metadata_terms_of(&doc.metadata);
        // The whole document once, on a point without vectors (searches never find it): what a
        // search through Qdrant hydrates its hits from.
        let document_point = json!({
            "id": client::point_id(&format!("{DOCUMENT_POINT}{}", doc.id)),
            "vector": {},
            "payload": {
                "document_id": doc.id,
                "concierge_document": doc,
                "seq": change.seq,
            },
        });
        let chunks = change.chunks.iter().map(|chunk| {
            json!({
                "id": client::point_id(&chunk.id.to_string()),
                "vector": {
                    client::DENSE: chunk.vector,
                    client::SPARSE: {"indices": chunk.sparse.indices, "values": chunk.sparse.values},
                },
                "payload": {
                    "document_id": doc.id,
                    "chunk_id": chunk.id.to_string(),
                    "ordinal": chunk.ordinal,
                    "text": chunk.text,
                    "title": doc.title,
                    "source": doc.source,
                    "kind": doc.kind,
                    "metadata": doc.metadata,
                    "meta_terms": meta_terms,
                    "updated_at": doc.updated_at,
                    "version": doc.version,
                    "seq": change.seq,
                },
            })
        });
        std::iter::once(document_point).chain(chunks).collect()
    }
}

/// The filter of the points of `change`'s document that are not among `keep`.
fn stale_filter(document_id: &str, keep: &[Value]) -> Value {
    let ids: Vec<&Value> = keep.iter().map(|p| &p["id"]).collect();
    let mut filter = json!({"must": [{"key": "document_id", "match": {"value": document_id}}]});
    if !ids.is_empty() {
        filter["must_not"] = json!([{"has_id": ids}]);
    }
    filter
}

impl SyncSink for QdrantSink {
    fn name(&self) -> &'static str {
        "qdrant"
    }

    fn requests(&self) -> u64 {
        self.requests
    }

    fn wants_chunks(&self) -> bool {
        true
    }

    fn write(&mut self, changes: &[SyncChange]) -> Vec<WriteOutcome> {
        if let Err(e) = self.prepare() {
            // The configuration, not the documents: keep them and retry (degraded meanwhile).
            return vec![
                WriteOutcome::Retry {
                    reason: e.message,
                    after: e.after,
                };
                changes.len()
            ];
        }
        let mut outcomes: Vec<Option<WriteOutcome>> = vec![None; changes.len()];
        let points: Vec<Vec<Value>> = changes.iter().map(Self::points_of).collect();
        // Upserts, MAX_POINTS per request; a document's outcome is its worst request's.
        let mut pending: Vec<(usize, &Value)> = Vec::new();
        let flat: Vec<(usize, &Value)> = points
            .iter()
            .enumerate()
            .flat_map(|(i, ps)| ps.iter().map(move |p| (i, p)))
            .collect();
        for (n, item) in flat.iter().enumerate() {
            pending.push(*item);
            if pending.len() == MAX_POINTS || n + 1 == flat.len() {
                let body: Vec<Value> = pending.iter().map(|(_, p)| (*p).clone()).collect();
                self.requests += 1;
                if let Err(e) = self.client.upsert(&body) {
                    for (i, _) in &pending {
                        outcomes[*i] = Some(Self::outcome(&e));
                    }
                }
                pending.clear();
            }
        }
        // Stale and deleted points: one delete per DELETE_DOCUMENTS documents, so a request's
        // work stays bounded and a failure redoes only its own documents.
        let pending: Vec<usize> = (0..changes.len())
            .filter(|i| outcomes[*i].is_none())
            .collect();
        for group in pending.chunks(DELETE_DOCUMENTS) {
            let clauses: Vec<Value> = group
                .iter()
                .map(|i| stale_filter(&changes[*i].id, &points[*i]))
                .collect();
            self.requests += 1;
            if let Err(e) = self.client.delete_where(&json!({"should": clauses})) {
                for i in group {
                    outcomes[*i] = Some(Self::outcome(&e));
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or(WriteOutcome::Done))
            .collect()
    }

    fn confirm(&mut self, through: u64) -> Result<(), String> {
        self.prepare().map_err(|e| e.message)?;
        self.requests += 1;
        self.client
            .upsert(&[json!({
                "id": client::point_id(WATERMARK),
                "vector": {},
                "payload": {"concierge_watermark": true, "seq": through, "model": self.model, "dim": self.dim},
            })])
            .map_err(|e| e.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stale_filter_keeps_the_new_points_and_a_deleted_document_loses_all() {
        let keep = vec![json!({"id": "a"}), json!({"id": "b"})];
        let f = stale_filter("ops:x:1", &keep);
        assert_eq!(f["must"][0]["match"]["value"], "ops:x:1");
        assert_eq!(f["must_not"][0]["has_id"], json!(["a", "b"]));
        let gone = stale_filter("ops:x:1", &[]);
        assert!(gone.get("must_not").is_none());
    }
}
