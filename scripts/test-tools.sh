#!/usr/bin/env bash
# Installs the tools the backup tests start, when they are missing:
#   restic        (Debian package) proves our repositories are restic-readable
#   moto_server   (pip `moto[server]`, pinned, in tests/.venv) the S3-compatible server on loopback
#   qdrant-client (pip, pinned, in tests/.venv) whose local mode tests/qdrant/server.py serves
#                 as Qdrant's REST API (no Qdrant server can be had here)
#   schemathesis + prometheus_client (pip, pinned, in tests/.venv-api: their own venv, apart from
#                 moto's and qdrant-client's pins) fuzz the HTTP API against openapi.json and
#                 parse /metrics
#   cargo-fuzz    (crates.io, pinned) and rustup's nightly toolchain: scripts/fuzz.sh
#   oidc-provider (npm, pinned by tests/oidc/package-lock.json) the real OIDC issuer
#                 tests/oidc/issuer.mjs runs (Node.js and npm from Debian when missing)
# Idempotent; ./test.sh and CI call it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if ! [ -x /usr/bin/restic ]; then
  as_root=()
  [ "$(id -u)" -ne 0 ] && as_root=(sudo)
  echo "test-tools: installing restic" >&2
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends restic
fi
venv="$root/tests/.venv"
if ! [ -x "$venv/bin/moto_server" ]; then
  echo "test-tools: installing moto[server] into tests/.venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet 'moto[server]==5.2.5'
fi
if ! "$venv/bin/python" -c 'import qdrant_client' 2>/dev/null; then
  echo "test-tools: installing qdrant-client into tests/.venv" >&2
  "$venv/bin/python" -m pip install --quiet 'qdrant-client==1.20.0'
fi
api_venv="$root/tests/.venv-api"
if ! "$api_venv/bin/python" -c 'import schemathesis, prometheus_client' 2>/dev/null; then
  echo "test-tools: installing schemathesis and prometheus_client into tests/.venv-api" >&2
  python3 -m venv "$api_venv"
  "$api_venv/bin/python" -m pip install --quiet 'schemathesis==4.32.5' 'prometheus_client==0.26.0'
fi
# cargo fuzz (libFuzzer) and the nightly toolchain it builds with, for scripts/fuzz.sh.
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "test-tools: installing the nightly toolchain (cargo fuzz builds with it)" >&2
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "test-tools: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --version 0.13.2
fi
if ! [ -f "$root/tests/oidc/node_modules/oidc-provider/package.json" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    as_root=()
    [ "$(id -u)" -ne 0 ] && as_root=(sudo)
    echo "test-tools: installing nodejs and npm" >&2
    "${as_root[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends nodejs npm
  fi
  echo "test-tools: installing oidc-provider into tests/oidc" >&2
  (cd "$root/tests/oidc" && npm ci --no-audit --no-fund --loglevel=error)
fi
