//! The answer generators with real weights: the extractive answerer ranks with the real
//! all-MiniLM-L6-v2; the local generator's tokenizer, built from SmolLM2's GGUF metadata, gives
//! the reference token ids of `tests/fixtures/smollm2-tokens.json` (produced by HF tokenizers),
//! and the model answers a grounded question (`models/fetch.sh SmolLM2-135M-Instruct` first).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use concierge_models::{
    BertEmbedder, EmbedderConfig, ExtractiveGenerator, Generator, LocalGenerator, Passage, Prompt,
    SMOLLM2_GGUF, gguf_tokenizer,
};
use serde_json::Value;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn smollm2_dir() -> PathBuf {
    workspace_root().join("models/weights/SmolLM2-135M-Instruct")
}

fn prompt() -> Prompt {
    Prompt {
        question: "What code did we give the guest for the key box?".to_owned(),
        passages: vec![
            Passage {
                number: 1,
                title: "Reservation HMXK4Q".to_owned(),
                text: "Two guests arrive on Friday. They paid by bank transfer.".to_owned(),
            },
            Passage {
                number: 2,
                title: "Call with the guest".to_owned(),
                text: "The guest could not open the key box. We sent her the backup code 4471. Parking is in the garage.".to_owned(),
            },
        ],
        max_tokens: 80,
    }
}

#[test]
fn the_extractive_answer_quotes_the_most_relevant_sentence_with_its_citation() {
    let dir = workspace_root().join("models/weights/all-MiniLM-L6-v2");
    let embedder =
        BertEmbedder::load(&dir, &EmbedderConfig::default()).expect("the embedder loads");
    let g = ExtractiveGenerator::new(Arc::new(embedder));
    let answer = g.generate(&prompt()).expect("an answer");
    assert!(answer.contains("backup code 4471. [2]"), "{answer}");
    assert!(
        !answer.contains("bank transfer"),
        "an unrelated sentence was quoted: {answer}"
    );
    assert!(answer.matches('[').count() <= g.max_sentences, "{answer}");
}

#[test]
fn the_gguf_tokenizer_gives_the_reference_token_ids() {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("tests/fixtures/smollm2-tokens.json"))
            .expect("fixture"),
    )
    .expect("JSON");
    let tokenizer = gguf_tokenizer(&smollm2_dir().join(SMOLLM2_GGUF))
        .unwrap_or_else(|e| panic!("run models/fetch.sh SmolLM2-135M-Instruct: {e}"));
    let items = fixture["items"].as_array().expect("items");
    assert!(!items.is_empty());
    for item in items {
        let text = item["text"].as_str().expect("text");
        let want: Vec<u32> = item["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|v| v.as_u64().expect("id") as u32)
            .collect();
        let got = tokenizer
            .encode(text, false)
            .expect("encode")
            .get_ids()
            .to_vec();
        assert_eq!(got, want, "{text:?}");
        let back = tokenizer.decode(&got, false).expect("decode");
        assert_eq!(back, text, "decoding gives the text back");
    }
}

static LOCAL: OnceLock<LocalGenerator> = OnceLock::new();

fn local() -> &'static LocalGenerator {
    LOCAL.get_or_init(|| {
        LocalGenerator::load(smollm2_dir())
            .unwrap_or_else(|e| panic!("run models/fetch.sh SmolLM2-135M-Instruct: {e}"))
    })
}

#[test]
fn the_local_model_answers_a_grounded_question_in_streamed_pieces() {
    let g = local();
    let mut pieces = Vec::new();
    let answer = g
        .generate_stream(&prompt(), &mut |p| pieces.push(p.to_owned()))
        .expect("an answer");
    assert!(!answer.trim().is_empty());
    assert!(pieces.len() > 1, "the answer streamed: {pieces:?}");
    assert_eq!(pieces.concat(), answer);
    assert!(
        !answer.contains("<|im_end|>") && !answer.contains("<|im_start|>"),
        "{answer}"
    );
    assert!(
        answer.contains("4471"),
        "the grounded fact is in the answer: {answer}"
    );
}

#[test]
fn a_prompt_beyond_the_local_context_is_refused_not_truncated_silently() {
    let mut p = prompt();
    p.passages[0].text = "word ".repeat(5_000);
    let err = local().generate(&p).expect_err("too long");
    assert!(err.to_string().contains("exceeds"), "{err}");
}
