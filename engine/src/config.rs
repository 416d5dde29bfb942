//! Engine settings, with the defaults a single node runs on.

use std::path::PathBuf;
use std::time::Duration;

use crate::chunking::ChunkingConfig;
use crate::dense::HnswParams;
use crate::error::InvalidInput;

/// The free space kept on the data disk by default: room for a memtable flush and a compaction
/// of this size of store, and for the index snapshots.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 256 * 1024 * 1024;

/// The largest `dense_freeze_after`: a fresh part that every search scans exactly must stay
/// small beside the segment.
pub const MAX_DENSE_FREEZE_AFTER: usize = 1_000_000;

/// How an [`Engine`](crate::Engine) is opened.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineConfig {
    /// Root of everything the engine writes: `store/` (RocksDB), `index/dense/`, `index/keyword/`.
    pub data_dir: PathBuf,
    /// HNSW parameters (used for new graphs; a loaded graph keeps its own).
    pub hnsw: HnswParams,
    /// Chunk windows; `None` sizes them from the embedder's token limit.
    pub chunking: Option<ChunkingConfig>,
    /// The keyword index commits at least this often while changes are pending (≤ 1 s keeps
    /// documents searchable within about a second).
    pub commit_interval: Duration,
    /// ...or as soon as this many documents are pending.
    pub commit_every: u64,
    /// The dense index is snapshotted this often while it has changes...
    pub dense_dump_interval: Duration,
    /// ...or after this many applied changes.
    pub dense_dump_every: u64,
    /// A background rebuild of the dense graph starts once this fraction of its points are
    /// tombstones.
    pub rebuild_tombstone_ratio: f64,
    /// The dense index's fresh part (points inserted since its frozen segment was made, which
    /// every search scans exactly) is folded into a new segment once it holds this many
    /// points...
    pub dense_freeze_after: usize,
    /// ...or this long after it was last folded, when the indexer has nothing else to do.
    pub dense_freeze_interval: Duration,
    /// Longest a search with `min_seq` waits for the indexes.
    pub min_seq_timeout: Duration,
    /// Change-log entries the indexer takes per batch.
    pub indexer_batch: usize,
    /// Attempts before a consumer moves an entry to the dead letters.
    pub max_attempts: u32,
    /// First retry delay of a failing consumer (doubles per attempt, with jitter).
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_cap: Duration,
    /// Writes are refused (`StorageFull`, the store stays sound) while the data disk has less
    /// free space than this; 0 turns the check off.
    pub min_free_bytes: u64,
}

impl EngineConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            hnsw: HnswParams::default(),
            chunking: None,
            commit_interval: Duration::from_millis(500),
            commit_every: 10_000,
            dense_dump_interval: Duration::from_secs(300),
            dense_dump_every: 50_000,
            rebuild_tombstone_ratio: 0.2,
            dense_freeze_after: 4_096,
            dense_freeze_interval: Duration::from_secs(10),
            min_seq_timeout: Duration::from_secs(10),
            indexer_batch: 256,
            max_attempts: 5,
            retry_base: Duration::from_millis(200),
            retry_cap: Duration::from_secs(30),
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), InvalidInput> {
        let bad = |reason: String| InvalidInput::Field {
            field: "engine config",
            reason,
        };
        self.hnsw.validate().map_err(bad)?;
        if !(0.01..=0.9).contains(&self.rebuild_tombstone_ratio) {
            return Err(bad(format!(
                "rebuild_tombstone_ratio must be within 0.01..=0.9, got {}",
                self.rebuild_tombstone_ratio
            )));
        }
        if !(1..=MAX_DENSE_FREEZE_AFTER).contains(&self.dense_freeze_after) {
            return Err(bad(format!(
                "dense_freeze_after must be within 1..={MAX_DENSE_FREEZE_AFTER}, got {}",
                self.dense_freeze_after
            )));
        }
        if self.indexer_batch == 0
            || self.commit_every == 0
            || self.dense_dump_every == 0
            || self.max_attempts == 0
        {
            return Err(bad(
                "indexer_batch, commit_every, dense_dump_every and max_attempts must be positive"
                    .to_owned(),
            ));
        }
        if let Some(c) = self.chunking
            && (c.max_tokens < 16 || c.overlap_tokens >= c.max_tokens / 2)
        {
            return Err(bad(format!(
                "chunk windows need at least 16 tokens and an overlap under half a window (got {c:?})"
            )));
        }
        Ok(())
    }

    pub(crate) fn store_dir(&self) -> PathBuf {
        self.data_dir.join("store")
    }

    pub(crate) fn dense_dir(&self) -> PathBuf {
        self.data_dir.join("index").join("dense")
    }

    pub(crate) fn keyword_dir(&self) -> PathBuf {
        self.data_dir.join("index").join("keyword")
    }
}
