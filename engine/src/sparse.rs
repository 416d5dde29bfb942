//! Sparse BM25 vectors for Qdrant's keyword leg, made with the keyword index's own analyzer
//! (tantivy's `en_stem`: simple tokenizer, long tokens dropped, lower case, English stemming),
//! so both backends see the same terms.
//!
//! - Term id: FNV-1a (32 bit) of the term's UTF-8 bytes: stable across versions, processes and
//!   machines, no vocabulary to ship. Two terms sharing an id (rare in 2^32) add their weights.
//! - Document side (a chunk, its title first): BM25's term-frequency part,
//!   `w(t) = tf·(k1 + 1) / (tf + k1·(1 − b + b·dl/avgdl))` with `k1` = 1.2, `b` = 0.75 (tantivy's
//!   and Lucene's) and `avgdl` = [`AVG_CHUNK_TERMS`] (a constant: Qdrant sees one chunk at a time,
//!   never the corpus, so the length normalisation needs a fixed mean; ours is measured on chunks
//!   of the default 256-token window).
//! - The IDF factor is Qdrant's (`modifier: idf` on the collection's sparse vector), computed over
//!   the points it holds.
//! - Query side: each distinct query term with weight 1 (a repeated term counts once, as tantivy's
//!   query parser reads it), so the score is `Σ idf(t)·w(t)` over the query's terms: BM25.

use std::collections::BTreeMap;

use serde::Serialize;
use tantivy::tokenizer::{TextAnalyzer, TokenizerManager};

/// BM25's term-frequency saturation.
pub const K1: f32 = 1.2;
/// BM25's length normalisation.
pub const B: f32 = 0.75;
/// The mean number of analyzed terms per chunk the length normalisation assumes.
pub const AVG_CHUNK_TERMS: f32 = 150.0;

/// A sparse vector as Qdrant takes it: ascending `indices`, one value each.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SparseVector {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseVector {
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// The stable id of a term.
pub fn term_id(term: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in term.as_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

fn analyzer() -> TextAnalyzer {
    static ANALYZER: std::sync::OnceLock<TextAnalyzer> = std::sync::OnceLock::new();
    ANALYZER
        .get_or_init(|| {
            // `en_stem` is registered by tantivy itself; the keyword index uses the same name.
            TokenizerManager::default()
                .get(crate::keyword::TOKENIZER)
                .unwrap_or_else(|| {
                    TextAnalyzer::from(tantivy::tokenizer::SimpleTokenizer::default())
                })
        })
        .clone()
}

/// The analyzed terms of `text`, as the keyword index sees them.
pub fn terms(text: &str) -> Vec<String> {
    let mut analyzer = analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

/// The document-side vector of a chunk (title, then text).
pub fn document_vector(title: &str, text: &str) -> SparseVector {
    let mut all = terms(title);
    all.extend(terms(text));
    let length = all.len() as f32;
    let mut tf: BTreeMap<u32, f32> = BTreeMap::new();
    for t in &all {
        *tf.entry(term_id(t)).or_insert(0.0) += 1.0;
    }
    let norm = K1 * (1.0 - B + B * length / AVG_CHUNK_TERMS);
    let (indices, values) = tf
        .into_iter()
        .map(|(id, f)| (id, f * (K1 + 1.0) / (f + norm)))
        .unzip();
    SparseVector { indices, values }
}

/// The query-side vector: every distinct term once.
pub fn query_vector(query: &str) -> SparseVector {
    let ids: std::collections::BTreeSet<u32> = terms(query).iter().map(|t| term_id(t)).collect();
    SparseVector {
        values: vec![1.0; ids.len()],
        indices: ids.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn term_ids_are_fnv1a_and_stable() {
        // FNV-1a 32 reference values.
        assert_eq!(term_id(""), 0x811c_9dc5);
        assert_eq!(term_id("a"), 0xe40c_292c);
        assert_eq!(term_id("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn terms_are_stemmed_and_lower_cased_as_the_keyword_index_does() {
        assert_eq!(
            terms("Guests CHECKING-in late"),
            ["guest", "check", "in", "late"]
        );
    }

    #[test]
    fn a_repeated_term_saturates_and_a_longer_chunk_weighs_each_term_less() {
        let once = document_vector("", "heater");
        let twice = document_vector("", "heater heater");
        let w = |v: &SparseVector| {
            v.values[v
                .indices
                .iter()
                .position(|i| *i == term_id("heater"))
                .unwrap_or(0)]
        };
        assert!(w(&twice) > w(&once));
        assert!(w(&twice) < 2.0 * w(&once));
        assert!(w(&twice) < K1 + 1.0);
        let long = format!("heater {}", "word ".repeat(300));
        assert!(w(&document_vector("", &long)) < w(&once));
    }

    #[test]
    fn indices_ascend_and_the_query_counts_each_term_once() {
        let v = document_vector("Pool heater", "The pool heater broke; pool closed.");
        assert!(v.indices.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(v.indices.len(), v.values.len());
        let q = query_vector("pool pool heater");
        assert_eq!(q.indices.len(), 2);
        assert!(q.values.iter().all(|v| *v == 1.0));
    }
}
