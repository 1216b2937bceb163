#!/usr/bin/env bash
# The demo: set up, build weir and the reference components from source, then
# run sandboxed steps with `weir run`: `scale` standardises features,
# `classify` runs the digits model (ONNX Runtime through wasi:nn) on two
# held-out digits, and `topk` picks the 3 most likely classes from its output.
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
echo "== classify: two held-out digits through the digits model (true labels: 2 and 0)" >&2
classified=$("$weir" run "$guests/classify.wasm" --input "$example/digits.json" \
  --model digits="$root/examples/models/digits.onnx" --verbose)
echo "$classified"
echo "== topk: the 3 most likely classes of each digit" >&2
python3 -c '
import json, sys
response = json.load(sys.stdin)
probs = next(o for o in response["outputs"] if o["name"] == "probabilities")
print(json.dumps({"inputs": [dict(probs, name="probabilities")]}))' <<<"$classified" \
  | "$weir" run "$guests/topk.wasm" --input - --config k=3
