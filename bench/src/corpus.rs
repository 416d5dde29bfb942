//! The retrieval benchmarks' corpus: real English sentences, found offline on any machine that
//! builds Concierge: the comments and doc comments of the Rust crates in Cargo's registry (the
//! sources of our locked dependencies) and the docstrings and comments of the system Python.
//! Sentences are deduplicated and put in a fixed pseudo-random order (by hash), so a machine
//! with the same lockfile and Python gets the same corpus.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};
use unicode_segmentation::UnicodeSegmentation;

/// Where the sentences come from.
pub fn source_dirs() -> Vec<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let mut dirs = Vec::new();
    if let Some(home) = cargo_home
        && let Ok(entries) = std::fs::read_dir(home.join("registry/src"))
    {
        let mut found: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        found.sort();
        dirs.extend(found);
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("python3"))
            })
            .collect();
        found.sort();
        dirs.extend(found);
    }
    dirs
}

fn acceptable(s: &str) -> bool {
    let words = s.split_whitespace().count();
    let letters = s.chars().filter(|c| c.is_alphabetic()).count();
    (6..=60).contains(&words) && letters * 10 > s.chars().count() * 7
}

fn add_text(text: &str, out: &mut BTreeSet<String>) {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for sentence in joined.unicode_sentences() {
        let s = sentence.trim();
        if acceptable(s) {
            out.insert(s.to_owned());
        }
    }
}

fn from_rust(source: &str, out: &mut BTreeSet<String>) {
    let mut block: Vec<&str> = Vec::new();
    for line in source.lines() {
        let l = line.trim_start();
        if let Some(comment) = l.strip_prefix("//") {
            let t = comment.trim_start_matches(['/', '!']).trim();
            if t.starts_with("```") || t.starts_with('#') {
                add_text(&block.join(" "), out);
                block.clear();
            } else {
                block.push(t);
            }
        } else if !block.is_empty() {
            add_text(&block.join(" "), out);
            block.clear();
        }
    }
    add_text(&block.join(" "), out);
}

fn from_python(source: &str, out: &mut BTreeSet<String>) {
    for (i, part) in source.split("\"\"\"").enumerate() {
        if i % 2 == 1 {
            add_text(part, out);
        }
    }
    let mut block: Vec<&str> = Vec::new();
    for line in source.lines() {
        let l = line.trim_start();
        if let Some(comment) = l.strip_prefix('#') {
            block.push(comment.trim_start_matches('#').trim());
        } else if !block.is_empty() {
            add_text(&block.join(" "), out);
            block.clear();
        }
    }
}

fn walk(dir: &Path, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if path.is_symlink() {
            continue;
        }
        if path.is_dir() {
            walk(&path, out);
        } else if let Some(ext) = path.extension().and_then(|e| e.to_str())
            && (ext == "rs" || ext == "py")
            && let Ok(source) = std::fs::read_to_string(&path)
        {
            if ext == "rs" {
                from_rust(&source, out)
            } else {
                from_python(&source, out)
            }
        }
    }
}

/// `count` sentences in the corpus's fixed order.
pub fn sentences(count: usize) -> anyhow::Result<Vec<String>> {
    let mut all = BTreeSet::new();
    for dir in source_dirs() {
        walk(&dir, &mut all);
    }
    let mut keyed: Vec<([u8; 32], String)> = all
        .into_iter()
        .map(|s| (Sha256::digest(s.as_bytes()).into(), s))
        .collect();
    keyed.sort();
    anyhow::ensure!(
        keyed.len() >= count,
        "only {} sentences found under {:?}, {count} needed",
        keyed.len(),
        source_dirs()
    );
    Ok(keyed.into_iter().take(count).map(|(_, s)| s).collect())
}

/// A digest of a text list (cache keys).
pub fn digest(texts: &[String]) -> String {
    let mut h = Sha256::new();
    for t in texts {
        h.update(t.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes vectors as little-endian f32 rows.
pub fn write_f32(path: &Path, rows: &[Vec<f32>]) -> anyhow::Result<()> {
    let bytes: Vec<u8> = rows
        .iter()
        .flat_map(|r| r.iter().flat_map(|x| x.to_le_bytes()))
        .collect();
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Reads little-endian f32 rows of `dim` values.
pub fn read_f32(path: &Path, dim: usize) -> anyhow::Result<Vec<Vec<f32>>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        bytes.len() % (dim * 4) == 0,
        "{} is not a whole number of {dim}-dimensional rows",
        path.display()
    );
    Ok(bytes
        .chunks_exact(dim * 4)
        .map(|row| {
            row.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_comments_and_python_docstrings_give_whole_sentences() {
        let mut out = BTreeSet::new();
        from_rust(
            "/// Opens the store and checks its format version before anything else.\n/// ```\n/// code();\n/// ```\nfn x() {}\n// short\n",
            &mut out,
        );
        from_python(
            "def f():\n    \"\"\"Return the number of guests staying in the apartment tonight. Then stop.\"\"\"\n",
            &mut out,
        );
        let got: Vec<&str> = out.iter().map(String::as_str).collect();
        assert_eq!(
            got,
            [
                "Opens the store and checks its format version before anything else.",
                "Return the number of guests staying in the apartment tonight."
            ]
        );
    }

    #[test]
    fn vectors_round_trip_through_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rows = vec![vec![1.0f32, -2.5], vec![0.0, 3.0]];
        write_f32(&dir.path().join("v.f32"), &rows).expect("write");
        assert_eq!(read_f32(&dir.path().join("v.f32"), 2).expect("read"), rows);
    }
}
