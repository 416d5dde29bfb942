#!/usr/bin/env python3
"""FAISS (HNSW and flat) on the same vector files, queries, ground truth and labels as
`concierge-bench ann`.

`IndexHNSWFlat` with inner product (the vectors are unit length, so this is cosine), the same M and
efConstruction, built on the same threads; `IndexFlatIP` is FAISS's exact scan. Every query is
answered one at a time on one thread; filtered variants use FAISS's native `IDSelectorBitmap` in the
search parameters. Prints the rows as JSON. Exit code 3 when faiss or numpy is missing.
"""
import sys
import time

import ann_common as c


def main():
    args = c.arguments()
    try:
        import numpy as np
        import faiss
    except ImportError as e:
        print(f"faiss peer: {e} (run bench/peers/setup.sh)", file=sys.stderr)
        return c.MISSING_PACKAGES
    base, queries, truth, labels = c.load(np, args)
    k = truth["k"]
    d = base.shape[1]
    faiss.omp_set_num_threads(args.threads_build)
    before = c.rss_bytes()
    hnsw = faiss.IndexHNSWFlat(d, args.m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = args.ef_construction
    t = time.perf_counter()
    hnsw.add(base)
    hnsw_build = time.perf_counter() - t
    hnsw_bytes = (c.rss_bytes() - before) / len(base)
    before = c.rss_bytes()
    flat = faiss.IndexFlatIP(d)
    t = time.perf_counter()
    flat.add(base)
    flat_build = time.perf_counter() - t
    flat_bytes = (c.rss_bytes() - before) / len(base)
    faiss.omp_set_num_threads(1)
    rows = []
    keep = []  # the bitmaps must outlive the selectors that point into them
    for s in truth["sets"]:
        if s["selectivity"] is None:
            sel = None
            efs = c.ints(args.efs)
        else:
            bitmap = np.packbits(labels < s["below"], bitorder="little")
            keep.append(bitmap)
            sel = faiss.IDSelectorBitmap(len(labels), faiss.swig_ptr(bitmap))
            keep.append(sel)
            efs = c.ints(args.filter_efs)

        def search_hnsw(q, ef, sel=sel):
            params = faiss.SearchParametersHNSW(efSearch=max(ef, k), sel=sel) if sel else faiss.SearchParametersHNSW(efSearch=max(ef, k))
            return hnsw.search(q.reshape(1, -1), k, params=params)[1][0]

        def search_flat(q, _ef, sel=sel):
            params = faiss.SearchParameters(sel=sel) if sel else None
            return flat.search(q.reshape(1, -1), k, params=params)[1][0]

        rows += c.sweep("faiss-hnsw", search_hnsw, queries, s, efs, hnsw_build, hnsw_bytes)
        rows += c.sweep("faiss-flat", search_flat, queries, s, [None], flat_build, flat_bytes)
    c.emit(rows, {"faiss": faiss.__version__})
    return 0


if __name__ == "__main__":
    sys.exit(main())
