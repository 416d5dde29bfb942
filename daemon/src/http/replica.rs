//! The routes of a replica (`[cluster] role = "replica"`), which keeps no store: writes —
//! webhooks, RocketChat's webhook, `POST`/`DELETE /v1/documents`, the admin actions — are sent
//! on to the primary and its answer is the replica's (`crate::cluster`); documents are read
//! from Qdrant's document points; the status is the replica's own (Qdrant's watermark, the
//! primary it forwards to). Search and ask are the shared handlers, which go through Qdrant.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use concierge_engine::Document;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;

/// Sends the request on to the primary and answers with the primary's answer.
pub async fn forward(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    state.refuse_when_stopping()?;
    let Some(primary) = state.primary.clone() else {
        return Err(ApiError::Internal(
            "a replica route without a primary".to_owned(),
        ));
    };
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
    let headers: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let method = method.as_str().to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        primary.forward(&method, &path, &headers, body.to_vec())
    })
    .await
    .map_err(|e| ApiError::Internal(format!("forwarding task failed: {e}")))?
    .map_err(|e| {
        tracing::warn!(error = %e, "a write could not be forwarded to the primary");
        ApiError::Unavailable(format!(
            "{e}: this replica takes writes only through the primary, so nothing was stored; searches go on here"
        ))
    })?;
    let mut response = Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY));
    for (name, value) in &answer.headers {
        response = response.header(name.as_str(), value.as_str());
    }
    response
        .body(Body::from(answer.body))
        .map_err(|e| ApiError::Internal(format!("relaying the primary's answer: {e}")))
}

/// `GET /v1/documents/{id}` from the document's point in Qdrant.
pub async fn document(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Document>, ApiError> {
    let Some(qdrant) = state.qdrant_search.clone() else {
        return Err(ApiError::Internal("a replica without Qdrant".to_owned()));
    };
    let lookup = id.clone();
    let found = tokio::task::spawn_blocking(move || qdrant.document(&lookup))
        .await
        .map_err(|e| ApiError::Internal(format!("lookup task failed: {e}")))??;
    found
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no document {id:?}")))
}

/// `GET /v1/admin/status` of a replica.
pub async fn status(State(state): State<AppState>) -> Json<Value> {
    let qdrant = match state.qdrant_search.clone() {
        Some(q) => match tokio::task::spawn_blocking(move || q.watermark()).await {
            Ok(Ok(seq)) => json!({"state": "ok", "seq": seq}),
            Ok(Err(e)) => json!({"state": "unavailable", "error": e.to_string()}),
            Err(e) => json!({"state": "unavailable", "error": e.to_string()}),
        },
        None => json!({"state": "unavailable", "error": "not configured"}),
    };
    Json(json!({
        "role": "replica",
        "primary": state.primary.as_ref().map(|p| p.url().to_owned()),
        "qdrant": qdrant,
        "oidc": state.oidc.as_ref().map(|o| o.status()),
    }))
}
