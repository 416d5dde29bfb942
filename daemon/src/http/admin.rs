//! `GET /v1/admin/status`, `POST /v1/admin/reindex`, `POST /v1/admin/checkpoint`,
//! `PUT /v1/admin/backup-status` (the sidecar's last backup runs, shown in the status), and the
//! dead letters: `GET /v1/admin/dead-letters`, `POST /v1/admin/dead-letters/{consumer}/{seq}/retry`,
//! `DELETE /v1/admin/dead-letters/{consumer}/{seq}`.

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
        .route("/v1/admin/dead-letters", get(dead_letters))
        .route(
            "/v1/admin/dead-letters/{consumer}/{seq}",
            axum::routing::delete(drop_dead_letter),
        )
        .route(
            "/v1/admin/dead-letters/{consumer}/{seq}/retry",
            post(retry_dead_letter),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadLetterParams {
    /// Only this consumer's.
    consumer: Option<String>,
    /// At most this many, newest first: 1 to 1000, default 100.
    limit: Option<usize>,
}

/// Dead letters, newest first, and how many there are in all (of the consumer, if given).
#[derive(Debug, Serialize)]
struct DeadLetterList {
    total: usize,
    dead_letters: Vec<concierge_engine::DeadLetter>,
}

async fn dead_letters(
    State(state): State<AppState>,
    axum::extract::Query(params): axum::extract::Query<DeadLetterParams>,
) -> Result<Json<DeadLetterList>, ApiError> {
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::Unprocessable(format!(
            "limit must be 1 to 1000, not {limit}"
        )));
    }
    let mut letters = state.blocking(|engine| engine.dead_letters()).await?;
    if let Some(c) = &params.consumer {
        letters.retain(|l| &l.consumer == c);
    }
    letters.sort_by_key(|l| std::cmp::Reverse((l.at_ms, l.entry.seq)));
    let total = letters.len();
    letters.truncate(limit);
    Ok(Json(DeadLetterList {
        total,
        dead_letters: letters,
    }))
}

/// The `{consumer}/{seq}` of a dead letter's path.
fn letter_key(consumer: &str, seq: &str) -> Result<u64, ApiError> {
    if consumer.is_empty() {
        return Err(ApiError::Unprocessable("the consumer is empty".to_owned()));
    }
    seq.parse::<u64>()
        .map_err(|_| ApiError::Unprocessable(format!("the sequence {seq:?} is not a whole number")))
}

/// Gives the dead letter's document to every consumer again: 202 `{seq}` of the new change-log
/// entry (pass it as `min_seq`), 404 if there is no such letter.
async fn retry_dead_letter(
    State(state): State<AppState>,
    axum::extract::Path((consumer, seq)): axum::extract::Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let seq = letter_key(&consumer, &seq)?;
    let who = consumer.clone();
    let requeued = state
        .blocking(move |engine| {
            engine.retry_dead_letter(&concierge_engine::LetterKey {
                consumer: &who,
                seq,
            })
        })
        .await?;
    match requeued {
        Some(new_seq) => {
            tracing::info!(%consumer, seq, new_seq, "a dead letter was retried");
            Ok((StatusCode::ACCEPTED, Json(json!({"seq": new_seq}))))
        }
        None => Err(ApiError::NotFound(format!(
            "no dead letter of {consumer:?} at sequence {seq}"
        ))),
    }
}

/// Drops a dead letter for good: 204, or 404 if there is no such letter.
async fn drop_dead_letter(
    State(state): State<AppState>,
    axum::extract::Path((consumer, seq)): axum::extract::Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let seq = letter_key(&consumer, &seq)?;
    let who = consumer.clone();
    let dropped = state
        .blocking(move |engine| {
            engine.discard_dead_letter(&concierge_engine::LetterKey {
                consumer: &who,
                seq,
            })
        })
        .await?;
    if dropped {
        tracing::info!(%consumer, seq, "a dead letter was dropped");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "no dead letter of {consumer:?} at sequence {seq}"
        )))
    }
}

/// The engine's status and, when the sidecar has sent one, the backup status.
#[derive(Debug, Serialize)]
struct AdminStatus {
    #[serde(flatten)]
    engine: EngineStatus,
    /// Live documents, in all and per `source:kind`.
    documents: concierge_engine::DocumentCounts,
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
    let (engine, mut letters, documents) = state
        .blocking(|engine| {
            Ok((
                engine.status()?,
                engine.dead_letters()?,
                engine.document_counts()?,
            ))
        })
        .await?;
    letters.sort_by_key(|l| std::cmp::Reverse(l.at_ms));
    letters.truncate(RECENT_DEAD_LETTERS);
    let backup = crate::backup_status::load(&state.config.storage.data_dir);
    Ok(Json(AdminStatus {
        engine,
        documents,
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
