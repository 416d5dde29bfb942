//! Webhook payloads turned into documents. Each source's module verifies nothing (the HTTP layer
//! does) and does no I/O: it maps a payload, plus the document already stored for the same
//! entity, to the merged document to upsert. Merging is what makes unordered, repeated
//! deliveries safe: fields carry the time of the event that set them, an older event only
//! fills fields that are still missing, and `updated_at` never goes backwards.

pub mod aircall;
pub mod guesty;
pub mod svix;

use serde_json::{Map, Value};

/// What a webhook asks the store to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Upsert this document (already merged with the stored one).
    Upsert(concierge_engine::Document),
    /// A known source but an event we do not index: keep the raw body only.
    KeepRaw { reason: String },
}

impl Action {
    /// The document to write, for [`concierge_engine::Engine::update`] (`None`: keep raw).
    pub fn into_upsert(self) -> Option<concierge_engine::Document> {
        match self {
            Action::Upsert(doc) => Some(doc),
            Action::KeepRaw { reason } => {
                tracing::info!(%reason, "webhook event kept raw");
                None
            }
        }
    }
}

/// Merges `patch` into `stored` metadata: a patch at least as new as the stored fields
/// overwrites them; an older one only fills missing fields. `clock` names the metadata key that
/// holds the time (ms) of the fields' latest event.
pub fn merge_fields(
    stored: &Map<String, Value>,
    patch: Map<String, Value>,
    patch_ms: i64,
    clock: &str,
) -> Map<String, Value> {
    let stored_ms = stored
        .get(clock)
        .and_then(Value::as_i64)
        .unwrap_or(i64::MIN);
    let mut out = stored.clone();
    let newer = patch_ms >= stored_ms;
    for (k, v) in patch {
        if v.is_null() {
            continue;
        }
        if newer || !out.contains_key(&k) {
            out.insert(k, v);
        }
    }
    if newer {
        out.insert(clock.to_owned(), Value::from(patch_ms));
    }
    out
}

/// A string field, if present and non-empty.
pub fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_older_patch_only_fills_missing_fields() {
        let stored = json!({"status": "canceled", "t": 200})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let older = json!({"status": "confirmed", "guest": "Ana"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let merged = merge_fields(&stored, older, 100, "t");
        assert_eq!(merged["status"], "canceled");
        assert_eq!(merged["guest"], "Ana");
        assert_eq!(merged["t"], 200);
        let newer = json!({"status": "checked_in"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let merged = merge_fields(&merged, newer, 300, "t");
        assert_eq!(
            (merged["status"].as_str(), merged["t"].as_i64()),
            (Some("checked_in"), Some(300))
        );
    }
}
