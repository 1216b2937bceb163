#!/usr/bin/env bash
# HTTP end to end, one run: the digits pipeline on `weir serve` (normalise ->
# classify -> top-3, a fresh sandboxed instance per step) vs MLServer 1.7
# serving the same scikit-learn model in-process (its leanest set-up), with
# wrk as the load generator on the same machine, at concurrency 1, 4 and 16.
# Also weir with receipts off (`--no-receipts`): what accounting costs.
#
#   bash scripts/bench-http.sh [SECONDS_PER_RUN]
#
# Needs (installed if missing): wrk (Debian), mlserver + mlserver-sklearn (PyPI).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-10}
out="$root/target/bench-http"
mkdir -p "$out"
export PATH="$HOME/.cargo/bin:$PATH"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
python3 -c 'import mlserver, mlserver_sklearn' 2>/dev/null || python3 -m pip install -q mlserver mlserver-sklearn

cd "$root"
cargo build --release --locked --quiet -p weir-cli
bash scripts/build-components.sh >/dev/null
python3 examples/models/train.py --joblib --out "$out/models" >/dev/null

# The same request for both: two held-out digits (raw pixels for weir's
# pipeline, which normalises; scaled for MLServer, which runs the model only).
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
test = json.load(open(f"{out}/models/digits_test.json"))
rows = test["inputs"][:1]
raw = [[round(v * 16) for v in r] for r in rows]
json.dump({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": raw}]}, open(f"{out}/weir.json", "w"))
json.dump({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": rows}],
           "outputs": [{"name": "predict_proba"}]}, open(f"{out}/mlserver.json", "w"))
PY

mkdir -p "$out/mlserver/digits"
cp "$out/models/digits.joblib" "$out/mlserver/digits/"
cat >"$out/mlserver/settings.json" <<JSON
{"http_port": 18086, "grpc_port": 18087, "metrics_port": 18088, "parallel_workers": 0, "debug": false}
JSON
cat >"$out/mlserver/digits/model-settings.json" <<JSON
{"name": "digits", "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": "./digits.joblib"}}
JSON

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

WEIR_LOG=warn target/release/weir serve examples/digits/weir.toml --listen 127.0.0.1:18085 --no-auth 2>"$out/weir.log" &
pids+=($!)
WEIR_LOG=warn target/release/weir serve examples/digits/weir.toml --listen 127.0.0.1:18089 --no-auth --no-receipts 2>"$out/weir-off.log" &
pids+=($!)
(cd "$out/mlserver" && mlserver start . >"$out/mlserver.log" 2>&1) &
pids+=($!)

wait_ready() { for _ in $(seq 1 120); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.5; done; echo "not ready: $1" >&2; return 1; }
wait_ready http://127.0.0.1:18085/v2/models/digits/ready
wait_ready http://127.0.0.1:18089/v2/models/digits/ready
wait_ready http://127.0.0.1:18086/v2/models/digits/ready
# Both must answer correctly before they are timed.
curl -fsS -XPOST http://127.0.0.1:18085/v2/models/digits/infer -d @"$out/weir.json" >/dev/null
curl -fsS -XPOST http://127.0.0.1:18086/v2/models/digits/infer -H 'content-type: application/json' -d @"$out/mlserver.json" >/dev/null

cat >"$out/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("BODY")):read("*a")
LUA

printf '%-11s %5s %10s %10s %10s\n' server conc "req/s" p50 p99
for conc in 1 4 16; do
  threads=$(( conc < 2 ? 1 : 2 ))
  for server in weir weir-norcpt mlserver; do
    case $server in weir) port=18085 body=weir ;; weir-norcpt) port=18089 body=weir ;; *) port=18086 body=mlserver ;; esac
    result=$(BODY="$out/$body.json" wrk -t$threads -c$conc -d${seconds}s --latency -s "$out/post.lua" \
      "http://127.0.0.1:$port/v2/models/digits/infer")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$result")
    p50=$(awk '$1=="50%" {print $2}' <<<"$result")
    p99=$(awk '$1=="99%" {print $2}' <<<"$result")
    errors=$(grep -E "Non-2xx|Socket errors" <<<"$result" || true)
    printf '%-11s %5s %10s %10s %10s %s\n' $server $conc "$rps" "$p50" "$p99" "$errors"
  done
done
