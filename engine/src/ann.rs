//! A bare approximate-nearest-neighbour index over ids and unit vectors: the dense index the
//! engine uses (its segments, slots, tombstones and distance) without documents, with an
//! optional integer label per vector to filter on the way the engine filters, and the exact scan
//! it is measured against. For benchmarks and tools; the engine itself goes through documents and
//! the change log.

use std::sync::Arc;

use crate::dense::{DenseIndex, DenseItem, HnswParams};
use crate::distance::dot;
use crate::error::Result;
use crate::filter::{DocAttrs, Filter, TimeRange};

/// An [`AnnIndex`]'s frozen segment (flat level-0 links, contiguous vectors, our own search
/// kernel) on its own, for benchmarks of its walks.
#[derive(Debug)]
pub struct FrozenAnn {
    graph: Arc<crate::dense::frozen::FrozenGraph>,
    /// Point (slot) → id.
    ids: Vec<u64>,
}

impl FrozenAnn {
    /// The `k` nearest ids with their cosine similarity, best first.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<(u64, f32)> {
        self.with_ids(self.graph.search(query, k, ef))
    }

    /// [`FrozenAnn::search`] walking the graph over int8 codes of the vectors, then rescoring
    /// the `ef` candidates with the f32 vectors.
    pub fn search_int8(&self, query: &[f32], k: usize, ef: usize) -> Vec<(u64, f32)> {
        self.with_ids(self.graph.search_int8(query, k, ef))
    }

    /// The points found as ids with their cosine similarity.
    fn with_ids(&self, found: Vec<crate::dense::walk::Found>) -> Vec<(u64, f32)> {
        found
            .into_iter()
            .filter_map(|f| Some((*self.ids.get(f.id as usize)?, 1.0 - f.distance)))
            .collect()
    }

    /// Bytes of its links, vectors and their int8 codes.
    pub fn bytes(&self) -> usize {
        self.graph.bytes() + self.ids.len() * 8
    }
}

/// HNSW over `(id, unit vector)` pairs; one id is one point (re-inserting an id replaces it).
#[derive(Debug)]
pub struct AnnIndex {
    inner: DenseIndex,
}

/// A vector's label is kept where the engine keeps a document's `updated_at`, so a label filter
/// takes the same path through the index as a time-range filter.
fn attrs(label: i64) -> DocAttrs {
    DocAttrs {
        source: String::new(),
        kind: String::new(),
        updated_at: label,
        meta_terms: Vec::new(),
    }
}

impl AnnIndex {
    /// An empty index of `dim`-dimensional vectors.
    pub fn new(dim: usize, params: HnswParams, capacity: usize) -> Self {
        AnnIndex {
            inner: DenseIndex::new(dim, params, capacity),
        }
    }

    /// Inserts (or replaces) one vector, on the calling thread.
    pub fn insert(&self, id: u64, vector: Vec<f32>) -> Result<()> {
        self.inner.apply(
            &id.to_string(),
            Some((
                attrs(0),
                vec![DenseItem {
                    chunk_id: id,
                    vector,
                }],
            )),
        )
    }

    /// Inserts many new vectors (as index rebuilds do). Like every insert, they are fresh
    /// (exactly scanned by searches) until [`AnnIndex::freeze`] builds them a segment, in
    /// parallel on the global rayon pool.
    pub fn insert_parallel(&self, items: Vec<(u64, Vec<f32>)>) {
        self.insert_parallel_labelled(
            items
                .into_iter()
                .map(|(id, vector)| (id, 0, vector))
                .collect(),
        );
    }

    /// Like [`AnnIndex::insert_parallel`], each vector with a label for
    /// [`AnnIndex::search_label_below`].
    pub fn insert_parallel_labelled(&self, items: Vec<(u64, i64, Vec<f32>)>) {
        let docs = items
            .into_iter()
            .map(|(id, label, vector)| {
                (
                    Arc::from(id.to_string().as_str()),
                    attrs(label),
                    vec![DenseItem {
                        chunk_id: id,
                        vector,
                    }],
                )
            })
            .collect();
        self.inner.bulk_insert(docs);
    }

    /// Removes a vector (a tombstone until the next rebuild).
    pub fn remove(&self, id: u64) -> Result<()> {
        self.inner.apply(&id.to_string(), None)
    }

    /// Folds the vectors inserted since the last call into the frozen segment searches walk, as
    /// the engine's indexer does; returns the vectors it holds. Call it once inserts are done
    /// (not while another thread inserts).
    pub fn freeze(&self) -> Result<usize> {
        self.freeze_reporting(&|_| {})
    }

    /// [`AnnIndex::freeze`], telling `progress` how many more vectors the build has inserted
    /// (called from the build's threads).
    pub fn freeze_reporting(&self, progress: &(dyn Fn(usize) + Sync)) -> Result<usize> {
        Ok(self.inner.freeze_reporting(progress)?.unwrap_or(0))
    }

    /// The `k` nearest ids with their cosine similarity, best first.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<(u64, f32)>> {
        Ok(self
            .inner
            .search(query, k, ef, &Filter::default(), &[])?
            .into_iter()
            .map(|h| (h.chunk_id, h.score))
            .collect())
    }

    /// The `k` nearest ids whose label is below `below`, found the way the engine's dense leg
    /// serves a filtered search: a post-filtered walk when many vectors match, else an exact
    /// scan of the matching ones.
    pub fn search_label_below(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        below: i64,
    ) -> Result<Vec<(u64, f32)>> {
        let filter = Filter {
            updated_at: Some(TimeRange {
                gte: None,
                lt: Some(below),
            }),
            ..Filter::default()
        };
        Ok(self
            .inner
            .search(query, k, ef, &filter, &[])?
            .into_iter()
            .map(|h| (h.chunk_id, h.score))
            .collect())
    }

    /// The frozen segment on its own (`None` before the first [`AnnIndex::freeze`]).
    pub fn frozen(&self) -> Option<FrozenAnn> {
        let graph = self.inner.frozen()?;
        let ids = self.inner.read().slots[..graph.len()].to_vec();
        Some(FrozenAnn { graph, ids })
    }

    /// Live vectors.
    pub fn len(&self) -> usize {
        self.inner.stats().live
    }

    /// No live vectors?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Exact nearest neighbours by scanning every vector (the reference the index is measured
/// against), with the same vectorised dot product.
#[derive(Debug, Default)]
pub struct BruteForce {
    dim: usize,
    ids: Vec<u64>,
    data: Vec<f32>,
}

impl BruteForce {
    /// An empty scan set of `dim`-dimensional vectors.
    pub fn new(dim: usize) -> Self {
        BruteForce {
            dim,
            ids: Vec::new(),
            data: Vec::new(),
        }
    }

    /// Adds a vector (must have `dim` values).
    pub fn push(&mut self, id: u64, vector: &[f32]) {
        debug_assert_eq!(vector.len(), self.dim);
        self.ids.push(id);
        self.data.extend_from_slice(vector);
    }

    /// The `k` most similar ids, best first.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<(u64, f32)> {
        let mut top: Vec<(f32, u64)> = Vec::with_capacity(k + 1);
        for (i, v) in self.data.chunks_exact(self.dim.max(1)).enumerate() {
            let s = dot(query, v);
            if top.len() < k || top.last().is_some_and(|(w, _)| s > *w) {
                let at = top.partition_point(|(x, _)| *x >= s);
                top.insert(at, (s, self.ids[i]));
                top.truncate(k);
            }
        }
        top.into_iter().map(|(s, id)| (id, s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_finds_what_the_exact_scan_finds_on_a_small_set() {
        let dim = 16;
        let index = AnnIndex::new(dim, HnswParams::default(), 200);
        let mut exact = BruteForce::new(dim);
        let mut items = Vec::new();
        for i in 0..200u64 {
            let v = crate::dense::unit(i, dim);
            exact.push(i, &v);
            items.push((i, v));
        }
        let query = items[17].1.clone();
        index.insert_parallel(items);
        assert_eq!(index.freeze().expect("freezes"), 200);
        assert_eq!(index.len(), 200);
        // A candidate list as long as the set: the walk reaches every point (an approximate
        // list of 64 may miss one of the five, depending on the parallel build's order).
        let a: Vec<u64> = index
            .search(&query, 5, 200)
            .expect("search")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let b: Vec<u64> = exact
            .search(&query, 5)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(a, b);
        assert_eq!(a[0], 17);
        index.remove(17).expect("remove");
        assert!(
            index
                .search(&query, 5, 64)
                .expect("search")
                .iter()
                .all(|(id, _)| *id != 17)
        );
    }

    #[test]
    fn a_label_filter_returns_only_matching_vectors_like_the_filtered_exact_scan() {
        let dim = 16;
        let n = 3_000u64;
        let index = AnnIndex::new(dim, HnswParams::default(), n as usize);
        let vectors: Vec<Vec<f32>> = (0..n).map(|i| crate::dense::unit(i, dim)).collect();
        let label = |i: u64| (i % 10) as i64;
        index.insert_parallel_labelled(
            (0..n)
                .map(|i| (i, label(i), vectors[i as usize].clone()))
                .collect(),
        );
        assert_eq!(index.freeze().expect("freezes"), n as usize);
        // Below 5: half match (filtered HNSW); below 1: 300 match (the exact scan).
        for below in [5, 1] {
            let mut exact = BruteForce::new(dim);
            for i in (0..n).filter(|i| label(*i) < below) {
                exact.push(i, &vectors[i as usize]);
            }
            let query = &vectors[1234];
            let got = index
                .search_label_below(query, 10, 128, below)
                .expect("search");
            assert_eq!(got.len(), 10);
            assert!(got.iter().all(|(id, _)| label(*id) < below), "{got:?}");
            let want: Vec<u64> = exact
                .search(query, 10)
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            let hit = got.iter().filter(|(id, _)| want.contains(id)).count();
            assert!(hit >= 9, "below {below}: {hit}/10 of the exact answer");
        }
    }
}
