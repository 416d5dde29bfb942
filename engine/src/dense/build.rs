//! Builds frozen segments: HNSW insertion as hnswlib makes it (a point's level drawn with
//! `mL = 1 / ln M`, a greedy descent to it, then at each level below a beam of
//! `ef_construction` and the neighbour-selection heuristic, M links per level and 2M at level 0,
//! back-links shrunk by the same heuristic), inserting on the global rayon pool with one lock
//! per point. A segment is built from scratch ([`build`]) or as an old segment plus the points
//! written since ([`extend`]); either way the result is a new immutable [`FrozenGraph`] and the
//! old one serves until it is swapped in.
//!
//! Why our own builder and not hnsw_rs's (ARCHITECTURE.md, "The dense index builds its own
//! segments"): hnsw_rs's graph had to stay resident beside the segment for later inserts
//! (4.2 KB per vector against hnswlib's 1.8 KB), and built 2.9× slower than hnswlib.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use rayon::prelude::*;

use super::HnswParams;
use super::frozen::{FrozenGraph, NONE, PREFETCH_LINES, SegmentParts, to_floats, to_halves};
use super::huge_array::HugeArray;
use super::walk::{Found, Links, beam, descend};
use crate::distance::cosine_distance as distance;
use concierge_infra::prefetch::prefetch_lines;

/// Levels above 0 a point may get (hnsw_rs's and our graphs' bound).
const MAX_LEVEL: usize = 15;

/// A point's level: the same for a slot in every build (a seeded hash, not a shared random
/// state), `floor(-ln u · mL)` with `mL = 1 / ln M`.
fn level_of(slot: u32, m: usize) -> usize {
    let mut x = u64::from(slot) ^ 0x9e37_79b9_7f4a_7c15;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    // u in (0, 1].
    let u = ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let level = (-u.ln() / (m as f64).ln()).floor();
    (level as usize).min(MAX_LEVEL)
}

/// A segment being built: the vectors of every point (old and new), each point's links per
/// level behind its own lock.
struct Builder {
    dim: usize,
    m: usize,
    ef_construction: usize,
    /// On huge pages, as the segment's: its inserts walk them as searches do.
    vectors: HugeArray<f32>,
    /// Per point: its links at levels `0..=level`.
    nodes: Vec<Mutex<Vec<Vec<u32>>>>,
    /// The entry point and the top level, once there is a point.
    entry: RwLock<Option<(u32, usize)>>,
}

impl Links for Builder {
    fn each_neighbour(&self, id: u32, level: usize, mut f: impl FnMut(u32)) {
        let Some(node) = self.nodes.get(id as usize) else {
            return;
        };
        let node = self.lock(node);
        for &nb in node.get(level).into_iter().flatten() {
            f(nb);
        }
    }
}

impl Builder {
    fn vector(&self, id: u32) -> &[f32] {
        let at = id as usize * self.dim;
        &self.vectors[at..at + self.dim]
    }

    fn len(&self) -> usize {
        self.vectors.len() / self.dim
    }

    /// Links `id` (its vector already in place) into the graph.
    fn insert(&self, id: u32) {
        let level = self
            .nodes
            .get(id as usize)
            .map_or(0, |n| self.lock(n).len().saturating_sub(1));
        let Some((entry, top)) = self.entry_point() else {
            self.become_entry(id, level);
            return;
        };
        let q = self.vector(id);
        let dist = |other: u32| distance(q, self.vector(other));
        let ahead = |nb: u32| prefetch_lines(&self.vectors, nb as usize * self.dim, PREFETCH_LINES);
        let mut current = Found {
            id: entry,
            distance: dist(entry),
        };
        if top > level {
            current = descend(self, current, top, level + 1, &ahead, &dist);
        }
        for l in (0..=level.min(top)).rev() {
            let mut found = beam::<_, _, _, fn(u32) -> bool>(
                self,
                l,
                current,
                self.len(),
                self.ef_construction,
                &ahead,
                &dist,
                None,
            );
            found.retain(|f| f.id != id);
            let Some(&nearest) = found.first() else {
                continue;
            };
            let chosen = self.select(&found, self.m);
            if let Some(node) = self.nodes.get(id as usize)
                && let Some(row) = self.lock(node).get_mut(l)
            {
                row.clone_from(&chosen);
            }
            for &nb in &chosen {
                self.link_back(nb, id, l);
            }
            current = nearest;
        }
        if level > top {
            self.become_entry(id, level);
        }
    }

    /// Makes `id` the entry point when its level is above the current top (or there is none).
    fn become_entry(&self, id: u32, level: usize) {
        let mut entry = self
            .entry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entry.is_none_or(|(_, top)| level > top) {
            *entry = Some((id, level));
        }
    }

    fn lock<'a>(&self, node: &'a Mutex<Vec<Vec<u32>>>) -> std::sync::MutexGuard<'a, Vec<Vec<u32>>> {
        node.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The heuristic (hnswlib's `getNeighborsByHeuristic2`): from `candidates`, nearest first,
    /// keep a candidate only if it is nearer to the query than to every one kept so far, up to
    /// `m` of them.
    fn select(&self, candidates: &[Found], m: usize) -> Vec<u32> {
        if candidates.len() <= m {
            return candidates.iter().map(|f| f.id).collect();
        }
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        for c in candidates {
            if kept.len() >= m {
                break;
            }
            let v = self.vector(c.id);
            if kept
                .iter()
                .all(|&k| distance(v, self.vector(k)) >= c.distance)
            {
                kept.push(c.id);
            }
        }
        kept
    }

    /// Adds `id` to `nb`'s links at `level`; a full row is shrunk by the heuristic.
    fn link_back(&self, nb: u32, id: u32, level: usize) {
        let most = if level == 0 { 2 * self.m } else { self.m };
        let Some(node) = self.nodes.get(nb as usize) else {
            return;
        };
        let mut node = self.lock(node);
        let Some(row) = node.get_mut(level) else {
            return;
        };
        if row.contains(&id) {
            return;
        }
        if row.len() < most {
            row.push(id);
            return;
        }
        let v = self.vector(nb);
        let mut candidates: Vec<Found> = row
            .iter()
            .chain(std::iter::once(&id))
            .map(|&o| Found {
                id: o,
                distance: distance(v, self.vector(o)),
            })
            .collect();
        super::walk::sort_nearest_first(&mut candidates);
        *row = self.select(&candidates, most);
    }

    /// Inserts points `from..len` on the global rayon pool (the first alone when the graph is
    /// empty, so that one point is the entry the others start from), telling `progress` of
    /// each point inserted.
    fn insert_from(&self, from: usize, progress: &(dyn Fn(usize) + Sync)) {
        let n = self.len();
        let mut from = from;
        if from < n && self.entry_point().is_none() {
            self.insert(from as u32);
            progress(1);
            from += 1;
        }
        (from..n).into_par_iter().for_each(|id| {
            self.insert(id as u32);
            progress(1);
        });
    }

    fn entry_point(&self) -> Option<(u32, usize)> {
        *self
            .entry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The finished segment, every point reachable at level 0.
    fn finish(self) -> Option<FrozenGraph> {
        let (entry, top) = self.entry_point()?;
        let width = 2 * self.m;
        let n = self.len();
        let mut rows: Vec<Vec<u32>> = Vec::with_capacity(n);
        let mut upper: Vec<HashMap<u32, Vec<u32>>> = vec![HashMap::new(); top];
        for (id, node) in self.nodes.into_iter().enumerate() {
            let mut levels = node
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .into_iter();
            rows.push(levels.next().unwrap_or_default());
            for (level, row) in upper.iter_mut().zip(levels) {
                level.insert(id as u32, row);
            }
        }
        connect(&mut rows, width, entry);
        let mut level0 = vec![NONE; n * width];
        for (id, row) in rows.into_iter().enumerate() {
            for (slot, nb) in level0[id * width..(id + 1) * width].iter_mut().zip(row) {
                *slot = nb;
            }
        }
        FrozenGraph::from_parts(SegmentParts {
            dim: self.dim,
            width,
            level0: HugeArray::from_vec(level0),
            upper,
            vectors: HugeArray::from_vec(to_halves(&self.vectors)),
            entry,
        })
        .ok()
    }

    /// An empty builder for `vectors` (`n × dim`), each point's level drawn.
    fn new(dim: usize, params: HnswParams, vectors: Vec<f32>) -> Builder {
        let n = vectors.len() / dim.max(1);
        let nodes = (0..n)
            .map(|id| Mutex::new(vec![Vec::new(); level_of(id as u32, params.m) + 1]))
            .collect();
        Builder {
            dim,
            m: params.m,
            ef_construction: params.ef_construction,
            vectors: HugeArray::from_vec(vectors),
            nodes,
            entry: RwLock::new(None),
        }
    }
}

/// Makes every point reachable from `entry` at level 0. The heuristic can leave a point no
/// in-link (in few dimensions above all), and a walk then never finds it, however wide. Each
/// point the walk cannot reach is linked from one of its own neighbours that it can (one with
/// room first; else the nearest's farthest link makes way, and the next round reconnects that
/// one), or from the entry when none can; rounds repeat until all are reached (a bounded
/// number: a leftover point is still scanned by an exact search, just not walked to).
fn connect(rows: &mut [Vec<u32>], width: usize, entry: u32) {
    let n = rows.len();
    let mut reached = vec![false; n];
    let mut queue = Vec::new();
    let mut spread = |from: u32, reached: &mut Vec<bool>, rows: &[Vec<u32>]| {
        if reached.get(from as usize).is_none_or(|r| *r) {
            return;
        }
        reached[from as usize] = true;
        queue.push(from);
        while let Some(id) = queue.pop() {
            for &nb in &rows[id as usize] {
                if let Some(r) = reached.get_mut(nb as usize)
                    && !*r
                {
                    *r = true;
                    queue.push(nb);
                }
            }
        }
    };
    spread(entry, &mut reached, rows);
    for _round in 0..8 {
        let mut left = false;
        for id in 0..n {
            if reached[id] {
                continue;
            }
            left = true;
            let ins: Vec<u32> = rows[id]
                .iter()
                .copied()
                .filter(|&nb| reached.get(nb as usize).is_some_and(|r| *r))
                .collect();
            let Some(&nearest) = ins.first() else {
                continue;
            };
            let from = ins
                .iter()
                .copied()
                .find(|&nb| rows[nb as usize].len() < width)
                .unwrap_or(nearest);
            let row = &mut rows[from as usize];
            if row.len() >= width {
                row.pop();
            }
            row.push(id as u32);
            spread(id as u32, &mut reached, rows);
        }
        if !left {
            return;
        }
        // Points none of whose own neighbours is reached: one of them from the entry.
        if let Some(id) = (0..n).find(|&id| !reached[id]) {
            let row = &mut rows[entry as usize];
            if row.len() >= width {
                row.pop();
            }
            row.push(id as u32);
            spread(id as u32, &mut reached, rows);
        }
    }
}

/// A segment of `vectors` (`n × dim`, unit norm), point `i` the `i`-th vector; `progress` is
/// told how many more points are in (from the builder's threads). `None` when there are none.
pub(crate) fn build(
    dim: usize,
    params: HnswParams,
    vectors: Vec<f32>,
    progress: &(dyn Fn(usize) + Sync),
) -> Option<FrozenGraph> {
    if dim == 0 {
        return None;
    }
    let builder = Builder::new(dim, params, vectors);
    builder.insert_from(0, progress);
    builder.finish()
}

/// A new segment holding `old`'s points, links unchanged but for the back-links to new points,
/// and then the points of `fresh` (`dim` values each) as points `old.len()..`. `old` keeps
/// serving meanwhile.
pub(crate) fn extend(
    old: &FrozenGraph,
    params: HnswParams,
    fresh: &[f32],
    progress: &(dyn Fn(usize) + Sync),
) -> Option<FrozenGraph> {
    let SegmentParts {
        dim,
        width,
        ref level0,
        ref upper,
        ref vectors,
        entry,
    } = *old.parts();
    let old_n = old.len();
    // Built in f32 (the old points' halves widen exactly, so they round back to the same).
    let mut all = to_floats(vectors);
    all.extend_from_slice(fresh);
    let mut builder = Builder::new(dim, params, all);
    for (id, node) in builder.nodes.iter_mut().take(old_n).enumerate() {
        let node = node
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut levels = vec![
            level0[id * width..(id + 1) * width]
                .iter()
                .copied()
                .take_while(|&nb| nb != NONE)
                .collect::<Vec<u32>>(),
        ];
        for level in upper {
            match level.get(&(id as u32)) {
                Some(row) => levels.push(row.clone()),
                None => break,
            }
        }
        *node = levels;
    }
    builder.entry = RwLock::new(Some((entry, upper.len())));
    builder.insert_from(old_n, progress);
    builder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_thin_out_by_m_and_stay_the_same_for_a_slot() {
        let n = 100_000u32;
        let above = |l: usize| (0..n).filter(|&s| level_of(s, 16) >= l).count() as f64;
        // P(level >= l) = M^-l.
        assert!((above(1) / f64::from(n) - 1.0 / 16.0).abs() < 0.005);
        assert!((above(2) / f64::from(n) - 1.0 / 256.0).abs() < 0.001);
        assert_eq!(level_of(1234, 16), level_of(1234, 16));
        assert!((0..n).all(|s| level_of(s, 4) <= MAX_LEVEL));
    }
}
