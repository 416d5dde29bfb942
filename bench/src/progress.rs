//! Progress of long benchmark steps: an indicatif bar on a terminal, and a log line at every
//! tenth of the way elsewhere (CI logs, `> file`), so a long run never looks stuck.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// One step's progress.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    done: AtomicU64,
    logged_tenths: AtomicU64,
    started: Instant,
}

impl Progress {
    /// A step of `total` units called `label`.
    pub fn new(total: usize, label: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let pb = ProgressBar::new(total as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{msg:>18} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
            {
                pb.set_style(style.progress_chars("=> "));
            }
            pb.set_message(label.to_owned());
            pb
        });
        Progress {
            bar,
            label: label.to_owned(),
            total: total as u64,
            done: AtomicU64::new(0),
            logged_tenths: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// `n` more units done.
    pub fn inc(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        self.report(done);
    }

    /// `done` units done in all.
    pub fn set_position(&self, done: u64) {
        self.done.store(done, Ordering::Relaxed);
        self.report(done);
    }

    fn report(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            return;
        }
        let tenths = (done * 10).checked_div(self.total).unwrap_or(10).min(10);
        if tenths > self.logged_tenths.fetch_max(tenths, Ordering::Relaxed) {
            let secs = self.started.elapsed().as_secs_f64();
            eprintln!(
                "{}: {}% ({done}/{}, {:.1}/s, {secs:.0} s)",
                self.label,
                tenths * 10,
                self.total,
                done as f64 / secs.max(1e-9)
            );
        }
    }

    /// The step is over.
    pub fn finish(&self) {
        match &self.bar {
            Some(bar) => bar.finish(),
            None => eprintln!(
                "{}: done in {:.1} s",
                self.label,
                self.started.elapsed().as_secs_f64()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_and_never_divides_by_zero() {
        let p = Progress::new(0, "empty");
        p.inc(1);
        p.finish();
        let p = Progress::new(20, "twenty");
        p.inc(5);
        p.set_position(20);
        assert_eq!(p.done.load(Ordering::Relaxed), 20);
    }
}
