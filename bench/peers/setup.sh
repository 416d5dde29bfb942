#!/usr/bin/env bash
# Installs the Python peers the benchmarks compare against into bench/.venv (optional: the
# benchmarks skip a peer whose packages are missing, with a message).
#   bench/peers/setup.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv="$here/../.venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# ONNX Runtime and what builds and feeds its model: onnx (the graph), numpy, tokenizers (the same
# tokenizer.json as candle), sympy (ONNX Runtime's transformer optimizer needs it to fuse).
# hnswlib (built from source: needs g++) and faiss-cpu are the ANN peers of `concierge-bench ann`.
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
echo "peers installed in $venv"
