//! What every report records about its run: when, on which machine, at which commit, with which
//! command line. So two reports can be compared knowing what differed.

use std::process::Command;

use serde::Serialize;

/// The run's context.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// UTC, `YYYY-MM-DD HH:MM`.
    pub date: String,
    /// `git rev-parse HEAD`, or `unknown` outside a checkout.
    pub commit: String,
    /// Uncommitted changes to tracked files at the time of the run.
    pub dirty: bool,
    pub machine: Machine,
    /// The command line.
    pub command: String,
}

/// The machine.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    /// CPU flags that decide which kernels run (`avx2`, `avx512f`, `fma`).
    pub simd: Vec<String>,
}

impl RunInfo {
    /// The context of this process's run.
    pub fn now() -> Self {
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
        let dirty =
            git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        RunInfo {
            date: concierge_infra::utc::minutes_text(concierge_infra::utc::now_secs()),
            commit,
            dirty,
            machine: Machine::this(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
        }
    }

    /// One Markdown line: date, machine, commit.
    pub fn markdown_line(&self) -> String {
        format!(
            "Run {} on {} ({} cores, {:.0} GiB, {}), commit `{}`{}.",
            self.date,
            self.machine.cpu,
            self.machine.cores,
            self.machine.memory_gib,
            if self.machine.simd.is_empty() {
                "no AVX".to_owned()
            } else {
                self.machine.simd.join(" ")
            },
            &self.commit[..self.commit.len().min(10)],
            if self.dirty {
                " with local changes"
            } else {
                ""
            }
        )
    }
}

impl Machine {
    fn this() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        };
        let flags = field("flags").unwrap_or_default();
        let simd = ["avx2", "fma", "f16c", "avx512f"]
            .into_iter()
            .filter(|f| flags.split_whitespace().any(|x| x == *f))
            .map(str::to_owned)
            .collect();
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
        Machine {
            cpu: field("model name").unwrap_or_else(|| "unknown CPU".into()),
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory_gib,
            simd,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_info_names_a_machine_and_a_date() {
        let info = RunInfo::now();
        assert!(info.machine.cores >= 1);
        assert!(
            info.date.len() == 20 && info.date.ends_with(" UTC"),
            "{}",
            info.date
        );
        assert!(info.markdown_line().starts_with("Run 20"));
    }
}
