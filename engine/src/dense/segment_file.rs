//! The segment file of a dense snapshot: the frozen graph and the fresh part's vectors in one
//! little-endian file, read back without rebuilding anything. A 64-byte header (magic, format
//! version, dimensions, row width, levels, point counts, entry point) gives every length, so a
//! truncated or padded file is refused before a value is used; the snapshot's checksums
//! (`dense_snapshot`) catch changed bytes, and [`FrozenGraph::from_parts`] refuses links that
//! point outside the segment.
//!
//! ```text
//! header   "CONCSEG\0" · version u32 · dim u32 · width u32 · top u32 · frozen u64 · fresh u64
//!          · entry u32 · zero padding to 64 bytes
//! level0   frozen × width u32 (u32::MAX pads a row)
//! vectors  frozen × dim f16, then fresh × dim f32, by slot
//! upper    per level 1..=top: nodes u32, then per node: id u32 · links u32 · links × u32
//! ```
//!
//! Version 1 (before the segment's vectors were f16) held `(frozen + fresh) × dim f32`; it is
//! still read, its frozen vectors rounded to f16 as a fold would, so an upgrade restarts without
//! a rebuild.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use half::f16;

use super::frozen::{FrozenGraph, SegmentParts, to_halves};
use super::huge_array::HugeArray;
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"CONCSEG\0";
/// The format this version writes.
pub(crate) const VERSION: u32 = 2;
/// The formats this version reads.
pub(crate) const READS: [u32; 2] = [1, VERSION];
const HEADER: usize = 64;

/// What a segment file holds: the graph (none before the first fold) and the fresh vectors.
#[derive(Debug)]
pub(crate) struct SegmentFile {
    pub graph: Option<FrozenGraph>,
    pub fresh: Vec<f32>,
}

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Dense(format!("segment file {}: {what}", path.display()))
}

/// Writes `graph` and `fresh` (`dim` values per point) to `path` (not synced: the snapshot
/// syncs its files).
pub(crate) fn write(
    path: &Path,
    dim: usize,
    graph: Option<&FrozenGraph>,
    fresh: &[f32],
) -> Result<()> {
    let io = |e| Error::io(format!("writing {}", path.display()), e);
    let file = std::fs::File::create(path).map_err(io)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let view = graph.map(FrozenGraph::parts);
    let (width, top, entry) = view.map_or((0, 0, 0), |v| (v.width, v.upper.len(), v.entry));
    let n = graph.map_or(0, FrozenGraph::len);
    let u32_of = |v: usize, what: &str| {
        u32::try_from(v).map_err(|_| bad(path, format!("{what} {v} does not fit the format")))
    };
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&u32_of(dim, "dim")?.to_le_bytes());
    header.extend_from_slice(&u32_of(width, "width")?.to_le_bytes());
    header.extend_from_slice(&u32_of(top, "top")?.to_le_bytes());
    header.extend_from_slice(&(n as u64).to_le_bytes());
    header.extend_from_slice(&((fresh.len() / dim.max(1)) as u64).to_le_bytes());
    header.extend_from_slice(&entry.to_le_bytes());
    header.resize(HEADER, 0);
    out.write_all(&header).map_err(io)?;
    let (level0, vectors, upper) = view.map_or((&[][..], &[][..], &[][..]), |v| {
        (&v.level0[..], &v.vectors[..], &v.upper[..])
    });
    for nb in level0 {
        out.write_all(&nb.to_le_bytes()).map_err(io)?;
    }
    for x in vectors {
        out.write_all(&x.to_le_bytes()).map_err(io)?;
    }
    for x in fresh {
        out.write_all(&x.to_le_bytes()).map_err(io)?;
    }
    for level in upper {
        // By node id, so the same segment always gives the same bytes.
        let mut nodes: Vec<(&u32, &Vec<u32>)> = level.iter().collect();
        nodes.sort_unstable_by_key(|(id, _)| **id);
        out.write_all(&u32_of(nodes.len(), "nodes")?.to_le_bytes())
            .map_err(io)?;
        for (id, row) in nodes {
            out.write_all(&id.to_le_bytes()).map_err(io)?;
            out.write_all(&u32_of(row.len(), "links")?.to_le_bytes())
                .map_err(io)?;
            for nb in row {
                out.write_all(&nb.to_le_bytes()).map_err(io)?;
            }
        }
    }
    out.flush().map_err(io)
}

/// Little-endian `u32`s and `f32`s off a reader, with the file's path in every error.
struct Values<'a, R> {
    input: R,
    path: &'a Path,
    /// Bytes left in the file.
    left: u64,
}

impl<R: Read> Values<'_, R> {
    fn bytes(&mut self, out: &mut [u8]) -> Result<()> {
        if (out.len() as u64) > self.left {
            return Err(bad(self.path, "truncated"));
        }
        self.input
            .read_exact(out)
            .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
        self.left -= out.len() as u64;
        Ok(())
    }

    fn u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        self.bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// `count` values of `W` bytes each, each made by `from`.
    fn many<const W: usize, T>(&mut self, count: u64, from: fn([u8; W]) -> T) -> Result<Vec<T>> {
        if count.saturating_mul(W as u64) > self.left {
            return Err(bad(self.path, "truncated"));
        }
        let count = usize::try_from(count).map_err(|_| bad(self.path, "too large"))?;
        let mut out = Vec::with_capacity(count);
        let mut buf = vec![0u8; 1 << 16];
        while out.len() < count {
            let take = ((count - out.len()) * W).min(buf.len() / W * W);
            self.bytes(&mut buf[..take])?;
            out.extend(buf[..take].chunks_exact(W).map(|c| {
                let mut value = [0u8; W];
                value.copy_from_slice(c);
                from(value)
            }));
        }
        Ok(out)
    }
}

/// Reads a segment file written for `dim`-dimensional vectors.
pub(crate) fn read(path: &Path, dim: usize) -> Result<SegmentFile> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
        .len();
    let mut v = Values {
        input: BufReader::with_capacity(1 << 20, file),
        path,
        left: size,
    };
    let mut header = [0u8; HEADER];
    v.bytes(&mut header)?;
    if &header[..8] != MAGIC {
        return Err(bad(path, "not a segment file (wrong magic)"));
    }
    let word = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let long = |at: usize| u64::from(word(at)) | (u64::from(word(at + 4)) << 32);
    let version = word(8);
    if !READS.contains(&version) {
        return Err(bad(
            path,
            format!("format version {version}; this version reads {READS:?}"),
        ));
    }
    let (file_dim, width, top) = (word(12) as usize, word(16) as usize, word(20) as usize);
    let (frozen, fresh, entry) = (long(24), long(32), word(40));
    if frozen == 0 && (top > 0 || width > 0) {
        return Err(bad(path, "levels or links without a graph"));
    }
    if file_dim != dim {
        return Err(bad(
            path,
            format!("{file_dim}-d vectors, the index has {dim}"),
        ));
    }
    let level0 = v.many(frozen.saturating_mul(width as u64), u32::from_le_bytes)?;
    let (vectors, fresh) = if version == 1 {
        let mut all = v.many(
            frozen.saturating_add(fresh).saturating_mul(dim as u64),
            f32::from_le_bytes,
        )?;
        let fresh = usize::try_from(fresh.saturating_mul(dim as u64))
            .map_err(|_| bad(path, "too large"))?;
        let fresh = all.split_off(all.len() - fresh);
        (to_halves(&all), fresh)
    } else {
        (
            v.many(frozen.saturating_mul(dim as u64), f16::from_le_bytes)?,
            v.many(fresh.saturating_mul(dim as u64), f32::from_le_bytes)?,
        )
    };
    let mut upper = Vec::with_capacity(top.min(64));
    for _ in 0..top {
        let nodes = v.u32()?;
        let mut level = HashMap::new();
        for _ in 0..nodes {
            let id = v.u32()?;
            let links = v.u32()?;
            level.insert(id, v.many(u64::from(links), u32::from_le_bytes)?);
        }
        upper.push(level);
    }
    if v.left != 0 {
        return Err(bad(path, format!("{} bytes after the segment", v.left)));
    }
    let graph = if frozen == 0 {
        None
    } else {
        Some(
            FrozenGraph::from_parts(SegmentParts {
                dim,
                width,
                level0: HugeArray::from_vec(level0),
                upper,
                vectors: HugeArray::from_vec(vectors),
                entry,
            })
            .map_err(|e| bad(path, e))?,
        )
    };
    Ok(SegmentFile { graph, fresh })
}
