//! The element-wise and row-wise kernels of the forward pass: bias + GELU, residual + LayerNorm,
//! softmax, and the fast `exp`/`erf` they use.
//!
//! Each kernel is a plain loop over slices, written so the compiler vectorises it, and compiled
//! several times with `multiversion` (AVX-512, AVX2 + FMA, and the portable baseline) with the best
//! version picked at run time: one binary runs well on every x86-64 CPU.

use multiversion::multiversion;

/// `x += bias` row by row, then the exact (erf) GELU, in place: `x * 0.5 * (1 + erf(x / √2))`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn bias_gelu(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            let y = *v + b;
            *v = 0.5 * y * (1.0 + erf(y * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

/// `x = LayerNorm(x + y + bias)` row by row, in place (`y` is the sub-layer's output, `x` the
/// residual stream), with the layer's `gamma`, `beta` and `eps`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn add_bias_residual_layer_norm(
    x: &mut [f32],
    y: &[f32],
    bias: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let width = gamma.len();
    for (xr, yr) in x.chunks_exact_mut(width).zip(y.chunks_exact(width)) {
        for ((xv, yv), b) in xr.iter_mut().zip(yr).zip(bias) {
            *xv += yv + b;
        }
        normalize_row(xr, gamma, beta, eps);
    }
}

/// LayerNorm of each row of `x`, in place.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(gamma.len()) {
        normalize_row(row, gamma, beta, eps);
    }
}

#[inline(always)]
fn normalize_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = sum(row) / n;
    let mut var = 0.0f32;
    let mut acc = [0.0f32; 8];
    let mut chunks = row.chunks_exact(8);
    for chunk in &mut chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            let d = v - mean;
            *a += d * d;
        }
    }
    for v in chunks.remainder() {
        var += (v - mean) * (v - mean);
    }
    var += acc.iter().sum::<f32>();
    let inv = 1.0 / (var / n + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// A sum in eight lanes, so it vectorises (and rounds like a blocked sum, not a serial one).
#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut chunks = xs.chunks_exact(8);
    for chunk in &mut chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// Softmax of `x` in place (one attention row).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
pub fn softmax(x: &mut [f32]) {
    let max = max(x);
    for v in x.iter_mut() {
        *v = exp(*v - max);
    }
    let inv = 1.0 / sum(x);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// The largest value of `x` (`-inf` when empty), 16 lanes at a time: `f32::max` in a fold keeps
/// its NaN rule and stays scalar; a compare-and-select per lane vectorises.
#[inline(always)]
fn max(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = x.chunks_exact(16);
    for chunk in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    let mut best = f32::NEG_INFINITY;
    for &v in lanes.iter().chain(chunks.remainder()) {
        best = if v > best { v } else { best };
    }
    best
}

/// `out += w · v`.
#[inline(always)]
pub fn axpy(out: &mut [f32], w: f32, v: &[f32]) {
    for (o, x) in out.iter_mut().zip(v) {
        *o += w * x;
    }
}

/// `e^x` for `x` in f32 range, within 2 ulp: Cephes' `expf` (range reduction by ln 2, a degree-6
/// polynomial, the exponent put in place with bit operations), branch-free so it vectorises.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest with the 1.5·2^23 trick: exact for |x·log2 e| < 2^22, and vectorises.
    // `t`'s bit pattern is then 0x4B40_0000 + n, which gives 2^n without a float-to-int cast
    // (a saturating `as` cast does not vectorise).
    let t = x * LOG2_E + 12_582_912.0;
    let n = t - 12_582_912.0;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    p = p * r * r + r + 1.0;
    let scale = f32::from_bits(t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127) << 23);
    p * scale
}

/// `erf(x)` within a few ulp: the rational approximation of Eigen and XLA (odd degree-13
/// numerator, even degree-8 denominator on x clamped to [-4, 4], where f32 erf is ±1 already).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    p *= x;
    let mut q = -1.456_607_2e-5f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf in f64 by its Taylor series (exact enough on [-4, 4] for a reference).
    fn erf64(x: f64) -> f64 {
        if x.abs() > 3.0 {
            // Continued-fraction-free tail: 1 - erfc, with erfc by its asymptotic series.
            let t = 1.0 / (x * x);
            let erfc = (-x * x).exp() / (x.abs() * std::f64::consts::PI.sqrt())
                * (1.0 - 0.5 * t + 0.75 * t * t - 1.875 * t * t * t + 6.5625 * t.powi(4));
            return x.signum() * (1.0 - erfc);
        }
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn fast_exp_is_within_a_few_ulp_of_std() {
        let mut worst = 0.0f64;
        for i in 0..200_000 {
            let x = -87.0 + 175.0 * i as f32 / 200_000.0;
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3e-7, "max relative error {worst:e}");
        assert_eq!(exp(-1000.0), exp(-87.0), "clamped, not NaN or a denormal");
    }

    #[test]
    fn fast_erf_is_within_1e_6_of_the_series() {
        let mut worst = 0.0f64;
        for i in 0..=80_000 {
            let x = -5.0 + 10.0 * f64::from(i) / 80_000.0;
            worst = worst.max((f64::from(erf(x as f32)) - erf64(x)).abs());
        }
        assert!(worst < 1e-6, "max absolute error {worst:e}");
    }

    #[test]
    fn gelu_matches_the_exact_formula() {
        let mut x: Vec<f32> = (0..64).map(|i| -8.0 + i as f32 * 0.25).collect();
        let want: Vec<f64> = x
            .iter()
            .map(|&v| 0.5 * f64::from(v) * (1.0 + erf64(f64::from(v) / 2f64.sqrt())))
            .collect();
        bias_gelu(&mut x, &[0.0; 8]);
        for (got, want) in x.iter().zip(want) {
            assert!((f64::from(*got) - want).abs() < 2e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn layer_norm_rows_have_zero_mean_unit_variance_then_scale_and_shift() {
        let mut x: Vec<f32> = (0..2 * 12).map(|i| (i * i % 7) as f32).collect();
        let gamma = vec![2.0f32; 12];
        let beta = vec![1.0f32; 12];
        layer_norm(&mut x, &gamma, &beta, 1e-12);
        for row in x.chunks(12) {
            let mean = row.iter().map(|v| (v - 1.0) / 2.0).sum::<f32>() / 12.0;
            let var = row
                .iter()
                .map(|v| ((v - 1.0) / 2.0 - mean).powi(2))
                .sum::<f32>()
                / 12.0;
            assert!(
                mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
                "mean {mean} var {var}"
            );
        }
    }

    #[test]
    fn residual_layer_norm_adds_both_inputs_and_the_bias_first() {
        let mut x = vec![1.0f32, 2.0, 3.0, 4.0];
        let y = vec![0.5f32, 0.5, 0.5, 0.5];
        let bias = vec![0.0f32, 1.0, 0.0, -1.0];
        let mut expected: Vec<f32> = vec![1.5, 3.5, 3.5, 3.5];
        layer_norm(&mut expected, &[1.0; 4], &[0.0; 4], 1e-12);
        add_bias_residual_layer_norm(&mut x, &y, &bias, &[1.0; 4], &[0.0; 4], 1e-12);
        assert_eq!(x, expected);
    }

    #[test]
    fn softmax_sums_to_one_and_survives_large_inputs() {
        let mut x = vec![1000.0f32, 999.0, -1000.0, 998.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let e1 = (-1f64).exp();
        let e2 = (-2f64).exp();
        let z = 1.0 + e1 + e2;
        assert!((f64::from(x[0]) - 1.0 / z).abs() < 1e-6);
        assert!((f64::from(x[3]) - e2 / z).abs() < 1e-6);
        assert_eq!(x[2], x[2].max(0.0));
    }

    #[test]
    fn axpy_handles_lengths_that_are_not_multiples_of_eight() {
        let a: Vec<f32> = (0..13).map(|i| i as f32).collect();
        let mut out = vec![1.0f32; 13];
        axpy(&mut out, 0.5, &a);
        assert_eq!(out[12], 7.0);
    }
}
