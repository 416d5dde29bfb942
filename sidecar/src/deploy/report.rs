//! The report of a failed deployment, as Markdown (the GitHub issue's body) and JSON: what
//! the apply changed, which service failed and why, its task errors and last log lines, and
//! what the rollback did.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::engine::{Engine, demux_logs};
use super::plan::{Action, Plan};
use super::verify::Outcome;

/// Log lines kept per failed service.
pub const LOG_LINES: usize = 30;

/// A failed deployment.
#[derive(Debug, Clone, Serialize)]
pub struct FailureReport {
    pub stack: String,
    pub apply_id: String,
    pub started_at: String,
    /// `service: field, field` for each change the apply made.
    pub changed: Vec<String>,
    pub verify: Outcome,
    /// The last log lines of each service that failed.
    pub logs: Vec<ServiceLogs>,
    /// `None` when no rollback ran (`--no-rollback`).
    pub rollback: Option<RollbackSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceLogs {
    pub service: String,
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RollbackSummary {
    pub ok: bool,
    pub steps: Vec<String>,
    pub problems: Vec<String>,
    pub verify: Option<Outcome>,
}

impl FailureReport {
    /// The changes of `plan` in one line per service.
    pub fn changes_of(plan: &Plan) -> Vec<String> {
        plan.services
            .iter()
            .filter(|s| s.action != Action::Unchanged)
            .map(|s| match s.action {
                Action::Create => format!("{}: created", s.name),
                Action::Update | Action::Unchanged => format!(
                    "{}: {}",
                    s.name,
                    s.changes
                        .iter()
                        .map(|c| c.field.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
            .collect()
    }

    /// The last log lines of each failed service (best effort: a service already removed by
    /// the rollback has none).
    pub fn logs_of(
        engine: &Engine,
        outcome: &Outcome,
        ids: &[(String, String)],
    ) -> Vec<ServiceLogs> {
        outcome
            .failed()
            .filter_map(|v| {
                let id = ids
                    .iter()
                    .find(|(n, _)| *n == v.service)
                    .map(|(_, id)| id)?;
                let raw = engine
                    .get_bytes(&format!(
                        "/services/{id}/logs?stdout=1&stderr=1&tail={LOG_LINES}"
                    ))
                    .ok()?;
                let text = demux_logs(&raw);
                let lines: Vec<String> = text.lines().map(str::to_owned).collect();
                let skip = lines.len().saturating_sub(LOG_LINES);
                Some(ServiceLogs {
                    service: v.service.clone(),
                    lines: lines[skip..].to_vec(),
                })
            })
            .collect()
    }

    /// The one-line summary (the issue's title).
    pub fn title(&self) -> String {
        let failed: Vec<&str> = self.verify.failed().map(|v| v.service.as_str()).collect();
        let rolled = match &self.rollback {
            Some(r) if r.ok => "rolled back",
            Some(_) => "ROLLBACK FAILED",
            None => "not rolled back",
        };
        format!(
            "Deploy of {} failed ({rolled}): {}",
            self.stack,
            failed.join(", ")
        )
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "## {}\n", self.title());
        let _ = writeln!(
            md,
            "Apply `{}` started {} (engine time).\n",
            self.apply_id, self.started_at
        );
        let _ = writeln!(md, "### What the apply changed\n");
        for c in &self.changed {
            let _ = writeln!(md, "- {c}");
        }
        let _ = writeln!(
            md,
            "\n### Verify ({:.0} s)\n\n| Service | State | Detail |\n|---|---|---|",
            self.verify.seconds
        );
        for v in &self.verify.services {
            let _ = writeln!(
                md,
                "| `{}` | {} | {} |",
                v.service,
                v.state,
                v.detail.replace('|', "\\|")
            );
        }
        for v in self.verify.failed().filter(|v| !v.task_errors.is_empty()) {
            let _ = writeln!(md, "\n**Task errors of `{}`:**\n", v.service);
            for e in &v.task_errors {
                let _ = writeln!(md, "- {e}");
            }
        }
        for l in &self.logs {
            let _ = writeln!(
                md,
                "\n**Last log lines of `{}`:**\n\n```\n{}\n```",
                l.service,
                l.lines.join("\n")
            );
        }
        match &self.rollback {
            None => {
                let _ = writeln!(
                    md,
                    "\n### Rollback\n\nNot run (`--no-rollback`): run `concierge-sidecar deploy rollback`."
                );
            }
            Some(r) => {
                let _ = writeln!(
                    md,
                    "\n### Rollback: {}\n",
                    if r.ok {
                        "done, verified"
                    } else {
                        "FAILED — look now"
                    }
                );
                for s in &r.steps {
                    let _ = writeln!(md, "- {s}");
                }
                for p in &r.problems {
                    let _ = writeln!(md, "- ❌ {p}");
                }
                if let Some(v) = &r.verify {
                    for s in v.failed() {
                        let _ =
                            writeln!(md, "- ❌ `{}` after the rollback: {}", s.service, s.detail);
                    }
                }
            }
        }
        md
    }

    /// Writes `deploy-<apply id>.md` and `.json` into `dir`; their paths.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf), String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let md = dir.join(format!("deploy-{}.md", self.apply_id));
        let json = dir.join(format!("deploy-{}.json", self.apply_id));
        let text = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        concierge_infra::atomic_file::write(&md, self.markdown().as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", md.display()))?;
        concierge_infra::atomic_file::write(&json, &text)
            .map_err(|e| format!("cannot write {}: {e}", json.display()))?;
        Ok((md, json))
    }
}
