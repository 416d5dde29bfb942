//! `concierge-bench`: Concierge's benchmarks, each compared in the same run with the reference it
//! has to beat, written as JSON and Markdown (and SVG where a curve says more than a table).
//!
//! - `embed`: sentences per second of the candle embedder at several batch sizes and thread counts,
//!   for short and ~128-token texts, beside ONNX Runtime on the same model and texts
//!   (`bench/peers/onnx_embed.py`, optional: skipped with a message when it cannot run).
//! - `ann`: recall@10 against queries/s of the dense index on a vector file (`.npy`/`.fvecs`),
//!   unfiltered and filtered, beside the exact scan, hnswlib and FAISS (`bench/peers/*_ann.py`).
//! - `retrieval`: nDCG@10, recall@100, MRR@10 and latency per search mode on a BEIR dataset.
//! - `retrieval-qdrant`: the same on a WordNet subset, embedded indexes beside Qdrant.
//! - `prepare-wordnet`: the WordNet datasets both use (`bench/data/prepare.sh` calls it).
//! - `load`: HTTP load on a running or started daemon (webhooks or searches, open or closed loop).
//! - `scale`: the real daemon at 100k chunks (restart, memory, search over HTTP vs in-process).
//! - `firestore`: the Firestore write-behind against the emulator (latency, catch-up,
//!   throughput, rebuild).
//! - `qdrant`: Qdrant sync throughput and latency, searches through a replica.
//! - `auth`: bearer-token verification per request, static beside OIDC JWTs.
//! - `ask`: answer latency over HTTP against a fake LLM with a fixed delay (Concierge's share).

mod ann;
mod ask;
mod auth;
mod backup;
mod beir;
mod corpus;
mod corpus_vectors;
mod cpu_time;
mod daemon_process;
mod daemon_status;
mod embed;
mod firestore_sync;
mod http_client;
mod ir_metrics;
mod load;
mod peer;
mod plot;
mod progress;
mod qdrant_sync;
mod retrieval;
mod retrieval_qdrant;
mod run_info;
mod scale;
mod texts;
mod vectors_file;
mod wordnet;

use std::process::ExitCode;

use clap::Parser;

/// Concierge's benchmarks.
#[derive(Debug, Parser)]
#[command(name = "concierge-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Embedding throughput: candle against ONNX Runtime, same model, same texts, same run.
    Embed(embed::EmbedArgs),
    /// Dense index recall/throughput (unfiltered and filtered) on a vector file, beside the exact
    /// scan, hnswlib and FAISS on the same files.
    Ann(ann::AnnArgs),
    /// Retrieval quality (nDCG@10, recall@100, MRR@10) and latency per search mode on a dataset
    /// in the BEIR layout (WordNet by default), ingested through the whole engine.
    Retrieval(retrieval::RetrievalArgs),
    /// Retrieval quality of a WordNet subset on the embedded indexes (a primary) and through
    /// Qdrant (a replica), same run, over HTTP.
    RetrievalQdrant(retrieval_qdrant::RetrievalQdrantArgs),
    /// HTTP load on a running (or a started) daemon: webhooks or searches, fixed rates or fixed
    /// concurrency; throughput and latency p50/p90/p99/max, acknowledgement to searchable.
    Load(load::LoadArgs),
    /// The real daemon at scale (100k chunks by default): restart to ready, resident memory,
    /// search over HTTP per mode beside the same queries in-process.
    Scale(scale::ScaleArgs),
    /// Answer latency over HTTP (retrieval, generation) against a fake LLM with a fixed delay,
    /// and what Concierge adds on top of it; the extractive answerer beside it.
    Ask(ask::AskArgs),
    /// The Firestore write-behind of the real daemon against the Firestore emulator: acknowledged
    /// → in Firestore latency at fixed webhook rates, catch-up after an outage, throughput on a
    /// backlog, and a rebuild of a node from Firestore.
    Firestore(firestore_sync::FirestoreArgs),
    /// The Qdrant sync of a primary (chunks/s, acknowledged → in Qdrant) and searches through a
    /// replica beside the primary's own, against Qdrant's REST API as the tests serve it.
    Qdrant(qdrant_sync::QdrantArgs),
    /// What verifying a bearer token costs per request: a static token beside OIDC JWTs (RS256,
    /// ES256) on the real daemon, same run.
    Auth(auth::AuthArgs),
    /// Backup and restore throughput of `concierge-sidecar` beside `restic` on the same ~1 GB
    /// mixed tree, to a local repository and to S3 (`moto_server`), first and unchanged second
    /// run.
    Backup(backup::BackupArgs),
    /// Builds the WordNet datasets (BEIR layout and vector files) from an unpacked
    /// `wordnet-base`; `bench/data/prepare.sh` downloads it and calls this.
    PrepareWordnet(wordnet::PrepareArgs),
}

fn main() -> ExitCode {
    // SAFETY: first thing in `main`, before any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        concierge_models::confine_candle_elementwise_threads()
    };
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Embed(args) => embed::run(&args),
        Command::Ann(args) => ann::run(&args),
        Command::Retrieval(args) => retrieval::run(&args),
        Command::RetrievalQdrant(args) => retrieval_qdrant::run(&args),
        Command::Load(args) => load::run(&args),
        Command::Scale(args) => scale::run(&args),
        Command::Ask(args) => ask::run(&args),
        Command::Firestore(args) => firestore_sync::run(&args),
        Command::Auth(args) => auth::run(&args),
        Command::Qdrant(args) => qdrant_sync::run(&args),
        Command::Backup(args) => backup::run(&args),
        Command::PrepareWordnet(args) => wordnet::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("concierge-bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
