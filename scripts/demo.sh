#!/usr/bin/env bash
# The demo: set up, build weir and the reference components from source, then
# run two sandboxed steps on the digits-like sample — `scale` standardises the
# features, `topk` picks the 3 best classes — with `weir run`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$root"
echo "== building weir and the reference components" >&2
cargo build --release --locked --quiet -p weir
guests=$(bash scripts/build-components.sh)
weir="$root/target/release/weir"
example="$root/examples/steps"

echo "== scale: standardise 4 features (mean/std from config)" >&2
"$weir" run "$guests/scale.wasm" --input "$example/features.json" \
  --config mean=5.0,3.0,1.5,0.25 --config std=0.8,0.4,0.7,0.2 --verbose
echo "== topk: the 3 most likely classes of each row" >&2
"$weir" run "$guests/topk.wasm" --input "$example/probabilities.json" --config k=3 --verbose
