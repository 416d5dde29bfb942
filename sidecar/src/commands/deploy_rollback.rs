//! `deploy rollback`: every service the last apply changed back to its previous spec, the
//! services it created removed, then verified.

use concierge_sidecar::{Config, Error, deploy_rollback};

pub fn run(config: &Config) -> Result<(), Error> {
    let summary = deploy_rollback(&config.deploy)?;
    for s in &summary.steps {
        println!("{s}");
    }
    println!("rolled back and verified");
    Ok(())
}
