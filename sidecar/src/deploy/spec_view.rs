//! A service spec as a flat list of `field → value` that two specs can be compared by: the
//! one built from the stack files and the one the engine returns, which holds ids where the
//! stack has names and fills in defaults the stack never wrote. Both go through the same
//! function, so what one side leaves out and the other spells as its default compares equal:
//! empty values, `false`, zero (but a replica count) and Docker's documented defaults are
//! dropped; lists whose order means nothing (environment, networks, secrets, configs, mounts,
//! ports) become one field per entry; durations read as durations; the values of environment
//! variables whose names say they are secret are shown only as a hash.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use concierge_infra::layered_config::TextDuration;

/// Fields that keep a zero (0 replicas is a real, different value).
const KEEP_ZERO: &[&str] = &["Replicas"];
/// Docker's defaults, as the engine spells them when the request left them out.
const DEFAULTS: &[(&str, &str)] = &[
    ("Isolation", "default"),
    ("Runtime", "container"),
    ("EndpointSpec.Mode", "vip"),
    ("UpdateConfig.Order", "stop-first"),
    ("UpdateConfig.FailureAction", "pause"),
    ("RollbackConfig.FailureAction", "pause"),
    ("RollbackConfig.Order", "stop-first"),
];
/// Fields holding nanoseconds.
const DURATIONS: &[&str] = &[
    "Interval",
    "Timeout",
    "StartPeriod",
    "StartInterval",
    "Delay",
    "Monitor",
    "Window",
    "StopGracePeriod",
];
/// Words that mark an environment variable's value as secret.
const SECRET_WORDS: &[&str] = &["TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL"];

/// The flat view of `spec`; `network_names` maps network ids to names.
pub fn flatten(spec: &Value, network_names: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Value::Object(map) = spec {
        for (k, v) in map {
            if k == "Name" {
                continue;
            }
            walk(k, v, network_names, &mut out);
        }
    }
    out.retain(|field, value| !DEFAULTS.iter().any(|(f, d)| f == field && d == value));
    out
}

fn walk(
    path: &str,
    value: &Value,
    nets: &BTreeMap<String, String>,
    out: &mut BTreeMap<String, String>,
) {
    let leaf = path.rsplit('.').next().unwrap_or(path).to_owned();
    let shown = display(path);
    match value {
        Value::Null => {}
        Value::Bool(b) => {
            if *b {
                out.insert(shown, "true".into());
            }
        }
        Value::Number(n) => {
            let zero = n.as_f64() == Some(0.0);
            if zero && !KEEP_ZERO.contains(&leaf.as_str()) {
                return;
            }
            let text = match (DURATIONS.contains(&leaf.as_str()), n.as_u64()) {
                (true, Some(ns)) => TextDuration::from_millis(ns / 1_000_000).to_string(),
                _ => n.to_string(),
            };
            out.insert(shown, text);
        }
        Value::String(s) => {
            if !s.is_empty() {
                out.insert(shown, s.clone());
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                walk(&format!("{path}.{k}"), v, nets, out);
            }
        }
        Value::Array(items) => array(path, &shown, items, nets, out),
    }
}

/// The field as people read it: the task template's and container spec's fields as the
/// service's own.
fn display(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("TaskTemplate.ContainerSpec.Labels") {
        return format!("ContainerLabels{rest}");
    }
    if let Some(rest) = path.strip_prefix("TaskTemplate.ContainerSpec.") {
        return rest.to_owned();
    }
    if let Some(rest) = path.strip_prefix("TaskTemplate.") {
        return rest.to_owned();
    }
    if path == "Mode.Replicated.Replicas" {
        return "Replicas".to_owned();
    }
    path.to_owned()
}

fn array(
    path: &str,
    shown: &str,
    items: &[Value],
    nets: &BTreeMap<String, String>,
    out: &mut BTreeMap<String, String>,
) {
    let text = |v: Option<&Value>| -> String {
        match v {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => String::new(),
        }
    };
    match path {
        "TaskTemplate.ContainerSpec.Env" => {
            for item in items {
                let item = text(Some(item));
                let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                out.insert(format!("Env.{k}"), masked(k, v));
            }
        }
        "TaskTemplate.Networks" => {
            for n in items {
                let target = text(n.get("Target"));
                let name = nets.get(&target).cloned().unwrap_or(target);
                let mut aliases: Vec<String> = n
                    .get("Aliases")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(|x| text(Some(x))).collect())
                    .unwrap_or_default();
                aliases.sort();
                out.insert(
                    format!("Networks.{name}"),
                    format!("aliases {}", aliases.join(",")),
                );
            }
        }
        "TaskTemplate.ContainerSpec.Secrets" | "TaskTemplate.ContainerSpec.Configs" => {
            let (leaf, name_field) = if shown == "Secrets" {
                ("Secrets", "SecretName")
            } else {
                ("Configs", "ConfigName")
            };
            for s in items {
                let f = s.get("File");
                let mode = f
                    .and_then(|f| f.get("Mode"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                out.insert(
                    format!("{leaf}.{}", text(s.get(name_field))),
                    format!(
                        "{} uid {} gid {} mode {mode:o}",
                        text(f.and_then(|f| f.get("Name"))),
                        text(f.and_then(|f| f.get("UID"))),
                        text(f.and_then(|f| f.get("GID")))
                    ),
                );
            }
        }
        "TaskTemplate.ContainerSpec.Mounts" => {
            for m in items {
                let ro = m.get("ReadOnly").and_then(Value::as_bool).unwrap_or(false);
                out.insert(
                    format!("Mounts.{}", text(m.get("Target"))),
                    format!(
                        "{} {}{}",
                        text(m.get("Type")),
                        text(m.get("Source")),
                        if ro { " (read-only)" } else { "" }
                    ),
                );
            }
        }
        "EndpointSpec.Ports" => {
            for p in items {
                out.insert(
                    format!(
                        "Ports.{}/{}",
                        text(p.get("TargetPort")),
                        p.get("Protocol").and_then(Value::as_str).unwrap_or("tcp")
                    ),
                    format!(
                        "published {} ({})",
                        text(p.get("PublishedPort")),
                        p.get("PublishMode")
                            .and_then(Value::as_str)
                            .unwrap_or("ingress")
                    ),
                );
            }
        }
        _ => {
            if !items.is_empty() {
                out.insert(shown.to_owned(), Value::Array(items.to_vec()).to_string());
            }
        }
    }
}

/// An environment value, or its hash when the name says it is a secret.
fn masked(key: &str, value: &str) -> String {
    let upper = key.to_ascii_uppercase();
    if SECRET_WORDS.iter().any(|w| upper.contains(w)) && !value.is_empty() {
        let digest = Sha256::digest(value.as_bytes());
        let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        format!("(hidden, sha256 {hex}…)")
    } else {
        value.to_owned()
    }
}

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The fields that differ from `before` to `after`, in field order.
pub fn diff(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<FieldChange> {
    let mut fields: Vec<&String> = before.keys().chain(after.keys()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter(|f| before.get(*f) != after.get(*f))
        .map(|f| FieldChange {
            field: f.clone(),
            before: before.get(f).cloned(),
            after: after.get(f).cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured() -> Value {
        serde_json::from_str(include_str!("testdata/service_rolled_back.json")).expect("json")
    }

    #[test]
    fn the_engines_spelling_of_defaults_compares_equal_to_leaving_them_out() {
        let engine = captured();
        let nets = BTreeMap::from([("obpk13bcpu7r0jtnkznc8l46n".to_owned(), "t_net".to_owned())]);
        let view = flatten(&engine["Spec"], &nets);
        // What a stack file saying the same thing builds (no Init, Isolation, Runtime,
        // ForceUpdate, empty Resources or Placement, network by name).
        let ours = serde_json::json!({
            "Name": "t_web",
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": "local/busybox:1",
                    "Args": ["sleep", "100000"],
                    "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 1_000_000_000u64, "Retries": 2}
                },
                "Networks": [{"Target": "t_net"}]
            },
            "Mode": {"Replicated": {"Replicas": 1}},
            "UpdateConfig": {"Parallelism": 1, "FailureAction": "rollback", "Monitor": 5_000_000_000u64},
            "EndpointSpec": {"Mode": "dnsrr"}
        });
        let mine = flatten(&ours, &BTreeMap::new());
        assert_eq!(diff(&view, &mine), vec![], "{view:#?}");
        assert_eq!(
            view.get("Healthcheck.Interval").map(String::as_str),
            Some("1s")
        );
        assert_eq!(view.get("Replicas").map(String::as_str), Some("1"));
    }

    #[test]
    fn a_change_shows_each_field_once_and_secret_values_only_as_a_hash() {
        let before = flatten(
            &serde_json::json!({"TaskTemplate": {"ContainerSpec": {"Image": "a:1", "Env": ["API_TOKEN=one", "MODE=x"]}}, "Mode": {"Replicated": {"Replicas": 2}}}),
            &BTreeMap::new(),
        );
        let after = flatten(
            &serde_json::json!({"TaskTemplate": {"ContainerSpec": {"Image": "a:2", "Env": ["MODE=x", "API_TOKEN=two"]}}, "Mode": {"Replicated": {"Replicas": 0}}}),
            &BTreeMap::new(),
        );
        let changes = diff(&before, &after);
        let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["Env.API_TOKEN", "Image", "Replicas"]);
        let token = &changes[0];
        for side in [&token.before, &token.after] {
            let text = side.as_deref().expect("value");
            assert!(
                text.starts_with("(hidden") && !text.contains("one") && !text.contains("two"),
                "{text}"
            );
        }
        assert_ne!(token.before, token.after);
        assert_eq!(changes[2].after.as_deref(), Some("0"));
    }
}
