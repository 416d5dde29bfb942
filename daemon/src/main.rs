//! `concierge`: the Concierge daemon's binary.
//!
//! Only command-line parsing and glue live here; what the commands do lives in the library crates
//! (`concierge-models`, `concierge-engine`). `main` maps failures to exit codes that mean something:
//! 1 for a runtime failure, 2 for bad usage (clap's), 3 when the model files are not installed.

mod commands;
mod http;

use std::process::ExitCode;

use clap::Parser;

/// Concierge: a self-hosted retrieval-augmented answer engine for an operations team.
#[derive(Debug, Parser)]
#[command(name = "concierge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    limit_candle_elementwise_threads();
    let cli = Cli::parse();
    init_logging(cli.command.default_log_level());
    match commands::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("concierge: error: {err:#}");
            ExitCode::from(commands::exit_code(&err))
        }
    }
}

/// candle runs large element-wise operations on a global pool of its own, sized by
/// `CANDLE_NUM_THREADS` (default: every core), beside the embedder's pool. Unless the operator set
/// it, keep that work on the embedder's threads so `--threads` is the whole story.
#[allow(unsafe_code)]
fn limit_candle_elementwise_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: called first thing in `main`, before any other thread exists, so nothing can
        // read the environment concurrently.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
}

/// Logs go to stderr (stdout carries command output), filtered by `RUST_LOG`.
fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
