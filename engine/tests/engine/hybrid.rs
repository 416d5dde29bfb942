//! Hybrid search: meaning-only queries found by the dense leg, rare tokens by the keyword leg,
//! both by hybrid; filters inside both legs; one hit per document with a highlighted snippet.

use std::time::Duration;

use concierge_engine::{
    Engine, Error, Filter, Fusion, FusionMethod, SearchMode, SearchRequest, TimeRange,
};
use serde_json::json;

use super::common::{CountingEmbedder, SENTENCES, config, doc, put, real_embedder, wait_indexed};

fn corpus(dir: &std::path::Path) -> Engine {
    let engine = Engine::open(config(dir), real_embedder()).expect("opens");
    for (i, s) in SENTENCES.iter().enumerate() {
        let source = if i % 2 == 0 { "aircall" } else { "guesty" };
        let kind = if i % 2 == 0 { "call" } else { "reservation" };
        let mut d = doc(&format!("{source}:{kind}:{i}"), "", s, 1_000 * i as i64);
        d.metadata = json!({"listing": format!("L{}", i % 3), "guest": {"vip": i % 4 == 0}})
            .as_object()
            .cloned()
            .expect("object");
        put(&engine, d);
    }
    let code = doc(
        "guesty:reservation:code",
        "Reservation HX",
        "Confirmation code HMXK4Q for the booking at the harbour flat.",
        99_000,
    );
    put(&engine, code);
    wait_indexed(&engine);
    engine
}

fn ids(engine: &Engine, req: &SearchRequest) -> Vec<String> {
    engine
        .search(req)
        .expect("search")
        .hits
        .into_iter()
        .map(|h| h.document.id)
        .collect()
}

#[test]
fn a_query_sharing_only_meaning_is_found_by_dense_and_hybrid_not_keyword() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = corpus(dir.path());
    // No word in common with "The hot water boiler needs a technician visit on Monday."
    let q = "cold shower, broken heater, send plumber";
    let target = "aircall:call:8";
    assert_eq!(
        ids(&engine, &SearchRequest::new(q).k(3).mode(SearchMode::Dense))[0],
        target
    );
    assert!(
        !ids(
            &engine,
            &SearchRequest::new(q).k(3).mode(SearchMode::Keyword)
        )
        .contains(&target.to_owned())
    );
    let hybrid = ids(&engine, &SearchRequest::new(q).k(3));
    assert!(hybrid.contains(&target.to_owned()), "{hybrid:?}");
}

#[test]
fn a_rare_confirmation_code_is_found_by_keyword_and_hybrid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = corpus(dir.path());
    let q = "HMXK4Q";
    assert_eq!(
        ids(
            &engine,
            &SearchRequest::new(q).k(5).mode(SearchMode::Keyword)
        ),
        ["guesty:reservation:code"]
    );
    let resp = engine.search(&SearchRequest::new(q).k(5)).expect("search");
    assert_eq!(resp.hits[0].document.id, "guesty:reservation:code");
    let hit = &resp.hits[0];
    assert_eq!(hit.keyword.map(|k| k.rank), Some(1));
    let chunk = hit.chunk.as_ref().expect("best chunk");
    let marked: Vec<&str> = chunk
        .snippet
        .highlighted
        .iter()
        .map(|(a, b)| &chunk.snippet.text[*a..*b])
        .collect();
    assert_eq!(marked, ["HMXK4Q"]);
    // One hit per document.
    let all = ids(
        &engine,
        &SearchRequest::new("guest booking reservation").k(20),
    );
    let mut dedup = all.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(all.len(), dedup.len());
}

fn corpus_ids() -> Vec<String> {
    let mut ids: Vec<String> = (0..SENTENCES.len())
        .map(|i| {
            if i % 2 == 0 {
                format!("aircall:call:{i}")
            } else {
                format!("guesty:reservation:{i}")
            }
        })
        .collect();
    ids.push("guesty:reservation:code".to_owned());
    ids
}

#[test]
fn filters_apply_inside_both_legs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = corpus(dir.path());
    let filters = [
        Filter {
            source: vec!["guesty".into()],
            ..Filter::default()
        },
        Filter {
            metadata: [("listing".to_owned(), json!("L1"))].into(),
            ..Filter::default()
        },
        Filter {
            metadata: [("guest.vip".to_owned(), json!(true))].into(),
            ..Filter::default()
        },
        Filter {
            updated_at: Some(TimeRange {
                gte: Some(3_000),
                lt: Some(6_000),
            }),
            ..Filter::default()
        },
    ];
    for filter in &filters {
        let mut want: Vec<String> = corpus_ids()
            .into_iter()
            .filter(|id| filter_matches(filter, &engine.get(id).expect("get").expect("present")))
            .collect();
        want.sort();
        assert!(
            !want.is_empty() && want.len() < 20,
            "{filter:?} matches {want:?}"
        );
        for mode in [SearchMode::Dense, SearchMode::Keyword, SearchMode::Hybrid] {
            let got = ids(
                &engine,
                &SearchRequest::new("guest water door booking")
                    .k(20)
                    .mode(mode)
                    .filter(filter.clone()),
            );
            assert!(
                got.iter().all(|id| want.contains(id)),
                "{mode:?} {filter:?} returned {got:?}, allowed {want:?}"
            );
        }
        // Fewer matches than k: the dense leg returns exactly the matching documents.
        let mut dense = ids(
            &engine,
            &SearchRequest::new("anything at all")
                .k(20)
                .mode(SearchMode::Dense)
                .filter(filter.clone()),
        );
        dense.sort();
        assert_eq!(dense, want, "{filter:?}");
    }
}

/// The filter semantics restated for the test (source, metadata and time only, as used above).
fn filter_matches(filter: &Filter, d: &concierge_engine::Document) -> bool {
    let source_ok = filter.source.is_empty() || filter.source.contains(&d.source);
    let time_ok = filter.updated_at.is_none_or(|r| {
        r.gte.is_none_or(|g| d.updated_at >= g) && r.lt.is_none_or(|l| d.updated_at < l)
    });
    let meta_ok = filter.metadata.iter().all(|(path, want)| {
        let mut v = serde_json::Value::Object(d.metadata.clone());
        for part in path.split('.') {
            v = v.get(part).cloned().unwrap_or(serde_json::Value::Null);
        }
        v == *want
    });
    source_ok && time_ok && meta_ok
}

#[test]
fn fusion_settings_change_the_ranking_and_legs_report_their_ranks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = corpus(dir.path());
    let q = "towels for the baby";
    let resp = engine.search(&SearchRequest::new(q).k(5)).expect("search");
    assert_eq!(resp.hits[0].document.id, "guesty:reservation:9");
    assert!(resp.hits[0].dense.is_some() && resp.hits[0].keyword.is_some());
    let mut dense_only = SearchRequest::new(q).k(16);
    dense_only.fusion = Fusion {
        keyword_weight: 0.0,
        ..Fusion::default()
    };
    let a = engine.search(&dense_only).expect("search");
    let pure_dense = ids(
        &engine,
        &SearchRequest::new(q).k(16).mode(SearchMode::Dense),
    );
    assert_eq!(
        a.hits
            .iter()
            .map(|h| h.document.id.clone())
            .collect::<Vec<_>>()[..5],
        pure_dense[..5]
    );
    let mut dbsf = SearchRequest::new(q).k(5);
    dbsf.fusion = Fusion {
        method: FusionMethod::Dbsf,
        ..Fusion::default()
    };
    assert_eq!(ids(&engine, &dbsf)[0], "guesty:reservation:9");
}

#[test]
fn bad_requests_and_a_min_seq_never_issued_are_refused_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.min_seq_timeout = Duration::from_millis(300);
    let engine = Engine::open(c, real_embedder()).expect("opens");
    for bad in [
        SearchRequest::new(" "),
        SearchRequest::new("x").k(0),
        SearchRequest::new("x").k(1_000),
    ] {
        assert!(
            matches!(engine.search(&bad), Err(Error::InvalidInput(_))),
            "{bad:?}"
        );
    }
    let mut bad_fusion = SearchRequest::new("x");
    bad_fusion.fusion.k = -5.0;
    assert!(matches!(
        engine.search(&bad_fusion),
        Err(Error::InvalidInput(_))
    ));
    // A sequence no write was given cannot come from a receipt: refused at once.
    let started = std::time::Instant::now();
    let err = engine
        .search(&SearchRequest::new("x").min_seq(1_000))
        .expect_err("never issued");
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert!(started.elapsed() < Duration::from_millis(250));
    // An ingest followed by a search at its sequence sees it.
    let seq = put(&engine, doc("aircall:call:1", "", "Read your writes.", 1));
    let found = engine
        .search(&SearchRequest::new("read your writes").min_seq(seq))
        .expect("search");
    assert_eq!(found.hits.len(), 1);
}

#[test]
fn min_seq_of_a_write_the_indexer_cannot_reach_waits_a_bounded_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.min_seq_timeout = Duration::from_millis(300);
    // The indexer cannot embed this document, so it never passes its sequence.
    let engine = Engine::open(c, CountingEmbedder::new(Some("UNEMBEDDABLE"))).expect("opens");
    let seq = put(&engine, doc("aircall:call:1", "", "UNEMBEDDABLE text", 1));
    let started = std::time::Instant::now();
    let err = engine
        .search(&SearchRequest::new("x").min_seq(seq))
        .expect_err("not indexed");
    assert!(
        matches!(err, Error::NotYetIndexed { wanted, .. } if wanted == seq),
        "{err}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}
