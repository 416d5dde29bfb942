//! The weights of a BERT encoder, read from `model.safetensors` into the layout the forward pass
//! wants: linear layers transposed to `[in, out]` row-major (so a product is one `gemm` call with
//! contiguous rows), and the query, key and value projections fused into one `[hidden, 3·hidden]`
//! matrix (one product instead of three).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::matmul::ColumnPanels;
use super::packed::PackedWeights;
use crate::ModelError;

/// A linear layer as read: `y = x · w + b` with `w` as `[k, n]` row-major.
#[derive(Debug)]
struct Dense {
    w: Vec<f32>,
    b: Vec<f32>,
    k: usize,
    n: usize,
}

/// A linear layer `y = x · W + b`, `W` (`[k, n]`) stored in the two layouts its products read:
/// 16-column panels for our register tiles (products of few rows), 128-column panels for `gemm`.
#[derive(Debug)]
pub struct Linear {
    pub panels: ColumnPanels,
    pub packed: PackedWeights,
    pub b: Vec<f32>,
}

impl From<Dense> for Linear {
    fn from(d: Dense) -> Self {
        Self {
            packed: PackedWeights::pack(&d.w, d.k, d.n),
            panels: ColumnPanels::pack(&d.w, d.k, d.n),
            b: d.b,
        }
    }
}

/// LayerNorm's scale and shift.
#[derive(Debug)]
pub struct Norm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

/// One encoder layer.
#[derive(Debug)]
pub struct Layer {
    pub qkv: Linear,
    pub attn_out: Linear,
    pub attn_norm: Norm,
    pub intermediate: Linear,
    pub output: Linear,
    pub output_norm: Norm,
}

/// The whole encoder.
#[derive(Debug)]
pub struct BertWeights {
    pub word: Vec<f32>,
    pub position: Vec<f32>,
    pub token_type: Vec<f32>,
    pub embed_norm: Norm,
    pub layers: Vec<Layer>,
    pub hidden: usize,
    pub vocab: usize,
    pub positions: usize,
    pub token_types: usize,
}

/// Named tensors of a safetensors file, with the model-type prefix (`bert.`) some files use.
struct Tensors<'a> {
    map: HashMap<String, Tensor>,
    prefix: String,
    path: &'a Path,
}

impl Tensors<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let full = format!("{}{name}", self.prefix);
        let tensor = self
            .map
            .get(&full)
            .ok_or_else(|| self.unsupported(format!("tensor {full} is missing")))?;
        if tensor.dims() != shape {
            return Err(self.unsupported(format!(
                "tensor {full} has shape {:?}, expected {shape:?}",
                tensor.dims()
            )));
        }
        Ok(tensor
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    }

    /// A PyTorch linear layer (`weight` is `[out, in]`), transposed to `[in, out]`.
    fn linear(&self, name: &str, k: usize, n: usize) -> Result<Dense, ModelError> {
        let w = self.get(&format!("{name}.weight"), &[n, k])?;
        Ok(Dense {
            w: transpose(&w, n, k),
            b: self.get(&format!("{name}.bias"), &[n])?,
            k,
            n,
        })
    }

    fn norm(&self, name: &str, width: usize) -> Result<Norm, ModelError> {
        Ok(Norm {
            gamma: self.get(&format!("{name}.weight"), &[width])?,
            beta: self.get(&format!("{name}.bias"), &[width])?,
        })
    }

    fn unsupported(&self, reason: String) -> ModelError {
        ModelError::Unsupported {
            path: self.path.to_path_buf(),
            reason,
        }
    }
}

/// `[rows, cols]` row-major to `[cols, rows]` row-major.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

/// The dimensions the weights must have (from `config.json`).
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub vocab: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub positions: usize,
    pub token_types: usize,
}

impl BertWeights {
    /// Reads the weights from the bytes of a safetensors file (`path` is for error messages).
    pub fn from_safetensors(bytes: &[u8], path: &Path, dims: Dims) -> Result<Self, ModelError> {
        let map = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)?;
        let prefix = if map.contains_key("embeddings.word_embeddings.weight") {
            ""
        } else {
            "bert."
        }
        .to_string();
        let t = Tensors { map, prefix, path };
        let h = dims.hidden;
        let layers = (0..dims.layers)
            .map(|i| {
                let p = format!("encoder.layer.{i}");
                let q = t.linear(&format!("{p}.attention.self.query"), h, h)?;
                let k = t.linear(&format!("{p}.attention.self.key"), h, h)?;
                let v = t.linear(&format!("{p}.attention.self.value"), h, h)?;
                Ok(Layer {
                    qkv: fuse_columns(&[q, k, v]).into(),
                    attn_out: t
                        .linear(&format!("{p}.attention.output.dense"), h, h)?
                        .into(),
                    attn_norm: t.norm(&format!("{p}.attention.output.LayerNorm"), h)?,
                    intermediate: t
                        .linear(&format!("{p}.intermediate.dense"), h, dims.intermediate)?
                        .into(),
                    output: t
                        .linear(&format!("{p}.output.dense"), dims.intermediate, h)?
                        .into(),
                    output_norm: t.norm(&format!("{p}.output.LayerNorm"), h)?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(Self {
            word: t.get("embeddings.word_embeddings.weight", &[dims.vocab, h])?,
            position: t.get(
                "embeddings.position_embeddings.weight",
                &[dims.positions, h],
            )?,
            token_type: t.get(
                "embeddings.token_type_embeddings.weight",
                &[dims.token_types, h],
            )?,
            embed_norm: t.norm("embeddings.LayerNorm", h)?,
            layers,
            hidden: h,
            vocab: dims.vocab,
            positions: dims.positions,
            token_types: dims.token_types,
        })
    }
}

/// Linear layers with the same input side by side: `[k, n1 + n2 + ...]`.
fn fuse_columns(parts: &[Dense]) -> Dense {
    let k = parts[0].k;
    let n: usize = parts.iter().map(|p| p.n).sum();
    let mut w = Vec::with_capacity(k * n);
    for row in 0..k {
        for p in parts {
            w.extend_from_slice(&p.w[row * p.n..(row + 1) * p.n]);
        }
    }
    let b = parts.iter().flat_map(|p| p.b.iter().copied()).collect();
    Dense { w, b, k, n }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_swaps_rows_and_columns() {
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }

    #[test]
    fn fused_columns_keep_each_part_in_its_own_columns() {
        let a = Dense {
            w: vec![1.0, 2.0],
            b: vec![10.0],
            k: 2,
            n: 1,
        };
        let b = Dense {
            w: vec![3.0, 4.0, 5.0, 6.0],
            b: vec![20.0, 30.0],
            k: 2,
            n: 2,
        };
        let fused = fuse_columns(&[a, b]);
        assert_eq!((fused.k, fused.n), (2, 3));
        assert_eq!(fused.w, vec![1.0, 3.0, 4.0, 2.0, 5.0, 6.0]);
        assert_eq!(fused.b, vec![10.0, 20.0, 30.0]);
    }
}
