//! The subcommands of `concierge`, one file each.

mod embed;
mod healthcheck;
mod ingest;
mod model_args;
mod restore_from_firestore;
mod serve;

use concierge_models::ModelError;

/// What `concierge` can do.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the daemon (HTTP on `--listen`) until SIGINT or SIGTERM.
    Serve(serve::ServeArgs),
    /// Embed texts with the local model and print the vectors as JSON.
    Embed(embed::EmbedArgs),
    /// Load documents (JSON lines) into the data directory; prints a receipt per stored document.
    Ingest(ingest::IngestArgs),
    /// Ask a running daemon's /readyz: exit 0 when ready, 1 otherwise (a container health check).
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Fill an empty data directory from the Firestore copy ([firestore]).
    RestoreFromFirestore(restore_from_firestore::RestoreArgs),
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        shell: concierge_infra::cli_docs::Shell,
    },
    /// Write a man page per command into DIR (concierge.1, concierge-serve.1, ...).
    Manpages { dir: std::path::PathBuf },
}

impl Command {
    /// The log level when `RUST_LOG` does not say: the daemon logs its life, one-shot commands
    /// only their warnings.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Serve(_) => "info",
            Command::Embed(_)
            | Command::Ingest(_)
            | Command::Healthcheck(_)
            | Command::RestoreFromFirestore(_)
            | Command::Completions { .. }
            | Command::Manpages { .. } => "warn",
        }
    }
}

/// Runs one subcommand to completion.
pub fn run(
    command: Command,
    log_format: Option<concierge_infra::logging::LogFormat>,
    cli: clap::Command,
) -> anyhow::Result<()> {
    match command {
        Command::Completions { shell } => {
            let mut cli = cli;
            concierge_infra::cli_docs::write_completions(&mut cli, shell, &mut std::io::stdout());
            Ok(())
        }
        Command::Manpages { dir } => {
            for page in concierge_infra::cli_docs::write_man_pages(cli, &dir)? {
                println!("{}", page.display());
            }
            Ok(())
        }
        Command::Serve(args) => serve::run(&args, log_format),
        Command::Embed(args) => embed::run(&args),
        Command::Ingest(args) => ingest::run(&args),
        Command::Healthcheck(args) => healthcheck::run(&args),
        Command::RestoreFromFirestore(args) => restore_from_firestore::run(&args),
    }
}

/// The exit code for a failed command: 3 when the model is not installed, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<ModelError>() {
        Some(ModelError::MissingFile { .. }) => 3,
        _ => 1,
    }
}
