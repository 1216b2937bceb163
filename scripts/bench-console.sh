#!/usr/bin/env bash
# What the console's live board costs the request path: `weir serve` with
# the console (the default) against --no-console, interleaved
# (scripts/bench-feature.sh does the work).
#
#   bash scripts/bench-console.sh [SECONDS_PER_CELL] [ROUNDS]      (default 5 s, 5 rounds)
exec bash "$(dirname "$0")/bench-feature.sh" console "$@"
