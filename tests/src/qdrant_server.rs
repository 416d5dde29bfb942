//! Qdrant's REST API for the tests: `tests/qdrant/server.py` around qdrant-client's local mode
//! (installed by `scripts/test-tools.sh` into `tests/.venv`), started on a free loopback port and
//! stopped on drop. It parses every body with Qdrant's own generated models (unknown fields are
//! 400s, as on the server) and can inject faults (`fault`). A missing install is a failure that
//! says so, never a skip.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::{http_exchange, workspace_root};

/// A running Qdrant stand-in.
#[derive(Debug)]
pub struct QdrantServer {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

impl QdrantServer {
    /// Starts it on a free port; returns once it listens.
    pub fn start() -> QdrantServer {
        let port = crate::free_port();
        QdrantServer::start_on(port)
    }

    /// Starts it on `port` (a daemon may already point there); returns once it listens.
    pub fn start_on(port: u16) -> QdrantServer {
        let python = workspace_root().join("tests/.venv/bin/python");
        assert!(
            python.is_file(),
            "tests/.venv is missing: run scripts/test-tools.sh (./test.sh does)"
        );
        let mut child = Command::new(python)
            .arg(workspace_root().join("tests/qdrant/server.py"))
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/qdrant/server.py");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the server's first line");
        assert_eq!(
            line.trim(),
            "ready",
            "tests/qdrant/server.py did not start (is qdrant-client installed? scripts/test-tools.sh)"
        );
        QdrantServer {
            child,
            address: format!("127.0.0.1:{port}"),
        }
    }

    /// `http://127.0.0.1:PORT` (what `qdrant.url` takes).
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// One call: (status, the envelope's `result`, or the whole answer on an error).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let text = body.map(Value::to_string);
        let reply = http_exchange(
            &self.address,
            method,
            path,
            text.as_deref(),
            &[("Content-Type", "application/json")],
        );
        let v: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
        if reply.status == 200 {
            (reply.status, v["result"].clone())
        } else {
            (reply.status, v)
        }
    }

    /// Every point of `collection` with payloads (and vectors when asked).
    pub fn points(&self, collection: &str, with_vectors: bool) -> Vec<Value> {
        let mut out = Vec::new();
        let mut offset = Value::Null;
        loop {
            let (status, page) = self.call(
                "POST",
                &format!("/collections/{collection}/points/scroll"),
                Some(&json!({"limit": 256, "offset": offset, "with_payload": true, "with_vector": with_vectors})),
            );
            assert_eq!(status, 200, "scroll {collection}: {page}");
            out.extend(page["points"].as_array().cloned().unwrap_or_default());
            offset = page["next_page_offset"].clone();
            if offset.is_null() {
                return out;
            }
        }
    }

    /// The next `count` `method` requests whose path contains `matching` are answered `status`
    /// (with `Retry-After` when given).
    pub fn fault(
        &self,
        status: u16,
        count: u32,
        method: &str,
        matching: &str,
        retry_after: Option<u64>,
    ) {
        let mut f = json!({"status": status, "count": count, "method": method, "match": matching});
        if let Some(s) = retry_after {
            f["retry_after"] = json!(s);
        }
        let (code, body) = self.call("POST", "/_faults", Some(&f));
        assert_eq!(code, 200, "{body}");
    }

    /// The requests it has seen: (method, path).
    pub fn requests(&self) -> Vec<(String, String)> {
        let (_, list) = self.call("GET", "/_requests", None);
        list.as_array()
            .map(|l| {
                l.iter()
                    .map(|r| {
                        (
                            r["method"].as_str().unwrap_or("").to_owned(),
                            r["path"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for QdrantServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
