//! `deploy plan`: the stack files against the swarm, as Markdown (default) or JSON; exit 0
//! with no changes, 5 with changes.

use std::path::PathBuf;

use concierge_sidecar::{Config, DeployError, Error, Request, deploy_plan};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the plan as JSON instead of Markdown.
    #[arg(long)]
    json: bool,
    /// Also write the Markdown to this file (the pull-request comment).
    #[arg(long, value_name = "FILE")]
    markdown_out: Option<PathBuf>,
    /// Also write the JSON to this file.
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,
    /// A value over the environment's values file (repeatable), e.g. --set CONCIERGE_TAG=1.4.2.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

pub fn run(config: &Config, args: Args) -> Result<(), Error> {
    let planned = deploy_plan(&Request {
        config: &config.deploy,
        secrets: &config.secrets,
        sets: &args.sets,
    })?;
    let plan = &planned.plan;
    let markdown = plan.markdown();
    let json = serde_json::to_string_pretty(plan)
        .map_err(|e| Error::Fatal(format!("cannot write JSON: {e}")))?;
    for (path, text) in [(&args.markdown_out, &markdown), (&args.json_out, &json)] {
        if let Some(path) = path {
            std::fs::write(path, text)
                .map_err(|e| Error::Fatal(format!("cannot write {}: {e}", path.display())))?;
        }
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{markdown}");
    }
    tracing::info!(seconds = planned.seconds, "plan made");
    if !plan.problems.is_empty() {
        return Err(DeployError::Config(format!(
            "the plan cannot be applied: {}",
            plan.problems.join("; ")
        ))
        .into());
    }
    if plan.has_changes() {
        return Err(Error::PlanHasChanges);
    }
    Ok(())
}
