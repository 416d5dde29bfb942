//! A real single-node Docker swarm for tests (`../shared/real-components.md` §2): Debian's
//! `dockerd` with its own data root, exec root and socket under a temporary directory (so it
//! cannot clash with anything), `swarm init` on loopback, stopped and removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running engine with a swarm.
#[derive(Debug)]
pub struct Swarm {
    dir: tempfile::TempDir,
    engine: Child,
    /// `unix:///…/docker.sock`.
    pub host: String,
}

impl Swarm {
    /// Starts `dockerd` and initialises a swarm (panics with the engine's log if it cannot).
    pub fn start() -> Swarm {
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
