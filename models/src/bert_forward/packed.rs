//! Weights packed in panels of 16 columns, and register-blocked kernels: on AVX2 CPUs for every
//! product (the intrinsics tile of `tile_avx2`), elsewhere for products with few rows (a batch of
//! one short text).
//!
//! For a product of a few rows, the cost is reading the weights, not the arithmetic: `gemm` packs
//! and streams them once per handful of rows. Products run in row blocks of at most 128 rows, each
//! block through every panel into a dense tile that is then put in place. Packed once at load time (`[n/16][k][16]`, zero
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

use concierge_infra::prefetch::prefetch;
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
        // Row blocks of at most `ROW_BLOCK` rows (equal heights), one after the other; each
        // into a dense tile per panel (rows of 16 in consecutive cache lines; rows of `out`, `n`
        // apart, would compete for a few sets of the L1 cache), then into place.
        let height = m.div_ceil(m.div_ceil(ROW_BLOCK));
        let mut tiles = vec![0.0f32; height * PANEL * if threads <= 1 { 1 } else { count }];
        for (a, out) in a.chunks(height * k).zip(out.chunks_mut(height * n)) {
            let rows = a.len() / k;
            let lhs = Lhs::new(a, rows, k);
            if threads <= 1 || count < 2 * threads {
                let tile = &mut tiles[..rows * PANEL];
                for p in 0..count {
                    self.panel_product(p, &lhs, tile);
                    scatter(out, tile, rows, n, p);
                }
            } else {
                // Panels spread over the pool, each into its own tile.
                let tiles = &mut tiles[..count * rows * PANEL];
                tiles
                    .par_chunks_mut(rows * PANEL)
                    .enumerate()
                    .for_each(|(p, tile)| self.panel_product(p, &lhs, tile));
                for (p, tile) in tiles.chunks_exact(rows * PANEL).enumerate() {
                    scatter(out, tile, rows, n, p);
                }
            }
        }
    }

    /// `out[m×16] = a · panel p`.
    fn panel_product(&self, p: usize, lhs: &Lhs<'_>, out: &mut [f32]) {
        let k = self.k;
        let panel = &self.panels[p * k * PANEL..(p + 1) * k * PANEL];
        let (a, m) = match lhs {
            Lhs::Tiles(tiles) => {
                tile_avx2::panel_product(out, tiles, panel, K_BLOCK);
                return;
            }
            Lhs::Rows(a, m) => (*a, *m),
        };
        let most = max_tile_rows();
        let tiles = m.div_ceil(most).max(1);
        let mut first = 0;
        for t in 0..tiles {
            // Equal heights: the first `m % tiles` tiles take one row more.
            let rows = m / tiles + usize::from(t < m % tiles);
            tile_product(
                &mut out[first * PANEL..(first + rows) * PANEL],
                &a[first * k..(first + rows) * k],
                panel,
                k,
            );
            first += rows;
        }
        debug_assert_eq!(first, m);
    }
}

/// The left-hand side of a product as the kernel of this CPU reads it.
enum Lhs<'a> {
    /// Interleaved for the AVX2 tile.
    Tiles(tile_avx2::RowTiles),
    /// Row-major `[m, k]`, for the portable tile.
    Rows(&'a [f32], usize),
}

impl<'a> Lhs<'a> {
    fn new(a: &'a [f32], m: usize, k: usize) -> Self {
        if uses_avx2_tile() {
            Lhs::Tiles(tile_avx2::RowTiles::new(a, m, k))
        } else {
            Lhs::Rows(a, m)
        }
    }
}

/// The most rows one pass over the weights serves (single-threaded): its interleaved rows and
/// output tile stay in L2 while the weights stream past.
const ROW_BLOCK: usize = 128;

/// Steps of the inner dimension per block of the AVX2 path (a 4 KB slice of a panel).
const K_BLOCK: usize = 64;

/// Whether products run on the AVX2 tile (`tile_avx2`): AVX2 and FMA without AVX-512.
fn uses_avx2_tile() -> bool {
    max_tile_rows() == tile_avx2::ROWS && tile_avx2::available()
}

/// Below this many rows a product is faster here than on `gemm`. With the AVX2 tile, always
/// (measured on the model's 24 layers in a row, weights cold, AMD EPYC: 62 vs 19 GFLOP/s at 15
/// rows, 74 vs 66 at 122; in row blocks of 128, long texts in batches of 16 and 64 ran 1.2–1.3×
/// faster than on `gemm`); with AVX-512 (Intel Xeon), `gemm` was ahead from 64 rows on.
pub fn max_rows() -> usize {
    if uses_avx2_tile() { usize::MAX } else { 64 }
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
    // Past the panel's end this is the start of the next panel, which lies right after it: the
    // hardware prefetcher alone left the kernel waiting on the weights.
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
            (300, 40, 48),
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
