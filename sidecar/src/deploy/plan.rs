//! The plan: the desired state against what the swarm runs, object by object, as Markdown for
//! a pull request and as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};

use super::desired::{Desired, KEY_LABEL, NAMESPACE_LABEL};
use super::engine::{Engine, EngineError, query_value};
use super::lints::{self, Lint};
use super::spec_view::{self, FieldChange};

/// What the swarm holds of (and around) one stack.
#[derive(Debug, Clone, Default)]
pub struct Current {
    /// The stack's services by name.
    pub services: BTreeMap<String, CurrentService>,
    /// Every swarm network by name: (id, driver).
    pub networks: BTreeMap<String, (String, String)>,
    /// Network names by id.
    pub network_names: BTreeMap<String, String>,
    /// Every secret and config by name: (id, labels).
    pub secrets: BTreeMap<String, (String, BTreeMap<String, String>)>,
    pub configs: BTreeMap<String, (String, BTreeMap<String, String>)>,
}

/// A running service.
#[derive(Debug, Clone)]
pub struct CurrentService {
    pub id: String,
    pub version: u64,
    pub spec: Value,
}

impl Current {
    /// Reads the stack's services and the swarm's networks, secrets and configs.
    pub fn read(engine: &Engine, stack: &str) -> Result<Current, EngineError> {
        let mut current = Current::default();
        let filter =
            query_value(&json!({"label": [format!("{NAMESPACE_LABEL}={stack}")]}).to_string());
        let services = engine.get(&format!("/services?filters={filter}"))?;
        for s in services.as_array().into_iter().flatten() {
            if let Some(service) = CurrentService::from_json(s) {
                let name = str_at(&service.spec, "Name");
                current.services.insert(name, service);
            }
        }
        let networks = engine.get("/networks")?;
        for n in networks.as_array().into_iter().flatten() {
            let (id, name) = (str_at(n, "Id"), str_at(n, "Name"));
            current.network_names.insert(id.clone(), name.clone());
            current.networks.insert(name, (id, str_at(n, "Driver")));
        }
        for (path, map) in [
            ("/secrets", &mut current.secrets),
            ("/configs", &mut current.configs),
        ] {
            let list = engine.get(path)?;
            for o in list.as_array().into_iter().flatten() {
                let labels = o["Spec"]["Labels"]
                    .as_object()
                    .map(|l| {
                        l.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                map.insert(str_at(&o["Spec"], "Name"), (str_at(o, "ID"), labels));
            }
        }
        Ok(current)
    }
}

impl CurrentService {
    /// From a `GET /services` entry.
    pub fn from_json(s: &Value) -> Option<CurrentService> {
        Some(CurrentService {
            id: s.get("ID")?.as_str()?.to_owned(),
            version: s.get("Version")?.get("Index")?.as_u64()?,
            spec: s.get("Spec")?.clone(),
        })
    }
}

fn str_at(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// What happens to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Unchanged,
}

/// One service in the plan.
#[derive(Debug, Clone, Serialize)]
pub struct ServicePlan {
    pub name: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
}

/// One network, secret or config in the plan.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectPlan {
    pub name: String,
    pub action: Action,
}

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub stack: String,
    pub services: Vec<ServicePlan>,
    pub networks: Vec<ObjectPlan>,
    pub secrets: Vec<ObjectPlan>,
    pub configs: Vec<ObjectPlan>,
    /// Services of the stack the files no longer have (left running; remove them by hand).
    pub not_in_files: Vec<String>,
    /// Secret and config versions of the stack the files no longer use: removed after a
    /// verified apply once no service refers to them.
    pub old_versions: Vec<String>,
    pub lints: Vec<Lint>,
    /// What stops the plan from being applied.
    pub problems: Vec<String>,
}

impl Plan {
    /// Compares `desired` with `current`.
    pub fn new(desired: &Desired, current: &Current) -> Plan {
        let mut problems = Vec::new();
        let mut networks = Vec::new();
        for n in &desired.networks {
            match (current.networks.get(&n.name), n.external) {
                (Some((_, driver)), false) if *driver != n.driver => problems.push(format!(
                    "network {} exists with driver {driver}, the stack wants {}: networks cannot change in place; remove it (and the services on it) by hand",
                    n.name, n.driver
                )),
                (Some(_), _) => networks.push(ObjectPlan { name: n.name.clone(), action: Action::Unchanged }),
                (None, true) => problems.push(format!("external network {} does not exist", n.name)),
                (None, false) => networks.push(ObjectPlan { name: n.name.clone(), action: Action::Create }),
            }
        }
        let objects = |kind: &str,
                       list: &[super::desired::DesiredObject],
                       have: &BTreeMap<String, (String, BTreeMap<String, String>)>,
                       problems: &mut Vec<String>| {
            let mut out = Vec::new();
            for o in list {
                match (have.contains_key(&o.name), o.external) {
                    (true, _) => out.push(ObjectPlan {
                        name: o.name.clone(),
                        action: Action::Unchanged,
                    }),
                    (false, true) => {
                        problems.push(format!("external {kind} {} does not exist", o.name))
                    }
                    (false, false) => out.push(ObjectPlan {
                        name: o.name.clone(),
                        action: Action::Create,
                    }),
                }
            }
            out
        };
        let secrets = objects("secret", &desired.secrets, &current.secrets, &mut problems);
        let configs = objects("config", &desired.configs, &current.configs, &mut problems);
        let mut old_versions = Vec::new();
        for (have, want) in [
            (&current.secrets, &desired.secrets),
            (&current.configs, &desired.configs),
        ] {
            for (name, (_, labels)) in have {
                let ours = labels.get(NAMESPACE_LABEL) == Some(&desired.stack)
                    && labels.contains_key(KEY_LABEL);
                if ours && !want.iter().any(|o| &o.name == name) {
                    old_versions.push(name.clone());
                }
            }
        }

        let mut services = Vec::new();
        for s in &desired.services {
            match current.services.get(&s.name) {
                None => services.push(ServicePlan {
                    name: s.name.clone(),
                    action: Action::Create,
                    changes: Vec::new(),
                }),
                Some(c) => {
                    let before = spec_view::flatten(&c.spec, &current.network_names);
                    let after = spec_view::flatten(&s.spec, &current.network_names);
                    let changes = spec_view::diff(&before, &after);
                    let action = if changes.is_empty() {
                        Action::Unchanged
                    } else {
                        Action::Update
                    };
                    services.push(ServicePlan {
                        name: s.name.clone(),
                        action,
                        changes,
                    });
                }
            }
        }
        let not_in_files = current
            .services
            .keys()
            .filter(|name| !desired.services.iter().any(|s| &s.name == *name))
            .cloned()
            .collect();
        Plan {
            stack: desired.stack.clone(),
            services,
            networks,
            secrets,
            configs,
            not_in_files,
            old_versions,
            lints: lints::check(desired),
            problems,
        }
    }

    /// Whether applying would change anything.
    pub fn has_changes(&self) -> bool {
        let changed = |a: Action| a != Action::Unchanged;
        self.services.iter().any(|s| changed(s.action))
            || self
                .networks
                .iter()
                .chain(&self.secrets)
                .chain(&self.configs)
                .any(|o| changed(o.action))
    }

    fn count(&self, action: Action) -> usize {
        self.services.iter().filter(|s| s.action == action).count()
    }

    /// The plan for a pull request.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "### Deploy plan: stack `{}`\n", self.stack);
        if !self.problems.is_empty() {
            let _ = writeln!(md, "**Cannot be applied:**\n");
            for p in &self.problems {
                let _ = writeln!(md, "- ❌ {p}");
            }
            md.push('\n');
        }
        if self.has_changes() {
            let _ = writeln!(
                md,
                "Services: **{} to create, {} to update**, {} unchanged.\n",
                self.count(Action::Create),
                self.count(Action::Update),
                self.count(Action::Unchanged)
            );
        } else {
            let _ = writeln!(
                md,
                "**No changes.** {} services up to date.\n",
                self.services.len()
            );
        }
        let objects: Vec<(&str, &ObjectPlan)> = self
            .networks
            .iter()
            .map(|o| ("network", o))
            .chain(self.secrets.iter().map(|o| ("secret", o)))
            .chain(self.configs.iter().map(|o| ("config", o)))
            .filter(|(_, o)| o.action == Action::Create)
            .collect();
        if !objects.is_empty() {
            let _ = writeln!(md, "| Create | Name |\n|---|---|");
            for (kind, o) in objects {
                let _ = writeln!(md, "| {kind} | `{}` |", o.name);
            }
            md.push('\n');
        }
        for s in &self.services {
            match s.action {
                Action::Unchanged => {}
                Action::Create => {
                    let _ = writeln!(md, "#### ➕ `{}` (new service)\n", s.name);
                }
                Action::Update => {
                    let _ = writeln!(
                        md,
                        "#### ✏️ `{}`\n\n| Field | Now | Planned |\n|---|---|---|",
                        s.name
                    );
                    for c in &s.changes {
                        let cell = |v: &Option<String>| match v {
                            Some(v) => format!("`{}`", v.replace('|', "\\|").replace('`', "'")),
                            None => "—".to_owned(),
                        };
                        let _ = writeln!(
                            md,
                            "| {} | {} | {} |",
                            c.field,
                            cell(&c.before),
                            cell(&c.after)
                        );
                    }
                    md.push('\n');
                }
            }
        }
        if !self.not_in_files.is_empty() {
            let _ = writeln!(
                md,
                "Running but no longer in the stack files (left alone): {}\n",
                code_list(&self.not_in_files)
            );
        }
        if !self.old_versions.is_empty() {
            let _ = writeln!(
                md,
                "Old secret/config versions, removed after a verified apply: {}\n",
                code_list(&self.old_versions)
            );
        }
        if !self.lints.is_empty() {
            let _ = writeln!(md, "**Lints:**\n");
            for l in &self.lints {
                let _ = writeln!(md, "- ⚠️ `{}` **{}**: {}", l.service, l.rule, l.message);
            }
        }
        md
    }
}

fn code_list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::compose;
    use crate::deploy::desired;
    use crate::deploy::values::Values;

    fn desired_from(text: &str) -> Desired {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pw"), "v2").expect("write");
        let f = dir.path().join("stack.yml");
        std::fs::write(&f, text).expect("write");
        let stack = compose::read(&[f], &Values::default()).expect("stack");
        desired::build("t", &stack, &desired::tests::plain_sources()).expect("desired")
    }

    /// The engine's answer for `t_web` as captured, as `Current`.
    fn current() -> Current {
        let s: Value =
            serde_json::from_str(include_str!("testdata/service_rolled_back.json")).expect("json");
        let service = CurrentService::from_json(&s).expect("service");
        let mut c = Current::default();
        c.services.insert("t_web".into(), service);
        c.networks.insert(
            "t_net".into(),
            ("obpk13bcpu7r0jtnkznc8l46n".into(), "overlay".into()),
        );
        c.network_names
            .insert("obpk13bcpu7r0jtnkznc8l46n".into(), "t_net".into());
        c.secrets.insert(
            "t_pw_0000000000ab".into(),
            (
                "sid".into(),
                BTreeMap::from([
                    (NAMESPACE_LABEL.to_owned(), "t".to_owned()),
                    (KEY_LABEL.to_owned(), "pw".to_owned()),
                ]),
            ),
        );
        c
    }

    const SAME: &str = r#"
services:
  web:
    image: local/busybox:1
    command: ["sleep", "100000"]
    healthcheck: {test: "true", interval: 1s, retries: 2}
    networks: [net]
    deploy:
      endpoint_mode: dnsrr
      update_config: {parallelism: 1, failure_action: rollback, monitor: 5s}
networks:
  net: {}
"#;

    #[test]
    fn the_captured_service_against_the_same_stack_file_is_no_change() {
        let d = desired_from(SAME);
        let c = current();
        let mut plan = Plan::new(&d, &c);
        // The captured service was created by the CLI, which does not add the stack aliases
        // and labels; those are the only differences.
        plan.services[0]
            .changes
            .retain(|c| !c.field.contains("Labels") && !c.field.starts_with("Networks"));
        assert_eq!(plan.services[0].changes, vec![], "{}", plan.markdown());
    }

    #[test]
    fn markdown_shows_image_env_replicas_and_secret_changes_and_the_lints() {
        let changed = SAME
            .replace("local/busybox:1", "local/busybox:2")
            .replace(
                "    networks: [net]\n",
                "    networks: [net]\n    environment: {MODE: fast}\n    secrets: [pw]\n",
            )
            .replace(
                "endpoint_mode: dnsrr",
                "endpoint_mode: dnsrr\n      replicas: 3",
            )
            .replace("monitor: 5s", "monitor: 2s")
            + "secrets:\n  pw: {file: pw}\n";
        let d = desired_from(&changed);
        let plan = Plan::new(&d, &current());
        assert!(plan.has_changes());
        let md = plan.markdown();
        for needle in [
            "| Image | `local/busybox:1` | `local/busybox:2` |",
            "| Env.MODE | — | `fast` |",
            "| Replicas | `1` | `3` |",
            "| UpdateConfig.Monitor | `5s` | `2s` |",
            "| secret | `t_pw_",
            "Old secret/config versions, removed after a verified apply: `t_pw_0000000000ab`",
            "**monitor-shorter-than-health-check**",
        ] {
            assert!(md.contains(needle), "{needle:?} missing from\n{md}");
        }
        assert!(md.contains("| Secrets.t_pw_"), "{md}");
        let json = serde_json::to_value(&plan).expect("json");
        assert_eq!(json["services"][0]["action"], "update");
    }

    #[test]
    fn a_network_with_another_driver_is_a_problem_not_a_change() {
        let d = desired_from(&SAME.replace("net: {}", "net: {driver: bridge}"));
        let plan = Plan::new(&d, &current());
        assert_eq!(plan.problems.len(), 1, "{:?}", plan.problems);
        assert!(plan.markdown().contains("Cannot be applied"));
    }
}
