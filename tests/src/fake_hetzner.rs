//! An in-process Hetzner Cloud API (the part `backup ephemeral` uses), faithful to its wire
//! format (`../shared/wire-formats.md` §8): bearer-token auth, `{"error": {code, message,
//! details}}` bodies, `RateLimit-*` headers on every answer and 429 `rate_limit_exceeded` on the
//! requests a test picks, `page`/`per_page` pagination with `meta.pagination`, label selectors,
//! `sort=created:desc`, actions that run for a few polls before they succeed (or fail), `locked`
//! (423) while another action runs on a server, and the removed `datacenter` field refused.
//!
//! When a server's `start_server` action succeeds, the fake "boots" it like cloud-init: it reads
//! the `runcmd` entry of the user data (a JSON-quoted argv list) and runs that command on this
//! machine, as the real server would run it on its own. Deleting the server kills the command.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};

use crate::fake_http::{FakeRequest, FakeResponse, FakeServer};

/// What a booted server does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    /// Runs the user data's `runcmd` command.
    RunCloudInit,
    /// Never gets to cloud-init (a server that hangs).
    Hang,
    /// The `create_server` action ends in an error.
    FailCreate,
}

#[derive(Debug)]
struct FakeAction {
    command: String,
    server: i64,
    polls_left: u32,
    fail: bool,
    done: bool,
}

#[derive(Debug)]
struct FakeVm {
    json: Value,
    user_data: String,
    child: Option<Child>,
}

/// The project's state; tests arrange it before the run and read it after.
#[derive(Debug)]
pub struct HetznerState {
    pub token: String,
    next_id: i64,
    pub images: Vec<Value>,
    servers: BTreeMap<i64, FakeVm>,
    actions: BTreeMap<i64, FakeAction>,
    /// Request ordinals (1-based) answered with 429.
    pub refuse_requests: BTreeSet<usize>,
    /// Servers whose next delete is answered `locked`.
    pub locked_once: BTreeSet<i64>,
    /// The largest page served (Hetzner: 50); smaller makes every listing cross pages.
    pub per_page_max: usize,
    pub boot: Boot,
    /// Environment of the commands cloud-init runs.
    pub boot_env: Vec<(String, String)>,
    /// Every `POST /servers` body.
    pub create_requests: Vec<Value>,
    /// Servers deleted, by id.
    pub deleted: Vec<i64>,
    /// How many requests were answered 429.
    pub refused: usize,
    requests: usize,
}

/// The fake API; `base` is what `hetzner.api_base` points at.
#[derive(Debug, Clone)]
pub struct FakeHetzner {
    pub base: String,
    pub http: FakeServer,
    state: Arc<Mutex<HetznerState>>,
}

fn error(status: u16, code: &str, message: &str) -> FakeResponse {
    FakeResponse::json(
        status,
        json!({"error": {"code": code, "message": message, "details": null}}),
    )
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated (all must hold).
fn matches_selector(labels: &Value, selector: &str) -> bool {
    selector
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                labels[k].as_str() != Some(v)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                labels[k].as_str() == Some(v)
            } else if let Some(k) = term.strip_prefix('!') {
                labels.get(k).is_none()
            } else {
                labels.get(term).is_some()
            }
        })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(path: &str) -> (String, Vec<(String, String)>) {
    let (p, q) = path.split_once('?').unwrap_or((path, ""));
    let pairs = q
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    (p.to_owned(), pairs)
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The `runcmd` command of cloud-config user data (`  - ["a", "b"]`).
pub fn runcmd(user_data: &str) -> Option<Vec<String>> {
    let line = user_data
        .lines()
        .find(|l| l.trim_start().starts_with("- ["))?;
    serde_json::from_str(line.trim_start().trim_start_matches("- ")).ok()
}

impl HetznerState {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn action(&mut self, command: &str, server: i64, polls: u32, fail: bool) -> Value {
        let id = self.id();
        self.actions.insert(
            id,
            FakeAction {
                command: command.into(),
                server,
                polls_left: polls,
                fail,
                done: false,
            },
        );
        self.action_json(id)
    }

    fn action_json(&self, id: i64) -> Value {
        let a = &self.actions[&id];
        let status = match (a.polls_left, a.fail) {
            (0, true) => "error",
            (0, false) => "success",
            _ => "running",
        };
        json!({
            "id": id,
            "command": a.command,
            "status": status,
            "progress": if status == "running" { 50 } else { 100 },
            "started": "2026-12-02T02:00:00+00:00",
            "finished": if status == "running" { Value::Null } else { json!("2026-12-02T02:00:05+00:00") },
            "resources": [{"id": a.server, "type": "server"}],
            "error": if status == "error" { json!({"code": "server_error", "message": "the host failed to create the server"}) } else { Value::Null },
        })
    }

    /// Adds a server created at `created` (an orphan of an earlier run, one of a run still going,
    /// or an unrelated one).
    pub fn add_server(&mut self, name: &str, created: &str, labels: Value) -> i64 {
        let id = self.id();
        self.servers.insert(
            id,
            FakeVm {
                json: json!({"id": id, "name": name, "status": "running", "created": created, "labels": labels}),
                user_data: String::new(),
                child: None,
            },
        );
        id
    }

    /// Adds an image.
    pub fn add_snapshot(&mut self, created: &str, status: &str, labels: Value) -> i64 {
        let id = self.id();
        self.images.push(json!({
            "id": id, "type": "snapshot", "status": status, "created": created,
            "description": format!("snapshot {id}"), "labels": labels,
        }));
        id
    }

    /// The servers that exist now: (id, name, labels).
    pub fn servers(&self) -> Vec<(i64, String, Value)> {
        self.servers
            .iter()
            .map(|(id, s)| {
                (
                    *id,
                    s.json["name"].as_str().unwrap_or("").to_owned(),
                    s.json["labels"].clone(),
                )
            })
            .collect()
    }

    /// The user data a server was created with.
    pub fn user_data(&self, id: i64) -> Option<String> {
        self.servers.get(&id).map(|s| s.user_data.clone())
    }

    fn page(&self, items: Vec<Value>, root: &str, q: &[(String, String)]) -> FakeResponse {
        let per_page = param(q, "per_page")
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(25)
            .clamp(1, self.per_page_max.min(50));
        let page = param(q, "page")
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        let total = items.len();
        let last = total.div_ceil(per_page).max(1);
        let slice: Vec<Value> = items
            .into_iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .collect();
        FakeResponse::json(
            200,
            json!({
                root: slice,
                "meta": {"pagination": {
                    "page": page, "per_page": per_page,
                    "previous_page": if page > 1 { json!(page - 1) } else { Value::Null },
                    "next_page": if page < last { json!(page + 1) } else { Value::Null },
                    "last_page": last, "total_entries": total,
                }}
            }),
        )
    }

    fn boot(&mut self, server: i64) {
        let boot = self.boot;
        let env = self.boot_env.clone();
        let Some(vm) = self.servers.get_mut(&server) else {
            return;
        };
        vm.json["status"] = json!("running");
        if boot != Boot::RunCloudInit {
            return;
        }
        let Some(argv) = runcmd(&vm.user_data) else {
            return;
        };
        let Some((program, args)) = argv.split_first() else {
            return;
        };
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command.env_clear();
        for (k, v) in env {
            command.env(k, v);
        }
        vm.child = command.spawn().ok();
    }

    fn poll(&mut self, id: i64) -> Option<Value> {
        let a = self.actions.get_mut(&id)?;
        a.polls_left = a.polls_left.saturating_sub(1);
        if a.polls_left == 0 && !a.done {
            a.done = true;
            let (command, server, fail) = (a.command.clone(), a.server, a.fail);
            match command.as_str() {
                "start_server" if !fail => self.boot(server),
                "delete_server" => {
                    if let Some(mut vm) = self.servers.remove(&server) {
                        if let Some(child) = vm.child.as_mut() {
                            let _ = child.kill();
                            let _ = child.wait();
                        }
                        self.deleted.push(server);
                    }
                }
                _ => {}
            }
        }
        Some(self.action_json(id))
    }

    fn running_action_on(&self, server: i64) -> bool {
        self.actions
            .values()
            .any(|a| a.server == server && a.polls_left > 0)
    }

    fn handle(&mut self, req: &FakeRequest) -> FakeResponse {
        self.requests += 1;
        let expected = format!("Bearer {}", self.token);
        if req.header("authorization") != Some(expected.as_str()) {
            return error(401, "unauthorized", "unable to authenticate");
        }
        if self.refuse_requests.contains(&self.requests) {
            self.refused += 1;
            return error(
                429,
                "rate_limit_exceeded",
                "limit of 3600 requests per hour reached",
            )
            .header("RateLimit-Remaining", "0");
        }
        let (path, q) = query(&req.path);
        let path = path.trim_start_matches("/v1");
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (req.method.as_str(), segments.as_slice()) {
            ("GET", ["images"]) => {
                let types: Vec<&str> = q
                    .iter()
                    .filter(|(k, _)| k == "type")
                    .map(|(_, v)| v.as_str())
                    .collect();
                let mut items: Vec<Value> = self
                    .images
                    .iter()
                    .filter(|i| {
                        types.is_empty() || types.contains(&i["type"].as_str().unwrap_or(""))
                    })
                    .filter(|i| param(&q, "status").is_none_or(|s| i["status"] == s))
                    .filter(|i| {
                        param(&q, "label_selector")
                            .is_none_or(|s| matches_selector(&i["labels"], s))
                    })
                    .cloned()
                    .collect();
                match param(&q, "sort") {
                    Some("created:desc") => {
                        items.sort_by(|a, b| b["created"].as_str().cmp(&a["created"].as_str()))
                    }
                    Some("created") | Some("created:asc") => {
                        items.sort_by(|a, b| a["created"].as_str().cmp(&b["created"].as_str()))
                    }
                    _ => items.sort_by_key(|i| i["id"].as_i64()),
                }
                self.page(items, "images", &q)
            }
            ("GET", ["servers"]) => {
                let items: Vec<Value> = self
                    .servers
                    .values()
                    .filter(|s| {
                        param(&q, "label_selector")
                            .is_none_or(|sel| matches_selector(&s.json["labels"], sel))
                    })
                    .map(|s| s.json.clone())
                    .collect();
                self.page(items, "servers", &q)
            }
            ("POST", ["servers"]) => {
                let Ok(body) = serde_json::from_str::<Value>(&req.body) else {
                    return error(400, "json_error", "request body is not valid JSON");
                };
                self.create_requests.push(body.clone());
                for field in ["name", "server_type", "image"] {
                    if !body[field].is_string() {
                        return error(
                            400,
                            "invalid_input",
                            &format!("invalid input in field '{field}'"),
                        );
                    }
                }
                if body.get("datacenter").is_some() {
                    return error(
                        400,
                        "invalid_input",
                        "invalid input in field 'datacenter': the field was removed, use 'location'",
                    );
                }
                let user_data = body["user_data"].as_str().unwrap_or("").to_owned();
                if user_data.len() > 32 * 1024 {
                    return error(
                        400,
                        "invalid_input",
                        "invalid input in field 'user_data': is too long",
                    );
                }
                let name = body["name"].as_str().unwrap_or("");
                if self.servers.values().any(|s| s.json["name"] == name) {
                    return error(409, "uniqueness_error", "server name is already used");
                }
                let image = body["image"].as_str().unwrap_or("");
                if !self
                    .images
                    .iter()
                    .any(|i| i["id"].as_i64().map(|id| id.to_string()).as_deref() == Some(image))
                {
                    return error(
                        400,
                        "invalid_input",
                        "invalid input in field 'image': image not found",
                    );
                }
                let id = self.id();
                let server = json!({
                    "id": id, "name": name, "status": "initializing",
                    "created": "2026-12-02T02:00:00+00:00",
                    "labels": body.get("labels").cloned().unwrap_or(json!({})),
                    "server_type": {"name": body["server_type"]},
                    "image": {"id": image},
                    "public_net": {"ipv4": {"ip": "203.0.113.7"}, "ipv6": {"ip": "2001:db8::/64"}},
                });
                self.servers.insert(
                    id,
                    FakeVm {
                        json: server.clone(),
                        user_data,
                        child: None,
                    },
                );
                let fail = self.boot == Boot::FailCreate;
                let create = self.action("create_server", id, 2, fail);
                let next = if fail {
                    Vec::new()
                } else {
                    vec![self.action("start_server", id, 2, false)]
                };
                FakeResponse::json(
                    201,
                    json!({"server": server, "action": create, "next_actions": next, "root_password": "generated-root-pw"}),
                )
            }
            ("GET", ["actions", id]) => match id.parse::<i64>().ok().and_then(|id| self.poll(id)) {
                Some(action) => FakeResponse::json(200, json!({ "action": action })),
                None => error(404, "not_found", "action not found"),
            },
            ("DELETE", ["servers", id]) => {
                let Ok(id) = id.parse::<i64>() else {
                    return error(400, "invalid_input", "invalid server id");
                };
                if !self.servers.contains_key(&id) {
                    return error(404, "not_found", "server not found");
                }
                if self.locked_once.remove(&id) || self.running_action_on(id) {
                    return error(423, "locked", "server is locked: an action is running");
                }
                let action = self.action("delete_server", id, 1, false);
                FakeResponse::json(200, json!({ "action": action }))
            }
            _ => error(
                404,
                "not_found",
                &format!("no route {} {}", req.method, req.path),
            ),
        }
    }
}

impl FakeHetzner {
    /// An empty project reached with `token`.
    pub fn start(token: &str) -> FakeHetzner {
        let state = Arc::new(Mutex::new(HetznerState {
            token: token.to_owned(),
            next_id: 1000,
            images: Vec::new(),
            servers: BTreeMap::new(),
            actions: BTreeMap::new(),
            refuse_requests: BTreeSet::new(),
            locked_once: BTreeSet::new(),
            per_page_max: 50,
            boot: Boot::RunCloudInit,
            boot_env: Vec::new(),
            create_requests: Vec::new(),
            deleted: Vec::new(),
            refused: 0,
            requests: 0,
        }));
        let shared = state.clone();
        let http = FakeServer::start(move |req| {
            let mut s = match shared.lock() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            let remaining = 3600usize.saturating_sub(s.requests + 1);
            let mut response = s.handle(req);
            if !response
                .headers
                .iter()
                .any(|(k, _)| k == "RateLimit-Remaining")
            {
                response = response.header("RateLimit-Remaining", &remaining.to_string());
            }
            response
                .header("RateLimit-Limit", "3600")
                .header("RateLimit-Reset", &(now_unix() + 1).to_string())
        });
        FakeHetzner {
            base: format!("{}/v1", http.base),
            http,
            state,
        }
    }

    /// The state, to arrange or inspect.
    pub fn state(&self) -> MutexGuard<'_, HetznerState> {
        match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        }
    }
}

impl Drop for HetznerState {
    fn drop(&mut self) {
        for vm in self.servers.values_mut() {
            if let Some(child) = vm.child.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_follow_hetzners_language() {
        let labels = json!({"env": "prod", "role": "backup"});
        assert!(matches_selector(&labels, "env=prod"));
        assert!(matches_selector(&labels, "env==prod,role"));
        assert!(matches_selector(&labels, "env!=dev,!legacy"));
        assert!(!matches_selector(&labels, "env=prod,!role"));
    }

    #[test]
    fn the_runcmd_argv_is_read_from_cloud_config() {
        let ud = "#cloud-config\nruncmd:\n  - [\"/bin/x\", \"--config\", \"/a b\"]\n";
        assert_eq!(
            runcmd(ud),
            Some(vec!["/bin/x".into(), "--config".into(), "/a b".into()])
        );
        assert_eq!(percent_decode("a%3Db%2Cc"), "a=b,c");
    }
}
