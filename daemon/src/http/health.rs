//! `GET /healthz` (the process answers) and `GET /readyz` (it can do its work: the store accepts
//! writes, the model is loaded, it is not shutting down).

use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.shutting_down.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting_down"})),
        );
    }
    if let Some(cause) = state.engine.poisoned() {
        tracing::warn!(%cause, "not ready: the store is poisoned");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "poisoned", "detail": "the store failed a durable write; restart the daemon"}),
            ),
        );
    }
    (
        StatusCode::OK,
        Json(
            json!({"status": "ready", "model": state.model_id.as_str(), "dimension": state.model_dim, "durable_seq": state.engine.durable_seq()}),
        ),
    )
}
