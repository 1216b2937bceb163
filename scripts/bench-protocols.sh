#!/usr/bin/env bash
# JSON vs binary HTTP vs gRPC, side by side in one run: the digits pipeline
# (examples/digits) served once by a release `weir serve` with gRPC on, and
# called by tritonclient (unmodified, from scripts/setup.sh's environment) in
# a closed loop, one client, at batch 1 and at 1,000 x 64 FP32 rows. Cells
# are interleaved over ROUNDS rounds; prints requests/s, p50, p99 and the
# server's CPU time per request (utime + stime from /proc over the cell).
#
#   bash scripts/bench-protocols.sh [SECONDS_PER_CELL] [ROUNDS]     (default 5 s, 2 rounds)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-5} rounds=${2:-2}
data="${WEIR_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/weir}"
out="$root/target/bench-protocols"
mkdir -p "$out"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$root"
bash scripts/setup.sh >/dev/null 2>&1 || bash scripts/setup.sh
cargo build --release --locked --quiet -p weir-cli
bash scripts/build-components.sh >/dev/null

WEIR_LOG=warn target/release/weir serve examples/digits/weir.toml --listen 127.0.0.1:18190 \
  --grpc-listen 127.0.0.1:18191 --no-auth --preload 2>"$out/serve.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 200); do grep -q "weir: serving" "$out/serve.log" && break; sleep 0.1; done
"$data/pyenv/bin/python" scripts/bench_protocols.py --http 127.0.0.1:18190 --grpc 127.0.0.1:18191 \
  --pid "$server" --seconds "$seconds" --rounds "$rounds" | tee "$out/results.md"
