//! Property test: for random sequences of upserts, deletes and filtered searches, dense search
//! agrees with an exact brute-force scan over the live documents: recall@10 ≥ 0.95 at the
//! default ef, never a deleted or filtered-out document, and exactly the matching documents
//! when fewer than k match.

use std::collections::HashMap;

use concierge_engine::{Engine, Filter, IngestRequest, SearchMode, SearchRequest};
use concierge_models::Embedder;
use proptest::prelude::*;

use super::common::{config, doc, real_embedder};

const WORDS: &[&str] = &[
    "guest",
    "door",
    "code",
    "towels",
    "boiler",
    "parking",
    "garage",
    "wifi",
    "password",
    "checkout",
    "late",
    "early",
    "pool",
    "heating",
    "broken",
    "window",
    "kitchen",
    "cleaning",
    "invoice",
    "refund",
    "airport",
    "pickup",
    "noise",
    "party",
    "balcony",
    "keys",
    "lockbox",
    "pets",
    "dog",
    "baby",
    "cot",
    "linen",
    "shower",
    "leak",
    "elevator",
    "stairs",
    "terrace",
    "breakfast",
    "coffee",
    "machine",
];
const KINDS: &[&str] = &["call", "sms", "note"];

#[derive(Debug, Clone)]
enum Op {
    Upsert { id: u8, kind: u8, words: Vec<u8> },
    Delete { id: u8 },
    Search { words: Vec<u8>, kind: Option<u8> },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..80, 0u8..3, prop::collection::vec(0u8..WORDS.len() as u8, 3..10)).prop_map(|(id, kind, words)| Op::Upsert { id, kind, words }),
        2 => (0u8..80).prop_map(|id| Op::Delete { id }),
        2 => (prop::collection::vec(0u8..WORDS.len() as u8, 1..4), prop::option::of(0u8..3)).prop_map(|(words, kind)| Op::Search { words, kind }),
    ]
}

fn text(words: &[u8]) -> String {
    words
        .iter()
        .map(|w| WORDS[*w as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

struct Model {
    live: HashMap<String, (String, usize)>, // id -> (text, kind)
    vectors: HashMap<String, Vec<f32>>,     // text -> vector
    clock: i64,
    found: usize,
    expected: usize,
}

impl Model {
    fn vector(&mut self, t: &str) -> Vec<f32> {
        if let Some(v) = self.vectors.get(t) {
            return v.clone();
        }
        let v = real_embedder().embed(&[t]).expect("embed").remove(0);
        self.vectors.insert(t.to_owned(), v.clone());
        v
    }
}

fn run(engine: &Engine, ops: &[Op], model: &mut Model) -> Result<(), TestCaseError> {
    for op in ops {
        model.clock += 1;
        match op {
            Op::Upsert { id, kind, words } => {
                let kind_name = KINDS[*kind as usize];
                let id = format!("aircall:{kind_name}:{id}");
                // One id per (kind, n): a document never changes kind.
                let t = text(words);
                engine
                    .ingest(IngestRequest::upsert(doc(&id, "", &t, model.clock)))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                model.live.insert(id, (t, *kind as usize));
            }
            Op::Delete { id } => {
                for kind_name in KINDS {
                    let id = format!("aircall:{kind_name}:{id}");
                    if model.live.remove(&id).is_some() {
                        engine
                            .ingest(IngestRequest::delete(&id, model.clock))
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    }
                }
            }
            Op::Search { words, kind } => {
                let q = text(words);
                let qv = model.vector(&q);
                let mut filter = Filter::default();
                if let Some(k) = kind {
                    filter.kind = vec![KINDS[*k as usize].to_owned()];
                }
                let req = SearchRequest::new(&q)
                    .k(10)
                    .mode(SearchMode::Dense)
                    .filter(filter)
                    .min_seq(engine.durable_seq());
                let got: Vec<String> = engine
                    .search(&req)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                    .hits
                    .into_iter()
                    .map(|h| h.document.id)
                    .collect();
                let candidates: Vec<(String, String)> = model
                    .live
                    .iter()
                    .filter(|(_, (_, k))| kind.is_none_or(|want| *k == want as usize))
                    .map(|(id, (t, _))| (id.clone(), t.clone()))
                    .collect();
                let mut exact: Vec<(f32, String)> = candidates
                    .into_iter()
                    .map(|(id, t)| {
                        let v = model.vector(&t);
                        (qv.iter().zip(&v).map(|(a, b)| a * b).sum::<f32>(), id)
                    })
                    .collect();
                exact.sort_by(|a, b| b.0.total_cmp(&a.0));
                for id in &got {
                    prop_assert!(
                        model.live.contains_key(id),
                        "deleted document {id} returned"
                    );
                    let k = model.live[id].1;
                    prop_assert!(
                        kind.is_none_or(|want| want as usize == k),
                        "filtered-out document {id} returned"
                    );
                }
                if exact.len() < 10 {
                    let mut want: Vec<String> = exact.iter().map(|(_, id)| id.clone()).collect();
                    want.sort();
                    let mut got_sorted = got.clone();
                    got_sorted.sort();
                    prop_assert_eq!(
                        got_sorted,
                        want,
                        "fewer matches than k must return exactly them"
                    );
                }
                let top: Vec<&String> = exact.iter().take(10).map(|(_, id)| id).collect();
                model.found += got.iter().filter(|id| top.contains(id)).count();
                model.expected += top.len();
            }
        }
    }
    Ok(())
}

#[test]
fn dense_search_over_segment_and_fresh_part_agrees_with_brute_force_over_random_upserts_deletes_and_filters()
 {
    let model = std::cell::RefCell::new(Model {
        live: HashMap::new(),
        vectors: HashMap::new(),
        clock: 0,
        found: 0,
        expected: 0,
    });
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 6,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&prop::collection::vec(op(), 40..160), |ops| {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Freezes all along the way: each search walks a segment and scans a fresh part.
        let mut c = config(dir.path());
        c.dense_freeze_after = 8;
        c.dense_freeze_interval = std::time::Duration::from_millis(20);
        let engine =
            Engine::open(c, real_embedder()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut model = model.borrow_mut();
        model.live.clear();
        run(&engine, &ops, &mut model)
    });
    let model = model.into_inner();
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(
        model.expected > 50,
        "too few searches to measure recall ({})",
        model.expected
    );
    let recall = model.found as f64 / model.expected as f64;
    assert!(
        recall >= 0.95,
        "recall@10 {recall:.3} over {} expected hits",
        model.expected
    );
}
