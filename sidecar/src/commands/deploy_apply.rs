//! `deploy apply`: creates and updates what the plan says, verifies, and rolls back (with a
//! report, and an issue when configured) when verify fails.

use concierge_sidecar::{ApplyOptions, Config, Error, Request, deploy_apply};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Do not verify after applying (then `deploy verify` later).
    #[arg(long)]
    no_verify: bool,
    /// On a failed verify, leave everything as it is (then `deploy rollback` by hand).
    #[arg(long)]
    no_rollback: bool,
    /// A value over the environment's values file (repeatable), e.g. --set CONCIERGE_TAG=1.4.2.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

pub fn run(config: &Config, args: Args) -> Result<(), Error> {
    let applied = deploy_apply(
        &Request {
            config: &config.deploy,
            secrets: &config.secrets,
            sets: &args.sets,
        },
        ApplyOptions {
            verify: !args.no_verify,
            rollback_on_failure: !args.no_rollback,
        },
    )?;
    if !applied.plan.has_changes() {
        println!("no changes: stack {} is up to date", applied.plan.stack);
        return Ok(());
    }
    match &applied.verify {
        Some(v) => {
            for s in &v.services {
                println!("{}: {} ({})", s.service, s.state, s.detail);
            }
            println!(
                "applied and verified stack {} in {:.1} s",
                applied.plan.stack, applied.seconds
            );
        }
        None => println!(
            "applied stack {} in {:.1} s (not verified: run deploy verify)",
            applied.plan.stack, applied.seconds
        ),
    }
    Ok(())
}
