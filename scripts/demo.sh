#!/usr/bin/env bash
# The demo: set up (idempotent), build weir and the reference components from
# source, then serve the digits pipeline (normalise -> classify with the
# digits model on ONNX Runtime -> top-3, every step a sandboxed component)
# over HTTP, invoke it with Open Inference Protocol v2 requests, and run the
# ride-sharing pipeline once from the command line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$root"
echo "== building weir and the reference components" >&2
cargo build --release --locked --quiet -p weir-cli
bash scripts/build-components.sh >/dev/null
weir="$root/target/release/weir"
port=${WEIR_DEMO_PORT:-18080}

echo "== the digits pipeline" >&2
"$weir" graph examples/digits/weir.toml digits --format mermaid
# Callers need an API key (made here in a key file of the demo's own).
keys=$(mktemp -d)/keys.json
key=$("$weir" keys --keys "$keys" create --name demo --scope invoke:digits)
auth="Authorization: Bearer $key"
"$weir" serve examples/digits/weir.toml --listen "127.0.0.1:$port" --keys "$keys" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/v2/health/ready" >/dev/null 2>&1 && break
  sleep 0.2
done
echo "== without a key: $(curl -s -o /dev/null -w '%{http_code}' -XPOST "http://127.0.0.1:$port/v2/models/digits/infer")" >&2
echo "== GET /v2/models/digits" >&2
curl -fsS -H "$auth" "http://127.0.0.1:$port/v2/models/digits"; echo
echo "== POST /v2/models/digits/infer: three held-out digits (true labels 2, 0, 4)" >&2
curl -fsS -XPOST "http://127.0.0.1:$port/v2/models/digits/infer" -H "$auth" \
  -H 'content-type: application/json' -d @examples/digits/request.json; echo
echo "== the same with a trace of every edge (first step shown)" >&2
python3 -c '
import json
request = json.load(open("examples/digits/request.json"))
request["parameters"] = {"trace": True}
print(json.dumps(request))' \
  | curl -fsS -XPOST "http://127.0.0.1:$port/v2/models/digits/infer" -H "$auth" -H 'content-type: application/json' -d @- \
  | python3 -c 'import json, sys; r = json.load(sys.stdin); print(json.dumps({k: v for k, v in r["parameters"]["trace"][0].items() if k != "outputs"}))'
kill $server; wait $server 2>/dev/null || true

echo "== the ride-sharing pipeline (weir run, no server)" >&2
"$weir" run examples/ride-eta/weir.toml --input examples/ride-eta/request.json
