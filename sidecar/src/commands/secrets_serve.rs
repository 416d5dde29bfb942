//! `secrets serve`: the secrets page, until SIGTERM or SIGINT.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use concierge_sidecar::{Config, Error, Request, secrets_serve};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to listen (default: secrets.listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
}

pub fn run(config: &Config, args: Args) -> Result<(), Error> {
    let mut secrets = config.secrets.clone();
    if let Some(listen) = args.listen {
        secrets.listen = listen;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| Error::Fatal(format!("cannot handle signal {signal}: {e}")))?;
    }
    secrets_serve(
        &Request {
            config: &config.deploy,
            secrets: &secrets,
            sets: &[],
        },
        &stop,
    )?;
    Ok(())
}
