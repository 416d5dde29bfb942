//! A real OIDC issuer for the tests: npm `oidc-provider` (a certified OpenID provider) run by
//! `tests/oidc/issuer.mjs`, shaped like Keycloak (issuer path `/realms/ops`, Keycloak's endpoint
//! paths, JWT access tokens with Keycloak's role claims), started on a free loopback port and
//! stopped on drop. `scripts/test-tools.sh` installs it; a missing install is a failure that
//! says so, never a skip.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::{http_exchange, workspace_root};

/// A running oidc-provider.
#[derive(Debug)]
pub struct RealIssuer {
    child: Child,
    address: String,
    /// `http://127.0.0.1:PORT/realms/ops`.
    pub issuer: String,
}

impl RealIssuer {
    /// Starts it for `audience` (the API's client id the tokens are issued for).
    pub fn start(audience: &str) -> RealIssuer {
        RealIssuer::start_with(audience, None)
    }

    /// [`RealIssuer::start`], plus the console's public client `concierge-console` sending
    /// people back to `redirect_uri`, and the development sign-in pages (any login; the login
    /// `ops-person` has the role `concierge-read`).
    pub fn start_for_console(audience: &str, redirect_uri: &str) -> RealIssuer {
        RealIssuer::start_with(audience, Some(redirect_uri))
    }

    fn start_with(audience: &str, console_redirect: Option<&str>) -> RealIssuer {
        let dir = workspace_root().join("tests/oidc");
        assert!(
            dir.join("node_modules/oidc-provider/package.json")
                .is_file(),
            "oidc-provider is not installed in tests/oidc: run scripts/test-tools.sh (./test.sh does)"
        );
        let port = crate::free_port();
        let mut child = Command::new("node")
            .arg(dir.join("issuer.mjs"))
            .arg(port.to_string())
            .arg(audience)
            .args(console_redirect)
            .current_dir(&dir)
            .stdout(Stdio::piped())
            // Its warnings and errors show in a failing test's output.
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node tests/oidc/issuer.mjs");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the issuer's first line");
        let issuer = line
            .trim()
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("tests/oidc/issuer.mjs did not start: {line:?}"))
            .to_owned();
        RealIssuer {
            child,
            address: format!("127.0.0.1:{port}"),
            issuer,
        }
    }

    /// An access token for a client, through the client-credentials grant (as a service account
    /// gets one from Keycloak).
    pub fn token(&self, client_id: &str, secret: &str) -> String {
        let basic = format!("Basic {}", STANDARD.encode(format!("{client_id}:{secret}")));
        let reply = http_exchange(
            &self.address,
            "POST",
            "/realms/ops/protocol/openid-connect/token",
            Some("grant_type=client_credentials&resource=urn%3Aconcierge%3Aapi&scope=api"),
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Authorization", &basic),
            ],
        );
        assert_eq!(reply.status, 200, "token request: {}", reply.body);
        let v: serde_json::Value = serde_json::from_str(&reply.body).expect("token JSON");
        v["access_token"]
            .as_str()
            .expect("an access_token")
            .to_owned()
    }
}

impl Drop for RealIssuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
