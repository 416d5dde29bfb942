//! git-crypt secrets: byte-for-byte compatibility with Debian's real git-crypt 0.7 both ways,
//! its refusals, `secrets set` in a real repository, and `secrets apply` against a real swarm.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use concierge_sidecar::{GitCryptError, GitCryptKey};
use concierge_tests::{Browser, Swarm, binary, http_exchange};

/// Runs `git-crypt ARGS` with `input` on stdin.
fn git_crypt(args: &[&str], input: &[u8], cwd: &Path) -> Output {
    let mut child = Command::new("git-crypt")
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run git-crypt (apt-get install git-crypt; scripts/system-deps.sh does)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("git-crypt")
}

fn git(args: &[&str], cwd: &Path) -> Output {
    let out = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    out
}

fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let out = git_crypt(&["keygen", &path.display().to_string()], b"", dir);
    assert!(out.status.success(), "git-crypt keygen: {out:?}");
    path
}

/// Plaintexts of the sizes that matter: empty, one byte, across AES blocks, binary, 100 KB.
fn samples() -> Vec<Vec<u8>> {
    let mut big = Vec::new();
    for i in 0..100_000u32 {
        big.push((i * 7 + i / 13) as u8);
    }
    vec![
        Vec::new(),
        b"x".to_vec(),
        b"hunter2\n".to_vec(),
        b"a value exactly 32 bytes long!!!".to_vec(),
        (0u8..=255).collect(),
        big,
    ]
}

#[test]
fn files_git_crypt_encrypts_decrypt_with_ours_and_ours_are_byte_for_byte_git_crypts() {
    let dir = concierge_tests::temp_dir();
    // A key from `git-crypt keygen`, and one exported from an initialised repository.
    let generated = keygen(dir.path(), "generated.key");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).expect("repo");
    git(&["init", "-q"], &repo);
    let init = git_crypt(&["init"], b"", &repo);
    assert!(init.status.success(), "git-crypt init: {init:?}");
    let exported = dir.path().join("exported.key");
    let export = git_crypt(&["export-key", &exported.display().to_string()], b"", &repo);
    assert!(export.status.success(), "git-crypt export-key: {export:?}");

    for key_path in [&generated, &exported] {
        let key_bytes = std::fs::read(key_path).expect("key");
        assert_eq!(key_bytes.len(), 148, "git-crypt's key size");
        let key = GitCryptKey::parse(&key_bytes).expect("our reader takes git-crypt's key");
        let key_arg = format!("--key-file={}", key_path.display());
        for plain in samples() {
            let theirs = git_crypt(&["clean", &key_arg], &plain, dir.path());
            assert!(theirs.status.success(), "git-crypt clean: {theirs:?}");
            assert_eq!(
                &key.decrypt(&theirs.stdout)
                    .expect("ours decrypts git-crypt's")[..],
                &plain[..]
            );
            let ours = key.encrypt(&plain);
            assert_eq!(
                ours,
                theirs.stdout,
                "the same bytes as git-crypt clean ({} bytes)",
                plain.len()
            );
            let back = git_crypt(&["smudge", &key_arg], &ours, dir.path());
            assert!(back.status.success(), "git-crypt smudge: {back:?}");
            assert_eq!(back.stdout, plain, "git-crypt decrypts ours");
        }
    }
}

#[test]
fn tampered_truncated_and_wrong_key_files_are_refused_as_git_crypt_refuses_them() {
    let dir = concierge_tests::temp_dir();
    let key_path = keygen(dir.path(), "k");
    let other_path = keygen(dir.path(), "other");
    let key = GitCryptKey::parse(&std::fs::read(&key_path).expect("key")).expect("key");
    let other = GitCryptKey::parse(&std::fs::read(&other_path).expect("key")).expect("key");
    let key_arg = format!("--key-file={}", key_path.display());
    let enc = git_crypt(&["clean", &key_arg], b"the database password", dir.path()).stdout;

    let mut tampered = enc.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x20;
    assert_eq!(
        key.decrypt(&tampered).map(|_| ()),
        Err(GitCryptError::Tampered)
    );
    let theirs = git_crypt(&["smudge", &key_arg], &tampered, dir.path());
    assert!(!theirs.status.success(), "git-crypt refuses it too");
    assert!(String::from_utf8_lossy(&theirs.stderr).contains("tampered"));

    assert_eq!(
        key.decrypt(&enc[..20]).map(|_| ()),
        Err(GitCryptError::Truncated(20))
    );
    assert_eq!(
        other.decrypt(&enc).map(|_| ()),
        Err(GitCryptError::Tampered)
    );
    let e = other.decrypt(&enc).expect_err("wrong key").to_string();
    assert!(e.contains("another key"), "{e}");
    assert_eq!(
        key.decrypt(b"plain text").map(|_| ()),
        Err(GitCryptError::NotEncrypted)
    );
}

/// A deploy repository as CI and the sidecar see it: a plain (locked) checkout whose
/// `secrets/` git-crypt encrypts (`.gitattributes`), the key from `git-crypt keygen`.
struct SecretsRepo {
    _dir: tempfile::TempDir,
    root: PathBuf,
    key: PathBuf,
    config: PathBuf,
}

impl SecretsRepo {
    fn new(extra_config: &str) -> SecretsRepo {
        let dir = concierge_tests::temp_dir();
        let root = dir.path().join("deploy");
        std::fs::create_dir_all(root.join("secrets")).expect("secrets dir");
        std::fs::create_dir_all(root.join("env")).expect("env dir");
        git(&["init", "-q"], &root);
        let key = keygen(dir.path(), "git-crypt.key");
        std::fs::write(
            root.join("secrets/.gitattributes"),
            "* filter=git-crypt diff=git-crypt\n.gitattributes !filter !diff\n",
        )
        .expect("gitattributes");
        let config = dir.path().join("sidecar.toml");
        std::fs::write(
            &config,
            format!(
                "[secrets]\ndir = {:?}\nkey_file = {:?}\n\n[deploy]\nstack_dir = {:?}\nstack = \"s\"\nstate_dir = {:?}\nverify_timeout = \"90s\"\nverify_settle = \"2s\"\n{extra_config}",
                root.join("secrets").display().to_string(),
                key.display().to_string(),
                root.display().to_string(),
                dir.path().join("state").display().to_string()
            ),
        )
        .expect("config");
        SecretsRepo {
            _dir: dir,
            root,
            key,
            config,
        }
    }

    fn set_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).expect("config");
        std::fs::write(&self.config, text.replace(from, to)).expect("config");
    }

    fn sidecar(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new(binary("concierge-sidecar"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("DOCKER_HOST")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run concierge-sidecar");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin)
            .expect("stdin");
        let out = child.wait_with_output().expect("concierge-sidecar");
        eprintln!(
            "$ {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

#[test]
fn secrets_set_writes_what_git_crypt_unlock_reads_and_a_plaintext_blob_in_git_is_a_leak() {
    let repo = SecretsRepo::new("");
    let out = repo.sidecar(
        &["secrets", "set", "db_password"],
        b"correct horse battery staple",
    );
    assert!(out.status.success(), "{out:?}");
    let file = repo.root.join("secrets/db_password");
    let key_arg = format!("--key-file={}", repo.key.display());
    let plain = git_crypt(
        &["smudge", &key_arg],
        &std::fs::read(&file).expect("file"),
        &repo.root,
    );
    assert_eq!(plain.stdout, b"correct horse battery staple");
    git(&["add", "-A"], &repo.root);
    git(&["commit", "-qm", "secret"], &repo.root);
    let blob = git(
        &["cat-file", "blob", "HEAD:secrets/db_password"],
        &repo.root,
    )
    .stdout;
    assert_eq!(
        blob,
        std::fs::read(&file).expect("file"),
        "committed as we wrote it"
    );
    // The value never came from the command line and is not printed.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("horse"));

    // A developer's clone, unlocked with the real git-crypt, reads the value.
    let clone = repo.root.parent().expect("parent").join("clone");
    git(
        &[
            "clone",
            "-q",
            &repo.root.display().to_string(),
            &clone.display().to_string(),
        ],
        &repo.root,
    );
    let unlock = git_crypt(&["unlock", &repo.key.display().to_string()], b"", &clone);
    assert!(unlock.status.success(), "git-crypt unlock: {unlock:?}");
    assert_eq!(
        std::fs::read(clone.join("secrets/db_password")).expect("unlocked file"),
        b"correct horse battery staple"
    );
    // There, writing encrypted bytes would be encrypted twice on commit: refused.
    repo.set_config(
        &repo.root.join("secrets").display().to_string(),
        &clone.join("secrets").display().to_string(),
    );
    let out = repo.sidecar(&["secrets", "set", "db_password"], b"new");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unlocked with git-crypt"));
    // Reading an unlocked checkout is fine: git holds the files encrypted.
    std::fs::write(
        clone.join("stack.yml"),
        "services:\n  app:\n    image: a:1\n    secrets: [db_password]\nsecrets:\n  db_password: {file: secrets/db_password}\n",
    )
    .expect("stack");
    repo.set_config(
        &format!("stack_dir = {:?}", repo.root.display().to_string()),
        &format!("stack_dir = {:?}", clone.display().to_string()),
    );
    let out = repo.sidecar(&["secrets", "list", "--json"], b"");
    assert!(out.status.success(), "{out:?}");
    repo.set_config(
        &clone.join("secrets").display().to_string(),
        &repo.root.join("secrets").display().to_string(),
    );
    repo.set_config(
        &format!("stack_dir = {:?}", clone.display().to_string()),
        &format!("stack_dir = {:?}", repo.root.display().to_string()),
    );

    // rotate: a generated value of the configured length.
    assert!(
        repo.sidecar(&["secrets", "rotate", "api_token"], b"")
            .status
            .success()
    );
    let token = git_crypt(
        &["smudge", &key_arg],
        &std::fs::read(repo.root.join("secrets/api_token")).expect("file"),
        &repo.root,
    )
    .stdout;
    assert_eq!(token.len(), 32);
    assert!(token.iter().all(u8::is_ascii_alphanumeric));

    // A stack that uses a file committed as plaintext where everything must be encrypted.
    std::fs::write(repo.root.join("secrets/leaked"), "plain value").expect("leak");
    git(&["add", "-A"], &repo.root);
    git(&["commit", "-qm", "oops"], &repo.root);
    std::fs::write(
        repo.root.join("stack.yml"),
        "services:\n  app:\n    image: a:1\n    secrets: [leaked]\nsecrets:\n  leaked: {file: secrets/leaked}\n",
    )
    .expect("stack");
    let out = repo.sidecar(&["secrets", "list"], b"");
    assert_eq!(out.status.code(), Some(2), "a leak is refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plaintext in the repository") && err.contains("a leak"),
        "{err}"
    );
    assert!(!err.contains("plain value"));
    // An unknown key: a wrong key is named as such.
    let wrong = repo.root.parent().expect("parent").join("wrong.key");
    assert!(
        git_crypt(&["keygen", &wrong.display().to_string()], b"", &repo.root)
            .status
            .success()
    );
    std::fs::write(
        &repo.config,
        std::fs::read_to_string(&repo.config)
            .expect("config")
            .replace(
                &repo.key.display().to_string(),
                &wrong.display().to_string(),
            ),
    )
    .expect("config");
    let out = repo.sidecar(&["secrets", "set", "x"], b"v");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("not the key these files were encrypted with")
    );
}

#[test]
fn secrets_apply_creates_a_version_and_a_changed_value_switches_the_service_and_removes_the_old() {
    let swarm = Swarm::start();
    swarm.import_busybox("local/busybox:1");
    let repo = SecretsRepo::new(&format!("docker_host = {:?}\n", swarm.host));
    std::fs::write(
        repo.root.join("stack.yml"),
        r#"version: "3.8"
services:
  app:
    image: local/busybox:1
    command: ["sleep", "100000"]
    init: true
    stop_grace_period: 2s
    healthcheck: {test: ["CMD", "cat", "/run/secrets/db_password"], interval: 1s, timeout: 1s, retries: 2}
    secrets: [db_password]
    deploy:
      endpoint_mode: dnsrr
      update_config: {failure_action: rollback, monitor: 6s}
secrets:
  db_password: {file: secrets/db_password}
"#,
    )
    .expect("stack");
    assert!(
        repo.sidecar(&["secrets", "set", "db_password"], b"first")
            .status
            .success()
    );
    // Other changes pending (the service does not exist yet): secrets apply refuses.
    let out = repo.sidecar(&["secrets", "apply"], b"");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(repo.sidecar(&["deploy", "apply"], b"").status.success());
    let secrets = || {
        let out = swarm.docker(&["secret", "ls", "--format", "{{.Name}}"]);
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    };
    let first = secrets();
    assert_eq!(first.len(), 1);
    assert!(
        first[0].starts_with("s_db_password_") && first[0].len() == "s_db_password_".len() + 12,
        "{first:?}"
    );

    // Unchanged: nothing to do.
    let diff = repo.sidecar(&["secrets", "diff"], b"");
    assert_eq!(diff.status.code(), Some(0));
    let list = repo.sidecar(&["secrets", "list", "--json"], b"");
    let json: serde_json::Value = serde_json::from_slice(&list.stdout).expect("list JSON");
    assert_eq!(json[0]["docker_name"], first[0].as_str());
    assert_eq!(json[0]["in_swarm"], true);
    assert_eq!(json[0]["services"][0], "s_app");
    assert!(
        !String::from_utf8_lossy(&list.stdout).contains("first"),
        "no value in the list"
    );

    // A new value: a new version, the service switched, the old version gone.
    assert!(
        repo.sidecar(&["secrets", "set", "db_password"], b"second")
            .status
            .success()
    );
    let diff = repo.sidecar(&["secrets", "diff"], b"");
    assert_eq!(diff.status.code(), Some(5));
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(
        text.contains("+ secret s_db_password_") && text.contains("~ service s_app"),
        "{text}"
    );
    let apply = repo.sidecar(&["secrets", "apply"], b"");
    assert!(apply.status.success(), "{apply:?}");
    let spec = swarm.service_spec("s_app");
    let current = spec["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretName"]
        .as_str()
        .expect("secret name")
        .to_owned();
    assert_ne!(current, first[0]);
    // The old version stays while it is the service's rollback target (its PreviousSpec).
    assert_eq!(secrets(), {
        let mut both = vec![first[0].clone(), current.clone()];
        both.sort();
        both
    });
    // The running task reads the new value.
    let container = swarm.wait_healthy("s_app", std::time::Duration::from_secs(30));
    let value = swarm.docker(&["exec", &container, "cat", "/run/secrets/db_password"]);
    assert_eq!(value.stdout, b"second");
    assert_eq!(
        repo.sidecar(&["secrets", "apply"], b"").status.code(),
        Some(0)
    );

    // The next change: the first version is used by no spec any more and is removed.
    assert!(
        repo.sidecar(&["secrets", "rotate", "db_password"], b"")
            .status
            .success()
    );
    assert!(repo.sidecar(&["secrets", "apply"], b"").status.success());
    let third = secrets();
    assert_eq!(third.len(), 2, "{third:?}");
    assert!(
        !third.contains(&first[0]),
        "the unused version is removed: {third:?}"
    );
    assert!(
        third.contains(&current),
        "the rollback target stays: {third:?}"
    );
}

#[test]
fn the_secrets_page_signs_in_sets_a_value_commits_it_and_shows_the_plan_without_echoing_it() {
    let swarm = Swarm::start();
    let token_file = swarm.dir().join("admin-token");
    std::fs::write(&token_file, "page-admin-token\n").expect("token");
    let repo = SecretsRepo::new(&format!("docker_host = {:?}\n", swarm.host));
    repo.set_config(
        "[secrets]\n",
        &format!(
            "[secrets]\nadmin_token_file = {:?}\nsecure_cookies = false\n",
            token_file.display().to_string()
        ),
    );
    std::fs::write(
        repo.root.join("stack.yml"),
        "services:\n  app:\n    image: local/busybox:1\n    secrets: [db_password]\nsecrets:\n  db_password: {file: secrets/db_password}\n",
    )
    .expect("stack");
    assert!(
        repo.sidecar(&["secrets", "set", "db_password"], b"old-value")
            .status
            .success()
    );
    git(&["add", "-A"], &repo.root);
    git(&["commit", "-qm", "start"], &repo.root);

    // The page, on an ephemeral port; every log line kept.
    let mut page = Command::new(binary("concierge-sidecar"))
        .arg("--config")
        .arg(&repo.config)
        .args(["secrets", "serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start secrets serve");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = page.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut logs = Vec::new();
    let address = loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the page starts");
        logs.push(line.clone());
        if let Some(rest) = line.strip_prefix("secrets page on http://") {
            break rest.trim_end_matches('/').to_owned();
        }
    };
    let url = format!("http://{address}/");

    let browser = Browser::start();
    browser.open(&url);
    assert!(browser.source().contains("Admin token"), "the sign-in form");
    browser.type_into("#token", "wrong");
    browser.type_into("#name", "Ada Ops");
    browser.type_into("#email", "ada@example.com");
    browser.click("#sign-in");
    browser.wait_for("Wrong token.", std::time::Duration::from_secs(10));
    browser.type_into("#token", "page-admin-token");
    browser.type_into("#name", "Ada Ops");
    browser.type_into("#email", "ada@example.com");
    browser.click("#sign-in");
    let list = browser.wait_for("Signed in as", std::time::Duration::from_secs(10));
    assert!(
        list.contains("Signed in as") && list.contains("Ada Ops"),
        "{list}"
    );
    assert!(
        list.contains("db_password") && list.contains("s_db_password_"),
        "{list}"
    );
    assert!(!list.contains("old-value"), "no value in the list");
    let cookie = browser
        .cookie("concierge_secrets")
        .expect("the session cookie");
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Strict");

    browser.type_into("#value-db_password", "brand-new-value-42");
    browser.click("#save-db_password");
    let saved = browser.wait_for("Saved and committed as", std::time::Duration::from_secs(30));
    assert!(saved.contains("Saved and committed as"), "{saved}");
    assert!(
        saved.contains("Deploy plan") && saved.contains("s_app"),
        "{saved}"
    );
    assert!(
        !saved.contains("brand-new-value-42"),
        "the value is never sent back"
    );

    // The commit: the signed-in author, and real git-crypt decrypts it to the value.
    let author = git(&["log", "-1", "--format=%an <%ae>"], &repo.root).stdout;
    assert_eq!(
        String::from_utf8_lossy(&author).trim(),
        "Ada Ops <ada@example.com>"
    );
    let blob = git(
        &["cat-file", "blob", "HEAD:secrets/db_password"],
        &repo.root,
    )
    .stdout;
    let key_arg = format!("--key-file={}", repo.key.display());
    assert_eq!(
        git_crypt(&["smudge", &key_arg], &blob, &repo.root).stdout,
        b"brand-new-value-42"
    );

    // A form without the CSRF token is refused, even with a live session.
    let session = cookie["value"].as_str().expect("cookie value").to_owned();
    let forged = http_exchange(
        &address,
        "POST",
        "/set",
        Some("name=db_password&value=forged"),
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &format!("concierge_secrets={session}")),
        ],
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    let cross = http_exchange(
        &address,
        "POST",
        "/set",
        Some("name=db_password&value=forged"),
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &format!("concierge_secrets={session}")),
            ("Origin", "https://evil.example"),
        ],
    );
    assert_eq!(cross.status, 403);
    assert_eq!(
        git_crypt(
            &["smudge", &key_arg],
            &std::fs::read(repo.root.join("secrets/db_password")).expect("file"),
            &repo.root
        )
        .stdout,
        b"brand-new-value-42",
        "nothing changed"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &page.id().to_string()])
        .status();
    let _ = page.wait();
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
        logs.push(line);
    }
    let logs = logs.join("\n");
    assert!(logs.contains("a secret was set"), "{logs}");
    for secret in [
        "brand-new-value-42",
        "old-value",
        "page-admin-token",
        "forged",
    ] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
    }
}
