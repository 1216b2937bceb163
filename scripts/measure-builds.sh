#!/usr/bin/env bash
# What each build of weir weighs: stripped binary size, and the resident
# memory of `weir serve` on the digits example (components precompiled, so
# a build without the compiler serves too) when idle after start and after
# its first request. Prints a Markdown table (docs/edge.md).
#
# usage: scripts/measure-builds.sh FULL_BINARY [NAME=BINARY ...]
#   FULL_BINARY  a build with the compiler: it precompiles the components
#   NAME=BINARY  more builds to measure, e.g. lean=/tmp/weir-lean
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
full=$1
shift
work=$(mktemp -d)
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
"$full" compile "$root/examples/digits/weir.toml" -o "$work/precompiled" >/dev/null
# This host's target, from the names `weir compile` gave the files.
target=$(basename "$(ls "$work"/precompiled/scale.*.cwasm)" .cwasm)
target=${target#scale.}
# The digits example with absolute sources, each component's code listed.
awk -v dir="$root/examples/digits" -v pre="$work/precompiled" -v target="$target" '
  /^\[triggers/ { skip = 1 } /^\[/ && !/^\[triggers/ { skip = 0 }
  skip { next }
  /^source = "/ { sub(/^source = "/, "source = \"" dir "/"); print; if (comp) print "precompiled = \"" pre "/" comp "." target ".cwasm\""; next }
  /^\[components\./ { comp = $0; gsub(/^\[components\.|\]$/, "", comp); print; next }
  /^\[/ { comp = "" }
  { print }' "$root/examples/digits/weir.toml" >"$work/weir.toml"

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

echo "| build | binary (stripped) | idle after start | after the first request |"
echo "|---|---|---|---|"
for spec in "default=$full" "$@"; do
  name=${spec%%=*}
  binary=${spec#*=}
  strip -o "$work/stripped" "$binary"
  size=$(stat -c %s "$work/stripped")
  cache=$(mktemp -d -p "$work")
  WEIR_CACHE_DIR=$cache WEIR_LOG=warn "$binary" serve "$work/weir.toml" --no-auth --listen 127.0.0.1:0 2>"$work/log" &
  server=$!
  for _ in $(seq 100); do grep -q "serving" "$work/log" && break; sleep 0.1; done
  address=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/log" | head -1)
  [ -n "$address" ] || { cat "$work/log" >&2; exit 1; }
  sleep 1
  idle=$(rss_kib "$server")
  curl -sf -o /dev/null -X POST "$address/v2/models/digits/infer" -H 'content-type: application/json' \
    -d @"$root/examples/digits/request.json" || { echo "$name: the request failed" >&2; cat "$work/log" >&2; exit 1; }
  curl -sf "$address/v2/status" | grep -q '"compile_source": *"precompiled"' ||
    { echo "$name: components were not loaded precompiled" >&2; exit 1; }
  sleep 0.5
  served=$(rss_kib "$server")
  kill "$server"
  wait "$server" 2>/dev/null || true
  awk -v n="$name" -v s="$size" -v i="$idle" -v r="$served" \
    'BEGIN { printf "| %s | %.1f MB | %.1f MiB | %.1f MiB |\n", n, s / 1e6, i / 1024, r / 1024 }'
done
