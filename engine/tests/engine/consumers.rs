//! Change-log consumers: an entry the indexer keeps failing on is retried with backoff, then
//! moved to the dead letters while the rest of the log goes on.

use std::time::{Duration, Instant};

use concierge_engine::{Engine, SearchMode, SearchRequest};

use super::common::{CountingEmbedder, config, doc, put};

#[test]
fn an_entry_that_keeps_failing_is_dead_lettered_and_indexing_continues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.max_attempts = 3;
    c.retry_base = Duration::from_millis(5);
    c.retry_cap = Duration::from_millis(20);
    let embedder = CountingEmbedder::new(Some("POISON-PILL"));
    let engine = Engine::open(c, embedder).expect("opens");
    put(
        &engine,
        doc("aircall:call:1", "", "The parking garage gate is stuck.", 1),
    );
    put(
        &engine,
        doc(
            "aircall:call:2",
            "",
            "This transcript contains a POISON-PILL the embedder refuses.",
            1,
        ),
    );
    let last = put(
        &engine,
        doc(
            "aircall:call:3",
            "",
            "The garden sprinklers start at six.",
            1,
        ),
    );
    let found = engine
        .search(
            &SearchRequest::new("sprinklers")
                .mode(SearchMode::Keyword)
                .min_seq(last),
        )
        .expect("search");
    assert_eq!(found.hits[0].document.id, "aircall:call:3");
    let deadline = Instant::now() + Duration::from_secs(30);
    let letters = loop {
        let letters = engine.dead_letters().expect("dead letters");
        if !letters.is_empty() || Instant::now() > deadline {
            break letters;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].entry.id, "aircall:call:2");
    assert_eq!(letters[0].attempts, 3);
    assert!(
        letters[0].error.contains("POISON-PILL"),
        "{}",
        letters[0].error
    );
    assert_eq!(engine.status().expect("status").dead_letters, 1);
    // The document itself is stored; only its indexing was given up on.
    assert!(engine.get("aircall:call:2").expect("get").is_some());
    assert!(
        engine
            .search(&SearchRequest::new("parking garage gate").mode(SearchMode::Keyword))
            .expect("search")
            .hits
            .iter()
            .any(|h| h.document.id == "aircall:call:1")
    );
}
