//! `secrets apply`: new secret versions created, the services using them switched (verified,
//! rolled back on failure), old versions removed; refused while the stack has other changes.

use concierge_sidecar::{ApplyOptions, Config, Error, Request, secrets_apply};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// On a failed verify, leave everything as it is.
    #[arg(long)]
    no_rollback: bool,
    /// A value over the environment's values file (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

pub fn run(config: &Config, args: Args) -> Result<(), Error> {
    let applied = secrets_apply(
        &Request {
            config: &config.deploy,
            secrets: &config.secrets,
            sets: &args.sets,
        },
        ApplyOptions {
            verify: true,
            rollback_on_failure: !args.no_rollback,
        },
    )?;
    if applied.plan.has_changes() {
        println!("secrets applied and verified in {:.1} s", applied.seconds);
    } else {
        println!("no secret changes");
    }
    Ok(())
}
