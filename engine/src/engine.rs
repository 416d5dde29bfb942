//! [`Engine`]: opens the store and the indexes (loading snapshots, scheduling rebuilds), runs
//! the indexer thread, and is the synchronous API the daemon and the tools call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;

use concierge_models::{Embedder, Generator};
use serde::Serialize;

use crate::answer::{self, Answer, AnswerEvent, AskRequest};
use crate::changelog::{self, DeadLetter, Sequencer};
use crate::chunking::ChunkingConfig;
use crate::config::EngineConfig;
use crate::dense::{DenseIndex, DenseStats};
use crate::dense_snapshot;
use crate::document::Document;
use crate::error::{Error, Result};
use crate::ingest::{self, IngestReceipt, IngestRequest, Updated};
use crate::keyword::KeywordIndex;
use crate::metrics::EngineMetrics;
use crate::search::{self, SearchRequest, SearchResponse};
use crate::shared::{IndexState, Shared};
use crate::store::{ModelStamp, Store, cf, meta_key};
use crate::update_workers::{CheckpointInfo, INDEXER, Indexer, Request};
use crate::update_workers::{SyncHealth, SyncSink, SyncStatus};

/// The retrieval engine of one node.
pub struct Engine {
    shared: Arc<Shared>,
    requests: Sender<Request>,
    indexer: Option<JoinHandle<()>>,
    /// The sync consumers started with [`Engine::start_sync`].
    syncs: std::sync::Mutex<Vec<SyncThread>>,
    /// The last document counts and when they were made.
    counts: std::sync::Mutex<Option<(std::time::Instant, crate::DocumentCounts)>>,
}

struct SyncThread {
    name: &'static str,
    health: Arc<SyncHealth>,
    handle: JoinHandle<()>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("data_dir", &self.shared.config.data_dir)
            .finish_non_exhaustive()
    }
}

/// A consumer's position in the change log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsumerLag {
    /// The consumer.
    pub name: String,
    /// Its durable cursor.
    pub cursor: u64,
    /// Entries it has not yet made durable.
    pub lag: u64,
    /// How long the oldest of those has waited, seconds (0 when caught up; entries written
    /// before change-log entries carried their time count from the oldest one that does).
    pub lag_seconds: f64,
}

/// The state of one index.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexStatus {
    /// Ready or rebuilding.
    pub state: IndexState,
    /// Change-log sequence searches see.
    pub seq: Option<u64>,
    /// Chunks searchable.
    pub chunks: Option<u64>,
    /// Dense only: points that are tombstones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tombstones: Option<u64>,
    /// Dense only: points written since its frozen segment was made (scanned exactly until
    /// they are folded into the next one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fresh: Option<u64>,
    /// While rebuilding: documents done of the total.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebuild: Option<crate::shared::RebuildProgress>,
}

/// What an operator looks at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineStatus {
    /// Every change up to here is durable.
    pub durable_seq: u64,
    /// Dense index.
    pub dense: IndexStatus,
    /// Keyword index.
    pub keyword: IndexStatus,
    /// Change-log consumers.
    pub consumers: Vec<ConsumerLag>,
    /// Entries given up on.
    pub dead_letters: usize,
    /// Why writes are refused, if they are.
    pub poisoned: Option<String>,
    /// The indexer's last error, cleared once it makes progress again.
    pub last_error: Option<String>,
    /// The sync consumers (Firestore, Qdrant): health, counters, last error.
    pub sync: Vec<SyncStatus>,
}

impl Engine {
    /// Opens (or creates) the engine in `config.data_dir`. Indexes that are missing, corrupt or
    /// older than the change log are rebuilt in the background from stored vectors; searches
    /// use the other leg meanwhile. Open never waits for a rebuild.
    pub fn open(config: EngineConfig, embedder: Arc<dyn Embedder>) -> Result<Engine> {
        let query_embedder = embedder.clone();
        Engine::open_with_query_embedder(config, embedder, query_embedder)
    }

    /// [`Engine::open`] with a second embedder for search queries (the same model on its own
    /// threads, e.g. `BertEmbedder::with_own_pool`), so a query never waits behind an indexing
    /// batch on the indexer's embedder.
    pub fn open_with_query_embedder(
        config: EngineConfig,
        embedder: Arc<dyn Embedder>,
        query_embedder: Arc<dyn Embedder>,
    ) -> Result<Engine> {
        config.validate()?;
        if query_embedder.model_id() != embedder.model_id()
            || query_embedder.dim() != embedder.dim()
        {
            return Err(Error::ModelMismatch {
                stored: embedder.model_id().to_owned(),
                stored_dim: embedder.dim(),
                configured: query_embedder.model_id().to_owned(),
                configured_dim: query_embedder.dim(),
            });
        }
        let stamp = ModelStamp {
            id: embedder.model_id().to_owned(),
            dim: embedder.dim(),
        };
        let store = Store::open(&config.store_dir(), &stamp)?;
        let last = changelog::last_seq(&store)?;
        let trimmed = store
            .get_u64(cf::META, meta_key::TRIMMED_THROUGH)?
            .unwrap_or(0);
        let chunking = config
            .chunking
            .unwrap_or_else(|| ChunkingConfig::for_max_tokens(embedder.max_tokens()));
        let shared = Arc::new(Shared::new(
            store,
            Sequencer::new(last),
            embedder,
            query_embedder,
            config,
            chunking,
        ));
        let (tx, rx) = channel();

        let mut dense_dumped = 0;
        let mut dense_rebuild = None;
        match dense_snapshot::load(&shared.config.dense_dir()) {
            Ok(Some(index)) if index.seq() >= trimmed => {
                dense_dumped = index.seq();
                shared.set_dense(Some(Arc::new(index)));
            }
            Ok(Some(index)) => {
                dense_rebuild = Some(format!(
                    "the snapshot (seq {}) is older than the change log (trimmed through {trimmed})",
                    index.seq()
                ))
            }
            Ok(None) if trimmed == 0 => shared.set_dense(Some(Arc::new(DenseIndex::new(
                shared.embedder.dim(),
                shared.config.hnsw,
                1024,
            )))),
            Ok(None) => dense_rebuild = Some("no snapshot".to_owned()),
            Err(e) => {
                tracing::warn!(error = %e, "the dense snapshot cannot be loaded");
                dense_rebuild = Some(format!("the snapshot cannot be loaded: {e}"));
            }
        }
        let mut keyword_rebuild = None;
        match KeywordIndex::open(&shared.config.keyword_dir()) {
            Ok(index) if index.committed_seq() >= trimmed => {
                shared.set_keyword(Some(Arc::new(index)))
            }
            Ok(index) => {
                keyword_rebuild = Some(format!(
                    "the index (seq {}) is older than the change log (trimmed through {trimmed})",
                    index.committed_seq()
                ))
            }
            Err(e) => {
                tracing::warn!(error = %e, "the keyword index cannot be opened");
                keyword_rebuild = Some(format!("the index cannot be opened: {e}"));
            }
        }

        let mut indexer = Indexer::new(shared.clone(), rx, dense_dumped)?;
        if let Some(reason) = dense_rebuild {
            indexer.rebuild_dense(&reason);
        }
        if let Some(reason) = keyword_rebuild {
            indexer.rebuild_keyword(&reason);
        }
        let handle = std::thread::Builder::new()
            .name("concierge-indexer".to_owned())
            .spawn(move || indexer.run())
            .map_err(|e| Error::io("starting the indexer thread", e))?;
        Ok(Engine {
            shared,
            requests: tx,
            indexer: Some(handle),
            syncs: std::sync::Mutex::new(Vec::new()),
            counts: std::sync::Mutex::new(None),
        })
    }

    /// Starts a sync consumer: a thread that copies every change to `sink` from its own
    /// durable cursor (see [`SyncSink`]). Ingest never waits for it.
    pub fn start_sync(&self, sink: Box<dyn SyncSink>) -> Result<()> {
        let name = sink.name();
        let health = Arc::new(SyncHealth::default());
        let shared = self.shared.clone();
        let worker_health = health.clone();
        let handle = std::thread::Builder::new()
            .name(format!("concierge-sync-{name}"))
            .spawn(move || crate::update_workers::sync::run(shared, sink, worker_health))
            .map_err(|e| Error::io("starting a sync thread", e))?;
        if let Ok(mut syncs) = self.syncs.lock() {
            syncs.push(SyncThread {
                name,
                health,
                handle,
            });
        }
        Ok(())
    }

    /// Writes the request's changes durably (one synced batch) and returns once they are safe.
    pub fn ingest(&self, request: IngestRequest) -> Result<IngestReceipt> {
        ingest::ingest(&self.shared, request)
    }

    /// Reads, merges and writes one document in one step: under the document's (and the
    /// idempotency key's) stripe lock, `merge` gets the stored document (`None` if unknown or
    /// deleted) and returns the document to upsert, `None` to write nothing, or its own error,
    /// which comes back as the inner `Err` with nothing written. A key seen before returns the
    /// first call's receipt (`duplicate`) without calling `merge`. This is how webhooks merge
    /// out-of-order events without a lock of their own:
    ///
    /// ```no_run
    /// # fn demo(engine: &concierge_engine::Engine) -> concierge_engine::Result<()> {
    /// use concierge_engine::{Document, Updated};
    /// let outcome = engine.update("aircall:call:1", Some("call.ended:1:1700".into()), |stored| {
    ///     let text = stored.map_or("", |d| d.text.as_str()).to_owned() + " ended";
    ///     Document::new("aircall:call:1", "Call", text, 1_700_000).map(Some)
    /// })?;
    /// if let Ok(Updated::Written(receipt)) = outcome {
    ///     println!("durable at seq {}", receipt.seq);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn update<E>(
        &self,
        id: &str,
        idempotency_key: Option<String>,
        merge: impl FnOnce(Option<&Document>) -> std::result::Result<Option<Document>, E>,
    ) -> Result<std::result::Result<Updated, E>> {
        ingest::update(&self.shared, id, idempotency_key, merge)
    }

    /// The stored document (`None` if unknown or deleted).
    pub fn get(&self, id: &str) -> Result<Option<Document>> {
        crate::document::DocumentId::parse(id)?;
        Ok(self
            .shared
            .store
            .get_doc(id)?
            .filter(|s| !s.deleted)
            .map(|s| s.doc))
    }

    /// Keeps a delivery the engine does not index (an unknown webhook event), durably, so nothing
    /// a source sent is lost. Keyed by source and delivery key; a redelivery overwrites itself.
    pub fn record_raw_event(&self, source: &str, key: &str, body: &[u8]) -> Result<()> {
        if source.is_empty() || key.is_empty() || source.len() + key.len() > 1_024 {
            return Err(crate::error::InvalidInput::Field {
                field: "raw event",
                reason: "source and key must be 1 to 1024 bytes together".to_owned(),
            }
            .into());
        }
        let mut batch = rocksdb::WriteBatch::default();
        batch.put_cf(
            &self.shared.store.cf(cf::EVENTS),
            format!("raw\0{source}\0{key}").as_bytes(),
            body,
        );
        self.shared.store.write(batch)
    }

    /// Raw events kept for `source` (key and body), oldest key first.
    pub fn raw_events(&self, source: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let prefix = format!("raw\0{source}\0");
        let mut out = Vec::new();
        let iter = self.shared.store.db().iterator_cf(
            &self.shared.store.cf(cf::EVENTS),
            rocksdb::IteratorMode::From(prefix.as_bytes(), rocksdb::Direction::Forward),
        );
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            out.push((
                String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                v.to_vec(),
            ));
        }
        Ok(out)
    }

    /// Dense, keyword or hybrid search.
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResponse> {
        search::search(&self.shared, request)
    }

    /// Every change up to this sequence is durable.
    pub fn durable_seq(&self) -> u64 {
        self.shared.sequencer.durable()
    }

    /// Answers a question from the stored documents with `generator` (and `fallback` if it
    /// fails), streaming checked text to `on_event`. See [`Answer`].
    pub fn ask(
        &self,
        request: &AskRequest,
        generator: &dyn Generator,
        fallback: Option<&dyn Generator>,
        on_event: &mut dyn FnMut(AnswerEvent<'_>),
    ) -> Result<Answer> {
        answer::ask(&self.shared, request, generator, fallback, on_event)
    }

    /// Acknowledged-to-searchable times and the indexer's embedding throughput, since open.
    pub fn metrics(&self) -> EngineMetrics {
        self.shared.metrics.snapshot()
    }

    /// Lag, index states and dead letters.
    pub fn status(&self) -> Result<EngineStatus> {
        let durable = self.durable_seq();
        let dense = match self.shared.dense() {
            Some(d) => {
                let DenseStats {
                    live,
                    tombstones,
                    seq,
                    fresh,
                } = d.stats();
                IndexStatus {
                    state: self.shared.state(true),
                    seq: Some(seq),
                    chunks: Some(live as u64),
                    tombstones: Some(tombstones as u64),
                    fresh: Some(fresh as u64),
                    rebuild: self.rebuild_progress(true),
                }
            }
            None => IndexStatus {
                state: self.shared.state(true),
                seq: None,
                chunks: None,
                tombstones: None,
                fresh: None,
                rebuild: self.rebuild_progress(true),
            },
        };
        let keyword = match self.shared.keyword() {
            Some(k) => IndexStatus {
                state: self.shared.state(false),
                seq: Some(k.committed_seq()),
                chunks: Some(k.num_chunks()),
                tombstones: None,
                fresh: None,
                rebuild: self.rebuild_progress(false),
            },
            None => IndexStatus {
                state: self.shared.state(false),
                seq: None,
                chunks: None,
                tombstones: None,
                fresh: None,
                rebuild: self.rebuild_progress(false),
            },
        };
        let now_ms = concierge_infra::utc::now_ms();
        let consumers = changelog::cursors(&self.shared.store)?
            .into_iter()
            .map(|(name, cursor)| {
                let lag_seconds = changelog::waiting_since_ms(&self.shared.store, cursor, durable)?
                    .map_or(0.0, |at| (now_ms - at).max(0) as f64 / 1e3);
                Ok(ConsumerLag {
                    lag: durable.saturating_sub(cursor),
                    lag_seconds,
                    name,
                    cursor,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let poisoned = match self.shared.store.check_poison() {
            Err(Error::Poisoned { cause }) => Some(cause),
            Ok(()) | Err(_) => None,
        };
        let last_error = self.shared.last_error.lock().ok().and_then(|e| e.clone());
        let sync = self
            .syncs
            .lock()
            .map(|s| s.iter().map(|t| t.health.status(t.name)).collect())
            .unwrap_or_default();
        Ok(EngineStatus {
            durable_seq: durable,
            dense,
            keyword,
            consumers,
            dead_letters: changelog::deadletters(&self.shared.store)?.len(),
            poisoned,
            last_error,
            sync,
        })
    }

    /// A rebuild's progress, while the index is rebuilding.
    fn rebuild_progress(&self, dense: bool) -> Option<crate::shared::RebuildProgress> {
        match self.shared.state(dense) {
            crate::shared::IndexState::Rebuilding(_) => {
                Some(self.shared.rebuild_counter(dense).read())
            }
            crate::shared::IndexState::Ready => None,
        }
    }

    /// Entries consumers gave up on.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        changelog::deadletters(&self.shared.store)
    }

    /// One dead letter, if it is there.
    pub fn dead_letter(&self, key: &crate::LetterKey<'_>) -> Result<Option<DeadLetter>> {
        crate::dead_letters::find(&self.shared, key)
    }

    /// Gives a dead letter's document to every consumer again (a new change-log entry for its
    /// current state) and removes the letter: the new entry's sequence, `None` if no such letter.
    pub fn retry_dead_letter(&self, key: &crate::LetterKey<'_>) -> Result<Option<u64>> {
        crate::dead_letters::retry(&self.shared, key)
    }

    /// Removes a dead letter for good; false if there was none.
    pub fn discard_dead_letter(&self, key: &crate::LetterKey<'_>) -> Result<bool> {
        crate::ingest::check_writable(&self.shared)?;
        crate::dead_letters::discard(&self.shared, key)
    }

    /// Up to `limit` (at most [`crate::MAX_PAGE`]) live documents whose ids start with `prefix`
    /// ([`crate::id_prefix`]), in id order, after the id `after`.
    pub fn documents(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<crate::DocumentPage> {
        crate::browse::page(&self.shared.store, prefix, after, limit)
    }

    /// Live documents per `source:kind` (a pass over the ids; remembered for 10 s).
    pub fn document_counts(&self) -> Result<crate::DocumentCounts> {
        let mut cached = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, counts)) = cached.as_ref()
            && at.elapsed() < std::time::Duration::from_secs(10)
        {
            return Ok(counts.clone());
        }
        let counts = crate::browse::counts(&self.shared.store)?;
        *cached = Some((std::time::Instant::now(), counts.clone()));
        Ok(counts)
    }

    /// Writes a consistent copy (store checkpoint + index snapshots) into `dir`, which must not
    /// exist or be empty. Opening the copy as a data directory gives the same search results.
    pub fn checkpoint(&self, dir: &Path) -> Result<CheckpointInfo> {
        let (tx, rx) = channel();
        self.requests
            .send(Request::Checkpoint(dir.to_owned(), tx))
            .map_err(|_| Error::Closed)?;
        rx.recv().map_err(|_| Error::Closed)?
    }

    /// Rebuilds both indexes from the store (no re-embedding); returns when they are live.
    pub fn reindex(&self) -> Result<()> {
        let (tx, rx) = channel();
        self.requests
            .send(Request::Rebuild(tx))
            .map_err(|_| Error::Closed)?;
        rx.recv().map_err(|_| Error::Closed)?
    }

    /// Marks the store failed: writes are refused until the engine is reopened. For callers that
    /// detect lost durability outside RocksDB (and for tests).
    pub fn poison(&self, cause: &str) {
        self.shared.store.poison(cause);
    }

    /// Whether writes are accepted now: `Err(Poisoned)` after a failed write (until a
    /// restart), `Err(StorageFull)` while the data disk is short of space (until it is freed),
    /// `Err(Closed)` while closing.
    pub fn writable(&self) -> Result<()> {
        self.shared.store.check_poison()?;
        if self.shared.stopping() {
            return Err(Error::Closed);
        }
        self.shared.disk.check()
    }

    /// Refuses writes? Returns the cause.
    pub fn poisoned(&self) -> Option<String> {
        match self.shared.store.check_poison() {
            Err(Error::Poisoned { cause }) => Some(cause),
            Ok(()) | Err(_) => None,
        }
    }

    /// Where the engine keeps its data.
    pub fn data_dir(&self) -> PathBuf {
        self.shared.config.data_dir.clone()
    }

    /// RocksDB's statistics (for metrics and the group-commit test).
    pub fn store_statistics(&self) -> Option<String> {
        self.shared.store.statistics()
    }

    /// The indexer's consumer name (its cursor appears in [`Engine::status`]).
    pub fn indexer_name() -> &'static str {
        INDEXER
    }

    /// Stops the indexer after committing the keyword index and snapshotting the dense one.
    pub fn close(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        self.shared
            .stop
            .store(true, std::sync::atomic::Ordering::Release);
        self.shared.sequencer.wake_all();
        self.shared.notify_progress();
        let syncs = self
            .syncs
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        for t in syncs {
            if t.handle.join().is_err() {
                tracing::error!(consumer = t.name, "a sync thread panicked");
            }
        }
        if let Some(handle) = self.indexer.take() {
            handle
                .join()
                .map_err(|_| Error::Dense("the indexer thread panicked".to_owned()))?;
            // Once: a later `stop` (from `Drop` after `close`) finds no indexer. A store that
            // failed a write is not flushed: its write-ahead log replays at the next start.
            if self.shared.store.check_poison().is_ok() {
                self.shared.store.flush_all()?;
            }
        }
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!(error = %e, "closing the engine");
        }
    }
}
