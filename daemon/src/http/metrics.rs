//! `GET /metrics`: Prometheus text exposition, written by hand (no registry crate): request counts
//! and latency histograms per route, method and status; the engine's durable sequence, consumer
//! lag, index sizes and states, and dead letters, read at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;
use super::error::ApiError;

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    total: u64,
}

/// The request metrics, shared by all handlers.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (route, method, status) -> latency histogram.
    requests: Mutex<BTreeMap<(String, String, u16), Histogram>>,
}

impl Metrics {
    fn observe(&self, route: String, method: String, status: u16, seconds: f64) {
        let mut map = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let h = map.entry((route, method, status)).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += seconds;
        h.total += 1;
    }

    fn render(&self, out: &mut String) {
        let map = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        out.push_str("# HELP concierge_http_requests_total HTTP requests by route, method and status.\n# TYPE concierge_http_requests_total counter\n");
        for ((route, method, status), h) in &map {
            let _ = writeln!(
                out,
                "concierge_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {}",
                h.total
            );
        }
        out.push_str("# HELP concierge_http_request_duration_seconds HTTP request latency.\n# TYPE concierge_http_request_duration_seconds histogram\n");
        for ((route, method, status), h) in &map {
            let labels = format!("route=\"{route}\",method=\"{method}\",status=\"{status}\"");
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "concierge_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "concierge_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.total
            );
            let _ = writeln!(
                out,
                "concierge_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "concierge_http_request_duration_seconds_count{{{labels}}} {}",
                h.total
            );
        }
    }
}

/// Middleware: times every request under its route template (not the raw path: ids would explode
/// the label set).
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.observe(
        route,
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

async fn scrape(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut out = String::new();
    state.metrics.render(&mut out);
    let status = state.blocking(|engine| engine.status()).await?;
    let gauge = |out: &mut String, name: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    gauge(
        &mut out,
        "concierge_durable_seq",
        "Highest change-log sequence durably written.",
        status.durable_seq as f64,
    );
    gauge(
        &mut out,
        "concierge_dead_letters",
        "Change-log entries a consumer gave up on.",
        status.dead_letters as f64,
    );
    gauge(
        &mut out,
        "concierge_store_poisoned",
        "1 when the store refuses writes after a failed sync.",
        f64::from(u8::from(status.poisoned.is_some())),
    );
    out.push_str("# HELP concierge_consumer_lag Change-log entries a consumer has not made durable.\n# TYPE concierge_consumer_lag gauge\n");
    for c in &status.consumers {
        let _ = writeln!(
            out,
            "concierge_consumer_lag{{consumer=\"{}\"}} {}",
            c.name, c.lag
        );
    }
    out.push_str("# HELP concierge_index_chunks Chunks searchable per index.\n# TYPE concierge_index_chunks gauge\n");
    out.push_str("# HELP concierge_index_seq Change-log sequence each index includes.\n# TYPE concierge_index_seq gauge\n");
    out.push_str("# HELP concierge_index_ready 1 when the index serves searches (0 while rebuilding).\n# TYPE concierge_index_ready gauge\n");
    for (name, index) in [("dense", &status.dense), ("keyword", &status.keyword)] {
        let _ = writeln!(
            out,
            "concierge_index_chunks{{index=\"{name}\"}} {}",
            index.chunks.unwrap_or(0)
        );
        let _ = writeln!(
            out,
            "concierge_index_seq{{index=\"{name}\"}} {}",
            index.seq.unwrap_or(0)
        );
        let _ = writeln!(
            out,
            "concierge_index_ready{{index=\"{name}\"}} {}",
            u8::from(index.state == concierge_engine::IndexState::Ready)
        );
        let lag = status.durable_seq.saturating_sub(index.seq.unwrap_or(0));
        let _ = writeln!(out, "concierge_index_lag{{index=\"{name}\"}} {lag}");
    }
    if let Some(t) = status.dense.tombstones {
        gauge(
            &mut out,
            "concierge_dense_tombstones",
            "Graph points that are no longer live.",
            t as f64,
        );
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}
