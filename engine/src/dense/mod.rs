//! The dense (vector) index on hnsw_rs, and what hnsw_rs lacks: updates and deletes (slots and
//! tombstones filtered at search time, here), filters that re-check every hit and fall back to
//! an exact scan when they are selective (the search policy, [`search`]), and crash-safe
//! snapshots (`dense_snapshot`).
//!
//! hnsw_rs has no delete, and inserting an id twice adds a second point. So every insertion gets
//! a fresh *slot* (the hnsw_rs `DataId`); a slot is live while the chunk map points at it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hnsw_rs::prelude::Hnsw;
use serde::{Deserialize, Serialize};

pub(crate) mod frozen;
mod search;

use crate::distance::UnitCosine;
use crate::error::{Error, Result};
use crate::filter::DocAttrs;

/// HNSW construction and search parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    /// Links per node (hnsw_rs `max_nb_connection`), 4..=128.
    pub m: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
    /// Candidate list size while searching (raised to the number of results asked for).
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            ef_search: 64,
        }
    }
}

impl HnswParams {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(4..=128).contains(&self.m) {
            return Err(format!("hnsw m must be within 4..=128, got {}", self.m));
        }
        if self.ef_construction < self.m || self.ef_construction > 4096 {
            return Err(format!(
                "hnsw ef_construction must be within m..=4096, got {}",
                self.ef_construction
            ));
        }
        if self.ef_search == 0 || self.ef_search > 4096 {
            return Err(format!(
                "hnsw ef_search must be within 1..=4096, got {}",
                self.ef_search
            ));
        }
        Ok(())
    }
}

/// Reads stored vectors by chunk id (None where missing), for exact scans.
pub(crate) type VectorFetch<'a> = dyn Fn(&[u64]) -> Result<Vec<Option<Vec<f32>>>> + 'a;

/// One chunk to index: id, owning document and its vector.
#[derive(Debug, Clone)]
pub(crate) struct DenseItem {
    pub chunk_id: u64,
    pub vector: Vec<f32>,
}

/// A chunk found by the dense leg.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DenseHit {
    pub chunk_id: u64,
    pub doc_id: Arc<str>,
    /// Cosine similarity to the query.
    pub score: f32,
}

#[derive(Debug, Clone)]
struct Live {
    slot: usize,
    doc: Arc<str>,
}

#[derive(Debug, Clone)]
pub(crate) struct DocEntry {
    pub attrs: DocAttrs,
    pub chunks: Vec<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct Maps {
    /// slot (hnsw_rs DataId) -> chunk id.
    pub slots: Vec<u64>,
    live: HashMap<u64, Live>,
    pub docs: HashMap<Arc<str>, DocEntry>,
    /// Highest change-log sequence applied.
    pub seq: u64,
}

impl Maps {
    fn is_live(&self, slot: usize) -> Option<&Arc<str>> {
        let chunk = self.slots.get(slot)?;
        let live = self.live.get(chunk)?;
        (live.slot == slot).then_some(&live.doc)
    }
}

/// The dense index. Searches and the (single) indexer thread run concurrently: the graph is
/// internally locked, the maps are behind a `RwLock` held briefly by writers.
pub(crate) struct DenseIndex {
    hnsw: Hnsw<'static, f32, UnitCosine>,
    dim: usize,
    params: HnswParams,
    maps: RwLock<Maps>,
}

impl std::fmt::Debug for DenseIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DenseIndex")
            .field("dim", &self.dim)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// Numbers an operator (and the rebuild trigger) looks at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DenseStats {
    /// Live chunks.
    pub live: usize,
    /// Points in the graph that are no longer live.
    pub tombstones: usize,
    /// Change-log sequence the index includes.
    pub seq: u64,
}

const MAX_LAYER: usize = 16;

impl DenseIndex {
    pub fn new(dim: usize, params: HnswParams, capacity: usize) -> Self {
        let hnsw = Hnsw::new(
            params.m,
            capacity.max(1024),
            MAX_LAYER,
            params.ef_construction,
            UnitCosine,
        );
        DenseIndex {
            hnsw,
            dim,
            params,
            maps: RwLock::new(Maps::default()),
        }
    }

    pub(crate) fn from_parts(
        hnsw: Hnsw<'static, f32, UnitCosine>,
        dim: usize,
        params: HnswParams,
        maps: Maps,
    ) -> Self {
        DenseIndex {
            hnsw,
            dim,
            params,
            maps: RwLock::new(maps),
        }
    }

    pub(crate) fn hnsw(&self) -> &Hnsw<'static, f32, UnitCosine> {
        &self.hnsw
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn params(&self) -> HnswParams {
        self.params
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Maps> {
        self.maps
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Maps> {
        self.maps
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn stats(&self) -> DenseStats {
        let m = self.read();
        DenseStats {
            live: m.live.len(),
            tombstones: m.slots.len() - m.live.len(),
            seq: m.seq,
        }
    }

    /// Fraction of graph points that are tombstones.
    pub fn tombstone_ratio(&self) -> f64 {
        let m = self.read();
        if m.slots.is_empty() {
            0.0
        } else {
            (m.slots.len() - m.live.len()) as f64 / m.slots.len() as f64
        }
    }

    pub fn seq(&self) -> u64 {
        self.read().seq
    }

    pub fn set_seq(&self, seq: u64) {
        let mut m = self.write();
        m.seq = m.seq.max(seq);
    }

    /// Makes the index hold exactly `chunks` for `doc_id` (or nothing when `None`): chunks that
    /// are already live stay, others are tombstoned or inserted. Idempotent.
    pub fn apply(&self, doc_id: &str, state: Option<(DocAttrs, Vec<DenseItem>)>) -> Result<()> {
        if let Some((_, items)) = &state
            && let Some(bad) = items.iter().find(|i| i.vector.len() != self.dim)
        {
            return Err(Error::Dense(format!(
                "chunk {} has {} dimensions, the index has {}",
                bad.chunk_id,
                bad.vector.len(),
                self.dim
            )));
        }
        let doc: Arc<str> = Arc::from(doc_id);
        // Phase 1 (brief write lock): tombstone what goes, reserve slots for what comes.
        let to_insert: Vec<(usize, usize)> = {
            let mut m = self.write();
            let keep: HashSet<u64> = state
                .as_ref()
                .map(|(_, items)| items.iter().map(|i| i.chunk_id).collect())
                .unwrap_or_default();
            if let Some(old) = m.docs.remove(&doc) {
                for chunk in old.chunks {
                    if !keep.contains(&chunk) {
                        m.live.remove(&chunk);
                    }
                }
            }
            let Some((_, items)) = &state else {
                return Ok(());
            };
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if m.live.contains_key(&item.chunk_id) {
                    continue;
                }
                let slot = m.slots.len();
                m.slots.push(item.chunk_id);
                out.push((slot, i));
            }
            out
        };
        // Phase 2 (no lock of ours): insert into the graph; searches go on.
        let Some((attrs, items)) = state else {
            return Ok(());
        };
        for (slot, i) in &to_insert {
            self.hnsw.insert_slice((&items[*i].vector, *slot));
        }
        // Phase 3 (brief write lock): the new chunks become live.
        {
            let mut m = self.write();
            for (slot, i) in &to_insert {
                m.live.insert(
                    items[*i].chunk_id,
                    Live {
                        slot: *slot,
                        doc: doc.clone(),
                    },
                );
            }
            m.docs.insert(
                doc,
                DocEntry {
                    attrs,
                    chunks: items.iter().map(|i| i.chunk_id).collect(),
                },
            );
        }
        Ok(())
    }

    /// Bulk insert for rebuilds (parallel on the global rayon pool); `items` must be new chunks.
    pub fn bulk_insert(&self, docs: Vec<(Arc<str>, DocAttrs, Vec<DenseItem>)>) {
        let mut batch: Vec<(Vec<f32>, usize)> = Vec::new();
        {
            let mut m = self.write();
            for (doc, attrs, items) in docs {
                let mut chunks = Vec::with_capacity(items.len());
                for item in items {
                    if m.live.contains_key(&item.chunk_id) {
                        continue;
                    }
                    let slot = m.slots.len();
                    m.slots.push(item.chunk_id);
                    m.live.insert(
                        item.chunk_id,
                        Live {
                            slot,
                            doc: doc.clone(),
                        },
                    );
                    chunks.push(item.chunk_id);
                    batch.push((item.vector, slot));
                }
                m.docs.insert(doc, DocEntry { attrs, chunks });
            }
        }
        let refs: Vec<(&[f32], usize)> = batch.iter().map(|(v, s)| (v.as_slice(), *s)).collect();
        self.hnsw.parallel_insert_slice(&refs);
    }

    /// Everything the snapshot needs besides the graph.
    pub(crate) fn export_maps(&self) -> MapsSnapshot {
        let m = self.read();
        MapsSnapshot {
            seq: m.seq,
            dim: self.dim,
            params: self.params,
            slots: m.slots.clone(),
            docs: m
                .docs
                .iter()
                .map(|(id, e)| SnapshotDoc {
                    id: id.to_string(),
                    source: e.attrs.source.clone(),
                    kind: e.attrs.kind.clone(),
                    updated_at: e.attrs.updated_at,
                    meta_terms: e.attrs.meta_terms.clone(),
                    chunks: e
                        .chunks
                        .iter()
                        .map(|c| (*c, m.live.get(c).map(|l| l.slot).unwrap_or(usize::MAX)))
                        .collect(),
                })
                .collect(),
        }
    }
}

/// The maps as written next to the hnsw_rs dump.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MapsSnapshot {
    pub seq: u64,
    pub dim: usize,
    pub params: HnswParams,
    pub slots: Vec<u64>,
    pub docs: Vec<SnapshotDoc>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SnapshotDoc {
    pub id: String,
    pub source: String,
    pub kind: String,
    pub updated_at: i64,
    pub meta_terms: Vec<String>,
    /// (chunk id, slot)
    pub chunks: Vec<(u64, usize)>,
}

impl MapsSnapshot {
    pub(crate) fn into_maps(self, graph_points: usize) -> Result<Maps> {
        let mut maps = Maps {
            slots: self.slots,
            seq: self.seq,
            ..Maps::default()
        };
        if maps.slots.len() != graph_points {
            return Err(Error::Dense(format!(
                "snapshot maps list {} slots but the graph has {} points",
                maps.slots.len(),
                graph_points
            )));
        }
        for d in self.docs {
            let doc: Arc<str> = Arc::from(d.id.as_str());
            let mut chunks = Vec::with_capacity(d.chunks.len());
            for (chunk, slot) in d.chunks {
                if maps.slots.get(slot) != Some(&chunk) {
                    return Err(Error::Dense(format!(
                        "snapshot maps chunk {chunk} to slot {slot}, which holds another chunk"
                    )));
                }
                maps.live.insert(
                    chunk,
                    Live {
                        slot,
                        doc: doc.clone(),
                    },
                );
                chunks.push(chunk);
            }
            let attrs = DocAttrs {
                source: d.source,
                kind: d.kind,
                updated_at: d.updated_at,
                meta_terms: d.meta_terms,
            };
            maps.docs.insert(doc, DocEntry { attrs, chunks });
        }
        Ok(maps)
    }
}

/// A pseudo-random unit vector from a seed (tests of this crate).
#[cfg(test)]
pub(crate) fn unit(seed: u64, dim: usize) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..dim)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        })
        .collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.into_iter().map(|a| a / n).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::filter::Filter;

    pub(crate) fn attrs(kind: &str) -> DocAttrs {
        DocAttrs {
            source: "t".into(),
            kind: kind.into(),
            updated_at: 0,
            meta_terms: vec![],
        }
    }

    pub(crate) fn no_vectors(_: &[u64]) -> Result<Vec<Option<Vec<f32>>>> {
        Ok(vec![])
    }

    #[test]
    fn an_updated_document_is_found_by_its_new_vector_only_and_a_deleted_one_never() {
        let idx = DenseIndex::new(16, HnswParams::default(), 100);
        for i in 0..50u64 {
            idx.apply(
                &format!("t:a:{i}"),
                Some((
                    attrs("a"),
                    vec![DenseItem {
                        chunk_id: i,
                        vector: unit(i, 16),
                    }],
                )),
            )
            .expect("applies");
        }
        // Doc 7 gets doc 1000's vector under a new chunk id; doc 8 is deleted.
        idx.apply(
            "t:a:7",
            Some((
                attrs("a"),
                vec![DenseItem {
                    chunk_id: 1000,
                    vector: unit(1000, 16),
                }],
            )),
        )
        .expect("applies");
        idx.apply("t:a:8", None).expect("applies");
        let hits = idx
            .search(&unit(1000, 16), 1, 64, &Filter::default(), &[], &no_vectors)
            .expect("searches");
        assert_eq!(&*hits[0].doc_id, "t:a:7");
        let old = idx
            .search(&unit(7, 16), 5, 64, &Filter::default(), &[], &no_vectors)
            .expect("searches");
        assert!(
            old.iter().all(|h| h.chunk_id != 7),
            "tombstoned chunk returned"
        );
        let all = idx
            .search(&unit(8, 16), 60, 64, &Filter::default(), &[], &no_vectors)
            .expect("searches");
        assert!(all.iter().all(|h| &*h.doc_id != "t:a:8"));
        assert_eq!(all.len(), 49);
        assert_eq!(idx.stats().tombstones, 2);
    }

    #[test]
    fn reapplying_the_same_chunks_inserts_nothing() {
        let idx = DenseIndex::new(8, HnswParams::default(), 10);
        let state = || {
            Some((
                attrs("a"),
                vec![DenseItem {
                    chunk_id: 1,
                    vector: unit(1, 8),
                }],
            ))
        };
        idx.apply("t:a:1", state()).expect("applies");
        idx.apply("t:a:1", state()).expect("applies");
        assert_eq!(
            idx.stats(),
            DenseStats {
                live: 1,
                tombstones: 0,
                seq: 0
            }
        );
    }

    #[test]
    fn bad_dimensions_are_errors_not_panics() {
        let idx = DenseIndex::new(8, HnswParams::default(), 10);
        assert!(
            idx.apply(
                "t:a:1",
                Some((
                    attrs("a"),
                    vec![DenseItem {
                        chunk_id: 1,
                        vector: vec![0.0; 3]
                    }]
                ))
            )
            .is_err()
        );
        assert!(
            idx.search(&[1.0], 1, 10, &Filter::default(), &[], &no_vectors)
                .is_err()
        );
    }
}
