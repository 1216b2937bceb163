#!/usr/bin/env bash
# Where a request's CPU goes: `weir serve` (release build, examples/digits)
# under wrk at concurrency 16 while `perf record -e cpu-clock` samples it
# (guest code, compiled at run time, shows as bare addresses), then every sample is
# put in one bucket by its leaf symbol, and the buckets are scaled to the
# server's measured CPU time per request (from /proc). Prints µs per request
# per bucket, and the top symbols.
#
#   bash scripts/profile-request.sh [SECONDS] [MANIFEST] [--phases]
#
# With --phases it also records 3 s with DWARF call graphs and prints the
# inclusive share of each phase of a request (scripts/profile_phases.py).
#
# Needs: perf (Debian's linux-perf), wrk, a release build (`cargo build --release -p weir-cli`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-10}
manifest=${2:-examples/digits/weir.toml}
phases=${3:-}
out="$root/target/profile-request"
mkdir -p "$out"
cd "$root"
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
source "$root/scripts/bench-request.sh"
bench_request "$out"
WEIR_LOG=warn target/release/weir serve "$manifest" --listen 127.0.0.1:18099 --no-auth 2>"$out/weir.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fsS -XPOST http://127.0.0.1:18099/v2/models/digits/infer -d @"$out/request.json" >/dev/null 2>&1 && break
  sleep 0.3
done
# Warm up, then measure and sample the same window.
BODY="$out/request.json" wrk -t1 -c16 -d2s -s "$out/post.lua" http://127.0.0.1:18099/v2/models/digits/infer >/dev/null
ticks=$(getconf CLK_TCK)
# `measured COMMAND...`: run COMMAND (a perf watching $pid) beside SECONDS of
# wrk at c16; sets `requests` and `cpu_us` (server CPU per request, /proc).
measured() {
  local c0 c1 watcher
  c0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  "$@" 2>/dev/null &
  watcher=$!
  requests=$(BODY="$out/request.json" wrk -t1 -c16 -d"${seconds}s" -s "$out/post.lua" \
    http://127.0.0.1:18099/v2/models/digits/infer | awk '/^RESULT/ {print $2}')
  wait $watcher
  c1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  cpu_us=$(( (c1 - c0) * 1000000 / ticks / requests ))
}
measured perf record -e cpu-clock -F 4999 -g -p "$pid" -o "$out/perf.data" -- sleep "$seconds"
perf report -i "$out/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null >"$out/report.txt"
python3 "$root/scripts/profile_buckets.py" "$out/report.txt" "$cpu_us" "$requests" "$seconds"
# Counters over another window of the same load: what the kernel does per request.
measured perf stat -x, -e page-faults,context-switches,cpu-migrations -p "$pid" -o "$out/stat.csv" -- sleep "$seconds"
echo
echo "per request (perf stat, ${seconds} s at c16, no sampling: ${cpu_us} µs of CPU per request):"
awk -F, -v n="$requests" '$1 ~ /^[0-9]/ {printf "  %-18s %8.2f\n", $3, $1 / n}' "$out/stat.csv"
if [ "$phases" = --phases ]; then
  BODY="$out/request.json" wrk -t1 -c16 -d6s -s "$out/post.lua" http://127.0.0.1:18099/v2/models/digits/infer >/dev/null &
  wrk_pid=$!
  sleep 1
  perf record -e cpu-clock -F 1999 --call-graph dwarf,65528 -p "$pid" -o "$out/phases.data" -- sleep 3 2>/dev/null
  wait $wrk_pid
  perf script -i "$out/phases.data" -F ip,sym --no-inline 2>/dev/null >"$out/phases.txt"
  echo
  python3 "$root/scripts/profile_phases.py" "$out/phases.txt" "$cpu_us"
fi
