//! The benchmark's texts: short (~12 tokens) and long (~128 tokens) operations messages, made
//! deterministically so every run and every peer embeds exactly the same strings.

use concierge_models::{Embedder, ModelError};

const SUBJECTS: [&str; 8] = [
    "The guest in unit 4",
    "The caller from the harbour flat",
    "Our cleaner at the city loft",
    "The family in apartment 12",
    "A guest with a late flight",
    "The owner of the garden studio",
    "The host of reservation HMXK4Q",
    "A traveller booked for Friday",
];
const PREDICATES: [&str; 8] = [
    "asked about a late check-in.",
    "reported that the wifi is down.",
    "wants the cleaning moved to 3pm.",
    "called twice about the deposit refund.",
    "left a voicemail about parking.",
    "cancelled the booking on Tuesday.",
    "needs extra towels and a crib.",
    "complained about noise after midnight.",
];

/// `count` short texts, each one sentence of about 12 tokens.
pub fn short_texts(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            format!(
                "{} {}",
                SUBJECTS[i % SUBJECTS.len()],
                PREDICATES[(i / SUBJECTS.len() + i) % PREDICATES.len()]
            )
        })
        .collect()
}

/// `count` long texts of at most `tokens` tokens each (special tokens included), built from the
/// short sentences in varying order until the next sentence would not fit.
pub fn long_texts(
    embedder: &dyn Embedder,
    count: usize,
    tokens: usize,
) -> Result<Vec<String>, ModelError> {
    let sentences = short_texts(SUBJECTS.len() * PREDICATES.len());
    (0..count)
        .map(|i| {
            let mut text = String::new();
            for j in 0.. {
                let next = &sentences[(i * 7 + j * 5) % sentences.len()];
                let candidate = if text.is_empty() {
                    next.clone()
                } else {
                    format!("{text} {next}")
                };
                if embedder.count_tokens(&candidate)? > tokens {
                    break;
                }
                text = candidate;
            }
            Ok(text)
        })
        .collect()
}

/// Token lengths (special tokens included) the backlog's chunks cycle through: a transcript
/// chunked at the model's 256-token limit gives full windows and a shorter last one; a booking or
/// a short call is one small chunk.
pub const BACKLOG_TOKENS: [usize; 5] = [32, 64, 128, 192, 256];

/// Distinct texts per length in the backlog (the rest repeat them, in a different order).
const BACKLOG_DISTINCT_PER_LENGTH: usize = 64;

/// `count` chunk-like texts for the backlog benchmark: lengths cycle through [`BACKLOG_TOKENS`]
/// so every indexer call mixes them, as a real backlog does.
pub fn backlog_texts(embedder: &dyn Embedder, count: usize) -> Result<Vec<String>, ModelError> {
    let pools = BACKLOG_TOKENS
        .iter()
        .map(|&tokens| long_texts(embedder, BACKLOG_DISTINCT_PER_LENGTH, tokens))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((0..count)
        .map(|i| {
            let pool = &pools[i % pools.len()];
            pool[(i / pools.len()) * 7 % pool.len()].clone()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_texts_are_deterministic_and_varied() {
        let a = short_texts(64);
        assert_eq!(a, short_texts(64));
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(distinct.len(), 64);
    }
}
