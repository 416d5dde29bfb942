//! The register tile of the packed product on AVX2 + FMA, in intrinsics: up to 6 rows × 16
//! columns, 12 accumulators, each panel row loaded once into two registers and each input value
//! broadcast once.
//!
//! The portable tile (`packed::tile`) leaves this shape to the compiler, which on AVX2 runs out
//! of its 16 vector registers and folds a panel load into every multiply-add: 12 loads and 6
//! broadcasts for 12 FMAs, so the kernel waited on the load ports (~31 GFLOP/s here, against
//! gemm's ~55). Written out, it is 2 loads and 6 broadcasts for 12 FMAs, the broadcasts from the
//! tile's rows interleaved step by step ([`RowTiles`]).

/// Most rows of a tile.
pub const ROWS: usize = 6;

/// Panel rows fetched ahead of the one being multiplied (see `packed`).
const PREFETCH_AHEAD: usize = 64;

/// Whether this CPU runs the kernel (checked once; the standard library caches the answer).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The rows of a left-hand side `a[m×k]` cut into tiles of equal height (at most [`ROWS`]; the
/// first `m % tiles` take one row more), each tile stored step by step: the `R` values of step
/// `kk` side by side. The kernel then broadcasts from one stream instead of six rows `k` apart.
/// Made once per product and read for every panel.
#[derive(Debug)]
pub struct RowTiles {
    data: Vec<f32>,
    m: usize,
    k: usize,
}

impl RowTiles {
    /// Interleaves the `m` rows of `a` (row-major `[m, k]`).
    pub fn new(a: &[f32], m: usize, k: usize) -> Self {
        assert_eq!(a.len(), m * k, "a is not {m}×{k}");
        let mut data = Vec::with_capacity(m * k);
        let mut first = 0;
        for rows in heights(m) {
            for kk in 0..k {
                data.extend((0..rows).map(|r| a[(first + r) * k + kk]));
            }
            first += rows;
        }
        Self { data, m, k }
    }
}

/// The heights of the tiles of `m` rows: as few tiles as hold them, heights differing by at most
/// one (15 rows are 5 + 5 + 5, not 6 + 6 + 3, so no tile runs short of accumulators).
fn heights(m: usize) -> impl Iterator<Item = usize> {
    let tiles = m.div_ceil(ROWS);
    (0..tiles).map(move |t| m / tiles + usize::from(t < m % tiles))
}

/// `out[m×16] = a · panel[k×16]` (`out` and `panel` row-major): every tile runs over one block
/// of `block` steps of the inner dimension before the next block, so the block's weights stay in
/// L1 while the tiles use them, and stream in from memory evenly meanwhile. One call per panel:
/// the loops run inside the AVX2 code.
///
/// # Panics
/// If the CPU lacks AVX2 or FMA ([`available`]), or the shapes do not agree.
pub fn panel_product(out: &mut [f32], a: &RowTiles, panel: &[f32], block: usize) {
    assert!(available(), "the AVX2 tile needs AVX2 and FMA");
    let (m, k) = (a.m, a.k);
    assert!(
        panel.len() == k * 16 && k > 0,
        "the panel is not {k} rows of 16"
    );
    assert!(out.len() == m * 16, "out is not {m} rows of 16");
    assert!(block > 0, "an empty block");
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: the CPU has AVX2 and FMA (asserted above).
    unsafe {
        panel_blocks(out, a, panel, block)
    }
}

/// `panel_product` in AVX2 code.
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn panel_blocks(out: &mut [f32], a: &RowTiles, panel: &[f32], block: usize) {
    let k = a.k;
    for start in (0..k).step_by(block) {
        let steps = block.min(k - start);
        let w = &panel[start * 16..(start + steps) * 16];
        let mut first = 0;
        for rows in heights(a.m) {
            let tile_a = &a.data[first * k..(first + rows) * k];
            let args = (
                &mut out[first * 16..(first + rows) * 16],
                &tile_a[start * rows..(start + steps) * rows],
                w,
                start > 0,
            );
            // SAFETY: AVX2 and FMA as this function requires; the slices have the lengths
            // `tile` requires (slicing checked them): `steps·R`, `steps·16` and `R·16`.
            unsafe {
                match rows {
                    6 => tile::<6>(args),
                    5 => tile::<5>(args),
                    4 => tile::<4>(args),
                    3 => tile::<3>(args),
                    2 => tile::<2>(args),
                    _ => tile::<1>(args),
                }
            }
            first += rows;
        }
    }
}

/// `tile`'s arguments: out (`R × 16`), a (`steps × R`, step by step), w (`steps × 16`),
/// accumulate.
type TileArgs<'a> = (&'a mut [f32], &'a [f32], &'a [f32], bool);

/// `out (+)= a · w` for one tile of exactly `R` rows over one block of steps. With
/// `accumulate`, the sums are added to what `out` holds (a later block); without, they replace
/// it.
///
/// # Safety
/// The CPU supports AVX2 and FMA; `a.len() == steps·R`, `w.len() == steps·16` and
/// `out.len() == R·16`, for `steps = w.len() / 16`.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize>((out, a, w, accumulate): TileArgs<'_>) {
    use std::arch::x86_64::{
        __m256, _MM_HINT_T0, _mm_prefetch, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps,
        _mm256_setzero_ps, _mm256_storeu_ps,
    };
    let steps = w.len() / 16;
    let (a, w, out) = (a.as_ptr(), w.as_ptr(), out.as_mut_ptr());
    let mut lo: [__m256; R] = [_mm256_setzero_ps(); R];
    let mut hi: [__m256; R] = [_mm256_setzero_ps(); R];
    if accumulate {
        for r in 0..R {
            // SAFETY: `out` holds `R × 16` values.
            unsafe {
                lo[r] = _mm256_loadu_ps(out.add(r * 16));
                hi[r] = _mm256_loadu_ps(out.add(r * 16 + 8));
            }
        }
    }
    for kk in 0..steps {
        // SAFETY (all loads): `kk < steps`, so `w + 16·kk .. + 16` lies in `w` and
        // `a + R·kk + r` in `a`. A prefetch never faults, whatever the address.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add((kk + PREFETCH_AHEAD) * 16).cast());
            let w0 = _mm256_loadu_ps(w.add(kk * 16));
            let w1 = _mm256_loadu_ps(w.add(kk * 16 + 8));
            for r in 0..R {
                let x = _mm256_broadcast_ss(&*a.add(kk * R + r));
                lo[r] = _mm256_fmadd_ps(x, w0, lo[r]);
                hi[r] = _mm256_fmadd_ps(x, w1, hi[r]);
            }
        }
    }
    for r in 0..R {
        // SAFETY: `out` holds `R × 16` values.
        unsafe {
            _mm256_storeu_ps(out.add(r * 16), lo[r]);
            _mm256_storeu_ps(out.add(r * 16 + 8), hi[r]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panel_product_matches_the_naive_one_for_any_rows_and_blocks() {
        if !available() {
            eprintln!("no AVX2 + FMA on this CPU: the tile is never chosen here");
            return;
        }
        let k = 37;
        let panel: Vec<f32> = (0..k * 16).map(|i| ((i * 5) % 17) as f32 - 8.0).collect();
        // Every tile height (1 to 6 rows, and 13 rows as 5 + 4 + 4); one block, blocks that
        // divide k and blocks that leave a short last one.
        for m in (1..=ROWS).chain([13]) {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 3) % 7) as f32 * 0.5).collect();
            for block in [k, 1, 5, 64] {
                let mut out = vec![f32::NAN; m * 16];
                panel_product(&mut out, &RowTiles::new(&a, m, k), &panel, block);
                for r in 0..m {
                    for j in 0..16 {
                        let want: f32 = (0..k).map(|p| a[r * k + p] * panel[p * 16 + j]).sum();
                        assert_eq!(out[r * 16 + j], want, "row {r} of {m}, block {block}");
                    }
                }
            }
        }
    }
}
