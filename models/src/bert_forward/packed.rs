//! Weights packed in panels of 16 columns, and a register-blocked kernel for products with few
//! rows (a batch of one short text).
//!
//! For a product of a few rows, the cost is reading the weights, not the arithmetic: `gemm` packs
//! and streams them once per handful of rows. Packed once at load time (`[n/16][k][16]`, zero
//! columns padding the last panel), every panel is read once per register tile, in order, and
//! each value loaded feeds every row of the tile, whose accumulators stay in registers.
//! Compiled per CPU with `multiversion`; fused multiply-add where the CPU has it.
//!
//! Tile shapes: with AVX2 (16 vector registers of 8 floats) a tile is at most 6 rows × 16 columns
//! (12 accumulators). With AVX-512 (32 registers of 16 floats) a row of the panel is one register,
//! so a tile is up to 16 rows: an FMA takes 4 cycles and two issue per cycle, so fewer than 8
//! independent accumulators would leave the units idle. Rows are split into tiles of equal height
//! (15 rows on AVX2: 5 + 5 + 5, not 6 + 6 + 3), so no tile runs short of accumulators. Each step
//! prefetches the panel well ahead: without it the kernel waited on every weight load.

use multiversion::multiversion;
use multiversion::target::selected_target;
use rayon::prelude::*;

use super::tile_avx2;

/// Columns per panel.
const PANEL: usize = 16;
/// Most rows per register tile with AVX2 (and the baseline): 6 × 2 accumulator registers.
const TILE_ROWS: usize = 6;
/// Most rows per register tile with AVX-512: one accumulator register per row.
const TILE_ROWS_AVX512: usize = 16;

/// A `[k, n]` matrix packed in column panels.
#[derive(Debug)]
pub struct PackedWeights {
    panels: Vec<f32>,
    k: usize,
    n: usize,
}

impl PackedWeights {
    /// Packs a row-major `[k, n]` matrix.
    pub fn pack(w: &[f32], k: usize, n: usize) -> Self {
        assert_eq!(w.len(), k * n, "not a {k}×{n} matrix");
        let count = n.div_ceil(PANEL);
        let mut panels = vec![0.0f32; count * k * PANEL];
        for (p, panel) in panels.chunks_exact_mut(k * PANEL).enumerate() {
            let start = p * PANEL;
            let cols = PANEL.min(n - start);
            for (row, dst) in panel.chunks_exact_mut(PANEL).enumerate() {
                dst[..cols].copy_from_slice(&w[row * n + start..row * n + start + cols]);
            }
        }
        Self { panels, k, n }
    }

    /// `out[m×n] = a[m×k] · W`, panels spread over up to `threads` threads of the current rayon
    /// pool.
    pub fn matmul(&self, out: &mut [f32], a: &[f32], m: usize, threads: usize) {
        let (k, n) = (self.k, self.n);
        assert_eq!(a.len(), m * k, "lhs is not {m}×{k}");
        assert_eq!(out.len(), m * n, "out is not {m}×{n}");
        let count = n.div_ceil(PANEL);
        if m == 0 || k == 0 {
            out.fill(0.0);
            return;
        }
        if threads <= 1 || count < 2 * threads {
            // Into a dense tile (rows of 16 lie in consecutive cache lines; rows of `out`, `n`
            // apart, would compete for a few sets of the L1 cache), then into place.
            let mut tile = vec![0.0f32; m * PANEL];
            for p in 0..count {
                self.panel_product(p, a, m, &mut tile, PANEL);
                scatter(out, &tile, m, n, p);
            }
            return;
        }
        // Each task computes whole panels into a panel-major scratch; they are put in place after.
        let mut scratch = vec![0.0f32; count * m * PANEL];
        scratch
            .par_chunks_mut(m * PANEL)
            .enumerate()
            .for_each(|(p, tile)| self.panel_product(p, a, m, tile, PANEL));
        for (p, tile) in scratch.chunks_exact(m * PANEL).enumerate() {
            scatter(out, tile, m, n, p);
        }
    }

    /// `out[i·ldo + j] = (a · panel p)[i][j]` for the `m` rows `i` and the panel's 16 columns `j`.
    fn panel_product(&self, p: usize, a: &[f32], m: usize, out: &mut [f32], ldo: usize) {
        let k = self.k;
        let panel = &self.panels[p * k * PANEL..(p + 1) * k * PANEL];
        let most = max_tile_rows();
        let tiles = m.div_ceil(most).max(1);
        // Equal heights: the first `m % tiles` tiles take one row more.
        let height = |t: usize| m / tiles + usize::from(t < m % tiles);
        if uses_avx2_tile() {
            // Every tile runs over one block of the inner dimension before the next block: the
            // block's weights stay in L1 meanwhile, and they stream in from memory evenly while
            // the tiles compute.
            for start in (0..k).step_by(K_BLOCK) {
                let steps = K_BLOCK.min(k - start);
                let block = &panel[start * PANEL..(start + steps) * PANEL];
                let mut first = 0;
                for t in 0..tiles {
                    let rows = height(t);
                    tile_avx2::tile_product(
                        &mut out[first * ldo..],
                        ldo,
                        &a[first * k + start..],
                        k,
                        rows,
                        block,
                        start > 0,
                    );
                    first += rows;
                }
            }
            return;
        }
        let mut tile = [0.0f32; TILE_ROWS_AVX512 * PANEL];
        let mut first = 0;
        for t in 0..tiles {
            let rows = height(t);
            tile_product(
                &mut tile[..rows * PANEL],
                &a[first * k..(first + rows) * k],
                panel,
                k,
            );
            for (r, values) in tile[..rows * PANEL].chunks_exact(PANEL).enumerate() {
                out[(first + r) * ldo..(first + r) * ldo + PANEL].copy_from_slice(values);
            }
            first += rows;
        }
        debug_assert_eq!(first, m);
    }
}

/// Steps of the inner dimension per block of the AVX2 path (a 4 KB slice of a panel).
const K_BLOCK: usize = 64;

/// Whether products run on the AVX2 tile (`tile_avx2`): AVX2 and FMA without AVX-512.
fn uses_avx2_tile() -> bool {
    max_tile_rows() == tile_avx2::ROWS && tile_avx2::available()
}

/// Below this many rows a product is faster here than on `gemm` (measured on the model's 24
/// layers in a row, weights cold: with the AVX2 tile, 61 vs 17 GFLOP/s at 15 rows, 72 vs 69 at
/// 122, 68 vs 71 at 180; with AVX-512, `gemm` was ahead from 64 rows on).
pub fn max_rows() -> usize {
    if uses_avx2_tile() { 160 } else { 64 }
}

/// The most rows a register tile holds on this CPU.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn max_tile_rows() -> usize {
    const WIDE: bool = selected_target!().supports_feature_str("avx512f");
    if WIDE { TILE_ROWS_AVX512 } else { TILE_ROWS }
}

/// Copies panel `p`'s columns of `tile` (`m × 16`) into `out` (`m × n`).
fn scatter(out: &mut [f32], tile: &[f32], m: usize, n: usize, p: usize) {
    let start = p * PANEL;
    let cols = PANEL.min(n - start);
    for row in 0..m {
        out[row * n + start..row * n + start + cols]
            .copy_from_slice(&tile[row * PANEL..row * PANEL + cols]);
    }
}

/// `out[r×16] = a[r×k] · panel[k×16]` for the `r` rows of `a` (at most `max_tile_rows()`),
/// accumulating in a register tile.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma"))]
fn tile_product(out: &mut [f32], a: &[f32], panel: &[f32], k: usize) {
    const FMA: bool = selected_target!().supports_feature_str("fma");
    const WIDE: bool = selected_target!().supports_feature_str("avx512f");
    let fma = FMA;
    if WIDE {
        match a.len() / k {
            16 => tile::<16, 1>(out, a, panel, k, fma),
            15 => tile::<15, 1>(out, a, panel, k, fma),
            14 => tile::<14, 1>(out, a, panel, k, fma),
            13 => tile::<13, 1>(out, a, panel, k, fma),
            12 => tile::<12, 1>(out, a, panel, k, fma),
            11 => tile::<11, 1>(out, a, panel, k, fma),
            10 => tile::<10, 1>(out, a, panel, k, fma),
            9 => tile::<9, 1>(out, a, panel, k, fma),
            8 => tile::<8, 1>(out, a, panel, k, fma),
            7 => tile::<7, 1>(out, a, panel, k, fma),
            6 => tile::<6, 1>(out, a, panel, k, fma),
            5 => tile::<5, 1>(out, a, panel, k, fma),
            4 => tile::<4, 1>(out, a, panel, k, fma),
            3 => tile::<3, 1>(out, a, panel, k, fma),
            2 => tile::<2, 1>(out, a, panel, k, fma),
            1 => tile::<1, 1>(out, a, panel, k, fma),
            _ => {}
        }
        return;
    }
    match a.len() / k {
        6 => tile::<6, 1>(out, a, panel, k, fma),
        5 => tile::<5, 1>(out, a, panel, k, fma),
        4 => tile::<4, 1>(out, a, panel, k, fma),
        3 => tile::<3, 1>(out, a, panel, k, fma),
        2 => tile::<2, 1>(out, a, panel, k, fma),
        1 => tile::<1, 1>(out, a, panel, k, fma),
        _ => {}
    }
}

/// Panel rows (cache lines) fetched ahead of the one being multiplied.
const PREFETCH_AHEAD: usize = 64;

/// Asks the CPU to bring `data[at]` (or, past the panel's end, the start of the next panel,
/// which lies right after it) into the L1 cache: the hardware prefetcher alone left the kernel
/// waiting on the weights.
#[inline(always)]
fn prefetch(data: &[f32], at: usize) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: a prefetch is a hint: it never faults, whatever the address, and changes no
    // memory. `wrapping_add` computes the address without claiming it is in bounds.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(data.as_ptr().wrapping_add(at).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, at);
}

/// One step of the inner dimension: `acc[r] += a[r][kk] · panel[kk]` for every row. A function
/// marked `inline(always)`, not a closure: a closure is compiled for the baseline CPU, where
/// `mul_add` is a call into libm's software `fmaf`.
#[inline(always)]
fn step<const R: usize>(
    acc: &mut [[f32; PANEL]; R],
    rows: &[&[f32]; R],
    panel: &[f32],
    kk: usize,
    fma: bool,
) {
    prefetch(panel, (kk + PREFETCH_AHEAD) * PANEL);
    let w = &panel[kk * PANEL..(kk + 1) * PANEL];
    for r in 0..R {
        let x = rows[r][kk];
        for j in 0..PANEL {
            acc[r][j] = if fma {
                x.mul_add(w[j], acc[r][j])
            } else {
                x * w[j] + acc[r][j]
            };
        }
    }
}

/// The tile for exactly `R` rows with `S` accumulators per row (`S` interleaved steps of the
/// inner dimension): fully unrolled, no bounds checks in the loop (the asserts let the compiler
/// drop them), inlined into each CPU-specific copy of `tile_product`. Every caller uses `S = 1`
/// today (two accumulators spilled to the stack with 12+ rows), but this loop shape is kept: a
/// plain `for kk in 0..k` rewrite of it measured 90 instead of ~200 short texts/s.
#[inline(always)]
fn tile<const R: usize, const S: usize>(
    out: &mut [f32],
    a: &[f32],
    panel: &[f32],
    k: usize,
    fma: bool,
) {
    assert!(a.len() == R * k && panel.len() == k * PANEL && out.len() >= R * PANEL);
    let rows: [&[f32]; R] = std::array::from_fn(|r| &a[r * k..(r + 1) * k]);
    let mut acc = [[[0.0f32; PANEL]; R]; S];
    let whole = k - k % S;
    let mut kk = 0;
    while kk < whole {
        for (s, acc) in acc.iter_mut().enumerate() {
            step::<R>(acc, &rows, panel, kk + s, fma);
        }
        kk += S;
    }
    for kk in whole..k {
        step::<R>(&mut acc[0], &rows, panel, kk, fma);
    }
    for r in 0..R {
        for j in 0..PANEL {
            out[r * PANEL + j] = (0..S).map(|s| acc[s][r][j]).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_product_matches_the_naive_one_for_ragged_shapes() {
        for (m, k, n) in [
            (1, 5, 3),
            (3, 17, 40),
            (9, 384, 37),
            (15, 64, 1152),
            (13, 33, 20),
            (25, 7, 16),
            (63, 384, 48),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7) % 11) as f32 * 0.25 - 1.0)
                .collect();
            let w: Vec<f32> = (0..k * n)
                .map(|i| ((i * 3) % 13) as f32 * 0.5 - 3.0)
                .collect();
            let mut want = vec![0.0f32; m * n];
            for i in 0..m {
                for j in 0..n {
                    want[i * n + j] = (0..k).map(|p| a[i * k + p] * w[p * n + j]).sum();
                }
            }
            let packed = PackedWeights::pack(&w, k, n);
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("pool");
                let mut out = vec![f32::NAN; m * n];
                pool.install(|| packed.matmul(&mut out, &a, m, threads));
                for (got, want) in out.iter().zip(&want) {
                    assert!(
                        (got - want).abs() <= 1e-3 * want.abs().max(1.0),
                        "{m}×{k}×{n}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
