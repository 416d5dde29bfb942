//! Consistent checkpoints: the store (a RocksDB checkpoint), the keyword index's committed files
//! and a dense snapshot, each recording the sequence it includes, so a restore replays the log
//! from there.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::dense_snapshot;
use crate::error::{Error, Result};
use crate::keyword::KeywordIndex;
use crate::shared::Shared;

/// What a checkpoint holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointInfo {
    /// Where it was written.
    pub path: PathBuf,
    /// Every change up to this sequence is in the checkpointed store.
    pub seq: u64,
    /// Sequence the dense snapshot includes (None if the index was being rebuilt).
    pub dense_seq: Option<u64>,
    /// Sequence the keyword snapshot includes (None if the index was being rebuilt).
    pub keyword_seq: Option<u64>,
}

/// Writes a consistent copy of the store and both indexes' committed state into `target`
/// (which must not exist or be empty). Runs on the indexer's thread, between batches.
pub(crate) fn write(shared: &Shared, target: &Path) -> Result<CheckpointInfo> {
    if target.exists()
        && std::fs::read_dir(target)
            .map_err(|e| Error::io(format!("reading {}", target.display()), e))?
            .next()
            .is_some()
    {
        return Err(Error::InvalidInput(crate::error::InvalidInput::Field {
            field: "checkpoint",
            reason: format!("{} exists and is not empty", target.display()),
        }));
    }
    std::fs::create_dir_all(target.join("index"))
        .map_err(|e| Error::io(format!("creating {}", target.display()), e))?;
    let keyword_seq = match shared.keyword() {
        Some(k) => {
            k.commit(k.applied_seq())?;
            copy_keyword(
                &shared.config.keyword_dir(),
                &target.join("index").join("keyword"),
                &k,
            )?;
            Some(k.committed_seq())
        }
        None => None,
    };
    let dense_seq = match shared.dense() {
        Some(d) => Some(dense_snapshot::dump(
            &d,
            &target.join("index").join("dense"),
        )?),
        None => None,
    };
    let seq = shared.sequencer.durable();
    shared.store.checkpoint(&target.join("store"))?;
    sync_dir(target)?;
    Ok(CheckpointInfo {
        path: target.to_owned(),
        seq,
        dense_seq,
        keyword_seq,
    })
}

/// Copies the committed files of the keyword index (its meta and its segments' files).
fn copy_keyword(from: &Path, to: &Path, index: &KeywordIndex) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| Error::io(format!("creating {}", to.display()), e))?;
    let segments = index.committed_segment_prefixes()?;
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    for entry in
        std::fs::read_dir(from).map_err(|e| Error::io(format!("reading {}", from.display()), e))?
    {
        let entry = entry.map_err(|e| Error::io("listing the keyword index", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "meta.json" || segments.iter().any(|s| name.starts_with(s.as_str())) {
            names.insert(name, entry.path());
        }
    }
    for (name, path) in names {
        let dest = to.join(&name);
        std::fs::copy(&path, &dest)
            .map_err(|e| Error::io(format!("copying {}", path.display()), e))?;
        std::fs::File::open(&dest)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(format!("syncing {}", dest.display()), e))?;
    }
    sync_dir(to)
}

fn sync_dir(dir: &Path) -> Result<()> {
    concierge_infra::atomic_file::sync_dir(dir)
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}
