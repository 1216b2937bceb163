#!/usr/bin/env bash
# What a feature costs: two release-built `weir serve examples/digits` side by
# side, one as it is by default and one with the feature's --no-FEATURE
# flag, driven by wrk (one thread, closed loop) at concurrency 1, 4 and 16,
# interleaved over ROUNDS rounds with the order flipped every round; prints
# the median requests/s and CPU per request of each, and what the feature
# costs in %. scripts/bench-receipts.sh and scripts/bench-console.sh call it.
#
#   bash scripts/bench-feature.sh FEATURE [SECONDS_PER_CELL] [ROUNDS]      (default 5 s, 5 rounds)
#
# WEIR_BENCH_PROFILE=guard measures the CI guard's build instead of release.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
feature=${1:?usage: bench-feature.sh FEATURE [SECONDS] [ROUNDS]}
seconds=${2:-5} rounds=${3:-5}
out="$root/target/bench-$feature"
mkdir -p "$out"
cd "$root"
source "$root/scripts/bench-request.sh"
# WEIR_BENCH_PROFILE measures another Cargo profile's build (e.g. guard).
profile=${WEIR_BENCH_PROFILE:-release}
weir="target/$profile/weir"
bench_build "$profile"
bench_request "$out"

declare -A port pid
port[on]=18290 port[none]=18291
WEIR_LOG=warn "$weir" serve examples/digits/weir.toml --listen 127.0.0.1:18290 --no-auth \
  2>"$out/on.log" & pid[on]=$!
WEIR_LOG=warn "$weir" serve examples/digits/weir.toml --listen 127.0.0.1:18291 --no-auth \
  "--no-$feature" 2>"$out/none.log" & pid[none]=$!
trap 'kill ${pid[on]} ${pid[none]} 2>/dev/null || true' EXIT
for s in on none; do
  for _ in $(seq 1 200); do
    curl -fsS "http://127.0.0.1:${port[$s]}/v2/models/digits/infer" -d @"$out/request.json" >/dev/null 2>&1 && break
    sleep 0.3
  done
done

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
: >"$out/raw.tsv"
for round in $(seq 1 "$rounds"); do
  order="on none"
  [ $((round % 2)) = 0 ] && order="none on"
  for conc in 1 4 16; do
    for s in $order; do
      c0=$(cpu "${pid[$s]}")
      result=$(BODY="$out/request.json" wrk -t1 -c"$conc" -d"${seconds}s" -s "$out/post.lua" \
        "http://127.0.0.1:${port[$s]}/v2/models/digits/infer" | awk '/^RESULT/ {print $2, $3, $4, $5}')
      c1=$(cpu "${pid[$s]}")
      read -r requests duration_us _ errors <<<"$result"
      [ "$errors" = 0 ] || echo "warning: $s at c$conc had $errors errors" >&2
      printf '%s\t%s\t%s\t%s\t%s\n' "$s" "$conc" "$requests" "$duration_us" "$((c1 - c0))" >>"$out/raw.tsv"
    done
  done
done

python3 - "$out/raw.tsv" "$ticks" "$rounds" "$seconds" "$feature" <<'PY'
import csv, statistics, sys
path, ticks, rounds, seconds, feature = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
cells = {}
for server, conc, requests, duration_us, cpu_ticks in csv.reader(open(path), delimiter="\t"):
    rps = int(requests) / (int(duration_us) / 1e6)
    cpu_us = int(cpu_ticks) / ticks * 1e6 / max(int(requests), 1)
    cells.setdefault((server, int(conc)), []).append((rps, cpu_us))
print(f"{rounds} interleaved rounds of {seconds} s per cell (order flipped each round), median\n")
print(f"| conc | {feature} req/s | --no-{feature} req/s | cost (req/s) | {feature} CPU µs/req | --no-{feature} CPU µs/req | cost (CPU) |")
print("|---|---|---|---|---|---|---|")
for conc in (1, 4, 16):
    on = [statistics.median(x[i] for x in cells[("on", conc)]) for i in (0, 1)]
    off = [statistics.median(x[i] for x in cells[("none", conc)]) for i in (0, 1)]
    print(f"| {conc} | {on[0]:,.0f} | {off[0]:,.0f} | {100 * (1 - on[0] / off[0]):+.1f} % "
          f"| {on[1]:.0f} | {off[1]:.0f} | {100 * (on[1] / off[1] - 1):+.1f} % |")
PY
