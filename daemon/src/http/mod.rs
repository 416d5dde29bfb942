//! The HTTP layer: routes that translate requests into calls and results into responses, nothing
//! more. `app(state)` builds the router so tests can call it without a socket.

mod health;
mod problem;

use std::sync::Arc;

use axum::Router;
use concierge_models::Embedder;

/// What the handlers share: one `Clone` struct of `Arc`s.
#[derive(Clone)]
pub struct AppState {
    /// The sentence embedder, loaded at start.
    pub embedder: Arc<dyn Embedder>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("model", &self.embedder.model_id())
            .finish_non_exhaustive()
    }
}

/// The daemon's routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .fallback(problem::not_found)
        .with_state(state)
}
