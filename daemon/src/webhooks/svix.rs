//! Svix (Standard Webhooks) signature verification, as Guesty signs its webhooks: HMAC-SHA256 with
//! the base64-decoded bytes after `whsec_`, over `"{svix-id}.{svix-timestamp}.{raw body}"`, base64,
//! compared in constant time against every `v1,` entry of `svix-signature`, with a 5-minute
//! tolerance on the timestamp (past or future).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// How far the timestamp may be from now.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// Why a delivery was refused. The variants name what a sender can fix; none leaks the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SvixError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("svix-timestamp is not a Unix time in seconds")]
    BadTimestamp,
    #[error("svix-timestamp is more than 5 minutes away from now")]
    StaleTimestamp,
    #[error("no v1 signature matches")]
    NoMatch,
}

/// The signing key: base64-decoded bytes after `whsec_`.
pub fn key_of(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.strip_prefix("whsec_")?).ok()
}

/// HMAC-SHA256 (RFC 2104) with `sha2` alone.
pub fn hmac_sha256(key: &[u8], message: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    for part in message {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The `v1,<base64>` signature of a message.
#[cfg(test)]
pub fn sign(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    format!(
        "v1,{}",
        STANDARD.encode(hmac_sha256(
            key,
            &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body]
        ))
    )
}

/// Verifies a delivery; `now` is Unix seconds.
pub fn verify(
    key: &[u8],
    id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SvixError> {
    let id = id.ok_or(SvixError::MissingHeader("svix-id"))?;
    let timestamp = timestamp.ok_or(SvixError::MissingHeader("svix-timestamp"))?;
    let signatures = signatures.ok_or(SvixError::MissingHeader("svix-signature"))?;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SvixError::BadTimestamp)?;
    if (now - ts).abs() > TOLERANCE_SECONDS {
        return Err(SvixError::StaleTimestamp);
    }
    let expected = hmac_sha256(
        key,
        &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    );
    let mut matched = false;
    for entry in signatures.split_whitespace() {
        let Some(b64) = entry.strip_prefix("v1,") else {
            continue;
        };
        let Ok(given) = STANDARD.decode(b64) else {
            continue;
        };
        matched |= crate::verify::constant_time_eq(&given, &expected);
    }
    if matched {
        Ok(())
    } else {
        Err(SvixError::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_formats_test_vector_verifies() {
        let key = key_of("whsec_c2VjcmV0LWtleS1ieXRlcw==").expect("key");
        assert_eq!(key, b"secret-key-bytes");
        let body = br#"{"event":"reservation.updated.v2","data":{"reservationId":"6651f0c2a1b2c3d4e5f60718"}}"#;
        let sig = "v1,Y1d4xYfBLE0gNnJqiigFEvRue/jIjo9FFeDedaifneg=";
        assert_eq!(sign(&key, "msg_2aBcD", "1767225600", body), sig);
        verify(
            &key,
            Some("msg_2aBcD"),
            Some("1767225600"),
            Some(&format!("v1,bm90IGl0 {sig}")),
            body,
            1767225600 + 60,
        )
        .expect("valid");
    }

    #[test]
    fn tampering_old_timestamps_and_missing_headers_are_refused() {
        let key = b"k".to_vec();
        let sig = sign(&key, "m", "1000", b"{}");
        assert_eq!(
            verify(&key, Some("m"), Some("1000"), Some(&sig), b"{ }", 1000),
            Err(SvixError::NoMatch)
        );
        assert_eq!(
            verify(&key, Some("m"), Some("1000"), Some(&sig), b"{}", 1000 + 301),
            Err(SvixError::StaleTimestamp)
        );
        assert_eq!(
            verify(&key, Some("m"), Some("1000"), Some(&sig), b"{}", 1000 - 301),
            Err(SvixError::StaleTimestamp)
        );
        assert_eq!(
            verify(&key, None, Some("1000"), Some(&sig), b"{}", 1000),
            Err(SvixError::MissingHeader("svix-id"))
        );
        assert_eq!(
            verify(&key, Some("m"), Some("soon"), Some(&sig), b"{}", 1000),
            Err(SvixError::BadTimestamp)
        );
        assert_eq!(
            verify(&key, Some("m"), Some("1000"), Some("v2,abc"), b"{}", 1000),
            Err(SvixError::NoMatch)
        );
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
