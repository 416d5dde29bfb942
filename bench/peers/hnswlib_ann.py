#!/usr/bin/env python3
"""hnswlib on the same vector files, queries, ground truth and labels as `concierge-bench ann`.

Builds an HNSW index (cosine space, the same M / ef_construction, the same build threads), then for
each ef answers every query one at a time on one thread; filtered variants pass hnswlib's `filter`
callable (its documented API: a Python function called per candidate). Prints the rows as JSON.
Exit code 3 when hnswlib or numpy is missing (the benchmark then skips this peer with a message).
"""
import sys
import time

import ann_common as c


def main():
    args = c.arguments()
    try:
        import numpy as np
        import hnswlib
    except ImportError as e:
        print(f"hnswlib peer: {e} (run bench/peers/setup.sh)", file=sys.stderr)
        return c.MISSING_PACKAGES
    base, queries, truth, labels = c.load(np, args)
    k = truth["k"]
    before = c.rss_bytes()
    index = hnswlib.Index(space="cosine", dim=base.shape[1])
    index.init_index(max_elements=len(base), M=args.m, ef_construction=args.ef_construction, random_seed=100)
    index.set_num_threads(args.threads_build)
    t = time.perf_counter()
    index.add_items(base, np.arange(len(base)))
    build_s = time.perf_counter() - t
    per_vector = (c.rss_bytes() - before) / len(base)
    index.set_num_threads(1)
    rows = []
    for s in truth["sets"]:
        if s["selectivity"] is None:
            def search(q, ef):
                index.set_ef(max(ef, k))
                return index.knn_query(q.reshape(1, -1), k=k)[0][0]
            efs = c.ints(args.efs)
        else:
            below = s["below"]
            def allowed(i, below=below):
                return labels[i] < below
            def search(q, ef):
                index.set_ef(max(ef, k))
                try:
                    return index.knn_query(q.reshape(1, -1), k=k, filter=allowed)[0][0]
                except RuntimeError:  # fewer than k found: hnswlib raises rather than return less
                    return []
            efs = c.ints(args.filter_efs)
        rows += c.sweep("hnswlib", search, queries, s, efs, build_s, per_vector)
    c.emit(rows, {"hnswlib": getattr(hnswlib, "__version__", "0.8.0")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
