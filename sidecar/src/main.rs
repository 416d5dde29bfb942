//! `concierge-sidecar`: Concierge's infrastructure sidecar (backups to R2 with rustic_core, the
//! temporary Hetzner backup server, secrets, Swarm deployment; see `ARCHITECTURE.md`).
//!
//! Its commands arrive with the sidecar issue; today the binary answers `--help` and `--version`
//! only, and says so, rather than pretending to back anything up.

use clap::Parser;

/// Concierge's infrastructure sidecar: backups, the temporary backup server, secrets, deployment.
///
/// No command is available in this version yet: the backup commands arrive with the sidecar work.
#[derive(Debug, Parser)]
#[command(name = "concierge-sidecar", version, about, long_about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("concierge-sidecar: no command is available in this version yet; see --help");
    std::process::exit(2);
}
