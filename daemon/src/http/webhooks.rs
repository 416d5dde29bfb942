//! `POST /v1/webhooks/aircall` and `POST /v1/webhooks/guesty`: verify, map to a document merged
//! with the stored one, write durably, then answer 202 `{id, seq}`. Unknown events are kept raw
//! (202 `{kept: "raw"}`). Redeliveries are idempotent (Aircall: event + call + time; Guesty: the
//! `svix-id`). Writes to one entity are serialised so two events of one call cannot lose a merge.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use concierge_engine::IngestRequest;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{RawBody, parse, require_json};
use crate::verify::matches_any;
use crate::webhooks::{Action, aircall, guesty, svix, transcripts};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/webhooks/aircall", post(aircall_hook))
        .route("/v1/webhooks/guesty", post(guesty_hook))
}

async fn aircall_hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_json(&headers)?;
    let envelope: aircall::Envelope = parse(&body)?;
    if state.config.aircall.tokens.is_empty() {
        return Err(ApiError::Forbidden(
            "no Aircall webhook token is configured (aircall.tokens)",
        ));
    }
    if !matches_any(&envelope.token, &state.config.aircall.tokens) {
        return Err(ApiError::Forbidden("the webhook token is not accepted"));
    }
    let key = envelope.idempotency_key();
    if let Some(call_id) = envelope.transcription_call_id() {
        let event_ms = envelope.timestamp.saturating_mul(1_000);
        state
            .blocking(move |engine| engine.record_raw_event("aircall", &key, &body))
            .await?;
        spawn_transcript_fetch(state, call_id, event_ms);
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"kept": "raw", "transcript": "fetching"})),
        ));
    }
    let Some(call_id) = envelope.call_id() else {
        // Not a call event (transcription.created, contacts, users, ...): kept, not indexed.
        tracing::info!(event = %envelope.event, "aircall event kept raw");
        state
            .blocking(move |engine| engine.record_raw_event("aircall", &key, &body))
            .await?;
        return Ok((StatusCode::ACCEPTED, Json(json!({"kept": "raw"}))));
    };
    let doc_id = aircall::call_doc_id(call_id);
    let _guard = state.entity_lock(&doc_id).await;
    let lookup = doc_id.clone();
    let stored = state.blocking(move |engine| engine.get(&lookup)).await?;
    match aircall::action(&envelope, stored.as_ref()).map_err(ApiError::Unprocessable)? {
        Action::Upsert(doc) => {
            let id = doc.id.clone();
            let receipt = state
                .blocking(move |engine| {
                    engine.ingest(IngestRequest::upsert(doc).with_idempotency_key(key))
                })
                .await?;
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"id": id, "seq": receipt.seq, "duplicate": receipt.duplicate})),
            ))
        }
        Action::KeepRaw { reason } => {
            tracing::info!(event = %envelope.event, %reason, "aircall event kept raw");
            state
                .blocking(move |engine| engine.record_raw_event("aircall", &key, &body))
                .await?;
            Ok((StatusCode::ACCEPTED, Json(json!({"kept": "raw"}))))
        }
    }
}

async fn guesty_hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Some(secret) = state.config.guesty.secret.as_deref() else {
        return Err(ApiError::Forbidden(
            "no Guesty webhook secret is configured (guesty.secret)",
        ));
    };
    let key = svix::key_of(secret).ok_or(ApiError::Internal(
        "guesty.secret is not valid base64 after whsec_".to_owned(),
    ))?;
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    svix::verify(
        &key,
        h("svix-id"),
        h("svix-timestamp"),
        h("svix-signature"),
        &body,
        now,
    )
    .map_err(|e| match e {
        svix::SvixError::MissingHeader(_) => ApiError::Unauthorized(
            "missing Svix signature headers (svix-id, svix-timestamp, svix-signature)",
        ),
        svix::SvixError::BadTimestamp | svix::SvixError::StaleTimestamp => ApiError::Forbidden(
            "the svix-timestamp is missing, malformed or more than 5 minutes from now",
        ),
        svix::SvixError::NoMatch => ApiError::Forbidden("no svix-signature matches the body"),
    })?;
    require_json(&headers)?;
    let delivery = h("svix-id").unwrap_or_default().to_owned();
    let delivered_ms = h("svix-timestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .unwrap_or(now)
        * 1_000;
    let payload: Value = parse(&body)?;
    let target = guesty::target(&payload).map_err(ApiError::Unprocessable)?;
    let Some(doc_id) = target else {
        let event = payload
            .get("event")
            .and_then(|e| e.as_str())
            .unwrap_or("?")
            .to_owned();
        tracing::info!(%event, "guesty event kept raw");
        state
            .blocking(move |engine| engine.record_raw_event("guesty", &delivery, &body))
            .await?;
        return Ok((StatusCode::ACCEPTED, Json(json!({"kept": "raw"}))));
    };
    let _guard = state.entity_lock(&doc_id).await;
    let lookup = doc_id.clone();
    let stored = state.blocking(move |engine| engine.get(&lookup)).await?;
    match guesty::action(&payload, stored.as_ref(), delivered_ms)
        .map_err(ApiError::Unprocessable)?
    {
        Action::Upsert(doc) => {
            let id = doc.id.clone();
            let receipt = state
                .blocking(move |engine| {
                    engine.ingest(
                        IngestRequest::upsert(doc)
                            .with_idempotency_key(format!("guesty:{delivery}")),
                    )
                })
                .await?;
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"id": id, "seq": receipt.seq, "duplicate": receipt.duplicate})),
            ))
        }
        Action::KeepRaw { .. } => {
            state
                .blocking(move |engine| engine.record_raw_event("guesty", &delivery, &body))
                .await?;
            Ok((StatusCode::ACCEPTED, Json(json!({"kept": "raw"}))))
        }
    }
}

/// Fetches a call's transcript in the background and merges it into the call's document. A
/// failure is logged; the kept event makes the next start try again.
pub fn spawn_transcript_fetch(state: AppState, call_id: i64, event_ms: i64) {
    let aircall = &state.config.aircall;
    let (Some(api_id), Some(api_token)) = (aircall.api_id.clone(), aircall.api_token.clone())
    else {
        tracing::warn!(
            call_id,
            "a transcript is ready but aircall.api_id / aircall.api_token are not configured; the event is kept"
        );
        return;
    };
    let api = transcripts::AircallApi {
        base: aircall.api_base.clone(),
        api_id,
        api_token,
    };
    tokio::spawn(async move {
        let fetched = tokio::task::spawn_blocking(move || {
            api.fetch(call_id, std::time::Duration::from_millis(500))
        })
        .await;
        let transcription = match fetched {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                tracing::error!(call_id, error = %e, "giving up on an Aircall transcript until the next start");
                return;
            }
            Err(e) => {
                tracing::error!(call_id, error = %e, "the transcript fetch task failed");
                return;
            }
        };
        let doc_id = aircall::call_doc_id(call_id);
        let _guard = state.entity_lock(&doc_id).await;
        let lookup = doc_id.clone();
        let result = async {
            let stored = state.blocking(move |engine| engine.get(&lookup)).await?;
            let doc = aircall::with_transcript(call_id, stored.as_ref(), &transcription, event_ms)
                .map_err(ApiError::Unprocessable)?;
            state
                .blocking(move |engine| engine.ingest(IngestRequest::upsert(doc)))
                .await
        }
        .await;
        match result {
            Ok(receipt) => {
                tracing::info!(call_id, seq = receipt.seq, "transcript added to its call")
            }
            Err(e) => tracing::error!(call_id, error = ?e, "storing a transcript failed"),
        }
    });
}

/// At start: fetch the transcripts of kept `transcription.created` events whose call has none yet
/// (the daemon stopped before the fetch ended, or the API failed).
pub async fn resume_transcript_fetches(state: AppState) {
    let pending = state
        .blocking(|engine| {
            let mut out = Vec::new();
            for (_, body) in engine.raw_events("aircall")? {
                let Ok(envelope) = serde_json::from_slice::<aircall::Envelope>(&body) else {
                    continue;
                };
                if let Some(call_id) = envelope.transcription_call_id() {
                    let has = engine
                        .get(&aircall::call_doc_id(call_id))?
                        .is_some_and(|d| d.metadata.contains_key("transcript_ms"));
                    if !has {
                        out.push((call_id, envelope.timestamp.saturating_mul(1_000)));
                    }
                }
            }
            Ok(out)
        })
        .await;
    match pending {
        Ok(list) => {
            for (call_id, event_ms) in list {
                spawn_transcript_fetch(state.clone(), call_id, event_ms);
            }
        }
        Err(e) => tracing::error!(error = ?e, "scanning kept Aircall events"),
    }
}
