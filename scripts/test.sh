#!/usr/bin/env bash
# The test command: installs what the tests need (idempotent), checks the
# house rules (formatting, documentation links), then runs every test of
# the workspace. Guest components are built from source by the build
# (tests/build.rs). Lints and rustdoc run in .ci/run (scripts/lint.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
started=$SECONDS
bash "$root/scripts/setup.sh"
echo "test.sh: set-up took $((SECONDS - started)) s" >&2
export PATH="$HOME/.cargo/bin:$PATH"
cd "$root"
cargo fmt --all --check
bash scripts/check-docs.sh
cargo test --workspace --locked "$@"
