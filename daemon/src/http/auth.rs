//! Bearer-token authentication for everything but webhooks and health: static tokens from the
//! configuration (or secret files), compared in constant time. Webhooks carry their own proofs.
//! RFC 6750: no credentials → 401 `WWW-Authenticate: Bearer`; a wrong or malformed token → 401
//! `Bearer error="invalid_token"`; two `Authorization` headers → 400 (never a guess at which one
//! counts). 403 is kept for a valid token that lacks a permission.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::error::ApiError;
use crate::verify::matches_any;

/// Middleware: requires `Authorization: Bearer <token>` with a configured token. With no token
/// configured the daemon only listens on loopback (checked at start) and lets requests through.
pub async fn require_bearer(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let tokens = &state.config.auth.api_tokens;
    if tokens.is_empty() {
        return Ok(next.run(request).await);
    }
    let mut values = request.headers().get_all(header::AUTHORIZATION).iter();
    let (first, second) = (values.next(), values.next());
    if second.is_some() {
        // Which one would count is a guess; a client (or a proxy) that sends two is broken.
        return Err(ApiError::BadRequest(
            "more than one Authorization header".to_owned(),
        ));
    }
    let Some(value) = first else {
        return Err(ApiError::Unauthorized(
            "this route needs Authorization: Bearer <token>",
        ));
    };
    let Some(token) = value.to_str().ok().and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    }) else {
        return Err(ApiError::InvalidToken(
            "the Authorization header must be `Bearer <token>`",
        ));
    };
    if !matches_any(token.trim(), tokens) {
        return Err(ApiError::InvalidToken("the bearer token is not accepted"));
    }
    Ok(next.run(request).await)
}
