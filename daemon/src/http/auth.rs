//! Bearer-token authentication for everything but webhooks and health: static tokens from the
//! configuration (or secret files), compared in constant time. Webhooks carry their own proofs.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;

/// Equal, in time that does not depend on where the inputs differ (both are hashed first, so
/// not on their lengths either).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (ha, hb) = (Sha256::digest(a), Sha256::digest(b));
    ha.iter()
        .zip(hb.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// True when `candidate` equals one of `accepted` (every one is compared).
pub fn matches_any(candidate: &str, accepted: &[String]) -> bool {
    accepted.iter().fold(false, |found, t| {
        found | constant_time_eq(candidate.as_bytes(), t.as_bytes())
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_exactly() {
        let accepted = vec!["alpha".to_owned(), "beta".to_owned()];
        assert!(matches_any("beta", &accepted));
        assert!(!matches_any("bet", &accepted));
        assert!(!matches_any("betaa", &accepted));
        assert!(!matches_any("", &accepted));
    }
}
