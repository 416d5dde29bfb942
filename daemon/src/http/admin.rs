//! `GET /v1/admin/status`, `POST /v1/admin/reindex`, `POST /v1/admin/checkpoint`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use concierge_engine::{CheckpointInfo, EngineStatus};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/status", get(status))
        .route("/v1/admin/reindex", post(reindex))
        .route("/v1/admin/checkpoint", post(checkpoint))
}

async fn status(State(state): State<AppState>) -> Result<Json<EngineStatus>, ApiError> {
    Ok(Json(state.blocking(|engine| engine.status()).await?))
}

/// Starts a rebuild of both indexes from stored vectors; answers at once (watch the status).
async fn reindex(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = engine.reindex() {
            tracing::error!(error = %e, "reindex failed");
        }
    });
    (
        StatusCode::ACCEPTED,
        Json(json!({"status": "rebuilding", "watch": "/v1/admin/status"})),
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointBody {
    /// Directory name under `<data_dir>/checkpoints/` (letters, digits, `-`, `_`, `.`); default: a
    /// timestamp.
    #[serde(default)]
    name: Option<String>,
}

/// Writes a consistent checkpoint under `<data_dir>/checkpoints/` (for backups).
async fn checkpoint(
    State(state): State<AppState>,
    super::extract::RawBody(body): super::extract::RawBody,
) -> Result<Json<CheckpointInfo>, ApiError> {
    let body: CheckpointBody = if body.iter().all(u8::is_ascii_whitespace) {
        CheckpointBody::default()
    } else {
        super::extract::parse(&body)?
    };
    let name = match body.name {
        Some(n)
            if !n.is_empty()
                && n.len() <= 100
                && !n.starts_with('.')
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) =>
        {
            n
        }
        Some(n) => {
            return Err(ApiError::Unprocessable(format!(
                "checkpoint name {n:?} must be 1-100 letters, digits, '-', '_' or '.' and not start with '.'"
            )));
        }
        None => format!("checkpoint-{}", super::documents::now_ms()),
    };
    let target = state.config.storage.data_dir.join("checkpoints").join(name);
    Ok(Json(
        state
            .blocking(move |engine| engine.checkpoint(&target))
            .await?,
    ))
}
