//! OIDC access tokens (`[auth] oidc_issuer`, `oidc_audience`): the issuer's keys found through
//! `{issuer}/.well-known/openid-configuration` → `jwks_uri`, cached, refreshed every
//! `oidc_refresh_seconds` and when a token names a key the cache lacks — at most once per
//! `oidc_min_refresh_seconds`, so a flood of tokens with made-up `kid`s cannot hammer the
//! issuer. The issuer being unreachable never stops the daemon: static tokens keep working, OIDC
//! tokens get 401s saying why, the status shows the error, and the next refresh recovers.
//! Token checks are in [`jwt`]. A token verified once is remembered (by its SHA-256, until its
//! `exp`; forgotten when the key set changes), so a client's repeated calls cost a hash.

pub mod jwt;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use jwt::{Expect, TokenError};

/// What the verifier is configured with.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// Exactly as tokens carry it in `iss` (Keycloak: `https://host/realms/<realm>`).
    pub issuer: String,
    pub audience: String,
    pub accept_azp: bool,
    pub leeway: Duration,
    pub refresh_every: Duration,
    pub min_refresh_interval: Duration,
    /// A dotted path to more roles (an array of strings, or one space-separated string).
    pub roles_claim: Option<String>,
}

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    /// `preferred_username` (Keycloak), else `client_id`/`azp` for a service account.
    pub username: Option<String>,
    /// Realm roles, the audience client's roles and the configured claim's, deduplicated.
    pub roles: Vec<String>,
}

/// The issuer's keys as last fetched.
#[derive(Debug, Default)]
struct KeyCache {
    keys: Vec<Value>,
    fetched: Option<Instant>,
    last_error: Option<String>,
}

/// What `/v1/admin/status` shows of OIDC.
#[derive(Debug, Clone, Serialize)]
pub struct OidcStatus {
    pub issuer: String,
    /// `ready` once keys were fetched, `unavailable` before that.
    pub state: &'static str,
    pub keys: usize,
    /// Seconds since the keys were last fetched.
    pub keys_age_seconds: Option<u64>,
    /// Why the last fetch failed (cleared by a good one).
    pub last_error: Option<String>,
    /// Key-set fetches so far (each is discovery + JWKS).
    pub refreshes: u64,
}

/// The verifier of one issuer's tokens.
#[derive(Debug)]
pub struct Oidc {
    settings: OidcSettings,
    agent: ureq::Agent,
    cache: RwLock<KeyCache>,
    /// Milliseconds (since `started`) of the last fetch attempt; 0: none yet.
    last_attempt_ms: AtomicU64,
    started: Instant,
    /// One fetch at a time.
    fetching: Mutex<()>,
    refreshes: AtomicU64,
    /// Tokens verified already (by SHA-256), with their caller and `exp`: a client sends the
    /// same token many times. Emptied when the key set changes and when it grows past
    /// [`VERIFIED_CAP`].
    verified: Mutex<HashMap<[u8; 32], (Caller, i64)>>,
}

/// Most verified tokens remembered.
const VERIFIED_CAP: usize = 4096;

impl Oidc {
    pub fn new(settings: OidcSettings) -> Oidc {
        Oidc {
            settings,
            agent: crate::outbound::agent(Duration::from_secs(10)),
            cache: RwLock::new(KeyCache::default()),
            last_attempt_ms: AtomicU64::new(0),
            started: Instant::now(),
            fetching: Mutex::new(()),
            refreshes: AtomicU64::new(0),
            verified: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// Checks `token` against the cached keys; never blocks on the network. A token verified
    /// before is only checked for expiry again.
    pub fn verify_cached(&self, token: &str) -> Result<Caller, TokenError> {
        let now = concierge_infra::utc::now_secs();
        let leeway = self.settings.leeway.as_secs() as i64;
        let digest: [u8; 32] = {
            let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
            let mut out = [0u8; 32];
            out.copy_from_slice(d.as_ref());
            out
        };
        if let Some((caller, exp)) = self.remembered(&digest) {
            return if now > exp + leeway {
                Err(TokenError::Expired)
            } else {
                Ok(caller)
            };
        }
        let parsed = jwt::parse(token)?;
        {
            let cache = self
                .cache
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let key = jwt::select(&cache.keys, &parsed).ok_or_else(|| {
                TokenError::UnknownKey(parsed.kid.clone().unwrap_or_else(|| "(none)".into()))
            })?;
            jwt::verify_signature(&parsed, key)?;
        }
        jwt::check_claims(
            &parsed.claims,
            &Expect {
                issuer: &self.settings.issuer,
                audience: &self.settings.audience,
                accept_azp: self.settings.accept_azp,
                leeway_secs: leeway,
                now_secs: now,
            },
        )?;
        let caller = self.caller(&parsed.claims);
        if let Some(exp) = parsed.claims["exp"].as_i64() {
            let mut verified = self
                .verified
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if verified.len() >= VERIFIED_CAP {
                verified.clear();
            }
            verified.insert(digest, (caller.clone(), exp));
        }
        Ok(caller)
    }

    fn remembered(&self, digest: &[u8; 32]) -> Option<(Caller, i64)> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(digest)
            .cloned()
    }

    /// Whether a fetch may start now (at most one per `min_refresh_interval`); claims the slot.
    pub fn may_refresh(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let min = self.settings.min_refresh_interval.as_millis() as u64;
        let last = self.last_attempt_ms.load(Ordering::Acquire);
        if last != 0 && now < last + min {
            return false;
        }
        self.last_attempt_ms
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether the periodic refresh is due.
    pub fn refresh_due(&self) -> bool {
        let cache = self
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .fetched
            .is_none_or(|t| t.elapsed() >= self.settings.refresh_every)
    }

    /// Fetches discovery and the key set (blocking); the number of keys, or why not.
    pub fn refresh(&self) -> Result<usize, String> {
        let _one = self
            .fetching
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch_keys();
        let mut cache = self
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok(keys) => {
                let n = keys.len();
                if cache.keys != keys {
                    // A removed key must not live on in tokens verified with it.
                    self.verified
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clear();
                }
                cache.keys = keys;
                cache.fetched = Some(Instant::now());
                cache.last_error = None;
                tracing::info!(issuer = %self.settings.issuer, keys = n, "OIDC keys fetched");
                Ok(n)
            }
            Err(e) => {
                tracing::warn!(issuer = %self.settings.issuer, error = %e, "OIDC keys could not be fetched");
                cache.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    fn get_json(&self, url: &str) -> Result<Value, String> {
        let mut response = self
            .agent
            .get(url)
            .header("Accept", "application/json")
            .call()
            .map_err(|e| format!("{url} cannot be reached: {e}"))?;
        let answer = crate::outbound::read(&mut response);
        if answer.status != 200 {
            return Err(format!("{url} answered {}", answer.status));
        }
        serde_json::from_str(&answer.body).map_err(|e| format!("{url}: not JSON ({e})"))
    }

    fn fetch_keys(&self) -> Result<Vec<Value>, String> {
        let issuer = &self.settings.issuer;
        let discovery = self.get_json(&format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        ))?;
        if discovery["issuer"].as_str() != Some(issuer.as_str()) {
            return Err(format!(
                "the discovery document names issuer {:?}, not the configured {issuer:?}",
                discovery["issuer"]
            ));
        }
        let jwks_uri = discovery["jwks_uri"]
            .as_str()
            .ok_or("the discovery document has no jwks_uri")?;
        let jwks = self.get_json(jwks_uri)?;
        jwks["keys"]
            .as_array()
            .cloned()
            .ok_or_else(|| format!("{jwks_uri} has no keys array"))
    }

    fn caller(&self, claims: &Value) -> Caller {
        let mut roles: Vec<String> = Vec::new();
        let mut add = |v: &Value| match v {
            Value::Array(items) => {
                roles.extend(items.iter().filter_map(|r| r.as_str().map(str::to_owned)))
            }
            Value::String(s) => roles.extend(s.split_whitespace().map(str::to_owned)),
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::Object(_) => {}
        };
        add(&claims["realm_access"]["roles"]);
        add(&claims["resource_access"][&self.settings.audience]["roles"]);
        if let Some(path) = &self.settings.roles_claim {
            let mut v = claims;
            for part in path.split('.') {
                v = &v[part];
            }
            add(v);
        }
        roles.sort();
        roles.dedup();
        let text = |name: &str| claims[name].as_str().map(str::to_owned);
        Caller {
            subject: text("sub").unwrap_or_default(),
            username: text("preferred_username")
                .or_else(|| text("client_id"))
                .or_else(|| text("azp")),
            roles,
        }
    }

    pub fn status(&self) -> OidcStatus {
        let cache = self
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        OidcStatus {
            issuer: self.settings.issuer.clone(),
            state: if cache.fetched.is_some() {
                "ready"
            } else {
                "unavailable"
            },
            keys: cache.keys.len(),
            keys_age_seconds: cache.fetched.map(|t| t.elapsed().as_secs()),
            last_error: cache.last_error.clone(),
            refreshes: self.refreshes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn oidc(min_refresh: Duration) -> Oidc {
        Oidc::new(OidcSettings {
            issuer: "http://127.0.0.1:9/realms/ops".into(),
            audience: "concierge".into(),
            accept_azp: false,
            leeway: Duration::from_secs(30),
            refresh_every: Duration::from_secs(600),
            min_refresh_interval: min_refresh,
            roles_claim: Some("groups".into()),
        })
    }

    #[test]
    fn a_refresh_slot_is_given_once_per_interval() {
        let o = oidc(Duration::from_secs(60));
        assert!(o.may_refresh());
        assert!(!o.may_refresh());
        assert!(!o.may_refresh());
        let quick = oidc(Duration::from_millis(0));
        assert!(quick.may_refresh());
        std::thread::sleep(Duration::from_millis(2));
        assert!(quick.may_refresh());
    }

    #[test]
    fn roles_come_from_the_realm_the_audience_client_and_the_configured_claim() {
        let o = oidc(Duration::from_secs(1));
        let caller = o.caller(&json!({
            "sub": "s-1", "preferred_username": "ana",
            "realm_access": {"roles": ["concierge-read", "offline_access"]},
            "resource_access": {"concierge": {"roles": ["concierge-write"]}, "other": {"roles": ["concierge-admin"]}},
            "groups": ["ops", "concierge-read"]
        }));
        assert_eq!(caller.subject, "s-1");
        assert_eq!(caller.username.as_deref(), Some("ana"));
        assert_eq!(
            caller.roles,
            ["concierge-read", "concierge-write", "offline_access", "ops"]
        );
    }

    #[test]
    fn an_unreachable_issuer_is_an_error_in_the_status_not_a_panic() {
        let o = oidc(Duration::from_secs(1));
        assert_eq!(o.status().state, "unavailable");
        let e = o.refresh().err().unwrap_or_default();
        assert!(e.contains("cannot be reached"), "{e}");
        let s = o.status();
        assert_eq!(s.state, "unavailable");
        assert_eq!(s.refreshes, 1);
        assert!(s.last_error.is_some());
    }
}
