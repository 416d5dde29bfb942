//! Shell completions and man pages, made from a binary's own clap definition (so they never
//! drift from its arguments): `concierge completions bash`, `concierge-sidecar manpages DIR`.

use std::io::Write;
use std::path::{Path, PathBuf};

pub use clap_complete::Shell;

/// Why the pages could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Writes `command`'s completion script for `shell` to `out`.
pub fn write_completions(command: &mut clap::Command, shell: Shell, out: &mut dyn Write) {
    let name = command.get_name().to_owned();
    clap_complete::generate(shell, command, name, out);
}

/// Writes one man page (section 1) per command and subcommand into `dir` (created when
/// missing): `concierge.1`, `concierge-serve.1`, `concierge-sidecar-backup-run.1`, ...;
/// returns the files written.
pub fn write_man_pages(command: clap::Command, dir: &Path) -> Result<Vec<PathBuf>, DocsError> {
    let failed = |path: &Path, source| DocsError::Write {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, e))?;
    let mut written = Vec::new();
    let mut command = command;
    command.build();
    write_page(&command, command.get_name(), dir, &mut written).map_err(|(p, e)| failed(&p, e))?;
    Ok(written)
}

fn write_page(
    command: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), (PathBuf, std::io::Error)> {
    let path = dir.join(format!("{name}.1"));
    let page = command.clone().name(name.to_owned());
    let mut bytes = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut bytes)
        .map_err(|e| (path.clone(), e))?;
    crate::atomic_file::write(&path, &bytes).map_err(|e| (path.clone(), e))?;
    written.push(path);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        write_page(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> clap::Command {
        clap::Command::new("demo")
            .about("A demo")
            .subcommand(
                clap::Command::new("run")
                    .about("Runs")
                    .arg(clap::arg!(--fast "Quickly")),
            )
            .subcommand(clap::Command::new("stop").about("Stops"))
    }

    #[test]
    fn a_page_per_command_and_subcommand_naming_their_options() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pages = write_man_pages(demo(), dir.path()).expect("pages");
        let names: Vec<_> = pages
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect();
        assert_eq!(names, ["demo.1", "demo-run.1", "demo-stop.1"]);
        let run = std::fs::read_to_string(dir.path().join("demo-run.1")).expect("page");
        assert!(run.contains(".TH demo-run 1"), "{run}");
        assert!(run.contains("fast"), "{run}");
    }

    #[test]
    fn completions_name_the_subcommands() {
        let mut out = Vec::new();
        write_completions(&mut demo(), Shell::Bash, &mut out);
        let script = String::from_utf8(out).expect("utf-8");
        assert!(script.contains("complete") && script.contains("run") && script.contains("stop"));
    }
}
