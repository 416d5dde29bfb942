//! `concierge-infra`: the helpers the daemon, the sidecar, the engine and the benchmarks share,
//! each with one home so none of them is written twice.
//!
//! - [`atomic_file`]: "write a temporary file, fsync it, rename it, fsync the directory" — a
//!   reader sees the old file or the new one, and the new one survives a power cut once
//!   [`atomic_file::write`] returns.
//! - [`utc`]: RFC 3339 parsing and formatting, text forms of an instant, now — on `jiff`,
//!   no hand-written calendar code (`2026-02-31` is refused).
//! - [`backup_status`]: the record of the last backup runs, as the sidecar writes it to its status
//!   file and sends it to the daemon (`PUT /v1/admin/backup-status`), typed once for both sides.
//!
//! - [`layered_config`]: defaults → file → `<PREFIX><SECTION>__<KEY>` environment → flags →
//!   `<key>_file` secrets, strict (a malformed variable is an error naming it), with a
//!   [`layered_config::Secret`] redacted in `Debug` and durations written as text.
//! - [`logging`]: how both programs log (stderr, `RUST_LOG`, text coloured only on a terminal, or
//!   JSON lines).
//! - [`prefetch`]: the hint that brings a cache line (or a row's lines) in ahead of a loop that
//!   reads it.
//! - [`retry`]: when to try a request again — exponential backoff with full jitter, a server's
//!   `Retry-After` honoured, a bounded number of attempts.
//!
//! It does not own what a program's configuration means (each binary's `config` module holds its
//! keys and their validation), HTTP clients themselves, nor anything about documents, indexes or
//! backups.
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("state.json");
//! concierge_infra::atomic_file::write(&path, br#"{"ok":true}"#)?;
//! assert_eq!(std::fs::read(&path)?, br#"{"ok":true}"#);
//! assert_eq!(concierge_infra::utc::parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1_500));
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod atomic_file;
pub mod backup_status;
pub mod cli_docs;
pub mod layered_config;
pub mod logging;
pub mod prefetch;
pub mod retry;
pub mod utc;
