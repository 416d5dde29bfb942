//! `concierge`: the Concierge daemon's binary.
//!
//! Only command-line parsing and glue live here; what the commands do lives in the library crates
//! (`concierge-models`, `concierge-engine`). `main` maps failures to exit codes that mean something:
//! 1 for a runtime failure, 2 for bad usage (clap's), 3 when the model files are not installed.

mod aircall_api;
mod answers;
mod backup_status;
mod cluster;
mod commands;
mod config;
mod firestore;
mod http;
mod oidc;
mod outbound;
mod qdrant;
mod rocketchat;
mod verify;
mod webhooks;
mod workers;

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
    // SAFETY: first thing in `main`, before any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        concierge_models::confine_candle_elementwise_threads()
    };
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
