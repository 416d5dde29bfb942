//! The record of the last apply (`<state_dir>/last-apply.json`): what it created and the spec
//! each service it changed had before, written (atomically) before each step is taken, so a
//! rollback after a failure — or after the sidecar itself was killed halfway — knows exactly
//! what to undo. Swarm keeps one `PreviousSpec` per service, but not which services one apply
//! touched, and a service an apply created has none (moby#33427).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The file name under the state directory.
pub const FILE: &str = "last-apply.json";

/// One apply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApplyRecord {
    /// `YYYYMMDDTHHMMSSZ` of its start (also the name of its failure report).
    pub id: String,
    pub stack: String,
    /// The engine's clock when it started (RFC 3339): tasks created before it are not judged.
    pub started_at: String,
    pub updated: Vec<UpdatedService>,
    pub created: Vec<CreatedService>,
    pub created_networks: Vec<CreatedObject>,
    pub created_secrets: Vec<CreatedObject>,
    pub created_configs: Vec<CreatedObject>,
    /// Set once a rollback of this apply has completed.
    #[serde(default)]
    pub rolled_back: bool,
}

/// A service the apply updated, and what it was before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdatedService {
    pub name: String,
    pub id: String,
    pub previous_spec: Value,
}

/// A service the apply created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedService {
    pub name: String,
    pub id: String,
}

/// A network, secret or config the apply created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedObject {
    pub name: String,
    pub id: String,
}

impl ApplyRecord {
    /// Names of every service the apply touched (updated, then created).
    pub fn touched(&self) -> Vec<(String, String)> {
        self.updated
            .iter()
            .map(|u| (u.name.clone(), u.id.clone()))
            .chain(self.created.iter().map(|c| (c.name.clone(), c.id.clone())))
            .collect()
    }
}

/// Where records live.
#[derive(Debug, Clone)]
pub struct RecordFile {
    path: PathBuf,
}

impl RecordFile {
    pub fn new(state_dir: &Path) -> RecordFile {
        RecordFile {
            path: state_dir.join(FILE),
        }
    }

    /// Writes `record` (directory created, file replaced atomically).
    pub fn save(&self, record: &ApplyRecord) -> Result<(), String> {
        let text = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        concierge_infra::atomic_file::write(&self.path, &text)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }

    /// The last record; `None` when no apply ran from this state directory.
    pub fn load(&self) -> Result<Option<ApplyRecord>, String> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{} is not an apply record: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", self.path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = RecordFile::new(&dir.path().join("state"));
        assert_eq!(file.load(), Ok(None));
        let record = ApplyRecord {
            id: "20261203T120000Z".into(),
            stack: "s".into(),
            started_at: "2026-12-03T12:00:00.5Z".into(),
            updated: vec![UpdatedService {
                name: "s_a".into(),
                id: "1".into(),
                previous_spec: serde_json::json!({"Name": "s_a"}),
            }],
            created: vec![CreatedService {
                name: "s_b".into(),
                id: "2".into(),
            }],
            ..ApplyRecord::default()
        };
        file.save(&record).expect("save");
        assert_eq!(file.load(), Ok(Some(record.clone())));
        assert_eq!(
            record.touched(),
            vec![("s_a".into(), "1".into()), ("s_b".into(), "2".into())]
        );
        std::fs::write(dir.path().join("state").join(FILE), "{").expect("write");
        assert!(file.load().is_err());
    }
}
