//! A BERT encoder forward pass written for inference: the texts of a batch are packed end to end
//! (no padding at all), every linear layer is one `gemm` call over all the batch's tokens with
//! pre-transposed weights (query, key and value fused), attention runs per text over that text's
//! own tokens only (so no mask is needed), and bias + GELU, residual + LayerNorm are fused passes.
//! Mean pooling and L2 normalisation close it.
//!
//! It loads the same `model.safetensors` as candle's `BertModel` and computes the same function
//! (checked against it and against sentence-transformers in the tests); it exists because it is
//! several times faster on a CPU.

mod kernels;
mod matmul;
mod packed;
mod tile_avx2;
mod weights;

use std::path::Path;

use candle_transformers::models::bert::{Config as BertConfig, HiddenAct};
use rayon::prelude::*;

use crate::ModelError;
use crate::pooling::normalize;
use crate::tokenize::TokenIds;
use kernels::{add_bias_residual_layer_norm, axpy, bias_gelu, layer_norm, softmax};
use matmul::{MatMut, MatRef, gemm_into};
use weights::{BertWeights, Dims, Linear};

/// Rows per parallel block in the row-wise passes.
const ROWS_PER_TASK: usize = 8;

/// `out = x · W` (bias not added) for `m` rows of `x`, on up to `threads` threads: on the packed
/// weights and our register tiles for fewer rows than `packed::max_rows()`, on `gemm` above.
fn linear(out: &mut [f32], x: &[f32], layer: &Linear, m: usize, threads: usize) {
    if m < packed::max_rows() {
        layer.packed.matmul(out, x, m, threads);
    } else {
        layer.panels.matmul(out, x, m, threads);
    }
}

/// Query rows per parallel block of attention.
const QUERY_ROWS_PER_TASK: usize = 32;

/// The encoder and its hyper-parameters.
#[derive(Debug)]
pub(crate) struct BertForward {
    weights: BertWeights,
    heads: usize,
    head_dim: usize,
    intermediate: usize,
    eps: f32,
}

/// Runs `f(first_row, rows)` over blocks of `ROWS_PER_TASK` rows of `data` (each row `width`
/// long), on the current rayon pool, or inline when `threads` is one.
fn for_row_blocks(
    data: &mut [f32],
    width: usize,
    threads: usize,
    f: impl Fn(usize, &mut [f32]) + Sync + Send,
) {
    let block = ROWS_PER_TASK * width;
    // Waking another thread costs more than a few rows of element-wise work.
    if threads <= 1 || data.len() < 4 * block {
        data.chunks_mut(block)
            .enumerate()
            .for_each(|(i, rows)| f(i * ROWS_PER_TASK, rows));
    } else {
        data.par_chunks_mut(block)
            .enumerate()
            .for_each(|(i, rows)| f(i * ROWS_PER_TASK, rows));
    }
}

impl BertForward {
    /// Loads the encoder from the bytes of `model.safetensors`, checked against `config`.
    pub fn load(bytes: &[u8], path: &Path, config: &BertConfig) -> Result<Self, ModelError> {
        let unsupported = |reason: String| ModelError::Unsupported {
            path: path.to_path_buf(),
            reason,
        };
        if config.hidden_act != HiddenAct::Gelu {
            return Err(unsupported(format!(
                "activation {:?} (only the exact GELU is implemented)",
                config.hidden_act
            )));
        }
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(unsupported(
                "hidden_size is not a multiple of num_attention_heads".into(),
            ));
        }
        let dims = Dims {
            vocab: config.vocab_size,
            hidden: config.hidden_size,
            intermediate: config.intermediate_size,
            layers: config.num_hidden_layers,
            positions: config.max_position_embeddings,
            token_types: config.type_vocab_size,
        };
        Ok(Self {
            weights: BertWeights::from_safetensors(bytes, path, dims)?,
            heads: config.num_attention_heads,
            head_dim: config.hidden_size / config.num_attention_heads,
            intermediate: config.intermediate_size,
            eps: config.layer_norm_eps as f32,
        })
    }

    /// The pooled, normalised vector of each text, in order, computed on up to `threads` threads
    /// of the current rayon pool (1: on the calling thread alone).
    pub fn embed(&self, texts: &[&TokenIds], threads: usize) -> Result<Vec<Vec<f32>>, ModelError> {
        let w = &self.weights;
        let h = w.hidden;
        let mut spans = Vec::with_capacity(texts.len());
        let mut m = 0;
        for text in texts {
            if text.ids.len() > w.positions {
                return Err(ModelError::InvalidSetting(format!(
                    "a text of {} tokens exceeds the model's {} positions",
                    text.ids.len(),
                    w.positions
                )));
            }
            spans.push(m..m + text.ids.len());
            m += text.ids.len();
        }
        if m == 0 {
            return Ok(vec![vec![0.0; h]; texts.len()]);
        }

        let mut x = self.embeddings(texts, m, threads)?;
        let mut qkv = vec![0.0; m * 3 * h];
        let mut ctx = vec![0.0; m * h];
        let mut tmp = vec![0.0; m * h];
        let mut inter = vec![0.0; m * self.intermediate];

        for layer in &w.layers {
            linear(&mut qkv, &x, &layer.qkv, m, threads);
            for_row_blocks(&mut qkv, 3 * h, threads, |_, rows| {
                for row in rows.chunks_exact_mut(3 * h) {
                    for (v, b) in row.iter_mut().zip(&layer.qkv.b) {
                        *v += b;
                    }
                }
            });
            self.attention(&qkv, &mut ctx, &spans, threads);
            linear(&mut tmp, &ctx, &layer.attn_out, m, threads);
            let norm = &layer.attn_norm;
            let (bias, gamma, beta) = (&layer.attn_out.b, &norm.gamma, &norm.beta);
            self.residual_norm(&mut x, &tmp, bias, gamma, beta, threads);
            linear(&mut inter, &x, &layer.intermediate, m, threads);
            for_row_blocks(&mut inter, self.intermediate, threads, |_, rows| {
                bias_gelu(rows, &layer.intermediate.b)
            });
            linear(&mut tmp, &inter, &layer.output, m, threads);
            let norm = &layer.output_norm;
            let (bias, gamma, beta) = (&layer.output.b, &norm.gamma, &norm.beta);
            self.residual_norm(&mut x, &tmp, bias, gamma, beta, threads);
        }

        Ok(spans
            .iter()
            .map(|span| {
                let mut mean = vec![0.0f32; h];
                for row in x[span.start * h..span.end * h].chunks_exact(h) {
                    axpy(&mut mean, 1.0, row);
                }
                let n = span.len().max(1) as f32;
                mean.iter_mut().for_each(|v| *v /= n);
                normalize(&mut mean);
                mean
            })
            .collect())
    }

    /// Word + position + token-type embeddings of every token, then LayerNorm.
    fn embeddings(
        &self,
        texts: &[&TokenIds],
        m: usize,
        threads: usize,
    ) -> Result<Vec<f32>, ModelError> {
        let w = &self.weights;
        let h = w.hidden;
        let mut x = vec![0.0f32; m * h];
        let mut rows = x.chunks_exact_mut(h);
        for text in texts {
            for (position, (&id, &kind)) in text.ids.iter().zip(&text.type_ids).enumerate() {
                let (id, kind) = (id as usize, kind as usize);
                if id >= w.vocab || kind >= w.token_types {
                    return Err(ModelError::Tokenizer(format!(
                        "token id {id} or type {kind} is outside the model's vocabulary"
                    )));
                }
                let Some(row) = rows.next() else { break };
                row.copy_from_slice(&w.word[id * h..(id + 1) * h]);
                axpy(row, 1.0, &w.position[position * h..(position + 1) * h]);
                axpy(row, 1.0, &w.token_type[kind * h..(kind + 1) * h]);
            }
        }
        let norm = &w.embed_norm;
        for_row_blocks(&mut x, h, threads, |_, rows| {
            layer_norm(rows, &norm.gamma, &norm.beta, self.eps)
        });
        Ok(x)
    }

    /// Scaled dot-product attention of every token over the tokens of its own text, all heads;
    /// `qkv` rows are `[q | k | v]`, `ctx` rows receive the heads side by side. The work is split
    /// into blocks of query rows that stay within one text; per block and head it is two `gemm`
    /// calls on strided views of `qkv` (scores = Q·Kᵀ/√d, then context = softmax(scores)·V).
    fn attention(
        &self,
        qkv: &[f32],
        ctx: &mut [f32],
        spans: &[std::ops::Range<usize>],
        threads: usize,
    ) {
        let h = self.weights.hidden;
        // One thread: whole texts (fewer, larger products); several: blocks to share out.
        let block_rows = if threads <= 1 {
            usize::MAX
        } else {
            QUERY_ROWS_PER_TASK
        };
        let mut blocks = Vec::new();
        let mut rest = ctx;
        for span in spans {
            let mut start = span.start;
            while start < span.end {
                let rows = block_rows.min(span.end - start);
                let (block, tail) = std::mem::take(&mut rest).split_at_mut(rows * h);
                blocks.push((span.clone(), start, block));
                rest = tail;
                start += rows;
            }
        }
        let run = |(span, first, out): (std::ops::Range<usize>, usize, &mut [f32])| {
            self.attend(qkv, &span, first, out);
        };
        if threads <= 1 || blocks.len() < 2 {
            blocks.into_iter().for_each(run);
        } else {
            blocks.into_par_iter().for_each(run);
        }
    }

    /// Attention of the query rows `first..first + out.len() / hidden` of the text `span`.
    fn attend(&self, qkv: &[f32], span: &std::ops::Range<usize>, first: usize, out: &mut [f32]) {
        let h = self.weights.hidden;
        let (dh, stride) = (self.head_dim, 3 * h);
        let rows = out.len() / h;
        let keys = span.len();
        let scale = 1.0 / (dh as f32).sqrt();
        let mut scores = vec![0.0f32; rows * keys];
        for head in 0..self.heads {
            let q = MatRef::new(&qkv[first * stride + head * dh..], rows, dh, stride, 1);
            let k_t = MatRef::new(
                &qkv[span.start * stride + h + head * dh..],
                dh,
                keys,
                1,
                stride,
            );
            gemm_into(MatMut::row_major(&mut scores, rows, keys), q, k_t, scale);
            for row in scores.chunks_exact_mut(keys) {
                softmax(row);
            }
            let v = MatRef::new(
                &qkv[span.start * stride + 2 * h + head * dh..],
                keys,
                dh,
                stride,
                1,
            );
            let probs = MatRef::row_major(&scores, rows, keys);
            gemm_into(
                MatMut::new(&mut out[head * dh..], rows, dh, h, 1),
                probs,
                v,
                1.0,
            );
        }
    }

    /// `x = LayerNorm(x + y + bias)`, row blocks on up to `threads` threads.
    fn residual_norm(
        &self,
        x: &mut [f32],
        y: &[f32],
        bias: &[f32],
        gamma: &[f32],
        beta: &[f32],
        threads: usize,
    ) {
        let h = self.weights.hidden;
        for_row_blocks(x, h, threads, |first, rows| {
            let y = &y[first * h..first * h + rows.len()];
            add_bias_residual_layer_norm(rows, y, bias, gamma, beta, self.eps);
        });
    }
}
