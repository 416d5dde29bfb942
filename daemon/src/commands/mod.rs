//! The subcommands of `concierge`, one file each.

mod embed;

use concierge_models::ModelError;

/// What `concierge` can do.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Embed texts with the local model and print the vectors as JSON.
    Embed(embed::EmbedArgs),
}

/// Runs one subcommand to completion.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Embed(args) => embed::run(&args),
    }
}

/// The exit code for a failed command: 3 when the model is not installed, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<ModelError>() {
        Some(ModelError::MissingFile { .. }) => 3,
        _ => 1,
    }
}
