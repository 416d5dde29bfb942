//! [`BertEmbedder`]: a BERT sentence embedder on candle, equivalent to sentence-transformers.
//!
//! Loads a Hugging Face model directory (see [`ModelDir`]), tokenises with the `tokenizers` crate,
//! and runs the encoder on its own thread pool: by default our inference forward pass
//! (`bert_forward`: packed tokens, no padding), or candle-transformers' `BertModel` on batches
//! sorted by length and padded to their longest text, then mean pooling and L2 normalisation.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use rayon::prelude::*;

use crate::bert_forward::BertForward;
use crate::pooling::mean_pool_normalized;
use crate::tokenize::{EmbeddingTokenizer, TokenIds};
use crate::{Backend, Embedder, EmbedderConfig, ModelDir, ModelError};

/// The most tokens one native forward pass takes (one text of the model's 256-token limit, or
/// several shorter ones): its activations (the largest, 256 × 1536 floats, 1.5 MB) then stay in
/// cache between the layers' passes over them. At 8192, long texts in batches of 16 ran at
/// 0.89× ONNX Runtime; at 256, 0.98×, and short texts in batches of 64 went 1.28× → 1.50×.
const MAX_TOKENS_PER_PASS: usize = 256;

/// The encoder implementation an embedder runs.
enum Encoder {
    Native(BertForward),
    Candle(BertModel),
}

/// A BERT-family sentence embedder (all-MiniLM-L6-v2 and its kin) on candle, on the CPU.
///
/// Cheap to share: wrap it in an `Arc` and call [`Embedder::embed`] from any thread; the forward
/// passes run on the embedder's own pool of [`EmbedderConfig::threads`] threads.
pub struct BertEmbedder {
    /// Shared with embedders made by [`BertEmbedder::with_own_pool`] (weights loaded once).
    encoder: Arc<Encoder>,
    tokenizer: EmbeddingTokenizer,
    pool: rayon::ThreadPool,
    device: Device,
    batch_size: usize,
    dim: usize,
    model_id: String,
}

impl std::fmt::Debug for BertEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertEmbedder")
            .field("model_id", &self.model_id)
            .field("dim", &self.dim)
            .field("max_tokens", &self.tokenizer.max_tokens())
            .field("threads", &self.pool.current_num_threads())
            .field("batch_size", &self.batch_size)
            .field(
                "backend",
                &match *self.encoder {
                    Encoder::Native(_) => Backend::Native,
                    Encoder::Candle(_) => Backend::CandleBert,
                },
            )
            .finish_non_exhaustive()
    }
}

impl BertEmbedder {
    /// Loads the model in `dir` (`config.json`, `tokenizer.json`, `model.safetensors`, and the
    /// optional sentence-transformers files).
    pub fn load(dir: impl AsRef<Path>, config: &EmbedderConfig) -> Result<Self, ModelError> {
        config.validate()?;
        let dir = ModelDir::open(dir)?;
        dir.check_mean_pooling()?;
        let bert_config: BertConfig = dir.read_json(&dir.config_path())?;
        if bert_config.hidden_size == 0 || bert_config.max_position_embeddings < 2 {
            return Err(ModelError::Unsupported {
                path: dir.path().to_path_buf(),
                reason: "config.json has no usable hidden_size or max_position_embeddings".into(),
            });
        }
        let model_limit = dir
            .max_seq_length()?
            .unwrap_or(bert_config.max_position_embeddings);
        let max_tokens = model_limit
            .min(bert_config.max_position_embeddings)
            .min(config.max_tokens.unwrap_or(usize::MAX));

        let device = Device::Cpu;
        let weights_path = dir.weights_path();
        let weights = std::fs::read(&weights_path).map_err(|source| ModelError::Io {
            path: weights_path.clone(),
            source,
        })?;
        let encoder = match config.backend {
            Backend::Native => {
                Encoder::Native(BertForward::load(&weights, &weights_path, &bert_config)?)
            }
            Backend::CandleBert => {
                let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)?;
                Encoder::Candle(BertModel::load(vb, &bert_config)?)
            }
        };
        let tokenizer = EmbeddingTokenizer::load(&dir.tokenizer_path(), max_tokens)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(|i| format!("embed-{i}"))
            .build()?;
        let embedder = Self {
            encoder: Arc::new(encoder),
            tokenizer,
            pool,
            device,
            batch_size: config.batch_size,
            dim: bert_config.hidden_size,
            model_id: dir.model_id(),
        };
        tracing::info!(
            model = %embedder.model_id,
            dim = embedder.dim,
            max_tokens,
            threads = config.threads,
            backend = config.backend.name(),
            "embedder loaded"
        );
        Ok(embedder)
    }

    /// Another embedder over the same weights (no second copy in memory) with its own pool of
    /// `threads` threads: work on one never queues behind work on the other. The daemon gives
    /// queries their own, so a search never waits for the indexer's batch to finish.
    pub fn with_own_pool(&self, threads: usize) -> Result<BertEmbedder, ModelError> {
        let config = EmbedderConfig {
            threads,
            batch_size: self.batch_size,
            ..EmbedderConfig::default()
        };
        config.validate()?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("embed-q{i}"))
            .build()?;
        Ok(BertEmbedder {
            encoder: Arc::clone(&self.encoder),
            tokenizer: self.tokenizer.clone(),
            pool,
            device: self.device.clone(),
            batch_size: self.batch_size,
            dim: self.dim,
            model_id: self.model_id.clone(),
        })
    }

    /// One forward pass of candle's `BertModel` over texts already tokenised, padded to the
    /// longest of them, in the order given.
    fn embed_padded(
        &self,
        model: &BertModel,
        texts: &[&TokenIds],
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let batch = self.tokenizer.pad(texts);
        let shape = (batch.rows, batch.width);
        let ids = Tensor::from_vec(batch.ids, shape, &self.device)?;
        let type_ids = Tensor::from_vec(batch.type_ids, shape, &self.device)?;
        let mask = Tensor::from_vec(batch.mask, shape, &self.device)?;
        let hidden = model.forward(&ids, &type_ids, Some(&mask))?;
        mean_pool_normalized(&hidden, &mask)
    }

    fn embed_in_pool(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        let tokenized = texts
            .iter()
            .map(|text| self.tokenizer.encode(text))
            .collect::<Result<Vec<_>, _>>()?;
        match &*self.encoder {
            Encoder::Native(forward) => {
                let threads = rayon::current_num_threads();
                let parts = split_by_tokens(&tokenized, threads);
                if parts.len() < 2 {
                    // One text (or one thread): the pass itself spreads over the pool.
                    return embed_part(forward, &tokenized, self.batch_size, threads);
                }
                // Several texts and threads: each thread embeds its own share of the texts on its
                // own (data parallel, like one session per core), which scales better than
                // splitting every product of one pass.
                let vectors = parts
                    .into_par_iter()
                    .map(|part| embed_part(forward, &tokenized[part], self.batch_size, 1))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(vectors.into_iter().flatten().collect())
            }
            Encoder::Candle(model) => {
                // Longest first: similar lengths share a batch, so padding stays small.
                let mut order: Vec<usize> = (0..tokenized.len()).collect();
                order.sort_by_key(|&i| std::cmp::Reverse(tokenized[i].ids.len()));
                let mut out = vec![Vec::new(); texts.len()];
                for chunk in order.chunks(self.batch_size) {
                    let batch: Vec<&TokenIds> = chunk.iter().map(|&i| &tokenized[i]).collect();
                    let vectors = self.embed_padded(model, &batch)?;
                    for (&i, vector) in chunk.iter().zip(vectors) {
                        out[i] = vector;
                    }
                }
                Ok(out)
            }
        }
    }
}

/// Splits `texts` into at most `parts` consecutive ranges of about equal token counts (fewer when
/// there are fewer texts), none empty.
fn split_by_tokens(texts: &[TokenIds], parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.clamp(1, texts.len().max(1));
    let total: usize = texts.iter().map(|t| t.ids.len().max(1)).sum();
    let mut ranges = Vec::with_capacity(parts);
    let (mut start, mut seen) = (0, 0);
    for (i, text) in texts.iter().enumerate() {
        seen += text.ids.len().max(1);
        let done = ranges.len() + 1;
        let (left, to_make) = (texts.len() - (i + 1), parts.saturating_sub(done));
        // Close the current range once it holds its share (or when every later range needs one
        // of the texts left), always leaving a text for every later range.
        if done < parts && (seen * parts >= total * done || left == to_make) && left >= to_make {
            ranges.push(start..i + 1);
            start = i + 1;
        }
    }
    if start < texts.len() {
        ranges.push(start..texts.len());
    }
    ranges
}

/// Embeds `texts` in consecutive forward passes of at most `batch_size` texts and
/// `MAX_TOKENS_PER_PASS` tokens (no padding, so no sorting), each on up to `threads` threads.
fn embed_part(
    forward: &BertForward,
    texts: &[TokenIds],
    batch_size: usize,
    threads: usize,
) -> Result<Vec<Vec<f32>>, ModelError> {
    let mut out = Vec::with_capacity(texts.len());
    let mut start = 0;
    while start < texts.len() {
        let mut end = start;
        let mut tokens = 0;
        while end < texts.len()
            && end - start < batch_size
            && (end == start || tokens + texts[end].ids.len() <= MAX_TOKENS_PER_PASS)
        {
            tokens += texts[end].ids.len();
            end += 1;
        }
        let batch: Vec<&TokenIds> = texts[start..end].iter().collect();
        out.extend(forward.embed(&batch, threads)?);
        start = end;
    }
    Ok(out)
}

impl Embedder for BertEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.pool.install(|| self.embed_in_pool(texts))
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn max_tokens(&self) -> usize {
        self.tokenizer.max_tokens()
    }

    fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        self.tokenizer.count_tokens(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lengths: &[usize]) -> Vec<TokenIds> {
        lengths
            .iter()
            .map(|&n| TokenIds {
                ids: vec![1; n],
                type_ids: vec![0; n],
            })
            .collect()
    }

    fn tokens(texts: &[TokenIds], range: &std::ops::Range<usize>) -> usize {
        texts[range.clone()].iter().map(|t| t.ids.len()).sum()
    }

    #[test]
    fn a_split_covers_every_text_once_in_order_with_balanced_tokens() {
        let t = texts(&[10, 200, 30, 30, 30, 30, 30, 30, 10, 10]);
        let parts = split_by_tokens(&t, 2);
        assert_eq!(parts, vec![0..2, 2..10]);
        assert_eq!((tokens(&t, &parts[0]), tokens(&t, &parts[1])), (210, 200));
        let even = texts(&[16; 64]);
        assert_eq!(split_by_tokens(&even, 2), vec![0..32, 32..64]);
        assert_eq!(split_by_tokens(&even, 3), vec![0..22, 22..43, 43..64]);
    }

    #[test]
    fn a_split_never_makes_an_empty_part() {
        assert_eq!(split_by_tokens(&texts(&[5]), 2), vec![0..1]);
        assert_eq!(
            split_by_tokens(&texts(&[500, 1, 1]), 3),
            vec![0..1, 1..2, 2..3]
        );
        assert_eq!(
            split_by_tokens(&texts(&[1, 1, 500]), 3),
            vec![0..1, 1..2, 2..3]
        );
        assert_eq!(split_by_tokens(&texts(&[3, 3]), 1), vec![0..2]);
        assert!(split_by_tokens(&texts(&[]), 2).is_empty());
    }
}
