//! Crash-safe snapshots of the dense index. hnsw_rs's own dump is neither atomic nor synced, so a
//! snapshot is written into a fresh directory, every file is checksummed and fsynced, the
//! directory is renamed into place and `CURRENT` is switched atomically (write, fsync, rename).
//! Loading verifies the checksums before hnsw_rs reads a byte (it panics on garbage), and a
//! panic inside hnsw_rs is still caught and reported as a corrupt snapshot.

use concierge_infra::atomic_file;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;

use hnsw_rs::prelude::{AnnT, HnswIo, ReloadOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dense::{DenseIndex, MapsSnapshot};
use crate::distance::UnitCosine;
use crate::error::{Error, Result};

const BASENAME: &str = "dense";
const MAPS: &str = "maps.json";
const CHECKSUMS: &str = "checksums.json";
const CURRENT: &str = "CURRENT";

#[derive(Debug, Serialize, Deserialize)]
struct Checksums {
    files: Vec<(String, String)>,
}

/// Writes a snapshot of `index` under `root` and makes it the current one. Returns its seq.
pub(crate) fn dump(index: &DenseIndex, root: &Path) -> Result<u64> {
    fs::create_dir_all(root).map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
    let maps = index.export_maps();
    let seq = maps.seq;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = format!("snap-{seq:020}-{nanos}");
    let tmp = root.join(format!("{name}.tmp"));
    fs::create_dir(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    // A dump that fails (a full disk) leaves nothing behind to fill the disk further.
    if let Err(e) = write_snapshot(index, &maps, &tmp) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }

    let final_dir = root.join(&name);
    atomic_file::rename(&tmp, &final_dir)
        .map_err(|e| Error::io(format!("renaming {} into place", tmp.display()), e))?;
    atomic_file::write(&root.join(CURRENT), name.as_bytes())
        .map_err(|e| Error::io("switching CURRENT", e))?;

    // Older snapshots and abandoned temporary directories are no longer needed.
    if let Ok(entries) = fs::read_dir(root) {
        for entry in entries.flatten() {
            let n = entry.file_name().to_string_lossy().into_owned();
            if n.starts_with("snap-") && n != name {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    Ok(seq)
}

/// The snapshot's files in `tmp`: the graph (hnsw_rs's dump), the maps, the checksums, synced.
fn write_snapshot(index: &DenseIndex, maps: &MapsSnapshot, tmp: &Path) -> Result<()> {
    if !maps.slots.is_empty() {
        index
            .hnsw()
            .file_dump(tmp, BASENAME)
            .map_err(|e| Error::Dense(format!("hnsw_rs dump into {}: {e}", tmp.display())))?;
    }
    let maps_bytes =
        serde_json::to_vec(maps).map_err(|e| Error::Dense(format!("encoding maps: {e}")))?;
    write_synced(&tmp.join(MAPS), &maps_bytes)?;

    let mut files = Vec::new();
    for entry in
        fs::read_dir(tmp).map_err(|e| Error::io(format!("listing {}", tmp.display()), e))?
    {
        let entry = entry.map_err(|e| Error::io("listing a snapshot", e))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        sync_file(&path)?;
        files.push((file_name, sha256_file(&path)?));
    }
    files.sort();
    let sums = serde_json::to_vec(&Checksums { files }).map_err(|e| Error::Dense(e.to_string()))?;
    write_synced(&tmp.join(CHECKSUMS), &sums)?;
    sync_dir(tmp)?;

    Ok(())
}

/// Loads the current snapshot under `root`. `Ok(None)` when there is none.
pub(crate) fn load(root: &Path) -> Result<Option<DenseIndex>> {
    let current = match fs::read_to_string(root.join(CURRENT)) {
        Ok(name) => name,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::io(
                format!("reading {}", root.join(CURRENT).display()),
                e,
            ));
        }
    };
    let dir = root.join(current.trim());
    verify(&dir)?;
    let maps_bytes = fs::read(dir.join(MAPS))
        .map_err(|e| Error::io(format!("reading {}", dir.join(MAPS).display()), e))?;
    let maps: MapsSnapshot = serde_json::from_slice(&maps_bytes)
        .map_err(|e| Error::Dense(format!("snapshot maps: {e}")))?;
    maps.params.validate().map_err(Error::Dense)?;
    let (dim, params) = (maps.dim, maps.params);
    if maps.slots.is_empty() {
        let index = DenseIndex::new(dim, params, 1024);
        let empty = maps.into_maps(0)?;
        index.set_seq(empty.seq);
        return Ok(Some(index));
    }
    let graph_dir = dir.clone();
    let loaded = std::panic::catch_unwind(move || {
        // hnsw_rs ties the loaded graph's lifetime to its loader; the loader is a few paths and
        // options, leaked once per load (at open or after a rebuild), to get a 'static graph.
        // The vectors stay in the snapshot's data file, memory-mapped (read-only page cache the
        // kernel can reclaim) instead of copied to the heap: 1.5 KB per chunk.
        let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new_with_options(
            &graph_dir,
            BASENAME,
            ReloadOptions::default().set_mmap(true),
        )));
        io.load_hnsw::<f32, UnitCosine>().map_err(|e| e.to_string())
    });
    let hnsw = match loaded {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            return Err(Error::Dense(format!(
                "hnsw_rs could not load {}: {e}",
                dir.display()
            )));
        }
        Err(_) => {
            return Err(Error::Dense(format!(
                "hnsw_rs panicked loading {}",
                dir.display()
            )));
        }
    };
    let points = hnsw.get_nb_point();
    let maps = maps.into_maps(points)?;
    Ok(Some(DenseIndex::from_parts(hnsw, dim, params, maps)?))
}

/// Checks every file of a snapshot against its recorded SHA-256.
fn verify(dir: &Path) -> Result<()> {
    let bytes = fs::read(dir.join(CHECKSUMS))
        .map_err(|e| Error::io(format!("reading {}", dir.join(CHECKSUMS).display()), e))?;
    let sums: Checksums = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Dense(format!("snapshot checksums: {e}")))?;
    for (name, expected) in &sums.files {
        let actual = sha256_file(&dir.join(name))?;
        if actual != *expected {
            return Err(Error::Dense(format!(
                "snapshot file {name} does not match its checksum (corrupt)"
            )));
        }
    }
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f =
        File::create(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    f.write_all(bytes)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    f.sync_all()
        .map_err(|e| Error::io(format!("syncing {}", path.display()), e))
}

fn sync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", path.display()), e))
}

pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", path.display()), e))
}

/// The directory of the current snapshot, if any.
#[cfg(test)]
fn current_dir(root: &Path) -> Option<PathBuf> {
    fs::read_to_string(root.join(CURRENT))
        .ok()
        .map(|n| root.join(n.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dense::{DenseItem, HnswParams};
    use crate::filter::{DocAttrs, Filter};

    fn unit(i: u64) -> Vec<f32> {
        let v: Vec<f32> = (0..8)
            .map(|j| ((i * 31 + j * 17) % 13) as f32 + 0.5)
            .collect();
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.into_iter().map(|a| a / n).collect()
    }

    fn sample() -> DenseIndex {
        let idx = DenseIndex::new(8, HnswParams::default(), 64);
        let attrs = DocAttrs {
            source: "t".into(),
            kind: "a".into(),
            updated_at: 3,
            meta_terms: vec!["k\u{1}v".into()],
        };
        for i in 0..40u64 {
            idx.apply(
                &format!("t:a:{i}"),
                Some((
                    attrs.clone(),
                    vec![DenseItem {
                        chunk_id: i,
                        vector: unit(i),
                    }],
                )),
            )
            .expect("applies");
        }
        idx.apply("t:a:3", None).expect("deletes");
        idx.set_seq(41);
        idx
    }

    #[test]
    fn a_snapshot_reloads_with_its_tombstones_attributes_and_sequence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = sample();
        assert_eq!(dump(&idx, dir.path()).expect("dumps"), 41);
        let back = load(dir.path()).expect("loads").expect("present");
        // Loaded, every point is in the frozen segment (none fresh).
        let (mut was, now) = (idx.stats(), back.stats());
        assert_eq!(now.fresh, 0);
        was.fresh = 0;
        assert_eq!(now, was);
        let a = idx
            .search(&unit(5), 5, 64, &Filter::default(), &[])
            .expect("searches");
        let b = back
            .search(&unit(5), 5, 64, &Filter::default(), &[])
            .expect("searches");
        assert_eq!(a, b);
        // The reloaded graph accepts inserts.
        back.apply(
            "t:a:100",
            Some((
                DocAttrs {
                    source: "t".into(),
                    kind: "a".into(),
                    updated_at: 1,
                    meta_terms: vec![],
                },
                vec![DenseItem {
                    chunk_id: 100,
                    vector: unit(100),
                }],
            )),
        )
        .expect("applies");
        assert_eq!(back.stats().live, 40);
    }

    #[test]
    fn a_corrupted_snapshot_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        dump(&sample(), dir.path()).expect("dumps");
        let current = current_dir(dir.path()).expect("current");
        let graph = current.join("dense.hnsw.graph");
        let mut bytes = fs::read(&graph).expect("reads");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        fs::write(&graph, bytes).expect("writes");
        assert!(matches!(load(dir.path()), Err(Error::Dense(_))));
    }

    #[test]
    fn a_second_dump_replaces_the_first_and_no_snapshot_means_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load(dir.path()).expect("no error").is_none());
        let idx = sample();
        dump(&idx, dir.path()).expect("dumps");
        idx.set_seq(50);
        dump(&idx, dir.path()).expect("dumps");
        let snaps = fs::read_dir(dir.path())
            .expect("lists")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("snap-"))
            })
            .count();
        assert_eq!(snaps, 1);
        assert_eq!(load(dir.path()).expect("loads").expect("present").seq(), 50);
    }
}
