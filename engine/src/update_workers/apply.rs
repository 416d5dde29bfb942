//! The index consumer's work on a batch: it chunks the documents' current text, embeds only
//! chunks without a stored vector, writes chunks and vectors (durable first), then applies them
//! to each index that has not yet seen the entries.

use std::sync::Arc;
use std::time::Instant;

use rocksdb::WriteBatch;

use super::consumer::Consumer;
use crate::changelog::ChangeEntry;
use crate::chunk_store::{self, ChunkRecord};
use crate::chunking;
use crate::dense::{DenseIndex, DenseItem};
use crate::error::Result;
use crate::filter::DocAttrs;
use crate::keyword::{KeywordChunk, KeywordIndex};
use crate::shared::Shared;
use crate::store::{cf, meta_key};

/// The indexer's name in the `cursors` column family and in dead letters.
pub const INDEXER: &str = "indexer";

#[derive(Clone)]
pub(crate) enum Target {
    Dense(Arc<DenseIndex>),
    Keyword(Arc<KeywordIndex>),
}

impl Target {
    pub(crate) fn seq(&self) -> u64 {
        match self {
            Target::Dense(d) => d.seq(),
            Target::Keyword(k) => k.applied_seq(),
        }
    }

    pub(crate) fn set_seq(&self, seq: u64) {
        match self {
            Target::Dense(d) => d.set_seq(seq),
            Target::Keyword(k) => k.set_applied_seq(seq),
        }
    }
}

/// Applies `entries` to every target that has not seen them. Idempotent: it reconciles each
/// document's chunks with its current stored state.
fn process(shared: &Shared, entries: &[ChangeEntry], targets: &[Target]) -> Result<()> {
    let Some(last) = entries.last().map(|e| e.seq) else {
        return Ok(());
    };
    let targets: Vec<&Target> = targets.iter().filter(|t| t.seq() < last).collect();
    // Latest entry per document, in log order.
    let mut order: Vec<&str> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for e in entries.iter().rev() {
        if seen.insert(e.id.as_str()) {
            order.push(&e.id);
        }
    }
    order.reverse();
    let docs = shared.store.get_docs(order.iter().copied())?;

    struct Work {
        id: String,
        live: Option<(crate::document::Document, DocAttrs)>,
        old: Vec<ChunkRecord>,
        new: Vec<(ChunkRecord, Option<Vec<f32>>)>,
    }
    let count =
        |s: &str| -> Result<usize> { Ok(shared.embedder.count_tokens(s)?.saturating_sub(2)) };
    let mut work = Vec::with_capacity(order.len());
    for (id, stored) in order.iter().zip(docs) {
        // Chunking long documents takes a while: a closing engine does not wait for the batch
        // (nothing is written yet; the entries come again at the next start).
        if shared.stopping() {
            return Err(crate::error::Error::Closed);
        }
        let old = chunk_store::chunks_of(&shared.store, id)?;
        let live = stored.filter(|s| !s.deleted).map(|s| {
            let attrs = DocAttrs::of(&s.doc);
            (s.doc, attrs)
        });
        let mut new = Vec::new();
        if let Some((doc, _)) = &live {
            for c in chunking::chunk(id, &doc.title, &doc.text, shared.chunking, &count)? {
                new.push((
                    ChunkRecord {
                        id: c.id,
                        ordinal: c.ordinal,
                        text: c.text,
                    },
                    None,
                ));
            }
        }
        work.push(Work {
            id: (*id).to_owned(),
            live,
            old,
            new,
        });
    }

    // Vectors: reuse stored ones, embed the rest in one call.
    let ids: Vec<u64> = work
        .iter()
        .flat_map(|w| w.new.iter().map(|(r, _)| r.id))
        .collect();
    let stored_vectors = chunk_store::vectors(&shared.store, &ids, shared.embedder.dim())?;
    let mut stored_vectors = stored_vectors.into_iter();
    let mut missing: Vec<(usize, usize, String)> = Vec::new();
    for (wi, w) in work.iter_mut().enumerate() {
        let title = w
            .live
            .as_ref()
            .map(|(d, _)| d.title.clone())
            .unwrap_or_default();
        for (ci, (record, vector)) in w.new.iter_mut().enumerate() {
            *vector = stored_vectors.next().flatten();
            if vector.is_none() {
                let text = chunking::Chunk {
                    id: record.id,
                    ordinal: record.ordinal,
                    text: record.text.clone(),
                }
                .embedding_text(&title);
                missing.push((wi, ci, text));
            }
        }
    }
    if shared.stopping() {
        return Err(crate::error::Error::Closed);
    }
    if !missing.is_empty() {
        let texts: Vec<&str> = missing.iter().map(|(_, _, t)| t.as_str()).collect();
        let started = Instant::now();
        let vectors = shared.embedder.embed(&texts)?;
        shared.metrics.embedded(texts.len(), started.elapsed());
        for ((wi, ci, _), v) in missing.iter().zip(vectors) {
            work[*wi].new[*ci].1 = Some(v);
        }
    }

    // Chunks and vectors first (durable), then the indexes.
    let mut batch = WriteBatch::default();
    let mut changed = false;
    for w in &work {
        let same = w.old.len() == w.new.len() && w.old.iter().zip(&w.new).all(|(o, (n, _))| o == n);
        if !same {
            let new: Vec<(ChunkRecord, &[f32])> = w
                .new
                .iter()
                .filter_map(|(r, v)| v.as_deref().map(|v| (r.clone(), v)))
                .collect();
            chunk_store::replace(&shared.store, &mut batch, &w.id, &w.old, &new)?;
            changed = true;
        }
    }
    let chunks_seq = shared
        .store
        .get_u64(cf::META, meta_key::CHUNKS_SEQ)?
        .unwrap_or(0);
    if last > chunks_seq {
        batch.put_cf(
            &shared.store.cf(cf::META),
            meta_key::CHUNKS_SEQ,
            last.to_be_bytes(),
        );
        changed = true;
    }
    if changed {
        shared.disk.check()?;
        shared.store.write(batch)?;
    }

    for target in &targets {
        for w in &work {
            match (target, &w.live) {
                (Target::Dense(d), Some((_, attrs))) => {
                    let items = w
                        .new
                        .iter()
                        .filter_map(|(r, v)| {
                            v.clone().map(|vector| DenseItem {
                                chunk_id: r.id,
                                vector,
                            })
                        })
                        .collect();
                    d.apply(&w.id, Some((attrs.clone(), items)))?;
                }
                (Target::Dense(d), None) => d.apply(&w.id, None)?,
                (Target::Keyword(k), Some((doc, attrs))) => {
                    let chunks = w
                        .new
                        .iter()
                        .map(|(r, _)| KeywordChunk {
                            chunk_id: r.id,
                            title: &doc.title,
                            text: &r.text,
                        })
                        .collect();
                    k.apply(&w.id, Some((attrs, chunks)))?;
                }
                (Target::Keyword(k), None) => k.apply(&w.id, None)?,
            }
        }
        target.set_seq(last);
    }
    Ok(())
}

/// The indexes as one change-log consumer: a batch goes to every target that has not seen it.
pub(crate) struct Indexes<'a> {
    pub shared: &'a Shared,
    pub targets: &'a [Target],
}

impl Consumer for Indexes<'_> {
    fn name(&self) -> &'static str {
        INDEXER
    }

    fn apply(&mut self, entries: &[ChangeEntry]) -> Result<()> {
        process(self.shared, entries, self.targets)
    }

    fn skipped(&mut self, entry: &ChangeEntry) {
        for t in self.targets {
            if t.seq() < entry.seq {
                t.set_seq(entry.seq);
            }
        }
    }
}
