//! Sparse BM25 vectors for Qdrant's keyword leg, made with the keyword index's own analyzer
//! (tantivy's `en_stem`: simple tokenizer, long tokens dropped, lower case, English stemming),
//! so both backends see the same terms.
//!
//! - Term id: FNV-1a (32 bit) of the term's UTF-8 bytes: stable across versions, processes and
//!   machines, no vocabulary to ship. Two terms sharing an id (rare in 2^32) add their weights.
//! - Two fields, as the keyword index has them: the chunk's text, and its document's title. A
//!   title term gets its own id (the hash of `title` + U+0001 + the term), so Qdrant counts its
//!   IDF over titles and the two fields add up as tantivy's per-field BM25 scores do.
//! - Document side, per field: BM25's term-frequency part,
//!   `w(t) = tf·(k1 + 1) / (tf + k1·(1 − b + b·dl/avgdl))` with `k1` = 1.2, `b` = 0.75 (tantivy's
//!   and Lucene's) and `avgdl` the field's mean length in the keyword index when the chunk is
//!   synced ([`Averages`]; Qdrant sees one chunk at a time, never the corpus, so the mean comes
//!   from the primary's own index; [`Averages::default`] before it has any chunk). A weight is
//!   fixed when its point is written, so points written while the corpus was small keep that
//!   day's mean; the difference fades as the corpus grows.
//! - The IDF factor is Qdrant's (`modifier: idf` on the collection's sparse vector), computed over
//!   the points it holds.
//! - Query side: each distinct query term with weight 1 under both its text id and its title id (a
//!   repeated term counts once, as tantivy's query parser reads it), so the score is
//!   `Σ idf(t)·w(t)` over the query's terms and both fields: BM25 as the keyword leg computes it.

use std::collections::BTreeMap;

use serde::Serialize;
use tantivy::tokenizer::{TextAnalyzer, TokenizerManager};

/// BM25's term-frequency saturation.
pub const K1: f32 = 1.2;
/// BM25's length normalisation.
pub const B: f32 = 0.75;
/// The mean number of analyzed terms per chunk's text assumed before the index has any.
pub const AVG_CHUNK_TERMS: f32 = 150.0;
/// The mean number of analyzed terms per title assumed before the index has any.
pub const AVG_TITLE_TERMS: f32 = 6.0;

/// The fields' mean lengths the length normalisation uses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Averages {
    pub text: f32,
    pub title: f32,
}

impl Default for Averages {
    fn default() -> Self {
        Averages {
            text: AVG_CHUNK_TERMS,
            title: AVG_TITLE_TERMS,
        }
    }
}
/// What a title term's id is hashed with, before the term.
const TITLE_FIELD: &str = "title\u{1}";

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

/// The id of a term in the title field.
pub fn title_term_id(term: &str) -> u32 {
    term_id(&format!("{TITLE_FIELD}{term}"))
}

/// Adds one field's BM25 term weights to `out`.
fn add_field(out: &mut BTreeMap<u32, f32>, terms: &[String], avgdl: f32, id: fn(&str) -> u32) {
    let mut tf: BTreeMap<u32, f32> = BTreeMap::new();
    for t in terms {
        *tf.entry(id(t)).or_insert(0.0) += 1.0;
    }
    let norm = K1 * (1.0 - B + B * terms.len() as f32 / avgdl);
    for (id, f) in tf {
        *out.entry(id).or_insert(0.0) += f * (K1 + 1.0) / (f + norm);
    }
}

/// The document-side vector of a chunk: its text's terms and its title's, as two fields.
pub fn document_vector(title: &str, text: &str, averages: Averages) -> SparseVector {
    let mut weights: BTreeMap<u32, f32> = BTreeMap::new();
    // An empty field never divides: its mean is at least one term.
    add_field(&mut weights, &terms(text), averages.text.max(1.0), term_id);
    add_field(
        &mut weights,
        &terms(title),
        averages.title.max(1.0),
        title_term_id,
    );
    let (indices, values) = weights.into_iter().unzip();
    SparseVector { indices, values }
}

/// The query-side vector: every distinct term once in each field.
pub fn query_vector(query: &str) -> SparseVector {
    let ids: std::collections::BTreeSet<u32> = terms(query)
        .iter()
        .flat_map(|t| [term_id(t), title_term_id(t)])
        .collect();
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
        let once = document_vector("", "heater", Averages::default());
        let twice = document_vector("", "heater heater", Averages::default());
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
        assert!(w(&document_vector("", &long, Averages::default())) < w(&once));
    }

    #[test]
    fn indices_ascend_and_the_query_counts_each_term_once() {
        let v = document_vector(
            "Pool heater",
            "The pool heater broke; pool closed.",
            Averages::default(),
        );
        assert!(v.indices.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(v.indices.len(), v.values.len());
        let q = query_vector("pool pool heater");
        assert_eq!(
            q.indices.len(),
            4,
            "two terms, each in the text and the title field"
        );
        assert!(q.indices.contains(&title_term_id("pool")));
        assert!(q.values.iter().all(|v| *v == 1.0));
    }

    #[test]
    fn a_title_term_is_its_own_field_with_its_own_length_normalisation() {
        let v = document_vector("Pool heater", "The heater broke.", Averages::default());
        let w = |id: u32| v.values[v.indices.iter().position(|i| *i == id).unwrap_or(0)];
        assert!(v.indices.contains(&title_term_id("pool")));
        assert!(
            !v.indices.contains(&term_id("pool")),
            "pool is only in the title"
        );
        // "heater" is in both fields: two entries, each normalised by its own field's length.
        let bm25 = |dl: f32, avgdl: f32| (K1 + 1.0) / (1.0 + K1 * (1.0 - B + B * dl / avgdl));
        assert!((w(title_term_id("heater")) - bm25(2.0, AVG_TITLE_TERMS)).abs() < 1e-6);
        assert!((w(term_id("heater")) - bm25(3.0, AVG_CHUNK_TERMS)).abs() < 1e-6);
    }
}
