//! Searching through Qdrant (`search.backend = "qdrant"`): the same request and response as the
//! embedded indexes (`concierge_engine::SearchRequest` / `SearchResponse`), answered by one
//! call of Qdrant's Query API per search:
//!
//! - `hybrid`: a prefetch per leg (`dense`: the query's vector; `bm25`: its sparse vector, made
//!   with the keyword index's analyzer), fused by the server — RRF with `[search] rrf_k` and the
//!   leg weights, or DBSF — and grouped by document (`group_by: document_id`, one hit each);
//!   `dense` and `keyword` query that leg alone, grouped the same way;
//! - the filter in every prefetch and at the top (source, kind, metadata terms, `updated_at`
//!   range), the same terms the sync writes into each point's payload;
//! - hits hydrated from the documents' own points (the whole document), with the best chunk's
//!   ordinal and text; a hybrid hit carries the fused score only (Qdrant fuses, so neither leg's
//!   rank is known), a one-leg hit that leg's rank and score;
//! - `min_seq`: waits (bounded, as the engine does) until the watermark the Qdrant consumer
//!   stores in Qdrant reaches it.
//!
//! [`QdrantSearch::retrieve`] gives `/v1/ask` its passages the same way, with each chunk's dense
//! similarity to the question computed from the vector Qdrant returns.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use concierge_engine::{
    Document, Error as EngineError, Filter, FusionMethod, HitChunk, LegRank, Retrieved, SearchHit,
    SearchMode, SearchRequest, SearchResponse, Snippet, sparse,
};
use concierge_models::Embedder;
use serde_json::{Value, json};

use super::client::{self, QdrantClient, QdrantError};
use super::{DOCUMENT_POINT, WATERMARK};

/// Characters of a hit's snippet.
const SNIPPET_CHARS: usize = 240;

/// Why a search through Qdrant failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// Bad input, or `min_seq` not reached in time: the engine's own errors, mapped as usual.
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Qdrant(#[from] QdrantError),
}

/// The search side of a node whose `search.backend` is `qdrant`.
pub struct QdrantSearch {
    client: QdrantClient,
    embedder: Arc<dyn Embedder>,
    min_seq_timeout: Duration,
}

impl std::fmt::Debug for QdrantSearch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QdrantSearch")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// One grouped hit as Qdrant returns it.
struct Point {
    document_id: String,
    score: f32,
    payload: Value,
    dense: Option<Vec<f32>>,
}

impl QdrantSearch {
    pub fn new(
        client: QdrantClient,
        embedder: Arc<dyn Embedder>,
        min_seq_timeout: Duration,
    ) -> Self {
        QdrantSearch {
            client,
            embedder,
            min_seq_timeout,
        }
    }

    /// The highest change-log sequence Qdrant holds (0 before the first batch).
    pub fn watermark(&self) -> Result<u64, QdrantError> {
        let points = self.client.retrieve(&[client::point_id(WATERMARK)])?;
        Ok(points
            .first()
            .and_then(|p| p["payload"]["seq"].as_u64())
            .unwrap_or(0))
    }

    fn wait_for(&self, min_seq: Option<u64>) -> Result<(), SearchError> {
        let Some(wanted) = min_seq else {
            return Ok(());
        };
        let started = Instant::now();
        loop {
            let reached = self.watermark()?;
            if reached >= wanted {
                return Ok(());
            }
            if started.elapsed() >= self.min_seq_timeout {
                return Err(EngineError::NotYetIndexed {
                    wanted,
                    reached,
                    waited_ms: started.elapsed().as_millis() as u64,
                }
                .into());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn embed(&self, text: &str) -> Result<Vec<f32>, SearchError> {
        self.embedder
            .embed(&[text])
            .map_err(|e| EngineError::Dense(format!("embedding the query: {e}")))?
            .into_iter()
            .next()
            .ok_or_else(|| EngineError::Dense("the embedder returned no vector".to_owned()).into())
    }

    /// One grouped query: the best point of each of the top `req.k` documents.
    fn query(
        &self,
        req: &SearchRequest,
        vector: Option<&[f32]>,
        meta_terms: &[String],
    ) -> Result<Vec<Point>, SearchError> {
        let filter = qdrant_filter(&req.filter, meta_terms);
        let sparse = sparse::query_vector(&req.query);
        let leg_k = (req.k * 3).clamp(30, 300);
        let dense_leg = vector
            .map(|v| json!({"query": v, "using": client::DENSE, "limit": leg_k, "filter": filter}));
        let sparse_leg = (!sparse.is_empty()).then(|| {
            json!({"query": {"indices": sparse.indices, "values": sparse.values}, "using": client::SPARSE, "limit": leg_k, "filter": filter})
        });
        let mut body = match (req.mode, dense_leg, sparse_leg) {
            (SearchMode::Hybrid, Some(d), Some(s)) => {
                let fusion = match req.fusion.method {
                    FusionMethod::Rrf => json!({"rrf": {
                        "k": req.fusion.k.round().max(1.0) as u64,
                        "weights": [req.fusion.dense_weight, req.fusion.keyword_weight],
                    }}),
                    FusionMethod::Dbsf => json!({"fusion": "dbsf"}),
                };
                json!({"prefetch": [d, s], "query": fusion})
            }
            // One leg only (or a query without any keyword term): that leg directly.
            (SearchMode::Hybrid | SearchMode::Dense, Some(d), _) => d,
            (SearchMode::Keyword, _, Some(s)) => s,
            _ => return Ok(Vec::new()),
        };
        body["filter"] = filter;
        body["group_by"] = json!("document_id");
        body["group_size"] = json!(1);
        body["limit"] = json!(req.k);
        body["with_payload"] = json!(true);
        body["with_vector"] = json!([client::DENSE]);
        let result = self.client.call(
            "POST",
            &format!(
                "/collections/{}/points/query/groups",
                self.client.collection()
            ),
            Some(&body),
        )?;
        Ok(result["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| {
                let hit = g["hits"].as_array()?.first()?;
                Some(Point {
                    document_id: g["id"].as_str()?.to_owned(),
                    score: hit["score"].as_f64().unwrap_or(0.0) as f32,
                    payload: hit["payload"].clone(),
                    dense: hit["vector"][client::DENSE]
                        .as_array()
                        .map(|v| v.iter().map(|x| x.as_f64().unwrap_or(0.0) as f32).collect()),
                })
            })
            .collect())
    }

    /// The documents of `ids` from their document points.
    fn documents(&self, ids: &[&str]) -> Result<HashMap<String, Document>, SearchError> {
        let point_ids: Vec<String> = ids
            .iter()
            .map(|id| client::point_id(&format!("{DOCUMENT_POINT}{id}")))
            .collect();
        let mut out = HashMap::new();
        for p in self.client.retrieve(&point_ids)? {
            if let Ok(doc) =
                serde_json::from_value::<Document>(p["payload"]["concierge_document"].clone())
            {
                out.insert(doc.id.clone(), doc);
            }
        }
        Ok(out)
    }

    /// One document, from its document point (a replica's `GET /v1/documents/{id}`).
    pub fn document(&self, id: &str) -> Result<Option<Document>, SearchError> {
        Ok(self.documents(&[id])?.remove(id))
    }

    /// A search, as `POST /v1/search` takes it.
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResponse, SearchError> {
        let started = Instant::now();
        let meta_terms = req.validate().map_err(EngineError::from)?;
        self.wait_for(req.min_seq)?;
        let vector = match req.mode {
            SearchMode::Hybrid | SearchMode::Dense => Some(self.embed(&req.query)?),
            SearchMode::Keyword => None,
        };
        let points = self.query(req, vector.as_deref(), &meta_terms)?;
        let ids: Vec<&str> = points.iter().map(|p| p.document_id.as_str()).collect();
        let documents = self.documents(&ids)?;
        let hits = points
            .into_iter()
            .enumerate()
            .filter_map(|(i, p)| {
                // A document deleted between the two calls has no document point any more.
                let document = documents.get(&p.document_id)?.clone();
                let leg = Some(LegRank {
                    rank: i + 1,
                    score: p.score,
                });
                let (dense, keyword) = match req.mode {
                    SearchMode::Hybrid => (None, None),
                    SearchMode::Dense => (leg, None),
                    SearchMode::Keyword => (None, leg),
                };
                Some(SearchHit {
                    document,
                    chunk: hit_chunk(&p.payload),
                    score: p.score,
                    dense,
                    keyword,
                })
            })
            .collect();
        Ok(SearchResponse {
            hits,
            degraded: Vec::new(),
            took_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// The passages for a question (`/v1/ask`): hybrid, each with its chunk's dense similarity.
    pub fn retrieve(&self, req: &SearchRequest) -> Result<Vec<Retrieved>, SearchError> {
        let meta_terms = req.validate().map_err(EngineError::from)?;
        self.wait_for(req.min_seq)?;
        let question = self.embed(&req.query)?;
        let points = self.query(req, Some(&question), &meta_terms)?;
        let ids: Vec<&str> = points.iter().map(|p| p.document_id.as_str()).collect();
        let documents = self.documents(&ids)?;
        Ok(points
            .into_iter()
            .filter_map(|p| {
                let document = documents.get(&p.document_id)?.clone();
                let text = p.payload["text"].as_str()?.to_owned();
                let similarity = p.dense.as_deref().map_or(f32::MIN, |v| {
                    v.iter().zip(&question).map(|(a, b)| a * b).sum()
                });
                Some(Retrieved {
                    document,
                    snippet: snippet(&text),
                    text,
                    similarity,
                })
            })
            .collect())
    }
}

/// The Qdrant filter of a search filter over the payload the sync writes.
pub fn qdrant_filter(filter: &Filter, meta_terms: &[String]) -> Value {
    let mut must = Vec::new();
    if !filter.source.is_empty() {
        must.push(json!({"key": "source", "match": {"any": filter.source}}));
    }
    if !filter.kind.is_empty() {
        must.push(json!({"key": "kind", "match": {"any": filter.kind}}));
    }
    for term in meta_terms {
        must.push(json!({"key": "meta_terms", "match": {"value": term}}));
    }
    if let Some(range) = &filter.updated_at {
        let mut r = serde_json::Map::new();
        if let Some(gte) = range.gte {
            r.insert("gte".into(), json!(gte));
        }
        if let Some(lt) = range.lt {
            r.insert("lt".into(), json!(lt));
        }
        must.push(json!({"key": "updated_at", "range": r}));
    }
    json!({"must": must})
}

fn snippet(text: &str) -> Snippet {
    let end = text
        .char_indices()
        .nth(SNIPPET_CHARS)
        .map_or(text.len(), |(i, _)| i);
    Snippet {
        text: text[..end].to_owned(),
        highlighted: Vec::new(),
    }
}

fn hit_chunk(payload: &Value) -> Option<HitChunk> {
    Some(HitChunk {
        id: payload["chunk_id"].as_str()?.parse().ok()?,
        ordinal: u32::try_from(payload["ordinal"].as_u64()?).ok()?,
        snippet: snippet(payload["text"].as_str()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use concierge_engine::TimeRange;

    #[test]
    fn a_search_filter_becomes_the_same_conditions_on_the_synced_payload() {
        let filter: Filter = serde_json::from_value(json!({
            "source": "aircall", "kind": ["call", "voicemail"],
            "metadata": {"unit": 12}, "updated_at": {"gte": 10, "lt": 20}
        }))
        .expect("filter");
        let terms =
            concierge_engine::metadata_terms_of(json!({"unit": 12}).as_object().expect("object"));
        let f = qdrant_filter(&filter, &terms);
        let must = f["must"].as_array().cloned().unwrap_or_default();
        assert_eq!(
            must[0],
            json!({"key": "source", "match": {"any": ["aircall"]}})
        );
        assert_eq!(
            must[1],
            json!({"key": "kind", "match": {"any": ["call", "voicemail"]}})
        );
        assert_eq!(
            must[2],
            json!({"key": "meta_terms", "match": {"value": "unit\u{1}12"}})
        );
        assert_eq!(
            must[3],
            json!({"key": "updated_at", "range": {"gte": 10, "lt": 20}})
        );
        let only_lt = Filter {
            updated_at: Some(TimeRange {
                gte: None,
                lt: Some(5),
            }),
            ..Filter::default()
        };
        assert_eq!(
            qdrant_filter(&only_lt, &[])["must"][0]["range"],
            json!({"lt": 5})
        );
        assert_eq!(qdrant_filter(&Filter::default(), &[]), json!({"must": []}));
    }

    #[test]
    fn a_hit_chunk_comes_from_the_points_payload_and_its_snippet_is_cut_at_a_character() {
        let long = "é".repeat(300);
        let c = hit_chunk(&json!({"chunk_id": "18446744073709551615", "ordinal": 3, "text": long}))
            .expect("chunk");
        assert_eq!(c.id, u64::MAX);
        assert_eq!(c.ordinal, 3);
        assert_eq!(c.snippet.text.chars().count(), SNIPPET_CHARS);
        assert!(hit_chunk(&json!({"ordinal": 3})).is_none());
    }
}
