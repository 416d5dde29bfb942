//! Headless Chromium for page tests (`../shared/real-components.md` §6): Debian's `chromium`
//! driven through `chromedriver` (W3C WebDriver over HTTP on loopback), with the flags that
//! keep it off the internet. Stopped on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http_exchange;

/// One WebDriver call: (status, body).
fn exchange(address: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let reply = http_exchange(
        address,
        method,
        path,
        body,
        &[("Content-Type", "application/json")],
    );
    (reply.status, reply.body)
}

/// W3C's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    address: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium session.
    pub fn start() -> Browser {
        let port = crate::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver (apt-get install chromium chromium-driver; scripts/system-deps.sh does)");
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let mut browser = Browser {
            driver,
            address,
            session: String::new(),
            _profile: profile,
        };
        let answer = browser.call("POST", "/session", Some(caps));
        browser.session = answer["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        browser
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let text = body.map(|b| b.to_string());
        let (status, answer) = exchange(&self.address, method, path, text.as_deref());
        let v: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
        assert!(status < 300, "WebDriver {method} {path}: {status} {answer}");
        v["value"].clone()
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url` and waits for it to load.
    pub fn open(&self, url: &str) {
        self.call("POST", &self.at("/url"), Some(json!({"url": url})));
    }

    fn element(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            &self.at("/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    /// Types `text` into the element `css`.
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call(
            "POST",
            &self.at(&format!("/element/{id}/value")),
            Some(json!({"text": text})),
        );
    }

    /// Clicks the element `css` (a submit button: the next page has loaded when it returns).
    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.call(
            "POST",
            &self.at(&format!("/element/{id}/click")),
            Some(json!({})),
        );
    }

    /// The page's HTML as the browser holds it.
    pub fn source(&self) -> String {
        self.call("GET", &self.at("/source"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's HTML once it contains `text` (a form's answer may still be loading when a
    /// click returns); panics with the page after `timeout`.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let html = self.source();
            if html.contains(text) {
                return html;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} did not appear:\n{html}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a PNG of the window to `path`.
    pub fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine as _;
        let shot = self.call("GET", &self.at("/screenshot"), None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().unwrap_or_default())
            .expect("a base64 PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Scrolls the element `css` to the top of the window (before a screenshot of it).
    pub fn scroll_to(&self, css: &str) {
        self.call(
            "POST",
            &self.at("/execute/sync"),
            Some(json!({
                "script": "document.querySelector(arguments[0]).scrollIntoView({block: 'start'});",
                "args": [css],
            })),
        );
    }

    /// The address the window shows.
    pub fn url(&self) -> String {
        self.call("GET", &self.at("/url"), None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Sets the window's size (a phone's, say).
    pub fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            &self.at("/window/rect"),
            Some(json!({"width": width, "height": height})),
        );
    }

    /// The value of cookie `name` the browser keeps for the page.
    pub fn cookie(&self, name: &str) -> Option<Value> {
        let all = self.call("GET", &self.at("/cookie"), None);
        all.as_array()?.iter().find(|c| c["name"] == name).cloned()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = exchange(&self.address, "DELETE", &self.at(""), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
