//! `backup snapshots`: lists the snapshots, oldest first.

use concierge_sidecar::{Bars, Config, Error, Repo};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSON with restic's field names (`id`, `short_id`, `time`, `hostname`, `paths`, ...).
    #[arg(long)]
    json: bool,
}

pub fn run(config: &Config, args: Args) -> Result<(), Error> {
    let snaps = Repo::open(config, Bars::quiet())?.snapshots()?;
    if args.json {
        return super::print_json(&snaps);
    }
    println!(
        "{:<10} {:<26} {:<16} {:>10} paths",
        "id", "time", "host", "files"
    );
    for s in &snaps {
        println!(
            "{:<10} {:<26} {:<16} {:>10} {}",
            s.short_id,
            s.time,
            s.hostname,
            s.summary
                .as_ref()
                .map_or("-".into(), |x| x.total_files_processed.to_string()),
            s.paths.join(", ")
        );
    }
    println!("{} snapshot(s)", snaps.len());
    Ok(())
}
