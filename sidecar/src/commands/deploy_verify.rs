//! `deploy verify`: the services the last apply touched, judged by the engine's state.

use concierge_sidecar::{Config, DeployError, Error, deploy_verify};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the verdicts as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(config: &Config, args: Args) -> Result<(), Error> {
    let outcome = deploy_verify(&config.deploy)?;
    if args.json {
        super::print_json(&outcome)?;
    } else {
        for s in &outcome.services {
            println!("{}: {} ({})", s.service, s.state, s.detail);
            for e in &s.task_errors {
                println!("  {e}");
            }
        }
    }
    if outcome.ok {
        return Ok(());
    }
    let failed: Vec<String> = outcome
        .services
        .iter()
        .filter(|s| s.state != "healthy")
        .map(|s| format!("{}: {}", s.service, s.detail))
        .collect();
    Err(DeployError::NotVerified(failed.join("; ")).into())
}
