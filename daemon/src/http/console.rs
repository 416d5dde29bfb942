//! The console at `/`: one page, its script and its style, compiled into the binary (no build
//! step, no external assets), public like the health routes — everything it shows comes from
//! the API with the signed-in caller's token. `GET /console/config` tells it whether single
//! sign-on is offered (`auth.oidc_console_client_id`). Served with a Content-Security-Policy
//! that allows only this origin (and the OIDC issuer's, for its discovery and token calls).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::AppState;

const PAGE: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/console.js", get(script))
        .route("/console.css", get(style))
        .route("/console/config", get(config))
}

/// The issuer's origin (`https://sso.example.com`), when single sign-on is offered.
fn issuer_origin(state: &AppState) -> Option<String> {
    let auth = &state.config.auth;
    auth.oidc_console_client_id.as_ref()?;
    let issuer = auth.oidc_issuer.as_deref()?;
    let (scheme, rest) = issuer.split_once("://")?;
    let host = rest.split('/').next()?;
    Some(format!("{scheme}://{host}"))
}

fn asset(state: &AppState, content_type: &'static str, body: &'static str) -> Response {
    let connect = match issuer_origin(state) {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_owned(),
    };
    let policy = format!(
        "default-src 'self'; connect-src {connect}; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    );
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn page(State(state): State<AppState>) -> Response {
    asset(&state, "text/html; charset=utf-8", PAGE)
}

async fn script(State(state): State<AppState>) -> Response {
    asset(&state, "text/javascript; charset=utf-8", SCRIPT)
}

async fn style(State(state): State<AppState>) -> Response {
    asset(&state, "text/css; charset=utf-8", STYLE)
}

/// `{oidc: {issuer, client_id}}` when single sign-on is offered, `{oidc: null}` otherwise.
async fn config(State(state): State<AppState>) -> Response {
    let auth = &state.config.auth;
    let oidc = match (&auth.oidc_issuer, &auth.oidc_console_client_id) {
        (Some(issuer), Some(client)) => json!({"issuer": issuer, "client_id": client}),
        _ => serde_json::Value::Null,
    };
    axum::Json(json!({ "oidc": oidc })).into_response()
}

/// The bytes a first visit downloads: the page, its script and its style.
#[cfg(test)]
fn page_weight() -> usize {
    PAGE.len() + SCRIPT.len() + STYLE.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_stays_small() {
        for asset in [PAGE, SCRIPT, STYLE] {
            assert!(
                !asset.contains("http://") && !asset.contains("//cdn"),
                "an external asset"
            );
        }
        assert!(
            !SCRIPT.contains("innerHTML"),
            "data goes in as text, never as HTML"
        );
        assert!(page_weight() < 40_000, "{} bytes", page_weight());
    }
}
