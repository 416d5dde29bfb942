//! A hint to the CPU: start loading an element's cache line into L1 now, so the loop that reads
//! it later does not wait on memory (the embedder's matrix panels, the dense index's graph walk).
//! It reads nothing and never faults, whatever the index; on CPUs other than x86_64 it does
//! nothing.

/// Starts loading the cache line holding `data[at]` (`at` may lie past the end: the hint is
/// then about whatever memory follows, and is harmless).
#[inline(always)]
pub fn prefetch<T>(data: &[T], at: usize) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has. A prefetch is a hint: it
    // never faults, whatever the address, and changes no memory. `wrapping_add` computes the
    // address without claiming it is in bounds.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(data.as_ptr().wrapping_add(at).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, at);
}

/// Bytes of a cache line.
const LINE: usize = 64;

/// [`prefetch`] of `lines` cache lines from `data[at]` on: the first lines of a row, or all of
/// it.
#[inline(always)]
pub fn prefetch_lines<T>(data: &[T], at: usize, lines: usize) {
    let per_line = (LINE / std::mem::size_of::<T>().max(1)).max(1);
    for line in 0..lines {
        prefetch(data, at + line * per_line);
    }
}

/// Cache lines `count` values of `T` span.
pub fn lines_of<T>(count: usize) -> usize {
    (count * std::mem::size_of::<T>()).div_ceil(LINE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefetch_in_or_past_the_slice_changes_nothing() {
        let data = vec![1.5f32; 64];
        for at in [0, 17, 63, 64, 10_000, usize::MAX / 8] {
            prefetch(&data, at);
        }
        assert!(data.iter().all(|x| *x == 1.5));
        prefetch::<u8>(&[], 0);
        prefetch_lines(&data, 60, lines_of::<f32>(64));
        assert_eq!(lines_of::<f32>(384), 24);
        assert_eq!(lines_of::<u16>(384), 12);
        assert_eq!(lines_of::<u8>(65), 2);
        assert!(data.iter().all(|x| *x == 1.5));
    }
}
