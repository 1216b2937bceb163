#!/usr/bin/env bash
# p99 of a light pipeline and of the health check, alone and beside two slow
# inferences saturating the cores, for this build and (optionally) another
# one, in one sitting. For before/after figures of the inference offload:
#
#   git worktree add /tmp/before <REV> && (cd /tmp/before && cargo build -p weir-cli)
#   bash scripts/bench-isolation.sh /tmp/before/target/debug/weir
#
# The slow model and the guest components come from this checkout (the older
# build runs them too: they only use wasi:nn).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
run() {
  cargo test -p weir-cli --locked --test it hardening::isolation_figures -- --ignored --nocapture 2>&1 |
    grep -E "slow model takes|p99"
}
echo "== this build"
run
if [ $# -ge 1 ]; then
  echo "== $1"
  WEIR_TEST_BINARY=$(realpath "$1") run
fi
