//! `POST /v1/webhooks/aircall` and `POST /v1/webhooks/guesty`: verify, build the merge, one
//! engine call ([`Engine::update`](concierge_engine::Engine::update): read, merge and write
//! under the engine's stripe lock, one synced batch), then answer 202 `{id, seq}`. Unknown
//! events are kept raw (202 `{kept: "raw"}`). Redeliveries are idempotent (Aircall: event + call
//! + time; Guesty: the `svix-id`).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use concierge_engine::{Engine, Updated};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{RawBody, parse, require_json};
use crate::config::Secret;
use crate::verify::matches_any;
use crate::webhooks::{aircall, guesty, svix};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/webhooks/aircall",
            post(
                |state: State<AppState>, headers: HeaderMap, body: RawBody| async move {
                    let metrics = state.metrics.clone();
                    counted(
                        &metrics,
                        "aircall",
                        aircall_hook(state, headers, body).await,
                    )
                },
            ),
        )
        .route(
            "/v1/webhooks/guesty",
            post(
                |state: State<AppState>, headers: HeaderMap, body: RawBody| async move {
                    let metrics = state.metrics.clone();
                    counted(&metrics, "guesty", guesty_hook(state, headers, body).await)
                },
            ),
        )
}

/// Counts a webhook by source and outcome (`concierge_webhooks_total`): `applied`, `unchanged`
/// (a redelivery or a change older than the stored one), `duplicate` (an idempotency key seen
/// before), `kept_raw`, `refused` (4xx), `failed` (5xx).
fn counted(
    metrics: &super::Metrics,
    source: &'static str,
    result: Result<Accepted, ApiError>,
) -> Result<Accepted, ApiError> {
    let outcome = match &result {
        Ok((_, Json(body))) if body.get("kept").is_some() => "kept_raw",
        Ok((_, Json(body))) if body["duplicate"] == json!(true) => "duplicate",
        Ok((_, Json(body))) if body["applied"] == json!(false) => "unchanged",
        Ok(_) => "applied",
        Err(e) if e.is_client_error() => "refused",
        Err(_) => "failed",
    };
    metrics.count_webhook(source, outcome);
    result
}

type Accepted = (StatusCode, Json<Value>);

fn kept_raw() -> Accepted {
    (StatusCode::ACCEPTED, Json(json!({"kept": "raw"})))
}

/// Merges into `doc_id` with `merge`, or keeps the raw body when the merge has nothing to write:
/// one blocking call, converted to the 202 body.
async fn merge_or_keep(
    state: &AppState,
    source: &'static str,
    doc_id: String,
    key: String,
    idempotency_key: String,
    body: axum::body::Bytes,
    merge: impl FnOnce(
        Option<&concierge_engine::Document>,
    ) -> Result<Option<concierge_engine::Document>, String>
    + Send
    + 'static,
) -> Result<Accepted, ApiError> {
    let id = doc_id.clone();
    let outcome = state
        .blocking(move |engine: &Engine| {
            let outcome = engine.update(&doc_id, Some(idempotency_key), merge)?;
            if let Ok(Updated::Kept) = outcome {
                engine.record_raw_event(source, &key, &body)?;
            }
            Ok(outcome)
        })
        .await?;
    match outcome.map_err(ApiError::Unprocessable)? {
        Updated::Written(receipt) => {
            let applied = receipt
                .outcomes
                .iter()
                .any(|o| matches!(o, concierge_engine::Outcome::Applied { .. }));
            Ok((
                StatusCode::ACCEPTED,
                Json(
                    json!({"id": id, "seq": receipt.seq, "duplicate": receipt.duplicate, "applied": applied}),
                ),
            ))
        }
        Updated::Kept => Ok(kept_raw()),
    }
}

async fn aircall_hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Accepted, ApiError> {
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
        if let Some(transcripts) = &state.transcripts {
            transcripts.fetch(call_id, event_ms);
        }
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"kept": "raw", "transcript": "fetching"})),
        ));
    }
    let Some(call_id) = envelope.call_id() else {
        // Not a call event (contacts, users, ...): kept, not indexed.
        tracing::info!(event = %envelope.event, "aircall event kept raw");
        state
            .blocking(move |engine| engine.record_raw_event("aircall", &key, &body))
            .await?;
        return Ok(kept_raw());
    };
    merge_or_keep(
        &state,
        "aircall",
        aircall::call_doc_id(call_id),
        key.clone(),
        key,
        body,
        move |stored| aircall::action(&envelope, stored).map(|a| a.into_upsert()),
    )
    .await
}

async fn guesty_hook(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Accepted, ApiError> {
    let Some(secret) = state.config.guesty.secret.as_ref().map(Secret::expose) else {
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
    let Some(doc_id) = guesty::target(&payload).map_err(ApiError::Unprocessable)? else {
        let event = payload
            .get("event")
            .and_then(|e| e.as_str())
            .unwrap_or("?")
            .to_owned();
        tracing::info!(%event, "guesty event kept raw");
        state
            .blocking(move |engine| engine.record_raw_event("guesty", &delivery, &body))
            .await?;
        return Ok(kept_raw());
    };
    merge_or_keep(
        &state,
        "guesty",
        doc_id,
        delivery.clone(),
        format!("guesty:{delivery}"),
        body,
        move |stored| guesty::action(&payload, stored, delivered_ms).map(|a| a.into_upsert()),
    )
    .await
}
