//! Pack uploads in the background, several at a time (rustic_core hands packs to its backend one
//! after the other from a single writer thread, so without this every pack waits for the
//! previous upload). Only packs go through here; any other write (index, snapshot, key, config),
//! any removal and any read of a pack first waits until every pending pack is stored, and fails if
//! one of them failed. So an index or snapshot never references a pack that is not in the bucket,
//! and an upload error is never lost: it fails the next step of the backup.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::client::{S3Client, S3Error};

/// One queued upload.
struct Job {
    key: String,
    body: Vec<u8>,
}

#[derive(Default)]
struct State {
    /// Queued or running uploads.
    pending: usize,
    /// The first failure, until it is reported.
    failed: Option<S3Error>,
    /// A failure was reported already (later waits fail too, without the details again).
    reported: bool,
}

/// The background uploaders of one backend.
pub struct Uploads {
    sender: Mutex<Option<SyncSender<Job>>>,
    state: Arc<(Mutex<State>, Condvar)>,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploads").finish_non_exhaustive()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    match state.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Uploads {
    /// `connections` uploads at a time; as many more may wait in the queue (memory: each is one
    /// pack, a few MB to a few tens of MB).
    pub fn new(client: Arc<S3Client>, connections: usize) -> Self {
        let connections = connections.max(1);
        let (sender, receiver) = sync_channel::<Job>(connections);
        let receiver = Arc::new(Mutex::new(receiver));
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let workers = (0..connections)
            .map(|_| {
                let (client, receiver, state) = (
                    Arc::clone(&client),
                    Arc::clone(&receiver),
                    Arc::clone(&state),
                );
                std::thread::spawn(move || worker(&client, &receiver, &state))
            })
            .collect();
        Uploads {
            sender: Mutex::new(Some(sender)),
            state,
            workers: Mutex::new(workers),
        }
    }

    /// Queues a pack (waits while the queue is full); fails at once if an upload already failed.
    pub fn put(&self, key: String, body: Vec<u8>) -> Result<(), S3Error> {
        self.take_failure()?;
        lock(&self.state.0).pending += 1;
        let sender = self.sender.lock().ok().and_then(|s| s.clone());
        let sent = sender.map(|s| s.send(Job { key, body }).is_ok());
        if sent != Some(true) {
            let mut st = lock(&self.state.0);
            st.pending -= 1;
            return Err(S3Error::Protocol {
                what: "pack upload".into(),
                detail: "the uploaders have stopped".into(),
            });
        }
        Ok(())
    }

    /// Waits until every queued pack is stored; the first failure among them, if any.
    pub fn flush(&self) -> Result<(), S3Error> {
        let (state, done) = &*self.state;
        let mut st = lock(state);
        while st.pending > 0 {
            st = match done.wait(st) {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
        }
        drop(st);
        self.take_failure()
    }

    fn take_failure(&self) -> Result<(), S3Error> {
        let mut st = lock(&self.state.0);
        if let Some(e) = st.failed.take() {
            st.reported = true;
            return Err(e);
        }
        if st.reported {
            return Err(S3Error::Protocol {
                what: "pack upload".into(),
                detail: "an earlier pack upload failed".into(),
            });
        }
        Ok(())
    }
}

impl Drop for Uploads {
    fn drop(&mut self) {
        // Closing the channel ends the workers once the queue is drained.
        if let Ok(mut s) = self.sender.lock() {
            s.take();
        }
        if let Ok(mut w) = self.workers.lock() {
            for handle in w.drain(..) {
                let _ = handle.join();
            }
        }
    }
}

fn worker(client: &S3Client, receiver: &Mutex<Receiver<Job>>, state: &(Mutex<State>, Condvar)) {
    loop {
        let job = match receiver.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let result = client.put(&job.key, &job.body);
        let (state, done) = state;
        let mut st = lock(state);
        if let Err(e) = result {
            tracing::error!(key = %job.key, error = %e, "pack upload failed");
            if st.failed.is_none() && !st.reported {
                st.failed = Some(e);
            }
        }
        st.pending -= 1;
        done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::client::S3Config;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// An S3 stand-in that stores nothing: answers PUTs after `delay`, with 500 for keys
    /// containing `fail`; counts the uploads in flight at once.
    fn server(delay: Duration) -> (String, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let (current, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let seen = Arc::clone(&most);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (current, most) = (Arc::clone(&current), Arc::clone(&most));
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut line = String::new();
                    let _ = reader.read_line(&mut line);
                    let mut length = 0;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(delay);
                    current.fetch_sub(1, Ordering::SeqCst);
                    let status = if line.contains("fail") {
                        "500 Internal Server Error"
                    } else {
                        "200 OK"
                    };
                    let mut stream = stream;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                });
            }
        });
        (endpoint, seen)
    }

    fn client(endpoint: &str) -> Arc<S3Client> {
        Arc::new(
            S3Client::new(S3Config {
                endpoint: endpoint.to_owned(),
                bucket: "b".into(),
                region: "auto".into(),
                path_style: true,
                access_key_id: "ak".into(),
                secret_access_key: "sk".into(),
                timeout: Duration::from_secs(10),
                attempts: 1,
                backoff: Duration::from_millis(1),
            })
            .expect("client"),
        )
    }

    #[test]
    fn packs_upload_concurrently_and_flush_waits_for_all_of_them() {
        let (endpoint, most) = server(Duration::from_millis(200));
        let uploads = Uploads::new(client(&endpoint), 4);
        for i in 0..8 {
            uploads
                .put(format!("data/{i}"), vec![1; 1000])
                .expect("queued");
        }
        uploads.flush().expect("all stored");
        assert_eq!(lock(&uploads.state.0).pending, 0);
        assert!(
            most.load(Ordering::SeqCst) >= 3,
            "uploads ran one at a time"
        );
        assert!(
            most.load(Ordering::SeqCst) <= 4,
            "more than 4 uploads at once"
        );
    }

    #[test]
    fn a_failed_upload_fails_the_next_flush_and_every_later_put() {
        let (endpoint, _) = server(Duration::from_millis(10));
        let uploads = Uploads::new(client(&endpoint), 2);
        uploads.put("data/ok".into(), vec![1; 10]).expect("queued");
        uploads
            .put("data/fail".into(), vec![1; 10])
            .expect("queued");
        let err = uploads.flush().expect_err("the failure is reported");
        assert!(err.to_string().contains("500"), "{err}");
        assert!(uploads.put("data/later".into(), vec![1]).is_err());
        assert!(uploads.flush().is_err());
    }
}
