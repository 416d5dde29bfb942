//! What rustic_core could not read while backing up. It leaves an unreadable file or directory
//! out of the snapshot and only says so through the `log` crate (`warn!("ignoring error: …")`);
//! restic exits 3 for exactly this. This module is the process's `log` logger: it forwards
//! every record to `tracing` and keeps rustic_core's "ignoring error" warnings, so a run can
//! tell an incomplete snapshot from a complete one.

use std::sync::Mutex;

static SKIPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Bridge;

impl log::Log for Bridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = record.args().to_string();
        let target = record.target();
        match record.level() {
            log::Level::Error => tracing::error!(target: "rustic", source = target, "{text}"),
            log::Level::Warn => tracing::warn!(target: "rustic", source = target, "{text}"),
            log::Level::Info | log::Level::Debug | log::Level::Trace => {
                tracing::debug!(target: "rustic", source = target, "{text}")
            }
        }
        if target.starts_with("rustic_core")
            && record.level() <= log::Level::Warn
            // `ignoring error: …` (an entry or a file; the size estimate's own
            // `ignoring error …` repeats what the walk reports)
            && text.starts_with("ignoring error:")
            && let Ok(mut skipped) = SKIPPED.lock()
        {
            skipped.push(compact(&text));
        }
    }

    fn flush(&self) {}
}

/// `/path (Permission denied (os error 13))` out of rustic_core's several-line message.
fn compact(text: &str) -> String {
    let path = text.split('`').nth(1);
    let cause = text.rsplit("caused by:").next().map(str::trim);
    match (path, cause) {
        (Some(path), Some(cause)) if cause != text.trim() => format!("{path} ({cause})"),
        (Some(path), _) => path.to_owned(),
        (None, _) => text.trim_start_matches("ignoring error:").trim().to_owned(),
    }
}

/// Installs the bridge as the process's `log` logger (once; later calls do nothing).
pub fn install() {
    if log::set_logger(&Bridge).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// Forgets what was recorded (before a backup starts).
pub(crate) fn clear() {
    if let Ok(mut skipped) = SKIPPED.lock() {
        skipped.clear();
    }
}

/// What was left out since [`clear`].
pub(crate) fn take() -> Vec<String> {
    SKIPPED
        .lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustic_cores_message_becomes_the_path_and_the_cause() {
        let text = "ignoring error: Error: Failed to open ReadSourceOpen at `/src/b.txt`\nFailed to open file at `/src/b.txt`. Please make sure the file exists and is accessible. (kind: related to input/output operations): caused by: Permission denied (os error 13)";
        assert_eq!(
            compact(text),
            "/src/b.txt (Permission denied (os error 13))"
        );
        assert_eq!(compact("ignoring error: something else"), "something else");
    }
}
