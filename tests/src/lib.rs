//! The black-box test harness: find the real binaries the workspace built, run them in a
//! temporary directory, and read their output.
//!
//! Binaries come from the same target directory as the test binary (`target/debug/`); the README's
//! test command builds them first (`cargo build --workspace --bins`).

mod fake_hetzner;
mod fake_http;
mod firestore_emulator;
mod moto;
mod oidc_issuer;
mod oidc_provider;
mod qdrant_server;
mod swarm;
mod webdriver;

pub use fake_hetzner::{Boot, FakeHetzner, HetznerState};
pub use fake_http::{FakeRequest, FakeResponse, FakeServer};
pub use firestore_emulator::FirestoreEmulator;
pub use moto::{Moto, moto_server};
pub use oidc_issuer::{OidcIssuer, SigningKey, hs256_token, unsigned_token};
pub use oidc_provider::RealIssuer;
pub use qdrant_server::QdrantServer;
pub use swarm::{Swarm, deploy_dir};
pub use webdriver::Browser;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file of `tests/fixtures/` (copies of the reference data in `shared/fixtures/`).
pub fn fixture(name: &str) -> PathBuf {
    workspace_root().join("tests/fixtures").join(name)
}

/// The installed all-MiniLM-L6-v2 directory (`models/fetch.sh` puts it there).
pub fn model_dir() -> PathBuf {
    workspace_root().join("models/weights/all-MiniLM-L6-v2")
}

/// The path of a workspace binary, e.g. `concierge`; panics with the command to build it.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test-binary> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built; run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// Runs a workspace binary with `args` in `cwd` and returns its output.
pub fn run(name: &str, args: &[&str], cwd: &Path) -> Output {
    Command::new(binary(name))
        .args(args)
        .current_dir(cwd)
        .env_remove("CONCIERGE_MODELS__DIR")
        .env_remove("CONCIERGE_MODELS__EMBEDDER")
        .output()
        .unwrap_or_else(|err| panic!("cannot start {name}: {err}"))
}

/// A loopback port nothing listens on, for a server a test starts itself or starts later on
/// purpose. Picked at random below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`, 32768–60999 by default), where no other test's
/// `bind(127.0.0.1:0)` and no outgoing connection can take it between this pick and the
/// server's own bind (a Qdrant stand-in once lost its port to a daemon that way).
pub fn free_port() -> u16 {
    use std::hash::BuildHasher;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let low = 10_000.min(ephemeral_low / 2);
    let span = u64::from(ephemeral_low.saturating_sub(low).max(1));
    for _ in 0..1000 {
        // Each `RandomState` has its own keys: a fresh random number per call.
        let r = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        let port = low + u16::try_from(r % span).expect("span fits u16");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below {ephemeral_low} in 1000 tries");
}

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

/// A running `concierge serve`, stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Daemon {
    child: std::process::Child,
    /// `127.0.0.1:PORT` it listens on.
    pub address: String,
    /// The data directory given with `--data-dir` (a fresh temporary one unless the test gave
    /// its own); removed when the daemon is dropped.
    pub data_dir: PathBuf,
    _data: Option<tempfile::TempDir>,
}

impl Daemon {
    /// Starts `concierge serve` on an ephemeral loopback port with `args` added, in `cwd`, and
    /// waits for its "listening on" line.
    pub fn start(args: &[&str], cwd: &Path) -> Daemon {
        Daemon::start_with_env(args, &[], cwd)
    }

    /// [`Daemon::start`] with environment variables set.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Daemon {
        let (data_dir, data) = match args.iter().position(|a| *a == "--data-dir") {
            Some(i) => (PathBuf::from(args[i + 1]), None),
            None => {
                let dir = temp_dir();
                (dir.path().join("data"), Some(dir))
            }
        };
        let mut command = Command::new(binary("concierge"));
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args);
        if data.is_some() {
            command.arg("--data-dir").arg(&data_dir);
        }
        command
            .envs(env.iter().copied())
            .current_dir(cwd)
            .stderr(std::process::Stdio::inherit());
        let mut daemon = Daemon::from_command(command, data_dir);
        daemon._data = data;
        daemon
    }

    /// `concierge serve` with the test model and `env`, on an ephemeral port and a fresh data
    /// directory.
    pub fn with_model(env: &[(&str, &str)]) -> Daemon {
        let model = model_dir();
        Daemon::start_with_env(
            &["--model-dir", model.to_str().expect("utf-8")],
            env,
            &workspace_root(),
        )
    }

    /// Starts a `concierge serve` command the caller set up (its listen address, its stderr,
    /// ...; stdout is taken here) and waits for its "listening on" line. Killed on drop.
    pub fn from_command(mut command: Command, data_dir: PathBuf) -> Daemon {
        use std::io::BufRead;
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start concierge serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let address = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line from concierge serve: {line:?}"))
            .to_string();
        Daemon {
            child,
            address,
            data_dir,
            _data: None,
        }
    }

    /// The process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A request with a JSON body (or none) and optional bearer token: status and body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        http_request(&self.address, method, path, body, headers)
    }

    /// [`Daemon::request`] with the answer's head.
    pub fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        http_exchange(&self.address, method, path, body, headers)
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&self, path: &str, body: &str) -> (u16, String) {
        self.request(
            "POST",
            path,
            Some(body),
            &[("Content-Type", "application/json")],
        )
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(self) -> std::process::ExitStatus {
        self.stop_with("TERM")
    }

    /// Sends `signal` (a name `kill` knows: `TERM`, `INT`, ...) and waits for the exit status.
    pub fn stop_with(mut self, signal: &str) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
        self.child.wait().expect("wait for concierge")
    }

    /// `GET path` over plain HTTP/1.1: the status code and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.address, path)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `concierge ingest --wait-indexed INPUT` into `data` with the test model.
pub fn ingest_and_wait(input: &Path, data: &Path) -> Output {
    Command::new(binary("concierge"))
        .args(["ingest", "--wait-indexed"])
        .arg(input)
        .arg("--data-dir")
        .arg(data)
        .arg("--model-dir")
        .arg(model_dir())
        .output()
        .expect("run concierge ingest")
}

/// An HTTP answer: status, the head (status line and headers) and the body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    /// A header's value (names compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A minimal HTTP/1.1 request (`Connection: close`, `Content-Length` bodies), enough for
/// black-box checks: the status code and the body.
pub fn http_request(
    address: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let reply = http_exchange(address, method, path, body, headers);
    (reply.status, reply.body)
}

/// The Aircall event fixtures that become documents (`tests/fixtures/webhooks/`), in order.
pub const AIRCALL_EVENT_FIXTURES: [&str; 6] = [
    "aircall-call.created.json",
    "aircall-call.answered.json",
    "aircall-call.ended.json",
    "aircall-call.commented.json",
    "aircall-call.tagged.json",
    "aircall-call.voicemail_left.json",
];

/// Posts every Aircall and then every Guesty event fixture to `daemon` (Guesty's signed with
/// `guesty_secret` as Svix signs, message ids `{id_prefix}{i}`); each must be acknowledged. The
/// daemon must accept the Aircall fixtures' own token.
pub fn post_fixture_webhooks(daemon: &Daemon, guesty_secret: &str, id_prefix: &str) {
    let read = |name: &str| {
        std::fs::read_to_string(fixture(&format!("webhooks/{name}"))).expect("fixture")
    };
    for name in AIRCALL_EVENT_FIXTURES {
        let (s, b) = daemon.post_json("/v1/webhooks/aircall", &read(name));
        assert_eq!(s, 202, "{name}: {b}");
    }
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    for (i, name) in GUESTY_EVENT_FIXTURES.iter().enumerate() {
        let body = read(name);
        let id = format!("{id_prefix}{i}");
        let sig = svix_signature(guesty_secret, &id, ts, &body);
        let tss = ts.to_string();
        let (s, b) = daemon.request(
            "POST",
            "/v1/webhooks/guesty",
            Some(&body),
            &[
                ("Content-Type", "application/json"),
                ("svix-id", &id),
                ("svix-timestamp", &tss),
                ("svix-signature", &sig),
            ],
        );
        assert_eq!(s, 202, "{name}: {b}");
    }
}

/// The Guesty event fixtures, in order.
pub const GUESTY_EVENT_FIXTURES: [&str; 5] = [
    "guesty-reservation.new.json",
    "guesty-reservation.updated.json",
    "guesty-listing.updated.json",
    "guesty-reservation.messageReceived.json",
    "guesty-reservation.updated.v2.json",
];

/// The `svix-signature` header of a Guesty (Svix) webhook: `v1,` and the base64 HMAC-SHA256
/// of `"{id}.{timestamp}.{body}"` under the base64 key after `whsec_`, written out here so the
/// tests do not trust the daemon's own implementation.
pub fn svix_signature(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use sha2::{Digest, Sha256};
    let key = STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("a base64 whsec_ secret");
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(&key);
    let message = format!("{id}.{timestamp}.{body}");
    let inner = Sha256::new()
        .chain_update(k.map(|b| b ^ 0x36))
        .chain_update(message.as_bytes())
        .finalize();
    let mac = Sha256::new()
        .chain_update(k.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize();
    format!("v1,{}", STANDARD.encode(mac))
}

/// A chunked body decoded (what is there of it).
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..line_end])
            .ok()
            .and_then(|t| usize::from_str_radix(t.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        rest = &rest[line_end + 2..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
    out
}

/// [`http_request`] with the answer's head too.
pub fn http_exchange(
    address: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Reply {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the daemon");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or("");
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream
        .write_all(head.as_bytes())
        .expect("send request head");
    // A server may answer (413) before reading a large body; a broken pipe then is expected.
    let _ = stream.write_all(body.as_bytes());
    // Some servers (chromedriver, the Firestore emulator) keep the connection open whatever
    // the request says: the body is read by its length (or chunks), never only to the end;
    // and nothing waits forever.
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(60)));
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break Some(p);
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break None,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    };
    let Some(head_end) = head_end else {
        panic!("not an HTTP response: {:?}", String::from_utf8_lossy(&raw));
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut rest = raw[head_end + 4..].to_vec();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_ascii_lowercase())
        })
    };
    let mut fill_until = |rest: &mut Vec<u8>, done: &dyn Fn(&[u8]) -> bool| {
        while !done(rest) {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
            }
        }
    };
    let body_bytes =
        if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
            fill_until(&mut rest, &|r| r.len() >= len);
            rest.truncate(len);
            rest
        } else if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            fill_until(&mut rest, &|r| r.ends_with(b"0\r\n\r\n"));
            dechunk(&rest)
        } else {
            fill_until(&mut rest, &|_| false);
            rest
        };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {head:?}"));
    let body = String::from_utf8_lossy(&body_bytes).into_owned();
    Reply { status, head, body }
}

/// A minimal HTTP/1.1 GET (`Connection: close`), enough for black-box checks.
pub fn http_get(address: &str, path: &str) -> (u16, String) {
    http_request(address, "GET", path, None, &[])
}

/// `concierge-sidecar` as a test runs it: a temporary directory (its working directory and
/// `HOME`, where its status file goes) and the `CONCIERGE_SIDECAR_*` variables it is given.
#[derive(Debug)]
pub struct SidecarEnv {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl SidecarEnv {
    /// A path inside the directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Sets (or replaces) a variable.
    pub fn set(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// The command, ready to run or spawn.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_via(&[], args)
    }

    /// The command run through `wrapper` (e.g. `setpriv --reuid=65534 ...`), the sidecar's
    /// path after the wrapper's own arguments.
    pub fn command_via(&self, wrapper: &[&str], args: &[&str]) -> Command {
        let mut c = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(binary("concierge-sidecar"));
                c
            }
            None => Command::new(binary("concierge-sidecar")),
        };
        c.args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs it to the end.
    pub fn sidecar(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run concierge-sidecar")
    }

    /// The status file (`status.json` in the directory), parsed.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.path("status.json")).expect("status file"))
            .expect("status JSON")
    }
}

/// Fails the test with the command's output unless it succeeded.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?})\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A small tmpfs (mounting needs root, which CI and `./test.sh` here run as), unmounted on
/// drop: a disk that fills up.
#[derive(Debug)]
pub struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    pub fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).expect("mkdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a small tmpfs failed (the test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk {
            dir: dir.to_path_buf(),
        }
    }

    pub fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "remount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).output();
    }
}

/// Sends `signal` (a name `kill` knows) to `child` and waits up to `timeout` for it to exit.
pub fn signal_and_wait(
    child: &mut std::process::Child,
    signal: &str,
    timeout: std::time::Duration,
) -> std::process::ExitStatus {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{signal} failed");
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SIG{signal} did not end the process within {timeout:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
