//! The segment's large arrays (level-0 links, vectors) on transparent huge pages. A walk reads a
//! few rows scattered over ~90 MB at 100 000 points; on 4 KB pages nearly every row is a TLB
//! miss and a page walk before its cache lines can even be fetched, on 2 MB pages the whole
//! array is ~45 TLB entries. The memory is an anonymous map advised `MADV_HUGEPAGE` before it
//! is written (Linux's default THP mode, `madvise`, backs only advised maps with huge pages).
//! Where a map or the advice is not available, the values stay in an ordinary `Vec`: the
//! array works the same, only slower.

use std::marker::PhantomData;
use std::ops::Deref;

use bytemuck::Pod;
use memmap2::{Advice, MmapMut};

/// An immutable array of `T`, on huge pages where the system gives them.
pub(crate) struct HugeArray<T: Pod> {
    storage: Storage<T>,
}

enum Storage<T> {
    /// `len` values at the start of an anonymous map.
    Mapped {
        map: MmapMut,
        len: usize,
        _values: PhantomData<T>,
    },
    Heap(Vec<T>),
}

impl<T: Pod> HugeArray<T> {
    /// The values of `values`, moved onto huge pages (copied into an advised map; the `Vec` is
    /// kept as it is when no map can be made).
    pub fn from_vec(values: Vec<T>) -> HugeArray<T> {
        let bytes = std::mem::size_of_val(values.as_slice());
        if bytes < (2 << 20) {
            // Less than one huge page: nothing to gain.
            return HugeArray {
                storage: Storage::Heap(values),
            };
        }
        let Ok(mut map) = MmapMut::map_anon(bytes) else {
            return HugeArray {
                storage: Storage::Heap(values),
            };
        };
        // Advice only: without it (THP off, another OS) the map is ordinary memory.
        let _ = map.advise(Advice::HugePage);
        map.copy_from_slice(bytemuck::cast_slice(&values));
        HugeArray {
            storage: Storage::Mapped {
                map,
                len: values.len(),
                _values: PhantomData,
            },
        }
    }

    /// Whether the values are in an advised map (not the `Vec` fallback).
    #[cfg(test)]
    fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped { .. })
    }
}

impl<T: Pod> Deref for HugeArray<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match &self.storage {
            // A map starts on a page boundary, aligned for any `T`, and holds `len` values.
            Storage::Mapped { map, len, .. } => &bytemuck::cast_slice(&map[..])[..*len],
            Storage::Heap(values) => values,
        }
    }
}

impl<T: Pod + PartialEq> PartialEq for HugeArray<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Pod> std::fmt::Debug for HugeArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mapped = matches!(self.storage, Storage::Mapped { .. });
        f.debug_struct("HugeArray")
            .field("len", &self.len())
            .field("mapped", &mapped)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process's memory on transparent huge pages, KiB.
    fn anon_huge_kib() -> u64 {
        std::fs::read_to_string("/proc/self/smaps_rollup")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("AnonHugePages:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn a_large_array_is_mapped_onto_huge_pages_a_small_one_kept_and_both_read_back_the_same() {
        let large: Vec<u32> = (0..10_000_000).collect();
        let array = HugeArray::from_vec(large.clone());
        assert!(array.is_mapped());
        // Where the system hands out huge pages for advised maps (THP `madvise` or `always`),
        // this one's 40 MB sit mostly on them.
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        if thp.contains("[madvise]") || thp.contains("[always]") {
            assert!(anon_huge_kib() >= 20 * 1024, "{} KiB", anon_huge_kib());
        }
        assert_eq!(&*array, &large[..]);
        let small = HugeArray::from_vec(vec![1u16, 2, 3]);
        assert!(!small.is_mapped());
        assert_eq!(&*small, &[1, 2, 3]);
        assert_eq!(HugeArray::<u32>::from_vec(Vec::new()).len(), 0);
        assert_eq!(array, HugeArray::from_vec(large));
    }
}
