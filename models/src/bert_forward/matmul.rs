//! Matrix products on the `gemm` crate (candle's own matrix library), behind a safe interface.
//!
//! `gemm` takes raw pointers and strides. This module is the only place that calls it: strided
//! views ([`MatRef`], [`MatMut`]) check at construction that every element they describe lies in
//! their slice, so [`gemm_into`] cannot read or write out of bounds. [`ColumnPanels::matmul`]
//! spreads row blocks of a product over the current rayon pool (the embedder's), each block
//! single-threaded `gemm` calls, so threads never oversubscribe. `gemm` picks its kernel (AVX-512, AVX2+FMA, SSE)
//! at run time.

use rayon::prelude::*;

/// Rows per parallel block: enough that a block is a worthwhile `gemm` call.
const MIN_ROWS_PER_BLOCK: usize = 16;

/// The shape and strides of a view: element `(i, j)` is at `i·rs + j·cs`.
#[derive(Debug, Clone, Copy)]
struct Layout {
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl Layout {
    /// Panics unless every element lies within `len` elements.
    fn checked(rows: usize, cols: usize, rs: usize, cs: usize, len: usize) -> Self {
        let fits = rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < len;
        assert!(
            fits,
            "a {rows}×{cols} view (strides {rs}, {cs}) does not fit in {len}"
        );
        Self { rows, cols, rs, cs }
    }
}

/// A read-only strided view of a matrix: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    layout: Layout,
}

impl<'a> MatRef<'a> {
    /// A strided view; panics if it does not fit in `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        let layout = Layout::checked(rows, cols, rs, cs, data.len());
        Self { data, layout }
    }

    /// A dense row-major view.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "not a {rows}×{cols} matrix");
        Self::new(data, rows, cols, cols, 1)
    }
}

/// A writable strided view of a matrix.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    layout: Layout,
}

impl<'a> MatMut<'a> {
    /// A strided view; panics if it does not fit in `data`.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        let layout = Layout::checked(rows, cols, rs, cs, data.len());
        Self { data, layout }
    }

    /// A dense row-major view.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "not a {rows}×{cols} matrix");
        Self::new(data, rows, cols, cols, 1)
    }
}

/// `dst = scale · a · b` on the calling thread. Panics if the shapes do not agree.
#[allow(unsafe_code)]
pub fn gemm_into(dst: MatMut<'_>, a: MatRef<'_>, b: MatRef<'_>, scale: f32) {
    let (d, l, r) = (dst.layout, a.layout, b.layout);
    assert!(
        l.cols == r.rows && d.rows == l.rows && d.cols == r.cols,
        "shapes do not agree"
    );
    if d.rows == 0 || d.cols == 0 {
        return;
    }
    if l.cols == 0 {
        for i in 0..d.rows {
            for j in 0..d.cols {
                dst.data[i * d.rs + j * d.cs] = 0.0;
            }
        }
        return;
    }
    let s = |x: usize| x as isize;
    // SAFETY: `MatRef::new`/`MatMut::new` checked that every element of each view lies inside its
    // slice, and the shapes agree (asserted above), so gemm only touches elements of those views.
    // `dst` is borrowed mutably, so it does not alias `a` or `b`. The destination strides are
    // those of a view whose elements are distinct (row-major or column-blocks of one).
    unsafe {
        gemm::gemm(
            d.rows,
            d.cols,
            l.cols,
            dst.data.as_mut_ptr(),
            s(d.cs),
            s(d.rs),
            false,
            a.data.as_ptr(),
            s(l.cs),
            s(l.rs),
            b.data.as_ptr(),
            s(r.cs),
            s(r.rs),
            0.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Columns per panel of [`ColumnPanels`].
pub const WIDE_PANEL: usize = 128;

/// A `[k, n]` matrix stored as column panels of [`WIDE_PANEL`] columns, each panel `[k, width]`
/// row-major and contiguous: a product reads the weights in sequence, one panel after another.
/// (From plain `[k, n]` rows, `gemm` gathers 16 values per row, each row a page apart, and stalls
/// on memory.)
#[derive(Debug)]
pub struct ColumnPanels {
    data: Vec<f32>,
    k: usize,
    n: usize,
}

impl ColumnPanels {
    /// Stores a row-major `[k, n]` matrix in panels.
    pub fn pack(w: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(w.len(), k * n, "not a {k}×{n} matrix");
        let mut data = Vec::with_capacity(k * n);
        for start in (0..n).step_by(WIDE_PANEL) {
            let cols = WIDE_PANEL.min(n - start);
            for row in w.chunks_exact(n) {
                data.extend_from_slice(&row[start..start + cols]);
            }
        }
        Self { data, k, n }
    }

    /// `out[m×n] = a[m×k] · W`, one `gemm` call per panel and row block, on up to `threads`
    /// threads of the current rayon pool (row blocks).
    pub fn matmul(&self, out: &mut [f32], a: &[f32], m: usize, threads: usize) {
        let (k, n) = (self.k, self.n);
        assert_eq!(a.len(), m * k, "lhs is not {m}×{k}");
        assert_eq!(out.len(), m * n, "out is not {m}×{n}");
        if threads <= 1 || m < 2 * MIN_ROWS_PER_BLOCK || k == 0 {
            self.matmul_rows(out, a, m);
            return;
        }
        let rows = m.div_ceil(threads).max(MIN_ROWS_PER_BLOCK);
        out.par_chunks_mut(rows * n)
            .zip(a.par_chunks(rows * k))
            .for_each(|(out, a)| self.matmul_rows(out, a, a.len() / k));
    }

    fn matmul_rows(&self, out: &mut [f32], a: &[f32], m: usize) {
        let (k, n) = (self.k, self.n);
        let lhs = MatRef::row_major(a, m, k);
        for start in (0..n).step_by(WIDE_PANEL) {
            let cols = WIDE_PANEL.min(n - start);
            let panel = &self.data[start * k..(start + cols) * k];
            gemm_into(
                MatMut::new(&mut out[start..], m, cols, n, 1),
                lhs,
                MatRef::row_major(panel, k, cols),
                1.0,
            );
        }
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
        for (m, k, n) in [(70, 33, 19), (15, 40, 300), (1, 384, 37), (64, 8, 8)] {
            check_product(m, k, n);
        }
    }

    fn check_product(m: usize, k: usize, n: usize) {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 3) % 13) as f32 * 0.5 - 3.0)
            .collect();
        let want = naive(&a, &w, m, k, n);
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            let mut out = vec![f32::NAN; m * n];
            let panels = ColumnPanels::pack(&w, k, n);
            pool.install(|| panels.matmul(&mut out, &a, m, threads));
            assert_eq!(out, want, "{threads} threads");
        }
    }

    #[test]
    fn strided_views_multiply_a_transposed_column_block() {
        // a: 2×3 row-major inside a wider buffer (row stride 5); b = a's own block transposed.
        let buf = [1.0, 2.0, 3.0, 9.0, 9.0, 4.0, 5.0, 6.0, 9.0, 9.0];
        let a = MatRef::new(&buf, 2, 3, 5, 1);
        let at = MatRef::new(&buf, 3, 2, 1, 5);
        let mut out = vec![0.0; 2 * 4];
        // Write into the first two columns of a 2×4 row-major matrix.
        gemm_into(MatMut::new(&mut out, 2, 2, 4, 1), a, at, 0.5);
        assert_eq!(out, vec![7.0, 16.0, 0.0, 0.0, 16.0, 38.5, 0.0, 0.0]);
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn a_view_past_the_end_of_its_slice_is_refused() {
        let data = [0.0f32; 10];
        let _ = MatRef::new(&data, 3, 4, 4, 1);
    }

    #[test]
    #[should_panic(expected = "lhs is not")]
    fn a_wrong_length_panics_instead_of_reading_out_of_bounds() {
        let mut out = vec![0.0; 4];
        ColumnPanels::pack(&[1.0; 4], 2, 2).matmul(&mut out, &[1.0; 3], 2, 1);
    }
}
