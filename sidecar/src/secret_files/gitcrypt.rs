//! git-crypt's formats, as git-crypt 0.7 writes them (AGWA/git-crypt `key.cpp`, `crypto.cpp`,
//! `commands.cpp`; `../shared/real-components.md` §3), so CI needs neither the git-crypt binary
//! nor GPG, and a developer with `git-crypt unlock` reads what we write.
//!
//! - Key file (`git-crypt export-key`): `"\0GITCRYPTKEY"`, format version 2 (big-endian u32),
//!   header fields `(id, len, bytes)` up to id 0 (1 = key name), then entries to the end of the
//!   file, each fields up to id 0: 1 = key version (4 bytes), 3 = AES key (32), 5 = HMAC key
//!   (64). An unknown odd id is critical (refused), an unknown even one skipped. A legacy key is
//!   the 96 raw bytes (AES then HMAC).
//! - Encrypted file: `"\0GITCRYPT\0"`, a 12-byte nonce, then the ciphertext (as long as the
//!   plaintext). The nonce is the first 12 bytes of HMAC-SHA1(hmac key, plaintext), so the same
//!   plaintext always encrypts to the same bytes; AES-256-CTR with the counter block nonce ‖
//!   big-endian u32 block index. Decryption recomputes the HMAC and compares in constant time.

use aes::Aes256;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

const KEY_PREAMBLE: &[u8; 12] = b"\0GITCRYPTKEY";
const FORMAT_VERSION: u32 = 2;
/// The header of an encrypted file.
pub const FILE_HEADER: &[u8; 10] = b"\0GITCRYPT\0";
const NONCE_LEN: usize = 12;
const AES_KEY_LEN: usize = 32;
const HMAC_KEY_LEN: usize = 64;
/// Fields git-crypt skips are bounded (its own limit).
const MAX_FIELD_LEN: u32 = 1 << 20;

type Aes256Ctr = ctr::Ctr32BE<Aes256>;

/// Why a key or a file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitCryptError {
    #[error("not a git-crypt key file: {0}")]
    BadKey(String),
    #[error(
        "the git-crypt key file uses format version {0}; this reads version 2 (git-crypt 0.4+)"
    )]
    KeyVersion(u32),
    #[error("the git-crypt key file has no key version {0}: unlock with the latest key")]
    NoKeyVersion(u32),
    #[error("truncated: {0} bytes, shorter than git-crypt's 22-byte header")]
    Truncated(usize),
    #[error("not encrypted with git-crypt (no \\0GITCRYPT\\0 header)")]
    NotEncrypted,
    /// The HMAC does not match: changed after encryption, or another key.
    #[error(
        "the file fails git-crypt's integrity check: it was changed after encryption, or it was encrypted with another key"
    )]
    Tampered,
}

/// One key version: the AES and HMAC keys (wiped on drop).
#[derive(Clone)]
pub struct KeyEntry {
    pub version: u32,
    aes: Zeroizing<[u8; AES_KEY_LEN]>,
    hmac: Zeroizing<[u8; HMAC_KEY_LEN]>,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A git-crypt key file.
#[derive(Debug, Clone)]
pub struct Key {
    /// The key's name (`git-crypt init -k NAME`), when it has one.
    pub name: Option<String>,
    entries: Vec<KeyEntry>,
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GitCryptError> {
        if self.bytes.len() < n {
            return Err(GitCryptError::BadKey(
                "it ends in the middle of a field".into(),
            ));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, GitCryptError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The next `(id, value)` of a field list (`what`: header or key); `None` at its end (id 0).
    /// An unknown odd id is critical (refused), as in git-crypt; `known` says which ids are.
    fn field(
        &mut self,
        what: &str,
        known: &[u32],
    ) -> Result<Option<(u32, &'a [u8])>, GitCryptError> {
        let id = self.u32()?;
        if id == 0 {
            return Ok(None);
        }
        let len = self.u32()?;
        if len > MAX_FIELD_LEN {
            return Err(GitCryptError::BadKey(format!(
                "{what} field {id} is {len} bytes long"
            )));
        }
        let value = self.take(len as usize)?;
        if id & 1 == 1 && !known.contains(&id) {
            return Err(GitCryptError::BadKey(format!(
                "critical {what} field {id} this version does not know"
            )));
        }
        Ok(Some((id, value)))
    }
}

impl Key {
    /// Reads a key file: format 2, or a legacy 96-byte key.
    pub fn parse(bytes: &[u8]) -> Result<Key, GitCryptError> {
        if !bytes.starts_with(KEY_PREAMBLE) {
            if bytes.len() == AES_KEY_LEN + HMAC_KEY_LEN {
                return Ok(Key {
                    name: None,
                    entries: vec![entry(0, &bytes[..AES_KEY_LEN], &bytes[AES_KEY_LEN..])],
                });
            }
            return Err(GitCryptError::BadKey(format!(
                "no \\0GITCRYPTKEY preamble and not a 96-byte legacy key ({} bytes)",
                bytes.len()
            )));
        }
        let mut r = Reader {
            bytes: &bytes[KEY_PREAMBLE.len()..],
        };
        let version = r.u32()?;
        if version != FORMAT_VERSION {
            return Err(GitCryptError::KeyVersion(version));
        }
        let mut name = None;
        while let Some((id, value)) = r.field("header", &[1])? {
            if id == 1 {
                name = Some(String::from_utf8_lossy(value).into_owned());
            }
        }
        let mut entries = Vec::new();
        while !r.bytes.is_empty() {
            let (mut version, mut aes, mut hmac) = (None, None, None);
            while let Some((id, value)) = r.field("key", &[1, 3, 5])? {
                let want = |n: usize| {
                    if value.len() == n {
                        Ok(value)
                    } else {
                        Err(GitCryptError::BadKey(format!(
                            "key field {id} is {} bytes, not {n}",
                            value.len()
                        )))
                    }
                };
                match id {
                    1 => {
                        let v = want(4)?;
                        version = Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
                    }
                    3 => aes = Some(want(AES_KEY_LEN)?),
                    5 => hmac = Some(want(HMAC_KEY_LEN)?),
                    _ => {}
                }
            }
            match (version, aes, hmac) {
                (Some(v), Some(a), Some(h)) => entries.push(entry(v, a, h)),
                _ => {
                    return Err(GitCryptError::BadKey(
                        "a key entry lacks its version, AES key or HMAC key".into(),
                    ));
                }
            }
        }
        if entries.is_empty() {
            return Err(GitCryptError::BadKey("it holds no key".into()));
        }
        Ok(Key { name, entries })
    }

    fn get(&self, version: u32) -> Result<&KeyEntry, GitCryptError> {
        self.entries
            .iter()
            .find(|e| e.version == version)
            .ok_or(GitCryptError::NoKeyVersion(version))
    }

    fn latest(&self) -> &KeyEntry {
        // `parse` refuses a key without entries.
        self.entries
            .iter()
            .max_by_key(|e| e.version)
            .unwrap_or(&self.entries[0])
    }

    /// Encrypts as `git-crypt clean` does (with the latest key version).
    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        let key = self.latest();
        let nonce = hmac(key, plaintext);
        let mut out = Vec::with_capacity(FILE_HEADER.len() + NONCE_LEN + plaintext.len());
        out.extend_from_slice(FILE_HEADER);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        keystream(key, &nonce, &mut out[start..]);
        out
    }

    /// Decrypts as `git-crypt smudge` does (key version 0), refusing a file whose HMAC does not
    /// match.
    pub fn decrypt(&self, file: &[u8]) -> Result<Zeroizing<Vec<u8>>, GitCryptError> {
        if !file.starts_with(FILE_HEADER) {
            return Err(
                if file.len() < FILE_HEADER.len()
                    && FILE_HEADER.starts_with(file)
                    && !file.is_empty()
                {
                    GitCryptError::Truncated(file.len())
                } else {
                    GitCryptError::NotEncrypted
                },
            );
        }
        if file.len() < FILE_HEADER.len() + NONCE_LEN {
            return Err(GitCryptError::Truncated(file.len()));
        }
        let key = self.get(0)?;
        let nonce: [u8; NONCE_LEN] = file[FILE_HEADER.len()..FILE_HEADER.len() + NONCE_LEN]
            .try_into()
            .map_err(|_| GitCryptError::Truncated(file.len()))?;
        let mut plain = Zeroizing::new(file[FILE_HEADER.len() + NONCE_LEN..].to_vec());
        keystream(key, &nonce, &mut plain);
        let mut check = hmac(key, &plain);
        let same: bool = check.ct_eq(&nonce).into();
        check.zeroize();
        if !same {
            return Err(GitCryptError::Tampered);
        }
        Ok(plain)
    }

    /// A new random key in format 2 (what `git-crypt keygen` writes: 148 bytes).
    pub fn generate() -> Result<Vec<u8>, String> {
        let mut keys = Zeroizing::new([0u8; AES_KEY_LEN + HMAC_KEY_LEN]);
        getrandom::fill(&mut keys[..]).map_err(|e| format!("no randomness: {e}"))?;
        let mut out = Vec::with_capacity(148);
        out.extend_from_slice(KEY_PREAMBLE);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        for (id, value) in [
            (1u32, &0u32.to_be_bytes()[..]),
            (3, &keys[..AES_KEY_LEN]),
            (5, &keys[AES_KEY_LEN..]),
        ] {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&(value.len() as u32).to_be_bytes());
            out.extend_from_slice(value);
        }
        out.extend_from_slice(&0u32.to_be_bytes());
        Ok(out)
    }
}

/// Whether `bytes` is a git-crypt encrypted file.
pub fn is_encrypted(bytes: &[u8]) -> bool {
    bytes.starts_with(FILE_HEADER)
}

fn entry(version: u32, aes: &[u8], hmac: &[u8]) -> KeyEntry {
    let mut a = Zeroizing::new([0u8; AES_KEY_LEN]);
    a.copy_from_slice(aes);
    let mut h = Zeroizing::new([0u8; HMAC_KEY_LEN]);
    h.copy_from_slice(hmac);
    KeyEntry {
        version,
        aes: a,
        hmac: h,
    }
}

fn hmac(key: &KeyEntry, data: &[u8]) -> [u8; NONCE_LEN] {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&key.hmac[..])
        .expect("HMAC takes a key of any length");
    mac.update(data);
    let digest = mac.finalize().into_bytes();
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&digest[..NONCE_LEN]);
    nonce
}

fn keystream(key: &KeyEntry, nonce: &[u8; NONCE_LEN], data: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..NONCE_LEN].copy_from_slice(nonce);
    let mut cipher = Aes256Ctr::new((&*key.aes).into(), (&iv).into());
    cipher.apply_keystream(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_has_git_crypts_size_and_round_trips_a_file() {
        let key_bytes = Key::generate().expect("key");
        assert_eq!(key_bytes.len(), 148);
        let key = Key::parse(&key_bytes).expect("parses");
        let enc = key.encrypt(b"hunter2\n");
        assert!(is_encrypted(&enc));
        assert_eq!(enc.len(), 22 + 8);
        // Deterministic, as git-crypt's (the nonce is an HMAC of the content).
        assert_eq!(enc, key.encrypt(b"hunter2\n"));
        assert_eq!(&key.decrypt(&enc).expect("decrypts")[..], b"hunter2\n");
    }

    #[test]
    fn tampered_truncated_plaintext_and_foreign_files_are_refused() {
        let key = Key::parse(&Key::generate().expect("key")).expect("parses");
        let mut enc = key.encrypt(b"secret value");
        let last = enc.len() - 1;
        enc[last] ^= 1;
        assert_eq!(key.decrypt(&enc).map(|_| ()), Err(GitCryptError::Tampered));
        assert_eq!(
            key.decrypt(&enc[..15]).map(|_| ()),
            Err(GitCryptError::Truncated(15))
        );
        assert_eq!(
            key.decrypt(b"\0GITC").map(|_| ()),
            Err(GitCryptError::Truncated(5))
        );
        assert_eq!(
            key.decrypt(b"plain text").map(|_| ()),
            Err(GitCryptError::NotEncrypted)
        );
        let other = Key::parse(&Key::generate().expect("key")).expect("parses");
        assert_eq!(
            other.decrypt(&key.encrypt(b"x")).map(|_| ()),
            Err(GitCryptError::Tampered)
        );
    }

    #[test]
    fn legacy_keys_and_bad_key_files_are_told_apart() {
        let legacy = [7u8; 96];
        let key = Key::parse(&legacy).expect("legacy");
        assert_eq!(
            &key.decrypt(&key.encrypt(b"v")).expect("round trip")[..],
            b"v"
        );
        assert!(matches!(
            Key::parse(b"short"),
            Err(GitCryptError::BadKey(_))
        ));
        let mut v3 = Key::generate().expect("key");
        v3[15] = 3;
        assert_eq!(
            Key::parse(&v3).map(|_| ()),
            Err(GitCryptError::KeyVersion(3))
        );
        let mut critical = Key::generate().expect("key");
        // The first entry field id (after preamble, version, header end): 1 → 7 (odd, unknown).
        critical[23] = 7;
        assert!(
            matches!(Key::parse(&critical), Err(GitCryptError::BadKey(m)) if m.contains("critical"))
        );
        let mut cut = Key::generate().expect("key");
        cut.truncate(100);
        assert!(matches!(Key::parse(&cut), Err(GitCryptError::BadKey(_))));
    }

    #[test]
    fn a_key_never_shows_its_bytes_in_debug_output() {
        let key = Key::parse(&[0xabu8; 96]).expect("legacy");
        let text = format!("{key:?}");
        assert!(
            !text.contains("171") && !text.to_lowercase().contains("ab, ab"),
            "{text}"
        );
    }
}
