//! The indexer: the change-log consumer that keeps the dense and keyword indexes in step with
//! the store. For each batch of entries it chunks the documents' current text, embeds only
//! chunks without a stored vector, writes chunks and vectors, and applies them to each index
//! that has not yet seen the entries. It commits the keyword index on a timer or a count,
//! snapshots the dense index, moves its cursor (which trims the log), retries failures with
//! backoff and dead-letters entries that keep failing, rebuilds missing or tombstone-heavy
//! indexes in the background, and takes consistent checkpoints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rocksdb::WriteBatch;
use serde::Serialize;

use crate::changelog::{self, ChangeEntry, DeadLetter};
use crate::chunk_store::{self, ChunkRecord};
use crate::chunking;
use crate::dense::{DenseIndex, DenseItem};
use crate::dense_snapshot;
use crate::error::{Error, Result};
use crate::filter::DocAttrs;
use crate::keyword::{KeywordChunk, KeywordIndex};
use crate::shared::{IndexState, Shared};
use crate::store::{cf, meta_key};

/// The indexer's name in the `cursors` column family.
pub const INDEXER: &str = "indexer";

/// What a checkpoint holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointInfo {
    /// Where it was written.
    pub path: PathBuf,
    /// Every change up to this sequence is in the checkpointed store.
    pub seq: u64,
    /// Sequence the dense snapshot includes (None if the index was being rebuilt).
    pub dense_seq: Option<u64>,
    /// Sequence the keyword snapshot includes (None if the index was being rebuilt).
    pub keyword_seq: Option<u64>,
}

pub(crate) enum Request {
    Checkpoint(PathBuf, Sender<Result<CheckpointInfo>>),
    Rebuild(Sender<Result<()>>),
}

#[derive(Clone)]
pub(crate) enum Target {
    Dense(Arc<DenseIndex>),
    Keyword(Arc<KeywordIndex>),
}

impl Target {
    fn seq(&self) -> u64 {
        match self {
            Target::Dense(d) => d.seq(),
            Target::Keyword(k) => k.applied_seq(),
        }
    }

    fn set_seq(&self, seq: u64) {
        match self {
            Target::Dense(d) => d.set_seq(seq),
            Target::Keyword(k) => k.set_applied_seq(seq),
        }
    }
}

/// Applies `entries` to every target that has not seen them. Idempotent: it reconciles each
/// document's chunks with its current stored state.
pub(crate) fn process(shared: &Shared, entries: &[ChangeEntry], targets: &[Target]) -> Result<()> {
    let Some(last) = entries.last().map(|e| e.seq) else {
        return Ok(());
    };
    let targets: Vec<&Target> = targets.iter().filter(|t| t.seq() < last).collect();
    // Latest entry per document, in log order.
    let mut order: Vec<&str> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for e in entries.iter().rev() {
        if seen.insert(e.id.as_str()) {
            order.push(&e.id);
        }
    }
    order.reverse();
    let docs = shared.store.get_docs(order.iter().copied())?;

    struct Work {
        id: String,
        live: Option<(crate::document::Document, DocAttrs)>,
        old: Vec<ChunkRecord>,
        new: Vec<(ChunkRecord, Option<Vec<f32>>)>,
    }
    let count =
        |s: &str| -> Result<usize> { Ok(shared.embedder.count_tokens(s)?.saturating_sub(2)) };
    let mut work = Vec::with_capacity(order.len());
    for (id, stored) in order.iter().zip(docs) {
        let old = chunk_store::chunks_of(&shared.store, id)?;
        let live = stored.filter(|s| !s.deleted).map(|s| {
            let attrs = DocAttrs::of(&s.doc);
            (s.doc, attrs)
        });
        let mut new = Vec::new();
        if let Some((doc, _)) = &live {
            for c in chunking::chunk(id, &doc.title, &doc.text, shared.chunking, &count)? {
                new.push((
                    ChunkRecord {
                        id: c.id,
                        ordinal: c.ordinal,
                        text: c.text,
                    },
                    None,
                ));
            }
        }
        work.push(Work {
            id: (*id).to_owned(),
            live,
            old,
            new,
        });
    }

    // Vectors: reuse stored ones, embed the rest in one call.
    let ids: Vec<u64> = work
        .iter()
        .flat_map(|w| w.new.iter().map(|(r, _)| r.id))
        .collect();
    let stored_vectors = chunk_store::vectors(&shared.store, &ids, shared.embedder.dim())?;
    let mut stored_vectors = stored_vectors.into_iter();
    let mut missing: Vec<(usize, usize, String)> = Vec::new();
    for (wi, w) in work.iter_mut().enumerate() {
        let title = w
            .live
            .as_ref()
            .map(|(d, _)| d.title.clone())
            .unwrap_or_default();
        for (ci, (record, vector)) in w.new.iter_mut().enumerate() {
            *vector = stored_vectors.next().flatten();
            if vector.is_none() {
                let text = chunking::Chunk {
                    id: record.id,
                    ordinal: record.ordinal,
                    text: record.text.clone(),
                }
                .embedding_text(&title);
                missing.push((wi, ci, text));
            }
        }
    }
    if !missing.is_empty() {
        let texts: Vec<&str> = missing.iter().map(|(_, _, t)| t.as_str()).collect();
        let started = Instant::now();
        let vectors = shared.embedder.embed(&texts)?;
        shared.metrics.embedded(texts.len(), started.elapsed());
        for ((wi, ci, _), v) in missing.iter().zip(vectors) {
            work[*wi].new[*ci].1 = Some(v);
        }
    }

    // Chunks and vectors first (durable), then the indexes.
    let mut batch = WriteBatch::default();
    let mut changed = false;
    for w in &work {
        let same = w.old.len() == w.new.len() && w.old.iter().zip(&w.new).all(|(o, (n, _))| o == n);
        if !same {
            let new: Vec<(ChunkRecord, &[f32])> = w
                .new
                .iter()
                .filter_map(|(r, v)| v.as_deref().map(|v| (r.clone(), v)))
                .collect();
            chunk_store::replace(&shared.store, &mut batch, &w.id, &w.old, &new)?;
            changed = true;
        }
    }
    let chunks_seq = shared
        .store
        .get_u64(cf::META, meta_key::CHUNKS_SEQ)?
        .unwrap_or(0);
    if last > chunks_seq {
        batch.put_cf(
            &shared.store.cf(cf::META),
            meta_key::CHUNKS_SEQ,
            last.to_be_bytes(),
        );
        changed = true;
    }
    if changed {
        shared.store.write(batch)?;
    }

    for target in &targets {
        for w in &work {
            match (target, &w.live) {
                (Target::Dense(d), Some((_, attrs))) => {
                    let items = w
                        .new
                        .iter()
                        .filter_map(|(r, v)| {
                            v.clone().map(|vector| DenseItem {
                                chunk_id: r.id,
                                vector,
                            })
                        })
                        .collect();
                    d.apply(&w.id, Some((attrs.clone(), items)))?;
                }
                (Target::Dense(d), None) => d.apply(&w.id, None)?,
                (Target::Keyword(k), Some((doc, attrs))) => {
                    let chunks = w
                        .new
                        .iter()
                        .map(|(r, _)| KeywordChunk {
                            chunk_id: r.id,
                            title: &doc.title,
                            text: &r.text,
                        })
                        .collect();
                    k.apply(&w.id, Some((attrs, chunks)))?;
                }
                (Target::Keyword(k), None) => k.apply(&w.id, None)?,
            }
        }
        target.set_seq(last);
    }
    Ok(())
}

type RebuildHandle<T> = JoinHandle<Result<Arc<T>>>;

pub(crate) struct Indexer {
    shared: Arc<Shared>,
    requests: Receiver<Request>,
    dense_dumped: u64,
    dense_changes: u64,
    last_commit: Instant,
    last_dump: Instant,
    cursor: u64,
    dense_rebuild: Option<RebuildHandle<DenseIndex>>,
    keyword_rebuild: Option<RebuildHandle<KeywordIndex>>,
    pending_rebuild_replies: Vec<Sender<Result<()>>>,
}

impl Indexer {
    pub fn new(
        shared: Arc<Shared>,
        requests: Receiver<Request>,
        dense_dumped: u64,
    ) -> Result<Self> {
        let cursor = changelog::cursor(&shared.store, INDEXER)?.unwrap_or(0);
        Ok(Indexer {
            shared,
            requests,
            dense_dumped,
            dense_changes: 0,
            last_commit: Instant::now(),
            last_dump: Instant::now(),
            cursor,
            dense_rebuild: None,
            keyword_rebuild: None,
            pending_rebuild_replies: Vec::new(),
        })
    }

    /// Starts a background rebuild of the dense index (from stored vectors, no embedding).
    pub fn rebuild_dense(&mut self, reason: &str) {
        if self.dense_rebuild.is_some() {
            return;
        }
        tracing::info!(reason, "rebuilding the dense index in the background");
        self.shared
            .set_state(true, IndexState::Rebuilding(reason.to_owned()));
        let shared = self.shared.clone();
        self.dense_rebuild = Some(std::thread::spawn(move || {
            let dim = shared.embedder.dim();
            let index = DenseIndex::new(dim, shared.config.hnsw, 1024);
            let mut pending = Vec::new();
            let seq = chunk_store::scan_all(&shared.store, dim, &mut |stored, chunks| {
                let attrs = DocAttrs::of(&stored.doc);
                let items = chunks
                    .into_iter()
                    .map(|(r, vector)| DenseItem {
                        chunk_id: r.id,
                        vector,
                    })
                    .collect();
                pending.push((Arc::from(stored.doc.id.as_str()), attrs, items));
                if pending.len() >= 1_000 {
                    index.bulk_insert(std::mem::take(&mut pending));
                }
                if shared.stopping() {
                    Err(Error::Closed)
                } else {
                    Ok(())
                }
            })?;
            index.bulk_insert(pending);
            index.set_seq(seq);
            Ok(Arc::new(index))
        }));
    }

    /// Starts a background rebuild of the keyword index into an emptied directory.
    pub fn rebuild_keyword(&mut self, reason: &str) {
        if self.keyword_rebuild.is_some() {
            return;
        }
        tracing::info!(reason, "rebuilding the keyword index in the background");
        self.shared
            .set_state(false, IndexState::Rebuilding(reason.to_owned()));
        self.shared.set_keyword(None);
        let shared = self.shared.clone();
        self.keyword_rebuild = Some(std::thread::spawn(move || {
            let dir = shared.config.keyword_dir();
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| Error::io(format!("removing {}", dir.display()), e))?;
            }
            let index = KeywordIndex::open(&dir)?;
            let seq = chunk_store::scan_all(
                &shared.store,
                shared.embedder.dim(),
                &mut |stored, chunks| {
                    let attrs = DocAttrs::of(&stored.doc);
                    let kc = chunks
                        .iter()
                        .map(|(r, _)| KeywordChunk {
                            chunk_id: r.id,
                            title: &stored.doc.title,
                            text: &r.text,
                        })
                        .collect();
                    index.apply(&stored.doc.id, Some((&attrs, kc)))?;
                    if shared.stopping() {
                        Err(Error::Closed)
                    } else {
                        Ok(())
                    }
                },
            )?;
            index.commit(seq)?;
            Ok(Arc::new(index))
        }));
    }

    /// The thread's body: runs until the engine stops, then commits and snapshots.
    pub fn run(mut self) {
        while !self.shared.stopping() {
            if let Err(e) = self.step() {
                if matches!(e, Error::Closed) {
                    break;
                }
                // Poisoned: writes wait for a restart; anything else: retried after a pause.
                if !matches!(e, Error::Poisoned { .. }) {
                    tracing::warn!(error = %e, "indexer step failed");
                }
                self.shared.record_error(Some(e.to_string()));
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        if let Err(e) = self.persist(true) {
            tracing::error!(error = %e, "final index commit/snapshot failed; the log will be replayed at the next start");
        }
        for reply in self.pending_rebuild_replies.drain(..) {
            let _ = reply.send(Err(Error::Closed));
        }
    }

    fn step(&mut self) -> Result<()> {
        while let Ok(request) = self.requests.try_recv() {
            match request {
                Request::Checkpoint(path, reply) => {
                    let _ = reply.send(self.checkpoint(&path));
                }
                Request::Rebuild(reply) => {
                    self.rebuild_dense("requested by an operator");
                    self.rebuild_keyword("requested by an operator");
                    self.pending_rebuild_replies.push(reply);
                }
            }
        }
        self.install_rebuilds()?;
        if let Some(d) = self.shared.dense()
            && self.dense_rebuild.is_none()
            && d.tombstone_ratio() > self.shared.config.rebuild_tombstone_ratio
        {
            self.rebuild_dense("tombstones passed the rebuild threshold");
        }

        let targets = self.targets();
        let Some(position) = targets.iter().map(Target::seq).min() else {
            // Both indexes are being rebuilt.
            std::thread::sleep(Duration::from_millis(50));
            return Ok(());
        };
        let durable = self.shared.sequencer.durable();
        let entries = changelog::read(
            &self.shared.store,
            position,
            durable,
            self.shared.config.indexer_batch,
        )?;
        if entries.is_empty() {
            self.persist(false)?;
            let wait = self
                .shared
                .config
                .commit_interval
                .min(Duration::from_millis(100));
            self.shared.sequencer.wait_durable_after(position, wait);
            return Ok(());
        }
        self.deliver(&entries, &targets)?;
        self.dense_changes += entries.len() as u64;
        self.shared.notify_progress();
        self.shared.record_error(None);
        self.persist(false)
    }

    /// Times the acknowledged writes both indexes now serve.
    fn record_searchable(&self) {
        if let (Some(d), Some(k)) = (self.shared.dense(), self.shared.keyword()) {
            let through = d.seq().min(k.committed_seq());
            self.shared
                .metrics
                .searchable_through(through, Instant::now());
        }
    }

    fn targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        if let Some(d) = self.shared.dense() {
            t.push(Target::Dense(d));
        }
        if let Some(k) = self.shared.keyword() {
            t.push(Target::Keyword(k));
        }
        t
    }

    /// Applies a batch with retries; entries that keep failing on their own are dead-lettered.
    fn deliver(&mut self, entries: &[ChangeEntry], targets: &[Target]) -> Result<()> {
        let config = &self.shared.config;
        for attempt in 0..config.max_attempts {
            match process(&self.shared, entries, targets) {
                Ok(()) => return Ok(()),
                Err(e @ (Error::Poisoned { .. } | Error::Closed)) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "indexing a batch failed; retrying");
                    self.shared.record_error(Some(e.to_string()));
                    self.sleep(changelog::backoff(
                        attempt,
                        config.retry_base,
                        config.retry_cap,
                    ))?;
                }
            }
        }
        // Find the entries that fail on their own.
        for entry in entries {
            let mut last_error = None;
            for attempt in 0..config.max_attempts {
                match process(&self.shared, std::slice::from_ref(entry), targets) {
                    Ok(()) => {
                        last_error = None;
                        break;
                    }
                    Err(e @ (Error::Poisoned { .. } | Error::Closed)) => return Err(e),
                    Err(e) => {
                        last_error = Some(e.to_string());
                        self.sleep(changelog::backoff(
                            attempt,
                            config.retry_base,
                            config.retry_cap,
                        ))?;
                    }
                }
            }
            if let Some(error) = last_error {
                tracing::error!(seq = entry.seq, id = %entry.id, %error, "giving up on a change-log entry: moved to the dead letters");
                let letter = DeadLetter {
                    consumer: INDEXER.to_owned(),
                    entry: entry.clone(),
                    attempts: config.max_attempts,
                    error,
                    at_ms: changelog::now_ms(),
                };
                changelog::put_deadletter(&self.shared.store, &letter)?;
                for t in targets {
                    if t.seq() < entry.seq {
                        t.set_seq(entry.seq);
                    }
                }
            }
        }
        Ok(())
    }

    fn sleep(&self, total: Duration) -> Result<()> {
        let deadline = Instant::now() + total;
        while Instant::now() < deadline {
            if self.shared.stopping() {
                return Err(Error::Closed);
            }
            std::thread::sleep(
                Duration::from_millis(20).min(deadline.saturating_duration_since(Instant::now())),
            );
        }
        Ok(())
    }

    /// Installs finished rebuilds after replaying the log they missed.
    fn install_rebuilds(&mut self) -> Result<()> {
        if self
            .dense_rebuild
            .as_ref()
            .is_some_and(JoinHandle::is_finished)
            && let Some(handle) = self.dense_rebuild.take()
        {
            match handle.join() {
                Ok(Ok(index)) => {
                    self.catch_up(&Target::Dense(index.clone()))?;
                    let seq = index.seq();
                    self.shared.set_dense(Some(index));
                    self.shared.set_state(true, IndexState::Ready);
                    self.dense_changes = self.shared.config.dense_dump_every; // snapshot it soon
                    tracing::info!(seq, "dense index rebuilt");
                }
                Ok(Err(e)) => self.rebuild_failed(true, e.to_string()),
                Err(_) => self.rebuild_failed(true, "the rebuild thread panicked".to_owned()),
            }
        }
        if self
            .keyword_rebuild
            .as_ref()
            .is_some_and(JoinHandle::is_finished)
            && let Some(handle) = self.keyword_rebuild.take()
        {
            match handle.join() {
                Ok(Ok(index)) => {
                    self.catch_up(&Target::Keyword(index.clone()))?;
                    index.commit(index.applied_seq())?;
                    self.shared.set_keyword(Some(index));
                    self.shared.set_state(false, IndexState::Ready);
                    tracing::info!("keyword index rebuilt");
                }
                Ok(Err(e)) => self.rebuild_failed(false, e.to_string()),
                Err(_) => self.rebuild_failed(false, "the rebuild thread panicked".to_owned()),
            }
        }
        if self.dense_rebuild.is_none() && self.keyword_rebuild.is_none() {
            for reply in self.pending_rebuild_replies.drain(..) {
                let _ = reply.send(Ok(()));
            }
        }
        Ok(())
    }

    fn rebuild_failed(&mut self, dense: bool, error: String) {
        if self.shared.stopping() {
            return;
        }
        tracing::error!(dense, %error, "index rebuild failed; retrying");
        self.shared
            .record_error(Some(format!("rebuild failed: {error}")));
        std::thread::sleep(Duration::from_millis(500));
        if dense {
            self.rebuild_dense("retry after a failed rebuild")
        } else {
            self.rebuild_keyword("retry after a failed rebuild")
        }
    }

    fn catch_up(&mut self, target: &Target) -> Result<()> {
        loop {
            let durable = self.shared.sequencer.durable();
            let entries = changelog::read(
                &self.shared.store,
                target.seq(),
                durable,
                self.shared.config.indexer_batch,
            )?;
            if entries.is_empty() {
                return Ok(());
            }
            self.deliver(&entries, std::slice::from_ref(target))?;
        }
    }

    /// Commits / snapshots when due (always when `force`), then moves the cursor.
    fn persist(&mut self, force: bool) -> Result<()> {
        let config = &self.shared.config;
        if let Some(k) = self.shared.keyword()
            && (k.pending() > 0 || k.applied_seq() > k.committed_seq())
            && (force
                || self.last_commit.elapsed() >= config.commit_interval
                || k.pending() >= config.commit_every)
        {
            k.commit(k.applied_seq())?;
            self.last_commit = Instant::now();
            self.shared.notify_progress();
        }
        self.record_searchable();
        if let Some(d) = self.shared.dense()
            && d.seq() > self.dense_dumped
            && (force
                || self.dense_changes >= config.dense_dump_every
                || self.last_dump.elapsed() >= config.dense_dump_interval)
        {
            self.dense_dumped = dense_snapshot::dump(&d, &config.dense_dir())?;
            self.dense_changes = 0;
            self.last_dump = Instant::now();
        }
        // The log must keep everything an index would replay after a crash.
        if self.dense_rebuild.is_none()
            && self.keyword_rebuild.is_none()
            && let Some(k) = self.shared.keyword()
            && self.shared.dense().is_some()
        {
            let cursor = self.dense_dumped.min(k.committed_seq());
            if cursor > self.cursor {
                changelog::set_cursor(&self.shared.store, INDEXER, cursor)?;
                self.cursor = cursor;
            }
        }
        Ok(())
    }

    fn checkpoint(&mut self, target: &Path) -> Result<CheckpointInfo> {
        if target.exists()
            && std::fs::read_dir(target)
                .map_err(|e| Error::io(format!("reading {}", target.display()), e))?
                .next()
                .is_some()
        {
            return Err(Error::InvalidInput(crate::error::InvalidInput::Field {
                field: "checkpoint",
                reason: format!("{} exists and is not empty", target.display()),
            }));
        }
        std::fs::create_dir_all(target.join("index"))
            .map_err(|e| Error::io(format!("creating {}", target.display()), e))?;
        let keyword_seq = match self.shared.keyword() {
            Some(k) => {
                k.commit(k.applied_seq())?;
                copy_keyword(
                    &self.shared.config.keyword_dir(),
                    &target.join("index").join("keyword"),
                    &k,
                )?;
                Some(k.committed_seq())
            }
            None => None,
        };
        let dense_seq = match self.shared.dense() {
            Some(d) => Some(dense_snapshot::dump(
                &d,
                &target.join("index").join("dense"),
            )?),
            None => None,
        };
        let seq = self.shared.sequencer.durable();
        self.shared.store.checkpoint(&target.join("store"))?;
        dense_snapshot::sync_dir(target)?;
        Ok(CheckpointInfo {
            path: target.to_owned(),
            seq,
            dense_seq,
            keyword_seq,
        })
    }
}

/// Copies the committed files of the keyword index (its meta and its segments' files).
fn copy_keyword(from: &Path, to: &Path, index: &KeywordIndex) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(format!("creating {}", to.display()), e))?;
    let segments = index.committed_segment_prefixes()?;
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    for entry in
        std::fs::read_dir(from).map_err(|e| Error::io(format!("reading {}", from.display()), e))?
    {
        let entry = entry.map_err(|e| Error::io("listing the keyword index", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "meta.json" || segments.iter().any(|s| name.starts_with(s.as_str())) {
            names.insert(name, entry.path());
        }
    }
    for (name, path) in names {
        let dest = to.join(&name);
        std::fs::copy(&path, &dest)
            .map_err(|e| Error::io(format!("copying {}", path.display()), e))?;
        std::fs::File::open(&dest)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(format!("syncing {}", dest.display()), e))?;
    }
    dense_snapshot::sync_dir(to)
}
