//! Verify: whether the services an apply touched really run what it asked for. What the CLI
//! says is not evidence (`docker stack deploy` exits 0 after Swarm rolled an update back), so
//! each service is judged from the engine's own state, and only by tasks of its current spec
//! created after the apply started (old failed tasks say nothing about this release):
//!
//! - an update of ours that Swarm rolled back or paused (`UpdateStatus.State` `rollback_*` or
//!   `paused`) failed, whatever came after;
//! - current-spec tasks failing repeatedly (`max_task_failures`) failed: a new service has no
//!   update for Swarm to roll back, so this is the only signal it gives;
//! - otherwise the service converged when its update (if its task spec changed) completed and
//!   as many current-spec tasks as it wants are `running` — which Swarm reports only once a
//!   task's health check passed — and it stayed so for `settle`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use super::engine::{Engine, EngineError, query_value};
use concierge_infra::utc;

/// A service to judge.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub id: String,
    /// The apply changed its task spec, so Swarm runs an update whose status counts.
    pub expect_update: bool,
    /// Judge by tasks alone: after Swarm rolled a service back by itself, its update status
    /// keeps saying `rollback_completed`, which is then the goal, not a failure.
    pub ignore_update_status: bool,
}

/// How long and how strictly.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub timeout: Duration,
    pub settle: Duration,
    pub max_task_failures: usize,
    pub poll: Duration,
}

/// The verdict on one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub service: String,
    /// `healthy`, `failed` or `timed_out`.
    pub state: String,
    pub detail: String,
    pub running: usize,
    pub wanted: usize,
    /// Errors of current-spec tasks created after the apply started.
    pub task_errors: Vec<String>,
}

/// The verdict on all of them.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub ok: bool,
    pub services: Vec<Verdict>,
    pub seconds: f64,
}

impl Outcome {
    /// The services that did not come up.
    pub fn failed(&self) -> impl Iterator<Item = &Verdict> {
        self.services.iter().filter(|v| v.state != "healthy")
    }
}

/// One look at one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    Converged {
        running: usize,
        wanted: usize,
    },
    Pending {
        detail: String,
        running: usize,
        wanted: usize,
        task_errors: Vec<String>,
    },
    Failed {
        detail: String,
        running: usize,
        wanted: usize,
        task_errors: Vec<String>,
    },
}

/// The engine's clock, in milliseconds (task times are the engine's, not ours).
pub fn engine_now_ms(engine: &Engine) -> Result<i64, EngineError> {
    let info = engine.get("/info")?;
    Ok(info
        .get("SystemTime")
        .and_then(Value::as_str)
        .and_then(utc::parse_rfc3339_ms)
        .unwrap_or_else(utc::now_ms))
}

/// Polls until every target converged or one failed, or `timeout` passed.
pub fn run(
    engine: &Engine,
    targets: &[Target],
    since_ms: i64,
    options: Options,
    mut progress: impl FnMut(&str, &Judgement),
) -> Result<Outcome, EngineError> {
    let started = Instant::now();
    let deadline = started + options.timeout;
    let mut settled_since: BTreeMap<String, Instant> = BTreeMap::new();
    let mut last: BTreeMap<String, Judgement> = BTreeMap::new();
    loop {
        let mut all_settled = true;
        for t in targets {
            if matches!(last.get(&t.name), Some(Judgement::Failed { .. })) {
                continue;
            }
            let judgement = match engine.get_optional(&format!("/services/{}", t.id))? {
                None => Judgement::Failed {
                    detail: "the service is gone".into(),
                    running: 0,
                    wanted: 0,
                    task_errors: Vec::new(),
                },
                Some(mut service) => {
                    let filter = query_value(&json!({"service": [t.id]}).to_string());
                    let tasks = engine.get(&format!("/tasks?filters={filter}"))?;
                    if t.ignore_update_status {
                        service["UpdateStatus"] = Value::Null;
                    }
                    judge(
                        &service,
                        &tasks,
                        since_ms,
                        t.expect_update,
                        options.max_task_failures,
                    )
                }
            };
            if last.get(&t.name) != Some(&judgement) {
                progress(&t.name, &judgement);
            }
            match &judgement {
                Judgement::Converged { .. } => {
                    let since = *settled_since
                        .entry(t.name.clone())
                        .or_insert_with(Instant::now);
                    if since.elapsed() < options.settle {
                        all_settled = false;
                    }
                }
                Judgement::Pending { .. } => {
                    settled_since.remove(&t.name);
                    all_settled = false;
                }
                Judgement::Failed { .. } => {}
            }
            last.insert(t.name.clone(), judgement);
        }
        let any_failed = last.values().any(|j| matches!(j, Judgement::Failed { .. }));
        if any_failed || all_settled || Instant::now() >= deadline {
            let services = targets
                .iter()
                .map(|t| verdict(&t.name, last.get(&t.name), options.timeout, any_failed))
                .collect::<Vec<_>>();
            return Ok(Outcome {
                ok: services.iter().all(|v| v.state == "healthy"),
                services,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        std::thread::sleep(options.poll);
    }
}

fn verdict(name: &str, j: Option<&Judgement>, timeout: Duration, stopped_early: bool) -> Verdict {
    let (state, detail, running, wanted, task_errors) = match j {
        Some(Judgement::Converged { running, wanted }) => (
            "healthy",
            format!("{running}/{wanted} tasks running and healthy"),
            *running,
            *wanted,
            Vec::new(),
        ),
        Some(Judgement::Failed {
            detail,
            running,
            wanted,
            task_errors,
        }) => (
            "failed",
            detail.clone(),
            *running,
            *wanted,
            task_errors.clone(),
        ),
        Some(Judgement::Pending {
            detail,
            running,
            wanted,
            task_errors,
        }) => (
            if stopped_early {
                "not_judged"
            } else {
                "timed_out"
            },
            if stopped_early {
                format!("not finished when another service failed: {detail}")
            } else {
                format!("not converged within {}s: {detail}", timeout.as_secs())
            },
            *running,
            *wanted,
            task_errors.clone(),
        ),
        None => ("timed_out", "never looked at".into(), 0, 0, Vec::new()),
    };
    Verdict {
        service: name.to_owned(),
        state: state.to_owned(),
        detail,
        running,
        wanted,
        task_errors,
    }
}

/// Judges one service from `GET /services/{id}` and its `GET /tasks`.
pub fn judge(
    service: &Value,
    tasks: &Value,
    since_ms: i64,
    expect_update: bool,
    max_task_failures: usize,
) -> Judgement {
    let time = |v: &Value| v.as_str().and_then(utc::parse_rfc3339_ms).unwrap_or(0);
    let template = &service["Spec"]["TaskTemplate"]["ContainerSpec"];
    let replicas = service["Spec"]["Mode"]["Replicated"]["Replicas"].as_u64();
    let tasks: Vec<&Value> = tasks.as_array().into_iter().flatten().collect();
    let current: Vec<&Value> = tasks
        .iter()
        .copied()
        .filter(|t| &t["Spec"]["ContainerSpec"] == template)
        .collect();
    let active: Vec<&Value> = current
        .iter()
        .copied()
        .filter(|t| t["DesiredState"] == "running")
        .collect();
    let running = active
        .iter()
        .filter(|t| t["Status"]["State"] == "running")
        .count();
    let wanted = replicas.map_or(active.len().max(1), |r| r as usize);
    let is_failure = |t: &Value| {
        matches!(
            t["Status"]["State"].as_str(),
            Some("failed" | "rejected" | "orphaned")
        )
    };
    let failed = current
        .iter()
        .filter(|t| time(&t["CreatedAt"]) >= since_ms && is_failure(t))
        .count();
    let mut task_errors: Vec<String> = tasks
        .iter()
        .filter(|t| time(&t["CreatedAt"]) >= since_ms && is_failure(t))
        .map(|t| {
            let status = &t["Status"];
            let why = status["Err"]
                .as_str()
                .filter(|e| !e.is_empty())
                .or(status["Message"].as_str())
                .unwrap_or("");
            format!(
                "task {} (slot {}) {}: {why}",
                t["ID"].as_str().unwrap_or("?"),
                t["Slot"],
                status["State"].as_str().unwrap_or("?")
            )
        })
        .collect();
    task_errors.truncate(10);

    let update = &service["UpdateStatus"];
    let ours = update.is_object() && time(&update["StartedAt"]) >= since_ms;
    let state = update["State"].as_str().unwrap_or("");
    let message = update["Message"].as_str().unwrap_or("");
    if ours
        && matches!(
            state,
            "rollback_started" | "rollback_paused" | "rollback_completed" | "paused"
        )
    {
        return Judgement::Failed {
            detail: format!("Swarm's update status is {state}: {message}"),
            running,
            wanted,
            task_errors,
        };
    }
    if failed >= max_task_failures.max(1) {
        return Judgement::Failed {
            detail: format!(
                "{failed} tasks of the new spec failed; the last: {}",
                task_errors.first().map_or("?", String::as_str)
            ),
            running,
            wanted,
            task_errors,
        };
    }
    let pending = |detail: String| Judgement::Pending {
        detail,
        running,
        wanted,
        task_errors: task_errors.clone(),
    };
    if expect_update && !ours {
        return pending("Swarm has not started the update yet".into());
    }
    if ours && state != "completed" {
        return pending(format!("update {state}: {message}"));
    }
    let not_running = active
        .iter()
        .filter(|t| t["Status"]["State"] != "running")
        .count();
    if running < wanted || not_running > 0 {
        let states: Vec<&str> = active
            .iter()
            .filter_map(|t| t["Status"]["State"].as_str())
            .collect();
        return pending(format!(
            "{running}/{wanted} tasks running (states: {})",
            states.join(", ")
        ));
    }
    Judgement::Converged { running, wanted }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured() -> (Value, Value) {
        let s = serde_json::from_str(include_str!("testdata/service_rolled_back.json"))
            .expect("service");
        let t =
            serde_json::from_str(include_str!("testdata/tasks_rolled_back.json")).expect("tasks");
        (s, t)
    }

    #[test]
    fn an_update_swarm_rolled_back_is_a_failure_though_its_tasks_run() {
        let (s, t) = captured();
        let since = utc::parse_rfc3339_ms("2026-12-03T11:33:50Z").expect("time");
        match judge(&s, &t, since, true, 3) {
            Judgement::Failed {
                detail,
                running,
                task_errors,
                ..
            } => {
                assert!(detail.contains("rollback_completed"), "{detail}");
                // The rolled-back task runs: the CLI would have called this a success.
                assert_eq!(running, 1);
                assert!(
                    task_errors.iter().any(|e| e.contains("non-zero exit")),
                    "{task_errors:?}"
                );
            }
            other @ (Judgement::Converged { .. } | Judgement::Pending { .. }) => {
                panic!("{other:?}")
            }
        }
    }

    #[test]
    fn an_old_rollback_before_this_apply_is_not_held_against_it() {
        let (s, t) = captured();
        // An apply after the rollback that changed only, say, labels: the same tasks run.
        let since = utc::parse_rfc3339_ms("2026-12-03T11:40:00Z").expect("time");
        assert_eq!(
            judge(&s, &t, since, false, 3),
            Judgement::Converged {
                running: 1,
                wanted: 1
            }
        );
        // But if it changed the task spec, the update has to be seen first.
        assert!(matches!(
            judge(&s, &t, since, true, 3),
            Judgement::Pending { .. }
        ));
    }

    #[test]
    fn repeated_failures_of_new_tasks_fail_a_service_swarm_cannot_roll_back() {
        let (mut s, t) = captured();
        s.as_object_mut().expect("object").remove("UpdateStatus");
        // The failed task's spec (health check `false`) becomes the service's own.
        let failed = t
            .as_array()
            .expect("tasks")
            .iter()
            .find(|x| x["Status"]["State"] == "failed")
            .expect("a failed task")
            .clone();
        s["Spec"]["TaskTemplate"]["ContainerSpec"] = failed["Spec"]["ContainerSpec"].clone();
        let since = utc::parse_rfc3339_ms("2026-12-03T11:33:50Z").expect("time");
        assert!(matches!(
            judge(&s, &t, since, false, 1),
            Judgement::Failed { .. }
        ));
        assert!(matches!(
            judge(&s, &t, since, false, 5),
            Judgement::Pending { .. }
        ));
    }
}
