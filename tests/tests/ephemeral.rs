//! `concierge-sidecar backup ephemeral` against the in-process Hetzner Cloud API
//! (`FakeHetzner`), whose "servers" run their cloud-init command on this machine: the real
//! sidecar binary doing `backup run --report` into a real local repository. Whatever happens,
//! the temporary server must be gone at the end.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use concierge_tests::{
    Boot, FakeHetzner, FakeResponse, FakeServer, SidecarEnv, assert_success, binary, temp_dir,
};
use serde_json::{Value, json};

const TOKEN: &str = "hcloud-test-token";
const PASSWORD: &str = "correct horse battery staple";
const LABEL: &str = "concierge-backup=source";

struct Setup {
    sidecar: SidecarEnv,
    hetzner: FakeHetzner,
    hook: FakeServer,
}

impl std::ops::Deref for Setup {
    type Target = SidecarEnv;
    fn deref(&self) -> &SidecarEnv {
        &self.sidecar
    }
}

impl std::ops::DerefMut for Setup {
    fn deref_mut(&mut self) -> &mut SidecarEnv {
        &mut self.sidecar
    }
}

impl Setup {
    /// A repository (initialised), a source tree, the "remote" configuration the snapshot's disk
    /// would hold, and the orchestrator's environment.
    fn new(remote_password: &str, timeout: &str) -> Setup {
        let dir = temp_dir();
        let p = |s: &str| dir.path().join(s).display().to_string();
        std::fs::create_dir_all(dir.path().join("source/sub")).expect("mkdir");
        std::fs::write(
            dir.path().join("source/bookings.json"),
            "{\"guest\": \"Ana\"}\n".repeat(500),
        )
        .expect("write");
        std::fs::write(dir.path().join("source/sub/calls.bin"), vec![7u8; 200_000]).expect("write");
        std::fs::write(dir.path().join("password"), format!("{PASSWORD}\n")).expect("write");
        std::fs::write(dir.path().join("remote-password"), remote_password).expect("write");
        let remote = format!(
            "[repository]\nlocation = {:?}\npassword_file = {:?}\n\n[backup]\nsources = [{:?}]\nhost = \"backup-vm\"\n\n[status]\nfile = {:?}\n",
            p("repo"),
            p("remote-password"),
            p("source"),
            p("remote-status.json"),
        );
        std::fs::write(dir.path().join("remote.toml"), remote).expect("write");
        let hetzner = FakeHetzner::start(TOKEN);
        hetzner.state().boot_env = vec![
            ("HOME".into(), p("")),
            ("RUST_LOG".into(), "warn".into()),
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ];
        let hook = FakeServer::start(|_| FakeResponse::json(200, json!({"success": true})));
        let env = vec![
            ("CONCIERGE_SIDECAR_REPOSITORY__LOCATION".into(), p("repo")),
            (
                "CONCIERGE_SIDECAR_REPOSITORY__PASSWORD_FILE".into(),
                p("password"),
            ),
            (
                "CONCIERGE_SIDECAR_BACKUP__HOST".into(),
                "orchestrator".into(),
            ),
            ("CONCIERGE_SIDECAR_STATUS__FILE".into(), p("status.json")),
            (
                "CONCIERGE_SIDECAR_HETZNER__API_BASE".into(),
                hetzner.base.clone(),
            ),
            ("CONCIERGE_SIDECAR_HETZNER__TOKEN".into(), TOKEN.into()),
            (
                "CONCIERGE_SIDECAR_HETZNER__SNAPSHOT_LABEL".into(),
                LABEL.into(),
            ),
            (
                "CONCIERGE_SIDECAR_HETZNER__SERVER_TYPE".into(),
                "cx32".into(),
            ),
            ("CONCIERGE_SIDECAR_HETZNER__LOCATION".into(), "hel1".into()),
            ("CONCIERGE_SIDECAR_HETZNER__TIMEOUT".into(), timeout.into()),
            (
                "CONCIERGE_SIDECAR_HETZNER__POLL_INTERVAL".into(),
                "200ms".into(),
            ),
            (
                "CONCIERGE_SIDECAR_HETZNER__REMOTE_BINARY".into(),
                binary("concierge-sidecar").display().to_string(),
            ),
            (
                "CONCIERGE_SIDECAR_HETZNER__REMOTE_CONFIG".into(),
                p("remote.toml"),
            ),
            (
                "CONCIERGE_SIDECAR_ALERT__ROCKETCHAT_WEBHOOK_URL".into(),
                format!("{}/hooks/SECRET-HOOK", hook.base),
            ),
            ("RUST_LOG".into(), "info".into()),
        ];
        let s = Setup {
            sidecar: SidecarEnv { dir, env },
            hetzner,
            hook,
        };
        ok(&s.sidecar(&["backup", "init"]), "backup init");
        s
    }

    /// Servers of the project carrying the sidecar's label.
    fn managed_servers(&self) -> Vec<String> {
        self.hetzner
            .state()
            .servers()
            .into_iter()
            .filter(|(_, _, labels)| labels["concierge-sidecar"] == "ephemeral")
            .map(|(_, name, _)| name)
            .collect()
    }

    fn snapshot(&self) -> i64 {
        self.hetzner.state().add_snapshot(
            "2026-12-01T01:00:00+00:00",
            "available",
            json!({"concierge-backup": "source"}),
        )
    }
}

fn ok(out: &Output, what: &str) {
    assert_success(out, what);
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn ephemeral_backs_up_on_a_server_from_the_newest_labelled_snapshot_then_deletes_it_and_earlier_orphans()
 {
    let s = Setup::new(PASSWORD, "60s");
    let (older, newest, orphan_locked, kept) = {
        let mut h = s.hetzner.state();
        let older = h.add_snapshot(
            "2026-11-30T01:00:00+00:00",
            "available",
            json!({"concierge-backup": "source"}),
        );
        let newest = h.add_snapshot(
            "2026-12-01T01:00:00+00:00",
            "available",
            json!({"concierge-backup": "source"}),
        );
        // Newer, but not ours, and ours but not ready: neither may be picked.
        h.add_snapshot(
            "2026-12-02T01:00:00+00:00",
            "available",
            json!({"other": "x"}),
        );
        h.add_snapshot(
            "2026-12-02T01:30:00+00:00",
            "creating",
            json!({"concierge-backup": "source"}),
        );
        // Two servers an interrupted earlier run left, one of them busy at first; one unrelated.
        let yesterday = "2026-12-01T02:00:00+00:00";
        h.add_server(
            "concierge-backup-old-1",
            yesterday,
            json!({"concierge-sidecar": "ephemeral", "concierge-sidecar-run": "old-1"}),
        );
        let locked = h.add_server(
            "concierge-backup-old-2",
            yesterday,
            json!({"concierge-sidecar": "ephemeral", "concierge-sidecar-run": "old-2"}),
        );
        h.locked_once.insert(locked);
        // A server of a run started a minute ago (within hetzner.timeout): possibly still going.
        let live = h.add_server(
            "concierge-backup-live",
            &concierge_infra::utc::rfc3339(concierge_infra::utc::now_secs() - 60),
            json!({"concierge-sidecar": "ephemeral", "concierge-sidecar-run": "live"}),
        );
        let unrelated = h.add_server("rocketchat-1", yesterday, json!({"role": "chat"}));
        // Every listing crosses pages; the first and fourth requests hit the rate limit.
        h.per_page_max = 1;
        h.refuse_requests = [1, 4].into_iter().collect();
        (older, newest, locked, [live, unrelated])
    };
    let started = Instant::now();
    let out = s.sidecar(&["backup", "ephemeral"]);
    ok(&out, "backup ephemeral");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("deleted 2 temporary server(s) left by an earlier run"),
        "{}",
        text(&out)
    );

    let h = s.hetzner.state();
    assert_eq!(h.refused, 2, "both rate-limited requests were answered 429");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "a 429 is waited out (RateLimit-*)"
    );
    assert!(
        h.deleted.contains(&orphan_locked),
        "the locked orphan was deleted once free"
    );
    assert_eq!(h.create_requests.len(), 1);
    let create = &h.create_requests[0];
    assert_eq!(
        create["image"],
        newest.to_string(),
        "not {older}: the newest labelled snapshot"
    );
    assert_eq!(create["server_type"], "cx32");
    assert_eq!(create["location"], "hel1");
    assert!(create.get("datacenter").is_none());
    assert_eq!(create["labels"]["concierge-sidecar"], "ephemeral");
    let user_data = create["user_data"].as_str().expect("user data");
    assert!(user_data.starts_with("#cloud-config"), "{user_data}");
    for secret in [PASSWORD, TOKEN, "SECRET-HOOK"] {
        assert!(
            !user_data.contains(secret),
            "a secret in the user data: {user_data}"
        );
    }
    // Left: the unrelated server and the one of a run that may still be going.
    let left: Vec<i64> = h.servers().into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(left, kept.to_vec());
    drop(h);

    let status = s.status();
    let run = &status["last_run"];
    assert_eq!(run["outcome"], "ok", "{status}");
    assert_eq!(
        run["host"], "backup-vm",
        "the record is the temporary server's report"
    );
    assert!(
        run["server"]
            .as_str()
            .unwrap_or("")
            .starts_with("concierge-backup-"),
        "{status}"
    );
    assert!(run["files"].as_u64().unwrap_or(0) >= 2, "{status}");
    let snaps = s.sidecar(&["backup", "snapshots", "--json"]);
    ok(&snaps, "snapshots");
    let listed: Value = serde_json::from_slice(&snaps.stdout).expect("JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["id"], run["snapshot_id"]);
    // The report was consumed; restic still reads the repository that held it.
    let reports: Vec<_> = std::fs::read_dir(s.path("repo/concierge-reports"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(reports.is_empty(), "{reports:?}");
    let restic = Command::new("restic")
        .args(["--no-cache", "-r"])
        .arg(s.path("repo"))
        .arg("--password-file")
        .arg(s.path("password"))
        .arg("check")
        .env("HOME", s.dir.path())
        .output()
        .expect("restic is installed (scripts/test-tools.sh)");
    ok(&restic, "restic check");
    assert!(s.hook.requests().is_empty(), "no alert on success");
}

#[test]
fn a_failing_backup_on_the_temporary_server_is_recorded_alerted_and_the_server_still_deleted() {
    let s = Setup::new("not the password", "60s");
    s.snapshot();
    let out = s.sidecar(&["backup", "ephemeral"]);
    assert_eq!(
        out.status.code(),
        Some(12),
        "restic's wrong-password code: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrong"),
        "{}",
        text(&out)
    );
    assert!(s.managed_servers().is_empty(), "{:?}", s.managed_servers());
    assert_eq!(s.hetzner.state().deleted.len(), 1);
    let status = s.status();
    assert_eq!(status["last_run"]["outcome"], "failed");
    assert_eq!(status["last_run"]["error_kind"], "wrong_password");
    assert!(status["last_success"].is_null());
    let alerts = s
        .hook
        .wait_for("/hooks/SECRET-HOOK", 1, Duration::from_secs(10));
    let alert = alerts[0].json()["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        alert.contains("backup ephemeral failed") && alert.contains("wrong_password"),
        "{alert}"
    );
    assert!(
        !alert.contains(PASSWORD) && !alert.contains(TOKEN),
        "{alert}"
    );
}

#[test]
fn a_server_that_never_reports_times_out_with_exit_code_9_and_is_deleted() {
    let s = Setup::new(PASSWORD, "3s");
    s.snapshot();
    s.hetzner.state().boot = Boot::Hang;
    let started = Instant::now();
    let out = s.sidecar(&["backup", "ephemeral"]);
    assert_eq!(out.status.code(), Some(9), "{}", text(&out));
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sent no report within 3s"),
        "{}",
        text(&out)
    );
    assert!(s.managed_servers().is_empty(), "{:?}", s.managed_servers());
    assert_eq!(s.status()["last_run"]["error_kind"], "timeout");
    let alerts = s
        .hook
        .wait_for("/hooks/SECRET-HOOK", 1, Duration::from_secs(10));
    assert!(
        alerts[0].json()["text"]
            .as_str()
            .unwrap_or_default()
            .contains("timeout")
    );
}

#[test]
fn a_server_whose_creation_fails_is_deleted_and_the_run_fails() {
    let s = Setup::new(PASSWORD, "60s");
    s.snapshot();
    s.hetzner.state().boot = Boot::FailCreate;
    let out = s.sidecar(&["backup", "ephemeral"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("create_server"),
        "{}",
        text(&out)
    );
    assert!(s.managed_servers().is_empty(), "{:?}", s.managed_servers());
    assert_eq!(s.status()["last_run"]["error_kind"], "hetzner");
}

#[test]
fn a_refused_token_or_a_missing_snapshot_fails_before_any_server_is_created() {
    let mut s = Setup::new(PASSWORD, "60s");
    s.set("CONCIERGE_SIDECAR_HETZNER__TOKEN", "wrong-token");
    let out = s.sidecar(&["backup", "ephemeral"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hetzner.token"),
        "{}",
        text(&out)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("wrong-token"));
    s.set("CONCIERGE_SIDECAR_HETZNER__TOKEN", TOKEN);
    let out = s.sidecar(&["backup", "ephemeral"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no available snapshot carries the label")
    );
    assert!(s.hetzner.state().create_requests.is_empty());
    assert_eq!(s.status()["last_run"]["error_kind"], "no_snapshot");
}
