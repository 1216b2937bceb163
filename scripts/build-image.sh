#!/usr/bin/env bash
# Build weir's container image without a daemon (buildah, from scratch) and
# push it. The image holds the weir binary (stripped), ONNX Runtime, the
# shared libraries the two load (as `ldd` resolves them here), CA
# certificates and a non-root user; no shell, no package manager.
# Components and models are not in it: the manifest pulls them from a
# registry (deploy/kubernetes/base/weir.toml).
#
# usage: scripts/build-image.sh REFERENCE [--binary PATH] [--insecure]
#   REFERENCE   where to push, e.g. registry.example.com/weir/weir:0.1.0
#   --binary    the weir to put in (default: target/release/weir, else target/debug/weir)
#   --insecure  push over plain HTTP (a loopback test registry)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
usage() { sed -n '2,13p' "$0" >&2; exit 2; }
[ $# -ge 1 ] || usage
reference=$1
shift
binary=""
tls=true
while [ $# -gt 0 ]; do
  case $1 in
    --binary) binary=$2; shift 2 ;;
    --insecure) tls=false; shift ;;
    *) usage ;;
  esac
done
if [ -z "$binary" ]; then
  binary=$root/target/release/weir
  [ -x "$binary" ] || binary=$root/target/debug/weir
fi
[ -x "$binary" ] || { echo "build-image: no weir binary at $binary (cargo build --release)" >&2; exit 1; }
command -v buildah >/dev/null || { echo "build-image: buildah is not installed (scripts/setup.sh)" >&2; exit 1; }
data=${WEIR_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/weir}
ort=$(readlink -f "${WEIR_ORT_DYLIB:-$data/onnxruntime/libonnxruntime.so}")
[ -f "$ort" ] || { echo "build-image: no ONNX Runtime at $ort (scripts/setup.sh)" >&2; exit 1; }

work=$(mktemp -d)
bah() { buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs "$@"; }
container=""
cleanup() {
  [ -z "$container" ] || bah rm "$container" >/dev/null 2>&1 || true
  bah rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

rootfs=$work/rootfs
mkdir -p "$rootfs"/{usr/local/bin,usr/local/lib,etc/ssl/certs,etc/weir} "$work/writable"/{var/cache/weir,var/lib/weir,tmp}
# The image's architecture is the binary's (OCI names).
case $(LC_ALL=C readelf -h "$binary" | awk -F: '/Machine/ {gsub(/^ +/, "", $2); print $2}') in
  "Advanced Micro Devices X86-64") arch=amd64 ;;
  AArch64) arch=arm64 ;;
  *) echo "build-image: $binary is for an architecture this script does not package" >&2; exit 1 ;;
esac
strip -o "$rootfs/usr/local/bin/weir" "$binary"
cp "$ort" "$rootfs/usr/local/lib/"
# Every library the binary and ONNX Runtime load, and the dynamic loader,
# at the paths they were resolved to (ldd must find them: it runs the
# loader of this machine, so the binary must be for this machine).
libs=$( (ldd "$binary" && ldd "$ort") | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
[ -n "$libs" ] || { echo "build-image: ldd found no libraries for $binary" >&2; exit 1; }
for lib in $libs; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nweir:x:65532:65532:weir:/var/lib/weir:/usr/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nweir:x:65532:\n' >"$rootfs/etc/group"
chmod 1777 "$work/writable/tmp"

version=$("$binary" --version | awk '{print $2}')
revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
container=$(bah from scratch)
bah copy "$container" "$rootfs/" / >/dev/null
bah copy --chown 65532:65532 "$container" "$work/writable/" / >/dev/null
bah config \
  --os linux --arch "$arch" \
  --entrypoint '["/usr/local/bin/weir"]' \
  --cmd '["serve", "/etc/weir/weir.toml", "--listen", "0.0.0.0:8080"]' \
  --port 8080/tcp \
  --user 65532:65532 \
  --workingdir /var/lib/weir \
  --env "WEIR_ORT_DYLIB=/usr/local/lib/$(basename "$ort")" \
  --env WEIR_CACHE_DIR=/var/cache/weir/compiled \
  --env WEIR_OCI_CACHE=/var/cache/weir/oci \
  --env WEIR_DATA_DIR=/var/lib/weir \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --label org.opencontainers.image.title=weir \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$revision" \
  --label "org.opencontainers.image.description=weir: a serverless WebAssembly component host for ML inference pipelines" \
  "$container"
bah commit --quiet --format oci --rm "$container" weir-image >/dev/null
container=""
bah push --quiet --tls-verify="$tls" weir-image "docker://$reference"
echo "build-image: pushed $reference (weir $version, $(du -sh "$rootfs" | cut -f1) unpacked)"
