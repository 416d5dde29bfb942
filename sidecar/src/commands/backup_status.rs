//! `backup status`: the freshness check monitoring runs.

use concierge_sidecar::{Config, Error, TextDuration, status};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The oldest a good backup may be, e.g. 26h (default: status.max_age).
    #[arg(long)]
    max_age: Option<TextDuration>,
    /// Print the status record as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(config: &Config, args: Args) -> Result<(), Error> {
    let max_age = args.max_age.unwrap_or(config.status.max_age);
    match status(config, max_age.get()) {
        Ok((file, good)) => {
            if args.json {
                super::print_json(&file)?;
            } else {
                println!(
                    "ok: last good backup {} finished {}",
                    good.snapshot_id.as_deref().unwrap_or("?"),
                    good.finished_at
                );
            }
            Ok(())
        }
        Err(e) => {
            if args.json
                && let Ok(file) = concierge_sidecar::StatusFile::read(&config.status.file)
            {
                super::print_json(&file)?;
            }
            Err(e)
        }
    }
}
