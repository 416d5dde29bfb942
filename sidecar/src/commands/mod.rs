//! The command line: one file per subcommand, each its clap arguments and a `run` that
//! translates them into one library call and its result into output. Errors go back to
//! `main`, which maps them to the exit code.

mod backup_check;
mod backup_ephemeral;
mod backup_forget;
mod backup_init;
mod backup_restore;
mod backup_run;
mod backup_snapshots;
mod backup_status;
mod deploy_apply;
mod deploy_plan;
mod deploy_rollback;
mod deploy_verify;
mod schedule;
mod secrets_apply;
mod secrets_diff;
mod secrets_list;
mod secrets_serve;
mod secrets_set;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Parser, Subcommand};
use concierge_sidecar::{Config, Error, Kind, exit_codes_help, load_config, load_deploy_config};

/// Concierge's infrastructure sidecar: restic-compatible backups to R2 (or a local path), on a
/// schedule, optionally from a temporary Hetzner server.
#[derive(Debug, Parser)]
#[command(
    name = "concierge-sidecar",
    version,
    about,
    long_about,
    after_long_help = exit_codes_help()
)]
pub struct Cli {
    /// The configuration file (default: ./sidecar.toml when it exists).
    #[arg(long, global = true, env = "CONCIERGE_SIDECAR_CONFIG")]
    config: Option<PathBuf>,
    /// Log lines as `text` (coloured only on a terminal) or `json` (one object per line).
    #[arg(long, global = true, env = "CONCIERGE_LOG__FORMAT", value_parser = parse_log_format)]
    pub log_format: Option<concierge_infra::logging::LogFormat>,
    #[command(subcommand)]
    command: Command,
}

fn parse_log_format(s: &str) -> Result<concierge_infra::logging::LogFormat, String> {
    s.parse()
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Backups: init, run, snapshots, check, restore, forget, status, ephemeral.
    #[command(subcommand, after_long_help = exit_codes_help())]
    Backup(Backup),
    /// Runs the backup and the status check on their cron schedules ([schedule]) until stopped.
    #[command(after_long_help = exit_codes_help())]
    Schedule,
    /// The Swarm stack in deploy/ through the Docker Engine API: plan, apply, verify, rollback.
    #[command(subcommand, after_long_help = exit_codes_help())]
    Deploy(Deploy),
    /// git-crypt encrypted files in the deploy repository as versioned Docker secrets.
    #[command(subcommand, after_long_help = exit_codes_help())]
    Secrets(Secrets),
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        shell: concierge_infra::cli_docs::Shell,
    },
    /// Write a man page per command into DIR (concierge-sidecar.1, concierge-sidecar-backup-run.1, ...).
    Manpages { dir: PathBuf },
}

#[derive(Debug, Subcommand)]
enum Secrets {
    /// Each secret: content hash, versioned Docker name, the services using it, in the swarm?
    List(secrets_list::Args),
    /// The secret versions to create and the services to switch; exit 0 none, 5 some.
    Diff(secrets_diff::Args),
    /// Creates new versions, switches the services (verified, rolled back on failure).
    Apply(secrets_apply::Args),
    /// Encrypts a value from stdin (or --from-file) into the secret's file.
    Set(secrets_set::SetArgs),
    /// Encrypts a new random value into the secret's file.
    Rotate(secrets_set::RotateArgs),
    /// The secrets page: sign in, the list, set a value (encrypted, committed, planned).
    Serve(secrets_serve::Args),
}

#[derive(Debug, Subcommand)]
enum Deploy {
    /// The stack files against the swarm: Markdown (or --json); exit 0 no changes, 5 changes.
    Plan(deploy_plan::Args),
    /// Creates and updates what changed, verifies, rolls back and reports when verify fails.
    Apply(deploy_apply::Args),
    /// Judges the services the last apply touched (exit 14 when one did not converge).
    Verify(deploy_verify::Args),
    /// Puts every service the last apply changed back, removes those it created, verifies.
    Rollback,
}

#[derive(Debug, Subcommand)]
enum Backup {
    /// Creates the repository.
    Init,
    /// The nightly job: (checkpoint,) backup, retention, prune, status record, alert on failure.
    Run(backup_run::Args),
    /// The nightly run on a temporary Hetzner server from the newest labelled snapshot
    /// ([hetzner]); the server is always deleted afterwards.
    Ephemeral,
    /// Lists snapshots, oldest first (`--json`: restic's field names).
    Snapshots(backup_snapshots::Args),
    /// Checks the repository; `--read-data-subset 10` also reads 10 % of the data back.
    Check(backup_check::Args),
    /// Restores a snapshot (id, id prefix or `latest`) into a directory.
    Restore(backup_restore::Args),
    /// Applies the retention policy (with `--dry-run`: only says what it would remove).
    Forget(backup_forget::Args),
    /// For monitoring: fails (and alerts) when the last good backup is older than --max-age.
    Status(backup_status::Args),
}

impl Cli {
    /// Loads the configuration and runs the command.
    pub fn run(self) -> Result<(), Error> {
        let command = match self.command {
            Command::Completions { shell } => {
                let mut cli = <Cli as clap::CommandFactory>::command();
                concierge_infra::cli_docs::write_completions(
                    &mut cli,
                    shell,
                    &mut std::io::stdout(),
                );
                return Ok(());
            }
            Command::Manpages { dir } => {
                let cli = <Cli as clap::CommandFactory>::command();
                let pages = concierge_infra::cli_docs::write_man_pages(cli, &dir)
                    .map_err(|e| Error::Fatal(e.to_string()))?;
                for page in pages {
                    println!("{}", page.display());
                }
                return Ok(());
            }
            Command::Deploy(command) => {
                // A deploy host needs no backup repository.
                let config: Config = load_deploy_config(self.config.as_deref(), std::env::vars())?;
                exit_when_interrupted()?;
                return match command {
                    Deploy::Plan(args) => deploy_plan::run(&config, args),
                    Deploy::Apply(args) => deploy_apply::run(&config, args),
                    Deploy::Verify(args) => deploy_verify::run(&config, args),
                    Deploy::Rollback => deploy_rollback::run(&config),
                };
            }
            Command::Secrets(command) => {
                let config: Config = load_deploy_config(self.config.as_deref(), std::env::vars())?;
                exit_when_interrupted()?;
                return match command {
                    Secrets::List(args) => secrets_list::run(&config, args),
                    Secrets::Diff(args) => secrets_diff::run(&config, args),
                    Secrets::Apply(args) => secrets_apply::run(&config, args),
                    Secrets::Set(args) => secrets_set::set(&config, args),
                    Secrets::Rotate(args) => secrets_set::rotate(&config, args),
                    Secrets::Serve(args) => secrets_serve::run(&config, args),
                };
            }
            other @ (Command::Backup(_) | Command::Schedule) => other,
        };
        let config: Config = load_config(self.config.as_deref(), std::env::vars())?;
        match command {
            Command::Deploy(_)
            | Command::Secrets(_)
            | Command::Completions { .. }
            | Command::Manpages { .. } => Ok(()),
            Command::Schedule => schedule::run(&config, self.config.as_deref()),
            Command::Backup(command) => {
                exit_when_interrupted()?;
                match command {
                    Backup::Init => backup_init::run(&config),
                    Backup::Run(args) => backup_run::run(&config, args),
                    Backup::Ephemeral => backup_ephemeral::run(&config),
                    Backup::Snapshots(args) => backup_snapshots::run(&config, args),
                    Backup::Check(args) => backup_check::run(&config, args),
                    Backup::Restore(args) => backup_restore::run(&config, args),
                    Backup::Forget(args) => backup_forget::run(&config, args),
                    Backup::Status(args) => backup_status::run(&config, args),
                }
            }
        }
    }
}

/// SIGINT or SIGTERM end a one-shot command at once with restic's code for it. What a backup
/// had written stays valid: a snapshot is saved last, so an interrupted run leaves at most
/// unreferenced packs that the next prune removes.
fn exit_when_interrupted() -> Result<(), Error> {
    let armed = Arc::new(AtomicBool::new(true));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(
            signal,
            i32::from(Kind::Interrupted.exit_code()),
            Arc::clone(&armed),
        )
        .map_err(|e| Error::Fatal(format!("cannot handle signal {signal}: {e}")))?;
    }
    Ok(())
}

/// Prints `value` as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Fatal(format!("cannot write JSON: {e}")))?;
    println!("{text}");
    Ok(())
}
