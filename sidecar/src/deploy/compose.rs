//! Stack files: the compose-file format `docker stack deploy` reads (version 3.x), the part of
//! it a Swarm stack uses. Reading one: YAML, merge keys (`<<: *anchor`) applied, `x-` keys
//! dropped, every string interpolated with the environment's values, later files merged over
//! earlier ones (mappings key by key, anything else replaced), then read strictly: a key this
//! reader does not know (`build`, `depends_on`, …) is an error naming the service and the key,
//! never silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::{Mapping, Value};

use super::values::Values;

/// A whole stack, as the files describe it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeFile {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub services: BTreeMap<String, Value>,
    #[serde(default)]
    pub networks: BTreeMap<String, Option<NetworkDef>>,
    #[serde(default)]
    pub volumes: BTreeMap<String, Option<VolumeDef>>,
    #[serde(default)]
    pub secrets: BTreeMap<String, ObjectDef>,
    #[serde(default)]
    pub configs: BTreeMap<String, ObjectDef>,
}

/// The stack files read: the file model and the directory relative paths start from.
#[derive(Debug, Clone)]
pub struct Stack {
    pub file: ComposeFile,
    pub services: BTreeMap<String, ServiceDef>,
    /// The first file's directory (compose's project directory).
    pub dir: PathBuf,
}

/// One service.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    pub image: String,
    #[serde(default)]
    pub command: Option<Words>,
    #[serde(default)]
    pub entrypoint: Option<Words>,
    #[serde(default)]
    pub environment: Option<Pairs>,
    #[serde(default)]
    pub labels: Option<Pairs>,
    #[serde(default)]
    pub healthcheck: Option<HealthcheckDef>,
    #[serde(default)]
    pub deploy: DeployDef,
    #[serde(default)]
    pub networks: Option<ServiceNetworks>,
    #[serde(default)]
    pub volumes: Vec<MountDef>,
    #[serde(default)]
    pub secrets: Vec<ObjectRef>,
    #[serde(default)]
    pub configs: Vec<ObjectRef>,
    #[serde(default)]
    pub ports: Vec<PortDef>,
    #[serde(default)]
    pub stop_grace_period: Option<String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub init: Option<bool>,
    #[serde(default)]
    pub read_only: Option<bool>,
}

/// A command as one string (split like a shell would) or as a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Words {
    Text(String),
    List(Vec<String>),
}

impl Words {
    pub fn to_list(&self) -> Result<Vec<String>, String> {
        match self {
            Words::List(l) => Ok(l.clone()),
            Words::Text(t) => split_words(t),
        }
    }
}

/// `environment` and `labels`: a mapping or a list of `KEY=VALUE`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Pairs {
    Map(BTreeMap<String, Option<Scalar>>),
    List(Vec<String>),
}

impl Pairs {
    /// Sorted pairs; a key without a value is an error (compose would take it from the shell
    /// running the deploy, which makes a deploy depend on who runs it).
    pub fn to_map(&self, what: &str) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        match self {
            Pairs::Map(m) => {
                for (k, v) in m {
                    let v = v.as_ref().ok_or_else(|| {
                        format!("{what} {k} has no value: give one (\"${{{k}}}\" takes it from the values file)")
                    })?;
                    out.insert(k.clone(), v.text());
                }
            }
            Pairs::List(l) => {
                for item in l {
                    let (k, v) = item.split_once('=').ok_or_else(|| {
                        format!("{what} {item:?} has no value: write {item}=VALUE")
                    })?;
                    out.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        Ok(out)
    }
}

/// A scalar YAML value written where text is meant (`PORT: 8080`, `DEBUG: true`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    pub fn text(&self) -> String {
        match self {
            Scalar::Text(t) => t.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthcheckDef {
    #[serde(default)]
    pub test: Option<Words>,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub retries: Option<u64>,
    #[serde(default)]
    pub start_period: Option<String>,
    #[serde(default)]
    pub disable: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployDef {
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub replicas: Option<u64>,
    #[serde(default)]
    pub endpoint_mode: Option<String>,
    #[serde(default)]
    pub labels: Option<Pairs>,
    #[serde(default)]
    pub placement: PlacementDef,
    #[serde(default)]
    pub update_config: Option<UpdateDef>,
    #[serde(default)]
    pub rollback_config: Option<UpdateDef>,
    #[serde(default)]
    pub restart_policy: Option<RestartDef>,
    #[serde(default)]
    pub resources: ResourcesDef,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementDef {
    #[serde(default)]
    pub constraints: Vec<String>,
    #[serde(default)]
    pub preferences: Vec<PreferenceDef>,
    #[serde(default)]
    pub max_replicas_per_node: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreferenceDef {
    pub spread: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateDef {
    #[serde(default)]
    pub parallelism: Option<u64>,
    #[serde(default)]
    pub delay: Option<String>,
    #[serde(default)]
    pub failure_action: Option<String>,
    #[serde(default)]
    pub monitor: Option<String>,
    #[serde(default)]
    pub max_failure_ratio: Option<f64>,
    #[serde(default)]
    pub order: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartDef {
    #[serde(default)]
    pub condition: Option<String>,
    #[serde(default)]
    pub delay: Option<String>,
    #[serde(default)]
    pub max_attempts: Option<u64>,
    #[serde(default)]
    pub window: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesDef {
    #[serde(default)]
    pub limits: Option<ResourceDef>,
    #[serde(default)]
    pub reservations: Option<ResourceDef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDef {
    #[serde(default)]
    pub cpus: Option<Scalar>,
    #[serde(default)]
    pub memory: Option<String>,
}

/// A service's `networks`: names, or names with aliases.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ServiceNetworks {
    List(Vec<String>),
    Map(BTreeMap<String, Option<ServiceNetworkDef>>),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNetworkDef {
    #[serde(default)]
    pub aliases: Vec<String>,
}

impl ServiceNetworks {
    /// `(network key, extra aliases)`.
    pub fn entries(&self) -> Vec<(String, Vec<String>)> {
        match self {
            ServiceNetworks::List(l) => l.iter().map(|n| (n.clone(), Vec::new())).collect(),
            ServiceNetworks::Map(m) => m
                .iter()
                .map(|(n, d)| (n.clone(), d.clone().unwrap_or_default().aliases))
                .collect(),
        }
    }
}

/// A `volumes` entry of a service: `source:target[:ro]` or the long form.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MountDef {
    Short(String),
    Long(LongMount),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongMount {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub source: Option<String>,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

/// A `secrets`/`configs` entry of a service: the name, or the long form.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ObjectRef {
    Short(String),
    Long(LongObjectRef),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongObjectRef {
    pub source: String,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub gid: Option<String>,
    #[serde(default)]
    pub mode: Option<u32>,
}

/// A `ports` entry: `"8080:80/tcp"`, a number, or the long form.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PortDef {
    Number(u16),
    Short(String),
    Long(LongPort),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongPort {
    pub target: u16,
    #[serde(default)]
    pub published: Option<u16>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
}

/// A top-level network.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkDef {
    #[serde(default)]
    pub driver: Option<String>,
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub labels: Option<Pairs>,
    #[serde(default)]
    pub external: bool,
    #[serde(default)]
    pub name: Option<String>,
}

/// A top-level volume.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeDef {
    #[serde(default)]
    pub driver: Option<String>,
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: Option<Pairs>,
    #[serde(default)]
    pub external: bool,
    #[serde(default)]
    pub name: Option<String>,
}

/// A top-level secret or config: a file (relative to the stack's directory) or one that
/// exists already (`external`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectDef {
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub external: bool,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: Option<Pairs>,
}

/// Reads and merges the stack files.
pub fn read(files: &[PathBuf], values: &Values) -> Result<Stack, String> {
    let first = files
        .first()
        .ok_or_else(|| "no stack file given (deploy.files)".to_owned())?;
    let mut merged = Value::Mapping(Mapping::new());
    for path in files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("stack file {}: {e}", path.display()))?;
        let mut value: Value = serde_norway::from_str(&text)
            .map_err(|e| format!("stack file {}: {e}", path.display()))?;
        value
            .apply_merge()
            .map_err(|e| format!("stack file {}: {e}", path.display()))?;
        drop_extensions(&mut value, 0);
        interpolate(&mut value, values)
            .map_err(|e| format!("stack file {}: {e}", path.display()))?;
        merge(&mut merged, value);
    }
    let file: ComposeFile =
        serde_norway::from_value(merged).map_err(|e| format!("stack files: {e}"))?;
    let mut services = BTreeMap::new();
    for (name, value) in &file.services {
        let def: ServiceDef =
            serde_norway::from_value(value.clone()).map_err(|e| format!("service {name}: {e}"))?;
        if def.image.trim().is_empty() {
            return Err(format!("service {name}: image is required"));
        }
        services.insert(name.clone(), def);
    }
    if services.is_empty() {
        return Err("the stack files define no services".into());
    }
    if let Some(v) = &file.version
        && !v.starts_with('3')
    {
        return Err(format!(
            "stack files: version {v:?}: docker stack deploy reads the compose format 3.x"
        ));
    }
    let dir = first
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(Stack {
        file,
        services,
        dir,
    })
}

/// Drops `x-…` keys at the top level and in each service (compose's extension fields, where
/// anchors live).
fn drop_extensions(value: &mut Value, depth: usize) {
    let Value::Mapping(map) = value else { return };
    map.retain(|k, _| !k.as_str().is_some_and(|k| k.starts_with("x-")));
    if depth == 0
        && let Some(Value::Mapping(services)) = map.get_mut("services")
    {
        for (_, service) in services.iter_mut() {
            drop_extensions(service, 1);
        }
    }
}

/// Interpolates every string (keys stay as written, as in compose).
fn interpolate(value: &mut Value, values: &Values) -> Result<(), String> {
    match value {
        Value::String(s) => {
            let had_variables = s.contains('$');
            let text = values.interpolate(s)?;
            // As compose does: `replicas: ${N}` is a number once N is known.
            *value = match (had_variables, text.parse::<u64>(), text.as_str()) {
                (true, Ok(n), _) => Value::Number(n.into()),
                (true, _, "true") => Value::Bool(true),
                (true, _, "false") => Value::Bool(false),
                _ => Value::String(text),
            };
        }
        Value::Sequence(items) => {
            for item in items {
                interpolate(item, values)?;
            }
        }
        Value::Mapping(map) => {
            for (_, v) in map.iter_mut() {
                interpolate(v, values)?;
            }
        }
        Value::Tagged(t) => interpolate(&mut t.value, values)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// `over` merged onto `base`: mappings key by key, anything else replaced.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Splits a command string the way a POSIX shell splits words (quotes and backslashes; no
/// expansion).
pub fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("{text:?}: an unclosed single quote")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("{text:?}: an unclosed double quote")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("{text:?}: an unclosed double quote")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn files_merge_interpolate_and_drop_extension_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = write(
            dir.path(),
            "stack.yml",
            r#"
version: "3.8"
x-health: &health
  interval: 5s
  retries: 3
services:
  web:
    image: "web:${TAG}"
    x-note: ignored
    healthcheck:
      <<: *health
      test: ["CMD", "true"]
    deploy:
      replicas: 2
      endpoint_mode: vip
"#,
        );
        let over = write(
            dir.path(),
            "test.yml",
            "services:\n  web:\n    deploy:\n      endpoint_mode: dnsrr\n",
        );
        let values = Values::parse("TAG=1.2\n").expect("values");
        let stack = read(&[base, over], &values).expect("reads");
        let web = &stack.services["web"];
        assert_eq!(web.image, "web:1.2");
        assert_eq!(web.deploy.replicas, Some(2));
        assert_eq!(web.deploy.endpoint_mode.as_deref(), Some("dnsrr"));
        let health = web.healthcheck.as_ref().expect("healthcheck");
        assert_eq!(health.interval.as_deref(), Some("5s"));
        assert_eq!(stack.dir, dir.path());
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_the_service_and_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = write(
            dir.path(),
            "stack.yml",
            "services:\n  web:\n    image: a:1\n    build: .\n",
        );
        let e = read(&[f], &Values::default()).expect_err("refused");
        assert!(e.contains("service web") && e.contains("build"), "{e}");
    }

    #[test]
    fn commands_split_like_a_shell() {
        assert_eq!(
            split_words(r#"sh -c 'echo "a b"' x\ y "q\"d""#).expect("splits"),
            vec!["sh", "-c", "echo \"a b\"", "x y", "q\"d"]
        );
        assert!(split_words("echo 'open").is_err());
    }
}
