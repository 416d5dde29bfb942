//! Background rebuilds: a dense index from the stored vectors (no embedding), a keyword index
//! into an emptied directory, each on a thread of its own while searches use what is there. The
//! indexer installs a finished one after replaying the log it missed.

use std::sync::Arc;
use std::thread::JoinHandle;

use crate::chunk_store;
use crate::dense::{DenseIndex, DenseItem};
use crate::error::{Error, Result};
use crate::filter::DocAttrs;
use crate::keyword::{KeywordChunk, KeywordIndex};
use crate::shared::{IndexState, Shared};

/// A rebuild running on its thread.
pub(crate) type RebuildHandle<T> = JoinHandle<Result<Arc<T>>>;

/// Starts a background rebuild of the dense index (from stored vectors, no embedding).
pub(crate) fn start_dense(shared: &Arc<Shared>, reason: &str) -> RebuildHandle<DenseIndex> {
    tracing::info!(reason, "rebuilding the dense index in the background");
    shared.set_state(true, IndexState::Rebuilding(reason.to_owned()));
    let shared = shared.clone();
    std::thread::spawn(move || {
        start_counting(&shared, true);
        let dim = shared.embedder.dim();
        let index = DenseIndex::new(dim, shared.config.hnsw, 1024);
        let mut pending = Vec::new();
        let seq = chunk_store::scan_all(&shared.store, dim, &mut |stored, chunks| {
            let attrs = DocAttrs::of(&stored.doc);
            let items = chunks
                .into_iter()
                .map(|(r, vector)| DenseItem {
                    chunk_id: r.id,
                    vector,
                })
                .collect();
            pending.push((Arc::from(stored.doc.id.as_str()), attrs, items));
            shared.rebuild_counter(true).step();
            if pending.len() >= 1_000 {
                index.bulk_insert(std::mem::take(&mut pending));
            }
            if shared.stopping() {
                Err(Error::Closed)
            } else {
                Ok(())
            }
        })?;
        index.bulk_insert(pending);
        index.set_seq(seq);
        // Not shared yet, so no insert runs: its segment is made here, off the indexer.
        index.freeze()?;
        Ok(Arc::new(index))
    })
}

/// Resets a rebuild's progress: nothing done of the live documents there are now (a count
/// that fails leaves the total at 0: progress unknown, the rebuild goes on).
fn start_counting(shared: &Shared, dense: bool) {
    let total = crate::browse::counts(&shared.store).map_or(0, |c| c.total);
    shared.rebuild_counter(dense).start(total);
}

/// Starts a background rebuild of the keyword index into an emptied directory.
pub(crate) fn start_keyword(shared: &Arc<Shared>, reason: &str) -> RebuildHandle<KeywordIndex> {
    tracing::info!(reason, "rebuilding the keyword index in the background");
    shared.set_state(false, IndexState::Rebuilding(reason.to_owned()));
    shared.set_keyword(None);
    let shared = shared.clone();
    std::thread::spawn(move || {
        start_counting(&shared, false);
        let dir = shared.config.keyword_dir();
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| Error::io(format!("removing {}", dir.display()), e))?;
        }
        let index = KeywordIndex::open(&dir)?;
        let seq = chunk_store::scan_all(
            &shared.store,
            shared.embedder.dim(),
            &mut |stored, chunks| {
                let attrs = DocAttrs::of(&stored.doc);
                let kc = chunks
                    .iter()
                    .map(|(r, _)| KeywordChunk {
                        chunk_id: r.id,
                        title: &stored.doc.title,
                        text: &r.text,
                    })
                    .collect();
                index.apply(&stored.doc.id, Some((&attrs, kc)))?;
                shared.rebuild_counter(false).step();
                if shared.stopping() {
                    Err(Error::Closed)
                } else {
                    Ok(())
                }
            },
        )?;
        index.commit(seq)?;
        Ok(Arc::new(index))
    })
}
