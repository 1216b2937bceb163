#!/usr/bin/env bash
# What receipts cost: `weir serve` with receipts (the default) against
# --no-receipts, interleaved (scripts/bench-feature.sh does the work).
#
#   bash scripts/bench-receipts.sh [SECONDS_PER_CELL] [ROUNDS]      (default 5 s, 5 rounds)
exec bash "$(dirname "$0")/bench-feature.sh" receipts "$@"
