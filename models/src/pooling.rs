//! Sentence-transformers' pooling: the mean of the token states under the attention mask, then
//! L2 normalisation.

use candle_core::{DType, Tensor};

use crate::ModelError;

/// Mean-pools `hidden` (`batch × tokens × dim`) over the tokens whose `mask` (`batch × tokens`) is
/// 1, then scales each row to unit L2 norm. A row with an all-zero mask or a zero vector stays zero
/// rather than becoming NaN.
pub(crate) fn mean_pool_normalized(
    hidden: &Tensor,
    mask: &Tensor,
) -> Result<Vec<Vec<f32>>, ModelError> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
    let mean = summed.broadcast_div(&counts)?;
    let mut rows = mean.to_vec2::<f32>()?;
    for row in &mut rows {
        normalize(row);
    }
    Ok(rows)
}

/// Scales `v` to unit L2 norm in place (sentence-transformers divides by `max(norm, 1e-12)`).
pub(crate) fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    for x in v {
        *x /= norm;
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn padding_tokens_do_not_count_in_the_mean() {
        // One text of two real tokens and one padding token whose state is huge.
        let hidden = Tensor::new(&[[[1f32, 0.0], [3.0, 0.0], [1000.0, 1000.0]]], &Device::Cpu)
            .expect("tensor");
        let mask = Tensor::new(&[[1u32, 1, 0]], &Device::Cpu).expect("tensor");
        let pooled = mean_pool_normalized(&hidden, &mask).expect("pool");
        assert_eq!(pooled, vec![vec![1.0, 0.0]]);
    }

    #[test]
    fn every_row_has_unit_norm() {
        let hidden = Tensor::new(&[[[3f32, 4.0]], [[-6.0, 8.0]]], &Device::Cpu).expect("tensor");
        let mask = Tensor::new(&[[1u32], [1]], &Device::Cpu).expect("tensor");
        let pooled = mean_pool_normalized(&hidden, &mask).expect("pool");
        assert_eq!(pooled, vec![vec![0.6, 0.8], vec![-0.6, 0.8]]);
    }

    #[test]
    fn a_zero_vector_stays_finite() {
        let mut v = vec![0f32; 4];
        normalize(&mut v);
        assert!(v.iter().all(|x| *x == 0.0));
    }
}
