//! Sync consumers: a thread per outside copy (Firestore today, Qdrant next) that reads the
//! change log from its own durable cursor and hands the *current* state of each changed
//! document to a [`SyncSink`] (the daemon's client of that service). Ingest never waits for
//! it: an outage only makes the consumer's lag grow.
//!
//! - Entries are coalesced to the latest state per document (one write per document per
//!   batch); a document is read from the store when it is sent, so replaying entries after a
//!   crash writes the same, latest state again, and an older version is never sent after a
//!   newer one.
//! - The sink answers per document: done, retry (with the server's wait, if it gave one), or
//!   failed for good. Only the retryable ones are sent again (backoff, capped); the failed go
//!   to the dead letters with the reason. The cursor moves past a batch only once every
//!   document in it is confirmed or dead-lettered, and the log is never trimmed below it.
//! - A sink registered after the log was trimmed starts with a full copy of the stored
//!   documents, then follows the log from where that copy began.
//! - A sink that wants chunks (Qdrant: one point per chunk) gets each document's stored chunks
//!   with their vectors (never re-embedded) and never reads past the sequence through which the
//!   indexer has stored them (`meta` `chunks_seq`). The document's fields may then be newer than its chunks for a
//!   moment; the entry of that newer version follows and brings its chunks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use concierge_infra::retry::{Backoff, sleep_unless};
use rocksdb::IteratorMode;
use serde::Serialize;

use crate::changelog::{self, ChangeEntry, ChangeKind, DeadLetter};
use crate::chunk_store;
use crate::document::Document;
use crate::error::{Error, Result};
use crate::shared::Shared;
use crate::store::{StoredDoc, cf, meta_key};

/// Entries read from the log per batch.
const BATCH: usize = 500;

/// The current state of one changed document.
#[derive(Debug, Clone)]
pub struct SyncChange {
    /// The change-log sequence of its latest change.
    pub seq: u64,
    pub id: String,
    pub version: u64,
    /// `None`: deleted.
    pub document: Option<Document>,
    /// Its stored chunks with their vectors, in order, for sinks that want them (empty
    /// otherwise, and for a deleted document).
    pub chunks: Vec<SyncChunk>,
}

/// One stored chunk of a document, as the indexer embedded it.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncChunk {
    /// The engine's chunk id (stable for the same document, position and text).
    pub id: u64,
    pub ordinal: u32,
    pub text: String,
    pub vector: Vec<f32>,
    /// Its BM25 sparse vector (title and text), weighted with the keyword index's current
    /// field lengths.
    pub sparse: crate::sparse::SparseVector,
}

/// What a sink did with one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Done,
    /// Try again later (after the server's wait, when it gave one).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Never going to work: dead-letter it with this reason.
    Failed(String),
}

/// An outside copy of the documents.
pub trait SyncSink: Send + 'static {
    /// The consumer's name (its cursor, its dead letters, its status).
    fn name(&self) -> &'static str;
    /// Writes `changes` (at most one per document); one outcome per change, in order.
    fn write(&mut self, changes: &[SyncChange]) -> Vec<WriteOutcome>;
    /// Requests sent to the outside service so far (status and metrics show throughput in
    /// requests as well as documents).
    fn requests(&self) -> u64;
    /// Whether changes carry the documents' chunks and vectors; such a sink follows the
    /// indexer's stored chunks, never ahead of them.
    fn wants_chunks(&self) -> bool {
        false
    }
    /// Every change through `through` is confirmed: a sink that keeps a watermark where its
    /// readers can see it (Qdrant) writes it here. An error is retried with backoff.
    fn confirm(&mut self, through: u64) -> std::result::Result<(), String> {
        let _ = through;
        Ok(())
    }
}

/// A sync consumer's health, for status and metrics.
#[derive(Debug, Default)]
pub struct SyncHealth {
    pub written: AtomicU64,
    /// Requests the sink has sent.
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub dead_letters: AtomicU64,
    /// Milliseconds since the epoch of the last confirmed write.
    pub last_success_ms: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

/// What `/v1/admin/status` shows of a sync consumer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncStatus {
    pub name: String,
    /// `ok`, or `degraded` while writes are failing.
    pub state: String,
    pub written: u64,
    /// Requests sent to the outside service (a request carries many documents).
    pub requests: u64,
    pub retries: u64,
    pub dead_letters: u64,
    pub last_success_ms: Option<u64>,
    pub last_error: Option<String>,
}

impl SyncHealth {
    pub fn status(&self, name: &str) -> SyncStatus {
        let last_error = self.last_error.lock().ok().and_then(|e| e.clone());
        let last = self.last_success_ms.load(Ordering::Relaxed);
        SyncStatus {
            name: name.to_owned(),
            state: if last_error.is_some() {
                "degraded"
            } else {
                "ok"
            }
            .to_owned(),
            written: self.written.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            dead_letters: self.dead_letters.load(Ordering::Relaxed),
            last_success_ms: (last > 0).then_some(last),
            last_error,
        }
    }

    fn error(&self, e: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = e;
        }
    }
}

/// The worker's body: runs until the engine stops.
pub(crate) fn run(shared: Arc<Shared>, mut sink: Box<dyn SyncSink>, health: Arc<SyncHealth>) {
    let name = sink.name();
    if let Err(e) = follow(&shared, sink.as_mut(), &health)
        && !matches!(e, Error::Closed)
    {
        tracing::error!(consumer = name, error = %e, "the sync consumer stopped");
        health.error(Some(e.to_string()));
    }
}

fn follow(shared: &Shared, sink: &mut dyn SyncSink, health: &SyncHealth) -> Result<()> {
    let name = sink.name();
    let mut cursor = match changelog::cursor(&shared.store, name)? {
        Some(c) => c,
        None => start(shared, sink, health)?,
    };
    let chunks = sink.wants_chunks();
    while !shared.stopping() {
        let mut until = shared.sequencer.durable();
        if chunks {
            until = until.min(chunks_through(shared)?);
        }
        let entries = changelog::read(&shared.store, cursor, until, BATCH)?;
        let Some(last) = entries.last().map(|e| e.seq) else {
            if chunks {
                // The indexer moves the bound; nothing to wait on but time.
                std::thread::sleep(Duration::from_millis(50));
            } else {
                shared
                    .sequencer
                    .wait_durable_after(cursor, Duration::from_millis(250));
            }
            continue;
        };
        // The latest entry per document.
        let mut latest: BTreeMap<&str, &ChangeEntry> = BTreeMap::new();
        for e in &entries {
            latest.insert(e.id.as_str(), e);
        }
        let ids: Vec<&str> = latest.keys().copied().collect();
        let stored = shared.store.get_docs(ids.iter().copied())?;
        let mut changes: Vec<SyncChange> = latest
            .values()
            .zip(stored)
            .map(|(entry, doc)| change_of(entry, doc))
            .collect();
        if chunks {
            with_chunks(shared, &mut changes)?;
        }
        send(shared, sink, health, changes)?;
        confirm(shared, sink, health, last)?;
        changelog::set_cursor(&shared.store, name, last)?;
        cursor = last;
    }
    Err(Error::Closed)
}

fn change_of(entry: &ChangeEntry, stored: Option<StoredDoc>) -> SyncChange {
    match stored {
        Some(s) if !s.deleted => SyncChange {
            seq: s.seq.max(entry.seq),
            id: entry.id.clone(),
            version: s.doc.version,
            document: Some(s.doc),
            chunks: Vec::new(),
        },
        Some(s) => SyncChange {
            seq: s.seq.max(entry.seq),
            id: entry.id.clone(),
            version: s.doc.version,
            document: None,
            chunks: Vec::new(),
        },
        // Not in the store at all: nothing to copy, so it is absent outside too.
        None => SyncChange {
            seq: entry.seq,
            id: entry.id.clone(),
            version: entry.version,
            document: None,
            chunks: Vec::new(),
        },
    }
}

/// The change-log sequence through which the indexer has stored chunks and vectors.
fn chunks_through(shared: &Shared) -> Result<u64> {
    Ok(shared
        .store
        .get_u64(cf::META, meta_key::CHUNKS_SEQ)?
        .unwrap_or(0))
}

/// Adds each present document's stored chunks and vectors.
fn with_chunks(shared: &Shared, changes: &mut [SyncChange]) -> Result<()> {
    let dim = shared.embedder.dim();
    let averages = shared
        .keyword()
        .and_then(|k| k.average_terms())
        .map_or_else(crate::sparse::Averages::default, |(text, title)| {
            crate::sparse::Averages { text, title }
        });
    for change in changes.iter_mut().filter(|c| c.document.is_some()) {
        let title = change
            .document
            .as_ref()
            .map(|d| d.title.clone())
            .unwrap_or_default();
        let records = chunk_store::chunks_of(&shared.store, &change.id)?;
        let ids: Vec<u64> = records.iter().map(|r| r.id).collect();
        let vectors = chunk_store::vectors(&shared.store, &ids, dim)?;
        change.chunks = records
            .into_iter()
            .zip(vectors)
            // A chunk without its vector is mid-replacement: the next entry brings it.
            .filter_map(|(r, v)| {
                v.map(|vector| SyncChunk {
                    sparse: crate::sparse::document_vector(&title, &r.text, averages),
                    id: r.id,
                    ordinal: r.ordinal,
                    text: r.text,
                    vector,
                })
            })
            .collect();
    }
    Ok(())
}

/// A consumer seen for the first time: with the whole history in the log it starts at 0;
/// after a trim it first copies every stored document.
fn start(shared: &Shared, sink: &mut dyn SyncSink, health: &SyncHealth) -> Result<u64> {
    let name = sink.name();
    let trimmed = shared
        .store
        .get_u64(cf::META, meta_key::TRIMMED_THROUGH)?
        .unwrap_or(0);
    // Registered before anything else: the log is not trimmed past it from now on.
    changelog::set_cursor(&shared.store, name, 0)?;
    if trimmed == 0 {
        return Ok(0);
    }
    let mut from = shared.sequencer.durable();
    if sink.wants_chunks() {
        // Chunks exist only up to the indexer: what follows comes through the log.
        from = from.min(chunks_through(shared)?);
    }
    tracing::info!(
        consumer = name,
        through = from,
        "a new sync consumer: copying every stored document first"
    );
    let mut batch = Vec::new();
    let iter = shared
        .store
        .db()
        .iterator_cf(&shared.store.cf(cf::DOCS), IteratorMode::Start);
    for item in iter {
        let (_, value) = item?;
        let stored: StoredDoc =
            serde_json::from_slice(&value).map_err(|e| Error::corrupt("docs", e.to_string()))?;
        if stored.deleted {
            continue;
        }
        batch.push(SyncChange {
            seq: stored.seq,
            id: stored.doc.id.clone(),
            version: stored.doc.version,
            document: Some(stored.doc),
            chunks: Vec::new(),
        });
        if batch.len() == BATCH {
            if sink.wants_chunks() {
                with_chunks(shared, &mut batch)?;
            }
            send(shared, sink, health, std::mem::take(&mut batch))?;
        }
    }
    if !batch.is_empty() {
        if sink.wants_chunks() {
            with_chunks(shared, &mut batch)?;
        }
        send(shared, sink, health, batch)?;
    }
    confirm(shared, sink, health, from)?;
    changelog::set_cursor(&shared.store, name, from)?;
    Ok(from)
}

/// Tells the sink everything through `through` is confirmed, until it takes it (or the engine
/// stops).
fn confirm(
    shared: &Shared,
    sink: &mut dyn SyncSink,
    health: &SyncHealth,
    through: u64,
) -> Result<()> {
    let config = &shared.config;
    let backoff = Backoff::new(config.retry_base, config.retry_cap);
    let mut failures = 0u32;
    loop {
        match sink.confirm(through) {
            Ok(()) => {
                if failures > 0 {
                    health.error(None);
                }
                return Ok(());
            }
            Err(reason) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(consumer = sink.name(), through, attempt = failures, %reason, "recording the sync watermark failed; retrying");
                }
                health.error(Some(reason));
                if !sleep_unless(backoff.wait_or(failures.min(16), None), &|| {
                    shared.stopping()
                }) {
                    return Err(Error::Closed);
                }
            }
        }
    }
}

/// Sends `changes` until each is confirmed or dead-lettered (or the engine stops).
fn send(
    shared: &Shared,
    sink: &mut dyn SyncSink,
    health: &SyncHealth,
    mut changes: Vec<SyncChange>,
) -> Result<()> {
    let config = &shared.config;
    let backoff = Backoff::new(config.retry_base, config.retry_cap);
    let mut failures = 0u32;
    while !changes.is_empty() {
        if shared.stopping() {
            return Err(Error::Closed);
        }
        let outcomes = sink.write(&changes);
        health.requests.store(sink.requests(), Ordering::Relaxed);
        let mut again = Vec::new();
        let mut wait: Option<Duration> = None;
        let mut last_reason = None;
        for (change, outcome) in
            changes
                .into_iter()
                .zip(
                    outcomes
                        .into_iter()
                        .chain(std::iter::repeat(WriteOutcome::Retry {
                            reason: "the sink gave no answer for it".into(),
                            after: None,
                        })),
                )
        {
            match outcome {
                WriteOutcome::Done => {
                    health.written.fetch_add(1, Ordering::Relaxed);
                }
                WriteOutcome::Retry { reason, after } => {
                    wait = wait.max(after);
                    last_reason = Some(reason);
                    again.push(change);
                }
                WriteOutcome::Failed(reason) => {
                    tracing::error!(consumer = sink.name(), id = %change.id, %reason, "a document cannot be synced: moved to the dead letters");
                    let letter = DeadLetter {
                        consumer: sink.name().to_owned(),
                        entry: ChangeEntry {
                            seq: change.seq,
                            kind: if change.document.is_some() {
                                ChangeKind::Upsert
                            } else {
                                ChangeKind::Delete
                            },
                            id: change.id.clone(),
                            version: change.version,
                            at_ms: 0,
                        },
                        attempts: failures + 1,
                        error: reason,
                        at_ms: concierge_infra::utc::now_ms(),
                    };
                    changelog::put_deadletter(&shared.store, &letter)?;
                    health.dead_letters.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if again.is_empty() {
            health.error(None);
            health.last_success_ms.store(
                u64::try_from(concierge_infra::utc::now_ms()).unwrap_or(0),
                Ordering::Relaxed,
            );
            return Ok(());
        }
        failures += 1;
        health
            .retries
            .fetch_add(again.len() as u64, Ordering::Relaxed);
        let reason = last_reason.unwrap_or_default();
        let pause = backoff.wait_or(failures.min(16), wait);
        if failures == 1 || failures.is_multiple_of(20) {
            tracing::warn!(consumer = sink.name(), pending = again.len(), attempt = failures, %reason, wait_ms = pause.as_millis() as u64, "sync writes failed; retrying");
        }
        health.error(Some(reason));
        if !sleep_unless(pause, &|| shared.stopping()) {
            return Err(Error::Closed);
        }
        changes = again;
    }
    Ok(())
}
