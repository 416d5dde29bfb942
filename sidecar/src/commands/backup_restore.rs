//! `backup restore`: restores a snapshot into a directory.

use std::path::PathBuf;

use concierge_sidecar::{Bars, Config, Error, Repo};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A snapshot id, an id prefix or `latest`.
    snapshot: String,
    #[arg(long)]
    target: PathBuf,
}

pub fn run(config: &Config, args: Args) -> Result<(), Error> {
    Repo::open(config, Bars::auto())?.restore(&args.snapshot, &args.target)?;
    println!("restored {} into {}", args.snapshot, args.target.display());
    Ok(())
}
