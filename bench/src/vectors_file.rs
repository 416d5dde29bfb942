//! Vector files for `concierge-bench ann`: NumPy `.npy` (2-D little-endian float32, C order; what
//! `numpy.save` writes) and `.fvecs` (the TEXMEX/ann-benchmarks layout: per vector a little-endian
//! `i32` dimension followed by that many `f32`). Reading checks the shape and says what is wrong.

use std::path::Path;

use anyhow::{Context, bail, ensure};

/// Rows of equal dimension, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Vectors {
    pub dim: usize,
    pub rows: Vec<Vec<f32>>,
}

/// Reads `.npy` or `.fvecs` (by extension).
pub fn read(path: &Path) -> anyhow::Result<Vectors> {
    let parse = match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => parse_npy,
        Some("fvecs") => parse_fvecs,
        _ => bail!(
            "{}: unknown vector file type (expected .npy or .fvecs)",
            path.display()
        ),
    };
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&bytes).with_context(|| format!("reading {}", path.display()))
}

/// Writes `.npy` or `.fvecs` (by extension).
pub fn write(path: &Path, rows: &[Vec<f32>]) -> anyhow::Result<()> {
    let dim = rows.first().map_or(0, Vec::len);
    ensure!(
        rows.iter().all(|r| r.len() == dim),
        "rows of different dimensions"
    );
    let mut out = Vec::with_capacity(128 + rows.len() * (dim * 4 + 4));
    match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => {
            let mut header = format!(
                "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
                rows.len(),
                dim
            );
            // Magic (6) + version (2) + header length (2) + header, padded to 64 bytes, ending in \n.
            while (10 + header.len() + 1) % 64 != 0 {
                header.push(' ');
            }
            header.push('\n');
            out.extend_from_slice(b"\x93NUMPY\x01\x00");
            out.extend_from_slice(&u16::try_from(header.len())?.to_le_bytes());
            out.extend_from_slice(header.as_bytes());
            for v in rows.iter().flatten() {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        Some("fvecs") => {
            for r in rows {
                out.extend_from_slice(&i32::try_from(dim)?.to_le_bytes());
                for v in r {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        _ => bail!("unknown vector file type (expected .npy or .fvecs)"),
    }
    concierge_infra::atomic_file::write(path, &out)
        .with_context(|| format!("writing {}", path.display()))
}

fn parse_npy(bytes: &[u8]) -> anyhow::Result<Vectors> {
    ensure!(
        bytes.len() >= 10 && &bytes[..6] == b"\x93NUMPY",
        "not a .npy file (bad magic)"
    );
    let (header_len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 => {
            ensure!(bytes.len() >= 12, "truncated .npy header");
            let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (usize::try_from(n)?, 12)
        }
        v => bail!(".npy version {v} is not supported"),
    };
    let header = bytes
        .get(start..start + header_len)
        .context("truncated .npy header")?;
    let header = std::str::from_utf8(header).context(".npy header is not text")?;
    let field = |name: &str| -> anyhow::Result<&str> {
        let at = header
            .find(&format!("'{name}'"))
            .with_context(|| format!(".npy header has no '{name}'"))?;
        let rest = &header[at + name.len() + 2..];
        let colon = rest.find(':').context(".npy header is malformed")?;
        Ok(rest[colon + 1..].trim_start())
    };
    let descr = field("descr")?;
    ensure!(
        descr.starts_with("'<f4'") || descr.starts_with("'float32'"),
        "only little-endian float32 is supported, the file holds {}",
        descr.split(',').next().unwrap_or(descr)
    );
    ensure!(
        field("fortran_order")?.starts_with("False"),
        "Fortran-ordered arrays are not supported (save with numpy's default C order)"
    );
    let shape = field("shape")?;
    let close = shape.find(')').context(".npy shape is malformed")?;
    let dims: Vec<usize> = shape[1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context(".npy shape is malformed")?;
    let [count, dim] = dims[..] else {
        bail!("expected a 2-D array (count, dim), the shape is {dims:?}");
    };
    ensure!(dim > 0, "the vectors have dimension 0");
    let data = &bytes[start + header_len..];
    ensure!(
        data.len() == count * dim * 4,
        "the header says {count}×{dim} float32 ({} bytes) but {} bytes follow",
        count * dim * 4,
        data.len()
    );
    let rows = data
        .chunks_exact(dim * 4)
        .map(|row| {
            row.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect();
    Ok(Vectors { dim, rows })
}

fn parse_fvecs(bytes: &[u8]) -> anyhow::Result<Vectors> {
    let mut rows = Vec::new();
    let mut dim = None;
    let mut at = 0;
    while at < bytes.len() {
        let head = bytes
            .get(at..at + 4)
            .with_context(|| format!("truncated vector {} at byte {at}", rows.len()))?;
        let d = i32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        ensure!(
            d > 0,
            "vector {} declares dimension {d} at byte {at}",
            rows.len()
        );
        let d = usize::try_from(d)?;
        if let Some(first) = dim {
            ensure!(
                d == first,
                "vector {} has dimension {d}, the first has {first}",
                rows.len()
            );
        }
        dim = Some(d);
        let body = bytes
            .get(at + 4..at + 4 + d * 4)
            .with_context(|| format!("truncated vector {} at byte {at}", rows.len()))?;
        rows.push(
            body.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        );
        at += 4 + d * 4;
    }
    let dim = dim.context("the file holds no vectors")?;
    Ok(Vectors { dim, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Vec<f32>> {
        vec![vec![1.0, -2.5, 3.25], vec![0.0, f32::MIN_POSITIVE, 7.0]]
    }

    #[test]
    fn npy_and_fvecs_files_read_back_what_was_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["v.npy", "v.fvecs"] {
            let path = dir.path().join(name);
            write(&path, &sample()).expect("write");
            let back = read(&path).expect("read");
            assert_eq!(back.dim, 3);
            assert_eq!(back.rows, sample());
        }
    }

    #[test]
    fn the_npy_header_is_what_numpy_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v.npy");
        write(&path, &sample()).expect("write");
        let bytes = std::fs::read(&path).expect("read");
        let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
        assert_eq!((10 + header_len) % 64, 0, "header padded to 64 bytes");
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).expect("utf8");
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
        assert!(header.ends_with('\n'));
    }

    #[test]
    fn a_float64_npy_file_is_refused_with_its_type() {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }          \n";
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0u8; 16]);
        let err = parse_npy(&bytes).expect_err("float64");
        assert!(err.to_string().contains("'<f8'"), "{err}");
    }

    #[test]
    fn a_truncated_npy_file_says_how_many_bytes_are_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v.npy");
        write(&path, &sample()).expect("write");
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.truncate(bytes.len() - 4);
        let err = parse_npy(&bytes).expect_err("truncated");
        assert!(
            err.to_string().contains("24 bytes) but 20 bytes follow"),
            "{err}"
        );
    }

    #[test]
    fn fvecs_with_mixed_dimensions_or_a_cut_vector_is_refused() {
        let mut bytes = Vec::new();
        for (d, n) in [(2i32, 2), (3, 3)] {
            bytes.extend_from_slice(&d.to_le_bytes());
            bytes.extend(std::iter::repeat_n(0u8, n * 4));
        }
        let err = parse_fvecs(&bytes).expect_err("mixed");
        assert!(
            err.to_string().contains("vector 1 has dimension 3"),
            "{err}"
        );
        let mut cut = 2i32.to_le_bytes().to_vec();
        cut.extend_from_slice(&[0u8; 6]);
        let err = parse_fvecs(&cut).expect_err("cut");
        assert!(err.to_string().contains("truncated vector 0"), "{err}");
        assert!(parse_fvecs(&[]).is_err());
    }

    #[test]
    fn an_unknown_extension_is_refused() {
        let err = read(Path::new("vectors.csv")).expect_err("csv");
        assert!(
            err.to_string().contains("unknown vector file type"),
            "{err}"
        );
    }
}
