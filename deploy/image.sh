#!/usr/bin/env bash
# Builds Concierge's container image without a registry: a root filesystem holding the two
# binaries, exactly the shared libraries they link (from `ldd`), a user to run as and the
# directories they write, imported with `docker import`. The models are not in the image: mount
# them at /models (`models/fetch.sh` fills a directory), so a model update needs no new image.
#
#   deploy/image.sh [--tag NAME:TAG] [--bin-dir DIR] [--docker-host URL]
#
#   --tag          image name (default concierge:local)
#   --bin-dir      where concierge and concierge-sidecar are (default target/release, else
#                  target/debug)
#   --docker-host  the engine to import into (default: $DOCKER_HOST, else the local socket)
#
# The image runs `concierge serve` as user concierge (uid 10001) in /var/lib/concierge (its data
# directory: mount a volume there), listening on 0.0.0.0:8080 (set auth.api_tokens), with
# CONCIERGE_MODELS__DIR=/models. Its health check is `concierge healthcheck` (no curl inside),
# set by the stack in exec form (`test: ["CMD", "/usr/local/bin/concierge", "healthcheck"]`:
# the image has no shell). On SIGTERM the daemon drains requests for up to 10 s, its background
# work for up to 5 s, then flushes its indexes: give the service `stop_grace_period: 30s`.
# Prints the image id and its size.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
tag=concierge:local
bin_dir=
docker_host=${DOCKER_HOST:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --docker-host) docker_host=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$bin_dir" ]; then
  if [ -x "$root/target/release/concierge" ]; then bin_dir=$root/target/release; else bin_dir=$root/target/debug; fi
fi
for bin in concierge concierge-sidecar; do
  [ -x "$bin_dir/$bin" ] || { echo "image.sh: $bin_dir/$bin is missing: cargo build --workspace --bins first" >&2; exit 1; }
done
command -v docker >/dev/null || { echo "image.sh: the docker client is missing (apt-get install docker.io)" >&2; exit 1; }
docker_args=()
[ -n "$docker_host" ] && docker_args=(-H "$docker_host")

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs"/{usr/local/bin,etc,tmp,models,var/lib/concierge}
chmod 1777 "$rootfs/tmp"
cp "$bin_dir/concierge" "$bin_dir/concierge-sidecar" "$rootfs/usr/local/bin/"
# Every shared library the binaries link, at the path the dynamic loader looks for it.
for lib in $(ldd "$bin_dir/concierge" "$bin_dir/concierge-sidecar" | awk '/=> \//{print $3} /^\t\/lib/{print $1}' | sort -u); do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
# The loader finds libraries in /lib64 and the multiarch directory on its own; Debian's usrmerge
# layout is kept by copying to the paths ldd printed.
echo 'root:x:0:0:root:/root:/sbin/nologin
concierge:x:10001:10001:concierge:/var/lib/concierge:/sbin/nologin' > "$rootfs/etc/passwd"
echo 'root:x:0:
concierge:x:10001:' > "$rootfs/etc/group"
echo 'hosts: files dns' > "$rootfs/etc/nsswitch.conf"
if [ -d /etc/ssl/certs ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$rootfs/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
fi

archive=$(mktemp)
trap 'rm -rf "$rootfs" "$archive"' EXIT
# Everything owned by root but the data directory, which belongs to the user the daemon runs as.
tar --numeric-owner --owner=0 --group=0 --exclude=./var/lib/concierge -C "$rootfs" -cf "$archive" .
tar --numeric-owner --owner=10001 --group=10001 -C "$rootfs" -rf "$archive" ./var/lib/concierge
id=$(docker "${docker_args[@]}" import \
  --change 'USER 10001:10001' \
  --change 'WORKDIR /var/lib/concierge' \
  --change 'ENV CONCIERGE_MODELS__DIR=/models' \
  --change 'ENV CONCIERGE_SERVER__LISTEN=0.0.0.0:8080' \
  --change 'EXPOSE 8080' \
  --change 'VOLUME ["/var/lib/concierge"]' \
  --change 'ENTRYPOINT ["/usr/local/bin/concierge"]' \
  --change 'CMD ["serve"]' \
  "$archive" "$tag")
size=$(docker "${docker_args[@]}" image inspect --format '{{.Size}}' "$tag")
echo "image.sh: $tag $id, $((size / 1024 / 1024)) MiB" >&2
echo "$id"
