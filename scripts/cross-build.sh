#!/usr/bin/env bash
# Builds weir for another Linux architecture with Debian's cross toolchain
# (installed by scripts/setup.sh) and prints the binary's path.
#
#   bash scripts/cross-build.sh [TARGET] [cargo build options...]
#
# TARGET defaults to aarch64-unknown-linux-gnu; without cargo options the
# build is the lean one (no compiler, no NATS, no gRPC: an edge device runs
# code precompiled elsewhere). Its own target folder (target/cross) keeps it
# from waiting on, or invalidating, the native build.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=aarch64-unknown-linux-gnu
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then
  target=$1
  shift
fi
[ $# -gt 0 ] || set -- --no-default-features
export PATH="$HOME/.cargo/bin:$PATH"

case "$target" in
  aarch64-unknown-linux-gnu) gnu=aarch64-linux-gnu ;;
  *) echo "cross-build: no cross toolchain known for $target (aarch64-unknown-linux-gnu is)" >&2; exit 2 ;;
esac
for tool in "$gnu-gcc" "$gnu-ar"; do
  command -v "$tool" >/dev/null || { echo "cross-build: $tool missing: run scripts/setup.sh" >&2; exit 1; }
done
rustup target list --installed 2>/dev/null | grep -qx "$target" ||
  { echo "cross-build: Rust target $target missing: run scripts/setup.sh" >&2; exit 1; }

upper=$(tr 'a-z-' 'A-Z_' <<<"$target")
lower=${target//-/_}
export "CARGO_TARGET_${upper}_LINKER=$gnu-gcc"
export "CC_${lower}=$gnu-gcc" "CXX_${lower}=$gnu-g++" "AR_${lower}=$gnu-ar"
# OpenSSL (the registry client's TLS) from Debian's multiarch -dev package.
export PKG_CONFIG_ALLOW_CROSS=1
export "PKG_CONFIG_LIBDIR_${lower}=/usr/lib/$gnu/pkgconfig:/usr/share/pkgconfig"
export "PKG_CONFIG_SYSROOT_DIR_${lower}=/"

cd "$root"
cargo build --locked --quiet -p weir-cli --target "$target" --target-dir target/cross "$@" >&2
profile=debug
previous=
for arg in "$@"; do
  case "$arg" in
    --release | -r) profile=release ;;
    --profile=*) profile=${arg#--profile=} ;;
  esac
  [ "$previous" = --profile ] && profile=$arg
  previous=$arg
done
[ "$profile" = dev ] && profile=debug
echo "$root/target/cross/$target/$profile/weir"
