//! `secrets list`: each secret of the stack, its content hash, its versioned Docker name, the
//! services that use it and whether that version is in the swarm.

use concierge_sidecar::{Config, Error, Request, secrets_list};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
    /// A value over the environment's values file (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

pub fn run(config: &Config, args: Args) -> Result<(), Error> {
    let list = secrets_list(&Request {
        config: &config.deploy,
        secrets: &config.secrets,
        sets: &args.sets,
    })?;
    if args.json {
        return super::print_json(&list);
    }
    println!(
        "{:<28} {:<12} {:<44} {:<9} SERVICES",
        "NAME", "SHA256", "DOCKER SECRET", "IN SWARM"
    );
    for s in &list {
        let in_swarm = match s.in_swarm {
            Some(true) => "yes",
            Some(false) => "no",
            None => "?",
        };
        println!(
            "{:<28} {:<12} {:<44} {:<9} {}",
            s.name,
            s.sha256,
            s.docker_name,
            in_swarm,
            s.services.join(",")
        );
    }
    Ok(())
}
