//! Splitting a document into the chunks that are embedded and indexed: overlapping windows of at
//! most the embedder's token limit, cut at sentence (and line) boundaries where possible, each
//! with a stable `u64` id shared by the dense and keyword indexes.

use sha2::{Digest, Sha256};
use unicode_segmentation::UnicodeSegmentation;

use crate::error::Result;

/// How documents are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkingConfig {
    /// Token budget of one chunk, special tokens and the title prefix included.
    pub max_tokens: usize,
    /// Tokens of the previous window repeated at the start of the next one (whole sentences).
    pub overlap_tokens: usize,
}

impl ChunkingConfig {
    /// Windows as long as the embedder reads, with an eighth of them repeated.
    pub fn for_max_tokens(max_tokens: usize) -> Self {
        ChunkingConfig {
            max_tokens,
            overlap_tokens: max_tokens / 8,
        }
    }
}

/// One window of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// Stable id: a hash of the document id, position and text.
    pub id: u64,
    /// Position in the document (0-based).
    pub ordinal: u32,
    /// The window's text (a slice of the document's text, or its title when it has no text).
    pub text: String,
}

impl Chunk {
    /// What is embedded: the title gives each window its context.
    pub fn embedding_text(&self, title: &str) -> String {
        if title.is_empty() || self.text == title {
            self.text.clone()
        } else {
            format!("{title}\n{}", self.text)
        }
    }
}

/// The stable id of a chunk.
pub(crate) fn chunk_id(doc_id: &str, ordinal: u32, text: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(doc_id.as_bytes());
    h.update([0]);
    h.update(ordinal.to_be_bytes());
    h.update(text.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Cuts `text` into windows. `count` gives the number of tokens of a piece of text without
/// special tokens.
pub(crate) fn chunk(
    doc_id: &str,
    title: &str,
    text: &str,
    config: ChunkingConfig,
    count: &dyn Fn(&str) -> Result<usize>,
) -> Result<Vec<Chunk>> {
    let body = text.trim();
    if body.is_empty() {
        let title = title.trim();
        return Ok(vec![Chunk {
            id: chunk_id(doc_id, 0, title),
            ordinal: 0,
            text: title.to_owned(),
        }]);
    }
    // Room for [CLS], [SEP], the title and a newline; never less than a quarter of the window.
    let title_tokens = if title.is_empty() {
        0
    } else {
        count(title)? + 1
    };
    let budget = config
        .max_tokens
        .saturating_sub(2 + title_tokens)
        .max(config.max_tokens / 4)
        .max(8);
    if count(body)? <= budget {
        return Ok(vec![Chunk {
            id: chunk_id(doc_id, 0, body),
            ordinal: 0,
            text: body.to_owned(),
        }]);
    }

    // Sentences (UAX #29 also breaks after line feeds), each cut further if alone over budget.
    let mut pieces: Vec<(usize, usize, usize)> = Vec::new(); // (start, end, tokens) in `text`
    for (start, sentence) in text.split_sentence_bound_indices() {
        if sentence.trim().is_empty() {
            continue;
        }
        let tokens = count(sentence)?;
        if tokens <= budget {
            pieces.push((start, start + sentence.len(), tokens));
        } else {
            split_long(text, start, sentence, budget, count, &mut pieces)?;
        }
    }

    let mut chunks = Vec::new();
    let mut i = 0;
    while i < pieces.len() {
        let mut j = i;
        let mut used = 0;
        while j < pieces.len() && (j == i || used + pieces[j].2 <= budget) {
            used += pieces[j].2;
            j += 1;
        }
        let window = text[pieces[i].0..pieces[j - 1].1].trim();
        let ordinal = chunks.len() as u32;
        chunks.push(Chunk {
            id: chunk_id(doc_id, ordinal, window),
            ordinal,
            text: window.to_owned(),
        });
        if j >= pieces.len() {
            break;
        }
        // Step back over whole pieces worth at most `overlap_tokens`, but always move forward.
        let mut next = j;
        let mut overlap = 0;
        while next > i + 1 && overlap + pieces[next - 1].2 <= config.overlap_tokens {
            overlap += pieces[next - 1].2;
            next -= 1;
        }
        i = next;
    }
    Ok(chunks)
}

/// Cuts an over-long sentence at word boundaries into pieces within `budget`.
fn split_long(
    text: &str,
    offset: usize,
    sentence: &str,
    budget: usize,
    count: &dyn Fn(&str) -> Result<usize>,
    out: &mut Vec<(usize, usize, usize)>,
) -> Result<()> {
    let mut start = 0;
    let mut tokens = 0;
    let mut end = 0;
    for (at, word) in sentence.split_word_bound_indices() {
        let word_tokens = if word.trim().is_empty() {
            0
        } else {
            count(word)?
        };
        if tokens + word_tokens > budget && end > start {
            out.push((offset + start, offset + end, tokens));
            start = at;
            tokens = 0;
        }
        tokens += word_tokens;
        end = at + word.len();
        if tokens > budget {
            // One "word" longer than the window (a base64 blob): keep it whole, the embedder
            // truncates it; the keyword index still sees all of it.
            out.push((offset + start, offset + end, tokens));
            start = end;
            tokens = 0;
        }
    }
    if end > start && !text[offset + start..offset + end].trim().is_empty() {
        out.push((offset + start, offset + end, tokens));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One token per whitespace-separated word: enough to test the windowing.
    fn words(s: &str) -> Result<usize> {
        Ok(s.split_whitespace().count())
    }

    fn config(max: usize, overlap: usize) -> ChunkingConfig {
        ChunkingConfig {
            max_tokens: max,
            overlap_tokens: overlap,
        }
    }

    #[test]
    fn a_short_text_is_one_chunk_and_its_id_is_stable() {
        let a = chunk(
            "a:b:1",
            "T",
            "Hello there. All good.",
            config(64, 8),
            &words,
        )
        .expect("chunks");
        let b = chunk(
            "a:b:1",
            "T",
            "Hello there. All good.",
            config(64, 8),
            &words,
        )
        .expect("chunks");
        assert_eq!(a.len(), 1);
        assert_eq!(a, b);
        let other = chunk(
            "a:b:2",
            "T",
            "Hello there. All good.",
            config(64, 8),
            &words,
        )
        .expect("chunks");
        assert_ne!(a[0].id, other[0].id, "ids differ between documents");
    }

    #[test]
    fn long_texts_become_overlapping_windows_within_budget_cut_at_sentences() {
        let text: String = (0..40)
            .map(|i| format!("Sentence number {i} has six words. "))
            .collect();
        let chunks = chunk("a:b:1", "", &text, config(32, 8), &words).expect("chunks");
        assert!(chunks.len() > 5, "{} chunks", chunks.len());
        for c in &chunks {
            assert!(
                words(&c.text).expect("count") <= 30,
                "over budget: {}",
                c.text
            );
            assert!(
                c.text.starts_with("Sentence") && c.text.ends_with("words."),
                "not cut at sentences: {:?}",
                c.text
            );
        }
        // Consecutive windows share their boundary sentence.
        let last_of_first = chunks[0].text.rsplit(". ").next().expect("has sentences");
        assert!(
            chunks[1].text.contains(last_of_first.trim_end_matches('.')),
            "no overlap"
        );
        // Every sentence is in some window.
        for i in 0..40 {
            assert!(
                chunks
                    .iter()
                    .any(|c| c.text.contains(&format!("number {i} "))),
                "sentence {i} lost"
            );
        }
    }

    #[test]
    fn a_sentence_longer_than_the_window_is_cut_at_words() {
        let text = (0..100)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let chunks = chunk("a:b:1", "", &text, config(20, 0), &words).expect("chunks");
        assert!(chunks.len() >= 5);
        assert!(chunks.iter().all(|c| words(&c.text).expect("count") <= 18));
        assert!(chunks.last().expect("some").text.ends_with("w99"));
    }

    #[test]
    fn a_document_with_only_a_title_is_one_chunk_of_its_title() {
        let chunks = chunk("a:b:1", "Door code", "  ", config(20, 0), &words).expect("chunks");
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].text, "Door code");
    }
}
