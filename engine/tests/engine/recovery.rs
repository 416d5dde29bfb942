//! Recovery: deleted or corrupt index directories are rebuilt from the store without
//! re-embedding (searches degrade to the other leg meanwhile, open never waits); tombstone-heavy
//! graphs are rebuilt in the background; checkpoints reopen with the same results; the change
//! log is trimmed below the indexer's cursor; the indexer folds the dense index's fresh points into
//! its frozen segment.

use std::path::Path;
use std::time::{Duration, Instant};

use concierge_engine::{Engine, IngestRequest, Operation, SearchMode, SearchRequest};

use super::common::{CountingEmbedder, SENTENCES, config, doc, open, put, wait_indexed};

fn fill(engine: &Engine) {
    for (i, s) in SENTENCES.iter().enumerate() {
        put(engine, doc(&format!("aircall:call:{i}"), "", s, 1));
    }
    put(
        engine,
        doc(
            "guesty:reservation:code",
            "",
            "Confirmation code HMXK4Q.",
            1,
        ),
    );
}

fn top(engine: &Engine, q: &str, mode: SearchMode) -> Vec<String> {
    engine
        .search(&SearchRequest::new(q).k(5).mode(mode))
        .expect("search")
        .hits
        .into_iter()
        .map(|h| h.document.id)
        .collect()
}

#[test]
fn deleted_index_directories_are_rebuilt_from_the_store_without_re_embedding() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let engine = open(dir.path());
        fill(&engine);
        wait_indexed(&engine);
        engine.close().expect("close");
    }
    std::fs::remove_dir_all(dir.path().join("index")).expect("remove indexes");
    let counting = CountingEmbedder::new(None);
    let engine = Engine::open(config(dir.path()), counting.clone())
        .expect("opens without waiting for the rebuild");
    wait_indexed(&engine);
    assert_eq!(counting.embedded(), 0, "the rebuild re-embedded chunks");
    assert_eq!(
        top(&engine, "HMXK4Q", SearchMode::Keyword),
        ["guesty:reservation:code"]
    );
    assert_eq!(
        top(&engine, "the boiler has no hot water", SearchMode::Dense)[0],
        "aircall:call:8"
    );
    let status = engine.status().expect("status");
    assert_eq!(status.dense.chunks, Some(SENTENCES.len() as u64 + 1));
    assert_eq!(status.keyword.chunks, Some(SENTENCES.len() as u64 + 1));
}

fn corrupt_dense_snapshot(data: &Path) {
    let root = data.join("index/dense");
    let current = std::fs::read_to_string(root.join("CURRENT")).expect("a snapshot exists");
    let graph = root.join(current.trim()).join("segment.bin");
    let mut bytes = std::fs::read(&graph).expect("segment file");
    for b in bytes.iter_mut().skip(64).step_by(7) {
        *b ^= 0x5a;
    }
    std::fs::write(&graph, bytes).expect("write");
}

#[test]
fn a_corrupt_dense_snapshot_degrades_search_to_keywords_until_the_background_rebuild_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let engine = open(dir.path());
        fill(&engine);
        wait_indexed(&engine);
        engine.close().expect("close");
    }
    corrupt_dense_snapshot(dir.path());
    let started = Instant::now();
    let engine = open(dir.path());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "open waited for the rebuild"
    );
    // Whatever the rebuild's progress, hybrid search answers (from the keyword leg at least).
    let resp = engine
        .search(&SearchRequest::new("HMXK4Q"))
        .expect("search");
    assert_eq!(resp.hits[0].document.id, "guesty:reservation:code");
    wait_indexed(&engine);
    assert_eq!(
        top(&engine, "the boiler has no hot water", SearchMode::Dense)[0],
        "aircall:call:8"
    );
    assert!(
        engine
            .search(&SearchRequest::new("x"))
            .expect("search")
            .degraded
            .is_empty()
    );
}

#[test]
fn a_graph_with_too_many_tombstones_is_rebuilt_in_the_background() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.rebuild_tombstone_ratio = 0.2;
    let engine = Engine::open(c, CountingEmbedder::new(None)).expect("opens");
    fill(&engine);
    wait_indexed(&engine);
    // Rewrite half the documents in one batch, so the indexer applies them together: their old
    // chunks become tombstones (8 of 25 points, past the 0.2 threshold) and the rebuild that
    // follows starts from a store that already holds every update. (One write per document
    // could start the rebuild half-way and leave a few tombstones below the threshold.)
    let updates = SENTENCES
        .iter()
        .enumerate()
        .take(SENTENCES.len() / 2)
        .map(|(i, s)| {
            Operation::Upsert(doc(
                &format!("aircall:call:{i}"),
                "",
                &format!("{s} Updated."),
                2,
            ))
        })
        .collect();
    engine
        .ingest(IngestRequest {
            operations: updates,
            idempotency_key: None,
        })
        .expect("ingest");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = engine.status().expect("status");
        if s.dense.tombstones == Some(0)
            && s.dense.chunks == Some(SENTENCES.len() as u64 + 1)
            && s.dense.seq >= Some(engine.durable_seq())
        {
            break;
        }
        assert!(Instant::now() < deadline, "no rebuild: {s:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        top(&engine, "the boiler has no hot water", SearchMode::Dense)[0],
        "aircall:call:8"
    );
}

#[test]
fn a_checkpoint_reopens_with_the_same_search_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = tempfile::tempdir().expect("tempdir");
    let target = copy.path().join("cp");
    let engine = open(dir.path());
    fill(&engine);
    wait_indexed(&engine);
    let info = engine.checkpoint(&target).expect("checkpoint");
    assert_eq!(info.seq, engine.durable_seq());
    // Later writes are not in the checkpoint.
    put(
        &engine,
        doc(
            "aircall:call:after",
            "",
            "Written after the checkpoint about the boiler.",
            3,
        ),
    );
    let queries = ["boiler hot water", "HMXK4Q", "pets allowed", "towels"];
    let before: Vec<Vec<String>> = queries
        .iter()
        .map(|q| top(&engine, q, SearchMode::Hybrid))
        .collect();
    drop(engine);
    let restored =
        Engine::open(config(&target), CountingEmbedder::new(None)).expect("the checkpoint opens");
    wait_indexed(&restored);
    assert!(restored.get("aircall:call:after").expect("get").is_none());
    for (q, want) in queries.iter().zip(&before) {
        let got = top(&restored, q, SearchMode::Hybrid);
        let want: Vec<String> = want
            .iter()
            .filter(|id| *id != "aircall:call:after")
            .cloned()
            .collect();
        assert_eq!(
            got[..want.len().min(got.len())],
            want[..want.len().min(got.len())],
            "{q}"
        );
    }
    assert!(engine_dir_nonempty(&target.join("store")));
    assert!(
        matches!(
            restored.checkpoint(&target),
            Err(concierge_engine::Error::InvalidInput(_))
        ),
        "a non-empty target is refused"
    );
}

fn engine_dir_nonempty(p: &Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

#[test]
fn the_change_log_is_trimmed_below_the_indexer_cursor_and_survives_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let last = {
        let engine = open(dir.path());
        fill(&engine);
        wait_indexed(&engine);
        let last = engine.durable_seq();
        engine.close().expect("close");
        last
    };
    let engine = open(dir.path());
    let status = engine.status().expect("status");
    let indexer = status
        .consumers
        .iter()
        .find(|c| c.name == Engine::indexer_name())
        .expect("indexer cursor");
    assert_eq!(
        (indexer.cursor, indexer.lag),
        (last, 0),
        "close persists both indexes and moves the cursor"
    );
    // New sequences continue after the trimmed log.
    let next = put(&engine, doc("aircall:call:x", "", "After the trim.", 1));
    assert_eq!(next, last + 1);
    wait_indexed(&engine);
    assert_eq!(
        top(&engine, "after the trim", SearchMode::Keyword)[0],
        "aircall:call:x"
    );
}

#[test]
fn an_operator_reindex_rebuilds_both_indexes_from_stored_vectors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let counting = CountingEmbedder::new(None);
    let engine = Engine::open(config(dir.path()), counting.clone()).expect("opens");
    fill(&engine);
    wait_indexed(&engine);
    let embedded = counting.embedded();
    engine.reindex().expect("reindex");
    assert_eq!(
        counting.embedded(),
        embedded,
        "a reindex re-embedded chunks"
    );
    wait_indexed(&engine);
    assert_eq!(
        top(&engine, "HMXK4Q", SearchMode::Keyword),
        ["guesty:reservation:code"]
    );
    assert_eq!(
        top(&engine, "the boiler has no hot water", SearchMode::Dense)[0],
        "aircall:call:8"
    );
}

#[test]
fn the_indexer_folds_fresh_points_into_the_segment_once_enough_or_idle_and_a_reopen_has_none_fresh()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let fresh = |engine: &Engine| engine.status().expect("status").dense.fresh;
    {
        // Enough: past 5 fresh points the indexer folds them at its next batch. The interval is
        // long, so only the count can trigger it.
        let mut c = config(dir.path());
        c.dense_freeze_after = 5;
        c.dense_freeze_interval = Duration::from_secs(3_600);
        let engine = Engine::open(c, super::common::real_embedder()).expect("opens");
        for (i, s) in SENTENCES.iter().take(3).enumerate() {
            put(&engine, doc(&format!("aircall:call:{i}"), "", s, 1));
        }
        wait_indexed(&engine);
        assert_eq!(fresh(&engine), Some(3), "3 < 5 points stay fresh");
        for (i, s) in SENTENCES.iter().enumerate().skip(3) {
            put(&engine, doc(&format!("aircall:call:{i}"), "", s, 1));
            wait_indexed(&engine);
            assert!(
                fresh(&engine).is_some_and(|f| f < 5),
                "{:?}",
                fresh(&engine)
            );
        }
        // Fresh or frozen, every point is found (and the best one first).
        assert_eq!(
            top(&engine, "the boiler has no hot water", SearchMode::Dense)[0],
            "aircall:call:8"
        );
        engine.close().expect("close");
    }
    // Reopened from its snapshot, the whole graph is the segment.
    let mut c = config(dir.path());
    c.dense_freeze_interval = Duration::from_millis(100);
    let engine = Engine::open(c, super::common::real_embedder()).expect("reopens");
    wait_indexed(&engine);
    assert_eq!(fresh(&engine), Some(0));
    // Idle: a new point is folded once the interval has passed, with no more writes.
    put(&engine, doc("aircall:call:new", "", SENTENCES[0], 2));
    wait_indexed(&engine);
    let deadline = Instant::now() + Duration::from_secs(30);
    while fresh(&engine) != Some(0) {
        assert!(
            Instant::now() < deadline,
            "never folded: {:?}",
            fresh(&engine)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        engine.status().expect("status").dense.chunks,
        Some(SENTENCES.len() as u64 + 1)
    );
    assert_eq!(
        top(&engine, "the boiler has no hot water", SearchMode::Dense)[0],
        "aircall:call:8"
    );
}
