//! `GET /v1/admin/status`, `POST /v1/admin/reindex`, `POST /v1/admin/checkpoint`,
//! `PUT /v1/admin/backup-status` (the sidecar's last backup runs, shown in the status).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use concierge_engine::{CheckpointInfo, EngineStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/status", get(status))
        .route("/v1/admin/reindex", post(reindex))
        .route("/v1/admin/checkpoint", post(checkpoint))
        .route("/v1/admin/backup-status", put(backup_status))
}

/// The engine's status and, when the sidecar has sent one, the backup status.
#[derive(Debug, Serialize)]
struct AdminStatus {
    #[serde(flatten)]
    engine: EngineStatus,
    /// `{last_run, last_success}` from `concierge-sidecar`, or null.
    backup: Option<Value>,
    /// The newest dead letters (at most 20): which consumer gave up on which document, why.
    recent_dead_letters: Vec<concierge_engine::DeadLetter>,
    /// The OIDC issuer's keys (when `auth.oidc_issuer` is set): ready or why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    oidc: Option<crate::oidc::OidcStatus>,
}

/// Dead letters shown in the status (their count is `dead_letters`).
const RECENT_DEAD_LETTERS: usize = 20;

async fn status(State(state): State<AppState>) -> Result<Json<AdminStatus>, ApiError> {
    let (engine, mut letters) = state
        .blocking(|engine| Ok((engine.status()?, engine.dead_letters()?)))
        .await?;
    letters.sort_by_key(|l| std::cmp::Reverse(l.at_ms));
    letters.truncate(RECENT_DEAD_LETTERS);
    let backup = crate::backup_status::load(&state.config.storage.data_dir);
    Ok(Json(AdminStatus {
        engine,
        backup,
        recent_dead_letters: letters,
        oidc: state.oidc.as_ref().map(|o| o.status()),
    }))
}

/// Keeps the sidecar's backup status (its status file, as JSON) for `GET /v1/admin/status`.
async fn backup_status(
    State(state): State<AppState>,
    super::extract::RawBody(body): super::extract::RawBody,
) -> Result<StatusCode, ApiError> {
    let value: Value = super::extract::parse(&body)?;
    let dir = state.config.storage.data_dir.clone();
    tokio::task::spawn_blocking(move || crate::backup_status::store(&dir, &value))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| match e {
            crate::backup_status::BackupStatusError::Invalid(d) => ApiError::Unprocessable(d),
            crate::backup_status::BackupStatusError::Write { .. } => {
                ApiError::Internal(e.to_string())
            }
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts a rebuild of both indexes from stored vectors; answers at once (watch the status).
async fn reindex(State(state): State<AppState>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let engine = state.engine()?;
    tokio::task::spawn_blocking(move || {
        if let Err(e) = engine.reindex() {
            tracing::error!(error = %e, "reindex failed");
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "rebuilding", "watch": "/v1/admin/status"})),
    ))
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
        let value: Value = super::extract::parse(&body)?;
        if !value.is_object() {
            return Err(ApiError::Unprocessable(
                "the checkpoint body is an object, {\"name\": ...}, or empty".to_owned(),
            ));
        }
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
