//! OIDC access tokens against the real daemon: a real issuer (npm `oidc-provider`, shaped like
//! Keycloak) whose client-credentials tokens are accepted with the scopes their roles grant; a
//! Keycloak-shaped issuer in-process
//! (`concierge_tests::OidcIssuer`) for the accepted tokens and every hostile case —
//! `alg: none`, HS256 signed with the public key, expired, not yet valid, a trailing slash on
//! `iss`, another audience, the `azp` fallback off and on, an encryption key under the signing
//! `kid`, key rotation, a flood of unknown `kid`s, the issuer down at start — and roles mapped to
//! scopes.

use std::time::{Duration, Instant};

use concierge_tests::{
    Daemon, OidcIssuer, RealIssuer, SigningKey, hs256_token, model_dir, temp_dir, unsigned_token,
    workspace_root,
};
use serde_json::{Value, json};

const AUDIENCE: &str = "concierge";

fn start(issuer: &str, extra: &[(&str, &str)]) -> (Daemon, tempfile::TempDir) {
    let dir = temp_dir();
    let model = model_dir();
    let mut env = vec![
        ("CONCIERGE_AUTH__OIDC_ISSUER", issuer),
        ("CONCIERGE_AUTH__OIDC_AUDIENCE", AUDIENCE),
        ("CONCIERGE_AUTH__API_TOKENS", "static-admin"),
        ("CONCIERGE_AUTH__OIDC_MIN_REFRESH_SECONDS", "1"),
    ];
    env.extend_from_slice(extra);
    let d = Daemon::start_with_env(
        &[
            "--model-dir",
            model.to_str().expect("utf-8"),
            "--data-dir",
            dir.path().join("data").to_str().expect("utf-8"),
        ],
        &env,
        &workspace_root(),
    );
    (d, dir)
}

fn call(d: &Daemon, method: &str, path: &str, body: Option<&str>, token: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    d.request(
        method,
        path,
        body,
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
    )
}

fn status(d: &Daemon, token: &str) -> (u16, String) {
    call(d, "GET", "/v1/admin/status", None, token)
}

/// Waits until the daemon has fetched the issuer's keys.
fn wait_ready(d: &Daemon) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = status(d, "static-admin");
        let v: Value = serde_json::from_str(&body).expect("status");
        if v["oidc"]["state"] == "ready" {
            return v;
        }
        assert!(Instant::now() < deadline, "OIDC never ready: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn refused(answer: (u16, String), because: &str) {
    let (s, body) = answer;
    assert_eq!(s, 401, "{body}");
    let detail = serde_json::from_str::<Value>(&body).expect("a problem body")["detail"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(detail.contains(because), "expected {because:?} in {detail}");
}

#[test]
fn keycloak_tokens_are_accepted_with_the_scopes_their_roles_grant_whatever_the_algorithm() {
    let rsa = SigningKey::rsa("rsa-1");
    let ec = SigningKey::ec("ec-1");
    let issuer = OidcIssuer::start_on(0, vec![rsa.jwk().clone(), ec.jwk().clone()]);
    let (d, _dir) = start(&issuer.issuer, &[]);
    wait_ready(&d);
    let reader = issuer.claims(AUDIENCE, &["concierge-read", "offline_access"], &[]);
    for token in [
        rsa.sign(
            &json!({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}),
            &reader,
        ),
        rsa.sign(&json!({"alg": "PS256", "kid": "rsa-1"}), &reader),
        ec.sign(
            &json!({"alg": "ES256", "kid": "ec-1", "typ": "at+jwt"}),
            &reader,
        ),
    ] {
        let (s, b) = status(&d, &token);
        assert_eq!(s, 200, "{b}");
        // Read only: a write is 403 naming the scope.
        let doc = json!({"id": "ops:oidc:1", "text": "x", "updated_at": 1}).to_string();
        let (s, b) = call(&d, "POST", "/v1/documents", Some(&doc), &token);
        assert_eq!(s, 403, "{b}");
        assert!(b.contains("`write`"), "{b}");
    }
    // A client role of the audience grants admin; a role of another client grants nothing.
    let admin = rsa.sign(
        &json!({"alg": "RS256", "kid": "rsa-1"}),
        &issuer.claims(AUDIENCE, &[], &["concierge-admin"]),
    );
    let doc = json!({"id": "ops:oidc:2", "text": "x", "updated_at": 1}).to_string();
    assert_eq!(call(&d, "POST", "/v1/documents", Some(&doc), &admin).0, 202);
    assert_eq!(
        call(&d, "DELETE", "/v1/documents/ops:oidc:2", None, &admin).0,
        202
    );
    let mut elsewhere = issuer.claims(AUDIENCE, &[], &[]);
    elsewhere["resource_access"] = json!({"other-app": {"roles": ["concierge-admin"]}});
    let (s, b) = status(
        &d,
        &rsa.sign(&json!({"alg": "RS256", "kid": "rsa-1"}), &elsewhere),
    );
    assert_eq!(s, 403, "{b}");
    assert!(b.contains("none of the roles"), "{b}");
    // The static token still works beside OIDC.
    assert_eq!(status(&d, "static-admin").0, 200);
}

#[test]
fn forged_expired_misaddressed_and_confused_tokens_are_refused_with_the_reason() {
    let rsa = SigningKey::rsa("rsa-1");
    let ec = SigningKey::ec("rsa-1-enc");
    // Keycloak's certs endpoint may publish an encryption key under the signing key's kid.
    let mut enc = ec.jwk().clone();
    enc["kid"] = json!("rsa-1");
    enc["use"] = json!("enc");
    enc["alg"] = json!("ECDH-ES");
    let issuer = OidcIssuer::start_on(0, vec![enc, rsa.jwk().clone()]);
    let (d, _dir) = start(&issuer.issuer, &[]);
    wait_ready(&d);
    let header = json!({"alg": "RS256", "kid": "rsa-1"});
    let good = issuer.claims(AUDIENCE, &["concierge-read"], &[]);
    assert_eq!(
        status(&d, &rsa.sign(&header, &good)).0,
        200,
        "signing key chosen over the enc key"
    );

    refused(
        status(&d, &unsigned_token("rsa-1", &good)),
        "\"none\" is not accepted",
    );
    // HS256 keyed with the public key's bytes (the algorithm-confusion attack).
    let public = rsa.jwk()["n"].as_str().unwrap_or("").as_bytes().to_vec();
    refused(
        status(&d, &hs256_token("rsa-1", &public, &good)),
        "\"HS256\" is not accepted",
    );
    let mut c = good.clone();
    c["exp"] = json!(c["exp"].as_i64().unwrap_or(0) - 400);
    refused(status(&d, &rsa.sign(&header, &c)), "expired");
    let mut c = good.clone();
    c["nbf"] = json!(c["exp"].as_i64().unwrap_or(0));
    refused(status(&d, &rsa.sign(&header, &c)), "not valid yet");
    let mut c = good.clone();
    c["iss"] = json!(format!("{}/", issuer.issuer));
    refused(status(&d, &rsa.sign(&header, &c)), "issuer");
    let mut c = good.clone();
    c["aud"] = json!(["account", "another-api"]);
    refused(status(&d, &rsa.sign(&header, &c)), "not meant for this API");
    // Keycloak without an audience mapper: only azp names the API. Refused unless configured.
    let mut azp_only = good.clone();
    azp_only["aud"] = json!("account");
    refused(
        status(&d, &rsa.sign(&header, &azp_only)),
        "not meant for this API",
    );
    // A signature of other claims.
    let token = rsa.sign(&header, &good);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = rsa
        .sign(&header, &c)
        .split('.')
        .nth(1)
        .unwrap_or("")
        .to_owned();
    refused(status(&d, &parts.join(".")), "signature");
    refused(status(&d, "not-a-jwt"), "not a JWT");

    let (d2, _dir2) = start(
        &issuer.issuer,
        &[("CONCIERGE_AUTH__OIDC_ACCEPT_AZP", "true")],
    );
    wait_ready(&d2);
    assert_eq!(status(&d2, &rsa.sign(&header, &azp_only)).0, 200);
}

#[test]
fn a_rotated_key_is_fetched_when_first_seen_and_the_removed_one_is_refused() {
    let old = SigningKey::rsa("k-old");
    let new = SigningKey::ec("k-new");
    let issuer = OidcIssuer::start_on(0, vec![old.jwk().clone()]);
    let (d, _dir) = start(&issuer.issuer, &[]);
    wait_ready(&d);
    let claims = issuer.claims(AUDIENCE, &["concierge-read"], &[]);
    let old_token = old.sign(&json!({"alg": "RS256", "kid": "k-old"}), &claims);
    let new_token = new.sign(&json!({"alg": "ES256", "kid": "k-new"}), &claims);
    assert_eq!(status(&d, &old_token).0, 200);
    issuer.set_keys(vec![new.jwk().clone()]);
    std::thread::sleep(Duration::from_millis(1100)); // the least time between two fetches
    let (s, b) = status(&d, &new_token);
    assert_eq!(s, 200, "the new kid triggers a fetch: {b}");
    std::thread::sleep(Duration::from_millis(1100));
    refused(status(&d, &old_token), "no signing key");
}

#[test]
fn a_flood_of_unknown_kids_fetches_the_key_set_at_most_once_per_interval() {
    let key = SigningKey::ec("k1");
    let issuer = OidcIssuer::start_on(0, vec![key.jwk().clone()]);
    let (d, _dir) = start(
        &issuer.issuer,
        &[("CONCIERGE_AUTH__OIDC_MIN_REFRESH_SECONDS", "60")],
    );
    wait_ready(&d);
    let before = issuer.jwks_fetches();
    let claims = issuer.claims(AUDIENCE, &["concierge-read"], &[]);
    for i in 0..40 {
        let token = key.sign(
            &json!({"alg": "ES256", "kid": format!("made-up-{i}")}),
            &claims,
        );
        refused(status(&d, &token), "no signing key");
    }
    assert!(
        issuer.jwks_fetches() <= before + 1,
        "{} fetches for 40 unknown kids",
        issuer.jwks_fetches() - before
    );
    // The real key still works.
    let token = key.sign(&json!({"alg": "ES256", "kid": "k1"}), &claims);
    assert_eq!(status(&d, &token).0, 200);
}

#[test]
fn the_issuer_down_at_start_leaves_static_tokens_working_and_is_picked_up_when_it_comes() {
    let port = concierge_tests::free_port();
    let issuer_url = format!("http://127.0.0.1:{port}/realms/ops");
    let (d, _dir) = start(&issuer_url, &[]);
    assert_eq!(status(&d, "static-admin").0, 200, "static tokens work");
    let (_, body) = status(&d, "static-admin");
    let v: Value = serde_json::from_str(&body).expect("status");
    assert_eq!(v["oidc"]["state"], "unavailable", "{v}");
    assert!(
        v["oidc"]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("cannot be reached"),
        "{v}"
    );
    assert_eq!(d.get("/readyz").0, 200);
    let key = SigningKey::ec("k1");
    // Tokens before the issuer is up: 401 saying the keys are not available.
    let early = OidcIssuer::start_on(0, vec![]);
    let claims_for = |iss: &str| {
        let mut c = early.claims(AUDIENCE, &["concierge-read"], &[]);
        c["iss"] = json!(iss);
        c
    };
    let token = key.sign(
        &json!({"alg": "ES256", "kid": "k1"}),
        &claims_for(&issuer_url),
    );
    refused(status(&d, &token), "keys are not available");
    // The issuer comes up on that port: the daemon picks it up by itself.
    let issuer = OidcIssuer::start_on(port, vec![key.jwk().clone()]);
    assert_eq!(issuer.issuer, issuer_url);
    wait_ready(&d);
    assert_eq!(status(&d, &token).0, 200);
}

#[test]
fn a_real_issuers_client_credentials_tokens_get_the_scopes_of_their_roles() {
    let issuer = RealIssuer::start(AUDIENCE);
    let (d, _dir) = start(&issuer.issuer, &[]);
    wait_ready(&d);
    let reader = issuer.token("ops-reader", "reader-secret");
    let admin = issuer.token("ops-admin", "admin-secret");
    // The reader (realm role concierge-read) reads, and may not write.
    let (s, b) = call(
        &d,
        "POST",
        "/v1/search",
        Some(r#"{"query": "late check-in"}"#),
        &reader,
    );
    assert_eq!(s, 200, "{b}");
    let doc =
        json!({"id": "ops:oidc:real", "text": "pool heater fixed", "updated_at": 1}).to_string();
    let (s, b) = call(&d, "POST", "/v1/documents", Some(&doc), &reader);
    assert_eq!(s, 403, "{b}");
    // The admin (client role concierge-admin under the audience) writes and deletes.
    assert_eq!(call(&d, "POST", "/v1/documents", Some(&doc), &admin).0, 202);
    assert_eq!(
        call(&d, "DELETE", "/v1/documents/ops:oidc:real", None, &admin).0,
        202
    );
    // Another issuer's token (its own key under the same kid) and a token for another audience
    // are not for us.
    let other = RealIssuer::start("another-api");
    let (d2, _dir2) = start(&other.issuer, &[]);
    wait_ready(&d2);
    let foreign = issuer.token("ops-admin", "admin-secret");
    refused(status(&d2, &foreign), "signature does not verify");
    let foreign_aud = other.token("ops-admin", "admin-secret");
    refused(status(&d2, &foreign_aud), "not meant for this API");
}
