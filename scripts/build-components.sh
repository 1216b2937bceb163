#!/usr/bin/env bash
# Builds the reference step components from source with cargo-component, into
# target/guests/wasm32-wasip1/release/ (the same place the tests build them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
(cd "$root/components" && CARGO_TARGET_DIR="$root/target/guests" cargo component build --release --workspace --quiet)
echo "$root/target/guests/wasm32-wasip1/release"
