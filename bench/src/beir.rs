//! Retrieval datasets in the BEIR layout: `corpus.jsonl` (`{"_id", "title", "text"}` per line),
//! `queries.jsonl` (`{"_id", "text"}`) and `qrels/test.tsv` (`query-id`, `corpus-id`, `score`
//! with a header line). Reading says which file and line is wrong.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};

/// One corpus document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusDoc {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(default)]
    pub title: String,
    pub text: String,
}

/// One query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Query {
    #[serde(rename = "_id")]
    pub id: String,
    pub text: String,
}

/// One judgement: query id, document id, grade.
pub type Qrel = (String, String, u32);

/// Graded relevance: query id → (document id → grade > 0).
pub type Qrels = HashMap<String, HashMap<String, u32>>;

/// A whole dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub corpus: Vec<CorpusDoc>,
    /// The queries that have at least one relevant document, in file order.
    pub queries: Vec<Query>,
    pub qrels: Qrels,
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Vec<T>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{} line {}", path.display(), n + 1))?,
        );
    }
    Ok(out)
}

fn read_qrels(path: &Path) -> anyhow::Result<Qrels> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut qrels = Qrels::new();
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        if n == 0 && fields.first() == Some(&"query-id") {
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let [query, doc, score] = fields[..] else {
            bail!(
                "{} line {}: expected query-id, corpus-id and score separated by tabs",
                path.display(),
                n + 1
            );
        };
        let score: i64 = score
            .trim()
            .parse()
            .with_context(|| format!("{} line {}: score {score:?}", path.display(), n + 1))?;
        if score > 0 {
            qrels
                .entry(query.to_owned())
                .or_default()
                .insert(doc.to_owned(), u32::try_from(score)?);
        }
    }
    Ok(qrels)
}

/// Reads a dataset directory.
pub fn read(dir: &Path) -> anyhow::Result<Dataset> {
    let corpus: Vec<CorpusDoc> = read_jsonl(&dir.join("corpus.jsonl"))?;
    let queries: Vec<Query> = read_jsonl(&dir.join("queries.jsonl"))?;
    let qrels = read_qrels(&dir.join("qrels/test.tsv"))?;
    let known: std::collections::HashSet<&str> = corpus.iter().map(|d| d.id.as_str()).collect();
    ensure!(known.len() == corpus.len(), "corpus.jsonl repeats an _id");
    for (q, docs) in &qrels {
        for d in docs.keys() {
            ensure!(
                known.contains(d.as_str()),
                "qrels/test.tsv: query {q} names document {d}, which is not in corpus.jsonl"
            );
        }
    }
    let queries = queries
        .into_iter()
        .filter(|q| qrels.contains_key(&q.id))
        .collect();
    Ok(Dataset {
        corpus,
        queries,
        qrels,
    })
}

/// Writes a dataset directory (files replaced whole).
pub fn write(
    dir: &Path,
    corpus: &[CorpusDoc],
    queries: &[Query],
    qrels: &[(String, String, u32)],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("qrels"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let lines = |path: &Path,
                 write: &dyn Fn(&mut dyn Write) -> std::io::Result<()>|
     -> anyhow::Result<()> {
        let mut out = Vec::new();
        write(&mut out)?;
        concierge_infra::atomic_file::write(path, &out)
            .with_context(|| format!("writing {}", path.display()))
    };
    lines(&dir.join("corpus.jsonl"), &|out| {
        for d in corpus {
            serde_json::to_writer(&mut *out, d)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    })?;
    lines(&dir.join("queries.jsonl"), &|out| {
        for q in queries {
            serde_json::to_writer(&mut *out, q)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    })?;
    lines(&dir.join("qrels/test.tsv"), &|out| {
        out.write_all(b"query-id\tcorpus-id\tscore\n")?;
        for (q, d, s) in qrels {
            writeln!(out, "{q}\t{d}\t{s}")?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_dataset_reads_back_with_only_judged_queries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let corpus = vec![
            CorpusDoc {
                id: "d1".into(),
                title: String::new(),
                text: "dog: a domestic animal".into(),
            },
            CorpusDoc {
                id: "d2".into(),
                title: "t".into(),
                text: "cat".into(),
            },
        ];
        let queries = vec![
            Query {
                id: "q1".into(),
                text: "the dog barked".into(),
            },
            Query {
                id: "q2".into(),
                text: "unjudged".into(),
            },
        ];
        write(
            dir.path(),
            &corpus,
            &queries,
            &[("q1".into(), "d1".into(), 1)],
        )
        .expect("write");
        let ds = read(dir.path()).expect("read");
        assert_eq!(ds.corpus, corpus);
        assert_eq!(ds.queries, queries[..1]);
        assert_eq!(ds.qrels["q1"]["d1"], 1);
    }

    #[test]
    fn qrels_naming_an_unknown_document_or_a_bad_line_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let corpus = vec![CorpusDoc {
            id: "d1".into(),
            title: String::new(),
            text: "x".into(),
        }];
        write(dir.path(), &corpus, &[], &[("q1".into(), "d9".into(), 1)]).expect("write");
        let err = read(dir.path()).expect_err("unknown doc");
        assert!(err.to_string().contains("document d9"), "{err}");
        std::fs::write(
            dir.path().join("qrels/test.tsv"),
            "query-id\tcorpus-id\tscore\nq1 d1 1\n",
        )
        .expect("write");
        let err = read(dir.path()).expect_err("spaces");
        assert!(err.to_string().contains("line 2"), "{err}");
        std::fs::write(dir.path().join("corpus.jsonl"), "{\"_id\": 1}\n").expect("write");
        let err = read(dir.path()).expect_err("bad json");
        assert!(
            format!("{err:#}").contains("corpus.jsonl line 1"),
            "{err:#}"
        );
    }
}
