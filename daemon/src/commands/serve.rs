//! `concierge serve`: runs the daemon until SIGINT or SIGTERM.
//!
//! Configuration comes in layers (see `config`): defaults, `concierge.toml` or `--config`,
//! `CONCIERGE_<SECTION>__<KEY>` variables, then `--listen` / `--data-dir`. It opens the engine
//! (store and indexes in the data directory) with the local model, serves the HTTP API, and on a
//! signal stops accepting, lets in-flight requests finish (bounded), flushes the indexes and
//! exits 0. With no API token configured it refuses to listen beyond loopback.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use concierge_engine::{Engine, EngineConfig};
use concierge_models::{BertEmbedder, Embedder, EmbedderConfig};

use crate::answers::Answerer;
use crate::config::{self, Config};
use crate::http::{AppState, app};
use crate::rocketchat::bot::Bot;
use crate::workers::Workers;
use crate::workers::transcripts::TranscriptFetcher;

/// How long in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long background work gets to finish, and again once cancelled, before the engine closes.
/// With `SHUTDOWN_GRACE` at most 20 s between SIGTERM and the final index flush.
const WORKER_GRACE: Duration = Duration::from_secs(5);

/// Arguments of `concierge serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Configuration file (default: ./concierge.toml when it exists).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The address to listen on (`[server] listen`, env CONCIERGE_SERVER__LISTEN).
    #[arg(long)]
    pub listen: Option<String>,
    /// The data directory (`[storage] data_dir`, env CONCIERGE_STORAGE__DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The model directory; overrides `[models] dir` and `embedder`.
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// Threads the embedder computes on.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Threads search queries and questions embed on (their own pool over the same weights).
    /// Two halve a query's embedding time on an idle 2-core machine (measured: retrieval p50
    /// 17.7 → 10.1 ms).
    #[arg(long, default_value_t = 2)]
    pub query_threads: usize,
}

pub fn run(
    args: &ServeArgs,
    log_format: Option<concierge_infra::logging::LogFormat>,
) -> anyhow::Result<()> {
    let flags = config::Flags {
        config: args.config.clone(),
        listen: args.listen.clone(),
        data_dir: args.data_dir.clone(),
    };
    let config = config::load(&flags, std::env::vars())?;
    // The flag (or CONCIERGE_LOG__FORMAT) first, else the file's [log] format (validated).
    concierge_infra::logging::init(
        "info",
        log_format.unwrap_or_else(|| config.log.format.parse().unwrap_or_default()),
    );
    let model_dir = args
        .model_dir
        .clone()
        .unwrap_or_else(|| config.models.embedder_dir());
    let embedder = BertEmbedder::load(
        &model_dir,
        &EmbedderConfig {
            threads: args.threads,
            ..EmbedderConfig::default()
        },
    )?;
    let (model_id, model_dim) = (embedder.model_id().to_owned(), embedder.dim());
    // Queries get their own pool over the same weights: a search never waits for an indexing batch.
    let query_embedder: Arc<dyn Embedder> = Arc::new(embedder.with_own_pool(args.query_threads)?);
    let answerer = Arc::new(Answerer::from_config(&config, query_embedder.clone())?);
    let workers = Workers::default();
    // A replica keeps no store: no engine, no syncs, no bot or transcript worker of its own.
    let (engine, bot, transcripts) = if config.cluster.is_replica() {
        (None, None, None)
    } else {
        let engine = open_primary(
            &config,
            embedder,
            query_embedder.clone(),
            &model_id,
            model_dim,
        )?;
        let bot = Bot::new(
            engine.clone(),
            answerer.clone(),
            config.search.fusion(),
            config.rocketchat.clone(),
            workers.clone(),
        );
        let transcripts = TranscriptFetcher::new(engine.clone(), &config.aircall, workers.clone());
        (
            Some(engine),
            Some(Arc::new(bot)),
            Some(Arc::new(transcripts)),
        )
    };
    let primary = match (config.cluster.is_replica(), &config.cluster.primary_url) {
        (true, Some(url)) => {
            tracing::info!(primary = %url, "a replica: writes go to the primary, searches through Qdrant");
            Some(Arc::new(crate::cluster::Primary::new(
                url,
                config
                    .cluster
                    .primary_token
                    .as_ref()
                    .map(|t| t.expose().to_owned()),
                std::time::Duration::from_secs(30),
            )))
        }
        _ => None,
    };
    let qdrant_search = match (config.search.backend.as_str(), config.qdrant.target()) {
        ("qdrant", Ok(Some(target))) => {
            tracing::info!(collection = %target.collection, "searches and answers go through Qdrant");
            Some(Arc::new(crate::qdrant::search::QdrantSearch::new(
                crate::qdrant::QdrantClient::new(target),
                query_embedder.clone(),
                std::time::Duration::from_secs(10),
            )))
        }
        _ => None,
    };
    let oidc = config
        .auth
        .oidc()
        .map_err(anyhow::Error::msg)?
        .map(|settings| Arc::new(crate::oidc::Oidc::new(settings)));
    let state = AppState {
        engine,
        config: Arc::new(config),
        shutting_down: Arc::new(AtomicBool::new(false)),
        model_id: Arc::new(model_id),
        model_dim,
        metrics: Arc::new(crate::http::Metrics::default()),
        answerer,
        bot,
        transcripts,
        oidc,
        qdrant_search,
        primary,
    };
    if let Some(oidc) = &state.oidc {
        tracing::info!(issuer = %oidc.settings().issuer, audience = %oidc.settings().audience, "OIDC access tokens accepted");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("http")
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async {
        let served = serve(state.clone(), &workers).await;
        // Background work ends (or is cancelled) before the engine closes.
        workers.shutdown(WORKER_GRACE).await;
        served
    });
    state.shutting_down.store(true, Ordering::Release);
    // Every tracked task has ended; what is left of the runtime (idle threads) goes now.
    runtime.shutdown_timeout(WORKER_GRACE);
    let AppState {
        engine,
        bot,
        transcripts,
        ..
    } = state;
    drop((bot, transcripts));
    if let Some(engine) = engine {
        match Arc::try_unwrap(engine) {
            Ok(engine) => engine.close().context("closing the engine")?,
            Err(shared) => {
                tracing::warn!(
                    "engine still referenced at shutdown; it closes when the last reference goes"
                );
                drop(shared);
            }
        }
    }
    result
}

/// The primary's store: the engine on the data directory, with the Firestore and Qdrant syncs
/// that are configured.
fn open_primary(
    config: &Config,
    embedder: BertEmbedder,
    query_embedder: Arc<dyn Embedder>,
    model_id: &str,
    model_dim: usize,
) -> anyhow::Result<Arc<Engine>> {
    let engine = Engine::open_with_query_embedder(
        {
            let mut c = EngineConfig::new(&config.storage.data_dir);
            c.min_free_bytes = config.storage.min_free_bytes;
            c.dense_freeze_after = config.search.dense_freeze_after;
            c.dense_freeze_interval =
                std::time::Duration::from_millis(config.search.dense_freeze_interval_ms);
            c
        },
        Arc::new(embedder),
        query_embedder,
    )
    .with_context(|| {
        format!(
            "opening the data directory {}",
            config.storage.data_dir.display()
        )
    })?;
    if let Some(target) = config.firestore.target().map_err(anyhow::Error::msg)? {
        tracing::info!(base = %target.base, project = %target.project_id, collection = %target.collection, "Firestore write-behind on");
        engine
            .start_sync(Box::new(crate::firestore::FirestoreSink::new(target)))
            .context("starting the Firestore sync")?;
    }
    if let Some(target) = config.qdrant.target().map_err(anyhow::Error::msg)? {
        check_qdrant(&target, model_dim, model_id)?;
        tracing::info!(url = %target.url, collection = %target.collection, "Qdrant sync on");
        engine
            .start_sync(Box::new(crate::qdrant::QdrantSink::new(
                target, model_dim, model_id,
            )))
            .context("starting the Qdrant sync")?;
    }
    Ok(Arc::new(engine))
}

fn log_config(config: &Config) {
    // Never a secret in a log: only what is configured, not the values.
    tracing::info!(
        listen = %config.server.listen,
        data_dir = %config.storage.data_dir.display(),
        api_tokens = config.auth.api_tokens.len(),
        read_tokens = config.auth.read_tokens.len(),
        write_tokens = config.auth.write_tokens.len(),
        admin_tokens = config.auth.admin_tokens.len(),
        oidc_issuer = config.auth.oidc_issuer.as_deref().unwrap_or("none"),
        aircall_tokens = config.aircall.tokens.len(),
        guesty_secret = config.guesty.secret.is_some(),
        llm = config.llm_provider(),
        search_backend = %config.search.backend,
        "configuration loaded"
    );
}

async fn serve(state: AppState, workers: &Workers) -> anyhow::Result<()> {
    log_config(&state.config);
    let listen = state.config.server.listen;
    // Handlers first: a SIGTERM that arrives as soon as we say we listen must still be graceful.
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    tracing::info!(address = %local, "concierge listening");
    // Tests and scripts read this line to find an ephemeral port.
    println!("listening on http://{local}");
    if let Some(transcripts) = &state.transcripts {
        transcripts.resume();
    }
    if let Some(oidc) = &state.oidc {
        crate::workers::oidc_keys::keep_fresh(workers, oidc.clone(), state.shutting_down.clone());
    }
    let answerer = state.answerer.clone();
    let checks = workers.clone();
    workers.spawn("llm model check", async move {
        checks
            .blocking("llm model check", move || answerer.check_model())
            .await;
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutting_down = state.shutting_down.clone();
    let limits = crate::http::server::Limits {
        max_connections: state.config.server.max_connections,
        header_timeout: std::time::Duration::from_millis(state.config.server.header_timeout_ms),
    };
    let server = crate::http::server::run(listener, app(state), limits, async move {
        shutdown_signal(terminate, interrupt).await;
        shutting_down.store(true, Ordering::Release);
        let _ = stop_tx.send(true);
    });
    let mut stop_rx = stop_rx;
    tokio::select! {
        () = server => {},
        () = async {
            let _ = stop_rx.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::warn!("in-flight requests did not finish within {SHUTDOWN_GRACE:?}; stopping anyway"),
    }
    tracing::info!("concierge stopped accepting requests; flushing the indexes");
    Ok(())
}

async fn shutdown_signal(
    mut terminate: tokio::signal::unix::Signal,
    mut interrupt: tokio::signal::unix::Signal,
) {
    tokio::select! {
        _ = interrupt.recv() => tracing::info!("SIGINT received, shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Refuses to start on a Qdrant collection made for other vectors; Qdrant being down does not
/// stop the start (the consumer waits, degraded, and ingest goes on).
fn check_qdrant(
    target: &crate::qdrant::QdrantTarget,
    dim: usize,
    model: &str,
) -> anyhow::Result<()> {
    let mut sink = crate::qdrant::QdrantSink::new(target.clone(), dim, model)
        .with_timeout(std::time::Duration::from_secs(5));
    match sink.check_model() {
        Ok(()) => Ok(()),
        Err(e) if e.retryable => {
            tracing::warn!(error = %e, "Qdrant cannot be checked now; chunks wait for it");
            Ok(())
        }
        Err(e) => anyhow::bail!("[qdrant]: {e}"),
    }
}
