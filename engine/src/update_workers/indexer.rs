//! The indexer thread: it reads the change log in batches and hands them to the index consumer
//! ([`super::apply`]), commits the keyword index on a timer or a count, snapshots the dense
//! index, moves its cursor (which trims the log), starts background rebuilds of missing or
//! tombstone-heavy indexes ([`super::rebuild`]) and installs them, and answers checkpoint
//! requests between batches ([`super::checkpoint`]). Retries and dead letters are the
//! consumer driver's ([`super::consumer::deliver`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::apply::{INDEXER, Indexes, Target};
use super::checkpoint::{self, CheckpointInfo};
use super::consumer;
use super::rebuild::{self, RebuildHandle};
use crate::changelog::{self, ChangeEntry};
use crate::dense::DenseIndex;
use crate::dense_snapshot;
use crate::error::{Error, Result};
use crate::keyword::KeywordIndex;
use crate::shared::{IndexState, Shared};

pub(crate) enum Request {
    Checkpoint(PathBuf, Sender<Result<CheckpointInfo>>),
    Rebuild(Sender<Result<()>>),
}

pub(crate) struct Indexer {
    shared: Arc<Shared>,
    requests: Receiver<Request>,
    dense_dumped: u64,
    dense_changes: u64,
    last_commit: Instant,
    last_dump: Instant,
    /// When the dense index's fresh part was last folded into its segment.
    last_freeze: Instant,
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
            last_freeze: Instant::now(),
            cursor,
            dense_rebuild: None,
            keyword_rebuild: None,
            pending_rebuild_replies: Vec::new(),
        })
    }

    /// Starts a background rebuild of the dense index unless one runs.
    pub fn rebuild_dense(&mut self, reason: &str) {
        if self.dense_rebuild.is_none() {
            self.dense_rebuild = Some(rebuild::start_dense(&self.shared, reason));
        }
    }

    /// Starts a background rebuild of the keyword index unless one runs.
    pub fn rebuild_keyword(&mut self, reason: &str) {
        if self.keyword_rebuild.is_none() {
            self.keyword_rebuild = Some(rebuild::start_keyword(&self.shared, reason));
        }
    }

    /// The thread's body: runs until the engine stops, then commits and snapshots.
    pub fn run(mut self) {
        // The same failure every 200 ms (a full index disk) is logged once per 30 s.
        let mut warned: Option<(String, Instant)> = None;
        while !self.shared.stopping() {
            if let Err(e) = self.step() {
                if matches!(e, Error::Closed) {
                    break;
                }
                // Poisoned: writes wait for a restart; a full disk: until space is freed (the
                // check logs the change); anything else: retried after a pause.
                let pause = if matches!(e, Error::StorageFull { .. }) {
                    Duration::from_secs(1)
                } else {
                    let text = e.to_string();
                    let repeat = warned.as_ref().is_some_and(|(last, at)| {
                        *last == text && at.elapsed() < Duration::from_secs(30)
                    });
                    if !matches!(e, Error::Poisoned { .. }) && !repeat {
                        tracing::warn!(error = %e, "indexer step failed (retried every 200 ms; repeats logged every 30 s)");
                        warned = Some((text, Instant::now()));
                    }
                    Duration::from_millis(200)
                };
                self.shared.record_error(Some(e.to_string()));
                std::thread::sleep(pause);
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
                    let _ = reply.send(checkpoint::write(&self.shared, &path));
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
            self.freeze_when_due(true)?;
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
        self.freeze_when_due(false)?;
        self.persist(false)
    }

    /// Folds the dense index's fresh part into a new frozen segment once it holds
    /// `dense_freeze_after` points, or when `idle` and `dense_freeze_interval` has passed since
    /// the last fold.
    fn freeze_when_due(&mut self, idle: bool) -> Result<()> {
        let Some(d) = self.shared.dense() else {
            return Ok(());
        };
        let config = &self.shared.config;
        let fresh = d.fresh();
        if fresh < config.dense_freeze_after
            && !(idle && self.last_freeze.elapsed() >= config.dense_freeze_interval)
        {
            return Ok(());
        }
        self.fold(&d)
    }

    /// Folds the dense index's fresh part into a new segment now (the build runs here, on the
    /// only thread that folds; searches go on meanwhile).
    fn fold(&mut self, d: &DenseIndex) -> Result<()> {
        let fresh = d.fresh();
        if fresh == 0 {
            return Ok(());
        }
        let started = Instant::now();
        let points = d.freeze()?;
        self.last_freeze = Instant::now();
        tracing::debug!(
            fresh,
            points,
            ms = started.elapsed().as_millis() as u64,
            "dense segment frozen"
        );
        Ok(())
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

    /// Applies a batch to `targets` with retries; entries that keep failing on their own are
    /// dead-lettered.
    fn deliver(&mut self, entries: &[ChangeEntry], targets: &[Target]) -> Result<()> {
        let mut indexes = Indexes {
            shared: &self.shared,
            targets,
        };
        consumer::deliver(&mut indexes, &self.shared, entries)
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
            // A snapshot is the size of the graph: not on a disk short of space (the log keeps
            // what it would hold).
            && self.shared.disk.check().is_ok()
        {
            // The snapshot holds a whole segment: a restart then searches it at once, with
            // nothing fresh to scan or fold.
            let dir = config.dense_dir();
            self.fold(&d)?;
            self.dense_dumped = dense_snapshot::dump(&d, &dir)?;
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
}
