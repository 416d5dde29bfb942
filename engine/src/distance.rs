//! The distance the dense index uses: cosine distance of unit vectors computed as `1 - dot`,
//! clamped to `[0, 2]` (`1 - dot` of two unit vectors can come out at `-1e-7` by rounding; the
//! `DistDot` panic of hnsw_rs, DESIGN.md §4), and the vectorised products behind it.

/// `1 - a·b`, clamped to `[0, 2]`, for L2-normalised vectors.
#[inline]
pub(crate) fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    distance_of_dot(dot(a, b))
}

/// [`cosine_distance`] of an f32 query and a vector held in half precision.
#[inline]
pub(crate) fn cosine_distance_f16(q: &[f32], h: &[half::f16]) -> f32 {
    distance_of_dot(dot_f16(q, h))
}

/// `1 - dot`, clamped to `[0, 2]`.
#[inline(always)]
fn distance_of_dot(dot: f32) -> f32 {
    (1.0 - dot).clamp(0.0, 2.0)
}

/// [`cosine_distance`] as hnsw_rs takes it: the graph our segments are measured against in
/// tests.
#[cfg(test)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UnitCosine;

#[cfg(test)]
impl hnsw_rs::prelude::Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        cosine_distance(a, b)
    }
}

/// Dot product in the widest SIMD the CPU has (`pulp`, dispatched at run time: AVX2 + FMA's 8
/// lanes here), four vector accumulators so four fused multiply-adds are in flight instead of
/// one chain (an FMA's latency is four times its throughput). The compiler's own vectorisation
/// of the same loop gave 2-lane loads into 128-bit FMAs (`objdump` of the AVX2 clone: no `ymm`
/// register).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    pulp::Arch::new().dispatch(Dot(&a[..n], &b[..n]))
}

/// [`dot`] for one SIMD width.
struct Dot<'a>(&'a [f32], &'a [f32]);

impl pulp::WithSimd for Dot<'_> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) -> f32 {
        let (a, a_rest) = S::as_simd_f32s(self.0);
        let (b, b_rest) = S::as_simd_f32s(self.1);
        let zero = simd.splat_f32s(0.0);
        let mut acc = [zero; 4];
        let mut ca = a.chunks_exact(4);
        let mut cb = b.chunks_exact(4);
        for (x, y) in (&mut ca).zip(&mut cb) {
            for j in 0..4 {
                acc[j] = simd.mul_add_f32s(x[j], y[j], acc[j]);
            }
        }
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            acc[0] = simd.mul_add_f32s(*x, *y, acc[0]);
        }
        let pairs = simd.add_f32s(simd.add_f32s(acc[0], acc[1]), simd.add_f32s(acc[2], acc[3]));
        let mut sum = simd.reduce_sum_f32s(pairs);
        for (x, y) in a_rest.iter().zip(b_rest) {
            sum += x * y;
        }
        sum
    }
}

/// `Σ q_d · h_d` of an f32 query and half-precision values: the walk over a segment stored in
/// f16 reads half the bytes per distance. AVX2 + FMA + F16C when the CPU has them (checked at run
/// time: 8 halves widened per instruction, four accumulators), else one value at a time.
fn dot_f16(q: &[f32], h: &[half::f16]) -> f32 {
    let n = q.len().min(h.len());
    let (q, h) = (&q[..n], &h[..n]);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
    {
        #[allow(unsafe_code)]
        // SAFETY: the CPU has AVX2, FMA and F16C (checked just above).
        return unsafe { dot_f16_avx2(q, h) };
    }
    q.iter().zip(h).map(|(x, y)| x * y.to_f32()).sum()
}

/// [`dot_f16`] in AVX2 code.
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C; `q.len() == h.len()`.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16_avx2(q: &[f32], h: &[half::f16]) -> f32 {
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm256_add_ps, _mm256_cvtph_ps, _mm256_fmadd_ps, _mm256_loadu_ps,
        _mm256_setzero_ps, _mm256_storeu_ps,
    };
    let n = q.len().min(h.len());
    let (qp, hp) = (q.as_ptr(), h.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, a) in acc.iter_mut().enumerate() {
            let at = i + 8 * j;
            // SAFETY: `at + 8 <= n`, within both slices; unaligned loads.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_ps(qp.add(at)),
                    _mm256_cvtph_ps(_mm_loadu_si128(hp.add(at).cast::<__m128i>())),
                )
            };
            *a = _mm256_fmadd_ps(x, y, *a);
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n`, within both slices; unaligned loads.
        let (x, y) = unsafe {
            (
                _mm256_loadu_ps(qp.add(i)),
                _mm256_cvtph_ps(_mm_loadu_si128(hp.add(i).cast::<__m128i>())),
            )
        };
        acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0.0f32; 8];
    // SAFETY: `lanes` holds 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    let mut total: f32 = lanes.iter().sum();
    for (x, y) in q[i..n].iter().zip(&h[i..n]) {
        total += x * y.to_f32();
    }
    total
}

/// `Σ q_d · c_d` of an f32 query and int8 codes (vectorised for the CPU it runs on).
#[multiversion::multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn dot_i8(q: &[f32], c: &[i8]) -> f32 {
    let n = q.len().min(c.len());
    let (q, c) = (&q[..n], &c[..n]);
    let mut acc = [0.0f32; 8];
    let mut cq = q.chunks_exact(8);
    let mut cc = c.chunks_exact(8);
    for (x, y) in (&mut cq).zip(&mut cc) {
        for i in 0..8 {
            acc[i] = x[i].mul_add(f32::from(y[i]), acc[i]);
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in cq.remainder().iter().zip(cc.remainder()) {
        sum += x * f32::from(*y);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_unit_vectors_are_at_distance_zero_never_negative() {
        let v: Vec<f32> = (0..384).map(|i| ((i * 7919) % 101) as f32 - 50.0).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let u: Vec<f32> = v.iter().map(|x| x / norm).collect();
        let d = cosine_distance(&u, &u);
        assert!((0.0..1e-5).contains(&d), "{d}");
        let neg: Vec<f32> = u.iter().map(|x| -x).collect();
        assert!((cosine_distance(&u, &neg) - 2.0).abs() < 1e-5);
    }

    #[test]
    fn dot_matches_the_plain_sum_at_every_length_through_each_stage() {
        for n in [0, 1, 7, 8, 21, 31, 32, 33, 40, 63, 64, 71, 384, 390] {
            let a: Vec<f32> = (0..n).map(|i| (i % 13) as f32 * 0.25 - 1.0).collect();
            let b: Vec<f32> = (0..n).map(|i| 1.0 - (i % 7) as f32 * 0.1).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-3, "length {n}");
        }
    }

    #[test]
    fn the_half_precision_dot_matches_the_plain_sum_at_every_length() {
        for n in [0, 1, 7, 8, 9, 31, 32, 33, 40, 63, 64, 71, 384, 390] {
            let q: Vec<f32> = (0..n).map(|i| (i % 13) as f32 * 0.25 - 1.0).collect();
            let h: Vec<half::f16> = (0..n)
                .map(|i| half::f16::from_f32(1.0 - (i % 7) as f32 * 0.1))
                .collect();
            let plain: f32 = q.iter().zip(&h).map(|(x, y)| x * y.to_f32()).sum();
            assert!((dot_f16(&q, &h) - plain).abs() < 1e-3, "length {n}");
        }
    }
}
