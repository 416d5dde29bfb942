//! Connections a slow, silent or greedy client cannot hold: raw sockets against the real daemon
//! with short configured bounds (`server.header_timeout_ms`, `body_timeout_ms`,
//! `max_connections`), while another client stays fast.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use concierge_tests::{Daemon, workspace_root};

fn daemon(max_connections: &str) -> Daemon {
    Daemon::start_with_env(
        &[],
        &[
            ("CONCIERGE_SERVER__HEADER_TIMEOUT_MS", "1000"),
            ("CONCIERGE_SERVER__BODY_TIMEOUT_MS", "1000"),
            ("CONCIERGE_SERVER__MAX_CONNECTIONS", max_connections),
            ("RUST_LOG", "warn"),
        ],
        &workspace_root(),
    )
}

fn connect(d: &Daemon) -> TcpStream {
    let s = TcpStream::connect(&d.address).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// Reads until the server closes the connection (or 10 s pass): what it sent, and when it closed.
fn read_to_close(mut s: TcpStream) -> (String, Instant) {
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    (String::from_utf8_lossy(&all).into_owned(), Instant::now())
}

/// A quick request on its own connection takes well under a second.
fn assert_fast(d: &Daemon) {
    let started = Instant::now();
    assert_eq!(d.get("/healthz").0, 200);
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn slow_headers_a_slow_body_an_absent_body_and_an_idle_connection_are_closed_within_the_bounds() {
    let d = daemon("64");
    let started = Instant::now();

    // One header byte every 200 ms: the head never completes within 1 s.
    let slow_head = connect(&d);
    let trickle = {
        let mut s = slow_head.try_clone().expect("clone");
        std::thread::spawn(move || {
            for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa" {
                if s.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    // A declared body that never comes.
    let mut absent = connect(&d);
    absent
        .write_all(b"POST /v1/documents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n")
        .expect("send");
    // A body one byte every 300 ms.
    let mut slow_body = connect(&d);
    slow_body
        .write_all(b"POST /v1/documents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{")
        .expect("send");
    let body_trickle = {
        let mut s = slow_body.try_clone().expect("clone");
        std::thread::spawn(move || {
            for _ in 0..30 {
                if s.write_all(b" ").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    // A keep-alive connection that goes idle after one request.
    let mut idle = connect(&d);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut first = [0u8; 512];
    let n = idle.read(&mut first).expect("first answer");
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));

    // Meanwhile others are served at once.
    assert_fast(&d);

    let (_, head_closed) = read_to_close(slow_head);
    let (absent_text, absent_closed) = read_to_close(absent);
    let (slow_text, slow_closed) = read_to_close(slow_body);
    let (_, idle_closed) = read_to_close(idle);
    for (what, closed) in [
        ("slow headers", head_closed),
        ("absent body", absent_closed),
        ("slow body", slow_closed),
        ("idle keep-alive", idle_closed),
    ] {
        let after = closed - started;
        assert!(
            after < Duration::from_secs(4),
            "{what} held its connection for {after:?}"
        );
    }
    for text in [&absent_text, &slow_text] {
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("application/problem+json"), "{text}");
        assert!(text.contains("server.body_timeout_ms"), "{text}");
    }
    trickle.join().expect("trickle");
    body_trickle.join().expect("trickle");
    assert_fast(&d);
    assert_eq!(
        d.get("/v1/documents/aircall:call:1").0,
        404,
        "nothing was stored"
    );
}

#[test]
fn a_declared_body_over_the_limit_gets_413_instead_of_100_continue() {
    let d = daemon("64");
    let mut s = connect(&d);
    s.write_all(b"POST /v1/documents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\nExpect: 100-continue\r\n\r\n")
        .expect("send");
    let mut answer = [0u8; 1024];
    let n = s.read(&mut answer).expect("an answer");
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
}

#[test]
fn connections_beyond_the_limit_are_closed_at_once_and_served_again_when_one_ends() {
    let d = daemon("3");
    let held: Vec<TcpStream> = (0..3).map(|_| connect(&d)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let extra = connect(&d);
    let started = Instant::now();
    let (text, closed) = read_to_close(extra);
    assert!(text.is_empty(), "{text}");
    assert!(
        closed - started < Duration::from_millis(900),
        "closed at accept"
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert_fast(&d);
}

#[test]
fn framework_errors_are_problem_json_too() {
    let d = daemon("64");
    let r = d.exchange("GET", "/v1/search", None, &[]);
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.header("allow"), Some("POST"));
    let r = d.exchange(
        "DELETE",
        "/v1/documents/aircall:call:1?updated_at=abc",
        None,
        &[],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert!(r.body.contains("updated_at"), "{}", r.body);
    let r = d.exchange("GET", "/v1/documents/%FF%FE", None, &[]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let big = "a".repeat(40 * 1024);
    let r = d.exchange("GET", "/healthz", None, &[("X-Big", &big)]);
    assert_eq!(r.status, 431, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert!(r.body.contains("server.max_header_bytes"), "{}", r.body);
}
