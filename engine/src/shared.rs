//! State shared by the engine's callers and its indexer thread: the store, the sequencer, the
//! two index slots (each may be empty while it is rebuilt), progress notifications and the
//! stop flag.

use crate::disk_space::DiskSpace;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use concierge_models::Embedder;

use crate::changelog::Sequencer;
use crate::chunking::ChunkingConfig;
use crate::config::EngineConfig;
use crate::dense::DenseIndex;
use crate::keyword::KeywordIndex;
use crate::metrics::Recorder;
use crate::store::Store;

/// Number of lock stripes ingest uses to keep writes to one document (or idempotency key)
/// in order while writes to different documents proceed concurrently (group commit).
pub(crate) const STRIPES: usize = 256;

/// What an index slot is doing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum IndexState {
    /// Serving searches.
    Ready,
    /// Being rebuilt from the store (searches use the other leg meanwhile, unless the old index
    /// still serves).
    Rebuilding(String),
}

/// How far a rebuild has come, in documents.
#[derive(Debug, Default)]
pub(crate) struct RebuildCounter {
    pub done: std::sync::atomic::AtomicU64,
    pub total: std::sync::atomic::AtomicU64,
}

/// A rebuild's progress as the status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RebuildProgress {
    /// Documents put into the new index so far.
    pub done: u64,
    /// Live documents when the rebuild started.
    pub total: u64,
}

impl RebuildCounter {
    pub fn start(&self, total: u64) {
        self.done.store(0, std::sync::atomic::Ordering::Relaxed);
        self.total
            .store(total, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn step(&self) {
        self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn read(&self) -> RebuildProgress {
        RebuildProgress {
            done: self.done.load(std::sync::atomic::Ordering::Relaxed),
            total: self.total.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

pub(crate) struct Shared {
    pub store: Store,
    pub sequencer: Sequencer,
    pub embedder: Arc<dyn Embedder>,
    /// Embeds search queries (its own pool, so a query never waits behind an indexing batch).
    pub query_embedder: Arc<dyn Embedder>,
    pub config: EngineConfig,
    pub chunking: ChunkingConfig,
    pub dense: RwLock<Option<Arc<DenseIndex>>>,
    pub keyword: RwLock<Option<Arc<KeywordIndex>>>,
    pub dense_state: Mutex<IndexState>,
    pub keyword_state: Mutex<IndexState>,
    pub stripes: Vec<Mutex<()>>,
    pub stop: AtomicBool,
    /// Signalled whenever an index includes more of the log.
    progress: (Mutex<u64>, Condvar),
    pub last_error: Mutex<Option<String>>,
    /// Acknowledged-to-searchable times and embedding throughput.
    pub metrics: Recorder,
    /// Free space on the data disk, checked before writes.
    pub disk: DiskSpace,
    /// The progress of the dense and the keyword rebuild (when one runs).
    pub rebuild_progress: [RebuildCounter; 2],
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub fn new(
        store: Store,
        sequencer: Sequencer,
        embedder: Arc<dyn Embedder>,
        query_embedder: Arc<dyn Embedder>,
        config: EngineConfig,
        chunking: ChunkingConfig,
    ) -> Self {
        let (config_dir, min_free) = (config.data_dir.clone(), config.min_free_bytes);
        Shared {
            store,
            sequencer,
            embedder,
            query_embedder,
            config,
            chunking,
            dense: RwLock::new(None),
            keyword: RwLock::new(None),
            dense_state: Mutex::new(IndexState::Ready),
            keyword_state: Mutex::new(IndexState::Ready),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            stop: AtomicBool::new(false),
            progress: (Mutex::new(0), Condvar::new()),
            last_error: Mutex::new(None),
            metrics: Recorder::new(),
            disk: DiskSpace::new(config_dir, min_free),
            rebuild_progress: Default::default(),
        }
    }

    pub fn dense(&self) -> Option<Arc<DenseIndex>> {
        self.dense
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn keyword(&self) -> Option<Arc<KeywordIndex>> {
        self.keyword
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set_dense(&self, index: Option<Arc<DenseIndex>>) {
        *self
            .dense
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = index;
        self.notify_progress();
    }

    pub fn set_keyword(&self, index: Option<Arc<KeywordIndex>>) {
        *self
            .keyword
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = index;
        self.notify_progress();
    }

    pub fn set_state(&self, dense: bool, state: IndexState) {
        let slot = if dense {
            &self.dense_state
        } else {
            &self.keyword_state
        };
        *slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = state;
    }

    /// The progress counter of the dense (`true`) or keyword rebuild.
    pub fn rebuild_counter(&self, dense: bool) -> &RebuildCounter {
        &self.rebuild_progress[usize::from(!dense)]
    }

    pub fn state(&self, dense: bool) -> IndexState {
        let slot = if dense {
            &self.dense_state
        } else {
            &self.keyword_state
        };
        slot.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub fn notify_progress(&self) {
        let (lock, cv) = &self.progress;
        if let Ok(mut n) = lock.lock() {
            *n += 1;
        }
        cv.notify_all();
    }

    /// Waits until `done()` holds, progress is notified, or the deadline passes.
    pub fn wait_progress(&self, deadline: Instant, done: &dyn Fn() -> bool) -> bool {
        let (lock, cv) = &self.progress;
        let mut guard = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if done() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stopping() {
                return done();
            }
            // Wake at least every 50 ms: a notification can slip in between `done()` and the wait.
            guard = match cv.wait_timeout(guard, left.min(Duration::from_millis(50))) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    pub fn record_error(&self, error: Option<String>) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = error;
    }
}
