//! The change log: one entry per applied change, keyed by sequence number; the sequencer that
//! hands out sequences and knows which ones are durable; consumer cursors, trimming below the
//! slowest cursor, and the dead-letter records of entries a consumer gave up on.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use rocksdb::{IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::store::{Store, cf, decode_json, decode_u64, meta_key, put_json};

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The document was inserted or replaced.
    Upsert,
    /// The document was deleted.
    Delete,
}

/// One change-log entry. Consumers read the document's current state when they apply it, so
/// applying an old entry again is harmless (at-least-once delivery, idempotent consumers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEntry {
    /// Position in the log.
    pub seq: u64,
    /// Upsert or delete.
    pub kind: ChangeKind,
    /// The document id.
    pub id: String,
    /// The document's version after the change.
    pub version: u64,
    /// When the change was made durable, milliseconds since the epoch (0 in entries written
    /// before this field existed): what a consumer's lag in seconds is measured from.
    #[serde(default)]
    pub at_ms: u64,
}

/// An entry a consumer failed on too many times, kept for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The consumer that gave up.
    pub consumer: String,
    /// The entry.
    pub entry: ChangeEntry,
    /// How many times it was tried.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// When it was given up on (milliseconds since the epoch).
    pub at_ms: i64,
}

pub(crate) fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Hands out sequence numbers and tracks the durable watermark: the highest sequence below
/// which every allocated sequence has been written (or abandoned). Readers of the log never
/// go past it, so a consumer cannot skip an entry whose batch is still being synced while a
/// later one already landed.
#[derive(Debug)]
pub(crate) struct Sequencer {
    state: Mutex<SeqState>,
    advanced: Condvar,
}

#[derive(Debug)]
struct SeqState {
    next: u64,
    /// first -> last of each range still being written.
    in_flight: BTreeMap<u64, u64>,
    durable: u64,
}

impl Sequencer {
    /// `last` is the highest sequence already in the log (or trimmed).
    pub fn new(last: u64) -> Self {
        Sequencer {
            state: Mutex::new(SeqState {
                next: last + 1,
                in_flight: BTreeMap::new(),
                durable: last,
            }),
            advanced: Condvar::new(),
        }
    }

    /// Reserves `n` consecutive sequences; the caller must call [`Sequencer::finish`] with the
    /// first one whether or not its write succeeds.
    pub fn allocate(&self, n: u64) -> u64 {
        let mut s = self.lock();
        let first = s.next;
        s.next += n;
        s.in_flight.insert(first, first + n - 1);
        first
    }

    pub fn finish(&self, first: u64) {
        let mut s = self.lock();
        s.in_flight.remove(&first);
        s.durable = match s.in_flight.keys().next() {
            Some(lowest) => lowest - 1,
            None => s.next - 1,
        };
        drop(s);
        self.advanced.notify_all();
    }

    /// The highest sequence handed out so far (written, being written, or abandoned).
    pub fn issued(&self) -> u64 {
        self.lock().next - 1
    }

    /// Every sequence up to this one is in the log (or was abandoned by a failed write).
    pub fn durable(&self) -> u64 {
        self.lock().durable
    }

    /// Waits until the durable watermark passes `seq`, or the timeout.
    pub fn wait_durable_after(&self, seq: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        while s.durable <= seq {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = match self.advanced.wait_timeout(s, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        s.durable
    }

    /// Wakes every waiter (used on close).
    pub fn wake_all(&self) {
        self.advanced.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SeqState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The highest sequence ever written to the log, including trimmed ones.
pub(crate) fn last_seq(store: &Store) -> Result<u64> {
    let trimmed = store
        .get_u64(cf::META, meta_key::TRIMMED_THROUGH)?
        .unwrap_or(0);
    let last_in_log = match store
        .db()
        .iterator_cf(&store.cf(cf::CHANGELOG), IteratorMode::End)
        .next()
    {
        Some(item) => {
            let (key, _) = item?;
            decode_u64("changelog key", &key)?
        }
        None => 0,
    };
    Ok(trimmed.max(last_in_log))
}

/// Up to `limit` entries with `after < seq <= until`, in order.
pub(crate) fn read(
    store: &Store,
    after: u64,
    until: u64,
    limit: usize,
) -> Result<Vec<ChangeEntry>> {
    let mut out = Vec::new();
    if after >= until {
        return Ok(out);
    }
    let start = seq_key(after + 1);
    let iter = store.db().iterator_cf(
        &store.cf(cf::CHANGELOG),
        IteratorMode::From(&start, rocksdb::Direction::Forward),
    );
    for item in iter {
        let (key, value) = item?;
        let seq = decode_u64("changelog key", &key)?;
        if seq > until || out.len() >= limit {
            break;
        }
        out.push(decode_json("changelog entry", &value)?);
    }
    Ok(out)
}

/// When the oldest entry after `cursor` (up to `durable`) was written, ms since the epoch:
/// `None` when there is none. Entries from before entries carried their time (`at_ms` 0) are
/// passed over, so the answer is the oldest time known.
pub(crate) fn waiting_since_ms(store: &Store, cursor: u64, durable: u64) -> Result<Option<i64>> {
    if cursor >= durable {
        return Ok(None);
    }
    let start = seq_key(cursor + 1);
    let iter = store.db().iterator_cf(
        &store.cf(cf::CHANGELOG),
        IteratorMode::From(&start, rocksdb::Direction::Forward),
    );
    for item in iter.take(64) {
        let (key, value) = item?;
        if decode_u64("changelog key", &key)? > durable {
            break;
        }
        let entry: ChangeEntry = decode_json("changelog entry", &value)?;
        if entry.at_ms > 0 {
            return Ok(i64::try_from(entry.at_ms).ok());
        }
    }
    Ok(None)
}

/// A consumer's durable position: every entry up to it has been applied.
pub(crate) fn cursor(store: &Store, consumer: &str) -> Result<Option<u64>> {
    store.get_u64(cf::CURSORS, consumer.as_bytes())
}

/// All consumers' cursors.
pub(crate) fn cursors(store: &Store) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for item in store
        .db()
        .iterator_cf(&store.cf(cf::CURSORS), IteratorMode::Start)
    {
        let (key, value) = item?;
        out.push((
            String::from_utf8_lossy(&key).into_owned(),
            decode_u64("cursor", &value)?,
        ));
    }
    Ok(out)
}

/// Moves a consumer's cursor (synced), then trims the log below the slowest cursor.
pub(crate) fn set_cursor(store: &Store, consumer: &str, seq: u64) -> Result<()> {
    let mut batch = WriteBatch::default();
    batch.put_cf(
        &store.cf(cf::CURSORS),
        consumer.as_bytes(),
        seq.to_be_bytes(),
    );
    store.write(batch)?;
    trim(store)
}

/// Removes every entry at or below the slowest consumer's cursor. With no consumer registered
/// nothing is trimmed (an operator may add one later and expects the history).
pub(crate) fn trim(store: &Store) -> Result<()> {
    let all = cursors(store)?;
    let Some(slowest) = all.iter().map(|(_, seq)| *seq).min() else {
        return Ok(());
    };
    let trimmed = store
        .get_u64(cf::META, meta_key::TRIMMED_THROUGH)?
        .unwrap_or(0);
    if slowest <= trimmed {
        return Ok(());
    }
    let mut batch = WriteBatch::default();
    batch.delete_range_cf(&store.cf(cf::CHANGELOG), seq_key(0), seq_key(slowest + 1));
    batch.put_cf(
        &store.cf(cf::META),
        meta_key::TRIMMED_THROUGH,
        slowest.to_be_bytes(),
    );
    store.write(batch)
}

pub(crate) fn deadletter_key(consumer: &str, seq: u64) -> Vec<u8> {
    let mut key = consumer.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub(crate) fn put_deadletter(store: &Store, letter: &DeadLetter) -> Result<()> {
    let mut batch = WriteBatch::default();
    put_json(
        &mut batch,
        &store.cf(cf::DEADLETTER),
        deadletter_key(&letter.consumer, letter.entry.seq),
        letter,
    )?;
    store.write(batch)
}

pub(crate) fn deadletters(store: &Store) -> Result<Vec<DeadLetter>> {
    store
        .db()
        .iterator_cf(&store.cf(cf::DEADLETTER), IteratorMode::Start)
        .map(|item| {
            let (_, value) = item?;
            decode_json("deadletter", &value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_durable_watermark_waits_for_the_lowest_write_in_flight() {
        let s = Sequencer::new(10);
        let a = s.allocate(2); // 11, 12
        let b = s.allocate(1); // 13
        assert_eq!((a, b), (11, 13));
        s.finish(b);
        assert_eq!(
            s.durable(),
            10,
            "13 landed but 11-12 are still being written"
        );
        s.finish(a);
        assert_eq!(s.durable(), 13);
    }
}
