//! Firestore write-behind: the engine's sync consumer `firestore` hands each changed document's
//! current state to [`FirestoreSink`], which writes it to `[firestore] collection` with
//! `:batchWrite`.
//!
//! - At most 500 writes and 10 MiB per request (Firestore's limits; the emulator enforces
//!   neither, so this code does), one write per document per request (the engine coalesces).
//! - Each write's own status is read: UNAVAILABLE, ABORTED, DEADLINE_EXCEEDED and
//!   RESOURCE_EXHAUSTED are retried (by the engine, capped backoff), anything else is final
//!   and goes to the dead letters with Firestore's message. A whole request answered 429 or
//!   503 is retried after its `Retry-After`; a whole request refused (4xx) is sent again one
//!   write per request, to find the write that is at fault.
//! - A request the server finds too large (413, or 429 "exceeds maximum size": the emulator
//!   stops at 4 MiB) is split in halves until each part fits.
//! - A document over Firestore's 1 MiB limit is not sent: it is dead-lettered with its size
//!   (visible in `/v1/admin/status`), never dropped silently (ARCHITECTURE.md, Decisions).
//! - The emulator (`emulator_host`) is plain HTTP with `Authorization: Bearer owner`.

pub mod encode;
pub mod token;

use std::time::Duration;

use concierge_engine::{SyncChange, SyncSink, WriteOutcome};
use concierge_infra::retry;
use serde_json::{Value, json};

/// Firestore's caps per `batchWrite`.
pub const MAX_WRITES: usize = 500;
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
/// gRPC codes worth another try.
const RETRYABLE: &[i64] = &[4, 8, 10, 14];

/// Where and how to write.
#[derive(Debug, Clone)]
pub struct FirestoreTarget {
    /// `http://127.0.0.1:8681` (emulator) or `https://firestore.googleapis.com`.
    pub base: String,
    pub project_id: String,
    pub database: String,
    pub collection: String,
    pub auth: Auth,
}

/// How requests are signed in.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A fixed bearer token (`owner` for the emulator).
    Static(String),
    /// A service account's access tokens.
    Account(std::sync::Arc<token::TokenSource>),
}

impl Auth {
    /// The `Authorization` header's value.
    pub fn header(&self) -> Result<String, String> {
        match self {
            Auth::Static(t) => Ok(format!("Bearer {t}")),
            Auth::Account(source) => source.bearer().map(|t| format!("Bearer {t}")),
        }
    }
}

impl FirestoreTarget {
    /// `projects/{p}/databases/{d}/documents`.
    pub fn root(&self) -> String {
        format!(
            "projects/{}/databases/{}/documents",
            self.project_id, self.database
        )
    }

    /// The full name of one of our documents.
    pub fn name_of(&self, id: &str) -> String {
        format!(
            "{}/{}/{}",
            self.root(),
            self.collection,
            encode::document_id(id)
        )
    }
}

/// The sink the engine's `firestore` consumer writes through.
#[derive(Debug)]
pub struct FirestoreSink {
    target: FirestoreTarget,
    agent: ureq::Agent,
    /// `batchWrite` requests sent, answered or not.
    requests: std::sync::atomic::AtomicU64,
}

impl FirestoreSink {
    pub fn new(target: FirestoreTarget) -> FirestoreSink {
        let agent = crate::outbound::agent(Duration::from_secs(60));
        FirestoreSink {
            target,
            agent,
            requests: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// One write: an update with every field (replacing the document) or a delete.
    fn write_of(&self, change: &SyncChange) -> Value {
        let name = self.target.name_of(&change.id);
        match &change.document {
            Some(doc) => {
                json!({"update": {"name": name, "fields": encode::fields(doc, change.seq)}})
            }
            None => json!({"delete": name}),
        }
    }

    /// One `batchWrite`: per-write outcomes, in order.
    fn batch(&self, writes: &[Value]) -> Vec<WriteOutcome> {
        let url = format!(
            "{}/v1/{}:batchWrite",
            self.target.base.trim_end_matches('/'),
            self.target.root()
        );
        let body = json!({"writes": writes}).to_string();
        let all = |o: WriteOutcome| vec![o; writes.len()];
        let authorization = match self.target.auth.header() {
            Ok(h) => h,
            Err(reason) => {
                return all(WriteOutcome::Retry {
                    reason,
                    after: None,
                });
            }
        };
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let response = self
            .agent
            .post(&url)
            .header("Authorization", &authorization)
            .header("Content-Type", "application/json")
            .send(&body);
        let mut response = match response {
            Ok(r) => r,
            Err(e) => {
                return all(WriteOutcome::Retry {
                    reason: format!("Firestore cannot be reached: {e}"),
                    after: None,
                });
            }
        };
        let crate::outbound::Answer {
            status,
            retry_after,
            body: text,
        } = crate::outbound::read(&mut response);
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let message = answer["error"]["message"]
            .as_str()
            .map_or_else(|| text.chars().take(300).collect(), str::to_owned);
        match status {
            200 => {
                let statuses = answer["status"].as_array().cloned().unwrap_or_default();
                (0..writes.len())
                    .map(|i| {
                        let s = statuses.get(i).cloned().unwrap_or(Value::Null);
                        let code = s["code"].as_i64().unwrap_or(0);
                        let msg = s["message"].as_str().unwrap_or("").to_owned();
                        if code == 0 {
                            WriteOutcome::Done
                        } else if RETRYABLE.contains(&code) {
                            WriteOutcome::Retry {
                                reason: format!("Firestore write status {code}: {msg}"),
                                after: None,
                            }
                        } else {
                            WriteOutcome::Failed(format!(
                                "Firestore refused the write (status {code}): {msg}"
                            ))
                        }
                    })
                    .collect()
            }
            // Too large for this server (the emulator's gRPC limit is 4 MiB, production's 10):
            // halves, until a request fits or one write alone does not.
            413 | 429 if status == 413 || message.contains("exceeds maximum size") => {
                if writes.len() > 1 {
                    let (a, b) = writes.split_at(writes.len() / 2);
                    let mut out = self.batch(a);
                    out.extend(self.batch(b));
                    out
                } else {
                    all(WriteOutcome::Failed(format!(
                        "Firestore refused the write as too large ({status}): {message}"
                    )))
                }
            }
            429 | 503 => all(WriteOutcome::Retry {
                reason: format!("Firestore answered {status}: {message}"),
                after: retry_after,
            }),
            s if s >= 500 => all(WriteOutcome::Retry {
                reason: format!("Firestore answered {status}: {message}"),
                after: retry_after,
            }),
            // 401/403: credentials, not the documents: keep them and retry (an operator fixes it).
            401 | 403 => all(WriteOutcome::Retry {
                reason: format!("Firestore refused the credentials ({status}): {message}"),
                after: None,
            }),
            _ if writes.len() > 1 => {
                // The request as a whole was refused: find the write at fault one by one.
                writes
                    .iter()
                    .flat_map(|w| self.batch(std::slice::from_ref(w)))
                    .collect()
            }
            _ => all(WriteOutcome::Failed(format!(
                "Firestore refused the write ({status}): {message}"
            ))),
        }
    }
}

impl SyncSink for FirestoreSink {
    fn name(&self) -> &'static str {
        "firestore"
    }

    fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn write(&mut self, changes: &[SyncChange]) -> Vec<WriteOutcome> {
        let mut outcomes: Vec<Option<WriteOutcome>> = vec![None; changes.len()];
        // Requests of at most 500 writes and 10 MiB; an oversize document is never sent.
        let mut pending: Vec<(usize, Value)> = Vec::new();
        let mut pending_bytes = 0usize;
        let flush = |pending: &mut Vec<(usize, Value)>,
                     outcomes: &mut Vec<Option<WriteOutcome>>,
                     this: &FirestoreSink| {
            if pending.is_empty() {
                return;
            }
            let writes: Vec<Value> = pending.iter().map(|(_, w)| w.clone()).collect();
            for ((i, _), o) in pending.drain(..).zip(this.batch(&writes)) {
                outcomes[i] = Some(o);
            }
        };
        for (i, change) in changes.iter().enumerate() {
            let write = self.write_of(change);
            let size = write.to_string().len();
            if change.document.is_some() && size > encode::MAX_DOCUMENT_BYTES {
                outcomes[i] = Some(WriteOutcome::Failed(format!(
                    "the document is {size} bytes as Firestore fields, over Firestore's 1 MiB limit: not synced (it stays in Concierge)"
                )));
                continue;
            }
            if pending.len() == MAX_WRITES || pending_bytes + size + 16 > MAX_REQUEST_BYTES {
                flush(&mut pending, &mut outcomes, self);
                pending_bytes = 0;
            }
            pending_bytes += size + 1;
            pending.push((i, write));
        }
        flush(&mut pending, &mut outcomes, self);
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or(WriteOutcome::Retry {
                    reason: "not sent".into(),
                    after: None,
                })
            })
            .collect()
    }
}

/// Reads the collection back, page by page (`GET …/{collection}?pageSize=…&pageToken=…`).
#[derive(Debug)]
pub struct CollectionReader {
    target: FirestoreTarget,
    agent: ureq::Agent,
    token: Option<String>,
    done: bool,
}

impl CollectionReader {
    pub fn new(target: FirestoreTarget) -> CollectionReader {
        let agent = crate::outbound::agent(Duration::from_secs(120));
        CollectionReader {
            target,
            agent,
            token: None,
            done: false,
        }
    }

    /// The next page of documents (`None` after the last), each decoded; a document that
    /// cannot be decoded is an error naming it.
    pub fn next_page(&mut self) -> Option<Result<Vec<concierge_engine::Document>, String>> {
        if self.done {
            return None;
        }
        let mut url = format!(
            "{}/v1/{}/{}?pageSize=300",
            self.target.base.trim_end_matches('/'),
            self.target.root(),
            self.target.collection
        );
        if let Some(t) = &self.token {
            url.push_str("&pageToken=");
            url.push_str(t);
        }
        let policy = retry::Policy::new(
            6,
            retry::Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
        );
        let answer = policy.run(
            |_| {
                let authorization = match self.target.auth.header() {
                    Ok(h) => h,
                    Err(e) => {
                        return retry::Attempt::Retry {
                            error: e,
                            after: None,
                        };
                    }
                };
                let sent = self
                    .agent
                    .get(&url)
                    .header("Authorization", &authorization)
                    .call();
                match sent {
                    Ok(mut r) => {
                        let status = r.status().as_u16();
                        let text = r.body_mut().read_to_string().unwrap_or_default();
                        match status {
                            200 => serde_json::from_str::<Value>(&text).map_or_else(
                                |e| {
                                    retry::Attempt::Fatal(format!(
                                        "Firestore's page is not JSON: {e}"
                                    ))
                                },
                                retry::Attempt::Done,
                            ),
                            429 | 500..=599 => retry::Attempt::Retry {
                                error: format!("Firestore answered {status}"),
                                after: None,
                            },
                            _ => retry::Attempt::Fatal(format!(
                                "Firestore answered {status}: {}",
                                text.chars().take(300).collect::<String>()
                            )),
                        }
                    }
                    Err(e) => retry::Attempt::Retry {
                        error: format!("Firestore cannot be reached: {e}"),
                        after: None,
                    },
                }
            },
            retry::sleep,
        );
        let page = match answer {
            Ok(p) => p,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        self.token = page["nextPageToken"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        self.done = self.token.is_none();
        let mut docs = Vec::new();
        for d in page["documents"].as_array().into_iter().flatten() {
            let name = d["name"].as_str().unwrap_or("?");
            match encode::document_of(&d["fields"]) {
                Some(doc) if encode::our_id(name.rsplit('/').next().unwrap_or("")) == doc.id => {
                    docs.push(doc)
                }
                Some(doc) => {
                    return Some(Err(format!(
                        "Firestore document {name} holds id {:?}, which is not its name's",
                        doc.id
                    )));
                }
                None => {
                    return Some(Err(format!(
                        "Firestore document {name} is not a Concierge document"
                    )));
                }
            }
        }
        Some(Ok(docs))
    }
}
