//! When to try again: a bounded number of attempts, exponential backoff with jitter between
//! them, and a server's own wait (`Retry-After`, `retry-after-ms`) honoured when it gives one.
//!
//! Each client decides what is worth another attempt (a 429, a 5xx, a refused connection) and
//! says so by returning [`Attempt::Retry`]; [`Policy::run`] owns the loop, the waits and the
//! count.
//!
//! ```
//! use std::time::Duration;
//! use concierge_infra::retry::{Attempt, Backoff, Policy};
//!
//! let policy = Policy::new(3, Backoff::new(Duration::from_millis(1), Duration::from_millis(5)));
//! let mut calls = 0;
//! let got: Result<u32, String> = policy.run(
//!     |attempt| {
//!         calls += 1;
//!         if attempt < 3 {
//!             Attempt::Retry { error: format!("busy ({attempt})"), after: None }
//!         } else {
//!             Attempt::Done(attempt)
//!         }
//!     },
//!     concierge_infra::retry::sleep,
//! );
//! assert_eq!((got, calls), (Ok(3), 3));
//! ```

use std::time::Duration;

/// The waits between attempts: `base · 2^(n-1)` after the n-th failure, at most `cap`, each
/// drawn uniformly from its upper half (so many clients failing together do not retry in step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Backoff { base, cap }
    }

    /// The wait after `failed` failed attempts (1 after the first).
    pub fn wait(&self, failed: u32) -> Duration {
        let exponent = failed.saturating_sub(1).min(20);
        let full = self.base.saturating_mul(1u32 << exponent).min(self.cap);
        full.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    /// The server's wait when it gave one (at most `cap`), else [`Backoff::wait`].
    pub fn wait_or(&self, failed: u32, server: Option<Duration>) -> Duration {
        match server {
            Some(wait) => wait.min(self.cap),
            None => self.wait(failed),
        }
    }
}

/// What one attempt came to.
#[derive(Debug)]
pub enum Attempt<T, E> {
    Done(T),
    /// Worth trying again, after `after` when the server said how long to wait.
    Retry {
        error: E,
        after: Option<Duration>,
    },
    /// Not worth another attempt (a refused key, a bad request).
    Fatal(E),
}

/// Attempts and the waits between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts in all (1: no retry; 0 is taken as 1).
    pub attempts: u32,
    pub backoff: Backoff,
}

impl Policy {
    pub const fn new(attempts: u32, backoff: Backoff) -> Self {
        Policy { attempts, backoff }
    }

    /// Runs `attempt` (given its number, from 1) until it is done, fails for good or the
    /// attempts are spent; the last error is returned. Between attempts `pause` waits: it may
    /// end the loop early with an error of its own (a shutdown, a deadline).
    pub fn run<T, E>(
        &self,
        mut attempt: impl FnMut(u32) -> Attempt<T, E>,
        mut pause: impl FnMut(Duration) -> Result<(), E>,
    ) -> Result<T, E> {
        let attempts = self.attempts.max(1);
        let mut n = 1;
        loop {
            match attempt(n) {
                Attempt::Done(value) => return Ok(value),
                Attempt::Fatal(error) => return Err(error),
                Attempt::Retry { error, after } => {
                    if n >= attempts {
                        return Err(error);
                    }
                    pause(self.backoff.wait_or(n, after))?;
                }
            }
            n += 1;
        }
    }
}

/// A pause that sleeps the thread and never ends the loop.
pub fn sleep<E>(wait: Duration) -> Result<(), E> {
    std::thread::sleep(wait);
    Ok(())
}

/// Sleeps for `wait` in short slices; false as soon as `stop` says so (a shutdown).
pub fn sleep_unless(wait: Duration, stop: &dyn Fn() -> bool) -> bool {
    let until = std::time::Instant::now() + wait;
    loop {
        if stop() {
            return false;
        }
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// The wait a server asked for: `retry-after-ms` (milliseconds, as OpenAI-compatible APIs send
/// it), else `retry-after` as seconds or as an HTTP date (RFC 9110 §10.2.3), relative to now.
pub fn server_wait(retry_after_ms: Option<&str>, retry_after: Option<&str>) -> Option<Duration> {
    let number = |text: &str| {
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    if let Some(ms) = retry_after_ms.and_then(number) {
        return Some(Duration::from_secs_f64(ms / 1e3));
    }
    let text = retry_after?;
    if let Some(secs) = number(text) {
        return Some(Duration::from_secs_f64(secs));
    }
    let at = jiff::fmt::rfc2822::parse(text.trim()).ok()?.timestamp();
    let left = at.as_millisecond() - jiff::Timestamp::now().as_millisecond();
    Some(Duration::from_millis(u64::try_from(left).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_within_their_cap_and_are_jittered() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for _ in 0..200 {
            let first = b.wait(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = b.wait(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(b.wait(40) <= Duration::from_secs(1));
            assert!(b.wait(40) >= Duration::from_millis(500));
        }
        let distinct: std::collections::BTreeSet<Duration> = (0..50).map(|_| b.wait(2)).collect();
        assert!(
            distinct.len() > 10,
            "jitter spreads the waits: {distinct:?}"
        );
        assert_eq!(
            b.wait_or(1, Some(Duration::from_secs(7))),
            Duration::from_secs(1),
            "a server's wait is capped too"
        );
        assert_eq!(
            b.wait_or(1, Some(Duration::from_millis(30))),
            Duration::from_millis(30)
        );
    }

    #[test]
    fn the_loop_stops_at_done_fatal_the_last_attempt_or_its_pause() {
        let policy = Policy::new(4, Backoff::new(Duration::ZERO, Duration::ZERO));
        let mut seen = Vec::new();
        let r: Result<(), u32> = policy.run(
            |n| {
                seen.push(n);
                Attempt::Retry {
                    error: n,
                    after: None,
                }
            },
            sleep,
        );
        assert_eq!((r, seen.as_slice()), (Err(4), &[1, 2, 3, 4][..]));
        let r: Result<(), u32> = policy.run(Attempt::Fatal, sleep);
        assert_eq!(r, Err(1));
        let mut pauses = Vec::new();
        let r: Result<(), u32> = policy.run(
            |n| Attempt::Retry {
                error: n,
                after: Some(Duration::from_millis(3)),
            },
            |d| {
                pauses.push(d);
                if pauses.len() == 2 { Err(99) } else { Ok(()) }
            },
        );
        assert_eq!(r, Err(99));
        assert_eq!(pauses, [Duration::ZERO, Duration::ZERO], "capped at zero");
        let once = Policy::new(0, Backoff::new(Duration::ZERO, Duration::ZERO));
        let r: Result<(), u32> = once.run(
            |n| Attempt::Retry {
                error: n,
                after: None,
            },
            sleep,
        );
        assert_eq!(r, Err(1), "zero attempts means one");
    }

    #[test]
    fn server_waits_are_read_in_milliseconds_seconds_or_as_a_date() {
        assert_eq!(
            server_wait(Some("1500"), Some("9")),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(server_wait(None, Some(" 2 ")), Some(Duration::from_secs(2)));
        assert_eq!(
            server_wait(None, Some("0.5")),
            Some(Duration::from_millis(500))
        );
        assert_eq!(server_wait(None, Some("-3")), None);
        assert_eq!(server_wait(None, Some("soon")), None);
        assert_eq!(server_wait(None, None), None);
        assert_eq!(
            server_wait(None, Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(120);
        let text = jiff::fmt::rfc2822::to_string(&later.to_zoned(jiff::tz::TimeZone::UTC))
            .expect("formats");
        let wait = server_wait(None, Some(&text)).expect("a date");
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
    }

    #[test]
    fn sleeping_ends_early_when_told_to_stop() {
        let start = std::time::Instant::now();
        assert!(!sleep_unless(Duration::from_secs(10), &|| true));
        assert!(sleep_unless(Duration::from_millis(20), &|| false));
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
