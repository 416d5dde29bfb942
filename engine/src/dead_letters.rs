//! What an operator does with a dead letter (a change-log entry a consumer gave up on): retry
//! it or drop it. A retry writes a new change-log entry for the document's current state (an
//! upsert, or a delete if it is deleted now) and removes the letter, in one synced batch: every
//! consumer applies the document again — consumers are idempotent, so the ones that had it
//! lose nothing — and the one that gave up gets another go with its normal retries.

use rocksdb::WriteBatch;

use crate::changelog::{self, ChangeEntry, ChangeKind, DeadLetter, seq_key};
use crate::error::Result;
use crate::shared::Shared;
use crate::store::{cf, put_json};

/// Which dead letter: the consumer that gave up and the entry's sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterKey<'a> {
    pub consumer: &'a str,
    pub seq: u64,
}

/// The letter, if it is there.
pub(crate) fn find(shared: &Shared, key: &LetterKey<'_>) -> Result<Option<DeadLetter>> {
    shared.store.get_json(
        cf::DEADLETTER,
        &changelog::deadletter_key(key.consumer, key.seq),
    )
}

/// Removes the letter; false if it was not there.
pub(crate) fn discard(shared: &Shared, key: &LetterKey<'_>) -> Result<bool> {
    if find(shared, key)?.is_none() {
        return Ok(false);
    }
    let mut batch = WriteBatch::default();
    batch.delete_cf(
        &shared.store.cf(cf::DEADLETTER),
        changelog::deadletter_key(key.consumer, key.seq),
    );
    shared.store.write(batch)?;
    Ok(true)
}

/// Re-emits the letter's document as a new change-log entry and removes the letter; the new
/// entry's sequence, or `None` if there is no such letter.
pub(crate) fn retry(shared: &Shared, key: &LetterKey<'_>) -> Result<Option<u64>> {
    crate::ingest::check_writable(shared)?;
    let Some(letter) = find(shared, key)? else {
        return Ok(None);
    };
    let id = letter.entry.id.as_str();
    // The document's stripe: no write of it can slip between our read and our entry.
    let _guard = crate::ingest::lock_stripes(shared, &[id], None);
    let stored = shared.store.get_doc(id)?;
    let (kind, version) = match &stored {
        Some(s) if s.deleted => (ChangeKind::Delete, s.doc.version),
        Some(s) => (ChangeKind::Upsert, s.doc.version),
        // Never stored (a letter older than its document's trim): deleting is the safe replay.
        None => (ChangeKind::Delete, letter.entry.version),
    };
    let seq = shared.sequencer.allocate(1);
    let written = (|| {
        let mut batch = WriteBatch::default();
        let entry = ChangeEntry {
            seq,
            kind,
            id: id.to_owned(),
            version,
            at_ms: u64::try_from(concierge_infra::utc::now_ms()).unwrap_or(0),
        };
        put_json(
            &mut batch,
            &shared.store.cf(cf::CHANGELOG),
            seq_key(seq),
            &entry,
        )?;
        batch.delete_cf(
            &shared.store.cf(cf::DEADLETTER),
            changelog::deadletter_key(key.consumer, key.seq),
        );
        shared.store.write(batch)
    })();
    shared.sequencer.finish(seq);
    written.map(|()| Some(seq))
}
