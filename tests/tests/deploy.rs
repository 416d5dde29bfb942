//! `concierge-sidecar deploy` against a real single-node swarm (busybox images imported, no
//! registry; services with `dnsrr` and no published ports, since this kernel has no IPVS), and
//! its GitHub issue against an in-process GitHub API.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use concierge_tests::{FakeResponse, FakeServer, Swarm, binary};

/// A stack directory, the sidecar's configuration for it, and the swarm it deploys to.
struct Deploy<'a> {
    swarm: &'a Swarm,
    dir: PathBuf,
    config: PathBuf,
}

impl<'a> Deploy<'a> {
    fn new(swarm: &'a Swarm, extra_config: &str) -> Deploy<'a> {
        let dir = swarm.dir().join("stack");
        std::fs::create_dir_all(dir.join("env")).expect("stack dir");
        let config = swarm.dir().join("sidecar.toml");
        std::fs::write(
            &config,
            format!(
                "[deploy]\nstack_dir = {:?}\nenvironment = \"test\"\nstack = \"t\"\ndocker_host = {:?}\nstate_dir = {:?}\nverify_timeout = \"90s\"\nverify_settle = \"2s\"\n{extra_config}",
                dir.display().to_string(),
                swarm.host,
                swarm.dir().join("state").display().to_string()
            ),
        )
        .expect("config");
        Deploy { swarm, dir, config }
    }

    /// Writes the stack file and the values file.
    fn files(&self, stack: &str, values: &str) {
        std::fs::write(self.dir.join("stack.yml"), stack).expect("stack file");
        std::fs::write(self.dir.join("env/test.env"), values).expect("values file");
    }

    fn sidecar(&self, args: &[&str]) -> Output {
        let out = std::process::Command::new(binary("concierge-sidecar"))
            .arg("--config")
            .arg(&self.config)
            .arg("deploy")
            .args(args)
            .env_remove("DOCKER_HOST")
            .output()
            .expect("run concierge-sidecar");
        eprintln!(
            "$ deploy {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn env_of(&self, service: &str) -> Vec<String> {
        let spec = self.swarm.service_spec(service);
        spec["TaskTemplate"]["ContainerSpec"]["Env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A service of the test stack: busybox sleeping under tini (so SIGTERM stops it at once),
/// with a health check that passes (`true`) or fails (`false`).
fn service(name: &str, image: &str, health: &str, extra: &str) -> String {
    format!(
        r#"  {name}:
    image: {image}
    command: ["sleep", "100000"]
    init: true
    stop_grace_period: 2s
    healthcheck:
      test: ["CMD", "{health}"]
      interval: 1s
      timeout: 1s
      retries: 2
{extra}    deploy:
      endpoint_mode: dnsrr
      update_config: {{failure_action: rollback, monitor: 6s, order: stop-first}}
      rollback_config: {{monitor: 6s}}
      restart_policy: {{condition: any, delay: 1s}}
"#
    )
}

const HEAD: &str = "version: \"3.8\"\nservices:\n";

fn tail(secret_file: &str) -> String {
    format!("networks:\n  back: {{driver: overlay}}\nsecrets:\n  token: {{file: {secret_file}}}\n")
}

#[test]
fn apply_from_empty_verifies_then_the_same_files_change_nothing_and_a_change_is_planned_applied_and_rolled_back()
 {
    let swarm = Swarm::start();
    swarm.import_busybox("local/busybox:1");
    swarm.import_busybox("local/busybox:2");
    let d = Deploy::new(&swarm, "");
    std::fs::write(d.dir.join("token-v1"), "first").expect("secret");
    std::fs::write(d.dir.join("token-v2"), "second").expect("secret");
    let v1 = format!(
        "{HEAD}{}{}{}",
        service(
            "web",
            "local/busybox:${TAG}",
            "true",
            "    environment: {MODE: calm}\n    networks: [back]\n    secrets: [token]\n"
        ),
        service(
            "worker",
            "local/busybox:1",
            "true",
            "    networks: [back]\n"
        ),
        tail("token-v1")
    );
    d.files(&v1, "TAG=1\n");

    // From empty: a plan with changes (exit 5), then apply + verify.
    let started = Instant::now();
    let plan = d.sidecar(&["plan"]);
    let plan_s = started.elapsed().as_secs_f64();
    assert_eq!(code(&plan), 5, "a plan with changes exits 5");
    let md = stdout(&plan);
    assert!(md.contains("2 to create"), "{md}");
    assert!(
        md.contains("| network | `t_back` |") && md.contains("| secret | `t_token_"),
        "{md}"
    );
    let started = Instant::now();
    let apply = d.sidecar(&["apply"]);
    let apply_s = started.elapsed().as_secs_f64();
    assert_eq!(code(&apply), 0, "apply from empty");
    assert!(
        stdout(&apply).contains("t_web: healthy"),
        "{}",
        stdout(&apply)
    );
    assert!(d.env_of("t_web").contains(&"MODE=calm".to_owned()));

    // The same files again: no changes (exit 0), and apply touches nothing.
    let again = d.sidecar(&["plan", "--json"]);
    assert_eq!(code(&again), 0, "no changes: exit 0");
    let json: serde_json::Value = serde_json::from_slice(&again.stdout).expect("plan JSON");
    assert!(
        json["services"]
            .as_array()
            .expect("services")
            .iter()
            .all(|s| s["action"] == "unchanged"),
        "{json:#}"
    );
    let version = swarm.docker(&[
        "service",
        "inspect",
        "--format",
        "{{.Version.Index}}",
        "t_web",
    ]);
    let noop = d.sidecar(&["apply"]);
    assert_eq!(code(&noop), 0);
    assert!(stdout(&noop).contains("no changes"), "{}", stdout(&noop));
    let after = swarm.docker(&[
        "service",
        "inspect",
        "--format",
        "{{.Version.Index}}",
        "t_web",
    ]);
    assert_eq!(
        after.stdout, version.stdout,
        "a second apply changed nothing"
    );
    assert_eq!(code(&d.sidecar(&["verify"])), 0, "verify of the last apply");

    // A change of image, environment, replicas and secret: planned field by field, with a
    // lint for a monitor shorter than the health check can take to fail.
    let v2 = v1
        .replace("MODE: calm", "MODE: busy")
        .replace("token-v1", "token-v2")
        .replacen(
            "      endpoint_mode: dnsrr\n",
            "      endpoint_mode: dnsrr\n      replicas: 2\n",
            1,
        )
        .replace(
            "  worker:",
            &format!(
                "{}  worker:",
                service("extra", "local/busybox:1", "true", "    networks: [back]\n")
                    .replace("monitor: 6s, order", "monitor: 1s, order")
            ),
        );
    d.files(&v2, "TAG=2\n");
    let plan = d.sidecar(&["plan"]);
    assert_eq!(code(&plan), 5);
    let md = stdout(&plan);
    for needle in [
        "#### ✏️ `t_web`",
        "| Image | `local/busybox:1` | `local/busybox:2` |",
        "| Env.MODE | `calm` | `busy` |",
        "| Replicas | `1` | `2` |",
        "#### ➕ `t_extra` (new service)",
        "`t_extra` **monitor-shorter-than-health-check**",
        "Old secret/config versions, removed after a verified apply: `t_token_",
    ] {
        assert!(md.contains(needle), "{needle:?} missing from\n{md}");
    }
    assert!(md.contains("| Secrets.t_token_"), "{md}");
    let started = Instant::now();
    let apply2 = d.sidecar(&["apply"]);
    let change_s = started.elapsed().as_secs_f64();
    assert_eq!(code(&apply2), 0, "apply of the change");
    assert!(d.env_of("t_web").contains(&"MODE=busy".to_owned()));
    assert!(!swarm.service_spec("t_extra").is_null());

    // Rollback: web back to v1 (its spec as before), the new service removed, verified.
    let rollback = d.sidecar(&["rollback"]);
    assert_eq!(code(&rollback), 0, "rollback");
    assert!(d.env_of("t_web").contains(&"MODE=calm".to_owned()));
    assert!(
        swarm.service_spec("t_extra").is_null(),
        "the created service is removed"
    );
    let spec = swarm.service_spec("t_web");
    assert_eq!(spec["Mode"]["Replicated"]["Replicas"], 1);
    assert_eq!(
        spec["TaskTemplate"]["ContainerSpec"]["Image"],
        "local/busybox:1"
    );
    d.files(&v1, "TAG=1\n");
    assert_eq!(
        code(&d.sidecar(&["plan"])),
        0,
        "after the rollback v1 is what runs"
    );

    // A one-service change (the worker's environment), timed.
    d.files(
        &v1.replace(
            "  worker:\n    image: local/busybox:1\n",
            "  worker:\n    image: local/busybox:1\n    environment: {LEVEL: debug}\n",
        ),
        "TAG=1\n",
    );
    let started = Instant::now();
    let one = d.sidecar(&["apply"]);
    let one_s = started.elapsed().as_secs_f64();
    assert_eq!(code(&one), 0);
    assert!(d.env_of("t_worker").contains(&"LEVEL=debug".to_owned()));
    eprintln!(
        "numbers: plan from empty {plan_s:.2} s, apply+verify from empty (2 services) {apply_s:.1} s, apply+verify of a two-service change (one updated, one created) {change_s:.1} s, of a one-service change {one_s:.1} s"
    );
}

#[test]
fn an_update_whose_health_check_fails_is_reported_failed_although_swarm_rolled_it_back_itself() {
    let swarm = Swarm::start();
    swarm.import_busybox("local/busybox:1");
    let d = Deploy::new(&swarm, "");
    std::fs::write(d.dir.join("token-v1"), "first").expect("secret");
    let v1 = format!(
        "{HEAD}{}{}",
        service(
            "web",
            "local/busybox:1",
            "true",
            "    environment: {MODE: calm}\n    networks: [back]\n"
        ),
        tail("token-v1")
    );
    d.files(&v1, "");
    assert_eq!(code(&d.sidecar(&["apply"])), 0);

    // The broken release: its health check fails. Without our rollback (--no-rollback) the
    // only thing undoing it is Swarm's own failure_action, and verify must still fail.
    let broken = v1
        .replace("MODE: calm", "MODE: broken")
        .replace("[\"CMD\", \"true\"]", "[\"CMD\", \"false\"]");
    d.files(&broken, "");
    let apply = d.sidecar(&["apply", "--no-rollback"]);
    assert_eq!(code(&apply), 14, "a failed verify exits 14");
    let err = String::from_utf8_lossy(&apply.stderr);
    assert!(err.contains("not rolled back"), "{err}");
    let status = swarm.docker(&[
        "service",
        "inspect",
        "--format",
        "{{.UpdateStatus.State}}",
        "t_web",
    ]);
    let state = String::from_utf8_lossy(&status.stdout).trim().to_owned();
    assert!(
        state.starts_with("rollback_"),
        "Swarm rolled back by itself: {state}"
    );
    // The report names the service and why, with the task errors.
    let report = std::fs::read_dir(swarm.dir().join("state"))
        .expect("state dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "md"))
        .expect("a Markdown report");
    let text = std::fs::read_to_string(&report).expect("report");
    assert!(
        text.contains("t_web") && text.contains("rollback_"),
        "{text}"
    );
    assert!(text.contains("Task errors of `t_web`"), "{text}");
    assert!(report.with_extension("json").exists());
    // A verify now still says no: the release this apply made never ran healthy.
    assert_eq!(code(&d.sidecar(&["verify"])), 14);
    // And the rollback that was skipped can be run by hand: the spec is v1's again.
    assert_eq!(code(&d.sidecar(&["rollback"])), 0);
    assert!(d.env_of("t_web").contains(&"MODE=calm".to_owned()));
}

#[test]
fn a_two_service_update_whose_second_service_fails_ends_with_both_at_their_previous_spec_and_an_issue()
 {
    let github = FakeServer::start(|req| {
        if req.header("authorization") != Some("Bearer gh-token") {
            return FakeResponse::json(401, serde_json::json!({"message": "Bad credentials"}));
        }
        FakeResponse::json(
            201,
            serde_json::json!({"number": 7, "html_url": "https://github.com/acme/ops/issues/7"}),
        )
    });
    let swarm = Swarm::start();
    swarm.import_busybox("local/busybox:1");
    let token_file = swarm.dir().join("gh-token");
    std::fs::write(&token_file, "gh-token\n").expect("token");
    let d = Deploy::new(
        &swarm,
        &format!(
            "github_repo = \"acme/ops\"\ngithub_api = \"{}\"\ngithub_token_file = {:?}\n",
            github.base.clone(),
            token_file.display().to_string()
        ),
    );
    std::fs::write(d.dir.join("token-v1"), "first").expect("secret");
    let v1 = format!(
        "{HEAD}{}{}{}",
        service(
            "a",
            "local/busybox:1",
            "true",
            "    environment: {V: one}\n    networks: [back]\n"
        ),
        service(
            "b",
            "local/busybox:1",
            "true",
            "    environment: {V: one}\n    networks: [back]\n"
        ),
        tail("token-v1")
    );
    d.files(&v1, "");
    assert_eq!(code(&d.sidecar(&["apply"])), 0);
    let a_before = swarm.service_spec("t_a");
    let b_before = swarm.service_spec("t_b");

    // v2: a changes and is healthy, b changes and fails, c is new.
    let v2 = format!(
        "{HEAD}{}{}{}{}",
        service(
            "a",
            "local/busybox:1",
            "true",
            "    environment: {V: two}\n    networks: [back]\n"
        ),
        service(
            "b",
            "local/busybox:1",
            "false",
            "    environment: {V: two}\n    networks: [back]\n"
        ),
        service("c", "local/busybox:1", "true", "    networks: [back]\n"),
        tail("token-v1")
    );
    d.files(&v2, "");
    let apply = d.sidecar(&["apply"]);
    assert_eq!(code(&apply), 14, "failed and rolled back");
    let err = String::from_utf8_lossy(&apply.stderr);
    assert!(
        err.contains("(rolled back)") && err.contains("t_b"),
        "{err}"
    );
    assert!(
        err.contains("https://github.com/acme/ops/issues/7"),
        "{err}"
    );

    for (name, before) in [("t_a", &a_before), ("t_b", &b_before)] {
        let now = swarm.service_spec(name);
        assert_eq!(
            now["TaskTemplate"]["ContainerSpec"]["Env"],
            before["TaskTemplate"]["ContainerSpec"]["Env"],
            "{name} is back at its previous spec"
        );
        assert_eq!(
            now["TaskTemplate"]["ContainerSpec"]["Healthcheck"],
            before["TaskTemplate"]["ContainerSpec"]["Healthcheck"]
        );
    }
    assert!(
        swarm.service_spec("t_c").is_null(),
        "the service the failed apply created is removed"
    );

    let issues = github.requests_to("/repos/acme/ops/issues");
    assert_eq!(issues.len(), 1, "one issue opened");
    let body = issues[0].json();
    let title = body["title"].as_str().unwrap_or_default();
    assert!(
        title.contains("Deploy of t failed (rolled back)") && title.contains("t_b"),
        "{title}"
    );
    let text = body["body"].as_str().unwrap_or_default();
    assert!(
        text.contains("t_a: Env.V") && text.contains("t_c: created"),
        "{text}"
    );
    assert!(text.contains("### Rollback: done, verified"), "{text}");
    assert_eq!(issues[0].header("x-github-api-version"), Some("2022-11-28"));
}

fn github_config(api: &str, token: &str) -> concierge_sidecar::DeployConfig {
    concierge_sidecar::DeployConfig {
        github_repo: "acme/ops".into(),
        github_api: api.to_owned(),
        github_token: concierge_sidecar::Secret::new(token),
        ..concierge_sidecar::DeployConfig::default()
    }
}

#[test]
fn the_github_issue_is_opened_with_the_token_and_refusals_say_why() {
    let github = FakeServer::start(|req| {
        let auth = req.header("authorization").unwrap_or_default().to_owned();
        let title = req.json()["title"].as_str().unwrap_or_default().to_owned();
        match auth.as_str() {
            "Bearer good" if title.is_empty() => FakeResponse::json(
                422,
                serde_json::json!({"message": "Validation Failed", "errors": [{"resource": "Issue", "code": "missing_field", "field": "title"}]}),
            ),
            "Bearer good" => FakeResponse::json(
                201,
                serde_json::json!({"number": 12, "html_url": "https://github.com/acme/ops/issues/12"}),
            ),
            "Bearer readonly" => FakeResponse::json(
                403,
                serde_json::json!({"message": "Resource not accessible by personal access token"}),
            ),
            "Bearer limited" => FakeResponse::json(
                403,
                serde_json::json!({"message": "API rate limit exceeded"}),
            )
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", "4102444800"),
            _ => FakeResponse::json(401, serde_json::json!({"message": "Bad credentials"})),
        }
    });
    let api = github.base.clone();
    let open = |token: &str, title: &str| {
        concierge_sidecar::deploy_open_issue(&github_config(&api, token), title, "body")
    };
    let issue = open("good", "Deploy failed").expect("201");
    assert_eq!(issue.number, 12);
    assert_eq!(issue.url, "https://github.com/acme/ops/issues/12");
    let sent = &github.requests_to("/repos/acme/ops/issues")[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.header("accept"), Some("application/vnd.github+json"));

    let e = open("good", "").expect_err("422").to_string();
    assert!(
        e.contains("422") && e.contains("title missing_field"),
        "{e}"
    );
    let e = open("readonly", "t").expect_err("403").to_string();
    assert!(
        e.contains("403") && e.contains("Resource not accessible"),
        "{e}"
    );
    let e = open("wrong", "t").expect_err("401").to_string();
    assert!(e.contains("401") && e.contains("Bad credentials"), "{e}");
    // A rate limit that resets far in the future is not waited for.
    let started = Instant::now();
    let e = open("limited", "t").expect_err("rate limited").to_string();
    assert!(e.contains("rate limit"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The token never appears in an error.
    assert!(!e.contains("limited"), "{e}");
}
