//! `concierge-bench prepare-wordnet`: the benchmark datasets built from WordNet 3.0 (Debian's
//! `wordnet-base`, unpacked by `bench/data/prepare.sh`).
//!
//! Every synset is a document `"lemma, lemma: definition"` (id: part of speech + offset, e.g.
//! `n02084071`); every quoted usage example of a gloss is a query whose one relevant document is
//! the synset it illustrates. Both lists are put in a fixed pseudo-random order (by hash of the
//! id), so the first rows are a uniform sample. Written: the BEIR layout for `retrieval`
//! (`corpus.jsonl`, `queries.jsonl`, `qrels/test.tsv`), and for `ann` the MiniLM vectors of the
//! first `--base` documents (`base.npy`) and of the first `--queries` queries (`queries.npy`),
//! embedded by our own embedder and cached.

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use concierge_models::{BertEmbedder, EmbedderConfig};
use sha2::{Digest, Sha256};

use crate::beir::{self, CorpusDoc, Query};
use crate::corpus_vectors::vectors;

/// Arguments of `concierge-bench prepare-wordnet`.
#[derive(Debug, clap::Args)]
pub struct PrepareArgs {
    /// The WordNet dictionary directory (holding `data.noun`, `data.verb`, `data.adj`, `data.adv`).
    #[arg(long, default_value = "bench/data/wordnet-base/usr/share/wordnet")]
    pub dict: PathBuf,
    /// Where the datasets go.
    #[arg(long, default_value = "bench/data/wordnet")]
    pub out: PathBuf,
    /// Documents whose vectors form `base.npy`.
    #[arg(long, default_value_t = 100_000)]
    pub base: usize,
    /// Queries whose vectors form `queries.npy`.
    #[arg(long, default_value_t = 1_000)]
    pub queries: usize,
    /// The model directory.
    #[arg(long, default_value = "models/weights/all-MiniLM-L6-v2")]
    pub model_dir: PathBuf,
    /// Threads for embedding.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Where vectors are cached.
    #[arg(long, default_value = "bench/data/cache")]
    pub cache: PathBuf,
    /// Only the BEIR files (corpus, queries, qrels), no vectors: what the benchmarks that
    /// ingest through a running daemon need (it embeds for itself).
    #[arg(long)]
    pub beir_only: bool,
}

/// One synset: its document and its usage examples.
#[derive(Debug, Clone, PartialEq)]
pub struct Synset {
    pub id: String,
    pub text: String,
    pub examples: Vec<String>,
}

/// Parses one line of a WordNet `data.*` file (`None` for the licence header lines).
pub fn parse_line(pos: char, line: &str) -> anyhow::Result<Option<Synset>> {
    if line.starts_with("  ") || line.trim().is_empty() {
        return Ok(None);
    }
    let (head, gloss) = line
        .split_once(" | ")
        .with_context(|| format!("no gloss in {:?}", truncate(line)))?;
    let fields: Vec<&str> = head.split_whitespace().collect();
    ensure!(fields.len() >= 6, "too few fields in {:?}", truncate(line));
    let offset = fields[0];
    let count = usize::from_str_radix(fields[3], 16)
        .with_context(|| format!("word count {:?} in {:?}", fields[3], truncate(line)))?;
    ensure!(
        count > 0 && fields.len() >= 4 + 2 * count,
        "word count {count} does not fit {:?}",
        truncate(line)
    );
    let lemmas: Vec<String> = (0..count)
        .map(|i| {
            let word = fields[4 + 2 * i];
            // Adjectives may carry a syntactic marker: `(a)`, `(p)`, `(ip)`.
            let word = word
                .strip_suffix("(a)")
                .or_else(|| word.strip_suffix("(p)"))
                .or_else(|| word.strip_suffix("(ip)"))
                .unwrap_or(word);
            word.replace('_', " ")
        })
        .collect();
    let gloss = gloss.trim();
    let (definition, rest) = gloss.split_once('"').unwrap_or((gloss, ""));
    let definition = definition.trim().trim_end_matches(';').trim();
    let mut examples = Vec::new();
    let mut rest = rest;
    // `rest` starts inside the first quoted example.
    while let Some((example, after)) = rest.split_once('"') {
        let example = example.trim();
        if example.split_whitespace().count() >= 2 {
            examples.push(example.to_owned());
        }
        rest = after.split_once('"').map_or("", |(_, next)| next);
    }
    Ok(Some(Synset {
        id: format!("{pos}{offset}"),
        text: format!("{}: {definition}", lemmas.join(", ")),
        examples,
    }))
}

fn truncate(line: &str) -> &str {
    let end = line.char_indices().nth(80).map_or(line.len(), |(i, _)| i);
    &line[..end]
}

/// Every synset of the dictionary directory.
pub fn synsets(dict: &Path) -> anyhow::Result<Vec<Synset>> {
    let mut out = Vec::new();
    for (pos, file) in [
        ('n', "data.noun"),
        ('v', "data.verb"),
        ('a', "data.adj"),
        ('r', "data.adv"),
    ] {
        let path = dict.join(file);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (run bench/data/prepare.sh to unpack WordNet)",
                path.display()
            )
        })?;
        for (n, line) in text.lines().enumerate() {
            if let Some(s) = parse_line(pos, line)
                .with_context(|| format!("{} line {}", path.display(), n + 1))?
            {
                out.push(s);
            }
        }
    }
    Ok(out)
}

fn order_key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The BEIR dataset: documents and queries in hash order.
pub fn dataset(synsets: &[Synset]) -> (Vec<CorpusDoc>, Vec<Query>, Vec<beir::Qrel>) {
    let mut corpus: Vec<CorpusDoc> = synsets
        .iter()
        .map(|s| CorpusDoc {
            id: s.id.clone(),
            title: String::new(),
            text: s.text.clone(),
        })
        .collect();
    corpus.sort_by_cached_key(|d| order_key(&d.id));
    let mut queries: Vec<(Query, String)> = synsets
        .iter()
        .flat_map(|s| {
            s.examples.iter().enumerate().map(|(i, e)| {
                (
                    Query {
                        id: format!("{}-{}", s.id, i + 1),
                        text: e.clone(),
                    },
                    s.id.clone(),
                )
            })
        })
        .collect();
    queries.sort_by_cached_key(|(q, _)| order_key(&q.id));
    let qrels = queries
        .iter()
        .map(|(q, d)| (q.id.clone(), d.clone(), 1))
        .collect();
    (corpus, queries.into_iter().map(|(q, _)| q).collect(), qrels)
}

pub fn run(args: &PrepareArgs) -> anyhow::Result<()> {
    let synsets = synsets(&args.dict)?;
    let (corpus, queries, qrels) = dataset(&synsets);
    eprintln!(
        "wordnet: {} synsets, {} usage examples as queries",
        corpus.len(),
        queries.len()
    );
    ensure!(
        corpus.len() >= args.base && queries.len() >= args.queries,
        "WordNet has {} documents and {} queries, fewer than --base {} / --queries {}",
        corpus.len(),
        queries.len(),
        args.base,
        args.queries
    );
    beir::write(&args.out, &corpus, &queries, &qrels)?;
    eprintln!(
        "wrote {}/{{corpus.jsonl,queries.jsonl,qrels/test.tsv}}",
        args.out.display()
    );
    if args.beir_only {
        return Ok(());
    }

    let embedder = BertEmbedder::load(
        &args.model_dir,
        &EmbedderConfig {
            threads: args.threads,
            ..EmbedderConfig::default()
        },
    )?;
    // The whole corpus is embedded (and cached) at once: `retrieval` ingests it from the cache.
    let texts: Vec<String> = corpus.iter().map(|d| d.text.clone()).collect();
    let all = vectors(&args.cache, &texts, &embedder)?;
    crate::vectors_file::write(&args.out.join("base.npy"), &all[..args.base])?;
    let query_texts: Vec<String> = queries[..args.queries]
        .iter()
        .map(|q| q.text.clone())
        .collect();
    let query_vectors = vectors(&args.cache, &query_texts, &embedder)?;
    crate::vectors_file::write(&args.out.join("queries.npy"), &query_vectors)?;
    eprintln!(
        "wrote {0}/base.npy ({1} vectors) and {0}/queries.npy ({2} vectors)",
        args.out.display(),
        args.base,
        args.queries
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_synset_line_gives_lemmas_definition_and_examples() {
        let line = "02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 023 @ 02083346 n 0000 | a member of the genus Canis; \"the dog barked all night\"; \"a dog's life\"  ";
        let s = parse_line('n', line).expect("parse").expect("synset");
        assert_eq!(s.id, "n02084071");
        assert_eq!(
            s.text,
            "dog, domestic dog, Canis familiaris: a member of the genus Canis"
        );
        assert_eq!(s.examples, ["the dog barked all night", "a dog's life"]);
    }

    #[test]
    fn adjective_markers_are_dropped_and_glosses_without_examples_have_none() {
        let line = "00001740 00 a 01 able(a) 0 005 = 05207437 n 0000 | (usually followed by `to') having the necessary means  ";
        let s = parse_line('a', line).expect("parse").expect("synset");
        assert_eq!(
            s.text,
            "able: (usually followed by `to') having the necessary means"
        );
        assert!(s.examples.is_empty());
    }

    #[test]
    fn licence_lines_are_skipped_and_a_broken_line_is_an_error() {
        assert_eq!(
            parse_line('n', "  1 This software and database").expect("ok"),
            None
        );
        assert!(parse_line('n', "00001740 03 n zz entity 0 | x").is_err());
        assert!(parse_line('n', "00001740 03 n 01 entity 0 000").is_err());
    }

    #[test]
    fn every_query_is_judged_against_the_synset_it_illustrates() {
        let synsets = vec![
            Synset {
                id: "n1".into(),
                text: "a: x".into(),
                examples: vec!["one two".into(), "three four".into()],
            },
            Synset {
                id: "v2".into(),
                text: "b: y".into(),
                examples: vec![],
            },
        ];
        let (corpus, queries, qrels) = dataset(&synsets);
        assert_eq!(corpus.len(), 2);
        assert_eq!(queries.len(), 2);
        for (q, d, s) in &qrels {
            assert!(q.starts_with("n1-"));
            assert_eq!((d.as_str(), *s), ("n1", 1));
        }
        assert_eq!(dataset(&synsets).1, queries, "the order is fixed");
    }
}
