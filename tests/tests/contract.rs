//! The OpenAPI document against the running daemon, by schemathesis (tests/.venv-api, installed
//! by scripts/test-tools.sh): every operation fuzzed with generated requests, valid and invalid;
//! no 5xx, every status, content type, header and body as the document says, invalid input
//! refused, undocumented methods refused with a true `Allow`, auth never ignored.

use std::process::Command;

use concierge_tests::{Daemon, model_dir, temp_dir, workspace_root};
use serde_json::{Value, json};

const TOKEN: &str = "contract-admin-token";
const GUESTY_SECRET: &str = "whsec_Y29uY2llcmdlLWZpeHR1cmUtc2VjcmV0LTMyYnl0ZXM=";

/// The checks run: all of schemathesis's but `positive_data_acceptance` (the document states
/// the shapes; some rules — a question of blanks, an id's external part — are the engine's
/// and answered 422) and the ones about resources it cannot link (`use_after_free`,
/// `ensure_resource_availability`, `object_level_authorization`).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_schema_conformance,response_headers_conformance,negative_data_rejection,\
unsupported_method,missing_required_header,ignored_auth,allow_header_conformance";

#[test]
fn schemathesis_finds_no_5xx_and_no_response_outside_the_openapi_document() {
    let model = model_dir();
    let d = Daemon::start_with_env(
        &["--model-dir", model.to_str().expect("utf-8")],
        &[
            ("CONCIERGE_AUTH__API_TOKENS", TOKEN),
            ("CONCIERGE_AIRCALL__TOKENS", "wh_tok_fixture_3f9c2a7b81"),
            ("CONCIERGE_GUESTY__SECRET", GUESTY_SECRET),
            ("CONCIERGE_ROCKETCHAT__TOKEN", "rc-token"),
        ],
        &workspace_root(),
    );
    // Something to find, list and answer from.
    let auth = format!("Bearer {TOKEN}");
    for i in 0..5 {
        let doc = json!({"id": format!("ops:note:{i}"), "title": "Boiler",
            "text": format!("The boiler in unit {i} was serviced."), "updated_at": 1});
        let (s, b) = d.request(
            "POST",
            "/v1/documents",
            Some(&doc.to_string()),
            &[
                ("Content-Type", "application/json"),
                ("Authorization", &auth),
            ],
        );
        assert_eq!(s, 202, "{b}");
    }
    concierge_tests::post_fixture_webhooks(&d, GUESTY_SECRET, "msg_c_");

    let report_dir = temp_dir();
    let report = report_dir.path().join("schemathesis.json");
    let schemathesis = workspace_root().join("tests/.venv-api/bin/schemathesis");
    let out = Command::new(&schemathesis)
        .current_dir(report_dir.path())
        .args(["run"])
        .arg(workspace_root().join("daemon/openapi.json"))
        .args(["--url", &format!("http://{}", d.address)])
        .args(["--header", &format!("Authorization: {auth}")])
        .args(["--checks", CHECKS])
        .args(["--max-examples", "40", "--seed", "20261207"])
        .args(["--request-timeout", "30"])
        .args(["--generation-database", "none", "--no-color"])
        .args(["--report", "json", "--report-json-path"])
        .arg(&report)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} (scripts/test-tools.sh installs it): {e}",
                schemathesis.display()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON report");
    let operations = &summary["operations"];
    assert_eq!(
        operations["tested"], operations["total"],
        "every operation fuzzed: {operations}"
    );
    let declared: usize = serde_json::from_str::<Value>(
        &std::fs::read_to_string(workspace_root().join("daemon/openapi.json")).expect("doc"),
    )
    .expect("doc")["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|ops| ops.as_object().map_or(0, |o| o.len()))
        .sum();
    assert_eq!(operations["total"], declared, "{operations}");
    let generated = summary["test_cases"]["generated"].as_u64().unwrap_or(0);
    assert!(generated >= 500, "{generated} requests: {stdout}");
    eprintln!(
        "schemathesis: {} operations, {generated} requests, no failures",
        operations["tested"]
    );
    // The daemon is still whole after all that.
    let (s, body) = d.request("GET", "/readyz", None, &[]);
    assert_eq!(s, 200, "{body}");
}
