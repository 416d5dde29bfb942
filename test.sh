#!/usr/bin/env bash
# Runs every test of the workspace: fetches the models if they are missing (the embedder and the
# opt-in local answer model), builds the binaries the
# black-box tests start, then runs the unit, integration and doc tests.
# Arguments go to the test runner, e.g.  ./test.sh parity
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
scripts/system-deps.sh
models/fetch.sh
# The opt-in local answer model: its tokenizer and generation are tested too.
models/fetch.sh SmolLM2-135M-Instruct
# restic and moto_server for the backup tests.
scripts/test-tools.sh
cargo build --workspace --bins
# A short run of every fuzz target over its committed corpus, built unoptimised (the build is
# most of a short run; scripts/fuzz.sh SECONDS fuzzes longer, optimised).
scripts/fuzz.sh --dev 10
# Doc tests first, so the run ends with the main runner's summary.
cargo test --workspace --doc
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  echo "test.sh: cargo-nextest is not installed; using cargo test" >&2
  cargo test --workspace --no-fail-fast "$@"
fi
