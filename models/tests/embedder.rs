//! The candle embedder against the real all-MiniLM-L6-v2 weights (fetched by `models/fetch.sh`).
//!
//! Parity: every sentence of `tests/fixtures/minilm-reference.json` (vectors produced by
//! sentence-transformers) must come out with cosine similarity >= 0.9999.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use concierge_models::{Backend, BertEmbedder, Embedder, EmbedderConfig, ModelError};
use serde_json::Value;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model_dir() -> PathBuf {
    std::env::var_os("CONCIERGE_TEST_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("models/weights/all-MiniLM-L6-v2"))
}

fn load(backend: Backend) -> BertEmbedder {
    BertEmbedder::load(
        model_dir(),
        &EmbedderConfig {
            backend,
            ..EmbedderConfig::default()
        },
    )
    .unwrap_or_else(|err| panic!("cannot load the model (run models/fetch.sh first): {err}"))
}

/// The default embedder (the native forward pass), loaded once per test binary.
fn embedder() -> &'static BertEmbedder {
    static EMBEDDER: OnceLock<BertEmbedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| load(Backend::Native))
}

/// candle-transformers' `BertModel`, the reference implementation.
fn candle_embedder() -> &'static BertEmbedder {
    static EMBEDDER: OnceLock<BertEmbedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| load(Backend::CandleBert))
}

struct Reference {
    text: String,
    vector: Vec<f32>,
}

fn references() -> Vec<Reference> {
    let path = workspace_root().join("tests/fixtures/minilm-reference.json");
    let json: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read reference fixture"))
            .expect("parse");
    assert_eq!(json["max_seq_length"], 256);
    json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| Reference {
            text: item["text"].as_str().expect("text").to_string(),
            vector: item["embedding"]
                .as_array()
                .expect("embedding")
                .iter()
                .map(|x| x.as_f64().expect("number") as f32)
                .collect(),
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn assert_parity(embedder: &BertEmbedder) {
    let refs = references();
    assert_eq!(refs.len(), 12);
    let texts: Vec<&str> = refs.iter().map(|r| r.text.as_str()).collect();
    let vectors = embedder.embed(&texts).expect("embed");
    let mut failures = Vec::new();
    for (reference, vector) in refs.iter().zip(&vectors) {
        assert_eq!(vector.len(), 384);
        let cos = cosine(vector, &reference.vector);
        if cos < 0.9999 {
            failures.push(format!(
                "cos {cos:.6} for {:?}",
                reference.text.chars().take(60).collect::<String>()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "parity below 0.9999:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_reference_sentence_matches_sentence_transformers() {
    assert_parity(embedder());
}

#[test]
fn candle_bert_backend_matches_sentence_transformers_too() {
    assert_parity(candle_embedder());
}

#[test]
fn native_and_candle_bert_backends_agree_on_varied_texts() {
    let texts: Vec<String> = (0..24)
        .map(|i| format!("Reservation {i}: the guest asked about parking. ").repeat(1 + i * 3))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let native = embedder().embed(&refs).expect("native");
    let candle = candle_embedder().embed(&refs).expect("candle");
    for ((a, b), text) in native.iter().zip(&candle).zip(&texts) {
        let cos = cosine(a, b);
        assert!(
            cos > 0.99999,
            "cos {cos} for a text of {} chars",
            text.len()
        );
    }
}

#[test]
fn a_call_larger_than_one_pass_gives_the_same_vectors() {
    // 40 texts of 256 tokens exceed one native pass's token budget: they are split across passes.
    let e = BertEmbedder::load(
        model_dir(),
        &EmbedderConfig {
            batch_size: 64,
            ..Default::default()
        },
    )
    .expect("load");
    let texts: Vec<String> = (0..40)
        .map(|i| format!("Unit {i} reported a leak in the bathroom. ").repeat(40))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let together = e.embed(&refs).expect("embed");
    for i in [0, 19, 20, 39] {
        let alone = e.embed(&[refs[i]]).expect("embed").remove(0);
        assert!(cosine(&alone, &together[i]) > 0.99999, "text {i}");
    }
}

#[test]
fn each_reference_sentence_alone_matches_too() {
    // Batch of one: no padding at all, so a padding bug and a batching bug cannot hide each other.
    for reference in references() {
        let vector = embedder()
            .embed(&[reference.text.as_str()])
            .expect("embed")
            .remove(0);
        let cos = cosine(&vector, &reference.vector);
        assert!(cos >= 0.9999, "cos {cos:.6} for {:?}", reference.text);
    }
}

#[test]
fn vectors_have_unit_norm_and_the_model_describes_itself() {
    let e = embedder();
    assert_eq!(e.dim(), 384);
    assert_eq!(
        e.max_tokens(),
        256,
        "sentence_bert_config.json says 256, not tokenizer.json's 128"
    );
    assert_eq!(e.model_id(), "all-MiniLM-L6-v2");
    for v in e.embed(&["a", "", "Great stay!!! 🏖️"]).expect("embed") {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
}

#[test]
fn over_length_text_is_truncated_at_256_tokens() {
    let e = embedder();
    let sentence = "The guest called again about the broken air conditioning. ";
    let long = sentence.repeat(60);
    assert!(e.count_tokens(&long).expect("count") > 600);
    let longer = sentence.repeat(90);
    let v = e.embed(&[long.as_str(), longer.as_str()]).expect("embed");
    assert!(
        cosine(&v[0], &v[1]) > 0.999_999,
        "text past the limit must not change the vector"
    );
}

#[test]
fn output_order_follows_input_order_whatever_the_lengths() {
    let e = embedder();
    let texts = [
        "short",
        "a much longer text about a reservation that was cancelled on Tuesday",
        "mid length text",
    ];
    let together = e.embed(&texts).expect("embed");
    for (text, vector) in texts.iter().zip(&together) {
        let alone = e.embed(&[text]).expect("embed").remove(0);
        assert!(cosine(&alone, vector) > 0.99999, "{text}");
    }
}

#[test]
fn an_empty_batch_gives_no_vectors() {
    assert!(embedder().embed(&[]).expect("embed").is_empty());
}

#[test]
fn one_instance_serves_many_threads_with_identical_results() {
    let e = Arc::new(
        BertEmbedder::load(
            model_dir(),
            &EmbedderConfig {
                threads: 2,
                batch_size: 4,
                ..Default::default()
            },
        )
        .expect("load"),
    );
    let texts: Vec<String> = (0..12)
        .map(|i| format!("Guest {i} asked about parking in unit {}", i % 5))
        .collect();
    let expected = {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        e.embed(&refs).expect("embed")
    };
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let e = Arc::clone(&e);
            let texts = texts.clone();
            std::thread::spawn(move || {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                e.embed(&refs).expect("embed")
            })
        })
        .collect();
    for handle in handles {
        let got = handle.join().expect("thread");
        for (a, b) in got.iter().zip(&expected) {
            assert!(cosine(a, b) > 0.99999);
        }
    }
}

#[test]
fn a_lower_configured_token_limit_is_honoured() {
    let e = BertEmbedder::load(
        model_dir(),
        &EmbedderConfig {
            max_tokens: Some(16),
            ..Default::default()
        },
    )
    .expect("load");
    assert_eq!(e.max_tokens(), 16);
}

#[test]
fn a_directory_without_the_model_says_how_to_fetch_it() {
    let empty = std::env::temp_dir().join(format!("concierge-no-model-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("mkdir");
    let err = BertEmbedder::load(&empty, &EmbedderConfig::default()).expect_err("must fail");
    assert!(matches!(err, ModelError::MissingFile { .. }), "{err:?}");
    assert!(err.to_string().contains("models/fetch.sh"));
}

#[test]
fn an_embedder_with_its_own_pool_shares_the_weights_and_gives_the_same_vectors() {
    let base = embedder();
    let other = base.with_own_pool(2).expect("a second pool");
    let texts = [
        "Late check-in after midnight.",
        "The boiler needs a technician.",
    ];
    let a = base.embed(&texts).expect("embed");
    let b = other.embed(&texts).expect("embed");
    assert_eq!(a, b);
    assert_eq!(
        (other.dim(), other.model_id()),
        (base.dim(), base.model_id())
    );
    assert!(base.with_own_pool(0).is_err(), "zero threads is refused");
}
