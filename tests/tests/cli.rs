//! `concierge` and `concierge-sidecar` as a user runs them.

use concierge_tests::{fixture, model_dir, run, temp_dir, workspace_root};
use serde_json::Value;

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (a.iter().map(|x| x * x).sum::<f64>().sqrt()
        * b.iter().map(|x| x * x).sum::<f64>().sqrt())
}

fn numbers(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

#[test]
fn embed_prints_one_json_object_per_text_matching_the_reference() {
    let reference: Value =
        serde_json::from_slice(&std::fs::read(fixture("minilm-reference.json")).expect("read"))
            .expect("parse fixture");
    let items = reference["items"].as_array().expect("items");
    let texts: Vec<&str> = items
        .iter()
        .take(3)
        .map(|i| i["text"].as_str().expect("text"))
        .collect();
    let dir = model_dir();
    let mut args = vec!["embed", "--model-dir", dir.to_str().expect("utf-8 path")];
    args.extend(&texts);
    let out = run("concierge", &args, &workspace_root());
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let printed = printed.as_array().expect("a JSON array");
    assert_eq!(printed.len(), 3);
    for (item, (text, reference)) in printed.iter().zip(texts.iter().zip(items)) {
        assert_eq!(item["text"], *text);
        assert_eq!(item["dimension"], 384);
        let cos = cosine(&numbers(&item["values"]), &numbers(&reference["embedding"]));
        assert!(cos >= 0.9999, "cos {cos} for {text}");
    }
}

#[test]
fn embed_finds_the_model_under_the_default_models_dir() {
    let out = run("concierge", &["embed", "late check-in"], &workspace_root());
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(printed[0]["values"].as_array().expect("values").len(), 384);
}

#[test]
fn embed_without_a_model_exits_3_and_says_how_to_fetch_it() {
    let dir = temp_dir();
    let out = run("concierge", &["embed", "hello"], dir.path());
    assert_eq!(
        out.status.code(),
        Some(3),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("models/fetch.sh"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn embed_reads_texts_from_stdin_when_none_are_given() {
    use std::io::Write;
    let mut child = std::process::Command::new(concierge_tests::binary("concierge"))
        .args([
            "embed",
            "--model-dir",
            model_dir().to_str().expect("utf-8 path"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start concierge");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"first line\nsecond line\n")
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(printed[0]["text"], "first line");
    assert_eq!(printed[1]["text"], "second line");
}

#[test]
fn an_unknown_flag_is_a_usage_error_with_exit_code_2() {
    let out = run("concierge", &["embed", "--no-such-flag"], &workspace_root());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}

#[test]
fn the_sidecar_reports_its_version() {
    let out = run("concierge-sidecar", &["--version"], &workspace_root());
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("concierge-sidecar "));
}

#[test]
fn healthcheck_exits_0_for_a_ready_daemon_and_1_with_the_reason_otherwise() {
    let daemon = concierge_tests::Daemon::start(&[], &workspace_root());
    let cwd = temp_dir();
    let url = format!("http://{}/readyz", daemon.address);
    let out = run("concierge", &["healthcheck", "--url", &url], cwd.path());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ready"),
        "{out:?}"
    );
    // Without --url: the configured server.listen.
    let out = std::process::Command::new(concierge_tests::binary("concierge"))
        .arg("healthcheck")
        .env("CONCIERGE_SERVER__LISTEN", &daemon.address)
        .current_dir(cwd.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    drop(daemon);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let out = run(
        "concierge",
        &[
            "healthcheck",
            "--url",
            &format!("http://{closed}/readyz"),
            "--timeout-ms",
            "1000",
        ],
        cwd.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did not answer"),
        "{out:?}"
    );
}

#[test]
fn both_binaries_print_completions_write_man_pages_and_list_exit_codes_in_help() {
    let dir = concierge_tests::temp_dir();
    for (binary, sub, code_line) in [
        (
            "concierge",
            "ingest",
            "3  the model files are not installed",
        ),
        ("concierge-sidecar", "backup-run", "5"),
    ] {
        let out = run(binary, &["completions", "bash"], &workspace_root());
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains("complete -F"), "{binary}: {script}");
        let out = run(binary, &["completions", "fish"], &workspace_root());
        assert!(String::from_utf8_lossy(&out.stdout).contains("complete -c"));

        let pages = dir.path().join(binary);
        let out = run(
            binary,
            &["manpages", pages.to_str().expect("utf-8")],
            &workspace_root(),
        );
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let top = std::fs::read_to_string(pages.join(format!("{binary}.1"))).expect("top page");
        assert!(top.starts_with(".ie") || top.contains(".TH"), "{top}");
        let page = std::fs::read_to_string(pages.join(format!("{binary}-{sub}.1")))
            .unwrap_or_else(|e| panic!("{binary}-{sub}.1: {e}"));
        assert!(
            page.contains(".SH OPTIONS") || page.contains(".SH NAME"),
            "{page}"
        );

        let out = run(binary, &["--help"], &workspace_root());
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Exit codes"), "{binary}: {help}");
        assert!(help.contains(code_line), "{binary}: {help}");
    }
}
