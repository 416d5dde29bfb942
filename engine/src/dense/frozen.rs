//! The frozen segment: a copy of the built hnsw_rs graph laid out for searching, which serves
//! the dense index's searches (hnsw_rs builds the graph, this walks it). Level-0 links are one
//! flat `n × 2M` array of `u32` (padded with `NONE`), the few upper-level nodes' links a map per
//! level, the vectors contiguous by point id; its search is its own — hnsw_rs's greedy descent
//! through the upper levels, then a beam search at level 0 with an epoch-stamped visited array
//! (no allocation per search after the first on a thread). Points are hnsw_rs's data ids (our
//! slots).

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::OnceLock;

use concierge_infra::prefetch::prefetch;
use hnsw_rs::prelude::Hnsw;

use crate::distance::{UnitCosine, dot, dot_i8};

/// No neighbour (padding of a level-0 row).
const NONE: u32 = u32::MAX;

/// The frozen graph.
#[derive(Debug)]
pub(crate) struct FrozenGraph {
    dim: usize,
    /// Slots per level-0 row: 2M.
    width: usize,
    /// `n × width` neighbour ids, `NONE`-padded.
    level0: Vec<u32>,
    /// For each level above 0 (index 0 is level 1): node → its neighbours there.
    upper: Vec<HashMap<u32, Vec<u32>>>,
    /// `n × dim` values, by point id.
    vectors: Vec<f32>,
    /// Where searches start: a node on the highest level.
    entry: u32,
    /// Made on first use (by the int8 walk, which only the benchmark runs): the `n × dim` int8
    /// codes of the vectors, `c = round(x / s_d)`, and the per-dimension scales
    /// `s_d = max |x_d| / 127`.
    codes: OnceLock<(Vec<i8>, Vec<f32>)>,
}

/// Per-dimension symmetric int8 codes of `n × dim` values.
fn quantise(vectors: &[f32], dim: usize) -> (Vec<i8>, Vec<f32>) {
    let mut scales = vec![0.0f32; dim];
    for v in vectors.chunks_exact(dim) {
        for (s, x) in scales.iter_mut().zip(v) {
            *s = s.max(x.abs());
        }
    }
    for s in &mut scales {
        *s = if *s > 0.0 { *s / 127.0 } else { 1.0 };
    }
    let codes = vectors
        .chunks_exact(dim)
        .flat_map(|v| {
            v.iter()
                .zip(&scales)
                .map(|(x, s)| (x / s).round().clamp(-127.0, 127.0) as i8)
        })
        .collect();
    (codes, scales)
}

/// Cache lines of a row prefetched ahead of its distance: the walk waits on memory once the
/// vectors outgrow the caches, and the hardware prefetcher follows a row once it has seen a few
/// lines (4 lines and all 24 of a 384-d f32 row measured alike, 14 % more queries/s than none:
/// `concierge-bench ann`, 30 000 clustered vectors, AMD EPYC).
const PREFETCH_LINES: usize = 4;

/// A point found, with its cosine distance (`1 - dot`) to the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Found {
    pub id: u32,
    pub distance: f32,
}

/// Ordered by distance (then id), for the heaps.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ByDistance(f32, u32);

impl Eq for ByDistance {}

impl PartialOrd for ByDistance {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByDistance {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

thread_local! {
    /// This thread's visited marks: `marks[id] == epoch` means visited in this search.
    static VISITED: RefCell<(Vec<u32>, u32)> = const { RefCell::new((Vec::new(), 0)) };
}

impl FrozenGraph {
    /// Reads the graph out of `hnsw` (its points' data ids must be `0..n`). Call it where no
    /// insert runs (the graph's owner: the indexer thread, a rebuild); each layer is read under
    /// hnsw_rs's read lock, one layer at a time. `None` when the graph is empty or not whole.
    pub fn freeze(hnsw: &Hnsw<'static, f32, UnitCosine>, dim: usize) -> Option<FrozenGraph> {
        let points = hnsw.get_point_indexation();
        let n = points.get_nb_point();
        if n == 0 {
            return None;
        }
        let width = usize::from(hnsw.get_max_nb_connection()) * 2;
        let top = usize::from(points.get_max_level_observed());
        let mut level0 = vec![NONE; n * width];
        let mut upper: Vec<HashMap<u32, Vec<u32>>> = vec![HashMap::new(); top];
        let mut vectors = vec![0.0f32; n * dim];
        let mut entry = None;
        let mut seen = 0usize;
        for layer in 0..=top {
            for point in points.get_layer_iterator(layer) {
                let id = point.get_origin_id();
                let v = point.get_v();
                if id >= n || v.len() != dim {
                    return None;
                }
                seen += 1;
                vectors[id * dim..(id + 1) * dim].copy_from_slice(v);
                // A point's own level is the layer it sits in; it has links up to it.
                for (level, neighbours) in point.get_neighborhood_id().iter().enumerate() {
                    if level > layer {
                        break;
                    }
                    let ids = neighbours
                        .iter()
                        .filter(|nb| nb.d_id < n)
                        .filter_map(|nb| u32::try_from(nb.d_id).ok());
                    if level == 0 {
                        for (slot, nb) in level0[id * width..(id + 1) * width].iter_mut().zip(ids) {
                            *slot = nb;
                        }
                    } else {
                        upper[level - 1].insert(u32::try_from(id).ok()?, ids.collect());
                    }
                }
                if layer == top && entry.is_none() {
                    entry = u32::try_from(id).ok();
                }
            }
        }
        // Every point exactly once (an insert racing the read would break this).
        if seen != n {
            return None;
        }
        Some(FrozenGraph {
            dim,
            width,
            level0,
            upper,
            vectors,
            entry: entry?,
            codes: OnceLock::new(),
        })
    }

    /// Points in the segment (slots `0..len`).
    pub fn len(&self) -> usize {
        self.vectors.len() / self.dim
    }

    /// The vector of point `id` (`id < len`).
    pub fn vector(&self, id: u32) -> &[f32] {
        let at = id as usize * self.dim;
        &self.vectors[at..at + self.dim]
    }

    fn codes(&self) -> &(Vec<i8>, Vec<f32>) {
        self.codes.get_or_init(|| quantise(&self.vectors, self.dim))
    }

    fn distance(&self, query: &[f32], id: u32) -> f32 {
        (1.0 - dot(query, self.vector(id))).clamp(0.0, 2.0)
    }

    /// The `k` nearest points to a unit-norm `query`, best first, with a candidate list of
    /// `ef` at level 0.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<Found> {
        self.search_accepting(query, k, ef, None)
    }

    /// [`FrozenGraph::search`] returning only points `accept` takes (live ones, those a filter
    /// keeps): the others are walked through but never returned, and the walk goes on until it
    /// holds `ef` accepted points (hnswlib's filtered search).
    pub fn search_accepting(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<Found> {
        if k == 0 || query.len() != self.dim {
            return Vec::new();
        }
        let ahead = |ids: &[u32]| {
            for &id in ids {
                for line in 0..PREFETCH_LINES {
                    prefetch(&self.vectors, id as usize * self.dim + line * 16);
                }
            }
        };
        let mut out = self.walk(ef.max(k), &ahead, &|id| self.distance(query, id), accept);
        out.truncate(k);
        out
    }

    /// [`FrozenGraph::search`] walking the graph over the int8 codes (a quarter of the bytes
    /// per distance), then rescoring the `ef` candidates it found with the f32 vectors.
    pub fn search_int8(&self, query: &[f32], k: usize, ef: usize) -> Vec<Found> {
        if k == 0 || query.len() != self.dim {
            return Vec::new();
        }
        let (codes, scales) = self.codes();
        // The query in the codes' scale: q_d · s_d, so q · x ≈ Σ q'_d · c_d.
        let scaled: Vec<f32> = query.iter().zip(scales).map(|(q, s)| q * s).collect();
        let ahead = |ids: &[u32]| {
            for &id in ids {
                prefetch(codes, id as usize * self.dim);
            }
        };
        let mut out = self.walk(
            ef.max(k),
            &ahead,
            &|id| {
                let at = id as usize * self.dim;
                1.0 - dot_i8(&scaled, &codes[at..at + self.dim])
            },
            None,
        );
        for f in &mut out {
            f.distance = self.distance(query, f.id);
        }
        out.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
        out.truncate(k);
        out
    }

    /// The graph walk with distance `dist` (`ahead` prefetches what `dist` will read of some
    /// points): hnsw_rs's descent, then the level-0 beam; the `ef` best points `accept` takes
    /// (all when `None`), nearest first.
    fn walk(
        &self,
        ef: usize,
        ahead: &dyn Fn(&[u32]),
        dist: &dyn Fn(u32) -> f32,
        accept: Option<&dyn Fn(u32) -> bool>,
    ) -> Vec<Found> {
        let accepted = |id: u32| accept.is_none_or(|f| f(id));
        let n = self.vectors.len() / self.dim;
        // Descent as hnsw_rs makes it (so both walk the same graph the same way): at each upper
        // level, one pass over the current node's neighbours, moving to the closest if closer.
        let mut current = self.entry;
        let mut best = dist(current);
        for level in self.upper.iter().rev() {
            let mut next = current;
            for &nb in level.get(&current).into_iter().flatten() {
                let d = dist(nb);
                if d < best {
                    best = d;
                    next = nb;
                }
            }
            current = next;
        }
        VISITED.with(|cell| {
            let mut guard = cell.borrow_mut();
            let (marks, epoch) = &mut *guard;
            if marks.len() < n {
                marks.resize(n, 0);
            }
            *epoch = epoch.wrapping_add(1);
            if *epoch == 0 {
                marks.fill(0);
                *epoch = 1;
            }
            let epoch = *epoch;
            // candidates: nearest first; results: the ef best so far, farthest on top.
            let mut candidates = BinaryHeap::with_capacity(ef * 2);
            let mut results = BinaryHeap::with_capacity(ef + 1);
            let mut fresh: Vec<u32> = Vec::with_capacity(self.width);
            marks[current as usize] = epoch;
            candidates.push(Reverse(ByDistance(best, current)));
            if accepted(current) {
                results.push(ByDistance(best, current));
            }
            while let Some(Reverse(ByDistance(d, id))) = candidates.pop() {
                // The nearest candidate is farther than the farthest result: done (when some
                // points are refused, only once `ef` are accepted).
                if (accept.is_none() || results.len() >= ef)
                    && results.peek().is_some_and(|w| d > w.0)
                {
                    break;
                }
                let row = &self.level0[id as usize * self.width..(id as usize + 1) * self.width];
                // The unvisited neighbours first, then their distances in one run (the
                // vectors' loads overlap instead of waiting on the marks in between).
                fresh.clear();
                for &nb in row.iter().take_while(|&&nb| nb != NONE) {
                    let Some(mark) = marks.get_mut(nb as usize) else {
                        continue;
                    };
                    if *mark != epoch {
                        *mark = epoch;
                        fresh.push(nb);
                    }
                }
                ahead(&fresh);
                for &nb in &fresh {
                    let dn = dist(nb);
                    if results.len() < ef || results.peek().is_some_and(|w| dn < w.0) {
                        candidates.push(Reverse(ByDistance(dn, nb)));
                        if accepted(nb) {
                            results.push(ByDistance(dn, nb));
                            if results.len() > ef {
                                results.pop();
                            }
                        }
                    }
                }
            }
            let mut out: Vec<Found> = results
                .into_iter()
                .map(|ByDistance(distance, id)| Found { id, distance })
                .collect();
            out.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
            out
        })
    }

    /// Bytes the frozen graph holds (links, vectors, and their codes once made).
    pub fn bytes(&self) -> usize {
        self.level0.len() * 4
            + self.vectors.len() * 4
            + self.codes.get().map_or(0, |(c, s)| c.len() + s.len() * 4)
            + self
                .upper
                .iter()
                .flat_map(HashMap::values)
                .map(|v| v.len() * 4 + 8)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn normalised(mut v: Vec<f32>) -> Vec<f32> {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }

    /// `n` unit vectors: uniform, or around 8 centres (clustered).
    fn data(n: usize, dim: usize, clustered: bool, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let centres: Vec<Vec<f32>> = (0..8)
            .map(|_| (0..dim).map(|_| rng.f32() * 2.0 - 1.0).collect())
            .collect();
        (0..n)
            .map(|i| {
                let noise = (0..dim).map(|_| rng.f32() * 2.0 - 1.0);
                let v: Vec<f32> = if clustered {
                    centres[i % 8]
                        .iter()
                        .zip(noise)
                        .map(|(c, e)| c + 0.15 * e)
                        .collect()
                } else {
                    noise.collect()
                };
                normalised(v)
            })
            .collect()
    }

    /// hnsw_rs's graph of `points` (M 16, ef_construction 200), built in parallel.
    fn graph(points: &[Vec<f32>]) -> Hnsw<'static, f32, UnitCosine> {
        let hnsw = Hnsw::<f32, UnitCosine>::new(16, points.len(), 16, 200, UnitCosine);
        let refs: Vec<(&Vec<f32>, usize)> = points.iter().zip(0..).collect();
        hnsw.parallel_insert(&refs);
        hnsw
    }

    fn exact(points: &[Vec<f32>], q: &[f32], k: usize) -> Vec<u32> {
        let mut all: Vec<(f32, u32)> = points
            .iter()
            .enumerate()
            .map(|(i, p)| (1.0 - dot(q, p), i as u32))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        all.into_iter().take(k).map(|(_, i)| i).collect()
    }

    fn recall(found: &[u32], truth: &[u32]) -> f64 {
        found.iter().filter(|f| truth.contains(f)).count() as f64 / truth.len() as f64
    }

    /// Recall@10 of hnsw_rs and of its frozen copy at each ef, over `queries`.
    fn recalls(n: usize, dim: usize, clustered: bool, seed: u64) -> Vec<(usize, f64, f64)> {
        let points = data(n, dim, clustered, seed);
        let queries = data(60, dim, clustered, seed ^ 0x5eed);
        let hnsw = graph(&points);
        let frozen = FrozenGraph::freeze(&hnsw, dim).expect("freezes");
        [10, 20, 40, 80, 160]
            .into_iter()
            .map(|ef| {
                let (mut theirs, mut ours) = (0.0, 0.0);
                for q in &queries {
                    let truth = exact(&points, q, 10);
                    let h: Vec<u32> = hnsw
                        .search(q, 10, ef)
                        .iter()
                        .map(|nb| nb.d_id as u32)
                        .collect();
                    let f: Vec<u32> = frozen.search(q, 10, ef).iter().map(|f| f.id).collect();
                    theirs += recall(&h, &truth);
                    ours += recall(&f, &truth);
                }
                let m = queries.len() as f64;
                (ef, theirs / m, ours / m)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4))]

        #[test]
        fn the_frozen_graph_finds_what_the_hnsw_rs_graph_finds_at_every_ef(
            seed in 0u64..1_000_000,
            clustered in any::<bool>(),
        ) {
            for (ef, theirs, ours) in recalls(2_000, 24, clustered, seed) {
                prop_assert!(
                    ours >= theirs - 0.003,
                    "ef {ef}: frozen recall {ours:.4} < hnsw_rs {theirs:.4} - 0.003"
                );
            }
        }
    }

    #[test]
    fn walking_over_int8_codes_and_rescoring_loses_little_recall() {
        for clustered in [false, true] {
            let points = data(2_000, 24, clustered, 11);
            let queries = data(60, 24, clustered, 12);
            let hnsw = graph(&points);
            let frozen = FrozenGraph::freeze(&hnsw, 24).expect("freezes");
            for ef in [20, 40, 80, 160] {
                let (mut full, mut int8) = (0.0, 0.0);
                for q in &queries {
                    let truth = exact(&points, q, 10);
                    let f: Vec<u32> = frozen.search(q, 10, ef).iter().map(|f| f.id).collect();
                    let c: Vec<u32> = frozen.search_int8(q, 10, ef).iter().map(|f| f.id).collect();
                    full += recall(&f, &truth);
                    int8 += recall(&c, &truth);
                }
                let m = queries.len() as f64;
                assert!(
                    int8 / m >= full / m - 0.02,
                    "ef {ef}, clustered {clustered}: int8 {:.4} against f32 {:.4}",
                    int8 / m,
                    full / m
                );
            }
        }
    }

    #[test]
    fn a_walk_returns_only_accepted_points_and_at_a_large_ef_the_nearest_of_them() {
        let points = data(1_000, 16, true, 21);
        let hnsw = graph(&points);
        let frozen = FrozenGraph::freeze(&hnsw, 16).expect("freezes");
        // One point in ten: the walk goes through the others to reach them.
        let accept = |id: u32| id % 10 == 3;
        let kept: Vec<Vec<f32>> = points.iter().skip(3).step_by(10).cloned().collect();
        for q in data(20, 16, true, 22) {
            let found = frozen.search_accepting(&q, 10, 1_000, Some(&accept));
            assert!(found.iter().all(|f| accept(f.id)));
            let want: Vec<u32> = exact(&kept, &q, 10).iter().map(|i| i * 10 + 3).collect();
            let got: Vec<u32> = found.iter().map(|f| f.id).collect();
            assert_eq!(got, want);
            // A small list still holds only accepted points, and as many as it asks for.
            let few = frozen.search_accepting(&q, 5, 5, Some(&accept));
            assert_eq!(few.len(), 5);
            assert!(few.iter().all(|f| accept(f.id)));
        }
        // Nothing accepted: nothing found, after walking the whole graph.
        assert!(
            frozen
                .search_accepting(&points[0], 5, 50, Some(&|_| false))
                .is_empty()
        );
    }

    #[test]
    fn at_a_large_ef_the_frozen_graph_is_exact() {
        let points = data(500, 16, true, 7);
        let hnsw = graph(&points);
        let frozen = FrozenGraph::freeze(&hnsw, 16).expect("freezes");
        for q in data(20, 16, true, 8) {
            let found: Vec<u32> = frozen.search(&q, 10, 500).iter().map(|f| f.id).collect();
            assert_eq!(found, exact(&points, &q, 10));
        }
        assert!(frozen.bytes() >= 500 * 16 * 4);
    }
}
