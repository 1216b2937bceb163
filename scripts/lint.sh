#!/usr/bin/env bash
# House rules beyond the tests: clippy with warnings as errors on every
# target, and rustdoc without warnings.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
cd "$root"
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
echo "lint: clippy and rustdoc clean"
