//! `deploy plan | apply | verify | rollback`: the Swarm stack in `deploy/` through the Docker
//! Engine API.
//!
//! Inside: the stack files and their values (`compose`, `values`), what the swarm should hold
//! (`desired`), the comparable view of a service spec (`spec_view`), the plan and its lints
//! (`plan`, `lints`), the Engine API client (`engine`), the record of the last apply
//! (`record`), the steps (`apply`, `verify`, `rollback`), and what a failure leaves behind
//! (`report`, `github`). This file runs the steps in order; the commands only translate.

mod apply;
mod compose;
mod desired;
mod engine;
mod github;
mod lints;
mod plan;
mod record;
mod report;
mod rollback;
mod spec_view;
mod values;
mod verify;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use engine::{API_VERSION, EngineError};
pub use github::{GithubError, Issue};
pub use lints::Lint;
pub use plan::{Action, Plan};
pub use report::{FailureReport, RollbackSummary};
pub use verify::{Outcome as VerifyOutcome, Verdict};

use crate::config::{DeployConfig, SecretsConfig};
use crate::secret_files::SecretsDir;
use engine::Engine;
use record::{ApplyRecord, RecordFile};
use verify::{Judgement, Target};

/// Why a deploy command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The stack files, the values or `[deploy]` are wrong.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The record or a report cannot be read or written.
    #[error("{0}")]
    State(String),
    /// `verify` or `rollback` with no apply recorded.
    #[error("no apply is recorded in {0}: nothing to verify or roll back")]
    NoRecord(PathBuf),
    /// The deployment did not verify; rolled back unless told not to.
    #[error("{title}; report: {report}{}", issue.as_ref().map(|i| format!("; issue: {i}")).unwrap_or_default())]
    Failed {
        title: String,
        report: String,
        issue: Option<String>,
        /// A rollback ran and failed too.
        rollback_failed: bool,
    },
    /// `deploy verify`: a service did not converge.
    #[error("verify failed: {0}")]
    NotVerified(String),
    /// `deploy rollback` did not bring every service back.
    #[error("rollback incomplete: {0}")]
    RollbackFailed(String),
}

/// The input every command reads: the configuration and `--set` values.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub config: &'a DeployConfig,
    /// Where secret files are decrypted from (git-crypt).
    pub secrets: &'a SecretsConfig,
    /// `KEY=VALUE` pairs over the environment's values file.
    pub sets: &'a [String],
}

/// A plan and how long it took to make.
#[derive(Debug, Clone)]
pub struct Planned {
    pub plan: Plan,
    pub seconds: f64,
}

/// What an apply did.
#[derive(Debug, Clone)]
pub struct Applied {
    pub plan: Plan,
    /// `None` with `--no-verify`, or when nothing changed.
    pub verify: Option<VerifyOutcome>,
    pub seconds: f64,
}

/// How `apply` ends.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    pub verify: bool,
    pub rollback_on_failure: bool,
}

fn engine(config: &DeployConfig) -> Result<Engine, DeployError> {
    let host = config.docker_host();
    Ok(Engine::connect(&host, config.engine_timeout.get())?)
}

/// The desired state from the stack files, values and secrets.
pub(crate) fn load_desired(req: &Request<'_>) -> Result<desired::Desired, DeployError> {
    let c = req.config;
    let mut values = match c.values_file() {
        Some(path) => values::Values::read(&path).map_err(DeployError::Config)?,
        None => values::Values::default(),
    };
    for pair in req.sets {
        values
            .set(pair)
            .map_err(|e| DeployError::Config(format!("--set {e}")))?;
    }
    let files: Vec<PathBuf> = c.stack_files();
    let stack = compose::read(&files, &values).map_err(DeployError::Config)?;
    let secrets = SecretsDir::open(req.secrets).map_err(|e| DeployError::Config(e.to_string()))?;
    secrets
        .check_key()
        .map_err(|e| DeployError::Config(e.to_string()))?;
    let read = |path: &std::path::Path| secrets.read(path).map_err(|e| e.to_string());
    let sources = desired::Sources {
        read_secret: &read,
        secret_prefix: &req.secrets.prefix,
    };
    desired::build(&c.stack, &stack, &sources).map_err(DeployError::Config)
}

/// What the swarm holds of `stack`.
pub(crate) fn current_state(
    config: &DeployConfig,
    stack: &str,
) -> Result<plan::Current, DeployError> {
    let engine = engine(config)?;
    Ok(plan::Current::read(&engine, stack)?)
}

/// `deploy plan`.
pub fn plan(req: &Request<'_>) -> Result<Planned, DeployError> {
    let started = Instant::now();
    let desired = load_desired(req)?;
    let engine = engine(req.config)?;
    let current = plan::Current::read(&engine, &desired.stack)?;
    Ok(Planned {
        plan: Plan::new(&desired, &current),
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn verify_options(c: &DeployConfig) -> verify::Options {
    verify::Options {
        timeout: c.verify_timeout.get(),
        settle: c.verify_settle.get(),
        max_task_failures: c.max_task_failures as usize,
        poll: Duration::from_millis(500),
    }
}

fn log_judgement(service: &str, j: &Judgement) {
    match j {
        Judgement::Converged { running, wanted } => {
            tracing::info!(service, running, wanted, "verify: running and healthy")
        }
        Judgement::Pending { detail, .. } => tracing::info!(service, %detail, "verify: waiting"),
        Judgement::Failed { detail, .. } => tracing::warn!(service, %detail, "verify: failed"),
    }
}

/// `deploy apply`: apply, verify, and on a failed verify roll back, report and open an issue.
pub fn apply(req: &Request<'_>, options: ApplyOptions) -> Result<Applied, DeployError> {
    apply_checked(req, options, |_| Ok(()))
}

/// `apply`, once `check` accepted the plan (`secrets apply` refuses other changes).
pub(crate) fn apply_checked(
    req: &Request<'_>,
    options: ApplyOptions,
    check: impl FnOnce(&Plan) -> Result<(), DeployError>,
) -> Result<Applied, DeployError> {
    let started = Instant::now();
    let c = req.config;
    let desired = load_desired(req)?;
    let engine = engine(c)?;
    let current = plan::Current::read(&engine, &desired.stack)?;
    let plan = Plan::new(&desired, &current);
    check(&plan)?;
    for l in &plan.lints {
        tracing::warn!(service = %l.service, rule = l.rule, "{}", l.message);
    }
    let records = RecordFile::new(&c.state_dir);
    let since_ms = verify::engine_now_ms(&engine)?;
    let record = ApplyRecord {
        id: concierge_infra::utc::basic_iso(since_ms / 1000),
        stack: desired.stack.clone(),
        started_at: concierge_infra::utc::rfc3339(since_ms / 1000),
        ..ApplyRecord::default()
    };
    let (record, task_changed) = apply::run(
        &engine,
        &desired,
        &current,
        &plan,
        &records,
        record,
        |line| {
            tracing::info!("{line}");
        },
    )
    .map_err(|e| match e {
        apply::ApplyError::Engine(e) => DeployError::Engine(e),
        apply::ApplyError::Record(e) => DeployError::State(e),
        apply::ApplyError::Invalid(e) => DeployError::Config(e),
    })?;
    let targets: Vec<Target> = record
        .touched()
        .into_iter()
        .map(|(name, id)| Target {
            expect_update: task_changed.contains(&name),
            ignore_update_status: false,
            name,
            id,
        })
        .collect();
    if !options.verify || targets.is_empty() {
        if targets.is_empty() {
            prune_old_versions(&engine, &plan);
        }
        return Ok(Applied {
            plan,
            verify: None,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    // Judge from the engine's clock at the start (`since_ms`), minus a little for the
    // millisecond rounding of its timestamps.
    let outcome = verify::run(
        &engine,
        &targets,
        since_ms - 1,
        verify_options(c),
        log_judgement,
    )?;
    if outcome.ok {
        prune_old_versions(&engine, &plan);
        return Ok(Applied {
            plan,
            verify: Some(outcome),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let ids = record.touched();
    let logs = FailureReport::logs_of(&engine, &outcome, &ids);
    let rollback = if options.rollback_on_failure {
        tracing::warn!("verify failed: rolling back every service this apply changed");
        Some(roll_back(&engine, c, &records, record.clone())?)
    } else {
        None
    };
    fail(
        c,
        FailureReport {
            stack: desired.stack.clone(),
            apply_id: record.id.clone(),
            started_at: record.started_at.clone(),
            changed: FailureReport::changes_of(&plan),
            verify: outcome,
            logs,
            rollback,
        },
    )
}

/// The record of the last apply (and where it lives), or why there is none.
fn last_record(config: &DeployConfig) -> Result<(RecordFile, ApplyRecord), DeployError> {
    let records = RecordFile::new(&config.state_dir);
    let record = records
        .load()
        .map_err(DeployError::State)?
        .ok_or_else(|| DeployError::NoRecord(config.state_dir.clone()))?;
    Ok((records, record))
}

/// `deploy verify`: the services the last apply touched, judged again from its start.
pub fn verify_last(config: &DeployConfig) -> Result<VerifyOutcome, DeployError> {
    let (_, record) = last_record(config)?;
    if record.rolled_back {
        return Err(DeployError::NotVerified(format!(
            "apply {} was rolled back: none of it runs",
            record.id
        )));
    }
    let engine = engine(config)?;
    let since_ms = concierge_infra::utc::parse_rfc3339_ms(&record.started_at).unwrap_or(0);
    let targets: Vec<Target> = record
        .touched()
        .into_iter()
        .map(|(name, id)| Target {
            name,
            id,
            expect_update: false,
            ignore_update_status: false,
        })
        .collect();
    Ok(verify::run(
        &engine,
        &targets,
        since_ms - 1000,
        verify_options(config),
        log_judgement,
    )?)
}

/// `deploy rollback`: the last apply undone and verified.
pub fn rollback_last(config: &DeployConfig) -> Result<report::RollbackSummary, DeployError> {
    let (records, record) = last_record(config)?;
    if record.rolled_back {
        return Ok(report::RollbackSummary {
            ok: true,
            steps: vec![format!("apply {} was rolled back already", record.id)],
            problems: Vec::new(),
            verify: None,
        });
    }
    let engine = engine(config)?;
    let summary = roll_back(&engine, config, &records, record)?;
    if summary.ok {
        Ok(summary)
    } else {
        let mut why = summary.problems.clone();
        if let Some(v) = &summary.verify {
            why.extend(v.failed().map(|s| format!("{}: {}", s.service, s.detail)));
        }
        Err(DeployError::RollbackFailed(why.join("; ")))
    }
}

fn roll_back(
    engine: &Engine,
    config: &DeployConfig,
    records: &RecordFile,
    mut record: ApplyRecord,
) -> Result<report::RollbackSummary, DeployError> {
    let since_ms = verify::engine_now_ms(engine)?;
    let undone = rollback::run(engine, &record, config.verify_timeout.get())?;
    for s in &undone.steps {
        tracing::info!("rollback: {s}");
    }
    let outcome = if undone.targets.is_empty() {
        None
    } else {
        // Tasks of the previous spec that Swarm's own rollback started count as they run;
        // only failures since this rollback began are held against it.
        let since = since_ms - 1;
        Some(verify::run(
            engine,
            &undone.targets,
            since,
            verify_options(config),
            log_judgement,
        )?)
    };
    let ok = undone.problems.is_empty() && outcome.as_ref().is_none_or(|o| o.ok);
    if ok {
        record.rolled_back = true;
        records.save(&record).map_err(DeployError::State)?;
    }
    Ok(report::RollbackSummary {
        ok,
        steps: undone.steps,
        problems: undone.problems,
        verify: outcome,
    })
}

/// Writes the report, opens the issue when configured, and returns the failure.
fn fail(c: &DeployConfig, report: FailureReport) -> Result<Applied, DeployError> {
    let (md, _json) = report.write(&c.state_dir).map_err(DeployError::State)?;
    let rollback_failed = report.rollback.as_ref().is_some_and(|r| !r.ok);
    let issue = if c.github_repo.is_empty() {
        None
    } else if c.github_token.is_empty() {
        tracing::warn!("deploy.github_repo is set but deploy.github_token is not: no issue opened");
        None
    } else {
        match github::open_issue(
            &c.github_api,
            &c.github_repo,
            c.github_token.expose(),
            &report.title(),
            &report.markdown(),
            &c.github_labels,
        ) {
            Ok(issue) => Some(issue.url),
            Err(e) => {
                tracing::error!(error = %e, "could not open the GitHub issue about the failed deployment");
                None
            }
        }
    };
    Err(DeployError::Failed {
        title: report.title(),
        report: md.display().to_string(),
        issue,
        rollback_failed,
    })
}

/// Removes old secret and config versions no service refers to (best effort, logged). A
/// service's `PreviousSpec` counts as a reference: it is what the last apply's rollback puts
/// back, so the version it names must still exist.
fn prune_old_versions(engine: &Engine, plan: &Plan) {
    if plan.old_versions.is_empty() {
        return;
    }
    let in_use = match engine.get("/services") {
        Ok(v) => v.to_string(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list services: old secret versions kept");
            return;
        }
    };
    for name in &plan.old_versions {
        if in_use.contains(&format!("\"{name}\"")) {
            continue;
        }
        for kind in ["secrets", "configs"] {
            if let Ok(true) = engine.delete(&format!("/{kind}/{name}")) {
                tracing::info!(%name, "removed an old {} version", kind.trim_end_matches('s'));
            }
        }
    }
}

/// Opens an issue (the command's `--test-issue` path and the tests use it directly).
pub fn open_issue(c: &DeployConfig, title: &str, body: &str) -> Result<Issue, GithubError> {
    github::open_issue(
        &c.github_api,
        &c.github_repo,
        c.github_token.expose(),
        title,
        body,
        &c.github_labels,
    )
}
