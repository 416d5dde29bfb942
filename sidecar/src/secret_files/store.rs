//! The directory of secret files (`[secrets] dir`): read for deploy (decrypted in memory only,
//! never written anywhere decrypted), written by `secrets set`/`rotate` in git-crypt's format.
//!
//! A plaintext file there is a leak unless the repository holds it encrypted: in a checkout
//! unlocked with `git-crypt unlock` the working files are plaintext while the committed blobs
//! are encrypted, which is fine; a blob that is plaintext in git is refused loudly, unless the
//! operator allowed that path (`allow_plaintext`).

use std::path::{Path, PathBuf};
use std::process::Command;

use zeroize::Zeroizing;

use super::gitcrypt::{GitCryptError, Key, is_encrypted};
use crate::config::SecretsConfig;

/// Why a secret cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    #[error("secrets.key_file {path}: {detail}")]
    KeyFile { path: PathBuf, detail: String },
    #[error("{path} is encrypted with git-crypt, but secrets.key_file is not set")]
    NoKey { path: PathBuf },
    #[error(
        "secrets.key_file is not the key these files were encrypted with: none of the {count} encrypted files in {dir} passes git-crypt's integrity check"
    )]
    WrongKey { dir: PathBuf, count: usize },
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: GitCryptError,
    },
    #[error(
        "{path} is plaintext in the repository, but everything in {dir} must be encrypted with git-crypt: a leak. Encrypt it (concierge-sidecar secrets set NAME < FILE, then commit), or allow this path in secrets.allow_plaintext"
    )]
    Plaintext { path: PathBuf, dir: PathBuf },
    #[error(
        "secret name {0:?}: letters, digits, -, _ and . (it names the file and the Docker secret)"
    )]
    BadName(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a value: {0}")]
    Random(String),
    #[error("{0}")]
    Git(String),
    #[error(
        "{dir} is in a checkout unlocked with git-crypt: its files are plaintext there and git-crypt would encrypt what we write a second time; set secrets in a locked checkout (a plain clone), or edit the plaintext file and let git-crypt encrypt it"
    )]
    Unlocked { dir: PathBuf },
}

/// The secret files and the key that opens them.
#[derive(Debug)]
pub struct SecretsDir {
    dir: PathBuf,
    key: Option<Key>,
    allow_plaintext: Vec<String>,
}

impl SecretsDir {
    /// Opens `[secrets]` (the key read when configured; its bytes never leave memory).
    pub fn open(config: &SecretsConfig) -> Result<SecretsDir, SecretsError> {
        let key = if config.key_file.as_os_str().is_empty() {
            None
        } else {
            let path = &config.key_file;
            let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| SecretsError::KeyFile {
                path: path.clone(),
                detail: e.to_string(),
            })?);
            Some(Key::parse(&bytes).map_err(|e| SecretsError::KeyFile {
                path: path.clone(),
                detail: e.to_string(),
            })?)
        };
        Ok(SecretsDir {
            dir: config.dir.clone(),
            key,
            allow_plaintext: config.allow_plaintext.clone(),
        })
    }

    /// The secret files, by name (dot files such as `.gitattributes` are not secrets).
    pub fn names(&self) -> Result<Vec<String>, SecretsError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(SecretsError::Io {
                    path: self.dir.clone(),
                    source: e,
                });
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The path of secret `name` (the name checked).
    pub fn path_of(&self, name: &str) -> Result<PathBuf, SecretsError> {
        check_name(name)?;
        Ok(self.dir.join(name))
    }

    /// Whether `path` lies in the secrets directory.
    fn holds(&self, path: &Path) -> Option<String> {
        let dir = std::fs::canonicalize(&self.dir).ok()?;
        let file = std::fs::canonicalize(path).ok()?;
        file.strip_prefix(&dir)
            .ok()
            .map(|p| p.display().to_string())
    }

    /// A file's content for a Docker secret: decrypted when encrypted; a plaintext file in
    /// the secrets directory only when git holds it encrypted or it is allowed.
    pub fn read(&self, path: &Path) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| SecretsError::Io {
            path: path.to_path_buf(),
            source: e,
        })?);
        if is_encrypted(&bytes) {
            let key = self.key.as_ref().ok_or_else(|| SecretsError::NoKey {
                path: path.to_path_buf(),
            })?;
            return key.decrypt(&bytes).map_err(|source| SecretsError::File {
                path: path.to_path_buf(),
                source,
            });
        }
        if let Some(relative) = self.holds(path)
            && !self.allow_plaintext.iter().any(|a| a == &relative)
            && !committed_encrypted(path)
        {
            return Err(SecretsError::Plaintext {
                path: path.to_path_buf(),
                dir: self.dir.clone(),
            });
        }
        Ok(bytes)
    }

    /// Checks the key against every encrypted file: none passing is a wrong key (one failing
    /// among good ones is that file's own problem, reported when it is read).
    pub fn check_key(&self) -> Result<(), SecretsError> {
        let Some(key) = &self.key else { return Ok(()) };
        let mut encrypted = 0;
        for name in self.names()? {
            let path = self.dir.join(&name);
            let bytes = Zeroizing::new(std::fs::read(&path).map_err(|e| SecretsError::Io {
                path: path.clone(),
                source: e,
            })?);
            if !is_encrypted(&bytes) {
                continue;
            }
            encrypted += 1;
            if key.decrypt(&bytes).is_ok() {
                return Ok(());
            }
        }
        if encrypted == 0 {
            Ok(())
        } else {
            Err(SecretsError::WrongKey {
                dir: self.dir.clone(),
                count: encrypted,
            })
        }
    }

    /// Encrypts `value` into the file of secret `name` (git-crypt's bytes: a developer's
    /// `git-crypt unlock` reads `value`); the file is replaced atomically.
    pub fn write(&self, name: &str, value: &[u8]) -> Result<PathBuf, SecretsError> {
        let path = self.path_of(name)?;
        let key = self
            .key
            .as_ref()
            .ok_or_else(|| SecretsError::NoKey { path: path.clone() })?;
        if unlocked(&self.dir) {
            return Err(SecretsError::Unlocked {
                dir: self.dir.clone(),
            });
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| SecretsError::Io {
            path: self.dir.clone(),
            source: e,
        })?;
        concierge_infra::atomic_file::write(&path, &key.encrypt(value)).map_err(|e| {
            SecretsError::Io {
                path: path.clone(),
                source: e,
            }
        })?;
        Ok(path)
    }
}

fn check_name(name: &str) -> Result<(), SecretsError> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(SecretsError::BadName(name.to_owned()))
    }
}

/// Whether git holds `path` encrypted (in the index, else at HEAD): a plaintext working file
/// is then a `git-crypt unlock`ed checkout.
fn committed_encrypted(path: &Path) -> bool {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return false;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    for rev in [":./", "HEAD:./"] {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["cat-file", "blob"])
            .arg(format!("{rev}{}", name.to_string_lossy()))
            .output();
        if let Ok(out) = out
            && out.status.success()
        {
            return is_encrypted(&out.stdout);
        }
    }
    false
}

/// Whether `dir` is in a git checkout where git-crypt's filter is active (`git-crypt unlock`
/// or `init` configured `filter.git-crypt.clean`).
fn unlocked(dir: &Path) -> bool {
    let probe = if dir.exists() {
        dir
    } else {
        dir.parent().unwrap_or(dir)
    };
    Command::new("git")
        .arg("-C")
        .arg(probe)
        .args(["config", "--get", "filter.git-crypt.clean"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.trim_ascii().is_empty())
}

/// A random value of `length` characters from `alphabet` (rejection sampling: uniform).
pub fn random_value(length: usize, alphabet: &str) -> Result<Zeroizing<String>, String> {
    let chars: Vec<char> = alphabet.chars().collect();
    if chars.is_empty() {
        return Err("empty alphabet".into());
    }
    let n = chars.len();
    let limit = 256 - (256 % n);
    let mut out = Zeroizing::new(String::with_capacity(length));
    let mut buf = Zeroizing::new([0u8; 64]);
    while out.chars().count() < length {
        getrandom::fill(&mut buf[..]).map_err(|e| format!("no randomness: {e}"))?;
        for b in buf.iter() {
            if (*b as usize) < limit && out.chars().count() < length {
                out.push(chars[*b as usize % n]);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, key: Option<&Path>) -> SecretsConfig {
        SecretsConfig {
            dir: dir.join("secrets"),
            key_file: key.map(Path::to_path_buf).unwrap_or_default(),
            ..SecretsConfig::default()
        }
    }

    #[test]
    fn a_written_secret_reads_back_and_plaintext_outside_git_is_a_leak() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("key");
        std::fs::write(&key, Key::generate().expect("key")).expect("key file");
        let store = SecretsDir::open(&config(dir.path(), Some(&key))).expect("opens");
        let path = store.write("db_password", b"s3cret").expect("writes");
        assert!(is_encrypted(&std::fs::read(&path).expect("read")));
        assert_eq!(&store.read(&path).expect("reads")[..], b"s3cret");
        store.check_key().expect("the right key");
        std::fs::write(dir.path().join("secrets/leaked"), "plain").expect("write");
        let e = store
            .read(&dir.path().join("secrets/leaked"))
            .expect_err("a leak");
        assert!(e.to_string().contains("a leak"), "{e}");
        let allowed = SecretsConfig {
            allow_plaintext: vec!["leaked".into()],
            ..config(dir.path(), Some(&key))
        };
        let store = SecretsDir::open(&allowed).expect("opens");
        assert_eq!(
            &store
                .read(&dir.path().join("secrets/leaked"))
                .expect("allowed")[..],
            b"plain"
        );
        assert!(matches!(
            store.path_of("../x"),
            Err(SecretsError::BadName(_))
        ));
        assert_eq!(store.names().expect("names"), vec!["db_password", "leaked"]);
    }

    #[test]
    fn another_key_is_a_wrong_key_error_not_a_tampered_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, Key::generate().expect("key")).expect("key");
        std::fs::write(&b, Key::generate().expect("key")).expect("key");
        SecretsDir::open(&config(dir.path(), Some(&a)))
            .expect("opens")
            .write("x", b"1")
            .expect("write");
        let wrong = SecretsDir::open(&config(dir.path(), Some(&b))).expect("opens");
        assert!(matches!(
            wrong.check_key(),
            Err(SecretsError::WrongKey { count: 1, .. })
        ));
        let none = SecretsDir::open(&config(dir.path(), None)).expect("opens");
        assert!(matches!(
            none.read(&dir.path().join("secrets/x")),
            Err(SecretsError::NoKey { .. })
        ));
    }

    #[test]
    fn random_values_have_the_length_and_alphabet_asked_for() {
        let v = random_value(40, "abc123").expect("value");
        assert_eq!(v.chars().count(), 40);
        assert!(v.chars().all(|c| "abc123".contains(c)));
        assert_ne!(*v, *random_value(40, "abc123").expect("value"));
    }
}
