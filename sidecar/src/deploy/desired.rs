//! What the swarm should hold, from the stack files: each service as the Engine API's
//! `ServiceSpec`, the networks to create, and the secrets and configs under versioned names.
//!
//! Names follow `docker stack deploy`: `<stack>_<key>` for services, networks and volumes,
//! each object labelled `com.docker.stack.namespace=<stack>`, a service reachable on its
//! networks by its key. Secrets and configs are immutable in Swarm, so each is named after its
//! content (`<stack>_<key>_<first 12 hex digits of its SHA-256>`): a changed file is a new
//! object and the services that use it switch names, which is a service update Swarm can roll
//! back. References to networks and secrets hold names here; apply resolves them to ids.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::compose::{
    HealthcheckDef, LongMount, MountDef, ObjectDef, ObjectRef, PortDef, ResourceDef, Stack,
    UpdateDef,
};
use concierge_infra::layered_config::TextDuration;

/// The label that ties an object to its stack (the one `docker stack` uses).
pub const NAMESPACE_LABEL: &str = "com.docker.stack.namespace";
/// The stack-file key a secret or config version belongs to.
pub const KEY_LABEL: &str = "concierge.deploy.key";
/// Docker's defaults where the stack file says nothing (Engine API, swarmkit).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_RETRIES: u64 = 3;
pub const DEFAULT_MONITOR: Duration = Duration::from_secs(5);

/// The whole desired state.
#[derive(Debug, Clone)]
pub struct Desired {
    pub stack: String,
    pub services: Vec<DesiredService>,
    pub networks: Vec<DesiredNetwork>,
    pub secrets: Vec<DesiredObject>,
    pub configs: Vec<DesiredObject>,
}

/// One service: its spec and what the lints look at.
#[derive(Debug, Clone)]
pub struct DesiredService {
    pub key: String,
    pub name: String,
    pub spec: Value,
    pub image: String,
    /// `None`: the stack file gives no health check (or disables it).
    pub health: Option<Health>,
    pub monitor: Duration,
    pub failure_action: String,
}

/// A health check's timing (Docker's defaults filled in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u64,
    pub start_period: Duration,
}

impl Health {
    /// The longest a failing check can take to mark a task unhealthy: the start period, then
    /// `retries` probes, each up to `timeout` long and `interval` after the last one ended.
    pub fn window(&self) -> Duration {
        let probes = u32::try_from(self.retries).unwrap_or(u32::MAX);
        self.start_period + (self.interval + self.timeout) * probes
    }
}

/// A network the stack creates (or expects, when external).
#[derive(Debug, Clone)]
pub struct DesiredNetwork {
    pub key: String,
    pub name: String,
    pub external: bool,
    pub driver: String,
    /// The `POST /networks/create` body.
    pub create: Value,
}

/// A secret or config version (its content wiped on drop, never in `Debug`).
#[derive(Clone)]
pub struct DesiredObject {
    pub key: String,
    pub name: String,
    pub external: bool,
    pub data: Zeroizing<Vec<u8>>,
    pub labels: BTreeMap<String, String>,
    /// The file it comes from (`None` when external).
    pub file: Option<PathBuf>,
}

impl std::fmt::Debug for DesiredObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesiredObject")
            .field("key", &self.key)
            .field("name", &self.name)
            .field("external", &self.external)
            .field("bytes", &self.data.len())
            .finish_non_exhaustive()
    }
}

/// Reads one secret or config file into memory.
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> Result<Zeroizing<Vec<u8>>, String>;

/// How secret and config files are read and named.
pub struct Sources<'a> {
    /// Reads a secret's file (decrypting git-crypt files).
    pub read_secret: ReadFile<'a>,
    /// Docker secret names are `<prefix><key>_<hash>`; "": `<stack>_`.
    pub secret_prefix: &'a str,
}

impl std::fmt::Debug for Sources<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("secret_prefix", &self.secret_prefix)
            .finish_non_exhaustive()
    }
}

/// Plain files: configs, and secrets when no `[secrets]` reader is given.
pub fn read_plain(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Builds the desired state of stack `stack` from its files.
pub fn build(stack_name: &str, stack: &Stack, sources: &Sources<'_>) -> Result<Desired, String> {
    check_name(stack_name)?;
    let prefixed = |key: &str| format!("{stack_name}_{key}");
    let namespace = || BTreeMap::from([(NAMESPACE_LABEL.to_owned(), stack_name.to_owned())]);

    // Networks: the declared ones, plus `default` when a service names none (as compose does).
    let mut networks = Vec::new();
    let mut declared = stack.file.networks.clone();
    let needs_default = stack.services.values().any(|s| s.networks.is_none());
    if needs_default {
        declared.entry("default".to_owned()).or_insert(None);
    }
    for (key, def) in &declared {
        let def = def.clone().unwrap_or_default();
        let name = def.name.clone().unwrap_or_else(|| prefixed(key));
        let driver = def.driver.clone().unwrap_or_else(|| "overlay".to_owned());
        let mut labels = match &def.labels {
            Some(l) => l.to_map(&format!("network {key} label"))?,
            None => BTreeMap::new(),
        };
        labels.extend(namespace());
        let create = json!({
            "Name": name,
            "CheckDuplicate": true,
            "Driver": driver,
            "Attachable": def.attachable,
            "Internal": def.internal,
            "Options": def.driver_opts,
            "Labels": labels,
        });
        networks.push(DesiredNetwork {
            key: key.clone(),
            name,
            external: def.external,
            driver,
            create,
        });
    }

    let default_prefix = format!("{stack_name}_");
    let secret_prefix = if sources.secret_prefix.is_empty() {
        default_prefix.as_str()
    } else {
        sources.secret_prefix
    };
    let secrets = objects(
        "secret",
        stack_name,
        secret_prefix,
        &stack.file.secrets,
        stack,
        sources.read_secret,
    )?;
    let configs = objects(
        "config",
        stack_name,
        &default_prefix,
        &stack.file.configs,
        stack,
        &read_plain,
    )?;

    let mut services = Vec::new();
    for (key, def) in &stack.services {
        let ctx = |e: String| format!("service {key}: {e}");
        let name = prefixed(key);
        let mut container = serde_json::Map::new();
        container.insert("Image".into(), json!(def.image));
        if let Some(e) = &def.entrypoint {
            container.insert("Command".into(), json!(e.to_list().map_err(ctx)?));
        }
        if let Some(c) = &def.command {
            container.insert("Args".into(), json!(c.to_list().map_err(ctx)?));
        }
        if let Some(env) = &def.environment {
            let env: Vec<String> = env
                .to_map("environment variable")
                .map_err(ctx)?
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            container.insert("Env".into(), json!(env));
        }
        let mut container_labels = match &def.labels {
            Some(l) => l.to_map("label").map_err(ctx)?,
            None => BTreeMap::new(),
        };
        container_labels.extend(namespace());
        container.insert("Labels".into(), json!(container_labels));
        let health = match &def.healthcheck {
            Some(h) => {
                let (spec, health) = healthcheck(h).map_err(ctx)?;
                container.insert("Healthcheck".into(), spec);
                health
            }
            None => None,
        };
        for (field, value) in [
            ("User", &def.user),
            ("Dir", &def.working_dir),
            ("Hostname", &def.hostname),
            ("StopSignal", &def.stop_signal),
        ] {
            if let Some(v) = value {
                container.insert(field.into(), json!(v));
            }
        }
        if let Some(g) = &def.stop_grace_period {
            container.insert("StopGracePeriod".into(), json!(nanos(g).map_err(ctx)?));
        }
        if let Some(init) = def.init {
            container.insert("Init".into(), json!(init));
        }
        if let Some(ro) = def.read_only {
            container.insert("ReadOnly".into(), json!(ro));
        }
        let mut mounts = Vec::new();
        for m in &def.volumes {
            mounts.push(mount(m, stack_name, stack).map_err(ctx)?);
        }
        if !mounts.is_empty() {
            container.insert("Mounts".into(), json!(mounts));
        }
        let refs = |kind: &str, list: &[ObjectRef], objs: &[DesiredObject]| {
            object_refs(kind, list, objs).map_err(|e| format!("service {key}: {e}"))
        };
        let s = refs("secret", &def.secrets, &secrets)?;
        if !s.is_empty() {
            container.insert("Secrets".into(), json!(s));
        }
        let c = refs("config", &def.configs, &configs)?;
        if !c.is_empty() {
            container.insert("Configs".into(), json!(c));
        }

        let mut nets = Vec::new();
        let entries = match &def.networks {
            Some(n) => n.entries(),
            None => vec![("default".to_owned(), Vec::new())],
        };
        for (net, extra) in entries {
            let network = networks.iter().find(|n| n.key == net).ok_or_else(|| {
                format!("service {key}: network {net} is not declared under networks")
            })?;
            let mut aliases = vec![key.clone()];
            aliases.extend(extra);
            nets.push(json!({"Target": network.name, "Aliases": aliases}));
        }

        let d = &def.deploy;
        let mut task = json!({"ContainerSpec": Value::Object(container), "Networks": nets});
        let mut placement = serde_json::Map::new();
        if !d.placement.constraints.is_empty() {
            placement.insert("Constraints".into(), json!(d.placement.constraints));
        }
        if !d.placement.preferences.is_empty() {
            let p: Vec<Value> = d
                .placement
                .preferences
                .iter()
                .map(|p| json!({"Spread": {"SpreadDescriptor": p.spread}}))
                .collect();
            placement.insert("Preferences".into(), json!(p));
        }
        if let Some(m) = d.placement.max_replicas_per_node {
            placement.insert("MaxReplicas".into(), json!(m));
        }
        if !placement.is_empty() {
            task["Placement"] = Value::Object(placement);
        }
        let mut resources = serde_json::Map::new();
        for (field, r) in [
            ("Limits", &d.resources.limits),
            ("Reservations", &d.resources.reservations),
        ] {
            if let Some(r) = r {
                resources.insert(field.into(), resource(r).map_err(ctx)?);
            }
        }
        if !resources.is_empty() {
            task["Resources"] = Value::Object(resources);
        }
        if let Some(r) = &d.restart_policy {
            let mut p = serde_json::Map::new();
            if let Some(c) = &r.condition {
                let c = match c.as_str() {
                    "none" | "on-failure" | "any" => c.clone(),
                    other => {
                        return Err(ctx(format!(
                            "restart_policy.condition {other:?}: use none, on-failure or any"
                        )));
                    }
                };
                p.insert("Condition".into(), json!(c));
            }
            if let Some(v) = &r.delay {
                p.insert("Delay".into(), json!(nanos(v).map_err(ctx)?));
            }
            if let Some(v) = r.max_attempts {
                p.insert("MaxAttempts".into(), json!(v));
            }
            if let Some(v) = &r.window {
                p.insert("Window".into(), json!(nanos(v).map_err(ctx)?));
            }
            task["RestartPolicy"] = Value::Object(p);
        }

        let mode = match d.mode.as_deref().unwrap_or("replicated") {
            "replicated" => json!({"Replicated": {"Replicas": d.replicas.unwrap_or(1)}}),
            "global" => {
                if d.replicas.is_some() {
                    return Err(ctx(
                        "deploy.replicas is not allowed with mode: global".into()
                    ));
                }
                json!({"Global": {}})
            }
            other => {
                return Err(ctx(format!(
                    "deploy.mode {other:?}: use replicated or global"
                )));
            }
        };
        let mut labels = match &d.labels {
            Some(l) => l.to_map("deploy label").map_err(ctx)?,
            None => BTreeMap::new(),
        };
        labels.extend(namespace());
        labels.insert("com.docker.stack.image".into(), def.image.clone());
        let mut spec = json!({
            "Name": name,
            "Labels": labels,
            "TaskTemplate": task,
            "Mode": mode,
        });
        let (monitor, failure_action) = match &d.update_config {
            Some(u) => {
                spec["UpdateConfig"] = update(u).map_err(|e| ctx(format!("update_config: {e}")))?;
                (
                    match &u.monitor {
                        Some(m) => duration(m).map_err(ctx)?,
                        None => DEFAULT_MONITOR,
                    },
                    u.failure_action.clone().unwrap_or_else(|| "pause".into()),
                )
            }
            None => (DEFAULT_MONITOR, "pause".to_owned()),
        };
        if let Some(r) = &d.rollback_config {
            spec["RollbackConfig"] = update(r).map_err(|e| ctx(format!("rollback_config: {e}")))?;
        }
        let mut endpoint = serde_json::Map::new();
        if let Some(m) = &d.endpoint_mode {
            if !matches!(m.as_str(), "vip" | "dnsrr") {
                return Err(ctx(format!("deploy.endpoint_mode {m:?}: use vip or dnsrr")));
            }
            endpoint.insert("Mode".into(), json!(m));
        }
        let mut ports = Vec::new();
        for p in &def.ports {
            ports.extend(port(p).map_err(ctx)?);
        }
        if !ports.is_empty() {
            if d.endpoint_mode.as_deref() == Some("dnsrr")
                && ports.iter().any(|p| p["PublishMode"] == "ingress")
            {
                return Err(ctx(
                    "ports published through the routing mesh need endpoint_mode vip (or mode: host ports)".into(),
                ));
            }
            endpoint.insert("Ports".into(), json!(ports));
        }
        if !endpoint.is_empty() {
            spec["EndpointSpec"] = Value::Object(endpoint);
        }
        services.push(DesiredService {
            key: key.clone(),
            name,
            spec,
            image: def.image.clone(),
            health,
            monitor,
            failure_action,
        });
    }
    Ok(Desired {
        stack: stack_name.to_owned(),
        services,
        networks,
        secrets,
        configs,
    })
}

fn check_name(stack: &str) -> Result<(), String> {
    let ok = !stack.is_empty()
        && stack.len() <= 40
        && stack
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && stack.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "stack name {stack:?}: lower-case letters, digits, - and _, at most 40"
        ))
    }
}

/// The secrets or configs of the stack files, each under its versioned name.
fn objects(
    kind: &str,
    stack_name: &str,
    prefix: &str,
    defs: &BTreeMap<String, ObjectDef>,
    stack: &Stack,
    read: ReadFile<'_>,
) -> Result<Vec<DesiredObject>, String> {
    let mut out = Vec::new();
    for (key, def) in defs {
        if def.external {
            out.push(DesiredObject {
                key: key.clone(),
                name: def.name.clone().unwrap_or_else(|| key.clone()),
                external: true,
                data: Zeroizing::new(Vec::new()),
                labels: BTreeMap::new(),
                file: None,
            });
            continue;
        }
        let file = def
            .file
            .as_ref()
            .ok_or_else(|| format!("{kind} {key}: give file: PATH or external: true"))?;
        let path = clean(&stack.dir.join(file));
        let data = read(&path).map_err(|e| format!("{kind} {key}: {e}"))?;
        let hash = hex(&Sha256::digest(&data[..]));
        let base = def.name.clone().unwrap_or_else(|| format!("{prefix}{key}"));
        let name = format!("{base}_{}", &hash[..12]);
        if name.len() > 64 {
            return Err(format!(
                "{kind} {key}: the versioned name {name:?} is longer than Docker's 64 characters"
            ));
        }
        let mut labels = match &def.labels {
            Some(l) => l.to_map(&format!("{kind} {key} label"))?,
            None => BTreeMap::new(),
        };
        labels.insert(NAMESPACE_LABEL.into(), stack_name.into());
        labels.insert(KEY_LABEL.into(), key.clone());
        labels.insert("concierge.deploy.sha256".into(), hash);
        out.push(DesiredObject {
            key: key.clone(),
            name,
            external: false,
            data,
            labels,
            file: Some(path),
        });
    }
    Ok(out)
}

fn object_refs(
    kind: &str,
    list: &[ObjectRef],
    objects: &[DesiredObject],
) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for r in list {
        let (source, target, uid, gid, mode) = match r {
            ObjectRef::Short(s) => (s.clone(), None, None, None, None),
            ObjectRef::Long(l) => (
                l.source.clone(),
                l.target.clone(),
                l.uid.clone(),
                l.gid.clone(),
                l.mode,
            ),
        };
        let object = objects
            .iter()
            .find(|o| o.key == source)
            .ok_or_else(|| format!("{kind} {source} is not declared under {kind}s"))?;
        let (name_field, id_field) = if kind == "secret" {
            ("SecretName", "SecretID")
        } else {
            ("ConfigName", "ConfigID")
        };
        let target = target.unwrap_or_else(|| source.clone());
        out.push(json!({
            "File": {
                "Name": target,
                "UID": uid.unwrap_or_else(|| "0".into()),
                "GID": gid.unwrap_or_else(|| "0".into()),
                "Mode": mode.unwrap_or(0o444),
            },
            id_field: "",
            name_field: object.name,
        }));
    }
    Ok(out)
}

fn healthcheck(h: &HealthcheckDef) -> Result<(Value, Option<Health>), String> {
    if h.disable {
        return Ok((json!({"Test": ["NONE"]}), None));
    }
    let test = match &h.test {
        Some(super::compose::Words::Text(t)) => vec!["CMD-SHELL".to_owned(), t.clone()],
        Some(super::compose::Words::List(l)) => {
            match l.first().map(String::as_str) {
                Some("CMD" | "CMD-SHELL" | "NONE") => {}
                _ => {
                    return Err(
                        "healthcheck.test as a list starts with CMD, CMD-SHELL or NONE".into(),
                    );
                }
            }
            l.clone()
        }
        None => return Err("healthcheck.test is missing (or set disable: true)".into()),
    };
    if test.first().map(String::as_str) == Some("NONE") {
        return Ok((json!({"Test": test}), None));
    }
    let mut spec = json!({"Test": test});
    let interval = h.interval.as_deref().map(duration).transpose()?;
    let timeout = h.timeout.as_deref().map(duration).transpose()?;
    let start = h.start_period.as_deref().map(duration).transpose()?;
    for (field, d) in [
        ("Interval", interval),
        ("Timeout", timeout),
        ("StartPeriod", start),
    ] {
        if let Some(d) = d {
            spec[field] = json!(d.as_nanos() as u64);
        }
    }
    if let Some(r) = h.retries {
        spec["Retries"] = json!(r);
    }
    let health = Health {
        interval: interval.unwrap_or(DEFAULT_INTERVAL),
        timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
        retries: h.retries.filter(|r| *r > 0).unwrap_or(DEFAULT_RETRIES),
        start_period: start.unwrap_or_default(),
    };
    Ok((spec, Some(health)))
}

fn update(u: &UpdateDef) -> Result<Value, String> {
    let mut out = serde_json::Map::new();
    if let Some(p) = u.parallelism {
        out.insert("Parallelism".into(), json!(p));
    }
    if let Some(d) = &u.delay {
        out.insert("Delay".into(), json!(nanos(d)?));
    }
    if let Some(a) = &u.failure_action {
        if !matches!(a.as_str(), "pause" | "continue" | "rollback") {
            return Err(format!(
                "failure_action {a:?}: use pause, continue or rollback"
            ));
        }
        out.insert("FailureAction".into(), json!(a));
    }
    if let Some(m) = &u.monitor {
        out.insert("Monitor".into(), json!(nanos(m)?));
    }
    if let Some(r) = u.max_failure_ratio {
        out.insert("MaxFailureRatio".into(), json!(r));
    }
    if let Some(o) = &u.order {
        if !matches!(o.as_str(), "stop-first" | "start-first") {
            return Err(format!("order {o:?}: use stop-first or start-first"));
        }
        out.insert("Order".into(), json!(o));
    }
    Ok(Value::Object(out))
}

fn mount(m: &MountDef, stack_name: &str, stack: &Stack) -> Result<Value, String> {
    let long = match m {
        MountDef::Long(l) => l.clone(),
        MountDef::Short(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            let (source, target, ro) = match parts.as_slice() {
                [target] => (None, (*target).to_owned(), false),
                [source, target] => (Some((*source).to_owned()), (*target).to_owned(), false),
                [source, target, opts] => (
                    Some((*source).to_owned()),
                    (*target).to_owned(),
                    opts.split(',').any(|o| o == "ro"),
                ),
                _ => return Err(format!("volume {s:?}: write SOURCE:TARGET[:ro]")),
            };
            let kind = match &source {
                Some(src) if src.starts_with('/') || src.starts_with('.') => "bind",
                _ => "volume",
            };
            LongMount {
                kind: kind.into(),
                source,
                target,
                read_only: ro,
            }
        }
    };
    let mut volume_options = None;
    let source = match (long.kind.as_str(), &long.source) {
        ("bind", Some(src)) => {
            let p = if src.starts_with('/') {
                std::path::PathBuf::from(src)
            } else {
                stack.dir.join(src)
            };
            // The engine refuses a source with `..` in it (as `docker stack deploy`, clean it).
            clean(&p).display().to_string()
        }
        ("bind", None) => return Err(format!("bind mount at {} has no source", long.target)),
        ("volume", Some(src)) => {
            let def = stack
                .file
                .volumes
                .get(src)
                .ok_or_else(|| format!("volume {src} is not declared under volumes"))?
                .clone()
                .unwrap_or_default();
            if !def.external {
                let mut labels = match &def.labels {
                    Some(l) => l.to_map(&format!("volume {src} label"))?,
                    None => BTreeMap::new(),
                };
                labels.insert(NAMESPACE_LABEL.into(), stack_name.into());
                let mut options = json!({"Labels": labels});
                if let Some(driver) = &def.driver {
                    options["DriverConfig"] = json!({"Name": driver, "Options": def.driver_opts});
                }
                volume_options = Some(options);
            }
            match (def.external, def.name) {
                (_, Some(name)) => name,
                (true, None) => src.clone(),
                (false, None) => format!("{stack_name}_{src}"),
            }
        }
        ("volume" | "tmpfs", None) => String::new(),
        (other, _) => return Err(format!("mount type {other:?}: use bind, volume or tmpfs")),
    };
    let mut out = json!({
        "Type": long.kind,
        "Target": long.target,
        "ReadOnly": long.read_only,
    });
    if !source.is_empty() {
        out["Source"] = json!(source);
    }
    if let Some(options) = volume_options {
        out["VolumeOptions"] = options;
    }
    Ok(out)
}

fn port(p: &PortDef) -> Result<Vec<Value>, String> {
    let one = |target: u16, published: Option<u16>, protocol: &str, mode: &str| {
        let mut v = json!({"Protocol": protocol, "TargetPort": target, "PublishMode": mode});
        if let Some(p) = published {
            v["PublishedPort"] = json!(p);
        }
        v
    };
    match p {
        PortDef::Number(n) => Ok(vec![one(*n, None, "tcp", "ingress")]),
        PortDef::Long(l) => {
            let protocol = l.protocol.as_deref().unwrap_or("tcp");
            let mode = l.mode.as_deref().unwrap_or("ingress");
            if !matches!(protocol, "tcp" | "udp" | "sctp") || !matches!(mode, "ingress" | "host") {
                return Err(format!(
                    "port {}: protocol tcp/udp/sctp, mode ingress/host",
                    l.target
                ));
            }
            Ok(vec![one(l.target, l.published, protocol, mode)])
        }
        PortDef::Short(s) => {
            let (ports, protocol) = s.split_once('/').unwrap_or((s.as_str(), "tcp"));
            let bad = || format!("port {s:?}: write PUBLISHED:TARGET[/udp] or TARGET");
            let num = |t: &str| t.trim().parse::<u16>().map_err(|_| bad());
            match ports.split(':').collect::<Vec<_>>().as_slice() {
                [t] => Ok(vec![one(num(t)?, None, protocol, "ingress")]),
                [p, t] => Ok(vec![one(num(t)?, Some(num(p)?), protocol, "ingress")]),
                _ => Err(bad()),
            }
        }
    }
}

fn resource(r: &ResourceDef) -> Result<Value, String> {
    let mut out = serde_json::Map::new();
    if let Some(cpus) = &r.cpus {
        let c: f64 = cpus
            .text()
            .parse()
            .map_err(|_| format!("cpus {:?} is not a number", cpus.text()))?;
        out.insert("NanoCPUs".into(), json!((c * 1e9).round() as i64));
    }
    if let Some(m) = &r.memory {
        out.insert("MemoryBytes".into(), json!(bytes(m)?));
    }
    Ok(Value::Object(out))
}

/// `512M`, `1g`, `256MiB`, `1048576` as bytes.
fn bytes(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.trim_end_matches("ib").trim_end_matches('b');
    let (num, unit) = t.split_at(
        t.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("memory {text:?}: e.g. 512M or 2G"))?;
    let mult = match unit {
        "" => 1u64,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(format!("memory {text:?}: units k, m or g")),
    };
    Ok((n * mult as f64) as u64)
}

/// `path` without `.` and with each `..` applied to what comes before it (no file system
/// lookups: the path is the nodes', not ours).
fn clean(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            Component::Prefix(_) | Component::RootDir | Component::Normal(_) => out.push(c),
        }
    }
    out
}

fn duration(text: &str) -> Result<Duration, String> {
    text.parse::<TextDuration>().map(TextDuration::get)
}

fn nanos(text: &str) -> Result<u64, String> {
    Ok(duration(text)?.as_nanos() as u64)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::compose;
    use super::super::values::Values;
    use super::*;

    pub fn plain_sources() -> Sources<'static> {
        Sources {
            read_secret: &read_plain,
            secret_prefix: "",
        }
    }

    fn desired(text: &str) -> Result<Desired, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("token.txt"), "s3cret").expect("write");
        let f = dir.path().join("stack.yml");
        std::fs::write(&f, text).expect("write");
        let stack = compose::read(&[f], &Values::default())?;
        build("app", &stack, &plain_sources())
    }

    #[test]
    fn a_service_becomes_the_spec_docker_stack_deploy_would_send() {
        let d = desired(
            r#"
services:
  web:
    image: web:1.2
    command: httpd -f -p 8080
    environment: {B: "2", A: 1}
    healthcheck: {test: ["CMD", "wget", "-q", "localhost:8080"], interval: 2s, retries: 5}
    secrets: [token]
    deploy:
      replicas: 3
      update_config: {failure_action: rollback, monitor: 30s}
      placement: {constraints: ["node.role == manager"]}
secrets:
  token: {file: token.txt}
"#,
        )
        .expect("builds");
        let web = &d.services[0];
        assert_eq!(web.name, "app_web");
        let c = &web.spec["TaskTemplate"]["ContainerSpec"];
        assert_eq!(c["Args"], json!(["httpd", "-f", "-p", "8080"]));
        assert_eq!(c["Env"], json!(["A=1", "B=2"]));
        assert_eq!(web.spec["Mode"]["Replicated"]["Replicas"], 3);
        assert_eq!(web.spec["UpdateConfig"]["Monitor"], 30_000_000_000u64);
        assert_eq!(
            web.spec["TaskTemplate"]["Networks"],
            json!([{"Target": "app_default", "Aliases": ["web"]}])
        );
        let secret = &d.secrets[0];
        assert!(
            secret.name.starts_with("app_token_") && secret.name.len() == 22,
            "{}",
            secret.name
        );
        assert_eq!(c["Secrets"][0]["SecretName"], json!(secret.name));
        assert_eq!(c["Secrets"][0]["File"]["Name"], "token");
        let health = web.health.expect("health");
        // 5 probes of up to 2 s apart and 30 s (the default timeout) each.
        assert_eq!(health.window(), Duration::from_secs(160));
        assert_eq!(d.networks[0].name, "app_default");
    }

    #[test]
    fn references_to_undeclared_objects_are_errors() {
        let e = desired("services:\n  web:\n    image: a:1\n    secrets: [nope]\n")
            .expect_err("undeclared");
        assert!(e.contains("secret nope is not declared"), "{e}");
        let e = desired("services:\n  web:\n    image: a:1\n    networks: [back]\n")
            .expect_err("undeclared");
        assert!(e.contains("network back is not declared"), "{e}");
        let e = desired("services:\n  web:\n    image: a:1\n    deploy: {mode: daemon}\n")
            .expect_err("bad mode");
        assert!(e.contains("replicated or global"), "{e}");
    }

    #[test]
    fn bind_sources_are_cleaned_as_the_engine_wants_them() {
        assert_eq!(
            clean(std::path::Path::new("/work/main/tests/../models/./weights")),
            std::path::PathBuf::from("/work/main/models/weights")
        );
        let d = desired(
            "services:\n  web:\n    image: a:1\n    volumes: [\"./data/../conf:/etc/app:ro\"]\n",
        )
        .expect("builds");
        let mount = &d.services[0].spec["TaskTemplate"]["ContainerSpec"]["Mounts"][0];
        let source = mount["Source"].as_str().expect("source");
        assert!(
            source.ends_with("/conf") && !source.contains(".."),
            "{source}"
        );
        assert_eq!(mount["ReadOnly"], true);
        assert_eq!(mount["Type"], "bind");
    }

    #[test]
    fn memory_and_cpus_read_as_docker_does() {
        assert_eq!(bytes("512M"), Ok(512 << 20));
        assert_eq!(bytes("1g"), Ok(1 << 30));
        assert_eq!(bytes("256MiB"), Ok(256 << 20));
        assert!(bytes("12q").is_err());
    }
}
