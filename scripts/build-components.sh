#!/usr/bin/env bash
# Builds the reference step components from source with cargo-component, into
# target/guests/wasm32-wasip1/release/ (the same place the tests build them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
# Where setup.sh fell back to Debian's Wasm toolchain, use its settings.
guest_env="${WEIR_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/weir}/guest-build.env"
if [ -f "$guest_env" ]; then set -a; . "$guest_env"; set +a; fi
(cd "$root/components" && CARGO_TARGET_DIR="$root/target/guests" "${CARGO:-cargo}" component build --release --workspace --quiet)
echo "$root/target/guests/wasm32-wasip1/release"
