#!/usr/bin/env bash
# The test command: installs what the tests need (idempotent), then runs
# every test of the workspace. Guest components are built from source by the
# build (tests/build.rs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$root"
cargo test --workspace --locked "$@"
