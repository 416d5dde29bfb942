//! The [`Embedder`] trait: what the rest of Concierge needs from a sentence embedder.

use crate::ModelError;

/// Turns texts into L2-normalised vectors.
///
/// Implementations are shared between threads (the daemon holds one instance behind an `Arc`), so
/// `embed` takes `&self`.
pub trait Embedder: Send + Sync {
    /// Embeds a batch of texts: one vector of [`dim`](Embedder::dim) values per text, in order,
    /// each with unit L2 norm. Texts longer than [`max_tokens`](Embedder::max_tokens) word pieces
    /// are truncated. An empty batch gives an empty result.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError>;

    /// The number of dimensions of every vector.
    fn dim(&self) -> usize;

    /// A stable identifier of the model (e.g. `all-MiniLM-L6-v2`), recorded with stored vectors so
    /// a model change is detected.
    fn model_id(&self) -> &str;

    /// The number of tokens (special tokens included) beyond which input is truncated; chunking
    /// uses it to size its windows.
    fn max_tokens(&self) -> usize;

    /// The number of tokens `text` has once tokenised for this model (special tokens included,
    /// before truncation).
    fn count_tokens(&self, text: &str) -> Result<usize, ModelError>;
}

/// How an embedder runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedderConfig {
    /// Threads the embedder computes on (its own pool; concurrent callers share it). One is the
    /// default: on a small shared machine, two threads per forward pass were slower overall.
    pub threads: usize,
    /// The most texts one forward pass takes. Texts are sorted by length first, so each batch is
    /// padded only to its own longest text.
    pub batch_size: usize,
    /// Overrides the model's own token limit (from `sentence_bert_config.json`), if lower.
    pub max_tokens: Option<usize>,
}

impl Default for EmbedderConfig {
    fn default() -> Self {
        Self {
            threads: 1,
            batch_size: 32,
            max_tokens: None,
        }
    }
}

impl EmbedderConfig {
    /// Checks the values, with an error that names the bad one.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.threads == 0 {
            return Err(ModelError::InvalidSetting(
                "threads must be at least 1".into(),
            ));
        }
        if self.batch_size == 0 {
            return Err(ModelError::InvalidSetting(
                "batch_size must be at least 1".into(),
            ));
        }
        if self.max_tokens.is_some_and(|t| t < 2) {
            return Err(ModelError::InvalidSetting(
                "max_tokens must leave room for the two special tokens (at least 2)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_single_threaded() {
        let config = EmbedderConfig::default();
        assert!(config.validate().is_ok());
        assert_eq!(config.threads, 1);
    }

    #[test]
    fn zero_threads_or_batch_is_rejected_with_the_setting_named() {
        let err = EmbedderConfig {
            threads: 0,
            ..Default::default()
        }
        .validate()
        .expect_err("must fail");
        assert!(err.to_string().contains("threads"), "{err}");
        let err = EmbedderConfig {
            batch_size: 0,
            ..Default::default()
        }
        .validate()
        .expect_err("must fail");
        assert!(err.to_string().contains("batch_size"), "{err}");
        let err = EmbedderConfig {
            max_tokens: Some(1),
            ..Default::default()
        }
        .validate()
        .expect_err("must fail");
        assert!(err.to_string().contains("max_tokens"), "{err}");
    }
}
