//! Bearer-token authentication and scopes for everything but webhooks and health: static tokens
//! from the configuration (or secret files), compared in constant time. Webhooks carry their own
//! proofs. RFC 6750: no credentials → 401 `WWW-Authenticate: Bearer`; a wrong or malformed token
//! → 401 `Bearer error="invalid_token"`; two `Authorization` headers → 400 (never a guess at
//! which one counts); a valid token without the route's scope → 403 naming the scope.
//!
//! Scopes are levels: `read` (search, ask, get documents, status, metrics, the OpenAPI
//! document) < `write` (+ ingest documents, checkpoints, the sidecar's backup status) < `admin`
//! (+ delete, reindex: everything). `auth.read_tokens` grant `read`, `auth.write_tokens` `write`,
//! `auth.admin_tokens` and `auth.api_tokens` (their meaning since the start) `admin`.

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::error::ApiError;
pub use super::identity::Identity;
use crate::config::Auth;
use crate::verify::position_of;

/// What a token may do; each level includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    fn refusal(self) -> &'static str {
        match self {
            Scope::Read => "this route needs a token with the `read` scope",
            Scope::Write => {
                "this route needs a token with the `write` scope (auth.write_tokens or auth.admin_tokens)"
            }
            Scope::Admin => {
                "this route needs a token with the `admin` scope (auth.admin_tokens or auth.api_tokens)"
            }
        }
    }
}

/// The scope each protected route needs (method, route as axum matches it). A protected route
/// missing here needs `admin`; a test checks that every route of the OpenAPI document is here.
pub const ROUTE_SCOPES: &[(&str, &str, Scope)] = &[
    ("GET", "/v1/documents", Scope::Read),
    ("GET", "/v1/documents/{id}", Scope::Read),
    ("GET", "/v1/admin/dead-letters", Scope::Read),
    ("POST", "/v1/search", Scope::Read),
    ("POST", "/v1/ask", Scope::Read),
    ("GET", "/v1/admin/status", Scope::Read),
    ("GET", "/metrics", Scope::Read),
    ("GET", "/openapi.json", Scope::Read),
    ("POST", "/v1/documents", Scope::Write),
    ("POST", "/v1/admin/checkpoint", Scope::Write),
    // The sidecar's two calls (checkpoint, backup status) need no more than `write`: its token
    // cannot delete documents.
    ("PUT", "/v1/admin/backup-status", Scope::Write),
    ("DELETE", "/v1/documents/{id}", Scope::Admin),
    ("POST", "/v1/admin/reindex", Scope::Admin),
    (
        "POST",
        "/v1/admin/dead-letters/{consumer}/{seq}/retry",
        Scope::Admin,
    ),
    (
        "DELETE",
        "/v1/admin/dead-letters/{consumer}/{seq}",
        Scope::Admin,
    ),
];

/// The scope `method` on `route` needs.
pub fn required_scope(method: &str, route: &str) -> Scope {
    ROUTE_SCOPES
        .iter()
        .find(|(m, r, _)| *m == method && *r == route)
        .map_or(Scope::Admin, |(_, _, s)| *s)
}

/// The highest scope `token` is configured with (every list is compared in full: constant
/// time over the configured tokens), and where (`auth.read_tokens[1]`: what the
/// access log names instead of the token).
fn static_token(token: &str, auth: &Auth) -> Option<(Scope, String)> {
    [
        (Scope::Read, "read_tokens", &auth.read_tokens),
        (Scope::Write, "write_tokens", &auth.write_tokens),
        (Scope::Admin, "admin_tokens", &auth.admin_tokens),
        (Scope::Admin, "api_tokens", &auth.api_tokens),
    ]
    .into_iter()
    .fold(None, |best, (scope, list, tokens)| {
        match position_of(token, tokens) {
            Some(i) if best.as_ref().is_none_or(|(b, _)| scope > *b) => {
                Some((scope, format!("auth.{list}[{i}]")))
            }
            _ => best,
        }
    })
}

/// The highest scope the roles of an OIDC caller map to (`auth.oidc_*_roles`).
pub fn scope_of_roles(roles: &[String], auth: &Auth) -> Option<Scope> {
    [
        (Scope::Read, &auth.oidc_read_roles),
        (Scope::Write, &auth.oidc_write_roles),
        (Scope::Admin, &auth.oidc_admin_roles),
    ]
    .into_iter()
    .filter(|(_, wanted)| roles.iter().any(|r| wanted.contains(r)))
    .map(|(scope, _)| scope)
    .max()
}

/// A static token's scope, or an OIDC token's caller and scope (`None`: no role grants one).
async fn authenticate(
    state: &AppState,
    token: &str,
) -> Result<(Option<Scope>, Identity), ApiError> {
    let auth = &state.config.auth;
    if let Some((scope, which)) = static_token(token, auth) {
        return Ok((
            Some(scope),
            Identity {
                via: "token",
                subject: Some(which),
                username: None,
            },
        ));
    }
    let Some(oidc) = state.oidc.clone() else {
        return Err(ApiError::InvalidToken(
            "the bearer token is not accepted".to_owned(),
        ));
    };
    let first = oidc.verify_cached(token);
    let verified = match first {
        // A key the cache lacks: fetch the key set again, if that is allowed now.
        Err(crate::oidc::jwt::TokenError::UnknownKey(_)) if oidc.may_refresh() => {
            let again = oidc.clone();
            let token = token.to_owned();
            tokio::task::spawn_blocking(move || {
                let _ = again.refresh();
                again.verify_cached(&token)
            })
            .await
            .map_err(|e| ApiError::Internal(format!("OIDC refresh task failed: {e}")))?
        }
        other => other,
    };
    match verified {
        Ok(caller) => Ok((
            scope_of_roles(&caller.roles, auth),
            Identity {
                via: "oidc",
                subject: Some(caller.subject),
                username: caller.username,
            },
        )),
        Err(e) => {
            let status = oidc.status();
            let detail = match (&e, status.last_error) {
                (crate::oidc::jwt::TokenError::UnknownKey(_), Some(why)) if status.keys == 0 => {
                    format!(
                        "the bearer token is not accepted: the OIDC issuer's keys are not available ({why})"
                    )
                }
                _ => format!("the bearer token is not accepted: {e}"),
            };
            tracing::info!(error = %e, "an OIDC token was refused");
            Err(ApiError::InvalidToken(detail))
        }
    }
}

/// Middleware: requires `Authorization: Bearer <token>` with a configured static token or an
/// OIDC access token from `auth.oidc_issuer`, with the route's scope. With neither configured
/// the daemon only listens on loopback (checked at start) and lets requests through. The
/// caller's identity goes into the request's extensions and its log span.
pub async fn require_bearer(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !state.config.auth.has_tokens() {
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
            "the Authorization header must be `Bearer <token>`".to_owned(),
        ));
    };
    let token = token.trim().to_owned();
    let (granted, identity) = authenticate(&state, &token).await?;
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |m| m.as_str().to_owned(),
    );
    let needed = required_scope(request.method().as_str(), &route);
    let span = tracing::info_span!(
        "caller",
        via = identity.via,
        subject = identity.subject.as_deref().unwrap_or(""),
        username = identity.username.as_deref().unwrap_or("")
    );
    let Some(granted) = granted else {
        span.in_scope(
            || tracing::info!(%route, "an OIDC token with no role that grants a scope was refused"),
        );
        return Err(ApiError::Forbidden(
            "the token has none of the roles that grant a scope (auth.oidc_read_roles, oidc_write_roles, oidc_admin_roles)",
        ));
    };
    if granted < needed {
        span.in_scope(|| tracing::info!(%route, needed = needed.name(), granted = granted.name(), "a token without the route's scope was refused"));
        return Err(ApiError::Forbidden(needed.refusal()));
    }
    request.extensions_mut().insert(identity.clone());
    let mut response = tracing::Instrument::instrument(next.run(request), span).await;
    // For the access log, which runs outside this layer.
    response.extensions_mut().insert(identity);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use concierge_infra::layered_config::Secret;

    fn granted_scope(token: &str, auth: &Auth) -> Option<Scope> {
        static_token(token, auth).map(|(scope, _)| scope)
    }

    #[test]
    fn each_token_list_grants_its_scope_and_the_highest_wins() {
        let auth = Auth {
            api_tokens: vec![Secret::from("all")],
            read_tokens: vec![Secret::from("r"), Secret::from("both")],
            write_tokens: vec![Secret::from("w")],
            admin_tokens: vec![Secret::from("a"), Secret::from("both")],
            ..Auth::default()
        };
        assert_eq!(granted_scope("r", &auth), Some(Scope::Read));
        assert_eq!(granted_scope("w", &auth), Some(Scope::Write));
        assert_eq!(granted_scope("a", &auth), Some(Scope::Admin));
        assert_eq!(granted_scope("all", &auth), Some(Scope::Admin));
        assert_eq!(granted_scope("both", &auth), Some(Scope::Admin));
        assert_eq!(granted_scope("nope", &auth), None);
        assert_eq!(
            static_token("both", &auth)
                .map(|(_, which)| which)
                .as_deref(),
            Some("auth.admin_tokens[1]"),
            "the access log names the list and place of the highest grant"
        );
    }

    #[test]
    fn the_openapi_document_declares_each_protected_operations_scope_as_the_table_does() {
        let doc: serde_json::Value =
            serde_json::from_str(crate::http::OPENAPI).expect("openapi.json");
        let mut declared = 0;
        for (path, ops) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in ops.as_object().into_iter().flatten() {
                let public = op["security"].as_array().is_some_and(Vec::is_empty);
                if public {
                    continue;
                }
                let scope = op["x-concierge-scope"].as_str();
                assert_eq!(
                    scope,
                    Some(required_scope(&method.to_uppercase(), path).name()),
                    "{method} {path}"
                );
                assert!(
                    ROUTE_SCOPES
                        .iter()
                        .any(|(m, r, _)| m.eq_ignore_ascii_case(method) && r == path),
                    "{method} {path} is not in ROUTE_SCOPES"
                );
                declared += 1;
            }
        }
        assert_eq!(declared, ROUTE_SCOPES.len());
    }

    #[test]
    fn routes_need_the_scope_the_table_gives_and_unknown_ones_need_admin() {
        assert_eq!(required_scope("POST", "/v1/search"), Scope::Read);
        assert_eq!(required_scope("POST", "/v1/documents"), Scope::Write);
        assert_eq!(required_scope("DELETE", "/v1/documents/{id}"), Scope::Admin);
        assert_eq!(required_scope("GET", "/v1/something-new"), Scope::Admin);
        assert!(Scope::Read < Scope::Write && Scope::Write < Scope::Admin);
    }
}
