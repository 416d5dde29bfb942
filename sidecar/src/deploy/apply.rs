//! Apply: creates what the plan says is missing and updates what changed, each service with
//! its current `Version.Index` (a stale one is re-read and tried again), recording every step
//! before taking it (see `record`). Networks, secrets and configs come first, so the services
//! can refer to them by id.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::desired::{Desired, DesiredObject};
use super::engine::{Engine, EngineError};
use super::plan::{Action, Current, Plan};
use super::record::{ApplyRecord, CreatedObject, CreatedService, RecordFile, UpdatedService};
use super::spec_view;
use concierge_infra::retry::{Attempt, Backoff, Policy};

/// Why an apply step failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Record(String),
    #[error("{0}")]
    Invalid(String),
}

/// Applies `plan` (made from `desired` and `current`), recording into `records`; returns the
/// record and the services whose task spec changed (their updates are what Swarm rolls).
pub fn run(
    engine: &Engine,
    desired: &Desired,
    current: &Current,
    plan: &Plan,
    records: &RecordFile,
    mut record: ApplyRecord,
    mut say: impl FnMut(&str),
) -> Result<(ApplyRecord, Vec<String>), ApplyError> {
    if !plan.problems.is_empty() {
        return Err(ApplyError::Invalid(format!(
            "the plan cannot be applied: {}",
            plan.problems.join("; ")
        )));
    }
    let save = |r: &ApplyRecord| records.save(r).map_err(ApplyError::Record);
    save(&record)?;

    let mut network_ids = current
        .networks
        .iter()
        .map(|(n, (id, _))| (n.clone(), id.clone()))
        .collect::<std::collections::BTreeMap<_, _>>();
    for n in &desired.networks {
        if n.external || network_ids.contains_key(&n.name) {
            continue;
        }
        let answer = engine.post("/networks/create", &n.create)?;
        let id = answer["Id"].as_str().unwrap_or_default().to_owned();
        say(&format!("created network {}", n.name));
        record.created_networks.push(CreatedObject {
            name: n.name.clone(),
            id: id.clone(),
        });
        save(&record)?;
        network_ids.insert(n.name.clone(), id);
    }
    let mut secret_ids = current
        .secrets
        .iter()
        .map(|(n, (id, _))| (n.clone(), id.clone()))
        .collect();
    // A secret created but not yet recorded when the sidecar dies is pruned later as an old
    // version (it carries the stack's labels).
    create_objects(
        engine,
        "secrets",
        &desired.secrets,
        &mut secret_ids,
        &mut record.created_secrets,
        &mut say,
    )?;
    let mut config_ids = current
        .configs
        .iter()
        .map(|(n, (id, _))| (n.clone(), id.clone()))
        .collect();
    create_objects(
        engine,
        "configs",
        &desired.configs,
        &mut config_ids,
        &mut record.created_configs,
        &mut say,
    )?;
    save(&record)?;

    let mut task_changed = Vec::new();
    for (s, p) in desired.services.iter().zip(&plan.services) {
        let mut spec = s.spec.clone();
        resolve(&mut spec, &network_ids, &secret_ids, &config_ids)?;
        match p.action {
            Action::Unchanged => {}
            Action::Create => {
                let answer = engine.post("/services/create", &spec)?;
                let id = answer["ID"].as_str().unwrap_or_default().to_owned();
                say(&format!("created service {}", s.name));
                record.created.push(CreatedService {
                    name: s.name.clone(),
                    id,
                });
                save(&record)?;
            }
            Action::Update => {
                let Some(c) = current.services.get(&s.name) else {
                    continue;
                };
                record.updated.push(UpdatedService {
                    name: s.name.clone(),
                    id: c.id.clone(),
                    previous_spec: c.spec.clone(),
                });
                save(&record)?;
                if task_template_differs(&c.spec, &spec, current) {
                    task_changed.push(s.name.clone());
                }
                update_service(engine, &c.id, &spec)?;
                let fields: Vec<&str> = p.changes.iter().map(|c| c.field.as_str()).collect();
                say(&format!(
                    "updated service {} ({})",
                    s.name,
                    fields.join(", ")
                ));
            }
        }
    }
    Ok((record, task_changed))
}

/// `POST /services/{id}/update` with the service's current version; a 409 (or the engine's
/// "update out of sequence") re-reads the version and tries again.
pub fn update_service(engine: &Engine, id: &str, spec: &Value) -> Result<(), EngineError> {
    Policy::new(
        4,
        Backoff::new(
            std::time::Duration::from_millis(200),
            std::time::Duration::from_secs(2),
        ),
    )
    .run(
        |_| {
            let version = match engine.get(&format!("/services/{id}")) {
                Ok(s) => s["Version"]["Index"].as_u64().unwrap_or(0),
                Err(e) => return Attempt::Fatal(e),
            };
            match engine.post(&format!("/services/{id}/update?version={version}"), spec) {
                Ok(_) => Attempt::Done(()),
                Err(e) if stale_version(&e) => Attempt::Retry {
                    error: e,
                    after: None,
                },
                Err(e) => Attempt::Fatal(e),
            }
        },
        concierge_infra::retry::sleep,
    )
}

fn stale_version(e: &EngineError) -> bool {
    if let EngineError::Api {
        status, message, ..
    } = e
    {
        *status == 409 || message.contains("out of sequence")
    } else {
        false
    }
}

fn create_objects(
    engine: &Engine,
    kind: &str,
    list: &[DesiredObject],
    ids: &mut std::collections::BTreeMap<String, String>,
    created: &mut Vec<CreatedObject>,
    say: &mut dyn FnMut(&str),
) -> Result<(), ApplyError> {
    for o in list {
        if o.external || ids.contains_key(&o.name) {
            continue;
        }
        let body = json!({
            "Name": o.name,
            "Labels": o.labels,
            "Data": STANDARD.encode(&o.data[..]),
        });
        let answer = engine.post(&format!("/{kind}/create"), &body)?;
        let id = answer["ID"].as_str().unwrap_or_default().to_owned();
        say(&format!(
            "created {} {}",
            kind.trim_end_matches('s'),
            o.name
        ));
        created.push(CreatedObject {
            name: o.name.clone(),
            id: id.clone(),
        });
        ids.insert(o.name.clone(), id);
    }
    Ok(())
}

/// Network names, secret and config names in `spec` replaced by their ids.
fn resolve(
    spec: &mut Value,
    networks: &std::collections::BTreeMap<String, String>,
    secrets: &std::collections::BTreeMap<String, String>,
    configs: &std::collections::BTreeMap<String, String>,
) -> Result<(), ApplyError> {
    let task = &mut spec["TaskTemplate"];
    if let Some(list) = task["Networks"].as_array_mut() {
        for n in list {
            let name = n["Target"].as_str().unwrap_or_default().to_owned();
            let id = networks
                .get(&name)
                .ok_or_else(|| ApplyError::Invalid(format!("network {name} does not exist")))?;
            n["Target"] = json!(id);
        }
    }
    for (field, name_field, id_field, ids) in [
        ("Secrets", "SecretName", "SecretID", secrets),
        ("Configs", "ConfigName", "ConfigID", configs),
    ] {
        if let Some(list) = task["ContainerSpec"][field].as_array_mut() {
            for o in list {
                let name = o[name_field].as_str().unwrap_or_default().to_owned();
                let id = ids.get(&name).ok_or_else(|| {
                    ApplyError::Invalid(format!("{name_field} {name} does not exist"))
                })?;
                o[id_field] = json!(id);
            }
        }
    }
    Ok(())
}

/// Whether the task template changed (then Swarm rolls an update, whose status verify reads).
fn task_template_differs(before: &Value, after: &Value, current: &Current) -> bool {
    let view = |spec: &Value| {
        spec_view::flatten(
            &json!({"TaskTemplate": spec["TaskTemplate"]}),
            &current.network_names,
        )
    };
    view(before) != view(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_ids_and_a_missing_one_is_an_error() {
        let mut spec = json!({"TaskTemplate": {"ContainerSpec": {"Secrets": [{"SecretName": "s_pw_1", "SecretID": ""}]}, "Networks": [{"Target": "s_net"}]}});
        let nets = [("s_net".to_owned(), "n1".to_owned())].into();
        let secrets = [("s_pw_1".to_owned(), "x1".to_owned())].into();
        resolve(&mut spec, &nets, &secrets, &Default::default()).expect("resolves");
        assert_eq!(spec["TaskTemplate"]["Networks"][0]["Target"], "n1");
        assert_eq!(
            spec["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretID"],
            "x1"
        );
        let mut other = json!({"TaskTemplate": {"Networks": [{"Target": "gone"}]}});
        assert!(resolve(&mut other, &nets, &secrets, &Default::default()).is_err());
    }
}
