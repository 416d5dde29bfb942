#!/usr/bin/env python3
"""ONNX Runtime peer of `concierge-bench embed`: the same model, texts and settings as candle.

There is no ONNX file of all-MiniLM-L6-v2 in fp32 on the registries this project reaches, and torch
(the usual exporter) is gigabytes, so this script writes the BERT graph itself from the same
`model.safetensors` with the `onnx` package (standard ops: Gather, MatMul, LayerNormalization,
Softmax, Erf-GELU), then lets ONNX Runtime's transformer optimizer fuse it (attention, skip layer
norm, bias GELU, embedding layer norm) the way it does for exported BERT models. Before timing it
checks its vectors against sentence-transformers' reference (min cosine, printed in the result).

Timing includes tokenisation (the same tokenizer.json, truncation 256, padding to the longest in the
batch) and mean pooling + L2 normalisation, as on the candle side. It serves the benchmark over
standard input and output, one JSON object per line (the first line it writes names the peer and
its parity), so the benchmark can alternate its own runs with these; exits 3 when its packages are
missing (bench/peers/setup.sh installs them).
"""
import argparse
import json
import os
import struct
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
try:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from tokenizers import Tokenizer
except ImportError as err:
    print(f"onnx_embed.py: missing Python package {err.name!r}; run bench/peers/setup.sh", file=sys.stderr)
    sys.exit(3)


def load_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":
            continue
        start, end = meta["data_offsets"]
        tensors[name] = np.frombuffer(data[start:end], dtype=np.float32).reshape(meta["shape"])
    return tensors


def build_bert_graph(weights, config):
    """A BERT encoder as an ONNX graph: (input_ids, attention_mask, token_type_ids) -> last hidden state."""
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim, eps = hidden // heads, config["layer_norm_eps"]
    inits, nodes = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def w(key):
        return const(key, weights[key])

    def linear(x, prefix, out):
        wt = const(prefix + ".weight_t", np.ascontiguousarray(weights[prefix + ".weight"].T))
        return node("Add", [node("MatMul", [x, wt], out + "_mm"), w(prefix + ".bias")], out)

    def layer_norm(x, prefix, out):
        return node("LayerNormalization", [x, w(prefix + ".weight"), w(prefix + ".bias")], out, axis=-1, epsilon=eps)

    # Embeddings.
    word = node("Gather", [w("embeddings.word_embeddings.weight"), "input_ids"], "word_emb")
    types = node("Gather", [w("embeddings.token_type_embeddings.weight"), "token_type_ids"], "type_emb")
    seq_len = node("Gather", [node("Shape", ["input_ids"], "ids_shape"), const("one_i64", np.array(1, np.int64))], "seq_len")
    positions = node("Range", [const("zero_i64", np.array(0, np.int64)), seq_len, "one_i64"], "positions")
    pos = node("Gather", [w("embeddings.position_embeddings.weight"), positions], "pos_emb")
    x = node("Add", [node("Add", [word, types], "word_type"), pos], "emb_sum")
    x = layer_norm(x, "embeddings.LayerNorm", "emb_ln")

    # Additive attention mask: 0 for tokens, -10000 for padding, shape (batch, 1, 1, seq).
    # (The node order is the one torch exports, which ONNX Runtime's attention fusion looks for.)
    mask_u1 = node("Unsqueeze", ["attention_mask", const("axis_1", np.array([1], np.int64))], "mask_u1")
    mask_u2 = node("Unsqueeze", [mask_u1, const("axis_2", np.array([2], np.int64))], "mask_u2")
    mask_f = node("Cast", [mask_u2], "mask_f", to=TensorProto.FLOAT)
    inv = node("Sub", [const("one_f", np.array(1.0, np.float32)), mask_f], "mask_inv")
    ext = node("Mul", [inv, const("neg_big", np.array(-10000.0, np.float32))], "mask_ext")

    split_shape = const("split_shape", np.array([0, 0, heads, head_dim], np.int64))
    merge_shape = const("merge_shape", np.array([0, 0, hidden], np.int64))
    sqrt2 = const("sqrt2", np.array(np.sqrt(2.0), np.float32))
    half = const("half", np.array(0.5, np.float32))
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q = linear(x, f"{p}.attention.self.query", f"l{i}_q")
        k = linear(x, f"{p}.attention.self.key", f"l{i}_k")
        v = linear(x, f"{p}.attention.self.value", f"l{i}_v")
        q = node("Transpose", [node("Reshape", [q, split_shape], f"l{i}_q4")], f"l{i}_qt", perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [k, split_shape], f"l{i}_k4")], f"l{i}_kt", perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [v, split_shape], f"l{i}_v4")], f"l{i}_vt", perm=[0, 2, 1, 3])
        scores = node("Div", [node("MatMul", [q, k], f"l{i}_qk"), const(f"l{i}_sqrt_d", np.array(np.sqrt(head_dim), np.float32))], f"l{i}_scaled")
        probs = node("Softmax", [node("Add", [scores, ext], f"l{i}_masked")], f"l{i}_probs", axis=-1)
        ctx = node("Transpose", [node("MatMul", [probs, v], f"l{i}_ctx4")], f"l{i}_ctxt", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, merge_shape], f"l{i}_ctx")
        attn = linear(ctx, f"{p}.attention.output.dense", f"l{i}_attn")
        x = layer_norm(node("Add", [attn, x], f"l{i}_res1"), f"{p}.attention.output.LayerNorm", f"l{i}_ln1")
        inter = linear(x, f"{p}.intermediate.dense", f"l{i}_inter")
        erf = node("Erf", [node("Div", [inter, sqrt2], f"l{i}_div")], f"l{i}_erf")
        gx = node("Mul", [inter, node("Add", [erf, "one_f"], f"l{i}_erf1")], f"l{i}_gx")
        gelu = node("Mul", [gx, half], f"l{i}_gelu")
        out = linear(gelu, f"{p}.output.dense", f"l{i}_out")
        x = layer_norm(node("Add", [out, x], f"l{i}_res2"), f"{p}.output.LayerNorm", f"l{i}_ln2")
    nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))

    dims = ["batch", "seq"]
    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info(n, TensorProto.INT64, dims) for n in ("input_ids", "attention_mask", "token_type_ids")],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, dims + [hidden])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="concierge-bench")
    onnx.checker.check_model(model)
    return model


def onnx_model(model_dir, cache_dir):
    """The fused ONNX model, built once and cached next to the benchmark output."""
    os.makedirs(cache_dir, exist_ok=True)
    fused = os.path.join(cache_dir, "all-MiniLM-L6-v2.fused.onnx")
    if os.path.exists(fused):
        return fused
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    plain = os.path.join(cache_dir, "all-MiniLM-L6-v2.onnx")
    onnx.save(build_bert_graph(load_safetensors(os.path.join(model_dir, "model.safetensors")), config), plain)
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        optimized = optimize_model(plain, model_type="bert", num_heads=config["num_attention_heads"], hidden_size=config["hidden_size"], opt_level=0)
        print(f"onnx_embed.py: fused operators: {optimized.get_fused_operator_statistics()}", file=sys.stderr)
        optimized.save_model_to_file(fused)
    except Exception as err:  # the optimizer is an extra: the plain graph is still a valid peer
        print(f"onnx_embed.py: transformer optimizer failed ({err}); using the plain graph", file=sys.stderr)
        return plain
    return fused


class Embedder:
    def __init__(self, model_path, model_dir, threads, max_tokens=256):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_tokens)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pads to the longest in the batch
        self.inputs = {i.name for i in self.session.get_inputs()}

    def embed(self, texts):
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


def parity(embedder, reference_path):
    with open(reference_path) as f:
        items = json.load(f)["items"]
    worst = 1.0
    for item in items:
        got = embedder.embed([item["text"]])[0]
        ref = np.asarray(item["embedding"], dtype=np.float32)
        worst = min(worst, float(got @ ref / (np.linalg.norm(got) * np.linalg.norm(ref))))
    return worst


def measure(embedder, texts, batch, seconds):
    def chunk(k):
        return [texts[(k * batch + i) % len(texts)] for i in range(batch)]

    embedder.embed(chunk(0))
    cpu0, t0, n = time.process_time(), time.perf_counter(), 0
    while n < 3 or time.perf_counter() - t0 < seconds:
        embedder.embed(chunk(n + 1))
        n += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"sentences_per_s": n * batch / wall, "sentences_per_cpu_s": n * batch / cpu if cpu > 0 else float("nan")}


def backlog(sessions, texts, call, batch):
    """Embeds `texts` the way an ingest worker drains a backlog: calls of `call` texts (the
    indexer's read size), each sorted by length (so a batch pads little) and cut into batches of
    `batch`, the batches shared out over one thread per session (ONNX Runtime releases the GIL while
    it runs). Returns wall seconds, CPU seconds and the vectors in input order."""
    from concurrent.futures import ThreadPoolExecutor

    out = [None] * len(texts)
    lengths = [sum(e.attention_mask) for e in sessions[0].tokenizer.encode_batch(texts)]  # unpadded
    cpu0, t0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(sessions)) as pool:
        for start in range(0, len(texts), call):
            order = sorted(range(start, min(start + call, len(texts))), key=lambda i: lengths[i])
            batches = [order[i:i + batch] for i in range(0, len(order), batch)]
            # Batch j goes to session j mod n: each session runs its share in order.
            def work(s):
                for b in batches[s::len(sessions)]:
                    for i, v in zip(b, sessions[s].embed([texts[i] for i in b])):
                        out[i] = v
            list(pool.map(work, range(len(sessions))))
    return time.perf_counter() - t0, time.process_time() - cpu0, out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--texts", required=True, help='JSON {"short": [...], "long": [...], "backlog": [...]}')
    parser.add_argument("--threads", default="1,2", help="thread counts of the sessions to open")
    parser.add_argument("--reference", default=os.path.join(here, "../../tests/fixtures/minilm-reference.json"))
    parser.add_argument("--cache-dir", default=os.path.join(here, "../out/cache"))
    args = parser.parse_args()
    with open(args.texts) as f:
        sets = json.load(f)
    path = onnx_model(args.model_dir, args.cache_dir)
    threads = [int(t) for t in args.threads.split(",")]
    embedders = {t: Embedder(path, args.model_dir, t) for t in threads}
    worst = parity(embedders[threads[0]], args.reference)
    reply({"peer": f"ONNX Runtime {ort.__version__}", "parity_min_cosine": worst})
    # One request per line, one answer per line, until standard input closes: the benchmark
    # interleaves these runs with its own, so both sides see the same machine.
    for line in sys.stdin:
        try:
            request = json.loads(line)
            if request["op"] == "measure":
                t = request["threads"]
                if t not in embedders:
                    embedders[t] = Embedder(path, args.model_dir, t)
                reply(measure(embedders[t], sets[request["length"]], request["batch"], request["seconds"]))
            elif request["op"] == "backlog":
                texts = sets["backlog"]
                sessions = [Embedder(path, args.model_dir, 1) for _ in range(request["sessions"])]
                print(f"onnx_embed.py: backlog of {len(texts)} texts on {len(sessions)} sessions", file=sys.stderr)
                wall, cpu, vectors = backlog(sessions, texts, request["call"], request["batch"])
                if request.get("vectors_out"):
                    np.asarray(vectors, dtype=np.float32).tofile(request["vectors_out"])
                reply({"wall_s": wall, "cpu_s": cpu})
            else:
                reply({"error": f"unknown op {request['op']!r}"})
        except (KeyError, ValueError, TypeError) as err:
            reply({"error": f"bad request {line.strip()!r}: {err}"})


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
