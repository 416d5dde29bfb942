//! `backup forget`: applies the retention policy.

use concierge_infra::utc::now_secs;
use concierge_sidecar::{Bars, Config, Error, Repo, keep_options};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only say what would be removed.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
    /// Also prune unused data afterwards.
    #[arg(long)]
    prune: bool,
}

pub fn run(config: &Config, args: Args) -> Result<(), Error> {
    let repo = Repo::open(config, Bars::auto())?;
    let decisions = repo.forget(&keep_options(config), now_secs(), args.dry_run)?;
    if args.prune && !args.dry_run {
        repo.prune()?;
    }
    if args.json {
        return super::print_json(&decisions);
    }
    for d in &decisions {
        println!(
            "{} {} {} {}",
            if d.keep { "keep  " } else { "remove" },
            &d.id[..d.id.len().min(8)],
            d.time,
            d.reasons.join(", ")
        );
    }
    let removed = decisions.iter().filter(|d| !d.keep).count();
    println!(
        "{} kept, {removed} {}",
        decisions.len() - removed,
        if args.dry_run {
            "would be removed"
        } else {
            "removed"
        }
    );
    Ok(())
}
