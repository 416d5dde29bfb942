//! Rollback: every service the last apply updated goes back to the spec it had before, every
//! service it created is removed (a new service has no previous spec), then the networks,
//! secrets and configs it created go too (those still in use stay, with a warning). Swarm
//! may have rolled a service back by itself already: a service whose spec is the previous
//! one again is left as it is, not updated a second time.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::apply::update_service;
use super::engine::{Engine, EngineError};
use super::plan::Current;
use super::record::ApplyRecord;
use super::spec_view;
use super::verify::Target;

/// What a rollback did.
#[derive(Debug, Clone, Default)]
pub struct Undone {
    /// Services updated back to their previous spec, to verify.
    pub targets: Vec<Target>,
    /// Lines for the log and the report.
    pub steps: Vec<String>,
    /// What could not be undone.
    pub problems: Vec<String>,
}

/// Undoes `record`. `wait` bounds how long a rollback Swarm is running itself is waited for.
pub fn run(engine: &Engine, record: &ApplyRecord, wait: Duration) -> Result<Undone, EngineError> {
    let mut undone = Undone::default();
    for u in record.updated.iter().rev() {
        let Some(service) = wait_until_idle(engine, &u.id, wait)? else {
            undone
                .problems
                .push(format!("{} is gone: it cannot be rolled back", u.name));
            continue;
        };
        let names = Current::read(engine, &record.stack)?.network_names;
        let now = spec_view::flatten(&service["Spec"], &names);
        let before = spec_view::flatten(&u.previous_spec, &names);
        if now == before {
            undone.steps.push(format!(
                "{} already runs its previous spec (Swarm rolled it back)",
                u.name
            ));
            undone.targets.push(Target {
                name: u.name.clone(),
                id: u.id.clone(),
                expect_update: false,
                ignore_update_status: true,
            });
            continue;
        }
        let task_changed = spec_view::flatten(
            &serde_json::json!({"TaskTemplate": service["Spec"]["TaskTemplate"]}),
            &names,
        ) != spec_view::flatten(
            &serde_json::json!({"TaskTemplate": u.previous_spec["TaskTemplate"]}),
            &names,
        );
        match update_service(engine, &u.id, &u.previous_spec) {
            Ok(()) => {
                undone
                    .steps
                    .push(format!("{} updated back to its previous spec", u.name));
                undone.targets.push(Target {
                    name: u.name.clone(),
                    id: u.id.clone(),
                    expect_update: task_changed,
                    ignore_update_status: false,
                });
            }
            Err(e) => undone.problems.push(format!("{}: {e}", u.name)),
        }
    }
    for c in record.created.iter().rev() {
        match engine.delete(&format!("/services/{}", c.id)) {
            Ok(true) => undone
                .steps
                .push(format!("{} (created by the apply) removed", c.name)),
            Ok(false) => undone.steps.push(format!(
                "{} (created by the apply) was already gone",
                c.name
            )),
            Err(e) => undone.problems.push(format!("removing {}: {e}", c.name)),
        }
    }
    // Removed services release their networks and secrets only once their tasks are gone.
    if !record.created.is_empty() {
        wait_for_tasks_gone(engine, record, wait)?;
    }
    for (kind, list) in [
        ("secrets", &record.created_secrets),
        ("configs", &record.created_configs),
        ("networks", &record.created_networks),
    ] {
        for o in list {
            match engine.delete(&format!("/{kind}/{}", o.id)) {
                Ok(_) => {
                    undone
                        .steps
                        .push(format!("{} {} removed", kind.trim_end_matches('s'), o.name))
                }
                Err(e) => undone.steps.push(format!(
                    "{} {} kept: {e}",
                    kind.trim_end_matches('s'),
                    o.name
                )),
            }
        }
    }
    Ok(undone)
}

/// The service once Swarm is not in the middle of an update or its own rollback (or `wait`
/// passed); `None` when it is gone.
fn wait_until_idle(
    engine: &Engine,
    id: &str,
    wait: Duration,
) -> Result<Option<Value>, EngineError> {
    let deadline = Instant::now() + wait;
    loop {
        let Some(service) = engine.get_optional(&format!("/services/{id}"))? else {
            return Ok(None);
        };
        let state = service["UpdateStatus"]["State"].as_str().unwrap_or("");
        if !matches!(state, "updating" | "rollback_started") || Instant::now() >= deadline {
            return Ok(Some(service));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn wait_for_tasks_gone(
    engine: &Engine,
    record: &ApplyRecord,
    wait: Duration,
) -> Result<(), EngineError> {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        let tasks = engine.get("/tasks")?;
        let left = tasks.as_array().into_iter().flatten().any(|t| {
            record
                .created
                .iter()
                .any(|c| t["ServiceID"] == c.id.as_str())
        });
        if !left {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}
