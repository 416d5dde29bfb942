//! [`BertEmbedder`]: a BERT sentence embedder on candle, equivalent to sentence-transformers.
//!
//! Loads a Hugging Face model directory (see [`ModelDir`]), tokenises with the `tokenizers` crate,
//! sorts each call's texts by length so every batch is padded only to its own longest text, runs
//! candle's BERT on its own thread pool, then mean-pools and L2-normalises.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};

use crate::pooling::mean_pool_normalized;
use crate::tokenize::{EmbeddingTokenizer, TokenIds};
use crate::{Embedder, EmbedderConfig, ModelDir, ModelError};

/// A BERT-family sentence embedder (all-MiniLM-L6-v2 and its kin) on candle, on the CPU.
///
/// Cheap to share: wrap it in an `Arc` and call [`Embedder::embed`] from any thread; the forward
/// passes run on the embedder's own pool of [`EmbedderConfig::threads`] threads.
pub struct BertEmbedder {
    model: BertModel,
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
            path: weights_path,
            source,
        })?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)?;
        let model = BertModel::load(vb, &bert_config)?;
        let tokenizer = EmbeddingTokenizer::load(&dir.tokenizer_path(), max_tokens)?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(|i| format!("embed-{i}"))
            .build()?;
        let embedder = Self {
            model,
            tokenizer,
            pool,
            device,
            batch_size: config.batch_size,
            dim: bert_config.hidden_size,
            model_id: dir.model_id(),
        };
        tracing::info!(model = %embedder.model_id, dim = embedder.dim, max_tokens, threads = config.threads, "embedder loaded");
        Ok(embedder)
    }

    /// One forward pass over texts already tokenised, in the order given.
    fn embed_batch(&self, texts: &[&TokenIds]) -> Result<Vec<Vec<f32>>, ModelError> {
        let batch = self.tokenizer.pad(texts);
        let shape = (batch.rows, batch.width);
        let ids = Tensor::from_vec(batch.ids, shape, &self.device)?;
        let type_ids = Tensor::from_vec(batch.type_ids, shape, &self.device)?;
        let mask = Tensor::from_vec(batch.mask, shape, &self.device)?;
        let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?;
        mean_pool_normalized(&hidden, &mask)
    }

    fn embed_in_pool(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        let tokenized = texts
            .iter()
            .map(|text| self.tokenizer.encode(text))
            .collect::<Result<Vec<_>, _>>()?;
        // Longest first: similar lengths share a batch, so padding stays small.
        let mut order: Vec<usize> = (0..tokenized.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(tokenized[i].ids.len()));
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<&TokenIds> = chunk.iter().map(|&i| &tokenized[i]).collect();
            let vectors = self.embed_batch(&batch)?;
            for (&i, vector) in chunk.iter().zip(vectors) {
                out[i] = vector;
            }
        }
        Ok(out)
    }
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
