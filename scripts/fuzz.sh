#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo fuzz, libFuzzer, nightly) over its committed corpus in
# fuzz/corpus/<target>, for SECONDS each (default 10: the short run ./test.sh makes), and
# prints each target's executions. New inputs found go to fuzz/target/corpus-new/<target>,
# never into the committed corpus; a crash fails the run with the input saved under
# fuzz/artifacts/<target>/ and the command to reproduce it.
# With --dev the targets build without optimisation (fuzz/target/<triple>/debug): half the build
# time of the optimised one, for the short run ./test.sh makes, where the build is most of it.
#   scripts/fuzz.sh [--dev] [SECONDS] [TARGET...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root/fuzz"
profile=()
if [ "${1:-}" = "--dev" ]; then
  profile=(--dev)
  shift
fi
seconds=${1:-10}
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(webhook_aircall webhook_guesty document_body search_body config_loader)
fi
# No sanitizer: the project's code has no unsafe (the lint denies it); coverage guidance and
# Rust's own checks (overflow, bounds, debug assertions) are what finds bugs here.
flags=(--sanitizer none --debug-assertions "${profile[@]}")
cargo +nightly fuzz build "${flags[@]}" >&2
for target in "${targets[@]}"; do
  fresh="$root/fuzz/target/corpus-new/$target"
  mkdir -p "$fresh"
  log=$(mktemp)
  if ! cargo +nightly fuzz run "${flags[@]}" "$target" "$fresh" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz: $target crashed; reproduce with: cd fuzz && cargo +nightly fuzz run ${flags[*]} $target <artifact>" >&2
    exit 1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  echo "fuzz: $target: $execs executions in ${seconds} s, no crash"
  rm -f "$log"
done
