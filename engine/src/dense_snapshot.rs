//! Crash-safe snapshots of the dense index: the segment file (graph and fresh vectors,
//! [`crate::dense::segment_file`]) and the maps, written into a fresh directory, every file
//! checksummed and fsynced, the directory renamed into place and `CURRENT` switched atomically
//! (write, fsync, rename). Loading verifies the checksums before a byte is parsed and reads the
//! graph as it was written (nothing is rebuilt); a snapshot that fails any check, or one of an
//! older format, is refused, and the engine rebuilds the index from the store.

use concierge_infra::atomic_file;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dense::segment_file::{self, SegmentFile};
use crate::dense::{DenseIndex, MapsSnapshot};
use crate::error::{Error, Result};

const SEGMENT: &str = "segment.bin";
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
    let (maps, graph, fresh) = index.export();
    let seq = maps.seq;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = format!("snap-{seq:020}-{nanos}");
    let tmp = root.join(format!("{name}.tmp"));
    fs::create_dir(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    // A dump that fails (a full disk) leaves nothing behind to fill the disk further.
    if let Err(e) = write_snapshot(index.dim(), &maps, graph.as_deref(), &fresh, &tmp) {
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

/// The snapshot's files in `tmp`: the segment file, the maps, the checksums, synced.
fn write_snapshot(
    dim: usize,
    maps: &MapsSnapshot,
    graph: Option<&crate::dense::frozen::FrozenGraph>,
    fresh: &[f32],
    tmp: &Path,
) -> Result<()> {
    segment_file::write(&tmp.join(SEGMENT), dim, graph, fresh)?;
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
    if !segment_file::READS.contains(&maps.format) {
        return Err(Error::Dense(format!(
            "snapshot {} is of format {} (0: hnsw_rs's dump, before the segment file); this \
             version reads formats {:?}",
            dir.display(),
            maps.format,
            segment_file::READS
        )));
    }
    let (dim, params) = (maps.dim, maps.params);
    let segment: SegmentFile = segment_file::read(&dir.join(SEGMENT), dim)?;
    let maps = maps.into_maps(segment)?;
    Ok(Some(DenseIndex::from_parts(dim, params, maps)))
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

    /// The sample's documents' attributes.
    fn attrs() -> DocAttrs {
        DocAttrs {
            source: "t".into(),
            kind: "a".into(),
            updated_at: 3,
            meta_terms: vec!["k\u{1}v".into()],
        }
    }

    fn sample() -> DenseIndex {
        let idx = DenseIndex::new(8, HnswParams::default(), 64);
        let attrs = attrs();
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
    fn a_snapshot_reloads_with_its_tombstones_attributes_sequence_segment_and_fresh_part() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = sample();
        // 39 live points in the segment, 10 fresh.
        idx.freeze().expect("freezes");
        for i in 40..50u64 {
            idx.apply(
                &format!("t:a:{i}"),
                Some((
                    DocAttrs {
                        source: "t".into(),
                        kind: "a".into(),
                        updated_at: 3,
                        meta_terms: vec![],
                    },
                    vec![DenseItem {
                        chunk_id: i,
                        vector: unit(i),
                    }],
                )),
            )
            .expect("applies");
        }
        assert_eq!(dump(&idx, dir.path()).expect("dumps"), 41);
        let back = load(dir.path()).expect("loads").expect("present");
        assert_eq!(back.stats(), idx.stats());
        assert_eq!(back.stats().fresh, 10);
        for q in [5, 45, 77] {
            let a = idx
                .search(&unit(q), 5, 64, &Filter::default(), &[])
                .expect("searches");
            let b = back
                .search(&unit(q), 5, 64, &Filter::default(), &[])
                .expect("searches");
            assert_eq!(a, b);
        }
        // The loaded segment is the one written, link for link.
        let (was, now) = (
            idx.frozen().expect("a segment"),
            back.frozen().expect("a segment"),
        );
        assert_eq!(was.parts().level0, now.parts().level0);
        assert_eq!(was.parts().upper, now.parts().upper);
        assert_eq!(was.parts().vectors, now.parts().vectors);
        // It takes inserts and folds them in.
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
        assert_eq!(back.freeze().expect("freezes"), Some(51));
        assert_eq!(back.stats().live, 50);
    }

    /// Rewrites a snapshot's checksums to match its files (as a bug in a writer would).
    fn rehash(snap: &Path, names: &[&str]) {
        let mut files = Vec::new();
        for name in names {
            files.push((
                (*name).to_owned(),
                sha256_file(&snap.join(name)).expect("hashes"),
            ));
        }
        files.sort();
        fs::write(
            snap.join(CHECKSUMS),
            serde_json::to_vec(&Checksums { files }).expect("encodes"),
        )
        .expect("writes");
    }

    /// Dumps a frozen sample, lets `spoil` change the segment file and rehashes it: the file's
    /// own checks must refuse it.
    fn spoiled(spoil: impl FnOnce(&mut Vec<u8>)) -> Error {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = sample();
        idx.freeze().expect("freezes");
        dump(&idx, dir.path()).expect("dumps");
        let current = current_dir(dir.path()).expect("current");
        let path = current.join(SEGMENT);
        let mut bytes = fs::read(&path).expect("reads");
        spoil(&mut bytes);
        fs::write(&path, &bytes).expect("writes");
        rehash(&current, &[SEGMENT, MAPS]);
        load(dir.path()).expect_err("refused")
    }

    #[test]
    fn corrupt_truncated_and_foreign_segment_files_are_refused_by_their_own_checks() {
        let message = |e: Error| e.to_string();
        assert!(message(spoiled(|b| b.truncate(b.len() - 4))).contains("truncated"));
        assert!(message(spoiled(|b| b.extend_from_slice(&[0; 8]))).contains("after the segment"));
        assert!(message(spoiled(|b| b[0] = b'X')).contains("magic"));
        assert!(message(spoiled(|b| b[8] = 9)).contains("format version 9"));
        // A level-0 link to a point that does not exist (the first link of point 0).
        let far = 1_000_000u32.to_le_bytes();
        assert!(
            message(spoiled(|b| b[64..68].copy_from_slice(&far))).contains("link to point 1000000")
        );
    }

    #[test]
    fn a_snapshot_of_format_1_with_f32_segment_vectors_loads_without_a_rebuild() {
        // Format 1 held the segment's vectors in f32: rewrite a dump that way (each f16 widened
        // exactly), then load it.
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = sample();
        idx.freeze().expect("freezes");
        idx.apply(
            "t:a:60",
            Some((
                attrs(),
                vec![DenseItem {
                    chunk_id: 60,
                    vector: unit(60),
                }],
            )),
        )
        .expect("applies");
        dump(&idx, dir.path()).expect("dumps");
        let current = current_dir(dir.path()).expect("current");
        let bytes = fs::read(current.join(SEGMENT)).expect("reads");
        let word =
            |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let (dim, width, frozen, fresh) = (word(12), word(16), word(24), word(32));
        assert_eq!((frozen, fresh), (40, 1));
        let links_end = 64 + frozen * width * 4;
        let halves_end = links_end + frozen * dim * 2;
        let mut old = bytes[..links_end].to_vec();
        old[8..12].copy_from_slice(&1u32.to_le_bytes());
        for h in bytes[links_end..halves_end].chunks_exact(2) {
            let x = half::f16::from_le_bytes([h[0], h[1]]).to_f32();
            old.extend_from_slice(&x.to_le_bytes());
        }
        old.extend_from_slice(&bytes[halves_end..]);
        fs::write(current.join(SEGMENT), &old).expect("writes");
        let mut maps: serde_json::Value =
            serde_json::from_slice(&fs::read(current.join(MAPS)).expect("reads")).expect("json");
        maps["format"] = 1.into();
        fs::write(
            current.join(MAPS),
            serde_json::to_vec(&maps).expect("encodes"),
        )
        .expect("writes");
        rehash(&current, &[SEGMENT, MAPS]);

        let back = load(dir.path()).expect("loads").expect("present");
        assert_eq!(back.stats(), idx.stats());
        let (was, now) = (
            idx.frozen().expect("a segment"),
            back.frozen().expect("a segment"),
        );
        assert_eq!(was.parts().level0, now.parts().level0);
        assert_eq!(was.parts().vectors, now.parts().vectors);
        for q in [5, 60, 77] {
            assert_eq!(
                idx.search(&unit(q), 5, 64, &Filter::default(), &[])
                    .expect("searches"),
                back.search(&unit(q), 5, 64, &Filter::default(), &[])
                    .expect("searches"),
            );
        }
    }

    #[test]
    fn a_changed_byte_is_refused_by_the_checksums() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = sample();
        idx.freeze().expect("freezes");
        dump(&idx, dir.path()).expect("dumps");
        let path = current_dir(dir.path()).expect("current").join(SEGMENT);
        let mut bytes = fs::read(&path).expect("reads");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        fs::write(&path, bytes).expect("writes");
        let err = load(dir.path()).expect_err("refused");
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn a_snapshot_of_the_hnsw_rs_format_is_refused_so_the_index_is_rebuilt() {
        // What an earlier version wrote: hnsw_rs's dump files and maps without a format.
        let dir = tempfile::tempdir().expect("tempdir");
        let name = "snap-00000000000000000041-1";
        let snap = dir.path().join(name);
        fs::create_dir_all(&snap).expect("mkdir");
        let maps = br#"{"seq":41,"dim":8,"params":{"m":16,"ef_construction":200,"ef_search":64},"slots":[1],"docs":[]}"#;
        fs::write(snap.join(MAPS), maps).expect("writes");
        fs::write(snap.join("dense.hnsw.graph"), b"graph").expect("writes");
        fs::write(snap.join("dense.hnsw.data"), b"data").expect("writes");
        rehash(&snap, &[MAPS, "dense.hnsw.data", "dense.hnsw.graph"]);
        fs::write(dir.path().join(CURRENT), name).expect("writes");
        let err = load(dir.path()).expect_err("refused");
        assert!(err.to_string().contains("format 0"), "{err}");
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
