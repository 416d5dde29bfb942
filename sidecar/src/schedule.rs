//! `schedule`: the long-running mode that replaces the cloud scheduler. Each job (the backup,
//! the freshness check) has a cron expression (UTC) and a thread of its own; a job runs as a
//! child process of this same binary (`backup run`, `backup ephemeral` or `backup status`), so
//! a failing or crashing run is only logged (the child records its status and alerts) and the
//! next slot comes as usual. One run of a job at a time: slots that pass while it still runs
//! are skipped, and said so. On SIGTERM or SIGINT no new run starts; running ones are waited for.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::cron::Cron;
use crate::error::Error;
use concierge_infra::utc::{now_secs, rfc3339};

/// A scheduled job.
#[derive(Debug, Clone)]
pub struct Job {
    /// `backup` or `status`.
    pub name: String,
    pub cron: Cron,
    /// The arguments of the child process (after the global ones).
    pub args: Vec<String>,
}

/// How a run ended: the child's exit code, or why it could not run.
pub type RunResult = Result<i32, String>;

/// Sleeps until `at` (Unix seconds), waking often enough to notice `stop`; false when stopped.
fn sleep_until(at: i64, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let left = at.saturating_mul(1000) - now_ms;
        if left <= 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(
            u64::try_from(left.min(250)).unwrap_or(250),
        ));
    }
}

/// Runs one job's loop until `stop`: wait for the slot, run, log, repeat.
fn job_loop(job: &Job, stop: &AtomicBool, run: &(dyn Fn(&Job) -> RunResult + Sync)) {
    let mut after = now_secs();
    loop {
        let Some(next) = job.cron.next_after(after) else {
            tracing::error!(job = %job.name, "the expression matches no future date; the job stops");
            return;
        };
        tracing::info!(job = %job.name, at = %rfc3339(next), "next run");
        if !sleep_until(next, stop) {
            return;
        }
        tracing::info!(job = %job.name, "starting");
        let started = now_secs();
        match run(job) {
            Ok(0) => tracing::info!(job = %job.name, seconds = now_secs() - started, "finished"),
            Ok(code) => tracing::error!(
                job = %job.name,
                exit_code = code,
                seconds = now_secs() - started,
                "failed (its status is recorded and alerted); the schedule goes on"
            ),
            Err(e) => {
                tracing::error!(job = %job.name, error = %e, "could not run; the schedule goes on")
            }
        }
        let finished = now_secs();
        // Slots that passed during the run are skipped (one run at a time).
        let mut skipped = 0;
        let mut slot = next;
        while let Some(s) = job.cron.next_after(slot) {
            if s > finished {
                break;
            }
            skipped += 1;
            slot = s;
            if skipped > 10_000 {
                break;
            }
        }
        if skipped > 0 {
            tracing::warn!(job = %job.name, skipped, "slots passed while the run was going; skipped");
        }
        after = finished.max(next);
    }
}

/// Runs every job on its own thread until `stop` is set, then waits for running jobs.
pub fn run_jobs(jobs: &[Job], stop: &AtomicBool, run: &(dyn Fn(&Job) -> RunResult + Sync)) {
    std::thread::scope(|scope| {
        for job in jobs {
            scope.spawn(move || job_loop(job, stop, run));
        }
    });
}

/// The jobs of the configuration.
pub fn jobs(config: &Config) -> Result<Vec<Job>, String> {
    let backup =
        Cron::parse(&config.schedule.backup).map_err(|e| format!("schedule.backup: {e}"))?;
    let status =
        Cron::parse(&config.schedule.status).map_err(|e| format!("schedule.status: {e}"))?;
    let mode = match config.schedule.backup_mode.as_str() {
        "ephemeral" => "ephemeral",
        _ => "run",
    };
    Ok(vec![
        Job {
            name: "backup".into(),
            cron: backup,
            args: vec!["backup".into(), mode.into()],
        },
        Job {
            name: "status".into(),
            cron: status,
            args: vec!["backup".into(), "status".into()],
        },
    ])
}

/// `schedule`: runs the configured jobs until SIGTERM or SIGINT, then waits for running ones.
pub fn run_until_stopped(config: &Config, config_file: Option<&Path>) -> Result<(), Error> {
    let jobs = jobs(config).map_err(|e| Error::Config(ConfigError::new(e)))?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| Error::Fatal(format!("cannot handle signal {signal}: {e}")))?;
    }
    tracing::info!(
        backup = %config.schedule.backup,
        backup_mode = %config.schedule.backup_mode,
        status = %config.schedule.status,
        "schedule started (UTC)"
    );
    run_jobs(&jobs, &stop, &|job: &Job| run_child(config_file, job));
    tracing::info!("schedule stopped");
    Ok(())
}

/// Runs `job` as a child process of this binary (with `--config` when one was given) and waits.
pub fn run_child(config_file: Option<&Path>, job: &Job) -> RunResult {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut command = Command::new(exe);
    if let Some(path) = config_file {
        command.arg("--config").arg(path);
    }
    command.args(&job.args);
    let status = command
        .status()
        .map_err(|e| format!("cannot start {:?}: {e}", job.args))?;
    Ok(status.code().unwrap_or(-1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_failing_run_does_not_stop_the_schedule_and_runs_never_overlap() {
        let job = Job {
            name: "backup".into(),
            cron: Cron::parse("* * * * * *").expect("every second"),
            args: Vec::new(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let runs = AtomicUsize::new(0);
        let running = AtomicUsize::new(0);
        let overlapped = AtomicBool::new(false);
        let run = |_: &Job| -> RunResult {
            if running.fetch_add(1, Ordering::SeqCst) > 0 {
                overlapped.store(true, Ordering::SeqCst);
            }
            let n = runs.fetch_add(1, Ordering::SeqCst);
            // Longer than the one-second slot: the next slots pass while it runs.
            std::thread::sleep(Duration::from_millis(1300));
            running.fetch_sub(1, Ordering::SeqCst);
            match n {
                0 => Ok(1),
                1 => Err("cannot start".into()),
                _ => Ok(0),
            }
        };
        let stopper = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(6500));
                stop.store(true, Ordering::SeqCst);
            })
        };
        run_jobs(std::slice::from_ref(&job), &stop, &run);
        stopper.join().expect("stopper");
        let n = runs.load(Ordering::SeqCst);
        assert!(n >= 3, "only {n} runs: a failure stopped the schedule");
        assert!(n <= 5, "{n} runs of 1.3 s in 6.5 s: runs overlapped");
        assert!(!overlapped.load(Ordering::SeqCst));
    }
}
