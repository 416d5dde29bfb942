//! How the dense index answers a query. The fresh part (points not yet frozen) is always scanned
//! exactly; the frozen segment is walked, tombstones and points a filter refuses walked through
//! but never returned, unfiltered or with a broad filter; with a selective one (or when the walk
//! comes back short), the matching chunks' vectors are scanned exactly. The thresholds are
//! measured (`concierge-bench ann`).

use std::collections::HashSet;
use std::sync::Arc;

use super::slot_filter::SlotFilter;
use super::{DenseHit, DenseIndex, Maps};
use crate::error::{Error, Result};
use crate::filter::Filter;

/// Filters keeping at most this share of the chunks are served by an exact scan of the matching
/// chunks; broader ones by the post-filtered walk (`concierge-bench ann`, filtered rows: at 1 %
/// the scan wins, at 10 % the walk).
const EXACT_SHARE: f64 = 0.03;
/// The widest candidate list of a filtered walk before it falls back to the exact scan.
const MAX_POSTFILTER_CANDIDATES: usize = 8_192;
/// Live chunks sampled to estimate a filter's share.
const SHARE_SAMPLE: usize = 1_024;

/// The share of live chunks `filter` keeps, from an evenly spaced sample of the slots.
fn sampled_share(m: &Maps, filter: &SlotFilter<'_>) -> f64 {
    let step = (m.slots.len() / SHARE_SAMPLE).max(1);
    let (mut seen, mut kept) = (0usize, 0usize);
    for slot in (0..m.slots.len()).step_by(step) {
        if let Some(doc) = m.is_live(slot) {
            seen += 1;
            if filter.matches(doc) {
                kept += 1;
            }
        }
    }
    if seen == 0 {
        return 0.0;
    }
    kept as f64 / seen as f64
}

/// A candidate: cosine distance (`1 - dot`) and slot.
type Candidate = (f32, usize);

impl DenseIndex {
    /// The `k` best documents (each with its best chunk) for a unit-norm `query`.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: &Filter,
        meta_terms: &[String],
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
        let filter = SlotFilter::new(filter, meta_terms, &m.names);
        let passes =
            |slot: usize| -> bool { m.is_live(slot).is_some_and(|doc| filter.matches(doc)) };
        // The fresh part, exactly: every live point that passes.
        let start = m.fresh_start();
        let fresh: Vec<Candidate> = (start..m.slots.len())
            .filter(|&slot| passes(slot))
            .filter_map(|slot| Some((m.distance(query, slot, self.dim)?, slot)))
            .collect();
        let Some(frozen) = &m.frozen else {
            return Ok(collapse(fresh, &m, k));
        };
        // The segment's walk keeps only live points that pass: the others are walked through,
        // never returned. Its `fetch` best and the fresh part's together.
        // Unfiltered, a candidate's check is one bit of the live set.
        let accept = |id: u32| passes(id as usize);
        let live = |id: u32| m.live_bit(id as usize);
        let walk = |fetch: usize| -> (Vec<Candidate>, bool) {
            let found = if filter.is_empty() {
                frozen.search_accepting(query, fetch, fetch, Some(&live))
            } else {
                frozen.search_accepting(query, fetch, fetch, Some(&accept))
            };
            let mut found: Vec<Candidate> = found
                .into_iter()
                .map(|f| (f.distance, f.id as usize))
                .collect();
            let exhausted = found.len() < fetch;
            found.extend_from_slice(&fresh);
            (found, exhausted)
        };
        let n = frozen.len();
        // Unfiltered, or a filter broad enough for the walk (a sample of the live chunks
        // estimates the share it keeps: checking every document would cost more than the walk).
        if filter.is_empty() || sampled_share(&m, &filter) > EXACT_SHARE {
            // The walk costs what its candidate list (ef) costs, so take every candidate: that
            // survives several chunks of one document without a second walk, which only
            // happens when too few documents came back.
            let enough = if filter.is_empty() {
                k.min(m.docs.len())
            } else {
                k
            };
            let mut fetch = ef.max(k).min(n);
            loop {
                let (found, exhausted) = walk(fetch);
                let hits = collapse(found, &m, k);
                if hits.len() >= enough {
                    return Ok(hits);
                }
                // Short of documents though the walk reached all it could: the graph may not
                // reach every point (the heuristic can leave a point no in-link), so the exact
                // scan answers.
                if exhausted
                    || fetch >= n
                    || (!filter.is_empty() && fetch >= MAX_POSTFILTER_CANDIDATES)
                {
                    break;
                }
                fetch = (fetch * 4).min(n);
            }
        }
        // Selective filter (or too few passing candidates): every live slot that passes, scored
        // from the segment's and the fresh part's vectors (frozen ones in slot order).
        let scored: Vec<Candidate> = (0..start)
            .filter(|&slot| passes(slot))
            .filter_map(|slot| Some((m.distance(query, slot, self.dim)?, slot)))
            .chain(fresh)
            .collect();
        Ok(collapse(scored, &m, k))
    }
}

/// Best chunk per document, in score order, at most `k` documents, from candidates that are
/// live (and pass the filter).
fn collapse(mut found: Vec<Candidate>, m: &Maps, k: usize) -> Vec<DenseHit> {
    found.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut seen: HashSet<&Arc<str>> = HashSet::new();
    let mut out = Vec::new();
    for (distance, slot) in found {
        if out.len() >= k {
            break;
        }
        let (Some(doc), Some(chunk_id)) = (m.is_live(slot), m.slots.get(slot)) else {
            continue;
        };
        if seen.insert(&doc.id) {
            out.push(DenseHit {
                chunk_id: *chunk_id,
                doc_id: doc.id.clone(),
                score: 1.0 - distance,
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
    use crate::dense::frozen::tests::as_stored;
    use crate::distance::dot;

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
        // Once, hnsw_rs's point iterator took its read lock a second time while holding it;
        // with parking_lot that waited behind an inserting writer waiting for the first: a
        // deadlock. The scan (k above the matching documents sends the search there) must
        // finish however inserts and folds into new segments interleave with it.
        let idx = std::sync::Arc::new(DenseIndex::new(8, HnswParams::default(), 200_000));
        for i in 0..5_000u64 {
            let kind = if i % 2 == 0 { "even" } else { "odd" };
            put_one(&idx, kind, i);
        }
        assert_eq!(idx.freeze().expect("freezes"), Some(5_000));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (idx, stop) = (idx.clone(), stop.clone());
            std::thread::spawn(move || {
                // Documents of many chunks, as a long call transcript, folded into a new
                // segment every fourth (outside the maps' lock) while searches come and go.
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
                    if doc % 4 == 0 {
                        let _ = idx.freeze();
                    }
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
                for _ in 0..50 {
                    let hits = idx
                        .search(&unit(3, 8), 3_000, 64, &filter, &[])
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
        for i in 0..100u64 {
            let kind = if i % 50 == 0 { "rare" } else { "common" };
            put_one(&idx, kind, i);
        }
        idx.freeze().expect("freezes");
        // One more rare document, fresh.
        put_one(&idx, "rare", 100);
        let filter = Filter {
            kind: vec!["rare".into()],
            ..Filter::default()
        };
        let hits = idx
            .search(&unit(3, 8), 10, 64, &filter, &[])
            .expect("searches");
        let mut ids: Vec<&str> = hits.iter().map(|h| &*h.doc_id).collect();
        ids.sort();
        assert_eq!(ids, ["t:rare:0", "t:rare:100", "t:rare:50"]);
    }

    /// The `k` nearest documents of `query` by brute force over `vectors` (doc id, vector).
    fn brute_force(vectors: &[(String, Vec<f32>)], query: &[f32], k: usize) -> Vec<String> {
        let mut all: Vec<(f32, &String)> =
            vectors.iter().map(|(id, v)| (dot(query, v), id)).collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0));
        all.into_iter().take(k).map(|(_, id)| id.clone()).collect()
    }

    #[test]
    fn writes_are_found_before_and_after_they_are_frozen_and_tombstones_never() {
        let idx = DenseIndex::new(8, HnswParams::default(), 1_000);
        for i in 0..600u64 {
            put_one(&idx, "a", i);
        }
        // A frozen segment of 600; then 100 replaced (new chunk ids, new vectors), 50 deleted
        // and 80 new documents, all fresh.
        assert_eq!(idx.freeze().expect("freezes"), Some(600));
        assert_eq!(idx.stats().fresh, 0);
        for i in 0..100u64 {
            idx.apply(
                &format!("t:a:{i}"),
                Some((
                    attrs("a"),
                    vec![DenseItem {
                        chunk_id: 10_000 + i,
                        vector: unit(10_000 + i, 8),
                    }],
                )),
            )
            .expect("applies");
        }
        for i in 100..150u64 {
            idx.apply(&format!("t:a:{i}"), None).expect("applies");
        }
        for i in 600..680u64 {
            put_one(&idx, "a", i);
        }
        assert_eq!(idx.stats().fresh, 180);
        // The documents' vectors as the index holds them: f16 in a segment, f32 while fresh.
        let held = |v: Vec<f32>, frozen: bool| if frozen { as_stored(&v) } else { v };
        let expected = |all_frozen: bool| -> Vec<(String, Vec<f32>)> {
            (0..100u64)
                .map(|i| (format!("t:a:{i}"), held(unit(10_000 + i, 8), all_frozen)))
                .chain(
                    (150..680u64)
                        .map(|i| (format!("t:a:{i}"), held(unit(i, 8), all_frozen || i < 600))),
                )
                .collect()
        };
        let check = |stage: &str| {
            let expected = expected(stage == "frozen");
            for q in 0..40u64 {
                let query = unit(77_000 + q, 8);
                let hits = idx
                    .search(&query, 10, 2_000, &Filter::default(), &[])
                    .expect("searches");
                let found: Vec<String> = hits.iter().map(|h| h.doc_id.to_string()).collect();
                assert_eq!(
                    found,
                    brute_force(&expected, &query, 10),
                    "{stage}, query {q}"
                );
                // A tombstone's or a replaced chunk's vector finds others, never them.
                let gone = idx
                    .search(&unit(120, 8), 5, 64, &Filter::default(), &[])
                    .expect("searches");
                assert!(gone.iter().all(|h| h.chunk_id >= 150), "{stage}");
            }
        };
        check("fresh");
        assert_eq!(idx.freeze().expect("freezes"), Some(780));
        assert_eq!(idx.stats().fresh, 0);
        check("frozen");
    }
}
