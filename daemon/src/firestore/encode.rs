//! A document as a Firestore document: its id made legal for Firestore (reversibly), its
//! fields typed (Firestore's REST `Value`s).
//!
//! Firestore ids may not contain `/`, be `.` or `..`, or look like `__name__`; ours are
//! `source:kind:external_id`, where the external part is anything. So `%` and `/` are
//! percent-encoded (`%25`, `%2F`), as is a leading `_` or `.` (`%5F`, `%2E`); decoding undoes
//! exactly that.

use concierge_engine::Document;
use serde_json::{Map, Value, json};

/// Firestore's limit on one document (1 MiB less its name and overhead: the API counts 1 048 487
/// bytes for fields).
pub const MAX_DOCUMENT_BYTES: usize = 1_048_487;

/// Our id as a Firestore document id.
pub fn document_id(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for (i, c) in id.chars().enumerate() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            '_' if i == 0 => out.push_str("%5F"),
            '.' if i == 0 => out.push_str("%2E"),
            c => out.push(c),
        }
    }
    out
}

/// A Firestore document id back to ours.
pub fn our_id(document_id: &str) -> String {
    document_id
        .replace("%2F", "/")
        .replace("%5F", "_")
        .replace("%2E", ".")
        .replace("%25", "%")
}

/// JSON as a Firestore `Value`.
pub fn value(v: &Value) -> Value {
    match v {
        Value::Null => json!({"nullValue": null}),
        Value::Bool(b) => json!({"booleanValue": b}),
        Value::Number(n) => match n.as_i64() {
            Some(i) => json!({"integerValue": i.to_string()}),
            None => json!({"doubleValue": n.as_f64().unwrap_or(0.0)}),
        },
        Value::String(s) => json!({"stringValue": s}),
        Value::Array(items) => {
            json!({"arrayValue": {"values": items.iter().map(value).collect::<Vec<_>>()}})
        }
        Value::Object(map) => json!({"mapValue": {"fields": fields_of(map)}}),
    }
}

fn fields_of(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter().map(|(k, v)| (k.clone(), value(v))).collect()
}

/// A Firestore `Value` back to JSON (what `value` wrote).
pub fn json_of(v: &Value) -> Value {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return Value::Null;
    };
    match kind.as_str() {
        "booleanValue" => inner.clone(),
        "integerValue" => inner
            .as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .map_or(Value::Null, |i| json!(i)),
        "doubleValue" => inner.clone(),
        "stringValue" | "timestampValue" => inner.clone(),
        "arrayValue" => Value::Array(
            inner["values"]
                .as_array()
                .map(|a| a.iter().map(json_of).collect())
                .unwrap_or_default(),
        ),
        "mapValue" => Value::Object(
            inner["fields"]
                .as_object()
                .map(|f| f.iter().map(|(k, v)| (k.clone(), json_of(v))).collect())
                .unwrap_or_default(),
        ),
        _ => Value::Null,
    }
}

/// The fields of `doc` (and the change-log sequence it was written at).
pub fn fields(doc: &Document, seq: u64) -> Value {
    let updated = concierge_infra::utc::rfc3339_ms(doc.updated_at);
    json!({
        "id": {"stringValue": doc.id},
        "source": {"stringValue": doc.source},
        "kind": {"stringValue": doc.kind},
        "title": {"stringValue": doc.title},
        "text": {"stringValue": doc.text},
        "metadata": {"mapValue": {"fields": fields_of(&doc.metadata)}},
        "updated_at": {"timestampValue": updated},
        "version": {"integerValue": doc.version.to_string()},
        "seq": {"integerValue": seq.to_string()},
    })
}

/// A document read back from Firestore's REST API (`fields` of a `Document`) as ours.
pub fn document_of(fields: &Value) -> Option<Document> {
    let text = |k: &str| fields[k]["stringValue"].as_str().map(str::to_owned);
    let int = |k: &str| {
        fields[k]["integerValue"]
            .as_str()
            .and_then(|s| s.parse::<i64>().ok())
    };
    let updated_at = fields["updated_at"]["timestampValue"]
        .as_str()
        .and_then(concierge_infra::utc::parse_rfc3339_ms)?;
    let metadata = if let Value::Object(m) = json_of(&fields["metadata"]) {
        m
    } else {
        Map::new()
    };
    let mut doc = Document::new(
        text("id")?,
        text("title").unwrap_or_default(),
        text("text").unwrap_or_default(),
        updated_at,
    )
    .ok()?;
    doc.metadata = metadata;
    doc.version = u64::try_from(int("version")?).ok()?;
    Some(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_firestore_refuses_are_encoded_and_decode_back() {
        for id in [
            "aircall:call:1",
            "web:page:https://x.example/a/b",
            "_odd:kind:%41",
            ".x:y:z",
            "a:b:50%/50%",
        ] {
            let enc = document_id(id);
            assert!(
                !enc.contains('/') && !enc.starts_with('_') && !enc.starts_with('.'),
                "{enc}"
            );
            assert_eq!(our_id(&enc), id);
        }
    }

    #[test]
    fn fields_are_typed_and_read_back() {
        let mut doc = Document::new(
            "guesty:reservation:r1",
            "Booking",
            "late check-in",
            1_700_000_000_123,
        )
        .expect("doc");
        doc.metadata = serde_json::from_str(r#"{"nights": 3, "vip": true, "rate": 99.5, "tags": ["a"], "guest": {"name": "Ana"}, "note": null}"#).expect("json");
        doc.version = 4;
        let f = fields(&doc, 17);
        assert_eq!(
            f["updated_at"]["timestampValue"],
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            f["metadata"]["mapValue"]["fields"]["nights"]["integerValue"],
            "3"
        );
        assert_eq!(
            f["metadata"]["mapValue"]["fields"]["guest"]["mapValue"]["fields"]["name"]["stringValue"],
            "Ana"
        );
        assert_eq!(f["seq"]["integerValue"], "17");
        let back = document_of(&f).expect("reads back");
        assert_eq!(back, doc);
    }
}
