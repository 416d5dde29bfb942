//! Search filters (source, kind, metadata equality, `updated_at` range) and the per-document
//! attributes they are checked against. Both index legs apply the same [`Filter`]: the keyword
//! leg as tantivy clauses over the same terms, the dense leg by checking [`DocAttrs`].

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::document::Document;
use crate::error::InvalidInput;

/// Separates a metadata path from its value in an indexed metadata term.
pub(crate) const META_SEPARATOR: char = '\u{1}';

/// Which documents a search may return. Empty lists and `None` mean "no constraint".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Any of these sources (`"aircall"` or `["aircall", "guesty"]`).
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub source: Vec<String>,
    /// Any of these kinds.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub kind: Vec<String>,
    /// Every entry must hold: `{"listing_id": "L1", "guest.country": "FR"}` (dotted paths reach
    /// nested objects; a metadata array matches when it contains the value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
    /// `updated_at` range in milliseconds since the epoch (`{}`, no bound, is no range).
    #[serde(
        default,
        deserialize_with = "bounded_range",
        skip_serializing_if = "Option::is_none"
    )]
    pub updated_at: Option<TimeRange>,
}

/// A half-open time range: `gte <= updated_at < lt`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeRange {
    /// Inclusive lower bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<i64>,
    /// Exclusive upper bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<i64>,
}

/// A range, or none when it has neither bound: so no backend (tantivy's range query panics on
/// one, Qdrant's would be a condition on nothing) ever meets an unbounded range.
fn bounded_range<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TimeRange>, D::Error> {
    Ok(Option::<TimeRange>::deserialize(d)?.filter(|r| r.gte.is_some() || r.lt.is_some()))
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl Filter {
    /// True when the filter constrains nothing.
    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
            && self.kind.is_empty()
            && self.metadata.is_empty()
            && self.updated_at.is_none()
    }

    /// Checks the filter is well formed, and returns the metadata terms it requires.
    pub(crate) fn metadata_terms(&self) -> Result<Vec<String>, InvalidInput> {
        let mut terms = Vec::with_capacity(self.metadata.len());
        for (path, value) in &self.metadata {
            if path.is_empty() || path.contains(META_SEPARATOR) {
                return Err(InvalidInput::Search(format!(
                    "metadata filter key {path:?} is not a valid path"
                )));
            }
            match scalar_text(value) {
                Some(text) => terms.push(meta_term(path, &text)),
                None => {
                    return Err(InvalidInput::Search(format!(
                        "metadata filter {path:?} must be a string, number or boolean (got {value})"
                    )));
                }
            }
        }
        if let Some(range) = self.updated_at
            && let (Some(gte), Some(lt)) = (range.gte, range.lt)
            && gte >= lt
        {
            return Err(InvalidInput::Search(format!(
                "updated_at range is empty (gte {gte} >= lt {lt})"
            )));
        }
        Ok(terms)
    }

    /// Does a document with these attributes pass? `meta_terms` is [`Filter::metadata_terms`].
    pub(crate) fn matches(&self, attrs: &DocAttrs, meta_terms: &[String]) -> bool {
        if !self.source.is_empty() && !self.source.contains(&attrs.source) {
            return false;
        }
        if !self.kind.is_empty() && !self.kind.contains(&attrs.kind) {
            return false;
        }
        if let Some(range) = self.updated_at
            && (range.gte.is_some_and(|gte| attrs.updated_at < gte)
                || range.lt.is_some_and(|lt| attrs.updated_at >= lt))
        {
            return false;
        }
        meta_terms
            .iter()
            .all(|t| attrs.meta_terms.binary_search(t).is_ok())
    }
}

/// What filters look at, kept in memory per live document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DocAttrs {
    pub source: String,
    pub kind: String,
    pub updated_at: i64,
    /// Sorted, deduplicated metadata terms (`path\u{1}value`).
    pub meta_terms: Vec<String>,
}

impl DocAttrs {
    pub fn of(doc: &Document) -> Self {
        DocAttrs {
            source: doc.source.clone(),
            kind: doc.kind.clone(),
            updated_at: doc.updated_at,
            meta_terms: metadata_terms_of(&doc.metadata),
        }
    }
}

/// The indexed terms of a document's metadata: one per scalar (or scalar array element), with
/// nested objects flattened to dotted paths.
pub fn metadata_terms_of(metadata: &Map<String, Value>) -> Vec<String> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<String>, depth: usize) {
        if depth > 8 {
            return;
        }
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    walk(&format!("{prefix}.{k}"), v, out, depth + 1);
                }
            }
            Value::Array(items) => {
                for item in items {
                    if let Some(text) = scalar_text(item) {
                        out.push(meta_term(prefix, &text));
                    }
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
                if let Some(text) = scalar_text(value) {
                    out.push(meta_term(prefix, &text));
                }
            }
        }
    }
    let mut out = Vec::new();
    for (k, v) in metadata {
        walk(k, v, &mut out, 0);
    }
    out.sort();
    out.dedup();
    out
}

fn meta_term(path: &str, value: &str) -> String {
    format!("{path}{META_SEPARATOR}{value}")
}

/// Canonical text of a scalar: numbers that are whole print without a fraction, so `2` and
/// `2.0` match each other.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                format!("{}", f as i64)
            }
            (None, None, Some(f)) => f.to_string(),
            (None, None, None) => n.to_string(),
        }),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn attrs(meta: Value) -> DocAttrs {
        let mut doc = Document::new("guesty:reservation:1", "t", "x", 100).expect("valid");
        doc.metadata = meta.as_object().cloned().unwrap_or_default();
        DocAttrs::of(&doc)
    }

    #[test]
    fn a_time_range_without_bounds_is_no_range_at_all() {
        let f: Filter = serde_json::from_value(json!({"updated_at": {}})).expect("parses");
        assert_eq!(f.updated_at, None);
        assert!(f.is_empty());
        let f: Filter = serde_json::from_value(json!({"updated_at": null})).expect("parses");
        assert_eq!(f.updated_at, None);
        let f: Filter = serde_json::from_value(json!({"updated_at": {"lt": 5}})).expect("parses");
        assert_eq!(f.updated_at.and_then(|r| r.lt), Some(5));
    }

    #[test]
    fn metadata_equality_reaches_nested_paths_arrays_and_numbers() {
        let a = attrs(
            json!({"listing": "L1", "guest": {"country": "FR"}, "tags": ["vip", "late"], "nights": 3.0}),
        );
        let f: Filter = serde_json::from_value(
            json!({"metadata": {"guest.country": "FR", "tags": "vip", "nights": 3}}),
        )
        .expect("parses");
        let terms = f.metadata_terms().expect("valid");
        assert!(f.matches(&a, &terms));
        let f: Filter =
            serde_json::from_value(json!({"metadata": {"listing": "L2"}})).expect("parses");
        assert!(!f.matches(&a, &f.metadata_terms().expect("valid")));
    }

    #[test]
    fn source_kind_and_time_range_all_apply() {
        let a = attrs(json!({}));
        let f: Filter = serde_json::from_value(json!({"source": "guesty", "kind": ["reservation", "listing"], "updated_at": {"gte": 100, "lt": 101}})).expect("parses");
        assert!(f.matches(&a, &[]));
        let f: Filter = serde_json::from_value(json!({"source": ["aircall"]})).expect("parses");
        assert!(!f.matches(&a, &[]));
        let f: Filter = serde_json::from_value(json!({"updated_at": {"lt": 100}})).expect("parses");
        assert!(!f.matches(&a, &[]));
    }

    #[test]
    fn malformed_filters_are_refused() {
        assert!(serde_json::from_value::<Filter>(json!({"colour": "red"})).is_err());
        let f: Filter =
            serde_json::from_value(json!({"metadata": {"x": {"y": 1}}})).expect("parses");
        assert!(f.metadata_terms().is_err());
        let f: Filter =
            serde_json::from_value(json!({"updated_at": {"gte": 5, "lt": 5}})).expect("parses");
        assert!(f.metadata_terms().is_err());
    }
}
