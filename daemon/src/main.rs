//! `concierge`: the Concierge daemon's binary.
//!
//! Only command-line parsing and glue live here; what the commands do lives in the daemon's
//! library (`concierge_daemon::commands`) and the crates below it. `main` maps failures to exit
//! codes that mean something: 1 for a runtime failure, 2 for bad usage (clap's), 3 when the
//! model files are not installed.

use std::process::ExitCode;

use concierge_daemon::commands;

use clap::Parser;
use concierge_infra::logging::{self, LogFormat};

/// The exit codes, shown by `--help`.
const EXIT_CODES: &str = "Exit codes:
  0  success (healthcheck: the daemon is ready)
  1  a runtime failure or an invalid configuration (healthcheck: not ready or unreachable;
     ingest: a line could not be stored, or --wait-indexed timed out)
  2  bad usage: unknown or malformed arguments
  3  the model files are not installed (run models/fetch.sh)";

/// Concierge: a self-hosted retrieval-augmented answer engine for an operations team.
#[derive(Debug, Parser)]
#[command(name = "concierge", version, about, after_long_help = EXIT_CODES)]
struct Cli {
    /// Log lines as `text` (coloured only on a terminal) or `json` (one object per line); also
    /// `CONCIERGE_LOG__FORMAT`, or `[log] format` in the configuration file of `serve`.
    #[arg(long, global = true, env = "CONCIERGE_LOG__FORMAT", value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: commands::Command,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    s.parse()
}

fn main() -> ExitCode {
    // SAFETY: first thing in `main`, before any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        concierge_models::confine_candle_elementwise_threads()
    };
    let cli = Cli::parse();
    // `serve` starts logging once its configuration is read (its `[log] format`).
    if !matches!(cli.command, commands::Command::Serve(_)) {
        logging::init(
            cli.command.default_log_level(),
            cli.log_format.unwrap_or_default(),
        );
    }
    match commands::run(
        cli.command,
        cli.log_format,
        <Cli as clap::CommandFactory>::command(),
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("concierge: error: {err:#}");
            ExitCode::from(commands::exit_code(&err))
        }
    }
}
