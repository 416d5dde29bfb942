//! Google's service-account sign-in for Firestore: the credentials file's RSA key signs an RS256
//! JWT assertion (`iss` the account, `scope` datastore, `aud` the token URI, an hour at most),
//! exchanged at the token URI (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`) for an
//! access token, which is cached and renewed a minute before it expires. The key never leaves
//! memory and never appears in `Debug`, logs or errors.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::{Value, json};

/// The scope Firestore's REST API needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/datastore";
/// A token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(60);

/// Access tokens for one service account.
pub struct TokenSource {
    email: String,
    token_uri: String,
    key: RsaKeyPair,
    agent: ureq::Agent,
    cached: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("email", &self.email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// Reads a service-account credentials file (`type: service_account`, `client_email`,
    /// `private_key` as PKCS#8 PEM, `token_uri`).
    pub fn from_file(path: &std::path::Path) -> Result<TokenSource, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("firestore.credentials_file {}: {e}", path.display()))?;
        let v: Value = serde_json::from_str(&text).map_err(|_| {
            format!(
                "firestore.credentials_file {}: not a JSON credentials file",
                path.display()
            )
        })?;
        let field = |k: &str| {
            v[k].as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("firestore.credentials_file {}: no {k}", path.display()))
        };
        if v["type"].as_str() != Some("service_account") {
            return Err(format!(
                "firestore.credentials_file {}: not a service account's key (type {:?})",
                path.display(),
                v["type"].as_str().unwrap_or("")
            ));
        }
        let pem = field("private_key")?;
        let der = pem_body(&pem).ok_or_else(|| {
            format!(
                "firestore.credentials_file {}: private_key is not a PEM private key",
                path.display()
            )
        })?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|_| {
            format!(
                "firestore.credentials_file {}: private_key is not a PKCS#8 RSA key",
                path.display()
            )
        })?;
        let agent = crate::outbound::agent(Duration::from_secs(30));
        Ok(TokenSource {
            email: field("client_email")?,
            token_uri: field("token_uri")
                .unwrap_or_else(|_| "https://oauth2.googleapis.com/token".into()),
            key,
            agent,
            cached: Mutex::new(None),
        })
    }

    /// A valid access token (cached; renewed a minute before it expires).
    pub fn bearer(&self) -> Result<String, String> {
        if let Ok(cached) = self.cached.lock()
            && let Some((token, expires)) = cached.as_ref()
            && Instant::now() + RENEW_BEFORE < *expires
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = self.exchange()?;
        if let Ok(mut cached) = self.cached.lock() {
            *cached = Some((token.clone(), Instant::now() + lifetime));
        }
        Ok(token)
    }

    /// The signed assertion.
    fn assertion(&self) -> Result<String, String> {
        let now = concierge_infra::utc::now_secs();
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "typ": "JWT"}).to_string());
        let claims = URL_SAFE_NO_PAD.encode(
            json!({"iss": self.email, "scope": SCOPE, "aud": self.token_uri, "iat": now, "exp": now + 3600})
                .to_string(),
        );
        let signing_input = format!("{header}.{claims}");
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "signing the token request failed".to_owned())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    fn exchange(&self) -> Result<(String, Duration), String> {
        let assertion = self.assertion()?;
        let body = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        );
        let mut response = self
            .agent
            .post(&self.token_uri)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(&body)
            .map_err(|e| {
                format!(
                    "the token endpoint {} cannot be reached: {e}",
                    self.token_uri
                )
            })?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status != 200 {
            let why = v["error_description"]
                .as_str()
                .or(v["error"].as_str())
                .unwrap_or("no reason given");
            return Err(format!(
                "the token endpoint refused the service account {} ({status}): {why}",
                self.email
            ));
        }
        let token = v["access_token"]
            .as_str()
            .ok_or_else(|| "the token endpoint's answer has no access_token".to_owned())?;
        let lifetime = Duration::from_secs(v["expires_in"].as_u64().unwrap_or(3600));
        Ok((token.to_owned(), lifetime))
    }
}

/// The DER bytes of a PEM block.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
        .collect();
    STANDARD.decode(body).ok()
}
