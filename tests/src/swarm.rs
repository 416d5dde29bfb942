//! A real single-node Docker swarm for tests (`../shared/real-components.md` §2): Debian's
//! `dockerd` with its own data root, exec root and socket under a temporary directory (so it
//! cannot clash with anything), `swarm init` on loopback, stopped and removed on drop.
//!
//! One swarm at a time on the machine: two engines would allocate the same overlay VXLAN ids
//! and collide in the kernel ("vxlan: file exists"), so `start` takes an exclusive lock on a
//! file (held until drop) — across the processes nextest runs as well as threads of one.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running engine with a swarm.
#[derive(Debug)]
pub struct Swarm {
    dir: tempfile::TempDir,
    engine: Child,
    /// Held for the swarm's life (see the module's note).
    _one_at_a_time: std::fs::File,
    /// `unix:///…/docker.sock`.
    pub host: String,
}

impl Swarm {
    /// Starts `dockerd` and initialises a swarm (panics with the engine's log if it cannot).
    pub fn start() -> Swarm {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(std::env::temp_dir().join("concierge-tests-swarm.lock"))
            .expect("the swarm lock file");
        lock.lock().expect("lock the swarm lock file");
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let socket = d.join("docker.sock");
        let log = std::fs::File::create(d.join("dockerd.log")).expect("log file");
        let engine = Command::new("dockerd")
            .env("DOCKER_SERVICE_PREFER_OFFLINE_IMAGE", "1")
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args(["--iptables=false", "--bridge=none"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dockerd (apt-get install docker.io; scripts/system-deps.sh does)");
        let swarm = Swarm {
            host: format!("unix://{}", socket.display()),
            dir,
            engine,
            _one_at_a_time: lock,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !swarm.docker(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not start: {}",
                swarm.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let init = swarm.docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
        assert!(
            init.status.success(),
            "swarm init: {init:?}\n{}",
            swarm.log()
        );
        swarm
    }

    /// Runs the docker client against this engine.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .arg("-H")
            .arg(&self.host)
            .args(args)
            .output()
            .expect("run the docker client")
    }

    /// Imports a busybox image as `tag` (`/bin/busybox` and the applets the tests use), the
    /// stand-in for an application image: no registry is needed.
    pub fn import_busybox(&self, tag: &str) {
        let root = self
            .dir
            .path()
            .join(format!("busybox-{}", tag.replace([':', '/'], "-")));
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).expect("busybox root");
        std::fs::copy("/bin/busybox", bin.join("busybox")).expect(
            "copy /bin/busybox (apt-get install busybox-static; scripts/system-deps.sh does)",
        );
        for applet in [
            "sh", "sleep", "true", "false", "cat", "echo", "wget", "nc", "test",
        ] {
            let link = bin.join(applet);
            if !link.exists() {
                std::os::unix::fs::symlink("busybox", link).expect("applet link");
            }
        }
        let archive = root.with_extension("tar");
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&archive)
            .arg(".")
            .status()
            .expect("tar");
        assert!(tar.success(), "tar of the busybox root");
        let import = Command::new("docker")
            .arg("-H")
            .arg(&self.host)
            .args(["import", "--change", "CMD [\"/bin/sh\"]"])
            .arg(&archive)
            .arg(tag)
            .output()
            .expect("docker import");
        assert!(import.status.success(), "docker import: {import:?}");
    }

    /// A service's spec as the engine holds it (`docker service inspect`), `Null` when gone.
    pub fn service_spec(&self, name: &str) -> serde_json::Value {
        let out = self.docker(&["service", "inspect", "--format", "{{json .Spec}}", name]);
        if !out.status.success() {
            return serde_json::Value::Null;
        }
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// A scratch directory that lives as long as the swarm.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The engine's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// Waits until the one running task of `service` reports `healthy`; its container id.
    pub fn wait_healthy(&self, service: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let filter = format!("label=com.docker.swarm.service.name={service}");
        loop {
            let ps = self.docker(&["ps", "-q", "--filter", &filter]);
            let id = String::from_utf8_lossy(&ps.stdout).trim().to_owned();
            if !id.is_empty() {
                let health = self.docker(&["inspect", "--format", "{{.State.Health.Status}}", &id]);
                if String::from_utf8_lossy(&health.stdout).trim() == "healthy" {
                    return id;
                }
            }
            if Instant::now() > deadline {
                let tasks = self.docker(&["service", "ps", "--no-trunc", service]);
                let logs = self.docker(&["service", "logs", service]);
                panic!(
                    "{service} did not turn healthy in {timeout:?}\n{}\n{}{}",
                    String::from_utf8_lossy(&tasks.stdout),
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        // Services first, then their overlay networks: an overlay left behind keeps a vxlan
        // device in a network namespace, and the next swarm's overlay then fails to join.
        let services = self.docker(&["service", "ls", "-q"]);
        for id in String::from_utf8_lossy(&services.stdout).split_whitespace() {
            let _ = self.docker(&["service", "rm", id]);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let left = self.docker(&["ps", "-q"]);
            if left.stdout.iter().all(u8::is_ascii_whitespace) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.docker(&["network", "prune", "-f"]);
        let _ = self.docker(&["swarm", "leave", "--force"]);
        // SIGTERM: the engine stops its containers and unmounts what it mounted.
        let _ = Command::new("kill")
            .args(["-TERM", &self.engine.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut stopped = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.engine.try_wait() {
                stopped = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !stopped {
            let _ = self.engine.kill();
            let _ = self.engine.wait();
        }
        // Whatever the engine left mounted under its directory (network namespaces, overlay
        // layers) goes, deepest first, so the directory can be removed.
        let root = self.dir.path().display().to_string();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
            .filter(|m| m.starts_with(&root))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }
}

/// The workspace's `deploy/` directory.
pub fn deploy_dir() -> PathBuf {
    crate::workspace_root().join("deploy")
}
