//! The distance the dense index uses: cosine distance of unit vectors computed as `1 - dot`,
//! clamped to `[0, 2]` (`1 - dot` of two unit vectors can come out at `-1e-7` by rounding; the
//! `DistDot` panic of hnsw_rs, DESIGN.md §4), and the vectorised products behind it.

/// `1 - a·b`, clamped to `[0, 2]`, for L2-normalised vectors.
#[inline]
pub(crate) fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    (1.0 - dot(a, b)).clamp(0.0, 2.0)
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
}
