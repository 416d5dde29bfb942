"""What the ANN peers share with `concierge-bench ann`: the vector files, the ground truth and the
labels it wrote, the sweep, and the JSON rows it reads back (the same schema as its own rows)."""
import argparse
import json
import sys
import time

MISSING_PACKAGES = 3


def arguments():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True, help=".npy (float32, 2-D) or .fvecs")
    p.add_argument("--queries", required=True)
    p.add_argument("--truth", required=True, help="JSON written by concierge-bench ann")
    p.add_argument("--labels", required=True, help="one byte per base vector (its filter label)")
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=200)
    p.add_argument("--efs", required=True)
    p.add_argument("--filter-efs", required=True)
    p.add_argument("--threads-build", type=int, default=2)
    return p.parse_args()


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def load_vectors(np, path):
    if path.endswith(".npy"):
        a = np.load(path)
    elif path.endswith(".fvecs"):
        raw = np.fromfile(path, dtype="<i4")
        dim = int(raw[0])
        a = raw.reshape(-1, dim + 1)[:, 1:].view("<f4")
    else:
        raise SystemExit(f"{path}: expected .npy or .fvecs")
    return np.ascontiguousarray(a, dtype=np.float32)


def load(np, args):
    base = load_vectors(np, args.base)
    queries = load_vectors(np, args.queries)
    with open(args.truth) as f:
        truth = json.load(f)
    labels = np.fromfile(args.labels, dtype=np.uint8)
    if len(labels) != len(base):
        raise SystemExit(f"{len(labels)} labels for {len(base)} vectors")
    return base, queries, truth, labels


def recall(results, truth):
    found = sum(len(set(int(i) for i in got if i >= 0) & set(want)) for got, want in zip(results, truth))
    return found / max(1, sum(len(w) for w in truth))


def sweep(library, search, queries, truth_set, efs, build_s, bytes_per_vector):
    """Rows for one truth set: every query one at a time on one thread, per ef (None: exact)."""
    rows = []
    for ef in efs:
        t = time.perf_counter()
        results = [search(q, ef) for q in queries]
        elapsed = time.perf_counter() - t
        rows.append({
            "library": library,
            "selectivity": truth_set["selectivity"],
            "ef_search": ef,
            "recall_at_10": recall(results, truth_set["truth"]),
            "qps": len(queries) / elapsed,
            "build_s": build_s,
            "bytes_per_vector": bytes_per_vector,
        })
        print(f"{library} selectivity {truth_set['selectivity']} ef {ef}: recall {rows[-1]['recall_at_10']:.4f}, {rows[-1]['qps']:.0f} q/s", file=sys.stderr)
    return rows


def ints(text):
    return [int(x) for x in text.split(",") if x]


def emit(rows, versions):
    json.dump({"rows": rows, "versions": versions}, sys.stdout)
