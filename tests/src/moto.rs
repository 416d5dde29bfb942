//! `moto_server` (pip `moto[server]`, installed by `scripts/test-tools.sh` into `tests/.venv`),
//! the S3-compatible server the backup tests and benchmark start on loopback; killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::workspace_root;

/// `moto_server`: from scripts/test-tools.sh's virtualenv, else PATH.
pub fn moto_server() -> PathBuf {
    let venv = workspace_root().join("tests/.venv/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("moto_server"))
            .find(|c| c.is_file())
    });
    on_path.expect("moto_server is not installed: run scripts/test-tools.sh (./test.sh does)")
}

#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    /// Starts it on a free port and waits until it listens.
    pub fn start() -> Moto {
        let port = crate::free_port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
