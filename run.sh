#!/usr/bin/env bash
# Starts Concierge on its embedded defaults (no configuration file): fetches the model if it is
# missing, builds, and runs `concierge serve` on 127.0.0.1:8080.
# Arguments, if any, replace `serve`:  ./run.sh embed "late check-in"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
scripts/system-deps.sh
models/fetch.sh
cargo build --workspace --bins
if [ "$#" -eq 0 ]; then set -- serve; fi
exec target/debug/concierge "$@"
