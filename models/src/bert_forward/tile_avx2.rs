//! The register tile of the packed product on AVX2 + FMA, in intrinsics: up to 6 rows × 16
//! columns, 12 accumulators, each panel row loaded once into two registers and each input value
//! broadcast once.
//!
//! The portable tile (`packed::tile`) leaves this shape to the compiler, which on AVX2 runs out
//! of its 16 vector registers and folds a panel load into every multiply-add: 12 loads and 6
//! broadcasts for 12 FMAs, so the kernel waited on the load ports (~31 GFLOP/s here, against
//! gemm's ~55). Written out, it is 2 loads and 6 broadcasts for 12 FMAs.

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

/// One step of a blocked product: for `rows` rows of `a` (1 to [`ROWS`]; row `i` starts at
/// `a[i·lda]`), `out[i·ldo + j] (+)= Σ_kk a[i·lda + kk] ·
/// panel[kk·16 + j]` over the `kk < panel.len() / 16` steps of this block of the inner dimension,
/// for the 16 columns `j`. With `accumulate`, the sums are added to what `out` holds (a later
/// block of the inner dimension); without, they replace it.
///
/// # Panics
/// If the CPU lacks AVX2 or FMA ([`available`]), or the slices do not have those shapes.
pub fn tile_product(
    out: &mut [f32],
    ldo: usize,
    a: &[f32],
    lda: usize,
    rows: usize,
    panel: &[f32],
    accumulate: bool,
) {
    assert!(available(), "the AVX2 tile needs AVX2 and FMA");
    let steps = panel.len() / 16;
    assert!(
        panel.len() == steps * 16 && steps > 0,
        "the panel is not rows of 16"
    );
    assert!(lda >= steps && ldo >= 16, "row strides shorter than a row");
    assert!((1..=ROWS).contains(&rows), "{rows} rows in a tile");
    assert!(
        a.len() >= (rows - 1) * lda + steps,
        "a is shorter than its rows"
    );
    assert!(
        out.len() >= (rows - 1) * ldo + 16,
        "out is shorter than its rows"
    );
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: the CPU has AVX2 and FMA (asserted above), and the shapes were checked above as
    // `tile` requires.
    unsafe {
        let args = (out, ldo, a, lda, panel, steps, accumulate);
        match rows {
            6 => tile::<6>(args),
            5 => tile::<5>(args),
            4 => tile::<4>(args),
            3 => tile::<3>(args),
            2 => tile::<2>(args),
            _ => tile::<1>(args),
        }
    }
}

/// `tile_product`'s arguments: out, ldo, a, lda, panel, steps, accumulate.
type TileArgs<'a> = (
    &'a mut [f32],
    usize,
    &'a [f32],
    usize,
    &'a [f32],
    usize,
    bool,
);

/// The kernel for exactly `R` rows.
///
/// # Safety
/// The CPU supports AVX2 and FMA; `a.len() >= (R-1)·lda + steps`, `panel.len() == steps·16`,
/// `out.len() >= (R-1)·ldo + 16`.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize>((out, ldo, a, lda, panel, steps, accumulate): TileArgs<'_>) {
    use std::arch::x86_64::{
        __m256, _MM_HINT_T0, _mm_prefetch, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps,
        _mm256_setzero_ps, _mm256_storeu_ps,
    };
    let (a, w, out) = (a.as_ptr(), panel.as_ptr(), out.as_mut_ptr());
    let mut lo: [__m256; R] = [_mm256_setzero_ps(); R];
    let mut hi: [__m256; R] = [_mm256_setzero_ps(); R];
    if accumulate {
        for r in 0..R {
            // SAFETY: row `r < R` of `out` holds 16 values from `r·ldo`.
            unsafe {
                lo[r] = _mm256_loadu_ps(out.add(r * ldo));
                hi[r] = _mm256_loadu_ps(out.add(r * ldo + 8));
            }
        }
    }
    for kk in 0..steps {
        // SAFETY (all loads): `kk < steps`, so `w + 16·kk .. + 16` lies in the panel and
        // `a + r·lda + kk` in row `r < R` of `a`. A prefetch never faults, whatever the address.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add((kk + PREFETCH_AHEAD) * 16).cast());
            let w0 = _mm256_loadu_ps(w.add(kk * 16));
            let w1 = _mm256_loadu_ps(w.add(kk * 16 + 8));
            for r in 0..R {
                let x = _mm256_broadcast_ss(&*a.add(r * lda + kk));
                lo[r] = _mm256_fmadd_ps(x, w0, lo[r]);
                hi[r] = _mm256_fmadd_ps(x, w1, hi[r]);
            }
        }
    }
    for r in 0..R {
        // SAFETY: row `r < R` of `out` holds 16 values from `r·ldo`.
        unsafe {
            _mm256_storeu_ps(out.add(r * ldo), lo[r]);
            _mm256_storeu_ps(out.add(r * ldo + 8), hi[r]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tile_matches_the_naive_product_for_every_row_count() {
        if !available() {
            eprintln!("no AVX2 + FMA on this CPU: the tile is never chosen here");
            return;
        }
        let k = 37;
        let panel: Vec<f32> = (0..k * 16).map(|i| ((i * 5) % 17) as f32 - 8.0).collect();
        for rows in 1..=ROWS {
            // Rows of `a` and `out` with strides longer than the row, in two blocks of the
            // inner dimension (the second accumulating).
            let (lda, ldo, split) = (k + 3, 21, 20);
            let a: Vec<f32> = (0..(rows - 1) * lda + k)
                .map(|i| ((i * 3) % 7) as f32 * 0.5)
                .collect();
            let mut out = vec![f32::NAN; (rows - 1) * ldo + 16];
            tile_product(&mut out, ldo, &a, lda, rows, &panel[..split * 16], false);
            tile_product(
                &mut out,
                ldo,
                &a[split..],
                lda,
                rows,
                &panel[split * 16..],
                true,
            );
            for r in 0..rows {
                for j in 0..16 {
                    let want: f32 = (0..k).map(|p| a[r * lda + p] * panel[p * 16 + j]).sum();
                    assert_eq!(out[r * ldo + j], want, "row {r} of {rows}, column {j}");
                }
            }
        }
    }
}
