//! `concierge-sidecar`: Concierge's infrastructure sidecar (DESIGN §7). `main` parses the
//! command line, starts logging, runs the command and maps its error to the exit code (the
//! table is `concierge_sidecar::Kind::exit_code`, listed by `--help`).

mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    concierge_infra::logging::init("info", cli.log_format.unwrap_or_default());
    concierge_sidecar::capture_rustic_log();
    match cli.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(concierge_sidecar::Error::PlanHasChanges) => {
            ExitCode::from(concierge_sidecar::Kind::PlanHasChanges.exit_code())
        }
        Err(e) => {
            eprintln!("concierge-sidecar: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
