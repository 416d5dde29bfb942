//! Free space on the data disk, checked before the engine writes. A store that runs out of
//! space in the middle of a synced write is poisoned until a restart; refusing writes a little
//! earlier, while the disk still has `min_free_bytes`, keeps the store sound, and writes resume
//! by themselves once space is freed. (Another process can still fill the disk between the
//! check and the write; that case poisons the store, and the next start replays its log.)

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// The check and its last outcome.
#[derive(Debug)]
pub(crate) struct DiskSpace {
    dir: PathBuf,
    min_free: u64,
    /// The last check found too little space (logged once per change).
    low: AtomicBool,
}

impl DiskSpace {
    /// `min_free` 0 turns the check off.
    pub fn new(dir: PathBuf, min_free: u64) -> Self {
        DiskSpace {
            dir,
            min_free,
            low: AtomicBool::new(false),
        }
    }

    /// `Err(StorageFull)` when the disk has less than `min_free_bytes` available.
    pub fn check(&self) -> Result<()> {
        if self.min_free == 0 {
            return Ok(());
        }
        let available = match fs4::available_space(&self.dir) {
            Ok(a) => a,
            Err(e) => {
                // Unknown is not full: the write itself will tell.
                tracing::debug!(error = %e, dir = %self.dir.display(), "cannot read the free space");
                return Ok(());
            }
        };
        let low = available < self.min_free;
        if self.low.swap(low, Ordering::AcqRel) != low {
            if low {
                tracing::error!(available, min_free = self.min_free, dir = %self.dir.display(), "the data disk is almost full: writes are refused until space is freed");
            } else {
                tracing::info!(available, "space on the data disk again: writes resume");
            }
        }
        if low {
            return Err(Error::StorageFull {
                available,
                min_free: self.min_free,
            });
        }
        Ok(())
    }
}
