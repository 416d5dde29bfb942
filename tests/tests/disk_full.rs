//! A full data disk is a state, not a crash: on small tmpfs mounts (the tests run as root) the
//! daemon refuses writes with 507 and says why on `/readyz`, keeps answering reads, exits
//! cleanly on SIGTERM, and gets every acknowledged document back, readable and searchable, once
//! there is space again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use concierge_tests::{Daemon, SmallDisk, temp_dir, workspace_root};

/// Fills the disk holding `path` with one file until `headroom` bytes are left.
fn fill(path: &Path, headroom: u64) {
    let mut file = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0u8; 256 * 1024];
    let mut written = 0u64;
    while file.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    drop(file);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("reopen the filler");
    file.set_len(written.saturating_sub(headroom))
        .expect("shrink the filler");
}

fn document(id: &str, n: usize) -> String {
    let text: String = (0..n)
        .map(|i| format!("the pool heater in unit {i} needs a technician on tuesday. "))
        .collect();
    serde_json::json!({"id": id, "title": "Maintenance", "text": text, "updated_at": 1}).to_string()
}

/// A document whose words are its own (they do not compress away in the keyword index), so
/// a few hundred of them outgrow a 64 KiB disk whatever the indexer's batching.
fn varied_document(id: &str, n: u64) -> String {
    let words: String = (0..40u64)
        .map(|w| {
            format!(
                "w{:x} ",
                (n * 40 + w).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20
            )
        })
        .collect();
    let text = format!("the pool heater needs a technician on tuesday. {words}");
    serde_json::json!({"id": id, "title": "Maintenance", "text": text, "updated_at": 1}).to_string()
}

fn seq_of(body: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(body).expect("JSON")["seq"]
        .as_u64()
        .expect("a seq")
}

/// Searches with `min_seq` until the indexes include it (within a minute): the hits' ids.
fn search_after(daemon: &Daemon, query: &str, min_seq: u64) -> Vec<String> {
    let body = serde_json::json!({"query": query, "k": 20, "min_seq": min_seq}).to_string();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, text) = daemon.post_json("/v1/search", &body);
        if status == 200 {
            let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            return v["hits"]
                .as_array()
                .expect("hits")
                .iter()
                .filter_map(|h| h["document"]["id"].as_str().map(str::to_owned))
                .collect();
        }
        assert_eq!(status, 503, "{text}");
        assert!(Instant::now() < deadline, "not searchable in time: {text}");
    }
}

fn start(data: &Path, min_free: &str) -> Daemon {
    let data = data.display().to_string();
    Daemon::start_with_env(
        &["--data-dir", &data],
        &[
            ("CONCIERGE_STORAGE__MIN_FREE_BYTES", min_free),
            ("RUST_LOG", "warn"),
        ],
        &workspace_root(),
    )
}

fn mounted(dir: &Path, size: &str) -> (SmallDisk, PathBuf) {
    let disk = SmallDisk::mount(dir, size);
    (disk, dir.join("data"))
}

#[test]
fn a_disk_short_of_space_refuses_writes_with_507_keeps_reads_and_writes_resume_by_themselves() {
    let dir = temp_dir();
    let (_disk, data) = mounted(&dir.path().join("disk"), "48m");
    let daemon = start(&data, &(8 * 1024 * 1024).to_string());
    let (status, body) = daemon.post_json("/v1/documents", &document("ops:note:before", 3));
    assert_eq!(status, 202, "{body}");
    let before = seq_of(&body);
    // Indexed first: while the disk is short of space the indexer writes nothing either.
    assert!(
        search_after(&daemon, "pool heater technician", before)
            .contains(&"ops:note:before".to_owned())
    );

    let filler = dir.path().join("disk/filler");
    fill(&filler, 4 * 1024 * 1024);
    let refused = daemon.exchange(
        "POST",
        "/v1/documents",
        Some(&document("ops:note:during", 3)),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(refused.status, 507, "{}", refused.body);
    assert_eq!(
        refused.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(refused.header("retry-after"), Some("60"));
    assert!(
        refused.body.contains("storage.min_free_bytes"),
        "{}",
        refused.body
    );
    let (status, ready) = daemon.get("/readyz");
    assert_eq!(status, 503, "{ready}");
    assert!(ready.contains("read_only"), "{ready}");
    assert_eq!(daemon.get("/healthz").0, 200);
    assert_eq!(daemon.get("/v1/documents/ops:note:before").0, 200);
    assert!(
        search_after(&daemon, "pool heater technician", before)
            .contains(&"ops:note:before".to_owned())
    );
    assert_eq!(daemon.get("/v1/documents/ops:note:during").0, 404);

    std::fs::remove_file(&filler).expect("free the space");
    let (status, body) = daemon.post_json("/v1/documents", &document("ops:note:after", 3));
    assert_eq!(status, 202, "writes resume without a restart: {body}");
    let after = seq_of(&body);
    assert_eq!(daemon.get("/readyz").0, 200);
    assert!(
        search_after(&daemon, "pool heater technician", after)
            .contains(&"ops:note:after".to_owned())
    );
    assert!(daemon.terminate().success());
}

#[test]
fn a_disk_that_fills_during_a_write_poisons_the_store_without_killing_the_daemon_and_a_restart_recovers_it()
 {
    let dir = temp_dir();
    let (_disk, data) = mounted(&dir.path().join("disk"), "48m");
    // No free-space floor: the write-ahead log itself runs into the full disk.
    let daemon = start(&data, "0");
    let filler = dir.path().join("disk/filler");
    fill(&filler, 256 * 1024);
    let mut acknowledged = Vec::new();
    let mut last_seq = 0;
    let refused = loop {
        let id = format!("ops:note:{}", acknowledged.len());
        let reply = daemon.exchange(
            "POST",
            "/v1/documents",
            Some(&document(&id, 20)),
            &[("Content-Type", "application/json")],
        );
        if reply.status != 202 {
            break reply;
        }
        last_seq = seq_of(&reply.body);
        acknowledged.push(id);
        assert!(acknowledged.len() < 2_000, "the disk never filled up");
    };
    assert!(!acknowledged.is_empty());
    assert_eq!(refused.status, 507, "{}", refused.body);
    assert!(
        refused.body.contains("filled up during a write"),
        "{}",
        refused.body
    );
    // Alive: later writes are refused the same way, reads are answered.
    assert_eq!(
        daemon
            .post_json("/v1/documents", &document("ops:note:late", 1))
            .0,
        507
    );
    let (status, ready) = daemon.get("/readyz");
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready.contains("poisoned") && ready.contains("free space"),
        "{ready}"
    );
    assert_eq!(daemon.get("/healthz").0, 200);
    assert_eq!(
        daemon.get(&format!("/v1/documents/{}", acknowledged[0])).0,
        200
    );
    let stopped = Instant::now();
    assert!(
        daemon.terminate().success(),
        "SIGTERM on a full disk exits cleanly"
    );
    assert!(stopped.elapsed() < Duration::from_secs(30));

    std::fs::remove_file(&filler).expect("free the space");
    let daemon = start(&data, "0");
    assert_eq!(daemon.get("/readyz").0, 200);
    for id in &acknowledged {
        let (status, body) = daemon.get(&format!("/v1/documents/{id}"));
        assert_eq!(status, 200, "{id} was acknowledged: {body}");
    }
    let last = acknowledged.last().expect("one").clone();
    let hits = search_after(&daemon, "pool heater technician", last_seq);
    assert!(!hits.is_empty(), "searchable after the restart");
    let (status, body) = daemon.post_json("/v1/documents", &document("ops:note:again", 1));
    assert_eq!(status, 202, "{body}");
    assert!(daemon.terminate().success());
    let _ = last;
}

#[test]
fn an_index_disk_that_fills_up_leaves_writes_and_reads_working_and_the_indexes_catch_up_once_freed()
{
    let dir = temp_dir();
    let data = dir.path().join("data");
    // The indexes on a disk of their own, small enough that their commits and snapshots fail.
    let index = SmallDisk::mount(&data.join("index"), "64k");
    let daemon = start(&data, "0");
    let mut last_seq = 0;
    for i in 0..300 {
        let (status, body) = daemon.post_json(
            "/v1/documents",
            &varied_document(&format!("ops:note:{i}"), i),
        );
        assert_eq!(status, 202, "the store has room: {body}");
        last_seq = seq_of(&body);
    }
    // The indexes fall behind: their commits fail on the full disk (once the indexer has
    // embedded the batch, which alone takes 45 s on one core of a 2-core EPYC, and longer
    // beside other tests).
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        let (_, status) = daemon.get("/v1/admin/status");
        if status.contains("No space left") || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.contains("No space left"), "{status}");
    assert_eq!(daemon.get("/healthz").0, 200);
    assert_eq!(daemon.get("/v1/documents/ops:note:299").0, 200);
    let (status, _) = daemon.post_json("/v1/search", r#"{"query":"pool heater","k":3}"#);
    assert_eq!(status, 200, "searches answer from what is indexed");

    index.resize("64m");
    let hits = search_after(&daemon, "pool heater technician", last_seq);
    assert!(!hits.is_empty());
    assert!(daemon.terminate().success());
}

#[test]
fn a_dense_snapshot_that_does_not_fit_fails_without_harm_and_the_next_start_rebuilds_the_index() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    // Room for the keyword index's commits, not for a snapshot of the graph as well.
    let _index = SmallDisk::mount(&data.join("index"), "160k");
    let daemon = start(&data, "0");
    let mut last_seq = 0;
    for i in 0..100 {
        let (status, body) =
            daemon.post_json("/v1/documents", &document(&format!("ops:note:{i}"), 6));
        assert_eq!(status, 202, "{body}");
        last_seq = seq_of(&body);
    }
    assert!(!search_after(&daemon, "pool heater technician", last_seq).is_empty());
    // The snapshot taken at close is the first write to fail.
    assert!(
        daemon.terminate().success(),
        "a failed snapshot does not fail the exit"
    );
    let dense = data.join("index/dense");
    assert!(
        !dense.join("CURRENT").exists(),
        "the snapshot should not have fit"
    );
    let leftovers: Vec<String> = std::fs::read_dir(&dense)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "a failed snapshot leaves {leftovers:?}"
    );

    let daemon = start(&data, "0");
    assert_eq!(daemon.get("/readyz").0, 200);
    assert!(!search_after(&daemon, "pool heater technician", last_seq).is_empty());
    assert_eq!(daemon.get("/v1/documents/ops:note:99").0, 200);
    assert!(daemon.terminate().success());
}
