//! `concierge`: the Concierge daemon's binary.
//!
//! Only command-line parsing and glue live here; what the commands do lives in the library crates
//! (`concierge-models`, `concierge-engine`). `main` maps failures to exit codes that mean something:
//! 1 for a runtime failure, 2 for bad usage (clap's), 3 when the model files are not installed.

mod commands;

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
    let cli = Cli::parse();
    init_logging();
    match commands::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("concierge: error: {err:#}");
            ExitCode::from(commands::exit_code(&err))
        }
    }
}

/// Logs go to stderr (stdout carries command output), filtered by `RUST_LOG` (default `warn` for
/// one-shot commands).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
