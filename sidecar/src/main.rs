//! `concierge-sidecar`: Concierge's infrastructure sidecar. This version runs the backups:
//! restic-compatible repositories with rustic_core on a local path or S3/R2, retention, checks,
//! restores, a status record for monitoring and RocketChat alerts (DESIGN §7).
//!
//! Exit codes: 0 success, 1 a backup step failed, 2 bad configuration or usage, 3 repository
//! unreachable or credentials refused, 4 wrong repository password, 5 no repository there
//! (initialise it), 6 no space left, 7 `check` found problems, 8 `status`: the last good backup
//! is too old or the last run failed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use concierge_sidecar::config::{self, Config, parse_duration};
use concierge_sidecar::progress::Bars;
use concierge_sidecar::repository::{Repo, RepoError, keep_options};
use concierge_sidecar::run::{backup_run, deliver_alert};
use concierge_sidecar::status::StatusFile;
use concierge_sidecar::time::now_secs;

/// Concierge's infrastructure sidecar: restic-compatible backups to R2 (or a local path).
#[derive(Debug, Parser)]
#[command(name = "concierge-sidecar", version, about, long_about)]
struct Cli {
    /// The configuration file (default: ./sidecar.toml when it exists).
    #[arg(long, global = true, env = "CONCIERGE_SIDECAR_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Backups: init, run, snapshots, check, restore, forget, status.
    #[command(subcommand)]
    Backup(Backup),
}

#[derive(Debug, Subcommand)]
enum Backup {
    /// Creates the repository.
    Init,
    /// The nightly job: (checkpoint,) backup, retention, prune, status record, alert on failure.
    Run {
        /// Create the repository first if there is none.
        #[arg(long)]
        init: bool,
    },
    /// Lists snapshots, oldest first.
    Snapshots {
        #[arg(long)]
        json: bool,
    },
    /// Checks the repository; `--read-data-subset 10` also reads 10 % of the data back.
    Check {
        #[arg(long, value_name = "PERCENT")]
        read_data_subset: Option<f64>,
    },
    /// Restores a snapshot (id, id prefix or `latest`) into a directory.
    Restore {
        snapshot: String,
        #[arg(long)]
        target: PathBuf,
    },
    /// Applies the retention policy (with `--dry-run`: only says what it would remove).
    Forget {
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
        /// Also prune unused data afterwards.
        #[arg(long)]
        prune: bool,
    },
    /// For monitoring: fails (and alerts) when the last good backup is older than --max-age.
    Status {
        /// Default: status.max_age.
        #[arg(long)]
        max_age: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn fail(e: &RepoError) -> ExitCode {
    eprintln!("concierge-sidecar: error: {e}");
    ExitCode::from(e.exit_code())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let config = match config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("concierge-sidecar: error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Backup(b) => backup(&config, b),
    }
}

fn print_json(value: &impl serde::Serialize) -> ExitCode {
    match serde_json::to_string_pretty(value) {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("concierge-sidecar: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn backup(config: &Config, command: Backup) -> ExitCode {
    match command {
        Backup::Init => match Repo::init(config, Bars::auto()) {
            Ok(repo) => {
                println!("initialised the repository at {}", repo.location());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Backup::Run { init } => {
            let outcome = backup_run(config, init, Bars::auto());
            if let Some(a) = &outcome.alert_error {
                eprintln!("concierge-sidecar: the alert could not be sent: {a}");
            }
            match (&outcome.error, &outcome.summary) {
                (Some(e), _) => fail(e),
                (None, Some(s)) => {
                    println!(
                        "snapshot {} saved: {} files, {} bytes added; {} old snapshot(s) forgotten",
                        s.snapshot_id, s.files, s.bytes_added, outcome.forgotten
                    );
                    ExitCode::SUCCESS
                }
                (None, None) => ExitCode::FAILURE,
            }
        }
        Backup::Snapshots { json } => {
            let snaps = match Repo::open(config, Bars::quiet()).and_then(|r| r.snapshots()) {
                Ok(s) => s,
                Err(e) => return fail(&e),
            };
            if json {
                return print_json(&snaps);
            }
            println!(
                "{:<10} {:<26} {:<16} {:>10} paths",
                "id", "time", "host", "files"
            );
            for s in &snaps {
                println!(
                    "{:<10} {:<26} {:<16} {:>10} {}",
                    &s.id[..s.id.len().min(8)],
                    s.time,
                    s.host,
                    s.files.map_or("-".into(), |f| f.to_string()),
                    s.paths.join(", ")
                );
            }
            println!("{} snapshot(s)", snaps.len());
            ExitCode::SUCCESS
        }
        Backup::Check { read_data_subset } => {
            if let Some(p) = read_data_subset
                && !(p > 0.0 && p <= 100.0)
            {
                eprintln!(
                    "concierge-sidecar: error: --read-data-subset must be a percentage in (0, 100]"
                );
                return ExitCode::from(2);
            }
            match Repo::open(config, Bars::auto()).and_then(|r| r.check(read_data_subset)) {
                Ok(_) => {
                    println!("no problems found");
                    ExitCode::SUCCESS
                }
                Err(RepoError::Failed(msg)) => {
                    eprintln!("concierge-sidecar: error: {msg}");
                    let _ = deliver_alert(config, &config.host(), "backup check", "check", &msg);
                    ExitCode::from(7)
                }
                Err(e) => fail(&e),
            }
        }
        Backup::Restore { snapshot, target } => {
            match Repo::open(config, Bars::auto()).and_then(|mut r| r.restore(&snapshot, &target)) {
                Ok(()) => {
                    println!("restored {snapshot} into {}", target.display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Backup::Forget {
            dry_run,
            json,
            prune,
        } => {
            let repo = match Repo::open(config, Bars::auto()) {
                Ok(r) => r,
                Err(e) => return fail(&e),
            };
            let decisions = match repo.forget(&keep_options(config), now_secs(), dry_run) {
                Ok(d) => d,
                Err(e) => return fail(&e),
            };
            if prune
                && !dry_run
                && let Err(e) = repo.prune()
            {
                return fail(&e);
            }
            if json {
                return print_json(&decisions);
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
                if dry_run {
                    "would be removed"
                } else {
                    "removed"
                }
            );
            ExitCode::SUCCESS
        }
        Backup::Status { max_age, json } => {
            let text = max_age.unwrap_or_else(|| config.status.max_age.clone());
            let limit = match parse_duration(&text) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("concierge-sidecar: error: --max-age: {e}");
                    return ExitCode::from(2);
                }
            };
            let file = match StatusFile::read(&config.status.file) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("concierge-sidecar: error: {e}");
                    let _ = deliver_alert(
                        config,
                        &config.host(),
                        "backup status",
                        "status",
                        &e.to_string(),
                    );
                    return ExitCode::from(8);
                }
            };
            let verdict = file.fresh(limit, now_secs());
            if json {
                let _ = print_json(&file);
            }
            match verdict {
                Ok(good) => {
                    if !json {
                        println!(
                            "ok: last good backup {} finished {}",
                            good.snapshot_id.as_deref().unwrap_or("?"),
                            good.finished_at
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(why) => {
                    eprintln!("concierge-sidecar: backup status: {why}");
                    let _ =
                        deliver_alert(config, &config.host(), "backup status check", "stale", &why);
                    ExitCode::from(8)
                }
            }
        }
    }
}
