//! `concierge-sidecar backup`: the real binary against a local repository and a real
//! S3-compatible server (`moto_server`, started on loopback), and the real `restic` reading what
//! it wrote. Neither tool missing is a pass: `./test.sh` installs both (scripts/test-tools.sh).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use concierge_tests::{
    FakeResponse, FakeServer, Moto, SidecarEnv, SmallDisk, assert_success, signal_and_wait,
    temp_dir,
};

const PASSWORD: &str = "correct horse battery staple";

/// `restic`, which must be installed.
fn restic() -> PathBuf {
    let found = ["/usr/bin/restic", "/usr/local/bin/restic"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    found.expect("restic is not installed: run scripts/test-tools.sh (./test.sh does)")
}

/// A tree with what breaks naive backups: binary and empty files, a file of several packs,
/// unicode names, nested and empty directories, symlinks (to a file, to a directory, dangling).
fn make_tree(root: &Path) {
    let mut x: u64 = 0x1234_5678;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    };
    std::fs::create_dir_all(root.join("nested/deeper/deepest")).expect("mkdir");
    std::fs::create_dir_all(root.join("empty-dir")).expect("mkdir");
    std::fs::create_dir_all(root.join("données/ünïcødé 日本")).expect("mkdir");
    std::fs::write(root.join("binary.bin"), noise(300_000)).expect("write");
    std::fs::write(root.join("empty"), b"").expect("write");
    std::fs::write(root.join("large.bin"), noise(12 * 1024 * 1024)).expect("write");
    std::fs::write(
        root.join("données/ünïcødé 日本/café ☕.txt"),
        "crème brûlée\n".repeat(100),
    )
    .expect("write");
    std::fs::write(
        root.join("nested/deeper/deepest/text.txt"),
        "the guest checked in at 14:00\n".repeat(5000),
    )
    .expect("write");
    std::fs::write(root.join("nested/skip.tmp"), b"excluded").expect("write");
    std::os::unix::fs::symlink("binary.bin", root.join("link-to-file")).expect("symlink");
    std::os::unix::fs::symlink("nested/deeper", root.join("link-to-dir")).expect("symlink");
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling")).expect("symlink");
}

/// Every entry under `root`: relative path -> "dir", "link:<target>" or the file's bytes' digest.
fn listing(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read_dir")
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).expect("readlink");
                out.insert(rel, format!("link:{}", target.display()));
            } else if meta.is_dir() {
                out.insert(rel, "dir".into());
                walk(root, &path, out);
            } else {
                use sha2::Digest;
                let bytes = std::fs::read(&path).expect("read");
                out.insert(
                    rel,
                    format!("{} bytes {:x}", bytes.len(), sha2::Sha256::digest(&bytes)),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The tree as it should come back: all of it but the excluded file.
fn expected(root: &Path) -> BTreeMap<String, String> {
    let mut l = listing(root);
    l.remove("nested/skip.tmp");
    l
}

type Setup = SidecarEnv;

/// A directory with the source tree and a password file, and the variables pointing the sidecar
/// at them and at `location` (`{dir}` stands for the directory).
fn setup(location: &str) -> Setup {
    let dir = temp_dir();
    let pw = dir.path().join("password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).expect("write");
    make_tree(&dir.path().join("source"));
    let p = |s: &str| dir.path().join(s).display().to_string();
    let location = location.replace("{dir}", &p(""));
    let env = vec![
        ("CONCIERGE_SIDECAR_REPOSITORY__LOCATION".into(), location),
        (
            "CONCIERGE_SIDECAR_REPOSITORY__PASSWORD_FILE".into(),
            pw.display().to_string(),
        ),
        ("CONCIERGE_SIDECAR_BACKUP__SOURCES".into(), p("source")),
        ("CONCIERGE_SIDECAR_BACKUP__EXCLUDE".into(), "*.tmp".into()),
        ("CONCIERGE_SIDECAR_BACKUP__HOST".into(), "test-host".into()),
        ("CONCIERGE_SIDECAR_STATUS__FILE".into(), p("status.json")),
        ("RUST_LOG".into(), "warn".into()),
    ];
    Setup { dir, env }
}

fn ok(out: &Output, what: &str) {
    assert_success(out, what);
}

fn restic_cmd(s: &Setup, repo: &str, extra_env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(restic());
    c.args(["--no-cache", "-r", repo, "--password-file"])
        .arg(s.path("password"))
        .args(args)
        .env("HOME", s.dir.path());
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.output().expect("run restic")
}

/// Backs up, restores with us and with restic, and compares each restore with the source.
fn round_trip(s: &Setup, restic_repo: &str, restic_env: &[(&str, &str)]) {
    let out = s.sidecar(&["backup", "run", "--init"]);
    ok(&out, "backup run --init");
    let status = s.status();
    assert_eq!(status["last_run"]["outcome"], "ok", "{status}");
    assert!(
        status["last_run"]["files"].as_u64().unwrap_or(0) >= 6,
        "{status}"
    );
    let snapshot = status["last_run"]["snapshot_id"]
        .as_str()
        .expect("snapshot id")
        .to_owned();
    let want = expected(&s.path("source"));

    ok(
        &s.sidecar(&[
            "backup",
            "restore",
            "latest",
            "--target",
            &s.path("ours").display().to_string(),
        ]),
        "restore",
    );
    let source_abs = std::fs::canonicalize(s.path("source")).expect("canonical");
    let ours = s
        .path("ours")
        .join(source_abs.strip_prefix("/").expect("absolute"));
    assert_eq!(listing(&ours), want, "our restore differs from the source");

    let check = restic_cmd(s, restic_repo, restic_env, &["check", "--read-data"]);
    ok(&check, "restic check --read-data");
    let snaps = restic_cmd(s, restic_repo, restic_env, &["snapshots", "--json"]);
    ok(&snaps, "restic snapshots");
    let listed: serde_json::Value = serde_json::from_slice(&snaps.stdout).expect("restic JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["id"], snapshot.as_str());
    assert_eq!(listed[0]["hostname"], "test-host");
    let target = s.path("restic-restore");
    let restored = restic_cmd(
        s,
        restic_repo,
        restic_env,
        &[
            "restore",
            "latest",
            "--target",
            &target.display().to_string(),
        ],
    );
    ok(&restored, "restic restore");
    let theirs = target.join(source_abs.strip_prefix("/").expect("absolute"));
    assert_eq!(
        listing(&theirs),
        want,
        "restic's restore differs from the source"
    );

    // An unchanged second run adds (almost) nothing and both snapshots stay readable.
    ok(&s.sidecar(&["backup", "run"]), "second backup run");
    let second = s.status();
    assert!(
        second["last_run"]["bytes_added"]
            .as_u64()
            .unwrap_or(u64::MAX)
            < 100_000,
        "{second}"
    );
    let snaps = restic_cmd(s, restic_repo, restic_env, &["snapshots", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&snaps.stdout).expect("restic JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");

    // `snapshots --json` speaks restic's names: every key restic prints for these snapshots
    // (and in its summary) is ours too, with the same id, short id, host and paths.
    let out = s.sidecar(&["backup", "snapshots", "--json"]);
    ok(&out, "snapshots --json");
    let ours: serde_json::Value = serde_json::from_slice(&out.stdout).expect("our JSON");
    let keys = |v: &serde_json::Value| -> std::collections::BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    for (theirs, ours) in listed
        .as_array()
        .expect("array")
        .iter()
        .zip(ours.as_array().expect("array"))
    {
        let missing: Vec<String> = keys(theirs)
            .difference(&keys(ours))
            .filter(|k| !matches!(k.as_str(), "uid" | "gid" | "excludes"))
            .cloned()
            .collect();
        assert!(
            missing.is_empty(),
            "restic has {missing:?} that we lack: {ours}"
        );
        let missing: Vec<String> = keys(&theirs["summary"])
            .difference(&keys(&ours["summary"]))
            .cloned()
            .collect();
        assert!(
            missing.is_empty(),
            "restic's summary has {missing:?}: {ours}"
        );
        for key in ["id", "short_id", "hostname", "paths", "tree"] {
            assert_eq!(theirs[key], ours[key], "{key}");
        }
    }
}

#[test]
fn a_tree_backed_up_to_a_local_repository_restores_byte_for_byte_also_with_restic() {
    let s = setup("{dir}/repo");
    let repo = s.path("repo").display().to_string();
    round_trip(&s, &repo, &[]);
    ok(
        &s.sidecar(&["backup", "check", "--read-data-subset", "100"]),
        "backup check",
    );
}

#[test]
fn a_tree_backed_up_to_s3_restores_byte_for_byte_also_with_restic_over_s3() {
    let moto = Moto::start();
    let mut s = setup("s3://backups/concierge/nightly");
    s.set("CONCIERGE_SIDECAR_REPOSITORY_S3__ENDPOINT", &moto.endpoint);
    s.set("CONCIERGE_SIDECAR_REPOSITORY_S3__ACCESS_KEY_ID", "AKIDTEST");
    s.set(
        "CONCIERGE_SIDECAR_REPOSITORY_S3__SECRET_ACCESS_KEY",
        "secret-test-key",
    );
    let repo = format!("s3:{}/backups/concierge/nightly", moto.endpoint);
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
        ("AWS_SECRET_ACCESS_KEY", "secret-test-key"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ];
    round_trip(&s, &repo, &env);
}

#[test]
fn a_wrong_password_fails_with_its_exit_code_records_the_failure_and_alerts_without_secrets() {
    let hook = FakeServer::start(|_| FakeResponse::json(200, serde_json::json!({"success": true})));
    let mut s = setup("{dir}/repo");
    ok(&s.sidecar(&["backup", "init"]), "backup init");
    let wrong = s.path("wrong");
    std::fs::write(&wrong, "not the password").expect("write");
    s.set(
        "CONCIERGE_SIDECAR_REPOSITORY__PASSWORD_FILE",
        &wrong.display().to_string(),
    );
    let url = format!("{}/hooks/SECRET-HOOK-TOKEN", hook.base);
    s.set("CONCIERGE_SIDECAR_ALERT__ROCKETCHAT_WEBHOOK_URL", &url);
    let out = s.sidecar(&["backup", "run"]);
    assert_eq!(
        out.status.code(),
        Some(12),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("password is wrong (it came from repository.password_file)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = s.status();
    assert_eq!(status["last_run"]["outcome"], "failed");
    assert_eq!(status["last_run"]["error_kind"], "wrong_password");
    let alerts = hook.wait_for("/hooks/SECRET-HOOK-TOKEN", 1, Duration::from_secs(10));
    let text = alerts[0].json()["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        text.contains("test-host")
            && text.contains("backup run failed")
            && text.contains("wrong_password"),
        "{text}"
    );
    assert!(
        !text.contains("not the password") && !text.contains("SECRET-HOOK-TOKEN"),
        "{text}"
    );
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        !logs.contains("SECRET-HOOK-TOKEN") && !logs.contains("not the password"),
        "{logs}"
    );
    // An inline password is named as such.
    s.env
        .retain(|(k, _)| k != "CONCIERGE_SIDECAR_REPOSITORY__PASSWORD_FILE");
    s.set("CONCIERGE_SIDECAR_REPOSITORY__PASSWORD", "also wrong");
    let out = s.sidecar(&["backup", "snapshots"]);
    assert_eq!(out.status.code(), Some(12));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("(it came from repository.password)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_unreachable_endpoint_fails_with_exit_code_4_and_leaves_a_failed_status() {
    let port = concierge_tests::free_port();
    let mut s = setup("s3://backups/repo");
    s.set(
        "CONCIERGE_SIDECAR_REPOSITORY_S3__ENDPOINT",
        &format!("http://127.0.0.1:{port}"),
    );
    s.set("CONCIERGE_SIDECAR_REPOSITORY_S3__ACCESS_KEY_ID", "AK");
    s.set("CONCIERGE_SIDECAR_REPOSITORY_S3__SECRET_ACCESS_KEY", "SK");
    s.set("CONCIERGE_SIDECAR_REPOSITORY__RETRIES", "2");
    let out = s.sidecar(&["backup", "run", "--init"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.status()["last_run"]["error_kind"], "unreachable");
    let stale = s.sidecar(&["backup", "status", "--max-age", "26h"]);
    assert_eq!(stale.status.code(), Some(8));
    assert!(String::from_utf8_lossy(&stale.stderr).contains("no backup has succeeded yet"));
}

#[test]
fn an_interrupted_run_exits_with_restics_code_130() {
    // A server that takes the connection and never answers: the run waits on it.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let mut s = setup("s3://backups/repo");
    s.set(
        "CONCIERGE_SIDECAR_REPOSITORY_S3__ENDPOINT",
        &format!("http://127.0.0.1:{port}"),
    );
    s.set("CONCIERGE_SIDECAR_REPOSITORY_S3__ACCESS_KEY_ID", "AK");
    s.set("CONCIERGE_SIDECAR_REPOSITORY_S3__SECRET_ACCESS_KEY", "SK");
    let mut child = s
        .command(&["backup", "run", "--init"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start");
    std::thread::sleep(Duration::from_millis(700));
    assert!(child.try_wait().expect("wait").is_none(), "still waiting");
    let status = signal_and_wait(&mut child, "INT", Duration::from_secs(20));
    assert_eq!(status.code(), Some(130), "{status:?}");
    drop(silent);
}

#[test]
fn the_exit_codes_are_listed_in_the_help() {
    let s = setup("{dir}/repo");
    let out = s.sidecar(&["--help"]);
    ok(&out, "--help");
    let help = String::from_utf8_lossy(&out.stdout);
    for line in [
        "Exit codes:",
        "  1    a step failed",
        "  2    bad configuration",
        "  4    the repository, the Hetzner API or the Docker engine cannot be reached",
        "  5    `deploy plan`: there are changes",
        "  6    no space left",
        "  8    `backup status`",
        "  10   no repository there",
        "  12   wrong repository password",
        "  13   `backup ephemeral`: a temporary server could not be deleted",
        "  14   `deploy apply`/`verify`: the deployment did not verify",
        "  15   `deploy rollback`",
        "  130  interrupted",
    ] {
        assert!(help.contains(line), "{line:?} missing from --help:\n{help}");
    }
}

#[test]
fn status_passes_after_a_good_run_and_fails_once_it_is_older_than_max_age() {
    let s = setup("{dir}/repo");
    ok(&s.sidecar(&["backup", "run", "--init"]), "backup run");
    ok(
        &s.sidecar(&["backup", "status", "--max-age", "26h"]),
        "fresh status",
    );
    std::thread::sleep(Duration::from_millis(2100));
    let out = s.sidecar(&["backup", "status", "--max-age", "1s"]);
    assert_eq!(out.status.code(), Some(8));
    assert!(String::from_utf8_lossy(&out.stderr).contains("more than the allowed"));
}

#[test]
fn a_bad_configuration_is_refused_before_touching_anything() {
    let mut s = setup("{dir}/repo");
    s.set("CONCIERGE_SIDECAR_RETENTION__KEEP_DAILY", "seven");
    let out = s.sidecar(&["backup", "run", "--init"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("retention.keep_daily"));
    assert!(!s.path("repo").exists());
    assert!(!s.path("status.json").exists());
}

#[test]
fn a_full_target_disk_fails_with_exit_code_6_and_the_next_run_succeeds_once_there_is_room() {
    let mut s = setup("{dir}/small/repo");
    let disk = SmallDisk::mount(&s.path("small"), "3m");
    let hook = FakeServer::start(|_| FakeResponse::json(200, serde_json::json!({"success": true})));
    s.set(
        "CONCIERGE_SIDECAR_ALERT__ROCKETCHAT_WEBHOOK_URL",
        &format!("{}/hooks/x", hook.base),
    );
    let out = s.sidecar(&["backup", "run", "--init"]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no space left"));
    assert_eq!(s.status()["last_run"]["error_kind"], "disk_full");
    let alert = hook.wait_for("/hooks/x", 1, Duration::from_secs(10));
    assert!(
        alert[0].json()["text"]
            .as_str()
            .unwrap_or_default()
            .contains("disk_full")
    );
    // Room again: the next run succeeds on what the failed one left, and the repository checks.
    disk.resize("64m");
    ok(
        &s.sidecar(&["backup", "run", "--init"]),
        "backup run after the disk was enlarged",
    );
    assert_eq!(s.status()["last_run"]["outcome"], "ok");
    ok(
        &s.sidecar(&["backup", "check", "--read-data-subset", "100"]),
        "backup check",
    );
    let repo = s.path("small/repo").display().to_string();
    ok(&restic_cmd(&s, &repo, &[], &["check"]), "restic check");
}

#[test]
fn a_backup_of_a_running_daemon_uses_a_checkpoint_and_its_status_shows_in_the_daemon() {
    let model = concierge_tests::model_dir();
    let daemon = concierge_tests::Daemon::start_with_env(
        &["--model-dir", model.to_str().expect("utf-8")],
        &[("CONCIERGE_AUTH__API_TOKENS", "admin-token")],
        &concierge_tests::workspace_root(),
    );
    let auth = [
        ("Authorization", "Bearer admin-token"),
        ("Content-Type", "application/json"),
    ];
    let doc = serde_json::json!({"id": "guesty:reservation:b1", "text": "Pool heater broken, guest in unit 4.", "updated_at": 1});
    let (s, b) = daemon.request("POST", "/v1/documents", Some(&doc.to_string()), &auth);
    assert_eq!(s, 202, "{b}");
    let mut s = setup("{dir}/repo");
    s.set(
        "CONCIERGE_SIDECAR_BACKUP__DAEMON_URL",
        &format!("http://{}", daemon.address),
    );
    s.set("CONCIERGE_SIDECAR_BACKUP__DAEMON_TOKEN", "admin-token");
    s.set(
        "CONCIERGE_SIDECAR_BACKUP__DAEMON_DATA_DIR",
        &daemon.data_dir.display().to_string(),
    );
    ok(&s.sidecar(&["backup", "run", "--init"]), "backup run");
    let snapshot = s.status()["last_run"]["snapshot_id"].clone();
    // The checkpoint was backed up and then removed from the daemon's data directory.
    let left: Vec<_> = std::fs::read_dir(daemon.data_dir.join("checkpoints"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    let (code, body) = daemon.request("GET", "/v1/admin/status", None, &auth);
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(status["backup"]["last_run"]["outcome"], "ok", "{status}");
    assert_eq!(status["backup"]["last_run"]["snapshot_id"], snapshot);
    assert_eq!(status["backup"]["last_success"]["snapshot_id"], snapshot);
    assert!(
        status["durable_seq"].as_u64().is_some(),
        "the engine's status is still there"
    );
    // What the daemon refuses, it refuses with a problem body, keeping what it had.
    let (code, body) = daemon.request(
        "PUT",
        "/v1/admin/backup-status",
        Some(r#"{"last_run": {"outcome": "perhaps"}}"#),
        &auth,
    );
    assert_eq!(code, 422, "{body}");
    let (code, _) = daemon.request("PUT", "/v1/admin/backup-status", Some("{}"), &[]);
    assert_eq!(code, 401);
    let (_, body) = daemon.request("GET", "/v1/admin/status", None, &auth);
    assert!(body.contains(snapshot.as_str().unwrap_or("?")), "{body}");
    // The snapshot holds the checkpoint's store.
    let target = s.path("restored");
    ok(
        &s.sidecar(&[
            "backup",
            "restore",
            "latest",
            "--target",
            &target.display().to_string(),
        ]),
        "restore",
    );
    let found = std::process::Command::new("find")
        .arg(&target)
        .args(["-type", "d", "-name", "store"])
        .output()
        .expect("find");
    assert!(
        !String::from_utf8_lossy(&found.stdout).trim().is_empty(),
        "no checkpoint store in the snapshot"
    );
}

#[test]
fn schedule_runs_backups_on_their_cron_survives_a_failing_run_and_stops_on_sigterm() {
    let mut s = setup("{dir}/repo");
    // Every two seconds (the seconds field); the status check far away.
    s.set("CONCIERGE_SIDECAR_SCHEDULE__BACKUP", "*/2 * * * * *");
    s.set("CONCIERGE_SIDECAR_SCHEDULE__STATUS", "0 0 1 1 *");
    let log = std::fs::File::create(s.path("schedule.log")).expect("log file");
    let mut child = s
        .command(&["schedule"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start schedule");
    let wait_for = |what: &str, pred: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(bytes) = std::fs::read(s.path("status.json"))
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes)
                && pred(&v)
            {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {what} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // No repository yet: the scheduled runs fail, and the schedule goes on.
    wait_for("failed run", &|v| {
        v["last_run"]["error_kind"] == "not_initialised"
    });
    ok(&s.sidecar(&["backup", "init"]), "backup init");
    let good = wait_for("successful run", &|v| v["last_run"]["outcome"] == "ok");
    assert!(good["last_success"]["snapshot_id"].is_string(), "{good}");
    let status = signal_and_wait(&mut child, "TERM", Duration::from_secs(60));
    let logs = std::fs::read_to_string(s.path("schedule.log")).unwrap_or_default();
    assert!(status.success(), "{status:?}\n{logs}");
    assert!(logs.contains("the schedule goes on"), "{logs}");
    assert!(logs.contains("schedule stopped"), "{logs}");
}

/// The sidecar as an unprivileged user (root reads every file): the setup's directory opened up
/// so that user can reach its repository, status file and password.
fn as_nobody(s: &Setup, args: &[&str]) -> Output {
    s.command_via(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        args,
    )
    .output()
    .expect("run setpriv (util-linux)")
}

fn open_up(s: &Setup) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod");
    };
    mode(s.dir.path(), 0o777);
    mode(&s.path("password"), 0o644);
    for entry in walk(&s.path("source")) {
        if entry.is_symlink() {
            continue;
        }
        mode(&entry, if entry.is_dir() { 0o755 } else { 0o644 });
    }
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    if root.is_dir() && !root.is_symlink() {
        for e in std::fs::read_dir(root).expect("read_dir").flatten() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

#[test]
fn an_unreadable_source_file_makes_the_run_fail_with_exit_3_recorded_and_alerted() {
    use std::os::unix::fs::PermissionsExt;
    let hook = FakeServer::start(|_| FakeResponse::json(200, serde_json::json!({"success": true})));
    let mut s = setup("{dir}/repo");
    s.set(
        "CONCIERGE_SIDECAR_ALERT__ROCKETCHAT_WEBHOOK_URL",
        &format!("{}/hooks/T", hook.base),
    );
    open_up(&s);
    let hidden = s.path("source/nested/hidden.txt");
    std::fs::write(&hidden, "not for the sidecar").expect("write");
    std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let out = as_nobody(&s, &["backup", "run", "--init"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("incomplete") && stderr.contains("hidden.txt"),
        "{stderr}"
    );
    let status = s.status();
    assert_eq!(status["last_run"]["outcome"], "failed", "{status}");
    assert_eq!(status["last_run"]["error_kind"], "unreadable_files");
    assert!(status["last_success"].is_null(), "{status}");
    let alerts = hook.wait_for("/hooks/T", 1, Duration::from_secs(10));
    assert!(
        alerts[0].json()["text"]
            .as_str()
            .is_some_and(|t| t.contains("unreadable_files")),
        "{:?}",
        alerts[0].json()
    );
}

#[test]
fn a_wholly_unreadable_source_fails_and_keeps_no_empty_snapshot() {
    use std::os::unix::fs::PermissionsExt;
    let s = setup("{dir}/repo");
    open_up(&s);
    std::fs::set_permissions(s.path("source"), std::fs::Permissions::from_mode(0o000))
        .expect("chmod");
    let out = as_nobody(&s, &["backup", "run", "--init"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing could be read"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = as_nobody(&s, &["backup", "snapshots", "--json"]);
    ok(&listed, "snapshots");
    let snaps: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(snaps.as_array().map(Vec::len), Some(0), "{snaps}");
}

#[test]
fn a_status_file_that_cannot_be_written_fails_an_otherwise_good_run() {
    let mut s = setup("{dir}/repo");
    let ro = s.path("ro");
    let disk = SmallDisk::mount(&ro, "1m");
    let remount = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&ro)
        .output()
        .expect("mount");
    assert!(remount.status.success(), "{remount:?}");
    s.set(
        "CONCIERGE_SIDECAR_STATUS__FILE",
        &ro.join("status.json").display().to_string(),
    );
    let out = s.sidecar(&["backup", "run", "--init"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("status file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(disk);
}
