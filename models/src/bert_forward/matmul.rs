//! Matrix products on the `gemm` crate (candle's own matrix library), behind a safe interface.
//!
//! `gemm` takes raw pointers and strides; this module is the only place that calls it, and it
//! checks every length first. Row blocks of the output are spread over the current rayon pool
//! (the embedder's), each block one single-threaded `gemm` call, so threads never oversubscribe.
//! `gemm` picks its kernel (AVX-512, AVX2+FMA, SSE) at run time.

use rayon::prelude::*;

/// Rows per parallel block: enough that a block is a worthwhile `gemm` call.
const MIN_ROWS_PER_BLOCK: usize = 16;

/// `out[m×n] = a[m×k] · w[k×n]`, all row-major; the rows of `out` are split over the current
/// rayon pool's threads.
pub fn matmul(out: &mut [f32], a: &[f32], w: &[f32], m: usize, k: usize, n: usize) {
    assert_eq!(a.len(), m * k, "lhs is not {m}×{k}");
    assert_eq!(w.len(), k * n, "rhs is not {k}×{n}");
    assert_eq!(out.len(), m * n, "out is not {m}×{n}");
    let threads = rayon::current_num_threads();
    if threads <= 1 || m < 2 * MIN_ROWS_PER_BLOCK {
        matmul_block(out, a, w, m, k, n);
        return;
    }
    let rows = m.div_ceil(threads).max(MIN_ROWS_PER_BLOCK);
    out.par_chunks_mut(rows * n).zip(a.par_chunks(rows * k)).for_each(|(out, a)| {
        matmul_block(out, a, w, a.len() / k, k, n);
    });
}

/// One single-threaded `gemm` call.
#[allow(unsafe_code)]
fn matmul_block(out: &mut [f32], a: &[f32], w: &[f32], m: usize, k: usize, n: usize) {
    assert!(a.len() >= m * k && w.len() >= k * n && out.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    let (k_i, n_i) = (k as isize, n as isize);
    // SAFETY: the asserts above guarantee that every element gemm reads (a: m×k with row stride
    // k, w: k×n with row stride n) and writes (out: m×n with row stride n) is inside the slices;
    // `out` is borrowed mutably and does not alias `a` or `w`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n_i,
            false,
            a.as_ptr(),
            1,
            k_i,
            w.as_ptr(),
            1,
            n_i,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| a[i * k + p] * w[p * n + j]).sum();
            }
        }
        out
    }

    #[test]
    fn matches_the_naive_product_single_and_multi_threaded() {
        let (m, k, n) = (70, 33, 19);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let w: Vec<f32> = (0..k * n).map(|i| ((i * 3) % 13) as f32 * 0.5 - 3.0).collect();
        let want = naive(&a, &w, m, k, n);
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
            let mut out = vec![f32::NAN; m * n];
            pool.install(|| matmul(&mut out, &a, &w, m, k, n));
            assert_eq!(out, want, "{threads} threads");
        }
    }

    #[test]
    #[should_panic(expected = "lhs is not")]
    fn a_wrong_length_panics_instead_of_reading_out_of_bounds() {
        let mut out = vec![0.0; 4];
        matmul(&mut out, &[1.0; 3], &[1.0; 4], 2, 2, 2);
    }
}
