#!/usr/bin/env bash
# Installs the Debian packages building and testing Concierge needs, when they are missing:
#   librocksdb-dev, libclang-dev  the engine's RocksDB (Debian's library, see ARCHITECTURE.md)
#   python3, python3-pip, curl    models/fetch.sh (the model download)
#   python3-venv                  scripts/test-tools.sh (moto_server for the backup tests)
#   ca-certificates               HTTPS for the above
#   docker.io                     the swarm tests (a real dockerd with its own paths, tests/src/swarm.rs)
#   busybox-static                the stand-in image the deploy tests import (/bin/busybox)
#   git, git-crypt                the secrets tests (byte-for-byte compatibility with git-crypt 0.7)
#   chromium, chromium-driver     the secrets page test (headless Chromium through WebDriver)
#   openssl                       the Firestore sign-in test (an RSA key, the JWT's signature checked)
# (The Firestore emulator cannot be installed here: it is on the machine image, and the tests
# say so when its jar is missing.)
# Uses apt-get directly as root, sudo otherwise; prints the command when neither works.
set -euo pipefail
needed=(ca-certificates curl python3 python3-pip python3-venv librocksdb-dev libclang-dev docker.io busybox-static git git-crypt chromium chromium-driver openssl)
missing=()
for pkg in "${needed[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ "${#missing[@]}" -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: missing ${missing[*]} and this is not a Debian/Ubuntu system; install them by hand" >&2
  exit 1
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then as_root=(sudo); else
    echo "system-deps: run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
echo "system-deps: installing ${missing[*]}" >&2
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
