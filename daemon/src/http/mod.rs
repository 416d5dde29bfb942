//! The HTTP layer: routes that translate requests into engine calls and results into responses,
//! nothing more. `app(state)` builds the router so tests can call it without a socket. One router
//! per resource file, merged here; engine calls run on the blocking pool.

mod access;
mod admin;
mod ask;
mod auth;
mod console;
pub mod documents;
mod error;
pub mod extract;
mod health;
mod identity;
mod metrics;
mod problem;
mod replica;
mod rocketchat;
pub mod search;
pub mod server;
mod webhooks;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use concierge_engine::Engine;

use crate::config::Config;
pub use error::ApiError;
pub use metrics::Metrics;

/// What the handlers share: one `Clone` struct of `Arc`s.
#[derive(Clone)]
pub struct AppState {
    /// The engine (store, indexes, search); `None` on a replica, which keeps no store.
    pub engine: Option<Arc<Engine>>,
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Set once a shutdown signal arrived: readiness fails, new writes get 503.
    pub shutting_down: Arc<AtomicBool>,
    /// The embedding model's id and dimension (for readiness).
    pub model_id: Arc<String>,
    pub model_dim: usize,
    /// Request counters and latency histograms.
    pub metrics: Arc<metrics::Metrics>,
    /// The answer generators.
    pub answerer: Arc<crate::answers::Answerer>,
    /// The RocketChat bot (primary).
    pub bot: Option<Arc<crate::rocketchat::bot::Bot>>,
    /// Fetches Aircall transcripts after the acknowledgement (primary).
    pub transcripts: Option<Arc<crate::workers::transcripts::TranscriptFetcher>>,
    /// The OIDC verifier, when `auth.oidc_issuer` is set.
    pub oidc: Option<Arc<crate::oidc::Oidc>>,
    /// Searches and answers through Qdrant, when `search.backend = "qdrant"`.
    pub qdrant_search: Option<Arc<crate::qdrant::search::QdrantSearch>>,
    /// On a replica: the primary its writes go to.
    pub primary: Option<Arc<crate::cluster::Primary>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("data_dir", &self.config.storage.data_dir)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// 503 once a shutdown signal arrived.
    pub fn refuse_when_stopping(&self) -> Result<(), ApiError> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(ApiError::Unavailable(
                "the daemon is shutting down".to_owned(),
            ));
        }
        Ok(())
    }

    /// The store; a replica has none (its routes never ask: writes go to the primary).
    pub fn engine(&self) -> Result<Arc<Engine>, ApiError> {
        self.engine.clone().ok_or_else(|| {
            ApiError::Unavailable(
                "this node is a replica and keeps no store: send this to the primary".to_owned(),
            )
        })
    }

    /// The fusion of hybrid searches as `[search]` configures it.
    pub fn fusion_defaults(&self) -> concierge_engine::Fusion {
        self.config.search.fusion()
    }

    /// Runs engine work on the blocking pool, so request handling never starves.
    pub async fn blocking<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> concierge_engine::Result<T> + Send + 'static,
    {
        self.refuse_when_stopping()?;
        let engine = self.engine()?;
        match tokio::task::spawn_blocking(move || work(&engine)).await {
            Ok(result) => result.map_err(ApiError::from),
            Err(e) => Err(ApiError::Internal(format!("engine task failed: {e}"))),
        }
    }
}

/// The OpenAPI document of these routes (kept next to them; a test checks it lists every route).
pub const OPENAPI: &str = include_str!("../../openapi.json");

async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

/// The daemon's routes: a primary's, or a replica's (writes forwarded, reads through Qdrant).
pub fn app(state: AppState) -> Router {
    if state.primary.is_some() {
        return with_layers(replica_routes(&state), state);
    }
    let protected = Router::new()
        .merge(documents::router())
        .merge(search::router())
        .merge(ask::router())
        .merge(admin::router())
        .merge(metrics::router())
        .route("/openapi.json", axum::routing::get(openapi))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_bearer,
        ));
    let routes = Router::new()
        .merge(health::router())
        .merge(console::router())
        .merge(webhooks::router())
        .merge(rocketchat::router())
        .merge(protected);
    with_layers(routes, state)
}

/// A replica's routes: the same paths, scopes and health, writes sent on to the primary.
fn replica_routes(state: &AppState) -> Router<AppState> {
    use axum::routing::{get, post, put};
    let protected = Router::new()
        .route(
            "/v1/documents",
            post(replica::forward).get(replica::forward),
        )
        .route(
            "/v1/documents/{id}",
            get(replica::document).delete(replica::forward),
        )
        .merge(search::router())
        .merge(ask::router())
        .route("/v1/admin/status", get(replica::status))
        .route("/v1/admin/reindex", post(replica::forward))
        .route("/v1/admin/checkpoint", post(replica::forward))
        .route("/v1/admin/backup-status", put(replica::forward))
        .route("/v1/admin/dead-letters", get(replica::forward))
        .route(
            "/v1/admin/dead-letters/{consumer}/{seq}",
            axum::routing::delete(replica::forward),
        )
        .route(
            "/v1/admin/dead-letters/{consumer}/{seq}/retry",
            post(replica::forward),
        )
        .merge(metrics::router())
        .route("/openapi.json", get(openapi))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_bearer,
        ));
    Router::new()
        .merge(health::router())
        .merge(console::router())
        .route("/v1/webhooks/aircall", post(replica::forward))
        .route("/v1/webhooks/guesty", post(replica::forward))
        .route("/v1/rocketchat", post(replica::forward))
        .merge(protected)
}

/// What every request goes through, on either role.
fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(problem::not_found)
        .layer(axum::middleware::from_fn(problem::framework_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            extract::refuse_declared_oversize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            extract::refuse_large_head,
        ))
        .layer(DefaultBodyLimit::max(state.config.server.max_body_bytes))
        .layer(axum::middleware::from_fn(access::trace))
        .with_state(state)
}
