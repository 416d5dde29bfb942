//! `backup ephemeral`: the nightly run on a temporary Hetzner server.

use concierge_sidecar::{Config, Error, backup_ephemeral, ephemeral_result};

pub fn run(config: &Config) -> Result<(), Error> {
    let outcome = backup_ephemeral(config);
    if let Some(a) = &outcome.alert_error {
        eprintln!("concierge-sidecar: the alert could not be sent: {a}");
    }
    if outcome.orphans_deleted > 0 {
        println!(
            "deleted {} temporary server(s) left by an earlier run",
            outcome.orphans_deleted
        );
    }
    let run_id = outcome.run_id.clone();
    let r = ephemeral_result(outcome)?;
    println!(
        "run {run_id}: snapshot {} saved on {}: {} files, {} bytes added",
        r.snapshot_id.as_deref().unwrap_or("?"),
        r.server.as_deref().unwrap_or("?"),
        r.files.unwrap_or(0),
        r.bytes_added.unwrap_or(0)
    );
    Ok(())
}
