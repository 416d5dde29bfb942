//! `schedule`: the long-running mode (the backup and the status check on their cron times).

use std::path::Path;

use concierge_sidecar::{Config, Error, run_schedule};

pub fn run(config: &Config, config_file: Option<&Path>) -> Result<(), Error> {
    run_schedule(config, config_file)
}
