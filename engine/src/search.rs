//! Hybrid search: embed the query, run the dense and keyword legs with the same filter, fuse
//! their document rankings (RRF or DBSF), then hydrate from the store, re-checking each
//! document's current state against the filter, with the best chunk and a highlighted snippet.

use std::collections::HashMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::chunk_store;
use crate::document::Document;
use crate::error::{Error, InvalidInput, Result};
use crate::filter::{DocAttrs, Filter};
use crate::fusion::{Fusion, LegRank, fuse};
use crate::keyword::Snippet;
use crate::shared::Shared;

/// Most results one search returns.
pub const MAX_K: usize = 100;
/// Longest accepted query, in bytes.
pub const MAX_QUERY_BYTES: usize = 4 * 1024;
const SNIPPET_CHARS: usize = 240;

/// Which legs a search uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Both legs, fused.
    #[default]
    Hybrid,
    /// Vector similarity only.
    Dense,
    /// BM25 only.
    Keyword,
}

/// A search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// What to look for.
    pub query: String,
    /// How many documents to return (1..=100, default 10).
    #[serde(default = "default_k")]
    pub k: usize,
    /// Which legs to use.
    #[serde(default)]
    pub mode: SearchMode,
    /// Constraints applied inside both legs.
    #[serde(default)]
    pub filter: Filter,
    /// How the legs are fused (hybrid only).
    #[serde(default)]
    pub fusion: Fusion,
    /// Wait (bounded) until the indexes include this change-log sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
    /// Candidate list size for the dense leg (default: the engine's `ef_search`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef: Option<usize>,
}

fn default_k() -> usize {
    10
}

impl SearchRequest {
    /// A hybrid search for `query` with defaults.
    pub fn new(query: impl Into<String>) -> Self {
        SearchRequest {
            query: query.into(),
            k: default_k(),
            mode: SearchMode::Hybrid,
            filter: Filter::default(),
            fusion: Fusion::default(),
            min_seq: None,
            ef: None,
        }
    }

    /// Sets `k`.
    pub fn k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: SearchMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the filter.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// Sets `min_seq`.
    pub fn min_seq(mut self, seq: u64) -> Self {
        self.min_seq = Some(seq);
        self
    }

    /// Checks the request; the filter's metadata terms (as `metadata_terms_of` makes them).
    pub fn validate(&self) -> Result<Vec<String>, InvalidInput> {
        if self.query.trim().is_empty() {
            return Err(InvalidInput::Search("query is empty".to_owned()));
        }
        if self.query.len() > MAX_QUERY_BYTES {
            return Err(InvalidInput::Search(format!(
                "query is {} bytes, the limit is {MAX_QUERY_BYTES}",
                self.query.len()
            )));
        }
        if self.k == 0 || self.k > MAX_K {
            return Err(InvalidInput::Search(format!(
                "k must be within 1..={MAX_K}, got {}",
                self.k
            )));
        }
        if let Some(ef) = self.ef
            && (ef == 0 || ef > 4096)
        {
            return Err(InvalidInput::Search(format!(
                "ef must be within 1..=4096, got {ef}"
            )));
        }
        self.fusion.validate().map_err(InvalidInput::Search)?;
        self.filter.metadata_terms()
    }
}

/// The chunk of a hit that matched best.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HitChunk {
    /// The chunk id shared by both indexes.
    pub id: u64,
    /// Its position in the document.
    pub ordinal: u32,
    /// A fragment with the query terms highlighted.
    pub snippet: Snippet,
}

/// One document found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The document as stored now.
    pub document: Document,
    /// Its best chunk.
    pub chunk: Option<HitChunk>,
    /// The fused score (or the single leg's score): orders this list, not an absolute measure.
    pub score: f32,
    /// Rank and cosine similarity in the dense leg, if it found the document.
    pub dense: Option<LegRank>,
    /// Rank and BM25 score in the keyword leg, if it found the document.
    pub keyword: Option<LegRank>,
}

/// A search's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    /// Best first, one per document.
    pub hits: Vec<SearchHit>,
    /// Legs that could not be used (index being rebuilt) and were skipped.
    pub degraded: Vec<String>,
    /// Time spent, in milliseconds.
    pub took_ms: f64,
}

pub(crate) fn search(shared: &Shared, req: &SearchRequest) -> Result<SearchResponse> {
    search_with_vector(shared, req, None).map(|(response, _)| response)
}

/// A search that embeds the query only when `query_vector` is `None`; returns the vector it
/// used (if the dense leg ran), for callers that compare it with other chunks.
pub(crate) fn search_with_vector(
    shared: &Shared,
    req: &SearchRequest,
    query_vector: Option<Vec<f32>>,
) -> Result<(SearchResponse, Option<Vec<f32>>)> {
    let started = Instant::now();
    let meta_terms = req.validate()?;
    let wants_dense = matches!(req.mode, SearchMode::Hybrid | SearchMode::Dense);
    let wants_keyword = matches!(req.mode, SearchMode::Hybrid | SearchMode::Keyword);
    // The legs are looked up afresh while waiting: a rebuild may swap an index in meanwhile.
    let legs = || {
        (
            wants_dense.then(|| shared.dense()).flatten(),
            wants_keyword.then(|| shared.keyword()).flatten(),
        )
    };
    if let Some(min_seq) = req.min_seq {
        // A sequence no write was given cannot come from a receipt: waiting for it would
        // only time out.
        let issued = shared.sequencer.issued();
        if min_seq > issued {
            return Err(InvalidInput::Search(format!(
                "min_seq {min_seq} is beyond the last write's sequence ({issued}): pass the seq of a receipt"
            ))
            .into());
        }
        let reached = || {
            let (d, k) = legs();
            d.is_none_or(|d| d.seq() >= min_seq) && k.is_none_or(|k| k.committed_seq() >= min_seq)
        };
        let timeout = shared.config.min_seq_timeout;
        if !shared.wait_progress(Instant::now() + timeout, &reached) {
            let (d, k) = legs();
            let at = d
                .map(|d| d.seq())
                .into_iter()
                .chain(k.map(|k| k.committed_seq()))
                .min()
                .unwrap_or(0);
            return Err(Error::NotYetIndexed {
                wanted: min_seq,
                reached: at,
                waited_ms: timeout.as_millis() as u64,
            });
        }
    }
    let (dense, keyword) = legs();
    let mut degraded = Vec::new();
    if wants_dense && dense.is_none() {
        degraded.push("dense".to_owned());
    }
    if wants_keyword && keyword.is_none() {
        degraded.push("keyword".to_owned());
    }

    let leg_k = (req.k * 3).clamp(30, 300);
    let mut dense_list: Vec<(String, f32)> = Vec::new();
    let mut chunk_of: HashMap<(bool, String), u64> = HashMap::new();
    let mut used_vector = None;
    if let Some(d) = &dense {
        let vector = match query_vector {
            Some(v) => v,
            None => embed_query(shared, &req.query)?,
        };
        let ef = req.ef.unwrap_or(d.params().ef_search);
        for hit in d.search(&vector, leg_k, ef, &req.filter, &meta_terms)? {
            chunk_of.insert((true, hit.doc_id.to_string()), hit.chunk_id);
            dense_list.push((hit.doc_id.to_string(), hit.score));
        }
        used_vector = Some(vector);
    }
    let mut keyword_list: Vec<(String, f32)> = Vec::new();
    if let Some(k) = &keyword {
        for hit in k.search(&req.query, leg_k * 3, &req.filter, &meta_terms)? {
            if keyword_list.len() >= leg_k {
                break;
            }
            if chunk_of.contains_key(&(false, hit.doc_id.clone())) {
                continue; // a better chunk of this document came first
            }
            chunk_of.insert((false, hit.doc_id.clone()), hit.chunk_id);
            keyword_list.push((hit.doc_id, hit.score));
        }
    }

    let fused = fuse(&req.fusion, &dense_list, &keyword_list);
    let single_leg = dense_list.is_empty() || keyword_list.is_empty();
    let mut hits = Vec::with_capacity(req.k);
    for window in fused.chunks(req.k.max(8)) {
        let stored = shared
            .store
            .get_docs(window.iter().map(|f| f.key.as_str()))?;
        for (f, stored) in window.iter().zip(stored) {
            // The document may have changed or gone since it was indexed: check it again.
            let Some(stored) = stored.filter(|s| !s.deleted) else {
                continue;
            };
            if !req.filter.matches(&DocAttrs::of(&stored.doc), &meta_terms) {
                continue;
            }
            let from_keyword = match (f.dense, f.keyword) {
                (Some(d), Some(k)) => k.rank < d.rank,
                (None, Some(_)) => true,
                (Some(_) | None, None) => false,
            };
            let chunk_id = chunk_of
                .get(&(from_keyword, f.key.clone()))
                .or_else(|| chunk_of.get(&(!from_keyword, f.key.clone())));
            let chunk = match chunk_id {
                Some(id) => hit_chunk(shared, keyword.as_deref(), *id, &req.query)?,
                None => None,
            };
            let score = if single_leg {
                f.dense.or(f.keyword).map_or(f.score, |l| l.score)
            } else {
                f.score
            };
            hits.push(SearchHit {
                document: stored.doc,
                chunk,
                score,
                dense: f.dense,
                keyword: f.keyword,
            });
            if hits.len() >= req.k {
                break;
            }
        }
        if hits.len() >= req.k {
            break;
        }
    }
    Ok((
        SearchResponse {
            hits,
            degraded,
            took_ms: started.elapsed().as_secs_f64() * 1e3,
        },
        used_vector,
    ))
}

/// The query's vector, from the query embedder (its own pool).
pub(crate) fn embed_query(shared: &Shared, query: &str) -> Result<Vec<f32>> {
    shared
        .query_embedder
        .embed(&[query])?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Dense("the embedder returned no vector".to_owned()))
}

fn hit_chunk(
    shared: &Shared,
    keyword: Option<&crate::keyword::KeywordIndex>,
    chunk_id: u64,
    query: &str,
) -> Result<Option<HitChunk>> {
    let Some(record) = chunk_store::chunk_text(&shared.store, chunk_id)? else {
        return Ok(None);
    };
    let snippet = match keyword {
        Some(k) => k.snippet(query, &record.text, SNIPPET_CHARS)?,
        None => {
            let end = record
                .text
                .char_indices()
                .nth(SNIPPET_CHARS)
                .map_or(record.text.len(), |(i, _)| i);
            Snippet {
                text: record.text[..end].to_owned(),
                highlighted: Vec::new(),
            }
        }
    };
    Ok(Some(HitChunk {
        id: chunk_id,
        ordinal: record.ordinal,
        snippet,
    }))
}
