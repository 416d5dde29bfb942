//! Bearer-token authentication for everything but webhooks and health: static tokens from the
//! configuration (or secret files), compared in constant time. Webhooks carry their own proofs.

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
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(value) = header else {
        return Err(ApiError::Unauthorized(
            "this route needs Authorization: Bearer <token>",
        ));
    };
    let Some(token) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    else {
        return Err(ApiError::Unauthorized(
            "the Authorization header must be `Bearer <token>`",
        ));
    };
    if !matches_any(token.trim(), tokens) {
        return Err(ApiError::Forbidden("the bearer token is not accepted"));
    }
    Ok(next.run(request).await)
}
