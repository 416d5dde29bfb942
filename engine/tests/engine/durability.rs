//! Durability and write semantics: write, drop, reopen; out-of-order and duplicate upserts;
//! idempotency keys; a poisoned store; group commit under concurrent writers.

use std::sync::Arc;

use concierge_engine::{Error, IngestRequest, Operation, Outcome, SearchMode, SearchRequest};

use super::common::{SENTENCES, doc, open, put, wait_indexed};

#[test]
fn everything_acknowledged_is_there_after_drop_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut seqs = Vec::new();
    {
        let engine = open(dir.path());
        for (i, s) in SENTENCES.iter().enumerate() {
            seqs.push(put(
                &engine,
                doc(&format!("aircall:call:{i}"), "", s, 1_000 + i as i64),
            ));
        }
        // Dropped without close(): the indexer stops, but nothing else is flushed by us.
    }
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "sequences increase: {seqs:?}"
    );
    let engine = open(dir.path());
    for (i, s) in SENTENCES.iter().enumerate() {
        let got = engine
            .get(&format!("aircall:call:{i}"))
            .expect("get")
            .expect("present");
        assert_eq!(got.text, *s);
        assert_eq!(got.version, 1);
    }
    assert_eq!(engine.durable_seq(), *seqs.last().expect("some"));
    let next = put(
        &engine,
        doc("aircall:call:new", "", "A new call after restart.", 5),
    );
    assert_eq!(
        next,
        seqs.last().expect("some") + 1,
        "sequences continue after a restart"
    );
    wait_indexed(&engine);
    let hits = engine
        .search(&SearchRequest::new("lockbox code front door").mode(SearchMode::Keyword))
        .expect("search");
    assert_eq!(hits.hits[0].document.id, "aircall:call:1");
}

#[test]
fn an_older_upsert_changes_nothing_and_a_redelivery_is_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path());
    let id = "guesty:reservation:r1";
    let newer = engine
        .ingest(IngestRequest::upsert(doc(
            id,
            "R1",
            "Two guests, arriving late.",
            2_000,
        )))
        .expect("ingest");
    assert!(matches!(
        newer.outcomes[0],
        Outcome::Applied { version: 1, .. }
    ));
    let older = engine
        .ingest(IngestRequest::upsert(doc(id, "R1", "One guest.", 1_000)))
        .expect("ingest");
    assert_eq!(older.outcomes, [Outcome::Stale]);
    assert_eq!(
        older.seq, newer.seq,
        "a stale write points at the stored change"
    );
    let again = engine
        .ingest(IngestRequest::upsert(doc(
            id,
            "R1",
            "Two guests, arriving late.",
            2_000,
        )))
        .expect("ingest");
    assert_eq!(again.outcomes, [Outcome::Unchanged]);
    let got = engine.get(id).expect("get").expect("present");
    assert_eq!(
        (got.text.as_str(), got.version),
        ("Two guests, arriving late.", 1)
    );

    // A delete newer than the document removes it; an upsert older than the delete does not
    // bring it back.
    let del = engine
        .ingest(IngestRequest::delete(id, 3_000))
        .expect("delete");
    assert!(matches!(
        del.outcomes[0],
        Outcome::Applied { version: 2, .. }
    ));
    assert!(engine.get(id).expect("get").is_none());
    let late = engine
        .ingest(IngestRequest::upsert(doc(id, "R1", "Resurrected?", 2_500)))
        .expect("ingest");
    assert_eq!(late.outcomes, [Outcome::Stale]);
    assert!(engine.get(id).expect("get").is_none());
    let revived = engine
        .ingest(IngestRequest::upsert(doc(id, "R1", "Rebooked.", 4_000)))
        .expect("ingest");
    assert!(matches!(
        revived.outcomes[0],
        Outcome::Applied { version: 3, .. }
    ));
    let hits = engine
        .search(
            &SearchRequest::new("rebooked")
                .mode(SearchMode::Keyword)
                .min_seq(revived.seq),
        )
        .expect("search");
    assert_eq!(hits.hits.len(), 1);
    assert_eq!(hits.hits[0].document.version, 3);
}

#[test]
fn an_idempotency_key_makes_a_redelivered_call_a_no_op_even_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = {
        let engine = open(dir.path());
        engine
            .ingest(
                IngestRequest::upsert(doc("aircall:call:9", "", "Caller asked about parking.", 10))
                    .with_idempotency_key("evt-1"),
            )
            .expect("ingest")
    };
    let engine = open(dir.path());
    let second = engine
        .ingest(
            IngestRequest::upsert(doc(
                "aircall:call:9",
                "",
                "A different body under the same event id.",
                20,
            ))
            .with_idempotency_key("evt-1"),
        )
        .expect("ingest");
    assert!(second.duplicate);
    assert_eq!((second.seq, &second.outcomes), (first.seq, &first.outcomes));
    assert_eq!(
        engine
            .get("aircall:call:9")
            .expect("get")
            .expect("present")
            .text,
        "Caller asked about parking."
    );
}

#[test]
fn a_batch_is_all_or_nothing_and_invalid_input_is_refused_without_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path());
    let mut bad = doc("aircall:call:2", "", "ok", 1);
    bad.source = "guesty".into();
    let err = engine
        .ingest(IngestRequest {
            operations: vec![
                Operation::Upsert(doc("aircall:call:1", "", "fine", 1)),
                Operation::Upsert(bad),
            ],
            idempotency_key: None,
        })
        .expect_err("refused");
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert!(err.to_string().contains("operation 1"), "{err}");
    assert!(
        engine.get("aircall:call:1").expect("get").is_none(),
        "nothing of a refused batch is written"
    );
    assert_eq!(engine.durable_seq(), 0);
    assert!(matches!(
        engine.get("not-an-id"),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn a_poisoned_store_refuses_writes_keeps_serving_reads_and_recovers_on_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let engine = open(dir.path());
        put(&engine, doc("aircall:call:1", "", SENTENCES[0], 1));
        engine.poison("fsync failed: EIO");
        let err = engine
            .ingest(IngestRequest::upsert(doc(
                "aircall:call:2",
                "",
                SENTENCES[1],
                1,
            )))
            .expect_err("refused");
        assert!(matches!(err, Error::Poisoned { .. }), "{err}");
        assert!(err.to_string().contains("EIO"));
        assert_eq!(
            engine.status().expect("status").poisoned.as_deref(),
            Some("fsync failed: EIO")
        );
        assert!(
            engine
                .get("aircall:call:1")
                .expect("reads still work")
                .is_some()
        );
    }
    let engine = open(dir.path());
    assert!(engine.poisoned().is_none());
    put(&engine, doc("aircall:call:2", "", SENTENCES[1], 1));
    assert!(engine.get("aircall:call:1").expect("get").is_some());
}

fn stat(stats: &str, name: &str) -> u64 {
    stats
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(" COUNT"))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("statistic {name} missing from:\n{stats}"))
}

#[test]
fn concurrent_writers_share_fsyncs_through_group_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Arc::new(open(dir.path()));
    let before = engine.store_statistics().expect("statistics enabled");
    let (synced0, self0, other0) = (
        stat(&before, "rocksdb.wal.synced"),
        stat(&before, "rocksdb.write.self"),
        stat(&before, "rocksdb.write.other"),
    );
    let threads = 8;
    let per_thread = 40;
    std::thread::scope(|s| {
        for t in 0..threads {
            let engine = engine.clone();
            s.spawn(move || {
                for i in 0..per_thread {
                    put(
                        &engine,
                        doc(&format!("aircall:call:{t}-{i}"), "", "Concurrent write.", 1),
                    );
                }
            });
        }
    });
    let after = engine.store_statistics().expect("statistics");
    let synced = stat(&after, "rocksdb.wal.synced") - synced0;
    let writes = (stat(&after, "rocksdb.write.self") - self0)
        + (stat(&after, "rocksdb.write.other") - other0);
    assert!(writes >= (threads * per_thread) as u64, "{writes} writes");
    assert!(
        synced < writes,
        "every write paid its own fsync: {synced} syncs for {writes} writes"
    );
    assert!(
        stat(&after, "rocksdb.write.other") > other0,
        "no write was ever committed by another writer's group"
    );
    assert_eq!(engine.durable_seq(), (threads * per_thread) as u64);
}

#[test]
fn concurrent_updates_of_one_document_lose_no_merge() {
    use concierge_engine::Updated;
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Arc::new(open(dir.path()));
    let id = "aircall:call:42";
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    let tag = format!("t{t}e{i}");
                    let outcome = engine
                        .update(id, Some(format!("event:{tag}")), |stored| {
                            let mut text = stored.map(|d| d.text.clone()).unwrap_or_default();
                            text.push(' ');
                            text.push_str(&tag);
                            let at = stored.map_or(1, |d| d.updated_at + 1);
                            Ok::<_, String>(Some(doc(id, "Call", &text, at)))
                        })
                        .expect("update");
                    assert!(matches!(outcome, Ok(Updated::Written(_))), "{outcome:?}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer thread");
    }
    let stored = engine.get(id).expect("get").expect("present");
    let mut tags: Vec<&str> = stored.text.split_whitespace().collect();
    tags.sort_unstable();
    assert_eq!(tags.len(), 80, "every merge kept: {}", stored.text);
    tags.dedup();
    assert_eq!(tags.len(), 80);
    assert_eq!(stored.version, 80);
}

#[test]
fn an_update_with_a_seen_key_returns_the_first_receipt_without_merging() {
    use concierge_engine::Updated;
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path());
    let id = "guesty:reservation:r9";
    let first = engine
        .update(id, Some("svix:msg_1".into()), |_| {
            Ok::<_, String>(Some(doc(id, "Stay", "Two nights in the loft.", 10)))
        })
        .expect("update");
    let Ok(Updated::Written(first)) = first else {
        panic!("the first delivery writes: {first:?}");
    };
    assert!(!first.duplicate);
    let again = engine
        .update(id, Some("svix:msg_1".into()), |_| -> Result<_, String> {
            panic!("a redelivery must not merge again")
        })
        .expect("update");
    let Ok(Updated::Written(again)) = again else {
        panic!("a redelivery answers with the receipt: {again:?}");
    };
    assert!(again.duplicate);
    assert_eq!(again.seq, first.seq);
}

#[test]
fn a_refused_merge_writes_nothing_and_keep_changes_nothing() {
    use concierge_engine::Updated;
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open(dir.path());
    let id = "aircall:call:7";
    put(&engine, doc(id, "Call", "The original text.", 5));
    let before = engine.durable_seq();
    let refused = engine
        .update(id, Some("k1".into()), |_| Err::<Option<_>, _>("no call id"))
        .expect("update");
    assert_eq!(refused, Err("no call id"));
    let kept = engine
        .update(id, None, |_| Ok::<_, String>(None))
        .expect("update");
    assert_eq!(kept, Ok(Updated::Kept));
    let wrong_id = engine.update(id, None, |_| {
        Ok::<_, String>(Some(doc("aircall:call:8", "Call", "Another call.", 6)))
    });
    assert!(
        matches!(wrong_id, Err(Error::InvalidInput(_))),
        "{wrong_id:?}"
    );
    assert_eq!(engine.durable_seq(), before, "nothing was written");
    assert_eq!(
        engine.get(id).expect("get").expect("present").text,
        "The original text."
    );
    // The refused delivery's key was not recorded: a later, valid delivery with it writes.
    let retried = engine
        .update(id, Some("k1".into()), |stored| {
            let at = stored.map_or(0, |d| d.updated_at) + 1;
            Ok::<_, String>(Some(doc(id, "Call", "Merged later.", at)))
        })
        .expect("update");
    assert!(
        matches!(retried, Ok(Updated::Written(ref r)) if !r.duplicate),
        "{retried:?}"
    );
}
