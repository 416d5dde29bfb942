//! `concierge-sidecar`: Concierge's infrastructure sidecar. This version runs the backups:
//! restic-compatible repositories with rustic_core on a local path or S3/R2, retention, checks,
//! restores, a status record for monitoring and RocketChat alerts (DESIGN §7).
//!
//! Exit codes: 0 success, 1 a backup step failed, 2 bad configuration or usage, 3 repository
//! (or Hetzner API) unreachable or credentials refused, 4 wrong repository password, 5 no
//! repository there (initialise it), 6 no space left, 7 `check` found problems, 8 `status`: the
//! last good backup is too old or the last run failed, 9 `ephemeral`: the temporary server sent
//! no report in time, 10 `ephemeral`: a temporary server could not be deleted.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use concierge_sidecar::config::{self, Config, parse_duration};
use concierge_sidecar::progress::Bars;
use concierge_sidecar::repository::{Repo, RepoError, keep_options};
use concierge_sidecar::run::{backup_run, deliver_alert, record_status};
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
    /// Backups: init, run, snapshots, check, restore, forget, status, ephemeral.
    #[command(subcommand)]
    Backup(Backup),
    /// Runs the backup and the status check on their cron schedules ([schedule]) until stopped.
    Schedule,
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
        /// Also store the run's status as report RUN_ID beside the repository (how a temporary
        /// server started by `backup ephemeral` reports back).
        #[arg(long, value_name = "RUN_ID")]
        report: Option<String>,
    },
    /// The nightly run on a temporary Hetzner server from the newest labelled snapshot
    /// ([hetzner]); the server is always deleted afterwards.
    Ephemeral,
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
        Command::Schedule => schedule(&config, cli.config.as_deref()),
    }
}

fn schedule(config: &Config, config_file: Option<&std::path::Path>) -> ExitCode {
    let jobs = match concierge_sidecar::schedule::jobs(config) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("concierge-sidecar: error: {e}");
            return ExitCode::from(2);
        }
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, std::sync::Arc::clone(&stop)) {
            eprintln!("concierge-sidecar: error: cannot handle signal {signal}: {e}");
            return ExitCode::FAILURE;
        }
    }
    tracing::info!(
        backup = %config.schedule.backup,
        backup_mode = %config.schedule.backup_mode,
        status = %config.schedule.status,
        "schedule started (UTC)"
    );
    let run = |job: &concierge_sidecar::schedule::Job| {
        concierge_sidecar::schedule::run_child(config_file, job)
    };
    concierge_sidecar::schedule::run_jobs(&jobs, &stop, &run);
    tracing::info!("schedule stopped");
    ExitCode::SUCCESS
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
        Backup::Run { init, report } => {
            if let Some(id) = &report
                && !concierge_sidecar::reports::valid_run_id(id)
            {
                eprintln!(
                    "concierge-sidecar: error: --report {id:?}: lower-case letters, digits and dashes"
                );
                return ExitCode::from(2);
            }
            let outcome = backup_run(config, init, Bars::auto());
            if let Some(a) = &outcome.alert_error {
                eprintln!("concierge-sidecar: the alert could not be sent: {a}");
            }
            if let Some(id) = &report {
                let stored = concierge_sidecar::reports::Reports::open(config)
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.put(id, &outcome.record));
                if let Err(e) = stored {
                    eprintln!("concierge-sidecar: error: the report {id} cannot be stored: {e}");
                    return ExitCode::FAILURE;
                }
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
        Backup::Ephemeral => ephemeral(config),
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

fn ephemeral(config: &Config) -> ExitCode {
    let outcome = concierge_sidecar::ephemeral::backup_ephemeral(config);
    let mut alert_error = record_status(config, &outcome.record);
    let host = config.host();
    if let Some(e) = &outcome.error {
        eprintln!("concierge-sidecar: error: {e}");
        alert_error = deliver_alert(config, &host, "backup ephemeral", &e.kind(), &e.to_string())
            .err()
            .or(alert_error);
    }
    if !outcome.leftovers.is_empty() {
        let text = format!(
            "temporary server(s) could not be deleted and keep costing money; delete them in the Hetzner console: {}",
            outcome.leftovers.join("; ")
        );
        eprintln!("concierge-sidecar: error: {text}");
        alert_error = deliver_alert(
            config,
            &host,
            "deleting the temporary backup server",
            "cleanup",
            &text,
        )
        .err()
        .or(alert_error);
    }
    if let Some(a) = &alert_error {
        eprintln!("concierge-sidecar: the alert could not be sent: {a}");
    }
    if outcome.orphans_deleted > 0 {
        println!(
            "deleted {} temporary server(s) left by an earlier run",
            outcome.orphans_deleted
        );
    }
    if outcome.error.is_none() {
        let r = &outcome.record;
        println!(
            "run {}: snapshot {} saved on {}: {} files, {} bytes added",
            outcome.run_id,
            r.snapshot_id.as_deref().unwrap_or("?"),
            r.server.as_deref().unwrap_or("?"),
            r.files.unwrap_or(0),
            r.bytes_added.unwrap_or(0)
        );
    }
    ExitCode::from(outcome.exit_code())
}
