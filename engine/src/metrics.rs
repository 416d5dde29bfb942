//! The engine's own measurements for operators: how long an acknowledged write takes to become
//! searchable in both indexes, and how fast the indexer embeds. Kept in memory (they start
//! afresh with the process; writes replayed from the log after a restart are not timed); the
//! daemon exports them as Prometheus series. Not for: request metrics (the daemon's).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bucket bounds (seconds) of the acknowledged-to-searchable histogram: from a quiet indexer
/// (a keyword commit interval) to a burst backlog of minutes.
pub const SEARCHABLE_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Most acknowledged writes waiting to be timed; past it the oldest are dropped uncounted
/// (counted in [`EngineMetrics::untimed_writes`]), so a stalled indexer cannot grow memory.
const MAX_PENDING: usize = 100_000;

/// A latency histogram with fixed bounds, in the shape Prometheus expects (cumulative counts).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    cumulative: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram over these (ascending) upper bounds, in seconds.
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            cumulative: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    /// Counts one observation.
    pub fn observe(&mut self, seconds: f64) {
        for (bound, n) in self.bounds.iter().zip(&mut self.cumulative) {
            if seconds <= *bound {
                *n += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    /// Each bound with the number of observations at or below it.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.bounds
            .iter()
            .copied()
            .zip(self.cumulative.iter().copied())
    }

    /// Sum of all observations, in seconds.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// What [`crate::Engine::metrics`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineMetrics {
    /// Per acknowledged write (one ingest call): from its durable write to the moment both
    /// indexes serve it (dense applied, keyword committed).
    pub searchable: Histogram,
    /// Acknowledged writes that were not timed (dropped while too many waited).
    pub untimed_writes: u64,
    /// Chunks the indexer embedded (stored vectors reused by replays and rebuilds not counted).
    pub embedded_chunks: u64,
    /// Embedding calls the indexer made.
    pub embedding_batches: u64,
    /// Seconds the indexer spent embedding.
    pub embedding_seconds: f64,
}

#[derive(Debug)]
struct State {
    /// Last sequence of each acknowledged write not yet searchable -> when it was durable.
    pending: BTreeMap<u64, Instant>,
    metrics: EngineMetrics,
}

/// Collects the measurements; shared by ingest and the indexer.
#[derive(Debug)]
pub(crate) struct Recorder {
    state: Mutex<State>,
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            state: Mutex::new(State {
                pending: BTreeMap::new(),
                metrics: EngineMetrics {
                    searchable: Histogram::new(SEARCHABLE_BUCKETS),
                    untimed_writes: 0,
                    embedded_chunks: 0,
                    embedding_batches: 0,
                    embedding_seconds: 0.0,
                },
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A write whose last change-log entry is `last_seq` was durably written at `at`.
    pub fn acknowledged(&self, last_seq: u64, at: Instant) {
        let mut s = self.lock();
        s.pending.insert(last_seq, at);
        if s.pending.len() > MAX_PENDING {
            s.pending.pop_first();
            s.metrics.untimed_writes += 1;
        }
    }

    /// Both indexes now serve every entry up to `seq`.
    pub fn searchable_through(&self, seq: u64, now: Instant) {
        let mut s = self.lock();
        while let Some(entry) = s.pending.first_entry() {
            if *entry.key() > seq {
                break;
            }
            let at = entry.remove();
            let waited = now.saturating_duration_since(at);
            s.metrics.searchable.observe(waited.as_secs_f64());
        }
    }

    /// The indexer embedded `chunks` chunks in one call that took `took`.
    pub fn embedded(&self, chunks: usize, took: Duration) {
        let mut s = self.lock();
        s.metrics.embedded_chunks += chunks as u64;
        s.metrics.embedding_batches += 1;
        s.metrics.embedding_seconds += took.as_secs_f64();
    }

    pub fn snapshot(&self) -> EngineMetrics {
        self.lock().metrics.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_cumulatively_per_bound() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(7.0);
        assert_eq!(h.buckets().collect::<Vec<_>>(), [(0.1, 1), (1.0, 2)]);
        assert_eq!(h.count(), 3);
        assert!((h.sum() - 7.55).abs() < 1e-9);
    }

    #[test]
    fn writes_are_timed_once_when_both_indexes_serve_them() {
        let r = Recorder::new();
        let t0 = Instant::now();
        r.acknowledged(3, t0);
        r.acknowledged(5, t0);
        r.searchable_through(4, t0 + Duration::from_millis(200));
        let m = r.snapshot();
        assert_eq!(m.searchable.count(), 1);
        assert!((m.searchable.sum() - 0.2).abs() < 1e-6);
        r.searchable_through(9, t0 + Duration::from_secs(2));
        r.searchable_through(9, t0 + Duration::from_secs(3));
        let m = r.snapshot();
        assert_eq!(m.searchable.count(), 2, "each write is timed once");
        assert!((m.searchable.sum() - 2.2).abs() < 1e-6);
    }

    #[test]
    fn a_stalled_indexer_cannot_grow_the_pending_set_without_bound() {
        let r = Recorder::new();
        let t0 = Instant::now();
        for seq in 1..=(MAX_PENDING as u64 + 10) {
            r.acknowledged(seq, t0);
        }
        assert_eq!(r.lock().pending.len(), MAX_PENDING);
        assert_eq!(r.snapshot().untimed_writes, 10);
    }

    #[test]
    fn embedding_throughput_adds_up() {
        let r = Recorder::new();
        r.embedded(16, Duration::from_millis(500));
        r.embedded(4, Duration::from_millis(100));
        let m = r.snapshot();
        assert_eq!((m.embedded_chunks, m.embedding_batches), (20, 2));
        assert!((m.embedding_seconds - 0.6).abs() < 1e-9);
    }
}
