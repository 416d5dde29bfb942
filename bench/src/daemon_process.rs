//! The real `concierge serve` as a child process for the benchmarks that measure it over HTTP:
//! started beside the benchmark binary on an ephemeral port, its resident memory read from
//! `/proc`, stopped with SIGTERM (graceful drain and flush, timed). Also the percentile helper
//! the HTTP benchmarks share.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// A running `concierge serve`.
#[derive(Debug)]
pub struct DaemonProcess {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

impl DaemonProcess {
    /// Starts `target/<profile>/concierge serve` on `data_dir` with the model in `model_dir` and
    /// extra environment variables; returns once it prints its listening line.
    pub fn start(data_dir: &Path, model_dir: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?
            .parent()
            .map(|p| p.join("concierge"))
            .context("locating target/<profile>/concierge")?;
        anyhow::ensure!(
            exe.is_file(),
            "{} is not built: cargo build --workspace --bins",
            exe.display()
        );
        let mut command = Command::new(&exe);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .arg("--model-dir")
            .arg(model_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().context("starting concierge serve")?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let address = line
            .trim()
            .strip_prefix("listening on http://")
            .with_context(|| format!("no listening line from concierge serve: {line:?}"))?
            .to_owned();
        Ok(DaemonProcess { child, address })
    }

    /// CPU time (user + system) the daemon has used so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        crate::cpu_time::cpu_time_of(&self.child.id().to_string())
    }

    /// Resident memory, MB (NaN if unreadable).
    pub fn rss_mb(&self) -> f64 {
        self.status_mb("VmRSS:")
    }

    /// Resident memory that is the process's own (heap, stacks), MB; the rest of the RSS is
    /// mapped files (the binary, mmapped index files).
    pub fn rss_anon_mb(&self) -> f64 {
        self.status_mb("RssAnon:")
    }

    fn status_mb(&self, field: &str) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            })
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    /// SIGTERM, then waits for the exit; returns how long the drain and flush took.
    pub fn stop(mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("running kill")?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let exit = self.child.wait()?;
        anyhow::ensure!(exit.success(), "concierge serve exited with {exit}");
        Ok(started.elapsed())
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        // Only reached without `stop` (an error part-way): never leave the daemon running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `p` quantile (0..=1) of ascending `sorted` values (NaN when empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}
