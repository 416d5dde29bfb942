//! `POST /v1/documents`, `GET /v1/documents/{id}`, `DELETE /v1/documents/{id}`: generic ingest and
//! lookup for sources without a webhook of their own.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use concierge_engine::{Document, IngestReceipt, IngestRequest, Operation};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::extract::JsonBody;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/documents", post(upsert))
        .route("/v1/documents/{id}", get(fetch).delete(remove))
}

/// One document as clients send it (`source` and `kind` come from the id).
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
}

impl DocumentInput {
    pub fn into_document(self) -> Result<Document, ApiError> {
        let mut doc = Document::new(self.id, self.title, self.text, self.updated_at)
            .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
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

async fn upsert(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<(StatusCode, Json<IngestReceipt>), ApiError> {
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
    let request = match body {
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
    };
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
