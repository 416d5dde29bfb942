//! `backup run`: the nightly job.

use concierge_sidecar::{Bars, Config, Error, backup_run};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Create the repository first if there is none.
    #[arg(long)]
    init: bool,
    /// Also store the run's status as report RUN_ID beside the repository (how a temporary
    /// server started by `backup ephemeral` reports back).
    #[arg(long, value_name = "RUN_ID")]
    report: Option<String>,
}

pub fn run(config: &Config, args: Args) -> Result<(), Error> {
    let outcome = backup_run(config, args.init, args.report.as_deref(), Bars::auto())?;
    if let Some(a) = &outcome.alert_error {
        eprintln!("concierge-sidecar: the alert could not be sent: {a}");
    }
    let (s, forgotten) = outcome.into_result()?;
    println!(
        "snapshot {} saved: {} files, {} bytes added; {forgotten} old snapshot(s) forgotten",
        s.snapshot_id, s.files, s.bytes_added
    );
    Ok(())
}
