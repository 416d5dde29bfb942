//! Qdrant's REST API, the calls Concierge makes: the collection (created or checked), payload
//! indexes, points upserted and deleted with `wait=true`, and the watermark point.
//!
//! Answers are Qdrant's envelope (`{"result", "status": "ok", "time"}`; errors
//! `{"status": {"error": "..."}}`). A failure is [`QdrantError`]: `retryable` for 429, 5xx,
//! timeouts and refused connections (with the server's `Retry-After`), not for other 4xx.

use std::time::Duration;

use serde_json::{Value, json};

/// Where the chunks go.
#[derive(Clone)]
pub struct QdrantTarget {
    /// `http://127.0.0.1:6333` or `https://xyz.cloud.qdrant.io:6333`.
    pub url: String,
    /// Sent as `api-key` (never logged).
    pub api_key: Option<String>,
    pub collection: String,
    /// The longest one request may take (`[qdrant] timeout_ms`).
    pub timeout: Duration,
}

impl std::fmt::Debug for QdrantTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QdrantTarget")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("collection", &self.collection)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A failed call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QdrantError {
    pub message: String,
    /// Worth another try (429, 5xx, timeouts, no connection).
    pub retryable: bool,
    /// The server's `Retry-After`.
    pub after: Option<Duration>,
}

impl QdrantError {
    fn permanent(message: String) -> QdrantError {
        QdrantError {
            message,
            retryable: false,
            after: None,
        }
    }
}

/// The names inside a Concierge collection.
pub const DENSE: &str = "dense";
pub const SPARSE: &str = "bm25";

/// Payload fields with an index (the filter fields).
pub const INDEXED_FIELDS: &[(&str, &str)] = &[
    ("document_id", "keyword"),
    ("source", "keyword"),
    ("kind", "keyword"),
    ("meta_terms", "keyword"),
    ("updated_at", "integer"),
    ("seq", "integer"),
];

/// A client of one collection.
#[derive(Debug, Clone)]
pub struct QdrantClient {
    target: QdrantTarget,
    agent: ureq::Agent,
}

impl QdrantClient {
    /// A client whose requests each end within the target's `timeout`.
    pub fn new(target: QdrantTarget) -> QdrantClient {
        let agent = crate::outbound::agent(target.timeout);
        QdrantClient { target, agent }
    }

    /// The same client with another time limit per request.
    pub fn with_timeout(mut self, timeout: Duration) -> QdrantClient {
        self.target.timeout = timeout;
        QdrantClient::new(self.target)
    }

    pub fn collection(&self) -> &str {
        &self.target.collection
    }

    /// One call; the envelope's `result`.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, QdrantError> {
        let url = format!("{}{path}", self.target.url.trim_end_matches('/'));
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Content-Type", "application/json");
        if let Some(key) = &self.target.api_key {
            request = request.header("api-key", key);
        }
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = request
            .body(body)
            .map_err(|e| QdrantError::permanent(format!("Qdrant request {method} {path}: {e}")))?;
        let mut response = self.agent.run(request).map_err(|e| QdrantError {
            message: format!("Qdrant cannot be reached ({method} {path}): {e}"),
            retryable: true,
            after: None,
        })?;
        let crate::outbound::Answer {
            status,
            retry_after: after,
            body: text,
        } = crate::outbound::read(&mut response);
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(answer.get("result").cloned().unwrap_or(Value::Null));
        }
        let detail = answer["status"]["error"]
            .as_str()
            .map_or_else(|| text.chars().take(300).collect(), str::to_owned);
        Err(QdrantError {
            message: format!("Qdrant answered {status} to {method} {path}: {detail}"),
            retryable: status == 429 || status >= 500,
            after,
        })
    }

    fn path(&self, rest: &str) -> String {
        format!("/collections/{}{rest}", self.target.collection)
    }

    /// Creates the collection for vectors of `dim` (cosine) and BM25 sparse vectors with IDF,
    /// with its payload indexes; an existing one is checked instead. A collection made for
    /// another dimension, distance or without the sparse vector is refused with the reason.
    pub fn ensure_collection(&self, dim: usize) -> Result<(), QdrantError> {
        match self.call("GET", &self.path(""), None) {
            Ok(info) => check_collection(&info, dim, &self.target.collection)?,
            Err(e) if e.message.contains("answered 404") => {
                let body = json!({
                    "vectors": {DENSE: {"size": dim, "distance": "Cosine"}},
                    "sparse_vectors": {SPARSE: {"modifier": "idf"}},
                });
                match self.call("PUT", &self.path(""), Some(&body)) {
                    Ok(_) => {}
                    // Made meanwhile by another node: check it like any other.
                    Err(e) if e.message.contains("already exists") => {
                        let info = self.call("GET", &self.path(""), None)?;
                        check_collection(&info, dim, &self.target.collection)?;
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        for (field, schema) in INDEXED_FIELDS {
            self.call(
                "PUT",
                &self.path("/index?wait=true"),
                Some(&json!({"field_name": field, "field_schema": schema})),
            )?;
        }
        Ok(())
    }

    /// Upserts `points` and waits until they are applied.
    pub fn upsert(&self, points: &[Value]) -> Result<(), QdrantError> {
        self.call(
            "PUT",
            &self.path("/points?wait=true"),
            Some(&json!({"points": points})),
        )
        .map(|_| ())
    }

    /// Deletes the points `filter` selects and waits until that is applied.
    pub fn delete_where(&self, filter: &Value) -> Result<(), QdrantError> {
        self.call(
            "POST",
            &self.path("/points/delete?wait=true"),
            Some(&json!({"filter": filter})),
        )
        .map(|_| ())
    }

    /// Points by id, with payloads (no vectors).
    pub fn retrieve(&self, ids: &[String]) -> Result<Vec<Value>, QdrantError> {
        let result = self.call(
            "POST",
            &self.path("/points"),
            Some(&json!({"ids": ids, "with_payload": true, "with_vector": false})),
        )?;
        Ok(result.as_array().cloned().unwrap_or_default())
    }
}

/// Checks an existing collection's configuration (`GET /collections/{c}`'s result).
fn check_collection(info: &Value, dim: usize, name: &str) -> Result<(), QdrantError> {
    let params = &info["config"]["params"];
    let dense = &params["vectors"][DENSE];
    let size = dense["size"].as_u64();
    let distance = dense["distance"].as_str().unwrap_or("");
    if size != Some(dim as u64) || distance != "Cosine" {
        return Err(QdrantError::permanent(format!(
            "the Qdrant collection {name:?} was made for other vectors (named vector {DENSE:?}: size {}, distance {distance:?}; this model needs size {dim}, Cosine): give [qdrant] collection another name or delete it",
            size.map_or("none".to_owned(), |s| s.to_string())
        )));
    }
    if params["sparse_vectors"][SPARSE]["modifier"].as_str() != Some("idf") {
        return Err(QdrantError::permanent(format!(
            "the Qdrant collection {name:?} has no sparse vector {SPARSE:?} with modifier idf: it was not made by Concierge"
        )));
    }
    Ok(())
}

/// The point id of a chunk: UUIDv5 (RFC 4122, SHA-1) of its id's decimal text in Concierge's
/// namespace, so re-ingesting never makes a second point.
pub fn point_id(name: &str) -> String {
    /// Concierge's UUID namespace (fixed forever: point ids depend on it).
    const NAMESPACE: [u8; 16] = [
        0x6f, 0x1c, 0x2a, 0x4e, 0x9b, 0x7d, 0x5c, 0x3e, 0x8a, 0x21, 0x0d, 0x4f, 0x6b, 0x8e, 0x9c,
        0x17,
    ];
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&NAMESPACE);
    ctx.update(name.as_bytes());
    let digest = ctx.finish();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_ids_are_uuid5_in_conciergess_namespace_as_pythons_uuid_computes_them() {
        // uuid.uuid5(uuid.UUID('6f1c2a4e-9b7d-5c3e-8a21-0d4f6b8e9c17'), name)
        assert_eq!(point_id("12345"), "dc6197f5-036c-522c-9a85-5ed588a378b1");
        assert_eq!(
            point_id("concierge:watermark"),
            "0ae43b6b-1dce-5cf6-b259-b3d03c95bc81"
        );
        assert_eq!(
            point_id("18446744073709551615"),
            "5271bf98-b6e7-5a1a-90fc-0c071f083e2e"
        );
    }

    #[test]
    fn a_collection_for_another_dimension_or_without_bm25_is_refused_with_the_reason() {
        let good = json!({"config": {"params": {
            "vectors": {"dense": {"size": 384, "distance": "Cosine"}},
            "sparse_vectors": {"bm25": {"modifier": "idf"}}}}});
        assert!(check_collection(&good, 384, "c").is_ok());
        let e = check_collection(&good, 768, "c")
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(
            e.contains("size 384") && e.contains("needs size 768"),
            "{e}"
        );
        let no_sparse = json!({"config": {"params": {
            "vectors": {"dense": {"size": 384, "distance": "Cosine"}}}}});
        assert!(check_collection(&no_sparse, 384, "c").is_err());
        let dot = json!({"config": {"params": {
            "vectors": {"dense": {"size": 384, "distance": "Dot"}},
            "sparse_vectors": {"bm25": {"modifier": "idf"}}}}});
        assert!(check_collection(&dot, 384, "c").is_err());
    }
}
