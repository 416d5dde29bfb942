//! A small client of the Docker Engine API: HTTP/1.1 over the engine's unix socket
//! (`unix:///var/run/docker.sock`) or plain TCP (`tcp://host:2375`), one connection per
//! request (`Connection: close`), JSON in and out. The API version is negotiated once: the
//! engine's `/version` must report 1.41 or newer, and every call is then made as 1.41, the
//! version whose semantics this module was written and tested against (Engine 20.10). TLS to
//! a remote engine is not spoken: tunnel it (`ssh -L`) or run the sidecar on a manager.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// The API version every call is made as.
pub const API_VERSION: &str = "1.41";
/// The largest answer read (service logs are asked for by tail, so this is never near).
const MAX_BODY: usize = 64 << 20;

/// Why a call to the engine failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("the Docker engine at {host} cannot be reached: {source}")]
    Unreachable {
        host: String,
        source: std::io::Error,
    },
    #[error("{method} {path}: the Docker engine answered {status}: {message}")]
    Api {
        method: String,
        path: String,
        status: u16,
        message: String,
    },
    #[error(
        "the Docker engine at {host} speaks API {version}; deploy needs {API_VERSION} or newer (Engine 20.10+)"
    )]
    TooOld { host: String, version: String },
    #[error("the Docker engine's answer to {what} is not what the API describes: {detail}")]
    Protocol { what: String, detail: String },
    #[error("docker host {0:?}: use unix:///path/to/docker.sock or tcp://host:port")]
    BadHost(String),
}

impl EngineError {
    /// The engine answered with this HTTP status.
    pub fn status(&self) -> Option<u16> {
        if let EngineError::Api { status, .. } = self {
            Some(*status)
        } else {
            None
        }
    }

    fn protocol(what: &str, detail: impl Into<String>) -> Self {
        EngineError::Protocol {
            what: what.to_owned(),
            detail: detail.into(),
        }
    }
}

#[derive(Debug, Clone)]
enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

/// A connection to one engine (cheap to clone: it holds only the address).
#[derive(Debug, Clone)]
pub struct Engine {
    host: String,
    endpoint: Endpoint,
    timeout: Duration,
}

/// One answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Engine {
    /// Connects to `host` and negotiates the API version.
    pub fn connect(host: &str, timeout: Duration) -> Result<Engine, EngineError> {
        let endpoint = if let Some(path) = host.strip_prefix("unix://") {
            Endpoint::Unix(PathBuf::from(path))
        } else if let Some(addr) = host.strip_prefix("tcp://") {
            let addr = addr.trim_end_matches('/');
            if addr.is_empty() {
                return Err(EngineError::BadHost(host.to_owned()));
            }
            Endpoint::Tcp(addr.to_owned())
        } else {
            return Err(EngineError::BadHost(host.to_owned()));
        };
        let engine = Engine {
            host: host.to_owned(),
            endpoint,
            timeout,
        };
        let version = engine.call("GET", "/version", None)?;
        let version: Value = engine.json("GET /version", version)?;
        let api = version
            .get("ApiVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| EngineError::protocol("GET /version", "no ApiVersion"))?;
        if !at_least(api, API_VERSION) {
            return Err(EngineError::TooOld {
                host: host.to_owned(),
                version: api.to_owned(),
            });
        }
        Ok(engine)
    }

    /// The address this client talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `GET` a versioned path; the answer as JSON.
    pub fn get(&self, path: &str) -> Result<Value, EngineError> {
        let answer = self.versioned("GET", path, None)?;
        self.json(path, answer)
    }

    /// `GET` a versioned path; `None` on 404.
    pub fn get_optional(&self, path: &str) -> Result<Option<Value>, EngineError> {
        match self.get(path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST` JSON to a versioned path; the answer as JSON (`Null` when empty).
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, EngineError> {
        let bytes = body.to_string().into_bytes();
        let answer = self.versioned("POST", path, Some(&bytes))?;
        if answer.body.is_empty() {
            return Ok(Value::Null);
        }
        self.json(path, answer)
    }

    /// `DELETE` a versioned path; false when it was not there (404).
    pub fn delete(&self, path: &str) -> Result<bool, EngineError> {
        match self.versioned("DELETE", path, None) {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `GET` a versioned path whose answer is a raw byte stream (logs).
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>, EngineError> {
        Ok(self.versioned("GET", path, None)?.body)
    }

    fn versioned(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Answer, EngineError> {
        let answer = self.call(method, &format!("/v{API_VERSION}{path}"), body)?;
        if answer.status >= 400 {
            let message = serde_json::from_slice::<Value>(&answer.body)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).trim().to_owned());
            return Err(EngineError::Api {
                method: method.to_owned(),
                path: path.to_owned(),
                status: answer.status,
                message,
            });
        }
        Ok(answer)
    }

    fn json(&self, what: &str, answer: Answer) -> Result<Value, EngineError> {
        serde_json::from_slice(&answer.body).map_err(|e| EngineError::protocol(what, e.to_string()))
    }

    /// One request on a fresh connection.
    fn call(&self, method: &str, target: &str, body: Option<&[u8]>) -> Result<Answer, EngineError> {
        let unreachable = |source| EngineError::Unreachable {
            host: self.host.clone(),
            source,
        };
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: docker\r\nUser-Agent: concierge-sidecar/{}\r\nConnection: close\r\n",
            env!("CARGO_PKG_VERSION")
        );
        if let Some(body) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        let mut raw = Vec::new();
        match &self.endpoint {
            Endpoint::Unix(path) => {
                let mut s = UnixStream::connect(path).map_err(unreachable)?;
                s.set_read_timeout(Some(self.timeout))
                    .map_err(unreachable)?;
                s.set_write_timeout(Some(self.timeout))
                    .map_err(unreachable)?;
                exchange(&mut s, head.as_bytes(), body, &mut raw).map_err(unreachable)?;
            }
            Endpoint::Tcp(addr) => {
                let resolved = addr
                    .to_socket_addrs()
                    .map_err(unreachable)?
                    .next()
                    .ok_or_else(|| {
                        unreachable(std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            format!("{addr} does not resolve"),
                        ))
                    })?;
                let mut s =
                    TcpStream::connect_timeout(&resolved, self.timeout).map_err(unreachable)?;
                s.set_read_timeout(Some(self.timeout))
                    .map_err(unreachable)?;
                s.set_write_timeout(Some(self.timeout))
                    .map_err(unreachable)?;
                exchange(&mut s, head.as_bytes(), body, &mut raw).map_err(unreachable)?;
            }
        }
        parse_answer(target, &raw)
    }
}

fn exchange(
    s: &mut (impl Read + Write),
    head: &[u8],
    body: Option<&[u8]>,
    raw: &mut Vec<u8>,
) -> std::io::Result<()> {
    s.write_all(head)?;
    if let Some(body) = body {
        s.write_all(body)?;
    }
    s.flush()?;
    s.take(MAX_BODY as u64 + 64 * 1024).read_to_end(raw)?;
    Ok(())
}

/// Splits an HTTP/1.1 answer read to the end into its status and decoded body.
fn parse_answer(target: &str, raw: &[u8]) -> Result<Answer, EngineError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(EngineError::protocol(
                target,
                "the answer ended inside its head",
            ));
        }
        Err(e) => return Err(EngineError::protocol(target, e.to_string())),
    };
    let status = response.code.unwrap_or(0);
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let rest = &raw[head_len..];
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest).ok_or_else(|| EngineError::protocol(target, "a broken chunked body"))?
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| EngineError::protocol(target, format!("Content-Length {len:?}")))?;
        if rest.len() < len {
            return Err(EngineError::protocol(
                target,
                format!("the body ended after {} of {len} bytes", rest.len()),
            ));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    if body.len() > MAX_BODY {
        return Err(EngineError::protocol(
            target,
            "the answer is larger than 64 MiB",
        ));
    }
    Ok(Answer { status, body })
}

/// Decodes a chunked body (RFC 9112 §7.1); `None` when it is cut short or malformed.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if rest.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// `a` ≥ `b` for dotted API versions (`"1.43"` ≥ `"1.41"`).
fn at_least(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parts(a) >= parts(b)
}

/// Percent-encodes a query value (the Engine API's `filters` are JSON in the query).
pub fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text of a container log stream: the engine multiplexes stdout and stderr in frames of
/// an 8-byte header (stream, 3 zero bytes, big-endian length) when the service has no TTY;
/// a TTY's stream is the raw text.
pub fn demux_logs(raw: &[u8]) -> String {
    let framed = raw.len() >= 8 && matches!(raw[0], 0..=2) && raw[1..4] == [0, 0, 0];
    if !framed {
        return String::from_utf8_lossy(raw).into_owned();
    }
    let mut out = Vec::new();
    let mut rest = raw;
    while rest.len() >= 8 {
        let len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let end = (8 + len).min(rest.len());
        out.extend_from_slice(&rest[8..end]);
        rest = &rest[end..];
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_answer_is_decoded_and_a_short_one_refused() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3;x=y\r\n:1}\r\n0\r\n\r\n";
        let answer = parse_answer("/t", raw).expect("parses");
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, b"{\"a\":1}");
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n{\"a\"";
        assert!(parse_answer("/t", cut).is_err());
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}";
        assert!(parse_answer("/t", short).is_err());
    }

    #[test]
    fn api_versions_compare_by_number_not_by_text() {
        assert!(at_least("1.41", "1.41"));
        assert!(at_least("1.100", "1.41"));
        assert!(!at_least("1.40", "1.41"));
        assert!(!at_least("1.9", "1.41"));
    }

    #[test]
    fn multiplexed_log_frames_become_their_text() {
        let mut raw = vec![1, 0, 0, 0, 0, 0, 0, 6];
        raw.extend_from_slice(b"hello\n");
        raw.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 4]);
        raw.extend_from_slice(b"bad\n");
        assert_eq!(demux_logs(&raw), "hello\nbad\n");
        assert_eq!(demux_logs(b"plain tty text\n"), "plain tty text\n");
    }

    #[test]
    fn filters_are_percent_encoded() {
        assert_eq!(
            query_value(r#"{"label":["a=b"]}"#),
            "%7B%22label%22%3A%5B%22a%3Db%22%5D%7D"
        );
    }

    #[test]
    fn a_host_that_is_not_unix_or_tcp_is_refused_by_name() {
        let e = Engine::connect("http://x", Duration::from_secs(1)).expect_err("refused");
        assert!(e.to_string().contains("unix://"), "{e}");
    }
}
