//! `POST /v1/search`: `{query, k, mode, filter, fusion, min_seq, include_text}` → hits with each
//! leg's rank and score. A hit carries its document without the whole text (its best chunk's snippet and
//! `text_bytes` instead) unless `include_text` is true, so a large document cannot make every
//! answer large. The `[search]` configuration gives the fusion defaults.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use concierge_engine::{Filter, SearchMode, SearchRequest, SearchResponse};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/search", post(search))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchBody {
    query: String,
    #[serde(default)]
    k: Option<usize>,
    #[serde(default)]
    mode: SearchMode,
    #[serde(default)]
    filter: Filter,
    #[serde(default)]
    fusion: Option<serde_json::Value>,
    #[serde(default)]
    min_seq: Option<u64>,
    #[serde(default)]
    ef: Option<usize>,
    /// Each hit's document with its whole text.
    #[serde(default)]
    include_text: bool,
}

/// The engine's request from a search body's bytes, with `defaults` fusion overridden field by
/// field by the body's; also whether hits keep their whole text. What `POST /v1/search` parses
/// (and the fuzz target `search_body` feeds).
pub fn search_request(
    bytes: &[u8],
    defaults: concierge_engine::Fusion,
) -> Result<(SearchRequest, bool), ApiError> {
    let body: SearchBody = super::extract::parse(bytes)?;
    let mut fusion = defaults;
    if let Some(overrides) = body.fusion {
        let mut merged =
            serde_json::to_value(fusion).map_err(|e| ApiError::Internal(e.to_string()))?;
        let (Some(base), serde_json::Value::Object(extra)) = (merged.as_object_mut(), overrides)
        else {
            return Err(ApiError::Unprocessable(
                "fusion must be an object".to_owned(),
            ));
        };
        base.extend(extra);
        fusion = serde_json::from_value(merged)
            .map_err(|e| ApiError::Unprocessable(format!("invalid fusion: {e}")))?;
    }
    let mut request = SearchRequest::new(body.query)
        .k(body.k.unwrap_or(10))
        .mode(body.mode)
        .filter(body.filter);
    request.fusion = fusion;
    request.min_seq = body.min_seq;
    request.ef = body.ef;
    Ok((request, body.include_text))
}

async fn search(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    super::extract::RawBody(bytes): super::extract::RawBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    super::extract::require_json(&headers)?;
    let (request, include_text) = search_request(&bytes, state.fusion_defaults())?;
    let response: SearchResponse = match state.qdrant_search.clone() {
        Some(qdrant) => {
            state.refuse_when_stopping()?;
            tokio::task::spawn_blocking(move || qdrant.search(&request))
                .await
                .map_err(|e| ApiError::Internal(format!("search task failed: {e}")))??
        }
        None => {
            state
                .blocking(move |engine| engine.search(&request))
                .await?
        }
    };
    let mut value =
        serde_json::to_value(response).map_err(|e| ApiError::Internal(e.to_string()))?;
    if !include_text && let Some(hits) = value["hits"].as_array_mut() {
        for hit in hits {
            if let Some(document) = hit["document"].as_object_mut()
                && let Some(text) = document.remove("text")
            {
                let bytes = text.as_str().map_or(0, str::len);
                document.insert("text_bytes".to_owned(), serde_json::Value::from(bytes));
            }
        }
    }
    Ok(Json(value))
}
