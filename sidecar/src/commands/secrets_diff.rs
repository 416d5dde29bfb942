//! `secrets diff`: the secret versions `secrets apply` would create, the services it would
//! switch and the old versions it would remove; exit 0 none, 5 some.

use concierge_sidecar::{Config, Error, Request, secrets_diff};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the diff as JSON.
    #[arg(long)]
    json: bool,
    /// A value over the environment's values file (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

pub fn run(config: &Config, args: Args) -> Result<(), Error> {
    let diff = secrets_diff(&Request {
        config: &config.deploy,
        secrets: &config.secrets,
        sets: &args.sets,
    })?;
    if args.json {
        super::print_json(&diff)?;
    } else {
        for name in &diff.create {
            println!("+ secret {name}");
        }
        for (service, fields) in &diff.switch {
            println!("~ service {service}: {}", fields.join(", "));
        }
        for name in &diff.remove {
            println!("- secret {name} (after a verified apply, once unused)");
        }
        for other in &diff.other_changes {
            println!("  (not a secret change: {other})");
        }
        if !diff.has_changes() {
            println!("no secret changes");
        }
    }
    if diff.has_changes() {
        return Err(Error::PlanHasChanges);
    }
    Ok(())
}
