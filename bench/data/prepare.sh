#!/usr/bin/env bash
# Builds the benchmark datasets from WordNet 3.0 (Debian's `wordnet-base`; WordNet 3.0 licence,
# permissive: see bench/data/wordnet-base/usr/share/doc/wordnet-base/copyright once unpacked).
#   bench/data/prepare.sh
# Writes bench/data/wordnet/: corpus.jsonl, queries.jsonl, qrels/test.tsv (BEIR layout, for
# `concierge-bench retrieval`) and base.npy / queries.npy (MiniLM vectors, for `concierge-bench ann`).
# The package is downloaded and unpacked here, not installed. Idempotent: reruns reuse what exists.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
dict=bench/data/wordnet-base/usr/share/wordnet
if [ ! -f "$dict/data.noun" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  if ! (cd "$work" && apt-get download wordnet-base >/dev/null 2>&1); then
    echo "prepare: apt-get download failed; refreshing the package lists (apt-get update) ..." >&2
    apt-get update >/dev/null
    (cd "$work" && apt-get download wordnet-base)
  fi
  rm -rf bench/data/wordnet-base
  dpkg -x "$work"/wordnet-base_*.deb bench/data/wordnet-base
  echo "prepare: unpacked $(ls "$work"/wordnet-base_*.deb | xargs -n1 basename) into bench/data/wordnet-base" >&2
fi
[ -x target/debug/concierge-bench ] || cargo build --workspace --bins
if [ -f bench/data/wordnet/base.npy ] && [ -f bench/data/wordnet/queries.npy ] \
   && [ -f bench/data/wordnet/qrels/test.tsv ] && [ "${1:-}" != "--force" ]; then
  echo "prepare: bench/data/wordnet is complete (--force rebuilds it)" >&2
  exit 0
fi
target/debug/concierge-bench prepare-wordnet --dict "$dict" --out bench/data/wordnet
