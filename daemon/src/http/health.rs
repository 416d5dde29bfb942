//! `GET /healthz` (the process answers) and `GET /readyz` (it can do its work: the store accepts
//! writes, the model is loaded, it is not shutting down). While writes are refused (a poisoned
//! store, a data disk short of space) `/readyz` fails with the reason and reads go on.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use concierge_engine::Error as EngineError;

use super::AppState;
use super::error::no_space;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
}

/// Alive, unless the store is poisoned (a failed durable write): only a restart recovers that,
/// so an orchestrator should restart the process. A full disk is not that (writes resume by
/// themselves once space is free): `/readyz` says so instead.
async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if let Some(engine) = &state.engine
        && let Err(EngineError::Poisoned { cause }) = engine.writable()
        && !no_space(&cause)
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "poisoned", "detail": "the store failed a durable write; restart the daemon (acknowledged writes are kept)"}),
            ),
        );
    }
    (StatusCode::OK, Json(json!({ "status": "ok" })))
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.shutting_down.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting_down"})),
        );
    }
    let Some(engine) = state.engine.clone() else {
        return replica_ready(&state).await;
    };
    match engine.writable() {
        Ok(()) => {}
        Err(EngineError::Poisoned { cause }) => {
            tracing::warn!(%cause, "not ready: the store is poisoned");
            let detail = if no_space(&cause) {
                "the data disk filled up during a write; free space, then restart the daemon (acknowledged writes are kept)"
            } else {
                "the store failed a durable write; restart the daemon"
            };
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "poisoned", "detail": detail})),
            );
        }
        Err(e @ EngineError::StorageFull { .. }) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "read_only", "detail": e.to_string()})),
            );
        }
        Err(EngineError::Closed) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "shutting_down"})),
            );
        }
        Err(other) => {
            tracing::warn!(error = %other, "not ready");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "detail": other.to_string()})),
            );
        }
    }
    (
        StatusCode::OK,
        Json(
            json!({"status": "ready", "model": state.model_id.as_str(), "dimension": state.model_dim, "durable_seq": engine.durable_seq()}),
        ),
    )
}

/// A replica is ready when Qdrant answers (its watermark) and the model is loaded (it is, once
/// the daemon listens).
async fn replica_ready(state: &AppState) -> (StatusCode, Json<Value>) {
    let Some(qdrant) = state.qdrant_search.clone() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "detail": "no Qdrant to search through"})),
        );
    };
    match tokio::task::spawn_blocking(move || qdrant.watermark()).await {
        Ok(Ok(seq)) => (
            StatusCode::OK,
            Json(
                json!({"status": "ready", "role": "replica", "model": state.model_id.as_str(), "dimension": state.model_dim, "qdrant_seq": seq}),
            ),
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: Qdrant");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "detail": e.to_string()})),
            )
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "unavailable", "detail": format!("readiness check failed: {e}")}),
            ),
        ),
    }
}

/// `GET /version`: what is running (no secret: the build, the role, the model, the backend).
async fn version(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "name": "concierge",
        "version": env!("CARGO_PKG_VERSION"),
        "role": state.config.cluster.role,
        "search_backend": state.config.search.backend,
        "model": state.model_id.as_str(),
        "dimension": state.model_dim,
    }))
}
