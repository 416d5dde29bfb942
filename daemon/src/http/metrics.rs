//! `GET /metrics`: Prometheus text exposition, written by hand (no registry crate): request counts
//! and latency histograms per route, method and status; the engine's durable sequence, consumer
//! lag, index sizes and states, dead letters, acknowledged-to-searchable latency and embedding
//! throughput, read at scrape time.

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

use concierge_engine::{EngineMetrics, Histogram};

use super::AppState;
use super::error::ApiError;

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

/// The request metrics, shared by all handlers.
#[derive(Debug, Default)]
pub struct Metrics {
    /// (route, method, status) -> latency histogram.
    requests: Mutex<BTreeMap<(String, String, u16), Histogram>>,
    /// (source, outcome) -> webhooks.
    webhooks: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Metrics {
    /// Counts one webhook delivery.
    pub fn count_webhook(&self, source: &'static str, outcome: &'static str) {
        *self
            .webhooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((source, outcome))
            .or_default() += 1;
    }

    fn render_webhooks(&self, out: &mut String) {
        let map = self
            .webhooks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        out.push_str("# HELP concierge_webhooks_total Webhook deliveries by source and outcome (applied, unchanged, duplicate, kept_raw, refused, failed).\n# TYPE concierge_webhooks_total counter\n");
        for ((source, outcome), n) in &map {
            let _ = writeln!(
                out,
                "concierge_webhooks_total{{source=\"{source}\",outcome=\"{outcome}\"}} {n}"
            );
        }
    }

    fn observe(&self, route: String, method: String, status: u16, seconds: f64) {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((route, method, status))
            .or_insert_with(|| Histogram::new(BUCKETS))
            .observe(seconds);
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
                h.count()
            );
        }
        out.push_str("# HELP concierge_http_request_duration_seconds HTTP request latency.\n# TYPE concierge_http_request_duration_seconds histogram\n");
        for ((route, method, status), h) in &map {
            let labels = format!("route=\"{route}\",method=\"{method}\",status=\"{status}\"");
            write_histogram(out, "concierge_http_request_duration_seconds", &labels, h);
        }
    }
}

/// One histogram's `_bucket`, `_sum` and `_count` lines (`labels` without braces, may be empty).
fn write_histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (bound, n) in h.buckets() {
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
        h.count()
    );
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum());
    let _ = writeln!(out, "{name}_count{braces} {}", h.count());
}

/// The engine's acknowledged-to-searchable histogram and embedding counters.
fn render_engine(out: &mut String, m: &EngineMetrics) {
    out.push_str("# HELP concierge_ingest_to_searchable_seconds From an acknowledged write to both indexes serving it.\n# TYPE concierge_ingest_to_searchable_seconds histogram\n");
    write_histogram(
        out,
        "concierge_ingest_to_searchable_seconds",
        "",
        &m.searchable,
    );
    let counter = |out: &mut String, name: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    };
    counter(
        out,
        "concierge_ingest_untimed_writes_total",
        "Acknowledged writes not timed (too many waited at once).",
        m.untimed_writes as f64,
    );
    counter(
        out,
        "concierge_embedded_chunks_total",
        "Chunks the indexer embedded; rate() over concierge_embedding_seconds_total is the throughput.",
        m.embedded_chunks as f64,
    );
    counter(
        out,
        "concierge_embedding_batches_total",
        "Embedding calls the indexer made.",
        m.embedding_batches as f64,
    );
    counter(
        out,
        "concierge_embedding_seconds_total",
        "Seconds the indexer spent embedding.",
        m.embedding_seconds,
    );
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
    let _ = writeln!(
        out,
        "# HELP concierge_build_info The running build (always 1).\n# TYPE concierge_build_info gauge\nconcierge_build_info{{version=\"{}\",role=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        state.config.cluster.role
    );
    state.metrics.render(&mut out);
    state.metrics.render_webhooks(&mut out);
    out.push_str("# HELP concierge_answers_total Answers by outcome: known, dont_know (nothing close enough), fallback (the generator failed, the fallback answered), failed.\n# TYPE concierge_answers_total counter\n");
    let answers = state.answerer.outcomes.counts();
    for (name, n) in crate::answers::AnswerOutcomes::NAMES.iter().zip(answers) {
        let _ = writeln!(out, "concierge_answers_total{{outcome=\"{name}\"}} {n}");
    }
    if state.engine.is_none() {
        // A replica: its requests, and how far Qdrant (what it searches) has come.
        let seq = match state.qdrant_search.clone() {
            Some(q) => tokio::task::spawn_blocking(move || q.watermark().ok())
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let _ = writeln!(
            out,
            "# HELP concierge_replica_qdrant_seq The change-log sequence Qdrant holds, as this replica reads it (-1: Qdrant unreachable).\n# TYPE concierge_replica_qdrant_seq gauge\nconcierge_replica_qdrant_seq {}",
            seq.map_or(-1.0, |s| s as f64)
        );
        return Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response());
    }
    let (status, engine_metrics) = state
        .blocking(|engine| Ok((engine.status()?, engine.metrics())))
        .await?;
    render_engine(&mut out, &engine_metrics);
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
    // Each consumer's lag, in entries and in seconds (one family after the other).
    for (name, help) in [
        (
            "concierge_consumer_lag",
            "Change-log entries a consumer has not made durable.",
        ),
        (
            "concierge_consumer_lag_seconds",
            "How long the oldest entry a consumer has not made durable has waited.",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for c in &status.consumers {
            let value = if name == "concierge_consumer_lag" {
                c.lag as f64
            } else {
                c.lag_seconds
            };
            let _ = writeln!(out, "{name}{{consumer=\"{}\"}} {value}", c.name);
        }
    }
    // The sync consumers (Firestore, Qdrant): what they wrote, retried and gave up on, and
    // whether they are failing now.
    for (name, help, kind) in [
        (
            "concierge_sync_written_total",
            "Documents a sync consumer had confirmed.",
            "counter",
        ),
        (
            "concierge_sync_requests_total",
            "Requests a sync consumer sent to its service.",
            "counter",
        ),
        (
            "concierge_sync_retries_total",
            "Document writes a sync consumer tried again.",
            "counter",
        ),
        (
            "concierge_sync_dead_letters_total",
            "Documents a sync consumer gave up on.",
            "counter",
        ),
        (
            "concierge_sync_degraded",
            "1 while a sync consumer's writes are failing.",
            "gauge",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for sync in &status.sync {
            let value = match name {
                "concierge_sync_written_total" => sync.written,
                "concierge_sync_requests_total" => sync.requests,
                "concierge_sync_retries_total" => sync.retries,
                "concierge_sync_dead_letters_total" => sync.dead_letters,
                _ => u64::from(sync.state == "degraded"),
            };
            let _ = writeln!(out, "{name}{{consumer=\"{}\"}} {value}", sync.name);
        }
    }
    // The per-index families, each whole before the next (the text format wants a family's
    // samples together, after its HELP and TYPE).
    let indexes = [("dense", &status.dense), ("keyword", &status.keyword)];
    for (family, help) in [
        ("concierge_index_chunks", "Chunks searchable per index."),
        (
            "concierge_index_seq",
            "Change-log sequence each index includes.",
        ),
        (
            "concierge_index_ready",
            "1 when the index serves searches (0 while rebuilding).",
        ),
        (
            "concierge_index_lag",
            "Change-log entries durable but not yet in the index.",
        ),
    ] {
        let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} gauge");
        for (name, index) in indexes {
            let value = match family {
                "concierge_index_chunks" => index.chunks.unwrap_or(0),
                "concierge_index_seq" => index.seq.unwrap_or(0),
                "concierge_index_ready" => {
                    u64::from(index.state == concierge_engine::IndexState::Ready)
                }
                _ => status.durable_seq.saturating_sub(index.seq.unwrap_or(0)),
            };
            let _ = writeln!(out, "{family}{{index=\"{name}\"}} {value}");
        }
    }
    // The sidecar's backups, as its last status report says (absent until it sent one).
    let backup = crate::backup_status::load(&state.config.storage.data_dir)
        .and_then(|v| serde_json::from_value::<concierge_infra::backup_status::StatusFile>(v).ok());
    if let Some(backup) = backup {
        if let Some(ok) = &backup.last_success {
            gauge(
                &mut out,
                "concierge_backup_last_success_timestamp_seconds",
                "When the last successful backup finished (Unix time), as the sidecar reported it.",
                ok.finished_at_unix as f64,
            );
        }
        if let Some(run) = &backup.last_run {
            gauge(
                &mut out,
                "concierge_backup_last_run_ok",
                "1 when the sidecar's last backup run succeeded.",
                f64::from(u8::from(run.outcome == "ok")),
            );
        }
    }
    if let Some(t) = status.dense.tombstones {
        gauge(
            &mut out,
            "concierge_dense_tombstones",
            "Graph points that are no longer live.",
            t as f64,
        );
    }
    if let Some(f) = status.dense.fresh {
        gauge(
            &mut out,
            "concierge_dense_fresh_points",
            "Dense points written since the frozen segment was made (scanned exactly).",
            f as f64,
        );
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}
