//! `POST /v1/documents`, `GET /v1/documents/{id}`, `DELETE /v1/documents/{id}`: generic ingest and
//! lookup for sources without a webhook of their own; `GET /v1/documents?source=&kind=&limit=
//! &cursor=`: the stored documents in id order, a page at a time (`{documents, next_cursor}`;
//! the cursor is opaque, pass it back as it came).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use concierge_engine::{Document, IngestReceipt, IngestRequest, Operation};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/documents", post(upsert).get(list))
        .route("/v1/documents/{id}", get(fetch).delete(remove))
}

/// One document as clients send it. `source` and `kind` come from the id; a document as
/// `GET /v1/documents/{id}` returns it can be sent back as it is: its `source` and `kind` are
/// checked against the id (422 when they differ) and its `version` is ignored (the store
/// assigns versions).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentInput {
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub text: String,
    pub updated_at: i64,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Read-only: must match the id's first part when given.
    #[serde(default)]
    pub source: Option<String>,
    /// Read-only: must match the id's second part when given.
    #[serde(default)]
    pub kind: Option<String>,
    /// Read-only: type-checked, then ignored.
    #[serde(default)]
    #[allow(dead_code)]
    pub version: Option<u64>,
}

impl DocumentInput {
    pub fn into_document(self) -> Result<Document, ApiError> {
        let mut doc = Document::new(self.id, self.title, self.text, self.updated_at)
            .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
        for (field, given, from_id) in [
            ("source", &self.source, &doc.source),
            ("kind", &self.kind, &doc.kind),
        ] {
            if let Some(given) = given
                && given != from_id
            {
                return Err(ApiError::Unprocessable(format!(
                    "field `{field}`: {given:?} is not the id's {field} {from_id:?} (it comes from the id)"
                )));
            }
        }
        doc.metadata = self.metadata;
        Ok(doc)
    }
}

/// `POST /v1/documents` body: one document, or `{documents: [...], idempotency_key}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum UpsertBody {
    Many {
        documents: Vec<DocumentInput>,
        #[serde(default)]
        idempotency_key: Option<String>,
    },
    One(DocumentInput),
}

/// The ingest request of a `POST /v1/documents` body: one document, or `{documents: [...],
/// idempotency_key}` (what the fuzz target `document_body` feeds).
pub fn upsert_request(bytes: &[u8]) -> Result<IngestRequest, ApiError> {
    let body: serde_json::Value = super::extract::parse(bytes)?;
    // Parsed in two steps so a shape error names the field (untagged enums hide it).
    let body: UpsertBody = if body.get("documents").is_some() {
        let many: ManyBody = serde_json::from_value(body)
            .map_err(|e| ApiError::Unprocessable(format!("invalid request: {e}")))?;
        UpsertBody::Many {
            documents: many.documents,
            idempotency_key: many.idempotency_key,
        }
    } else {
        UpsertBody::One(
            serde_json::from_value(body)
                .map_err(|e| ApiError::Unprocessable(format!("invalid request: {e}")))?,
        )
    };
    Ok(match body {
        UpsertBody::One(doc) => IngestRequest::upsert(doc.into_document()?),
        UpsertBody::Many {
            documents,
            idempotency_key,
        } => IngestRequest {
            operations: documents
                .into_iter()
                .map(|d| d.into_document().map(Operation::Upsert))
                .collect::<Result<_, _>>()?,
            idempotency_key,
        },
    })
}

async fn upsert(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    super::extract::RawBody(bytes): super::extract::RawBody,
) -> Result<(StatusCode, Json<IngestReceipt>), ApiError> {
    super::extract::require_json(&headers)?;
    let request = upsert_request(&bytes)?;
    let receipt = state.blocking(move |engine| engine.ingest(request)).await?;
    Ok((StatusCode::ACCEPTED, Json(receipt)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManyBody {
    documents: Vec<DocumentInput>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    source: Option<String>,
    kind: Option<String>,
    /// Documents per page: 1 to 1000, default 50.
    limit: Option<usize>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
}

/// A page of documents and the cursor of the next one (`null`: this was the last).
#[derive(Debug, serde::Serialize)]
struct DocumentList {
    documents: Vec<Document>,
    next_cursor: Option<String>,
}

/// The default page size.
const DEFAULT_PAGE: usize = 50;

async fn list(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Json<DocumentList>, ApiError> {
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=concierge_engine::MAX_PAGE).contains(&limit) {
        return Err(ApiError::Unprocessable(format!(
            "limit must be 1 to {}, not {limit}",
            concierge_engine::MAX_PAGE
        )));
    }
    let prefix = concierge_engine::id_prefix(params.source.as_deref(), params.kind.as_deref())
        .map_err(ApiError::Engine)?;
    let after = params.cursor.as_deref().map(cursor::decode).transpose()?;
    if let Some(a) = &after
        && !a.starts_with(&prefix)
    {
        return Err(ApiError::Unprocessable(
            "the cursor belongs to another listing (source or kind changed)".to_owned(),
        ));
    }
    let page = state
        .blocking(move |engine| engine.documents(&prefix, after.as_deref(), limit))
        .await?;
    Ok(Json(DocumentList {
        next_cursor: page.next_after.as_deref().map(cursor::encode),
        documents: page.documents,
    }))
}

/// Cursors: the last id of a page, base64url (opaque to clients, safe in a query string).
mod cursor {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::ApiError;

    pub fn encode(last_id: &str) -> String {
        URL_SAFE_NO_PAD.encode(last_id)
    }

    pub fn decode(cursor: &str) -> Result<String, ApiError> {
        URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                ApiError::Unprocessable(
                    "the cursor is not one this API gave out (pass next_cursor back unchanged)"
                        .to_owned(),
                )
            })
    }
}

async fn fetch(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Document>, ApiError> {
    let lookup = id.clone();
    match state.blocking(move |engine| engine.get(&lookup)).await? {
        Some(doc) => Ok(Json(doc)),
        None => Err(ApiError::NotFound(format!("no document {id:?}"))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteParams {
    /// When the source deleted it (ms since the epoch); default: now.
    updated_at: Option<i64>,
}

async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<DeleteParams>,
) -> Result<(StatusCode, Json<IngestReceipt>), ApiError> {
    let at = params.updated_at.unwrap_or_else(now_ms);
    let receipt = state
        .blocking(move |engine| engine.ingest(IngestRequest::delete(id, at)))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(receipt)))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
