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
    /// Threads the embedder computes on (its own pool; concurrent callers share it). With more
    /// than one, a call of several texts is split into one share per thread, each embedded on its
    /// own (a backlog drains up to that many times faster); a single text spreads its products
    /// over the pool. One is the default, so ingest leaves the other cores to queries.
    pub threads: usize,
    /// The most texts one forward pass takes. Texts are sorted by length first, so each batch is
    /// padded only to its own longest text.
    pub batch_size: usize,
    /// Overrides the model's own token limit (from `sentence_bert_config.json`), if lower.
    pub max_tokens: Option<usize>,
    /// Which implementation of the encoder runs.
    pub backend: Backend,
}

/// The implementation of the BERT encoder an embedder runs. Both load the same weights and
/// compute the same vectors (the tests hold them to sentence-transformers' reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backend {
    /// Our inference forward pass on candle's `gemm`: packed tokens (no padding), fused kernels.
    /// Several times faster; the default.
    #[default]
    Native,
    /// candle-transformers' `BertModel`, on padded batches: the reference implementation.
    CandleBert,
}

impl Backend {
    /// The name used in configuration and reports (`native`, `candle-bert`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Native => "native",
            Backend::CandleBert => "candle-bert",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s {
            "native" => Ok(Backend::Native),
            "candle-bert" => Ok(Backend::CandleBert),
            other => Err(ModelError::InvalidSetting(format!(
                "backend {other:?} is unknown (use \"native\" or \"candle-bert\")"
            ))),
        }
    }
}

impl Default for EmbedderConfig {
    fn default() -> Self {
        Self {
            threads: 1,
            batch_size: 32,
            max_tokens: None,
            backend: Backend::Native,
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
    fn backends_parse_from_their_names() {
        for backend in [Backend::Native, Backend::CandleBert] {
            assert_eq!(backend.name().parse::<Backend>().expect("parse"), backend);
        }
        assert!("onnx".parse::<Backend>().is_err());
    }

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
