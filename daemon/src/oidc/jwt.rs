//! JWT access tokens checked the way a Keycloak resource server must
//! (`../shared/real-components.md` §4): compact JWS only; `alg` one of RS256, PS256, ES256
//! (`none` and every HMAC algorithm refused, whatever the key set holds); the key chosen by
//! `kid` + `use: sig` + a key type and `alg` that fit the header (an `enc` key under the signing
//! key's `kid` is passed over); `iss` equal to the configured issuer byte for byte; `exp`
//! required and `nbf` honoured with a small leeway; `aud` containing the audience, or — only
//! when configured — `azp` equal to it (Keycloak without an audience mapper).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

/// Why a token was refused (the text goes into a 401's detail and the log; never the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a JWT (three base64url parts)")]
    Malformed,
    #[error("JWT algorithm {0:?} is not accepted (RS256, PS256, ES256 only)")]
    Algorithm(String),
    #[error("no signing key {0:?} in the issuer's key set")]
    UnknownKey(String),
    #[error("the signature does not verify")]
    Signature,
    #[error("the token is from issuer {0:?}, not the configured one")]
    Issuer(String),
    #[error("the token expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token has no exp")]
    NoExpiry,
    #[error("the token is not meant for this API (aud{0})")]
    Audience(&'static str),
}

/// The algorithms accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Ps256,
    Es256,
}

impl Alg {
    fn parse(name: &str) -> Result<Alg, TokenError> {
        match name {
            "RS256" => Ok(Alg::Rs256),
            "PS256" => Ok(Alg::Ps256),
            "ES256" => Ok(Alg::Es256),
            other => Err(TokenError::Algorithm(other.to_owned())),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Ps256 => "PS256",
            Alg::Es256 => "ES256",
        }
    }

    fn key_type(self) -> &'static str {
        match self {
            Alg::Rs256 | Alg::Ps256 => "RSA",
            Alg::Es256 => "EC",
        }
    }
}

/// A token split and decoded, not yet trusted.
#[derive(Debug)]
pub struct Parsed {
    pub alg: Alg,
    pub kid: Option<String>,
    pub claims: Value,
    signed: Vec<u8>,
    signature: Vec<u8>,
}

/// Splits and decodes a compact JWS; refuses unknown algorithms before anything else.
pub fn parse(token: &str) -> Result<Parsed, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| TokenError::Malformed);
    let header: Value = serde_json::from_slice(&decode(h)?).map_err(|_| TokenError::Malformed)?;
    let alg = Alg::parse(header["alg"].as_str().unwrap_or(""))?;
    let claims: Value = serde_json::from_slice(&decode(c)?).map_err(|_| TokenError::Malformed)?;
    if !claims.is_object() {
        return Err(TokenError::Malformed);
    }
    Ok(Parsed {
        alg,
        kid: header["kid"].as_str().map(str::to_owned),
        claims,
        signed: format!("{h}.{c}").into_bytes(),
        signature: decode(s)?,
    })
}

/// The key of `keys` (a JWKS's `keys`) that may verify `parsed`: same `kid` (any when the token
/// names none and the set holds one fitting key), `use` absent or `sig`, key type and `alg`
/// fitting the token's algorithm.
pub fn select<'a>(keys: &'a [Value], parsed: &Parsed) -> Option<&'a Value> {
    let fits = |k: &&Value| {
        k["use"].as_str().is_none_or(|u| u == "sig")
            && k["kty"].as_str() == Some(parsed.alg.key_type())
            && k["alg"].as_str().is_none_or(|a| a == parsed.alg.name())
            && (parsed.alg != Alg::Es256 || k["crv"].as_str() == Some("P-256"))
    };
    match &parsed.kid {
        Some(kid) => keys
            .iter()
            .filter(|k| k["kid"].as_str() == Some(kid.as_str()))
            .find(fits),
        None => {
            let mut fitting = keys.iter().filter(fits);
            let only = fitting.next();
            fitting.next().is_none().then_some(only).flatten()
        }
    }
}

/// Checks the signature of `parsed` with the JWK `key`.
pub fn verify_signature(parsed: &Parsed, key: &Value) -> Result<(), TokenError> {
    let b64 = |name: &str| {
        key[name]
            .as_str()
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
            .ok_or(TokenError::Signature)
    };
    let result = match parsed.alg {
        Alg::Rs256 | Alg::Ps256 => {
            let components = RsaPublicKeyComponents {
                n: b64("n")?,
                e: b64("e")?,
            };
            let params = if parsed.alg == Alg::Rs256 {
                &signature::RSA_PKCS1_2048_8192_SHA256
            } else {
                &signature::RSA_PSS_2048_8192_SHA256
            };
            components.verify(params, &parsed.signed, &parsed.signature)
        }
        Alg::Es256 => {
            let (x, y) = (b64("x")?, b64("y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err(TokenError::Signature);
            }
            let mut point = Vec::with_capacity(65);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(&parsed.signed, &parsed.signature)
        }
    };
    result.map_err(|_| TokenError::Signature)
}

/// What the claims must say.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    /// Accept `azp` = audience when `aud` lacks it.
    pub accept_azp: bool,
    pub leeway_secs: i64,
    pub now_secs: i64,
}

/// Checks `iss`, `exp`, `nbf` and `aud` (or `azp`).
pub fn check_claims(claims: &Value, expect: &Expect<'_>) -> Result<(), TokenError> {
    let iss = claims["iss"].as_str().unwrap_or("");
    if iss != expect.issuer {
        return Err(TokenError::Issuer(iss.to_owned()));
    }
    let exp = claims["exp"].as_i64().ok_or(TokenError::NoExpiry)?;
    if expect.now_secs > exp + expect.leeway_secs {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = claims["nbf"].as_i64()
        && expect.now_secs + expect.leeway_secs < nbf
    {
        return Err(TokenError::NotYetValid);
    }
    let in_aud = match &claims["aud"] {
        Value::String(a) => a == expect.audience,
        Value::Array(list) => list.iter().any(|a| a.as_str() == Some(expect.audience)),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::Object(_) => false,
    };
    if in_aud {
        return Ok(());
    }
    if !expect.accept_azp {
        return Err(TokenError::Audience(" does not name it"));
    }
    if claims["azp"].as_str() == Some(expect.audience) {
        Ok(())
    } else {
        Err(TokenError::Audience(" and azp do not name it"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    fn b64(v: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    fn es256_key() -> (EcdsaKeyPair, Value) {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("generate");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("key");
        let public = pair.public_key().as_ref().to_vec();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ec1", "use": "sig", "alg": "ES256",
                         "x": b64(&public[1..33]), "y": b64(&public[33..65])});
        (pair, jwk)
    }

    fn sign_es256(pair: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
        let signed = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = pair
            .sign(&SystemRandom::new(), signed.as_bytes())
            .expect("sign");
        format!("{signed}.{}", b64(sig.as_ref()))
    }

    fn expect(now: i64) -> Expect<'static> {
        Expect {
            issuer: "https://sso.example.com/realms/ops",
            audience: "concierge",
            accept_azp: false,
            leeway_secs: 30,
            now_secs: now,
        }
    }

    fn claims(now: i64) -> Value {
        json!({"iss": "https://sso.example.com/realms/ops", "aud": ["account", "concierge"],
               "exp": now + 300, "nbf": now - 5, "sub": "u1"})
    }

    #[test]
    fn an_es256_token_verifies_with_its_key_and_not_with_a_changed_claim() {
        let (pair, jwk) = es256_key();
        let token = sign_es256(&pair, &json!({"alg": "ES256", "kid": "ec1"}), &claims(1000));
        let parsed = parse(&token).expect("parse");
        let keys = vec![jwk];
        let key = select(&keys, &parsed).expect("key");
        assert!(verify_signature(&parsed, key).is_ok());
        assert!(check_claims(&parsed.claims, &expect(1000)).is_ok());
        // Swap in other claims under the same signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = b64(json!({"iss": "x"}).to_string().as_bytes());
        parts[1] = &forged;
        let parsed = parse(&parts.join(".")).expect("parse");
        assert_eq!(verify_signature(&parsed, key), Err(TokenError::Signature));
    }

    #[test]
    fn none_and_hmac_algorithms_are_refused_before_any_key_is_looked_at() {
        for alg in ["none", "HS256", "HS512", "RS512", ""] {
            let token = format!(
                "{}.{}.",
                b64(json!({"alg": alg, "kid": "k"}).to_string().as_bytes()),
                b64(b"{}")
            );
            assert!(
                matches!(parse(&token), Err(TokenError::Algorithm(_))),
                "{alg}"
            );
        }
        assert_eq!(parse("a.b").err(), Some(TokenError::Malformed));
        assert_eq!(parse("a.b.c.d").err(), Some(TokenError::Malformed));
    }

    #[test]
    fn an_encryption_key_under_the_signing_kid_is_passed_over() {
        let (pair, jwk) = es256_key();
        let token = sign_es256(&pair, &json!({"alg": "ES256", "kid": "ec1"}), &claims(1000));
        let parsed = parse(&token).expect("parse");
        let enc = json!({"kty": "EC", "crv": "P-256", "kid": "ec1", "use": "enc", "alg": "ECDH-ES",
                         "x": jwk["x"], "y": jwk["y"]});
        let rsa_same_kid =
            json!({"kty": "RSA", "kid": "ec1", "use": "sig", "n": "AQAB", "e": "AQAB"});
        let keys = vec![enc, rsa_same_kid, jwk.clone()];
        assert_eq!(select(&keys, &parsed), Some(&jwk));
        assert_eq!(select(&keys[..2], &parsed), None);
    }

    #[test]
    fn issuer_time_and_audience_are_checked_with_leeway_and_the_azp_fallback_only_when_asked() {
        let now = 10_000;
        let e = expect(now);
        let mut c = claims(now);
        c["iss"] = json!("https://sso.example.com/realms/ops/");
        assert!(matches!(check_claims(&c, &e), Err(TokenError::Issuer(_))));
        let mut c = claims(now);
        c["exp"] = json!(now - 31);
        assert_eq!(check_claims(&c, &e), Err(TokenError::Expired));
        c["exp"] = json!(now - 29);
        assert!(check_claims(&c, &e).is_ok(), "within the leeway");
        let mut c = claims(now);
        c["nbf"] = json!(now + 31);
        assert_eq!(check_claims(&c, &e), Err(TokenError::NotYetValid));
        let mut c = claims(now);
        c.as_object_mut().map(|o| o.remove("exp"));
        assert_eq!(check_claims(&c, &e), Err(TokenError::NoExpiry));
        let mut c = claims(now);
        c["aud"] = json!("account");
        c["azp"] = json!("concierge");
        assert!(matches!(check_claims(&c, &e), Err(TokenError::Audience(_))));
        let with_azp = Expect {
            accept_azp: true,
            ..e.clone()
        };
        assert!(check_claims(&c, &with_azp).is_ok());
        c["azp"] = json!("other");
        assert!(matches!(
            check_claims(&c, &with_azp),
            Err(TokenError::Audience(_))
        ));
        let mut c = claims(now);
        c["aud"] = json!("concierge");
        assert!(check_claims(&c, &e).is_ok());
    }
}
