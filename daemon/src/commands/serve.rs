//! `concierge serve`: runs the daemon until SIGINT or SIGTERM.
//!
//! Today it loads the embedding model and answers `/healthz` and `/readyz`; ingest, search and
//! answers join as the engine and daemon work lands (see ARCHITECTURE.md). With no API token
//! configured it refuses to listen beyond loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use concierge_models::{BertEmbedder, EmbedderConfig};

use super::model_args::ModelArgs;
use crate::http::{AppState, app};

/// How long in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Arguments of `concierge serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The address to listen on (`[server] listen`).
    #[arg(
        long,
        env = "CONCIERGE_SERVER__LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "no API token is configured, so concierge only listens on loopback; {} is not a loopback address",
        args.listen
    );
    let config = EmbedderConfig {
        threads: args.model.threads,
        ..EmbedderConfig::default()
    };
    let embedder = BertEmbedder::load(args.model.dir(), &config)?;
    let state = AppState {
        embedder: Arc::new(embedder),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("http")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args.listen, state))
}

async fn serve(listen: SocketAddr, state: AppState) -> anyhow::Result<()> {
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
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app(state)).with_graceful_shutdown(async move {
        shutdown_signal(terminate, interrupt).await;
        let _ = stop_tx.send(true);
    });
    let mut stop_rx = stop_rx;
    tokio::select! {
        result = server => result.context("serving HTTP")?,
        () = async {
            let _ = stop_rx.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::warn!("in-flight requests did not finish within {SHUTDOWN_GRACE:?}; stopping anyway"),
    }
    tracing::info!("concierge stopped");
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
