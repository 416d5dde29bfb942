//! How the dense index answers a query: unfiltered, a search whose candidate list survives
//! tombstones; with a broad filter, a post-filtered search with a candidate list widened by the
//! filter's sampled share; with a selective one (or too few passing candidates), an exact scan
//! of the matching chunks. The thresholds are measured (`concierge-bench ann`).

use std::collections::HashSet;
use std::sync::Arc;

use super::{DenseHit, DenseIndex, Maps, VectorFetch};
use crate::distance::dot;
use crate::error::{Error, Result};
use crate::filter::Filter;

/// Filters keeping at most this share of the chunks are served by an exact scan of the matching
/// chunks; broader ones by the post-filtered search. Measured at 100k MiniLM vectors
/// (`concierge-bench ann`): the graph's vectors are scattered over the heap, so scanning 10 % of
/// them in memory cost ~20 ms a query where the post-filtered search took ~3 ms; at 1 % the exact
/// scan wins.
const EXACT_SHARE: f64 = 0.03;
/// Up to this many matching chunks, the exact scan reads their vectors through the caller;
/// beyond it, one pass over the graph's points scores them from memory.
const FETCHED_SCAN_MAX: usize = 2_048;
/// The widest candidate list of the post-filtered search before it falls back to the exact scan.
const MAX_POSTFILTER_CANDIDATES: usize = 8_192;
/// Live chunks sampled to estimate a filter's share.
const SHARE_SAMPLE: usize = 1_024;

/// The share of live chunks `filter` keeps, from an evenly spaced sample of the slots.
fn sampled_share(m: &Maps, filter: &Filter, meta_terms: &[String]) -> f64 {
    let step = (m.slots.len() / SHARE_SAMPLE).max(1);
    let (mut seen, mut kept) = (0usize, 0usize);
    for slot in (0..m.slots.len()).step_by(step) {
        if let Some(doc) = m.is_live(slot) {
            seen += 1;
            if m.docs
                .get(doc)
                .is_some_and(|e| filter.matches(&e.attrs, meta_terms))
            {
                kept += 1;
            }
        }
    }
    if seen == 0 {
        return 0.0;
    }
    kept as f64 / seen as f64
}

impl DenseIndex {
    /// The `k` best documents (each with its best chunk) for a unit-norm `query`.
    /// `fetch_vectors` reads stored vectors for the exact scan of selective filters.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: &Filter,
        meta_terms: &[String],
        fetch_vectors: &VectorFetch<'_>,
    ) -> Result<Vec<DenseHit>> {
        if query.len() != self.dim {
            return Err(Error::Dense(format!(
                "query has {} dimensions, the index has {}",
                query.len(),
                self.dim
            )));
        }
        if k == 0 {
            return Ok(Vec::new());
        }
        let m = self.read();
        if m.live.is_empty() {
            return Ok(Vec::new());
        }
        if filter.is_empty() {
            // The search costs what its candidate list (ef) costs, so take every candidate: that
            // survives tombstones and several chunks of one document without a second search,
            // which only happens when too few live documents came back.
            let mut fetch = ef.max(k).min(m.slots.len());
            loop {
                let found = self.hnsw.search(query, fetch, fetch);
                let hits = collapse(
                    found
                        .iter()
                        .filter_map(|n| m.is_live(n.d_id).map(|doc| (n, doc))),
                    &m,
                    k,
                );
                if hits.len() >= k.min(m.docs.len()) || fetch >= m.slots.len() {
                    return Ok(hits);
                }
                fetch = (fetch * 4).min(m.slots.len());
            }
        }
        // Filtered. A sample of the live chunks estimates the share the filter keeps (checking
        // every document on every query would cost more than the search).
        let share = sampled_share(&m, filter, meta_terms);
        if share > EXACT_SHARE {
            // Broad filter: search without it and keep what passes, with a candidate list
            // widened by 1 / share so about `ef` passing candidates come back. (hnsw_rs's own
            // filtered search never stops early and visits most of the graph.)
            let mut fetch = ((ef.max(k) as f64 / share) * 1.2).ceil() as usize;
            fetch = fetch.max(k).min(m.slots.len()).max(1);
            loop {
                let found = self.hnsw.search(query, fetch, fetch);
                let hits = collapse(
                    found.iter().filter_map(|n| {
                        m.is_live(n.d_id)
                            .filter(|doc| {
                                m.docs
                                    .get(*doc)
                                    .is_some_and(|e| filter.matches(&e.attrs, meta_terms))
                            })
                            .map(|doc| (n, doc))
                    }),
                    &m,
                    k,
                );
                if hits.len() >= k {
                    return Ok(hits);
                }
                if fetch >= m.slots.len() || fetch >= MAX_POSTFILTER_CANDIDATES {
                    break;
                }
                fetch = (fetch * 4).min(m.slots.len());
            }
        }
        // Selective filter (or too few passing candidates): exact scan of the matching chunks.
        let mut candidates: Vec<(usize, u64, Arc<str>)> = Vec::new();
        for (doc, entry) in &m.docs {
            if filter.matches(&entry.attrs, meta_terms) {
                candidates.extend(entry.chunks.iter().filter_map(|c| {
                    m.live
                        .get(c)
                        .filter(|l| Arc::ptr_eq(&l.doc, doc) || l.doc == *doc)
                        .map(|l| (l.slot, *c, doc.clone()))
                }));
            }
        }
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut scored: Vec<DenseHit> = Vec::with_capacity(candidates.len());
        if candidates.len() <= FETCHED_SCAN_MAX {
            // Few: read their vectors (the engine reads its store).
            drop(m);
            let ids: Vec<u64> = candidates.iter().map(|(_, c, _)| *c).collect();
            let vectors = fetch_vectors(&ids)?;
            scored.extend(candidates.into_iter().zip(vectors).filter_map(
                |((_, chunk_id, doc_id), v)| {
                    v.map(|v| DenseHit {
                        chunk_id,
                        doc_id,
                        score: dot(query, &v),
                    })
                },
            ));
        } else {
            // Many: score them from the graph's own copy of the vectors, in one pass over it.
            let mut by_slot: Vec<u32> = vec![u32::MAX; m.slots.len()];
            for (i, (slot, _, _)) in candidates.iter().enumerate() {
                if let Some(x) = by_slot.get_mut(*slot) {
                    *x = u32::try_from(i).unwrap_or(u32::MAX);
                }
            }
            // Layer by layer: each layer's iterator holds one read lock of hnsw_rs's points.
            // (Its whole-graph iterator takes that lock a second time while holding it, which
            // deadlocks behind an inserting writer.) A point sits in the layer of its level.
            let points = self.hnsw.get_point_indexation();
            for layer in 0..=usize::from(points.get_max_level_observed()) {
                for point in points.get_layer_iterator(layer) {
                    let Some(&i) = by_slot.get(point.get_origin_id()) else {
                        continue;
                    };
                    if let Some((_, chunk_id, doc_id)) = candidates.get(i as usize) {
                        scored.push(DenseHit {
                            chunk_id: *chunk_id,
                            doc_id: doc_id.clone(),
                            score: dot(query, point.get_v()),
                        });
                    }
                }
            }
        }
        scored.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut seen = HashSet::new();
        scored.retain(|h| seen.insert(h.doc_id.clone()));
        scored.truncate(k);
        Ok(scored)
    }
}

/// Best chunk per document, in score order, at most `k` documents.
fn collapse<'a>(
    found: impl Iterator<Item = (&'a hnsw_rs::prelude::Neighbour, &'a Arc<str>)>,
    m: &Maps,
    k: usize,
) -> Vec<DenseHit> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (n, doc) in found {
        if out.len() >= k {
            break;
        }
        if seen.insert(doc.clone()) {
            let Some(chunk_id) = m.slots.get(n.d_id) else {
                continue;
            };
            out.push(DenseHit {
                chunk_id: *chunk_id,
                doc_id: doc.clone(),
                score: 1.0 - n.distance,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::attrs;
    use super::super::{DenseItem, HnswParams, unit};
    use super::*;
    use std::collections::HashMap;

    /// Document `t:{kind}:{i}` with one 8-dimensional chunk `i`.
    fn put_one(idx: &DenseIndex, kind: &str, i: u64) {
        idx.apply(
            &format!("t:{kind}:{i}"),
            Some((
                attrs(kind),
                vec![DenseItem {
                    chunk_id: i,
                    vector: unit(i, 8),
                }],
            )),
        )
        .expect("applies");
    }

    #[test]
    fn an_exact_scan_of_the_graph_completes_while_the_indexer_inserts() {
        // hnsw_rs's point iterator takes its read lock a second time while holding it; with
        // parking_lot that waits behind an inserting writer that waits for the first: a
        // deadlock. The scan (more than FETCHED_SCAN_MAX candidates: k above the matching
        // documents sends the search there) must finish however inserts interleave.
        let idx = std::sync::Arc::new(DenseIndex::new(8, HnswParams::default(), 200_000));
        for i in 0..5_000u64 {
            let kind = if i % 2 == 0 { "even" } else { "odd" };
            put_one(&idx, kind, i);
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (idx, stop) = (idx.clone(), stop.clone());
            std::thread::spawn(move || {
                // Documents of many chunks, as a long call transcript: their graph inserts
                // (no lock of ours held) run while searches come and go.
                let mut next = 5_000u64;
                let mut doc = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let chunks = (next..next + 300)
                        .map(|c| DenseItem {
                            chunk_id: c,
                            vector: unit(c, 8),
                        })
                        .collect();
                    next += 300;
                    let _ = idx.apply(&format!("t:new:{doc}"), Some((attrs("new"), chunks)));
                    doc += 1;
                }
            })
        };
        let (done, finished) = std::sync::mpsc::channel();
        {
            let idx = idx.clone();
            std::thread::spawn(move || {
                let filter = Filter {
                    kind: vec!["even".into()],
                    ..Filter::default()
                };
                let fetch = |_: &[u64]| Ok(Vec::new());
                for _ in 0..50 {
                    let hits = idx
                        .search(&unit(3, 8), 3_000, 64, &filter, &[], &fetch)
                        .expect("searches");
                    assert_eq!(hits.len(), 2_500);
                }
                let _ = done.send(());
            });
        }
        let outcome = finished.recv_timeout(std::time::Duration::from_secs(60));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            outcome.is_ok(),
            "the scan deadlocked with the inserting indexer (or panicked)"
        );
        writer.join().expect("the writer");
    }

    #[test]
    fn a_selective_filter_is_answered_by_an_exact_scan() {
        let idx = DenseIndex::new(8, HnswParams::default(), 100);
        let mut store = HashMap::new();
        for i in 0..100u64 {
            let kind = if i % 50 == 0 { "rare" } else { "common" };
            store.insert(i, unit(i, 8));
            put_one(&idx, kind, i);
        }
        let fetch = |ids: &[u64]| Ok(ids.iter().map(|i| store.get(i).cloned()).collect());
        let filter = Filter {
            kind: vec!["rare".into()],
            ..Filter::default()
        };
        let hits = idx
            .search(&unit(3, 8), 10, 64, &filter, &[], &fetch)
            .expect("searches");
        let mut ids: Vec<&str> = hits.iter().map(|h| &*h.doc_id).collect();
        ids.sort();
        assert_eq!(ids, ["t:rare:0", "t:rare:50"]);
    }
}
