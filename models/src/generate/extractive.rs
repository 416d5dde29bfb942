//! The extractive answerer, the default when no LLM is configured: it splits the passages into
//! sentences, ranks them by the embedder's similarity to the question, and answers with the
//! best few, in passage order, each followed by its citation. It never writes a word the
//! passages do not contain.

use std::sync::Arc;

use unicode_segmentation::UnicodeSegmentation;

use super::{Generator, Prompt};
use crate::{Embedder, ModelError};

/// Most sentences ranked per answer (the first ones of the passages, in order).
const MAX_CANDIDATES: usize = 96;
/// Longest sentence quoted, in characters.
const MAX_SENTENCE_CHARS: usize = 300;

/// Answers with the passages' own sentences.
pub struct ExtractiveGenerator {
    embedder: Arc<dyn Embedder>,
    /// Sentences in an answer.
    pub max_sentences: usize,
    /// Sentences less similar than this to the question are left out (the best one stays).
    pub min_similarity: f32,
}

impl std::fmt::Debug for ExtractiveGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtractiveGenerator")
            .field("model", &self.embedder.model_id())
            .field("max_sentences", &self.max_sentences)
            .finish_non_exhaustive()
    }
}

impl ExtractiveGenerator {
    /// Ranks with `embedder` (the one that indexes the passages).
    pub fn new(embedder: Arc<dyn Embedder>) -> Self {
        ExtractiveGenerator {
            embedder,
            max_sentences: 3,
            min_similarity: 0.25,
        }
    }
}

fn quote(sentence: &str) -> String {
    let s = sentence.split_whitespace().collect::<Vec<_>>().join(" ");
    match s.char_indices().nth(MAX_SENTENCE_CHARS) {
        Some((cut, _)) => format!("{}…", s[..cut].trim_end()),
        None => s,
    }
}

impl Generator for ExtractiveGenerator {
    fn name(&self) -> String {
        "extractive".to_owned()
    }

    fn generate(&self, prompt: &Prompt) -> Result<String, ModelError> {
        // (passage number, position, sentence)
        // Sentences of two words or more; when the passages hold none, any that is not blank
        // (a passage of one word still answers better than no answer at all).
        let mut candidates: Vec<(usize, usize, String)> = Vec::new();
        for min_words in [2, 1] {
            for p in &prompt.passages {
                for (i, s) in p.text.unicode_sentences().enumerate() {
                    let s = quote(s);
                    if s.split_whitespace().count() >= min_words
                        && !candidates.iter().any(|(_, _, c)| *c == s)
                        && candidates.len() < MAX_CANDIDATES
                    {
                        candidates.push((p.number, i, s));
                    }
                }
            }
            if !candidates.is_empty() {
                break;
            }
        }
        if candidates.is_empty() {
            return Ok(String::new());
        }
        let mut texts: Vec<&str> = vec![prompt.question.as_str()];
        texts.extend(candidates.iter().map(|(_, _, s)| s.as_str()));
        let vectors = self.embedder.embed(&texts)?;
        let (question, sentences) = vectors.split_first().ok_or_else(|| {
            ModelError::InvalidSetting("the embedder returned no vector".to_owned())
        })?;
        let mut ranked: Vec<(f32, usize)> = sentences
            .iter()
            .enumerate()
            .map(|(i, v)| (v.iter().zip(question).map(|(a, b)| a * b).sum::<f32>(), i))
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut chosen: Vec<usize> = ranked
            .iter()
            .enumerate()
            .filter(|(rank, (score, _))| *rank == 0 || *score >= self.min_similarity)
            .take(self.max_sentences.max(1))
            .map(|(_, (_, i))| *i)
            .collect();
        chosen.sort_by_key(|i| (candidates[*i].0, candidates[*i].1));
        Ok(chosen
            .iter()
            .map(|i| {
                let (number, _, s) = &candidates[*i];
                format!("{s} [{number}]")
            })
            .collect::<Vec<_>>()
            .join(" "))
    }
}
