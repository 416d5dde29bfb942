//! Reading the stored documents in id order: pages of a source's (or a source and kind's)
//! documents by a prefix scan over the ids, and the number of live documents per
//! `source:kind`. Deleted documents (their tombstones) are passed over.

use std::collections::BTreeMap;

use rocksdb::{Direction, IteratorMode};
use serde::Serialize;

use crate::document::Document;
use crate::error::{InvalidInput, Result};
use crate::store::{Store, StoredDoc, cf, decode_json};

/// The most documents one page holds.
pub const MAX_PAGE: usize = 1_000;

/// One page of documents, and where the next one starts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentPage {
    /// Live documents in id order.
    pub documents: Vec<Document>,
    /// The id the next page starts after, when there may be more.
    pub next_after: Option<String>,
}

/// Live documents per `source:kind`, and in all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DocumentCounts {
    pub total: u64,
    pub by_kind: BTreeMap<String, u64>,
}

/// The prefix of the ids of `source`'s documents (of `kind`, when given).
pub fn id_prefix(source: Option<&str>, kind: Option<&str>) -> Result<String> {
    let part_ok = |p: &str| !p.is_empty() && !p.contains(':');
    match (source, kind) {
        (None, None) => Ok(String::new()),
        (Some(s), None) if part_ok(s) => Ok(format!("{s}:")),
        (Some(s), Some(k)) if part_ok(s) && part_ok(k) => Ok(format!("{s}:{k}:")),
        (None, Some(_)) => Err(InvalidInput::Field {
            field: "kind",
            reason: "a kind is looked up within a source: give source too".to_owned(),
        }
        .into()),
        _ => Err(InvalidInput::Field {
            field: "source",
            reason: "source and kind are non-empty and hold no ':'".to_owned(),
        }
        .into()),
    }
}

/// Up to `limit` live documents whose ids start with `prefix`, after the id `after`.
pub(crate) fn page(
    store: &Store,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<DocumentPage> {
    let limit = limit.clamp(1, MAX_PAGE);
    let start = match after {
        // The smallest key after `after`.
        Some(a) if a.as_bytes() >= prefix.as_bytes() => {
            let mut k = a.as_bytes().to_vec();
            k.push(0);
            k
        }
        _ => prefix.as_bytes().to_vec(),
    };
    let mut documents = Vec::new();
    let mut last = None;
    for item in store.db().iterator_cf(
        &store.cf(cf::DOCS),
        IteratorMode::From(&start, Direction::Forward),
    ) {
        let (key, value) = item?;
        if !key.starts_with(prefix.as_bytes()) {
            return Ok(DocumentPage {
                documents,
                next_after: None,
            });
        }
        if documents.len() == limit {
            return Ok(DocumentPage {
                documents,
                next_after: last,
            });
        }
        let stored: StoredDoc = decode_json(cf::DOCS, &value)?;
        if !stored.deleted {
            last = Some(stored.doc.id.clone());
            documents.push(stored.doc);
        }
    }
    Ok(DocumentPage {
        documents,
        next_after: None,
    })
}

/// Counts the live documents per `source:kind` (one pass over the ids; the JSON of each
/// is only looked at for its top-level `deleted` flag, the last field it has).
pub(crate) fn counts(store: &Store) -> Result<DocumentCounts> {
    let mut counts = DocumentCounts::default();
    for item in store
        .db()
        .iterator_cf(&store.cf(cf::DOCS), IteratorMode::Start)
    {
        let (key, value) = item?;
        if is_tombstone(&value) {
            continue;
        }
        let id = String::from_utf8_lossy(&key);
        let kind = id.rsplit_once(':').map_or(id.as_ref(), |(k, _)| k);
        counts.total += 1;
        match counts.by_kind.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                counts.by_kind.insert(kind.to_owned(), 1);
            }
        }
    }
    Ok(counts)
}

/// Whether a stored document's JSON is a deletion's tombstone: `StoredDoc` writes `doc` first,
/// so the last `"deleted":` in it is the record's own, whatever the document's text holds.
fn is_tombstone(json: &[u8]) -> bool {
    const FIELD: &[u8] = b"\"deleted\":";
    json.windows(FIELD.len())
        .rposition(|w| w == FIELD)
        .is_some_and(|at| json[at + FIELD.len()..].starts_with(b"true"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_need_a_source_before_a_kind_and_no_colons() {
        assert_eq!(id_prefix(None, None).ok().as_deref(), Some(""));
        assert_eq!(
            id_prefix(Some("aircall"), None).ok().as_deref(),
            Some("aircall:")
        );
        assert_eq!(
            id_prefix(Some("aircall"), Some("call")).ok().as_deref(),
            Some("aircall:call:")
        );
        assert!(id_prefix(None, Some("call")).is_err());
        assert!(id_prefix(Some("a:b"), None).is_err());
        assert!(id_prefix(Some(""), None).is_err());
    }

    #[test]
    fn a_tombstone_is_told_by_the_records_own_flag_not_the_documents_text() {
        let doc = Document::new("a:b:1", "t", "text says \"deleted\":true here", 1).expect("doc");
        let live = serde_json::to_vec(&StoredDoc {
            doc: doc.clone(),
            deleted: false,
            seq: 3,
        })
        .expect("json");
        let dead = serde_json::to_vec(&StoredDoc {
            doc,
            deleted: true,
            seq: 4,
        })
        .expect("json");
        assert!(!is_tombstone(&live));
        assert!(is_tombstone(&dead));
    }
}
