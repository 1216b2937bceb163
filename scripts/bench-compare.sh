#!/usr/bin/env bash
# Two weir binaries side by side on the digits pipeline, in one sitting:
# requests per second and server CPU time per request (utime + stime from
# /proc over each wrk run), rounds interleaved. For before/after figures of a
# change that moves the hot path, e.g.
#
#   git worktree add /tmp/before <REV> && (cd /tmp/before && cargo build --release -p weir-cli)
#   cargo build --release -p weir-cli
#   bash scripts/bench-compare.sh /tmp/before/target/release/weir target/release/weir [ROUNDS] [SECONDS]
#
# (Before the crates moved under host/, the package was `-p weir`.)
# Needs: wrk (Debian), the reference components (scripts/build-components.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
before=$1 after=$2 rounds=${3:-3} seconds=${4:-6}
out="$root/target/bench-compare"
mkdir -p "$out"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cd "$root"
# One held-out digit as raw pixels (the pipeline normalises).
python3 - "$out/request.json" <<'PY'
import json, sys
test = json.load(open("examples/models/digits_test.json"))
raw = [[round(v * 16) for v in test["inputs"][0]]]
json.dump({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": raw}]}, open(sys.argv[1], "w"))
PY
cat >"$out/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("BODY")):read("*a")
LUA
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
declare -A port pid
for name in before after; do
  bin=$([ $name = before ] && echo "$before" || echo "$after")
  port[$name]=$([ $name = before ] && echo 18191 || echo 18192)
  # Builds with access control need --no-auth for keyless loopback callers.
  noauth=$("$bin" serve --help | grep -q -- --no-auth && echo --no-auth || true)
  WEIR_LOG=warn "$bin" serve examples/digits/weir.toml --listen 127.0.0.1:${port[$name]} $noauth 2>"$out/$name.log" &
  pid[$name]=$!
  pids+=($!)
done
for name in before after; do
  for _ in $(seq 1 100); do
    curl -fsS -XPOST "http://127.0.0.1:${port[$name]}/v2/models/digits/infer" -d @"$out/request.json" >/dev/null 2>&1 && break
    sleep 0.3
  done
done
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
printf '%-5s %-7s %4s %10s %14s\n' round binary conc "req/s" "cpu µs/req"
for round in $(seq 1 "$rounds"); do
  for conc in 1 4 16; do
    for name in before after; do
      c0=$(cpu ${pid[$name]})
      result=$(BODY="$out/request.json" wrk -t1 -c$conc -d${seconds}s -s "$out/post.lua" "http://127.0.0.1:${port[$name]}/v2/models/digits/infer")
      c1=$(cpu ${pid[$name]})
      requests=$(awk '/requests in/ {print $1}' <<<"$result")
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$result")
      printf '%-5s %-7s %4s %10s %14s\n' "$round" "$name" "$conc" "$rps" $(( (c1 - c0) * 1000000 / ticks / requests ))
    done
  done
done
