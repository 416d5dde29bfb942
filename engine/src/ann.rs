//! A bare approximate-nearest-neighbour index over ids and unit vectors: the dense index the
//! engine uses (hnsw_rs plus our slots, tombstones and distance) without documents or filters,
//! and the exact scan it is measured against. For benchmarks and tools; the engine itself goes
//! through documents and the change log.

use std::sync::Arc;

use crate::dense::{DenseIndex, DenseItem, HnswParams};
use crate::distance::dot;
use crate::error::Result;
use crate::filter::{DocAttrs, Filter};

/// HNSW over `(id, unit vector)` pairs; one id is one point (re-inserting an id replaces it).
#[derive(Debug)]
pub struct AnnIndex {
    inner: DenseIndex,
}

fn attrs() -> DocAttrs {
    DocAttrs {
        source: String::new(),
        kind: String::new(),
        updated_at: 0,
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
                attrs(),
                vec![DenseItem {
                    chunk_id: id,
                    vector,
                }],
            )),
        )
    }

    /// Inserts many new vectors in parallel on the global rayon pool (as index rebuilds do).
    pub fn insert_parallel(&self, items: Vec<(u64, Vec<f32>)>) {
        let docs = items
            .into_iter()
            .map(|(id, vector)| {
                (
                    Arc::from(id.to_string().as_str()),
                    attrs(),
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

    /// The `k` nearest ids with their cosine similarity, best first.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<(u64, f32)>> {
        let none = |_: &[u64]| Ok(Vec::new());
        Ok(self
            .inner
            .search(query, k, ef, &Filter::default(), &[], &none)?
            .into_iter()
            .map(|h| (h.chunk_id, h.score))
            .collect())
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
        assert_eq!(index.len(), 200);
        let a: Vec<u64> = index
            .search(&query, 5, 64)
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
}
