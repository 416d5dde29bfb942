//! Word-piece tokenisation for the embedder, and the padded id matrices a forward pass takes.
//!
//! The `tokenizer.json` shipped with all-MiniLM-L6-v2 pads every input to 128 tokens and truncates
//! at 128, which is neither what sentence-transformers does nor cheap: this module replaces both
//! settings. Truncation happens at the embedder's limit (256 for all-MiniLM-L6-v2, special tokens
//! included), and padding happens per batch, to the longest text of that batch only.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::ModelError;

/// A tokenizer set up for embedding: truncation at `max_tokens`, no padding of its own.
#[derive(Debug, Clone)]
pub(crate) struct EmbeddingTokenizer {
    inner: Tokenizer,
    /// The same tokenizer without truncation, for counting.
    counter: Tokenizer,
    max_tokens: usize,
    pad_id: u32,
}

/// One tokenised text: its word-piece ids and token type ids, unpadded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenIds {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}

/// A batch padded to its longest member, row-major `rows × width`, ready to become tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PaddedBatch {
    pub rows: usize,
    pub width: usize,
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// 1 for a real token, 0 for padding.
    pub mask: Vec<u32>,
}

impl EmbeddingTokenizer {
    /// Loads `tokenizer.json` and replaces its truncation and padding settings.
    pub fn load(path: &Path, max_tokens: usize) -> Result<Self, ModelError> {
        let mut inner = Tokenizer::from_file(path).map_err(|err| {
            ModelError::Tokenizer(format!("cannot load {}: {err}", path.display()))
        })?;
        let pad_id = inner
            .get_padding()
            .map(|padding| padding.pad_id)
            .or_else(|| inner.token_to_id("[PAD]"))
            .unwrap_or(0);
        inner.with_padding(None);
        let mut counter = inner.clone();
        counter.with_truncation(None)?;
        inner.with_truncation(Some(TruncationParams {
            max_length: max_tokens,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        }))?;
        Ok(Self {
            inner,
            counter,
            max_tokens,
            pad_id,
        })
    }

    /// The truncation limit, special tokens included.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Tokenises one text, truncated at the limit.
    pub fn encode(&self, text: &str) -> Result<TokenIds, ModelError> {
        let encoding = self.inner.encode(text, true)?;
        Ok(TokenIds {
            ids: encoding.get_ids().to_vec(),
            type_ids: encoding.get_type_ids().to_vec(),
        })
    }

    /// The number of tokens of `text` before truncation, special tokens included.
    pub fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        Ok(self.counter.encode(text, true)?.get_ids().len())
    }

    /// Pads tokenised texts to the longest of them.
    pub fn pad(&self, texts: &[&TokenIds]) -> PaddedBatch {
        pad_batch(texts, self.pad_id)
    }
}

/// Pads `texts` to the longest one with `pad_id` (token type 0, mask 0).
pub(crate) fn pad_batch(texts: &[&TokenIds], pad_id: u32) -> PaddedBatch {
    let rows = texts.len();
    let width = texts.iter().map(|t| t.ids.len()).max().unwrap_or(0);
    let mut batch = PaddedBatch {
        rows,
        width,
        ids: Vec::with_capacity(rows * width),
        type_ids: Vec::with_capacity(rows * width),
        mask: Vec::with_capacity(rows * width),
    };
    for text in texts {
        let pad = width - text.ids.len();
        batch.ids.extend_from_slice(&text.ids);
        batch.ids.extend(std::iter::repeat_n(pad_id, pad));
        batch.type_ids.extend_from_slice(&text.type_ids);
        batch.type_ids.extend(std::iter::repeat_n(0, pad));
        batch.mask.extend(std::iter::repeat_n(1, text.ids.len()));
        batch.mask.extend(std::iter::repeat_n(0, pad));
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal BERT-style tokenizer.json that, like all-MiniLM-L6-v2's, pads to a fixed 8 and
    /// truncates at 4.
    const TINY_TOKENIZER: &str = r###"{
      "version": "1.0",
      "truncation": {"max_length": 4, "strategy": "LongestFirst", "stride": 0, "direction": "Right"},
      "padding": {"strategy": {"Fixed": 8}, "direction": "Right", "pad_to_multiple_of": null,
                  "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
      "added_tokens": [],
      "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                     "strip_accents": null, "lowercase": true},
      "pre_tokenizer": {"type": "BertPreTokenizer"},
      "post_processor": {"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                   {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                 {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
        "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                           "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
      "decoder": null,
      "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                "max_input_chars_per_word": 100,
                "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "guest": 4, "called": 5,
                          "twice": 6, "about": 7, "the": 8, "wifi": 9}}
    }"###;

    fn tiny(max_tokens: usize) -> EmbeddingTokenizer {
        let path = std::env::temp_dir().join(format!(
            "concierge-tiny-tokenizer-{}.json",
            std::process::id()
        ));
        std::fs::write(&path, TINY_TOKENIZER).expect("write tokenizer");
        EmbeddingTokenizer::load(&path, max_tokens).expect("load tokenizer")
    }

    #[test]
    fn the_shipped_fixed_padding_is_replaced_by_no_padding() {
        let tokenizer = tiny(256);
        let ids = tokenizer.encode("guest called").expect("encode");
        assert_eq!(
            ids.ids,
            vec![2, 4, 5, 3],
            "no padding to the file's fixed 8"
        );
    }

    #[test]
    fn the_shipped_truncation_is_replaced_by_the_embedders_limit() {
        let text = "the guest called twice about the wifi";
        let long = tiny(256).encode(text).expect("encode");
        assert_eq!(
            long.ids.len(),
            9,
            "7 words + [CLS] + [SEP], not the file's limit of 4"
        );
        let short = tiny(5).encode(text).expect("encode");
        assert_eq!(
            short.ids,
            vec![2, 8, 4, 5, 3],
            "truncated at 5 including the special tokens"
        );
        assert_eq!(tiny(5).count_tokens(text).expect("count"), 9);
    }

    #[test]
    fn a_batch_is_padded_to_its_longest_text_only() {
        let a = TokenIds {
            ids: vec![2, 4, 3],
            type_ids: vec![0, 0, 0],
        };
        let b = TokenIds {
            ids: vec![2, 4, 5, 6, 3],
            type_ids: vec![0; 5],
        };
        let batch = pad_batch(&[&a, &b], 0);
        assert_eq!((batch.rows, batch.width), (2, 5));
        assert_eq!(batch.ids, vec![2, 4, 3, 0, 0, 2, 4, 5, 6, 3]);
        assert_eq!(batch.mask, vec![1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
        assert_eq!(batch.type_ids, vec![0; 10]);
    }

    #[test]
    fn an_empty_batch_pads_to_nothing() {
        let batch = pad_batch(&[], 0);
        assert_eq!((batch.rows, batch.width), (0, 0));
        assert!(batch.ids.is_empty());
    }
}
