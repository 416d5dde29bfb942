//! `backup check`: checks the repository (and reads part of its data back).

use concierge_sidecar::{Bars, Config, Error, check};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also read this percentage of the data back, e.g. 10.
    #[arg(long, value_name = "PERCENT")]
    read_data_subset: Option<f64>,
}

pub fn run(config: &Config, args: Args) -> Result<(), Error> {
    check(config, args.read_data_subset, Bars::auto())?;
    println!("no problems found");
    Ok(())
}
