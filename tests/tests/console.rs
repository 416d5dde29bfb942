//! The console at `/` in headless Chromium (chromedriver), against the real daemon: sign in
//! with a token, the health of the indexes, a search showing each leg's rank and score, an
//! answer streamed with its sources, the document browser — on a desktop window and a phone's.
//! A screenshot of each state goes to `target/console-screenshots/`.

use std::path::PathBuf;
use std::time::Duration;

use concierge_tests::{Browser, Daemon, model_dir, workspace_root};
use serde_json::json;

const TOKEN: &str = "console-token-7f3a";

fn shots() -> PathBuf {
    workspace_root().join("target/console-screenshots")
}

#[test]
fn the_console_signs_in_shows_health_searches_answers_and_browses() {
    let model = model_dir();
    let d = Daemon::start_with_env(
        &["--model-dir", model.to_str().expect("utf-8")],
        &[("CONCIERGE_AUTH__READ_TOKENS", TOKEN)],
        &workspace_root(),
    );
    // Documents go in through the primary's store directly (the console's token only reads).
    drop(d);
    let dir = concierge_tests::temp_dir();
    let data = dir.path().join("data");
    let input = dir.path().join("docs.jsonl");
    let docs = [
        (
            "ops:note:1",
            "Boiler",
            "The boiler in unit 4 was serviced on Monday. The pressure is fine now.",
        ),
        (
            "ops:note:2",
            "Pool",
            "The pool heater is broken; a technician comes on Friday.",
        ),
        (
            "guesty:reservation:9",
            "Late arrival",
            "The guest arrives at midnight and needs the door code.",
        ),
    ];
    let lines: String = docs
        .iter()
        .map(|(id, title, text)| {
            format!(
                "{}\n",
                json!({"id": id, "title": title, "text": text, "updated_at": 1})
            )
        })
        .collect();
    std::fs::write(&input, lines).expect("input");
    let out = concierge_tests::ingest_and_wait(&input, &data);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = Daemon::start_with_env(
        &[
            "--model-dir",
            model.to_str().expect("utf-8"),
            "--data-dir",
            data.to_str().expect("utf-8"),
        ],
        &[("CONCIERGE_AUTH__READ_TOKENS", TOKEN)],
        &workspace_root(),
    );
    let base = format!("http://{}/", d.address);

    // The page itself is public and strict about where it loads from.
    let page = d.exchange("GET", "/", None, &[]);
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-security-policy")
            .is_some_and(|p| p.contains("default-src 'self'"))
    );
    let weight: usize = ["/", "/console.js", "/console.css"]
        .iter()
        .map(|p| d.get(p).1.len())
        .sum();
    eprintln!("console page weight: {weight} bytes");

    let browser = Browser::start();
    browser.resize(1280, 900);
    browser.open(&base);
    browser.wait_for("API token", Duration::from_secs(10));
    browser.screenshot(&shots().join("1-sign-in.png"));

    // A wrong token is refused, with the reason.
    browser.type_into("#token", "not-the-token");
    browser.click("#token-form button[type=submit]");
    browser.wait_for("Sign-in refused", Duration::from_secs(10));

    browser.type_into("#token", TOKEN);
    browser.click("#token-form button[type=submit]");
    let html = browser.wait_for("Dense index", Duration::from_secs(10));
    assert!(
        html.contains("Keyword index") && html.contains("Backups"),
        "{html}"
    );
    assert!(html.contains(">ready<"), "{html}");
    assert!(
        !browser.url().contains(TOKEN),
        "the token never goes into the address"
    );
    browser.screenshot(&shots().join("2-health.png"));

    // Search: each leg's rank and score per hit.
    browser.type_into("#query", "boiler pressure");
    browser.click("#search-form button[type=submit]");
    let html = browser.wait_for("hits in", Duration::from_secs(20));
    assert!(html.contains("ops:note:1"), "{html}");
    assert!(html.contains("Dense rank (score)") && html.contains("Keyword rank (score)"));
    assert!(
        html.contains("class=\"leg-dense\">#1 (") && html.contains("class=\"leg-keyword\">#1 ("),
        "the boiler note is first in both legs:\n{html}"
    );
    assert!(
        html.contains("<mark>"),
        "matched terms are highlighted: {html}"
    );
    browser.scroll_to("#search-title");
    browser.screenshot(&shots().join("3-search.png"));

    // Ask: the answer streams in, then its sources.
    browser.type_into("#question", "When was the boiler serviced?");
    browser.click("#ask-form button[type=submit]");
    let html = browser.wait_for("— cited", Duration::from_secs(30));
    assert!(html.contains("Monday"), "{html}");
    assert!(html.contains("[1]"), "the answer cites its source: {html}");
    browser.scroll_to("#ask-title");
    browser.screenshot(&shots().join("4-ask.png"));

    // The document browser, then one document.
    browser.type_into("#docs-source", "ops");
    browser.click("#docs-form button[type=submit]");
    let html = browser.wait_for(">Updated</th>", Duration::from_secs(10));
    let listing = html
        .split("id=\"docs\"")
        .nth(1)
        .and_then(|rest| rest.split("id=\"docs-next\"").next())
        .unwrap_or_default();
    assert!(
        listing.contains("ops:note:1") && listing.contains("ops:note:2"),
        "{listing}"
    );
    assert!(
        !listing.contains("guesty:reservation:9"),
        "only the source asked for: {listing}"
    );
    browser.click("#docs tbody tr:first-child button");
    browser.wait_for("serviced on Monday", Duration::from_secs(10));
    browser.scroll_to("#docs-title");
    browser.screenshot(&shots().join("5-documents.png"));

    // On a phone's screen the page still works (one column, nothing cut off).
    browser.resize(390, 844);
    browser.click("#refresh");
    browser.wait_for("Dense index", Duration::from_secs(10));
    browser.scroll_to("#health-title");
    browser.screenshot(&shots().join("6-phone.png"));

    // Signing out forgets the token.
    browser.click("#sign-out");
    browser.wait_for("API token", Duration::from_secs(10));
    browser.open(&base);
    let html = browser.wait_for("primary · local", Duration::from_secs(10));
    assert!(
        html.contains("id=\"app\" hidden"),
        "signed out stays signed out: {html}"
    );
}

#[test]
fn single_sign_on_through_the_issuer_signs_the_console_in_with_the_persons_roles() {
    let port = concierge_tests::free_port();
    let base = format!("http://127.0.0.1:{port}/");
    let issuer = concierge_tests::RealIssuer::start_for_console("concierge", &base);
    let dir = concierge_tests::temp_dir();
    let model = model_dir();
    let mut command = std::process::Command::new(concierge_tests::binary("concierge"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--model-dir")
        .arg(&model)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("CONCIERGE_AUTH__OIDC_ISSUER", &issuer.issuer)
        .env("CONCIERGE_AUTH__OIDC_AUDIENCE", "concierge")
        .env(
            "CONCIERGE_AUTH__OIDC_CONSOLE_CLIENT_ID",
            "concierge-console",
        )
        .stderr(std::process::Stdio::inherit());
    let daemon = Daemon::from_command(command, dir.path().join("data"));
    assert_eq!(daemon.address, format!("127.0.0.1:{port}"));

    let browser = Browser::start();
    browser.resize(1280, 900);
    browser.open(&base);
    browser.wait_for("Sign in with single sign-on", Duration::from_secs(10));
    browser.click("#oidc-sign-in");
    // The issuer's sign-in page (oidc-provider's development pages), then its consent.
    browser.wait_for("name=\"login\"", Duration::from_secs(10));
    browser.screenshot(&shots().join("7-sso-issuer.png"));
    browser.type_into("input[name=login]", "ops-person");
    browser.type_into("input[name=password]", "any");
    browser.click("button[type=submit]");
    // The consent page (once), then the console: whichever the browser shows, as it arrives.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut consented = false;
    let html = loop {
        let html = browser.source();
        if html.contains("Dense index") {
            break html;
        }
        if !consented && html.contains("value=\"consent\"") {
            browser.click("button[type=submit]");
            consented = true;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the console did not sign in:\n{html}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(consented, "the issuer asked for consent");
    assert!(html.contains("Keyword index"), "{html}");
    let address = browser.url();
    assert!(
        !address.contains("code=") && !address.contains("state="),
        "the code leaves the address bar: {address}"
    );
    browser.screenshot(&shots().join("8-sso-signed-in.png"));
}
