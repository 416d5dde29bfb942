//! The canonical [`Document`] every source is turned into, its id rules, and the operations an
//! ingest call carries. Not for: storage encoding (see `store`) or chunking (see `chunking`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::InvalidInput;

/// Longest accepted document id, in bytes.
pub const MAX_ID_BYTES: usize = 512;
/// Longest accepted title, in bytes.
pub const MAX_TITLE_BYTES: usize = 4 * 1024;
/// Longest accepted text, in bytes (a long call transcript is well under 1 MiB).
pub const MAX_TEXT_BYTES: usize = 8 * 1024 * 1024;

/// A document as Concierge stores, indexes and returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Stable id `source:kind:external_id`, e.g. `aircall:call:123456`.
    pub id: String,
    /// Where it came from (`aircall`, `guesty`, `rocketchat`, ...): the id's first part.
    pub source: String,
    /// What it is (`call`, `reservation`, `qa`, ...): the id's second part.
    pub kind: String,
    /// Short title, indexed for keywords with the text.
    #[serde(default)]
    pub title: String,
    /// The body that is chunked, embedded and indexed.
    #[serde(default)]
    pub text: String,
    /// Free-form attributes; scalar values (also nested, as dotted paths) can be filtered on.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// When the source last changed it, in milliseconds since the Unix epoch. An upsert older
    /// than the stored document changes nothing.
    pub updated_at: i64,
    /// Assigned by the store: 1 on first write, +1 on every applied change.
    #[serde(default)]
    pub version: u64,
}

impl Document {
    /// A document whose `source` and `kind` are taken from its id.
    pub fn new(
        id: impl Into<String>,
        title: impl Into<String>,
        text: impl Into<String>,
        updated_at: i64,
    ) -> Result<Self, InvalidInput> {
        let id = id.into();
        let parts = DocumentId::parse(&id)?;
        Ok(Document {
            source: parts.source.to_owned(),
            kind: parts.kind.to_owned(),
            id,
            title: title.into(),
            text: text.into(),
            metadata: Map::new(),
            updated_at,
            version: 0,
        })
    }

    /// Checks everything the engine relies on: id shape, source/kind agree with the id, sizes,
    /// something to index.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        let parts = DocumentId::parse(&self.id)?;
        if parts.source != self.source {
            return Err(field(
                "source",
                format!("is {:?} but the id says {:?}", self.source, parts.source),
            ));
        }
        if parts.kind != self.kind {
            return Err(field(
                "kind",
                format!("is {:?} but the id says {:?}", self.kind, parts.kind),
            ));
        }
        if self.title.len() > MAX_TITLE_BYTES {
            return Err(field(
                "title",
                format!(
                    "is {} bytes, the limit is {MAX_TITLE_BYTES}",
                    self.title.len()
                ),
            ));
        }
        if self.text.len() > MAX_TEXT_BYTES {
            return Err(field(
                "text",
                format!(
                    "is {} bytes, the limit is {MAX_TEXT_BYTES}",
                    self.text.len()
                ),
            ));
        }
        if self.title.trim().is_empty() && self.text.trim().is_empty() {
            return Err(field(
                "text",
                "title and text are both empty: nothing to index".to_owned(),
            ));
        }
        if self.updated_at < 0 {
            return Err(field(
                "updated_at",
                "must be milliseconds since the Unix epoch (not negative)".to_owned(),
            ));
        }
        for key in self.metadata.keys() {
            if key.is_empty()
                || key.contains(crate::filter::META_SEPARATOR)
                || key.contains('.') && key.split('.').any(str::is_empty)
            {
                return Err(field(
                    "metadata",
                    format!(
                        "key {key:?} is empty, has an empty path segment or a control character"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The same content (ignoring the store-assigned version)?
    pub(crate) fn same_content(&self, other: &Document) -> bool {
        self.title == other.title
            && self.text == other.text
            && self.metadata == other.metadata
            && self.updated_at == other.updated_at
    }
}

fn field(field: &'static str, reason: String) -> InvalidInput {
    InvalidInput::Field { field, reason }
}

/// The three parts of a document id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentId<'a> {
    /// First part.
    pub source: &'a str,
    /// Second part.
    pub kind: &'a str,
    /// The rest (may itself contain `:`).
    pub external_id: &'a str,
}

impl<'a> DocumentId<'a> {
    /// Splits and checks `source:kind:external_id`.
    pub fn parse(id: &'a str) -> Result<Self, InvalidInput> {
        let bad = |reason| InvalidInput::DocumentId {
            id: id.to_owned(),
            reason,
        };
        if id.len() > MAX_ID_BYTES {
            return Err(bad("longer than 512 bytes"));
        }
        if id.chars().any(char::is_control) {
            return Err(bad("contains a control character"));
        }
        let mut parts = id.splitn(3, ':');
        let (Some(source), Some(kind), Some(external_id)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("needs three parts separated by ':'"));
        };
        if source.is_empty() || kind.is_empty() || external_id.is_empty() {
            return Err(bad("a part is empty"));
        }
        let name_ok = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        };
        if !name_ok(source) || !name_ok(kind) {
            return Err(bad("source and kind may use only a-z, 0-9, '_' and '-'"));
        }
        Ok(DocumentId {
            source,
            kind,
            external_id,
        })
    }
}

/// One change an ingest call asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// Insert or replace (unless the stored document is newer).
    Upsert(Document),
    /// Remove from the store and every index (unless the stored document is newer).
    Delete {
        /// The document id.
        id: String,
        /// When the source deleted it (milliseconds since the epoch).
        updated_at: i64,
    },
}

impl Operation {
    /// The document id the operation is about.
    pub fn id(&self) -> &str {
        match self {
            Operation::Upsert(doc) => &doc.id,
            Operation::Delete { id, .. } => id,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), InvalidInput> {
        match self {
            Operation::Upsert(doc) => doc.validate(),
            Operation::Delete { id, updated_at } => {
                DocumentId::parse(id)?;
                if *updated_at < 0 {
                    return Err(field("updated_at", "must not be negative".to_owned()));
                }
                Ok(())
            }
        }
    }
}

/// What an ingest call did to one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Written; the change log entry has this sequence number.
    Applied {
        /// Change-log sequence of the entry.
        seq: u64,
        /// The document's version after the change.
        version: u64,
    },
    /// The stored document is newer: nothing changed.
    Stale,
    /// The stored document is identical (a redelivery): nothing changed.
    Unchanged,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_need_three_non_empty_parts() {
        assert!(DocumentId::parse("aircall:call:1").is_ok());
        let parts = DocumentId::parse("guesty:reservation:a:b").expect("valid");
        assert_eq!(parts.external_id, "a:b");
        for bad in [
            "",
            "aircall",
            "aircall:call",
            "aircall::1",
            ":call:1",
            "Aircall:call:1",
            "air call:call:1",
            "a:b:\n",
        ] {
            assert!(DocumentId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn validation_rejects_source_kind_disagreeing_with_the_id() {
        let mut doc = Document::new("aircall:call:1", "t", "x", 1).expect("valid");
        doc.validate().expect("valid");
        doc.source = "guesty".into();
        assert!(matches!(
            doc.validate(),
            Err(InvalidInput::Field {
                field: "source",
                ..
            })
        ));
    }

    #[test]
    fn validation_rejects_empty_documents_and_negative_times() {
        let doc = Document::new("aircall:call:1", " ", "", 1).expect("valid id");
        assert!(doc.validate().is_err());
        let doc = Document::new("aircall:call:1", "t", "x", -1).expect("valid id");
        assert!(doc.validate().is_err());
    }
}
