//! `concierge serve` started as a user starts it, on an ephemeral port.

use concierge_tests::{Daemon, model_dir, run, temp_dir, workspace_root};
use serde_json::Value;

#[test]
fn serve_answers_health_and_readiness_with_the_model_loaded() {
    let dir = model_dir();
    let daemon = Daemon::start(
        &["--model-dir", dir.to_str().expect("utf-8")],
        &workspace_root(),
    );
    let (status, body) = daemon.get("/healthz");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["status"],
        "ok"
    );
    let (status, body) = daemon.get("/readyz");
    assert_eq!(status, 200);
    let ready: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(ready["model"], "all-MiniLM-L6-v2");
    assert_eq!(ready["dimension"], 384);
}

#[test]
fn an_unknown_route_is_a_json_problem_404() {
    let daemon = Daemon::start(&[], &workspace_root());
    let (status, body) = daemon.get("/v1/nothing-here");
    assert_eq!(status, 404);
    let problem: Value = serde_json::from_str(&body).expect("problem json");
    assert_eq!(problem["status"], 404);
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("/v1/nothing-here")
    );
}

#[test]
fn sigterm_stops_the_daemon_cleanly() {
    let daemon = Daemon::start(&[], &workspace_root());
    let status = daemon.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigint_stops_the_daemon_cleanly_too() {
    let daemon = Daemon::start(&[], &workspace_root());
    let status = daemon.stop_with("INT");
    assert!(status.success(), "{status:?}");
}

#[test]
fn serve_refuses_a_public_address_without_api_tokens() {
    let out = run(
        "concierge",
        &["serve", "--listen", "0.0.0.0:0"],
        &workspace_root(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

#[test]
fn serve_without_the_model_exits_3_before_listening() {
    let dir = temp_dir();
    let out = run(
        "concierge",
        &["serve", "--listen", "127.0.0.1:0"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("models/fetch.sh"));
    assert!(out.stdout.is_empty(), "it must not claim to listen");
}

/// Runs `concierge serve` with `env` until it has logged that it listens; its stderr lines.
fn serve_log_lines(env: &[(&str, &str)], args: &[&str]) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    let dir = temp_dir();
    let model = model_dir();
    let mut command = std::process::Command::new(concierge_tests::binary("concierge"));
    command
        .args(args)
        .args(["serve", "--listen", "127.0.0.1:0", "--model-dir"])
        .arg(&model)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .current_dir(workspace_root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("start concierge serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("a line");
        let listening = line.contains("concierge listening");
        lines.push(line);
        if listening || lines.len() > 200 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

#[test]
fn logs_are_json_lines_when_asked_and_plain_text_without_colour_off_a_terminal() {
    let json_lines = serve_log_lines(&[("CONCIERGE_LOG__FORMAT", "json")], &[]);
    assert!(!json_lines.is_empty());
    for line in &json_lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
    assert!(json_lines.iter().any(|l| l.contains("concierge listening")));
    // The flag wins over the environment.
    let text = serve_log_lines(
        &[("CONCIERGE_LOG__FORMAT", "json")],
        &["--log-format", "text"],
    );
    assert!(
        text.iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
    );
    assert!(
        text.iter().all(|l| !l.contains('\u{1b}')),
        "no ANSI colour into a pipe: {text:?}"
    );
    // A bad value is refused with the choices.
    let out = run(
        "concierge",
        &["--log-format", "xml", "embed", "x"],
        &workspace_root(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"text\" or \"json\""));
}
