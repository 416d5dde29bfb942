//! `secrets list | diff | apply | set | rotate`: git-crypt encrypted files in the deploy
//! repository as versioned Docker secrets.
//!
//! Inside: the secrets page (`page`, `sessions`); the files themselves are `secret_files`'
//! (git-crypt's formats, the directory). The Docker side is the deploy module's: a secret's Docker name is its content
//! hash (`desired`), `diff` is the secret part of `deploy plan`, `apply` is `deploy apply`
//! (verify, rollback, report) when nothing but secrets changed.

mod page;
mod sessions;

use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub use page::serve;
pub use sessions::Identity;

use crate::secret_files::{SecretsDir, SecretsError, random_value};

use crate::config::SecretsConfig;
use crate::deploy::{self, Action, DeployError, Request};

/// One secret of the stack.
#[derive(Debug, Clone, Serialize)]
pub struct SecretInfo {
    /// The stack file's key (and the file's name).
    pub name: String,
    pub file: Option<String>,
    /// The first 12 hex digits of its content's SHA-256.
    pub sha256: String,
    /// The Docker secret this version is.
    pub docker_name: String,
    /// Services of the stack that use it.
    pub services: Vec<String>,
    /// Whether that version exists in the swarm (`None`: the engine could not be asked).
    pub in_swarm: Option<bool>,
}

/// `secrets list`.
pub fn list(req: &Request<'_>) -> Result<Vec<SecretInfo>, DeployError> {
    let desired = deploy::load_desired(req)?;
    let in_swarm = match deploy::current_state(req.config, &desired.stack) {
        Ok(current) => Some(current.secrets),
        Err(e) => {
            tracing::warn!(error = %e, "the swarm cannot be asked: in_swarm unknown");
            None
        }
    };
    Ok(desired
        .secrets
        .iter()
        .map(|s| SecretInfo {
            name: s.key.clone(),
            file: s.file.as_ref().map(|f| f.display().to_string()),
            sha256: if s.external {
                String::new()
            } else {
                Sha256::digest(&s.data[..])
                    .iter()
                    .take(6)
                    .map(|b| format!("{b:02x}"))
                    .collect()
            },
            docker_name: s.name.clone(),
            services: desired
                .services
                .iter()
                .filter(|svc| {
                    svc.spec["TaskTemplate"]["ContainerSpec"]["Secrets"]
                        .as_array()
                        .is_some_and(|l| l.iter().any(|r| r["SecretName"] == s.name.as_str()))
                })
                .map(|svc| svc.name.clone())
                .collect(),
            in_swarm: in_swarm.as_ref().map(|have| have.contains_key(&s.name)),
        })
        .collect())
}

/// The secret part of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct SecretsDiff {
    /// Secret versions to create.
    pub create: Vec<String>,
    /// Services that switch secret versions: `(service, [secret fields])`.
    pub switch: Vec<(String, Vec<String>)>,
    /// Old versions removed after a verified apply.
    pub remove: Vec<String>,
    /// Changes beyond secrets (`deploy plan` shows them; `secrets apply` refuses while any).
    pub other_changes: Vec<String>,
}

impl SecretsDiff {
    pub fn has_changes(&self) -> bool {
        !self.create.is_empty() || !self.switch.is_empty()
    }
}

/// `secrets diff`.
pub fn diff(req: &Request<'_>) -> Result<SecretsDiff, DeployError> {
    let planned = deploy::plan(req)?;
    Ok(secrets_part(&planned.plan))
}

fn secrets_part(plan: &deploy::Plan) -> SecretsDiff {
    let mut other = Vec::new();
    let mut switch = Vec::new();
    for s in &plan.services {
        match s.action {
            Action::Unchanged => {}
            Action::Create => other.push(format!("{}: a new service", s.name)),
            Action::Update => {
                let (secret, rest): (Vec<_>, Vec<_>) = s
                    .changes
                    .iter()
                    .partition(|c| c.field.starts_with("Secrets."));
                if !secret.is_empty() {
                    switch.push((
                        s.name.clone(),
                        secret.iter().map(|c| c.field.clone()).collect(),
                    ));
                }
                if !rest.is_empty() {
                    other.push(format!(
                        "{}: {}",
                        s.name,
                        rest.iter()
                            .map(|c| c.field.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
    }
    for o in plan.networks.iter().chain(&plan.configs) {
        if o.action == Action::Create {
            other.push(format!("{}: to create", o.name));
        }
    }
    SecretsDiff {
        create: plan
            .secrets
            .iter()
            .filter(|o| o.action == Action::Create)
            .map(|o| o.name.clone())
            .collect(),
        switch,
        remove: plan.old_versions.clone(),
        other_changes: other,
    }
}

/// `secrets apply`: `deploy apply` while only secrets change.
pub fn apply(
    req: &Request<'_>,
    options: deploy::ApplyOptions,
) -> Result<deploy::Applied, DeployError> {
    deploy::apply_checked(req, options, |plan| {
        let part = secrets_part(plan);
        if part.other_changes.is_empty() {
            Ok(())
        } else {
            Err(DeployError::Config(format!(
                "the stack has changes besides secrets ({}): deploy apply applies everything",
                part.other_changes.join("; ")
            )))
        }
    })
}

/// `secrets set NAME`: `value` encrypted into the secret's file; its path and new hash.
pub fn set(
    config: &SecretsConfig,
    name: &str,
    value: &[u8],
) -> Result<(std::path::PathBuf, String), SecretsError> {
    let store = SecretsDir::open(config)?;
    store.check_key()?;
    let path = store.write(name, value)?;
    let hash = Sha256::digest(value)
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((path, hash))
}

/// `secrets rotate NAME`: a new random value (`rotate_length` of `rotate_alphabet`).
pub fn rotate(
    config: &SecretsConfig,
    name: &str,
) -> Result<(std::path::PathBuf, String), SecretsError> {
    let value: Zeroizing<String> = random_value(config.rotate_length, &config.rotate_alphabet)
        .map_err(SecretsError::Random)?;
    set(config, name, value.as_bytes())
}

/// What saving a value on the secrets page did.
#[derive(Debug, Clone)]
pub struct Saved {
    /// The commit (`git rev-parse HEAD`).
    pub commit: String,
    /// The `deploy plan` after the change (Markdown), or why it could not be made.
    pub plan: Result<String, String>,
}

/// Sets `name` to `value`, commits the file with `author` as the commit's author, and makes
/// the deploy plan that change leads to.
pub fn save_and_commit(
    req: &Request<'_>,
    name: &str,
    value: &[u8],
    author: &Identity,
) -> Result<Saved, SecretsError> {
    let (path, _hash) = set(req.secrets, name, value)?;
    let dir = path
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let git = |args: &[&str]| -> Result<String, SecretsError> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(args)
            .env("GIT_COMMITTER_NAME", "concierge-sidecar")
            .env("GIT_COMMITTER_EMAIL", "concierge-sidecar@localhost")
            .output()
            .map_err(|e| SecretsError::Git(format!("cannot run git: {e}")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(SecretsError::Git(format!(
                "git {}: {}",
                args.first().copied().unwrap_or(""),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    };
    let file = path.display().to_string();
    git(&["add", "--", &file])?;
    let message =
        format!("secrets: set {name}\n\nEncrypted with git-crypt's key by the secrets page.");
    git(&[
        "commit",
        "--quiet",
        "--author",
        &author.author(),
        "-m",
        &message,
        "--",
        &file,
    ])?;
    let commit = git(&["rev-parse", "HEAD"])?;
    let plan = deploy::plan(req)
        .map(|p| p.plan.markdown())
        .map_err(|e| e.to_string());
    Ok(Saved { commit, plan })
}
