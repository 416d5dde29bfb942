//! The real Firestore emulator (`../shared/real-components.md` §1: the jar of Debian's
//! `google-cloud-cli-firestore-emulator`, Java 17), started on a free loopback port for a test
//! and stopped on drop; a missing jar is a failure that says so, never a skip.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http_exchange;

/// The emulator's jar on this kind of machine.
pub const JAR: &str =
    "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar";

/// A running emulator.
#[derive(Debug)]
pub struct FirestoreEmulator {
    child: Child,
    /// `127.0.0.1:PORT` (what `firestore.emulator_host` takes).
    pub host: String,
    pub project: String,
}

impl FirestoreEmulator {
    /// Starts the emulator on a free port and waits until it answers.
    pub fn start() -> FirestoreEmulator {
        let port = crate::free_port();
        FirestoreEmulator::start_on(port)
    }

    /// Starts the emulator on `port` (a daemon may already point there).
    pub fn start_on(port: u16) -> FirestoreEmulator {
        assert!(
            Path::new(JAR).exists(),
            "the Firestore emulator is missing ({JAR}): this machine image should have google-cloud-cli-firestore-emulator"
        );
        let child = Command::new("java")
            .args(["-Duser.language=en", "-cp", JAR])
            .arg("com.google.cloud.datastore.emulator.firestore.CloudFirestore")
            .args(["start", "--host=127.0.0.1", &format!("--port={port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the Firestore emulator (java)");
        let emulator = FirestoreEmulator {
            child,
            host: format!("127.0.0.1:{port}"),
            project: "concierge-test".into(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(&emulator.host).is_err() {
            assert!(
                Instant::now() < deadline,
                "the Firestore emulator did not start in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        emulator
    }

    /// `GET` a path under `/v1/projects/{p}/databases/(default)/documents/`; (status, JSON).
    pub fn get(&self, path: &str) -> (u16, Value) {
        let reply = http_exchange(
            &self.host,
            "GET",
            &format!(
                "/v1/projects/{}/databases/(default)/documents/{path}",
                self.project
            ),
            None,
            &[("Authorization", "Bearer owner")],
        );
        (
            reply.status,
            serde_json::from_str(&reply.body).unwrap_or(Value::Null),
        )
    }

    /// Every document of `collection` (all pages).
    pub fn list(&self, collection: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let (status, page) = self.get(&format!("{collection}?pageSize=300&pageToken={token}"));
            assert_eq!(status, 200, "listing {collection}: {page}");
            out.extend(page["documents"].as_array().cloned().unwrap_or_default());
            match page["nextPageToken"].as_str() {
                Some(t) if !t.is_empty() => token = t.to_owned(),
                _ => return out,
            }
        }
    }

    /// Waits until `check` passes on the collection's documents; panics with them after `timeout`.
    pub fn wait_for(
        &self,
        collection: &str,
        timeout: Duration,
        check: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let docs = self.list(collection);
            if check(&docs) {
                return docs;
            }
            assert!(
                Instant::now() < deadline,
                "Firestore never reached the expected state: {docs:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for FirestoreEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
