#!/usr/bin/env python3
"""hnswlib on the same vectors, queries and ground truth as `concierge-bench ann`.

Builds an HNSW index (cosine space, same M / ef_construction, same build threads), then for each
ef answers every query one at a time on one thread and reports recall@k and queries/s. Exit code 3
when hnswlib or numpy is missing (the benchmark then skips this peer with a message).
"""
import argparse
import json
import sys
import time


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--queries", required=True)
    p.add_argument("--truth", required=True, help="JSON list of id lists (exact top-k per query)")
    p.add_argument("--dim", type=int, required=True)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--efs", required=True)
    p.add_argument("--threads-build", type=int, default=2)
    args = p.parse_args()
    try:
        import numpy as np
        import hnswlib
    except ImportError as e:
        print(f"hnswlib peer: {e} (run bench/peers/setup.sh)", file=sys.stderr)
        return 3
    base = np.fromfile(args.base, dtype="<f4").reshape(-1, args.dim)
    queries = np.fromfile(args.queries, dtype="<f4").reshape(-1, args.dim)
    with open(args.truth) as f:
        truth = [set(t) for t in json.load(f)]
    before = rss_bytes()
    index = hnswlib.Index(space="cosine", dim=args.dim)
    index.init_index(max_elements=len(base), M=args.m, ef_construction=args.ef_construction, random_seed=100)
    index.set_num_threads(args.threads_build)
    t = time.perf_counter()
    index.add_items(base, np.arange(len(base)))
    build = time.perf_counter() - t
    memory = rss_bytes() - before
    index.set_num_threads(1)
    points = []
    for ef in [int(x) for x in args.efs.split(",")]:
        index.set_ef(max(ef, args.k))
        found = 0
        t = time.perf_counter()
        results = [index.knn_query(q.reshape(1, -1), k=args.k)[0][0] for q in queries]
        elapsed = time.perf_counter() - t
        for got, want in zip(results, truth):
            found += len(set(int(i) for i in got) & want)
        points.append({"ef": ef, "recall": found / sum(len(w) for w in truth), "qps": len(queries) / elapsed})
    json.dump({"peer": f"hnswlib {hnswlib.__version__ if hasattr(hnswlib, '__version__') else ''}".strip(), "build_seconds": build, "memory_bytes": memory, "points": points}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
