//! The dense (vector) index: an immutable HNSW segment serves searches ([`frozen`]), built by
//! our own builder ([`build`]) from scratch or as the old segment plus the points written since;
//! around it, updates and deletes (slots and tombstones filtered at search time), filters that
//! re-check every hit and fall back to an exact scan when they are selective (the search policy,
//! [`search`]), and crash-safe snapshots (`dense_snapshot`, [`segment_file`]).
//!
//! A segment never changes a point, so every insertion gets a new *slot* (its point id); a slot
//! is live while the chunk map points at it, a tombstone after.
//!
//! Slots `0..f` are in the frozen segment; the slots inserted since it was frozen (the *fresh*
//! part, their vectors kept here) are exact-scanned by every search, so a write is searchable as
//! soon as it is applied. [`DenseIndex::freeze`] folds the fresh part into a new segment; the
//! indexer calls it once the fresh part passes `dense_freeze_after` chunks, or
//! `dense_freeze_interval` after its first fresh chunk when it has nothing else to do.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};

mod build;
pub(crate) mod frozen;
mod huge_array;
mod search;
pub(crate) mod segment_file;
mod slot_filter;
pub(crate) mod walk;

use crate::distance::cosine_distance;
use crate::error::{Error, Result};
use crate::filter::DocAttrs;
use frozen::FrozenGraph;
use slot_filter::{Names, SlotDoc};

/// HNSW construction and search parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    /// Links per node and level (2M at level 0), 4..=128.
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
pub(crate) struct DocEntry {
    pub attrs: Arc<DocAttrs>,
    pub chunks: Vec<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct Maps {
    /// slot (point id) -> chunk id.
    pub slots: Vec<u64>,
    /// slot -> its document while the slot is live (`None`: a tombstone, or not yet inserted).
    slot_doc: Vec<Option<SlotDoc>>,
    /// The numbers of the source and kind names in `slot_doc`.
    names: Names,
    /// live chunk id -> its slot.
    live: HashMap<u64, usize>,
    /// One bit per slot, set while it is live: what an unfiltered walk checks per candidate
    /// (12.5 KB per 100 000 slots stays in cache, where `slot_doc` is 48 bytes a slot).
    live_bits: Vec<u64>,
    pub docs: HashMap<Arc<str>, DocEntry>,
    /// Highest change-log sequence applied.
    pub seq: u64,
    /// The segment searches walk: slots `0..frozen.len()`.
    frozen: Option<Arc<FrozenGraph>>,
    /// The vectors of the fresh slots (from `frozen.len()` on), `dim` values each.
    fresh: Vec<f32>,
}

impl Maps {
    /// The document of `slot` while the slot is live.
    pub(crate) fn is_live(&self, slot: usize) -> Option<&SlotDoc> {
        self.slot_doc.get(slot)?.as_ref()
    }

    /// Is `slot` live? (The bit of [`Maps::is_live`].)
    pub(crate) fn live_bit(&self, slot: usize) -> bool {
        self.live_bits
            .get(slot / 64)
            .is_some_and(|w| w >> (slot % 64) & 1 == 1)
    }

    fn set_live_bit(&mut self, slot: usize, live: bool) {
        if self.live_bits.len() <= slot / 64 {
            self.live_bits.resize(slot / 64 + 1, 0);
        }
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        if live {
            self.live_bits[word] |= bit;
        } else {
            self.live_bits[word] &= !bit;
        }
    }

    /// The first fresh slot.
    fn fresh_start(&self) -> usize {
        self.frozen.as_ref().map_or(0, |f| f.len())
    }

    /// The cosine distance of a unit-norm `query` to `slot`'s vector, in the frozen segment
    /// (f16) or the fresh part (f32); `None` for a slot with no vector.
    fn distance(&self, query: &[f32], slot: usize, dim: usize) -> Option<f32> {
        let start = self.fresh_start();
        if slot < start {
            let frozen = self.frozen.as_ref()?;
            return frozen.distance(query, u32::try_from(slot).ok()?);
        }
        let at = (slot - start) * dim;
        Some(cosine_distance(query, self.fresh.get(at..at + dim)?))
    }

    /// Reserves the next slot for `chunk` (not live until [`Maps::make_live`]).
    fn reserve(&mut self, chunk: u64, vector: &[f32]) -> usize {
        let slot = self.slots.len();
        self.slots.push(chunk);
        self.slot_doc.push(None);
        self.fresh.extend_from_slice(vector);
        slot
    }

    fn make_live(&mut self, chunk: u64, slot: usize, doc: &SlotDoc) {
        if let Some(old) = self.live.insert(chunk, slot)
            && old != slot
            && let Some(d) = self.slot_doc.get_mut(old)
        {
            *d = None;
            self.set_live_bit(old, false);
        }
        if let Some(d) = self.slot_doc.get_mut(slot) {
            *d = Some(doc.clone());
            self.set_live_bit(slot, true);
        }
    }

    fn tombstone(&mut self, chunk: u64) {
        if let Some(old) = self.live.remove(&chunk)
            && let Some(d) = self.slot_doc.get_mut(old)
        {
            *d = None;
            self.set_live_bit(old, false);
        }
    }
}

/// The dense index. Searches and the (single) indexer thread run concurrently: the maps are
/// behind a `RwLock` held briefly by writers, and a segment is built outside it.
pub(crate) struct DenseIndex {
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
    /// Points inserted since the frozen segment was made (exact-scanned by searches).
    pub fresh: usize,
}

impl DenseIndex {
    /// An empty index; `capacity` chunks are reserved for the fresh part.
    pub fn new(dim: usize, params: HnswParams, capacity: usize) -> Self {
        let maps = Maps {
            fresh: Vec::with_capacity(capacity.min(1 << 16) * dim),
            ..Maps::default()
        };
        DenseIndex {
            dim,
            params,
            maps: RwLock::new(maps),
        }
    }

    /// An index of loaded maps (their segment and fresh vectors with them).
    pub(crate) fn from_parts(dim: usize, params: HnswParams, maps: Maps) -> Self {
        DenseIndex {
            dim,
            params,
            maps: RwLock::new(maps),
        }
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
            fresh: m.slots.len() - m.fresh_start(),
        }
    }

    /// Points not yet in the frozen segment.
    pub fn fresh(&self) -> usize {
        let m = self.read();
        m.slots.len() - m.fresh_start()
    }

    /// Folds the fresh part into a new frozen segment (the old one plus the fresh points, or a
    /// new one built from them) and returns the points it holds. The build runs outside the
    /// maps' lock, searches go on against the old segment and the fresh part; points written
    /// meanwhile stay fresh. Call it from one thread at a time (the indexer, a rebuild); if
    /// another fold won the race, nothing changes (`Ok(None)`).
    pub fn freeze(&self) -> Result<Option<usize>> {
        self.freeze_reporting(&|_| {})
    }

    /// [`DenseIndex::freeze`], telling `progress` of each point the build inserts (it is
    /// called from the builder's threads).
    pub fn freeze_reporting(&self, progress: &(dyn Fn(usize) + Sync)) -> Result<Option<usize>> {
        let (old, fresh) = {
            let m = self.read();
            if m.slots.len() == m.fresh_start() {
                return Ok(Some(m.fresh_start()));
            }
            let count = m.slots.len() - m.fresh_start();
            (m.frozen.clone(), m.fresh[..count * self.dim].to_vec())
        };
        let old_len = old.as_ref().map_or(0, |g| g.len());
        let graph = match &old {
            Some(old) => build::extend(old, self.params, &fresh, progress),
            None => build::build(self.dim, self.params, fresh, progress),
        }
        .ok_or_else(|| Error::Dense("building the dense segment gave no graph".to_owned()))?;
        let mut m = self.write();
        if m.fresh_start() != old_len {
            return Ok(None);
        }
        let folded = graph.len() - old_len;
        // A new vector of what is left (often nothing): draining would keep the whole
        // allocation, and a rebuild's fresh part is every vector.
        m.fresh = m.fresh.split_off(folded * self.dim);
        m.frozen = Some(Arc::new(graph));
        Ok(Some(m.fresh_start()))
    }

    /// The current frozen segment, if one was made.
    pub(crate) fn frozen(&self) -> Option<Arc<FrozenGraph>> {
        self.read().frozen.clone()
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
        let mut m = self.write();
        let keep: HashSet<u64> = state
            .as_ref()
            .map(|(_, items)| items.iter().map(|i| i.chunk_id).collect())
            .unwrap_or_default();
        if let Some(old) = m.docs.remove(&doc) {
            for chunk in old.chunks {
                if !keep.contains(&chunk) {
                    m.tombstone(chunk);
                }
            }
        }
        let Some((attrs, items)) = state else {
            return Ok(());
        };
        // New chunks get fresh slots; kept ones take the document's new attributes.
        let entry = SlotDoc::new(doc.clone(), Arc::new(attrs), &mut m.names);
        for item in &items {
            match m.live.get(&item.chunk_id).copied() {
                Some(slot) => {
                    if let Some(Some(d)) = m.slot_doc.get_mut(slot) {
                        *d = entry.clone();
                    }
                }
                None => {
                    let slot = m.reserve(item.chunk_id, &item.vector);
                    m.make_live(item.chunk_id, slot, &entry);
                }
            }
        }
        m.docs.insert(
            doc,
            DocEntry {
                attrs: entry.attrs,
                chunks: items.iter().map(|i| i.chunk_id).collect(),
            },
        );
        Ok(())
    }

    /// Bulk insert for rebuilds; `items` must be new chunks. The chunks are fresh until
    /// [`DenseIndex::freeze`] builds them a segment (in parallel on the global rayon pool).
    pub fn bulk_insert(&self, docs: Vec<(Arc<str>, DocAttrs, Vec<DenseItem>)>) {
        {
            let mut m = self.write();
            for (doc, attrs, items) in docs {
                let entry = SlotDoc::new(doc.clone(), Arc::new(attrs), &mut m.names);
                let mut chunks = Vec::with_capacity(items.len());
                for item in items {
                    if m.live.contains_key(&item.chunk_id) {
                        continue;
                    }
                    let slot = m.reserve(item.chunk_id, &item.vector);
                    m.make_live(item.chunk_id, slot, &entry);
                    chunks.push(item.chunk_id);
                }
                m.docs.insert(
                    doc,
                    DocEntry {
                        attrs: entry.attrs,
                        chunks,
                    },
                );
            }
        }
    }

    /// Everything a snapshot holds, read at one instant: the maps, the segment and the fresh
    /// part's vectors.
    pub(crate) fn export(&self) -> (MapsSnapshot, Option<Arc<FrozenGraph>>, Vec<f32>) {
        let m = self.read();
        let maps = MapsSnapshot {
            format: segment_file::VERSION,
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
                        .map(|c| (*c, m.live.get(c).copied().unwrap_or(usize::MAX)))
                        .collect(),
                })
                .collect(),
        };
        (maps, m.frozen.clone(), m.fresh.clone())
    }
}

/// The maps as written next to the segment file.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct MapsSnapshot {
    /// The segment file's format version ([`segment_file::VERSION`]); absent (0) in the
    /// snapshots of earlier versions, which held hnsw_rs's dump instead.
    #[serde(default)]
    pub format: u32,
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
    /// The maps of a loaded snapshot, with its segment and fresh vectors.
    pub(crate) fn into_maps(self, segment: segment_file::SegmentFile) -> Result<Maps> {
        let points = segment.graph.as_ref().map_or(0, FrozenGraph::len)
            + segment.fresh.len() / self.dim.max(1);
        let mut maps = Maps {
            slot_doc: vec![None; self.slots.len()],
            slots: self.slots,
            seq: self.seq,
            frozen: segment.graph.map(Arc::new),
            fresh: segment.fresh,
            ..Maps::default()
        };
        if maps.slots.len() != points {
            return Err(Error::Dense(format!(
                "snapshot maps list {} slots but the segment file holds {points} points",
                maps.slots.len(),
            )));
        }
        for d in self.docs {
            let entry = SlotDoc::new(
                Arc::from(d.id.as_str()),
                Arc::new(DocAttrs {
                    source: d.source,
                    kind: d.kind,
                    updated_at: d.updated_at,
                    meta_terms: d.meta_terms,
                }),
                &mut maps.names,
            );
            let mut chunks = Vec::with_capacity(d.chunks.len());
            for (chunk, slot) in d.chunks {
                if maps.slots.get(slot) != Some(&chunk) {
                    return Err(Error::Dense(format!(
                        "snapshot maps chunk {chunk} to slot {slot}, which holds another chunk"
                    )));
                }
                maps.make_live(chunk, slot, &entry);
                chunks.push(chunk);
            }
            maps.docs.insert(
                entry.id,
                DocEntry {
                    attrs: entry.attrs,
                    chunks,
                },
            );
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
            .search(&unit(1000, 16), 1, 64, &Filter::default(), &[])
            .expect("searches");
        assert_eq!(&*hits[0].doc_id, "t:a:7");
        let old = idx
            .search(&unit(7, 16), 5, 64, &Filter::default(), &[])
            .expect("searches");
        assert!(
            old.iter().all(|h| h.chunk_id != 7),
            "tombstoned chunk returned"
        );
        let all = idx
            .search(&unit(8, 16), 60, 64, &Filter::default(), &[])
            .expect("searches");
        assert!(all.iter().all(|h| &*h.doc_id != "t:a:8"));
        assert_eq!(all.len(), 49);
        assert_eq!(idx.stats().tombstones, 2);
    }

    #[test]
    fn a_document_updated_with_the_same_chunks_is_filtered_by_its_new_attributes() {
        let idx = DenseIndex::new(8, HnswParams::default(), 100);
        let chunk = || {
            vec![DenseItem {
                chunk_id: 1,
                vector: unit(1, 8),
            }]
        };
        idx.apply("t:a:1", Some((attrs("old"), chunk())))
            .expect("applies");
        idx.freeze().expect("freezes");
        idx.apply("t:a:1", Some((attrs("new"), chunk())))
            .expect("applies");
        let kind = |k: &str| Filter {
            kind: vec![k.into()],
            ..Filter::default()
        };
        let found = |f: &Filter| idx.search(&unit(1, 8), 5, 64, f, &[]).expect("searches");
        assert!(found(&kind("old")).is_empty());
        assert_eq!(found(&kind("new")).len(), 1);
        assert_eq!(
            idx.stats().tombstones,
            0,
            "the kept chunk was not reinserted"
        );
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
                seq: 0,
                fresh: 1,
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
        assert!(idx.search(&[1.0], 1, 10, &Filter::default(), &[]).is_err());
    }
}
