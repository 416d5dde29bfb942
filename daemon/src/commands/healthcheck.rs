//! `concierge healthcheck`: asks a running daemon's `/readyz` and exits 0 when it is ready, 1
//! otherwise (the reason on stderr) — a container's health check without curl in the image.
//! The address is the configuration's `server.listen` (an unspecified address is reached on
//! loopback) unless `--url` says otherwise.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::config;

#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// Configuration file (default: ./concierge.toml when it exists).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The readiness URL (default: `http://<server.listen>/readyz`).
    #[arg(long)]
    pub url: Option<String>,
    /// How long to wait for the answer.
    #[arg(long, default_value_t = 3_000)]
    pub timeout_ms: u64,
}

pub fn run(args: &HealthcheckArgs) -> anyhow::Result<()> {
    let url = match &args.url {
        Some(url) => url.clone(),
        None => {
            let flags = config::Flags {
                config: args.config.clone(),
                ..config::Flags::default()
            };
            let config = config::load(&flags, std::env::vars())?;
            let mut addr = config.server.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(if addr.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            format!("http://{addr}/readyz")
        }
    };
    let agent = crate::outbound::agent(Duration::from_millis(args.timeout_ms));
    let mut response = agent
        .get(&url)
        .call()
        .with_context(|| format!("not ready: {url} did not answer"))?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    if status != 200 {
        anyhow::bail!("not ready: {url} answered {status}: {}", body.trim());
    }
    println!("ready: {}", body.trim());
    Ok(())
}
