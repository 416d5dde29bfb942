//! Ingest: one synced RocksDB batch per call with the documents, their change-log entries and
//! the idempotency key. Writes to the same document (or key) are ordered by lock stripes;
//! writes to different documents run concurrently and share fsyncs (RocksDB group commit).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use crate::changelog::{ChangeEntry, ChangeKind, seq_key};
use crate::document::{Document, Operation, Outcome};
use crate::error::{Error, InvalidInput, Result};
use crate::shared::{STRIPES, Shared};
use crate::store::{StoredDoc, cf, put_json};

/// Longest accepted idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;
/// Most operations in one ingest call.
pub const MAX_OPERATIONS: usize = 1_000;

/// One ingest call: applied atomically (all written in one batch, or none).
#[derive(Debug, Clone, Default)]
pub struct IngestRequest {
    /// The changes, applied in order.
    pub operations: Vec<Operation>,
    /// A key identifying the delivery (e.g. a webhook event id): a second call with the same
    /// key changes nothing and returns the first call's receipt.
    pub idempotency_key: Option<String>,
}

impl IngestRequest {
    /// A request with one upsert.
    pub fn upsert(doc: Document) -> Self {
        IngestRequest {
            operations: vec![Operation::Upsert(doc)],
            idempotency_key: None,
        }
    }

    /// A request with one delete.
    pub fn delete(id: impl Into<String>, updated_at: i64) -> Self {
        IngestRequest {
            operations: vec![Operation::Delete {
                id: id.into(),
                updated_at,
            }],
            idempotency_key: None,
        }
    }

    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// What an ingest call did. Returned only once everything is durably written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestReceipt {
    /// Pass as `min_seq` to a search to see these changes. The sequence of the call's last
    /// change-log entry, or of the stored documents' last changes when nothing was applied.
    pub seq: u64,
    /// One outcome per operation, in order.
    pub outcomes: Vec<Outcome>,
    /// True when this is a repeat of an earlier call with the same idempotency key.
    #[serde(default)]
    pub duplicate: bool,
}

fn stripe_of(key: &str) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % STRIPES as u64) as usize
}

pub(crate) fn ingest(shared: &Shared, request: IngestRequest) -> Result<IngestReceipt> {
    validate(&request)?;
    check_writable(shared)?;
    let ids: Vec<&str> = request.operations.iter().map(Operation::id).collect();
    let _guards = lock_stripes(shared, &ids, request.idempotency_key.as_deref());
    if let Some(receipt) = earlier_receipt(shared, request.idempotency_key.as_deref())? {
        return Ok(receipt);
    }
    apply_locked(shared, &request)
}

/// Reads, merges and writes one document under its stripe lock, in one synced batch (see
/// [`crate::Engine::update`]). The outer error is the engine's; the inner one is the merge's
/// own refusal, passed through untouched.
pub(crate) fn update<E>(
    shared: &Shared,
    id: &str,
    idempotency_key: Option<String>,
    merge: impl FnOnce(Option<&Document>) -> std::result::Result<Option<Document>, E>,
) -> Result<std::result::Result<Updated, E>> {
    crate::document::DocumentId::parse(id)?;
    if let Some(key) = &idempotency_key {
        validate_key(key)?;
    }
    check_writable(shared)?;
    let _guards = lock_stripes(shared, &[id], idempotency_key.as_deref());
    if let Some(receipt) = earlier_receipt(shared, idempotency_key.as_deref())? {
        return Ok(Ok(Updated::Written(receipt)));
    }
    let stored = shared
        .store
        .get_doc(id)?
        .filter(|s| !s.deleted)
        .map(|s| s.doc);
    let doc = match merge(stored.as_ref()) {
        Ok(Some(doc)) => doc,
        Ok(None) => return Ok(Ok(Updated::Kept)),
        Err(e) => return Ok(Err(e)),
    };
    if doc.id != id {
        return Err(InvalidInput::Field {
            field: "id",
            reason: format!("the merge returned {:?} for the document {id:?}", doc.id),
        }
        .into());
    }
    let request = IngestRequest {
        operations: vec![Operation::Upsert(doc)],
        idempotency_key,
    };
    validate(&request)?;
    apply_locked(shared, &request).map(|r| Ok(Updated::Written(r)))
}

/// What [`crate::Engine::update`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Updated {
    /// The merged document was written (or the idempotency key had been seen: `duplicate`).
    Written(IngestReceipt),
    /// The merge returned nothing to write; nothing changed.
    Kept,
}

fn validate(request: &IngestRequest) -> Result<()> {
    if request.operations.is_empty() {
        return Err(InvalidInput::Field {
            field: "operations",
            reason: "at least one operation is needed".to_owned(),
        }
        .into());
    }
    if request.operations.len() > MAX_OPERATIONS {
        return Err(InvalidInput::Field {
            field: "operations",
            reason: format!(
                "{} operations, the limit is {MAX_OPERATIONS}",
                request.operations.len()
            ),
        }
        .into());
    }
    for (i, op) in request.operations.iter().enumerate() {
        op.validate().map_err(|e| match e {
            InvalidInput::Field { field, reason } => InvalidInput::Field {
                field,
                reason: format!("operation {i}: {reason}"),
            },
            InvalidInput::DocumentId { id, reason } => InvalidInput::Field {
                field: "id",
                reason: format!(
                    "operation {i}: {id:?} is not of the form source:kind:external_id ({reason})"
                ),
            },
            other @ InvalidInput::Search(_) => other,
        })?;
    }
    if let Some(key) = &request.idempotency_key {
        validate_key(key)?;
    }
    Ok(())
}

fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(InvalidInput::Field {
            field: "idempotency_key",
            reason: format!("must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes"),
        }
        .into());
    }
    Ok(())
}

pub(crate) fn check_writable(shared: &Shared) -> Result<()> {
    shared.store.check_poison()?;
    if shared.stopping() {
        return Err(Error::Closed);
    }
    shared.disk.check()
}

/// Locks the stripes of the documents and the idempotency key, in index order (no deadlock
/// between calls that share stripes).
pub(crate) fn lock_stripes<'a>(
    shared: &'a Shared,
    ids: &[&str],
    idempotency_key: Option<&str>,
) -> Vec<std::sync::MutexGuard<'a, ()>> {
    let mut stripes: Vec<usize> = ids.iter().map(|id| stripe_of(id)).collect();
    if let Some(key) = idempotency_key {
        stripes.push(stripe_of(&format!("event:{key}")));
    }
    stripes.sort_unstable();
    stripes.dedup();
    stripes
        .iter()
        .map(|i| {
            shared.stripes[*i]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        })
        .collect()
}

/// The receipt of an earlier call with this idempotency key (marked `duplicate`), if any.
fn earlier_receipt(
    shared: &Shared,
    idempotency_key: Option<&str>,
) -> Result<Option<IngestReceipt>> {
    let Some(key) = idempotency_key else {
        return Ok(None);
    };
    Ok(shared
        .store
        .get_json::<IngestReceipt>(cf::EVENTS, key.as_bytes())?
        .map(|mut receipt| {
            receipt.duplicate = true;
            receipt
        }))
}

/// Plans and writes a validated request whose stripes are locked and whose key is new.
fn apply_locked(shared: &Shared, request: &IngestRequest) -> Result<IngestReceipt> {
    check_writable(shared)?;

    // Current state of every document the call touches (later operations see earlier ones).
    let mut ids: Vec<&str> = request.operations.iter().map(Operation::id).collect();
    ids.sort_unstable();
    ids.dedup();
    let stored = shared.store.get_docs(ids.iter().copied())?;
    let mut current: HashMap<&str, Option<StoredDoc>> = ids.iter().copied().zip(stored).collect();

    enum Plan {
        Write(StoredDoc, ChangeKind),
        Skip(Outcome, u64),
    }
    let mut plans = Vec::with_capacity(request.operations.len());
    for op in &request.operations {
        let prior = current.get(op.id()).cloned().flatten();
        let plan = match op {
            Operation::Upsert(doc) => match &prior {
                Some(p) if doc.updated_at < p.doc.updated_at => Plan::Skip(Outcome::Stale, p.seq),
                Some(p) if !p.deleted && doc.same_content(&p.doc) => {
                    Plan::Skip(Outcome::Unchanged, p.seq)
                }
                Some(p) if p.deleted && doc.updated_at == p.doc.updated_at => {
                    Plan::Skip(Outcome::Stale, p.seq)
                }
                _ => {
                    let mut doc = doc.clone();
                    doc.version = prior.as_ref().map_or(0, |p| p.doc.version) + 1;
                    Plan::Write(
                        StoredDoc {
                            doc,
                            deleted: false,
                            seq: 0,
                        },
                        ChangeKind::Upsert,
                    )
                }
            },
            Operation::Delete { id, updated_at } => match &prior {
                Some(p) if *updated_at < p.doc.updated_at => Plan::Skip(Outcome::Stale, p.seq),
                Some(p) if p.deleted => Plan::Skip(Outcome::Unchanged, p.seq),
                _ => {
                    let version = prior.as_ref().map_or(0, |p| p.doc.version) + 1;
                    let mut tomb = Document::new(id.clone(), "", "", *updated_at)
                        .map_err(Error::InvalidInput)?;
                    tomb.version = version;
                    Plan::Write(
                        StoredDoc {
                            doc: tomb,
                            deleted: true,
                            seq: 0,
                        },
                        ChangeKind::Delete,
                    )
                }
            },
        };
        if let Plan::Write(stored, _) = &plan {
            current.insert(op.id(), Some(stored.clone()));
        }
        plans.push(plan);
    }

    let writes = plans
        .iter()
        .filter(|p| matches!(p, Plan::Write(..)))
        .count() as u64;
    let first = if writes > 0 {
        shared.sequencer.allocate(writes)
    } else {
        0
    };
    let result = (|| {
        let mut batch = WriteBatch::default();
        let mut outcomes = Vec::with_capacity(plans.len());
        let mut seq = first;
        let mut receipt_seq = 0;
        let docs_cf = shared.store.cf(cf::DOCS);
        let log_cf = shared.store.cf(cf::CHANGELOG);
        let at_ms = u64::try_from(concierge_infra::utc::now_ms()).unwrap_or(0);
        for plan in plans {
            match plan {
                Plan::Write(mut stored, kind) => {
                    stored.seq = seq;
                    put_json(&mut batch, &docs_cf, stored.doc.id.as_bytes(), &stored)?;
                    let entry = ChangeEntry {
                        seq,
                        kind,
                        id: stored.doc.id.clone(),
                        version: stored.doc.version,
                        at_ms,
                    };
                    put_json(&mut batch, &log_cf, seq_key(seq), &entry)?;
                    outcomes.push(Outcome::Applied {
                        seq,
                        version: stored.doc.version,
                    });
                    receipt_seq = receipt_seq.max(seq);
                    seq += 1;
                }
                Plan::Skip(outcome, prior_seq) => {
                    outcomes.push(outcome);
                    receipt_seq = receipt_seq.max(prior_seq);
                }
            }
        }
        let receipt = IngestReceipt {
            seq: receipt_seq,
            outcomes,
            duplicate: false,
        };
        if let Some(key) = &request.idempotency_key {
            put_json(
                &mut batch,
                &shared.store.cf(cf::EVENTS),
                key.as_bytes(),
                &receipt,
            )?;
        }
        if writes > 0 || request.idempotency_key.is_some() {
            shared.store.write(batch)?;
        }
        if writes > 0 {
            shared
                .metrics
                .acknowledged(first + writes - 1, std::time::Instant::now());
        }
        Ok(receipt)
    })();
    if writes > 0 {
        shared.sequencer.finish(first);
    }
    result
}
