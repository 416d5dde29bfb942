//! rustic_core's progress reports as indicatif bars on a terminal, and as a log line every ten
//! seconds (and at the end) elsewhere, so a long backup or restore never looks stuck.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rustic_core::{Progress, ProgressBars, ProgressType, RusticProgress};

/// The factory rustic_core asks for bars.
#[derive(Debug, Clone, Copy)]
pub struct Bars {
    terminal: bool,
    quiet: bool,
}

impl Bars {
    /// Bars on a terminal, log lines elsewhere.
    pub fn auto() -> Self {
        Bars {
            terminal: std::io::stderr().is_terminal(),
            quiet: false,
        }
    }

    /// Nothing at all (listing commands).
    pub fn quiet() -> Self {
        Bars {
            terminal: false,
            quiet: true,
        }
    }
}

impl ProgressBars for Bars {
    fn progress(&self, kind: ProgressType, prefix: &str) -> Progress {
        if self.quiet {
            return Progress::hidden();
        }
        if self.terminal {
            let bar = match kind {
                ProgressType::Spinner => ProgressBar::new_spinner(),
                ProgressType::Counter | ProgressType::Bytes => ProgressBar::new(0),
            };
            let template = match kind {
                ProgressType::Spinner => "{prefix:30} {spinner} {elapsed}",
                ProgressType::Counter => "{prefix:30} [{bar:40}] {pos}/{len} {elapsed}/{eta}",
                ProgressType::Bytes => {
                    "{prefix:30} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}"
                }
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(prefix.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            return Progress::new(TerminalBar(bar));
        }
        Progress::new(LogProgress {
            title: Mutex::new(prefix.to_owned()),
            bytes: matches!(kind, ProgressType::Bytes),
            len: AtomicU64::new(0),
            done: AtomicU64::new(0),
            started: Instant::now(),
            last: Mutex::new(Instant::now()),
        })
    }
}

#[derive(Debug)]
struct TerminalBar(ProgressBar);

impl RusticProgress for TerminalBar {
    fn is_hidden(&self) -> bool {
        false
    }
    fn set_length(&self, len: u64) {
        self.0.set_length(len);
    }
    fn set_title(&self, title: &str) {
        self.0.set_prefix(title.to_owned());
    }
    fn inc(&self, inc: u64) {
        self.0.inc(inc);
    }
    fn finish(&self) {
        self.0.finish();
    }
}

#[derive(Debug)]
struct LogProgress {
    title: Mutex<String>,
    bytes: bool,
    len: AtomicU64,
    done: AtomicU64,
    started: Instant,
    last: Mutex<Instant>,
}

impl LogProgress {
    fn line(&self, finished: bool) {
        let title = self.title.lock().map(|t| t.clone()).unwrap_or_default();
        let (done, len) = (
            self.done.load(Ordering::Relaxed),
            self.len.load(Ordering::Relaxed),
        );
        let secs = self.started.elapsed().as_secs_f64();
        let amount = if self.bytes {
            let rate = done as f64 / secs.max(1e-3) / 1e6;
            format!(
                "{:.1} of {:.1} MB, {rate:.1} MB/s",
                done as f64 / 1e6,
                len as f64 / 1e6
            )
        } else {
            format!("{done} of {len}")
        };
        let state = if finished { "done" } else { "in progress" };
        tracing::info!(target: "progress", "{title}: {amount} ({state}, {secs:.0} s)");
    }
}

impl RusticProgress for LogProgress {
    fn is_hidden(&self) -> bool {
        false
    }
    fn set_length(&self, len: u64) {
        self.len.store(len, Ordering::Relaxed);
    }
    fn set_title(&self, title: &str) {
        if let Ok(mut t) = self.title.lock() {
            *t = title.to_owned();
        }
    }
    fn inc(&self, inc: u64) {
        self.done.fetch_add(inc, Ordering::Relaxed);
        let due = self
            .last
            .lock()
            .map(|mut last| {
                let due = last.elapsed() >= Duration::from_secs(10);
                if due {
                    *last = Instant::now();
                }
                due
            })
            .unwrap_or(false);
        if due {
            self.line(false);
        }
    }
    fn finish(&self) {
        if self.len.load(Ordering::Relaxed) > 0 || self.done.load(Ordering::Relaxed) > 0 {
            self.line(true);
        }
    }
}
