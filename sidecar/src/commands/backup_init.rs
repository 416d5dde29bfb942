//! `backup init`: creates the repository.

use concierge_sidecar::{Bars, Config, Error, Repo};

pub fn run(config: &Config) -> Result<(), Error> {
    let repo = Repo::init(config, Bars::auto())?;
    println!("initialised the repository at {}", repo.location());
    Ok(())
}
