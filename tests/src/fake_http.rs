//! A scripted HTTP/1.1 server on loopback for the fake external services (the OpenAI-compatible
//! LLM API, RocketChat's REST API): each request is handed to the test's function, which answers
//! with a status, headers, a body (or SSE events sent one by one) and an optional delay; every
//! request is recorded. One thread per connection, `Connection: close`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request the server received.
#[derive(Debug, Clone)]
pub struct FakeRequest {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl FakeRequest {
    /// A header's value (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
pub struct FakeResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Sent in order, flushed one by one (`pause` apart): one piece for a plain body, one per
    /// event for a stream.
    pub pieces: Vec<String>,
    /// Before the status line.
    pub delay: Duration,
    /// Between pieces.
    pub pause: Duration,
}

impl FakeResponse {
    /// A JSON answer.
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        FakeResponse {
            status,
            headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
            pieces: vec![body.to_string()],
            delay: Duration::ZERO,
            pause: Duration::ZERO,
        }
    }

    /// A `text/event-stream` of these `data:` payloads (each becomes one event).
    pub fn sse(data: &[String]) -> Self {
        FakeResponse {
            status: 200,
            headers: vec![("Content-Type".to_owned(), "text/event-stream".to_owned())],
            pieces: data.iter().map(|d| format!("data: {d}\n\n")).collect(),
            delay: Duration::ZERO,
            pause: Duration::from_millis(5),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Waits before answering.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Handler = dyn Fn(&FakeRequest) -> FakeResponse + Send + Sync;

/// A running fake server (it lives until the test process ends).
#[derive(Clone)]
pub struct FakeServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    requests: Arc<Mutex<Vec<FakeRequest>>>,
}

impl std::fmt::Debug for FakeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeServer")
            .field("base", &self.base)
            .finish()
    }
}

impl FakeServer {
    /// Starts a server answering with `handler`.
    pub fn start(handler: impl Fn(&FakeRequest) -> FakeResponse + Send + Sync + 'static) -> Self {
        FakeServer::start_on(0, handler)
    }

    /// [`FakeServer::start`] on `port` (a client may already point there; 0: any free port).
    pub fn start_on(
        port: u16,
        handler: impl Fn(&FakeRequest) -> FakeResponse + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind a fake server");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (handler, log) = (handler.clone(), log.clone());
                std::thread::spawn(move || serve(stream, &*handler, &log));
            }
        });
        FakeServer { base, requests }
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<FakeRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The requests to `path`.
    pub fn requests_to(&self, path: &str) -> Vec<FakeRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits (bounded) until `path` got at least `n` requests; returns them.
    pub fn wait_for(&self, path: &str, n: usize, timeout: Duration) -> Vec<FakeRequest> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let got = self.requests_to(path);
            if got.len() >= n || std::time::Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve(stream: std::net::TcpStream, handler: &Handler, log: &Mutex<Vec<FakeRequest>>) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let request = FakeRequest {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    if let Ok(mut l) = log.lock() {
        l.push(request.clone());
    }
    let response = handler(&request);
    std::thread::sleep(response.delay);
    let mut stream = stream;
    let mut head = format!("HTTP/1.1 {} Fake\r\nConnection: close\r\n", response.status);
    for (k, v) in &response.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let streaming = response.pieces.len() > 1;
    if !streaming {
        let body = response.pieces.first().map_or("", String::as_str);
        head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        let _ = stream.write_all(head.as_bytes());
        return;
    }
    // A stream: no length, the end of the connection ends the body.
    head.push_str("\r\n");
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    for piece in &response.pieces {
        if stream
            .write_all(piece.as_bytes())
            .and_then(|()| stream.flush())
            .is_err()
        {
            return;
        }
        std::thread::sleep(response.pause);
    }
}
