//! The HNSW graph walk, one for both sides of a segment: the builder's searches while it inserts
//! ([`super::build`]) and the served searches of a finished segment ([`super::frozen`]). A
//! greedy descent through the upper levels, then a beam at one level with an epoch-stamped
//! visited array reused per thread (no allocation per search after a thread's first), the
//! unvisited neighbours' distances taken in one run, each vector prefetched while the one
//! before it is scored, and the next candidate's row while the heap settles.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// A graph the walk can read: each point's neighbours at a level.
pub(crate) trait Links {
    /// Calls `f` with every neighbour of `id` at `level` (none when `id` is not on `level`).
    fn each_neighbour(&self, id: u32, level: usize, f: impl FnMut(u32));

    /// A hint that `id`'s neighbours at `level` are read next (a prefetch; nothing by default).
    fn read_soon(&self, _id: u32, _level: usize) {}
}

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
    /// This thread's visited marks: `marks[id] == epoch` means visited in this search. Two
    /// bytes a point, as hnswlib's, so 100 000 points' marks fit a core's L2 cache; the marks
    /// are cleared once every 65 535 searches.
    static VISITED: RefCell<(Vec<u16>, u16)> = const { RefCell::new((Vec::new(), 0)) };
}

/// Greedy descent from `start` through the levels `top` down to `down_to` (inclusive): at each
/// level, move to the nearest neighbour while one is nearer (hnswlib's descent). Each
/// neighbour's vector is prefetched (`ahead`) while the one before it is scored, as in the
/// beam: the upper levels' few points are spread over the whole vector array. Returns the
/// point reached, the beam's start on the level below.
pub(crate) fn descend<L, A, D>(
    links: &L,
    start: Found,
    top: usize,
    down_to: usize,
    ahead: &A,
    dist: &D,
) -> Found
where
    L: Links + ?Sized,
    A: Fn(u32),
    D: Fn(u32) -> f32,
{
    let mut current = start;
    let mut row: Vec<u32> = Vec::new();
    for level in (down_to..=top).rev() {
        loop {
            let mut next = current;
            row.clear();
            links.each_neighbour(current.id, level, |nb| row.push(nb));
            if let Some(&first) = row.first() {
                ahead(first);
            }
            for (i, &nb) in row.iter().enumerate() {
                if let Some(&following) = row.get(i + 1) {
                    ahead(following);
                }
                let d = dist(nb);
                if d < next.distance {
                    next = Found {
                        id: nb,
                        distance: d,
                    };
                }
            }
            if next.id == current.id {
                break;
            }
            current = next;
        }
    }
    current
}

/// The beam search at `level` from `start` over points `0..n`: the `ef` nearest points that
/// `accept` takes (all when `None`), nearest first. Refused points are walked through but never
/// returned, and the walk goes on until `ef` are accepted (hnswlib's filtered search). `ahead`
/// prefetches what `dist` will read of a point. Generic
/// over the closures, so each walk is compiled with its distance and test inlined.
#[allow(clippy::too_many_arguments)]
pub(crate) fn beam<L, A, D, P>(
    links: &L,
    level: usize,
    start: Found,
    n: usize,
    ef: usize,
    ahead: &A,
    dist: &D,
    accept: Option<&P>,
) -> Vec<Found>
where
    L: Links + ?Sized,
    A: Fn(u32),
    D: Fn(u32) -> f32,
    P: Fn(u32) -> bool + ?Sized,
{
    let accepted = |id: u32| accept.is_none_or(|f| f(id));
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
        let mut fresh: Vec<u32> = Vec::with_capacity(64);
        if let Some(mark) = marks.get_mut(start.id as usize) {
            *mark = epoch;
        }
        candidates.push(Reverse(ByDistance(start.distance, start.id)));
        if accepted(start.id) {
            results.push(ByDistance(start.distance, start.id));
        }
        while let Some(Reverse(ByDistance(d, id))) = candidates.pop() {
            // The nearest candidate is farther than the farthest result: done (when some
            // points are refused, only once `ef` are accepted).
            if (accept.is_none() || results.len() >= ef) && results.peek().is_some_and(|w| d > w.0)
            {
                break;
            }
            // The unvisited neighbours first, then their distances in one run (the vectors'
            // loads overlap instead of waiting on the marks in between).
            fresh.clear();
            links.each_neighbour(id, level, |nb| {
                if let Some(mark) = marks.get_mut(nb as usize)
                    && *mark != epoch
                {
                    *mark = epoch;
                    fresh.push(nb);
                }
            });
            // Each point's vector is fetched while the one before it is scored: one ahead
            // (hnswlib's distance) measured best — 10 % more queries/s at ef 48 and 96 than all
            // of them fetched at once, which fills the core's miss buffers and stalls
            // (`concierge-bench ann`, WordNet, AMD EPYC; two and four ahead were no better).
            if let Some(&first) = fresh.first() {
                ahead(first);
            }
            for (i, &nb) in fresh.iter().enumerate() {
                if let Some(&next) = fresh.get(i + 1) {
                    ahead(next);
                }
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
            // The next candidate's row, while the heap settles.
            if let Some(Reverse(ByDistance(_, next))) = candidates.peek() {
                links.read_soon(*next, level);
            }
        }
        let mut out: Vec<Found> = results
            .into_iter()
            .map(|ByDistance(distance, id)| Found { id, distance })
            .collect();
        sort_nearest_first(&mut out);
        out
    })
}

/// Nearest first, ties by id.
pub(crate) fn sort_nearest_first(found: &mut [Found]) {
    found.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
}
