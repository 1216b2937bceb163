#!/usr/bin/env bash
# House rules beyond the tests: clippy with warnings as errors on every
# target (and on the lean build's), and rustdoc without warnings.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
cd "$root"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The lean edge build (no compiler, no NATS, no gRPC) must build too.
cargo clippy -p weir-cli --no-default-features --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
echo "lint: clippy and rustdoc clean"
