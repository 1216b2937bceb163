#!/usr/bin/env bash
# Cold starts of the digits pipeline served from a registry on loopback, one
# run, each case repeated (median and spread reported):
#
#   cold        fresh `weir serve`, empty OCI and compiled caches: pull, compile, first response
#   pulled      fresh `weir serve`, compiled cache warm but nothing pulled yet
#   cache-warm  fresh `weir serve`, OCI and compiled caches warm (scale-from-zero on one machine)
#   warm        later requests to the same server
#
# For each: time from process start to the first response, the first
# request's own latency, and its parts as `/v2/status` reports them.
#
#   bash scripts/bench-coldstart.sh [REPEATS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
repeats=${1:-5}
out="$root/target/bench-coldstart"
rm -rf "$out" && mkdir -p "$out"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$root"
cargo build --release --locked --quiet -p weir-cli
bash scripts/build-components.sh >/dev/null

port=18090
cat >"$out/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $out/registry
http:
  addr: 127.0.0.1:$port
YML
docker-registry serve "$out/registry.yml" >"$out/registry.log" 2>&1 &
registry_pid=$!
trap 'kill $registry_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done

weir=target/release/weir
guests=target/guests/wasm32-wasip1/release
manifest=$(cat examples/digits/weir.toml)
for name in scale classify topk; do
  WEIR_OCI_CACHE="$out/push-cache" $weir push -q "$guests/$name.wasm" "oci://127.0.0.1:$port/steps/$name:1" >/dev/null
  manifest=${manifest//\"..\/..\/$guests\/$name.wasm\"/\"oci:\/\/127.0.0.1:$port\/steps\/$name:1\"}
done
WEIR_OCI_CACHE="$out/push-cache" $weir push -q examples/models/digits.onnx "oci://127.0.0.1:$port/models/digits:1" >/dev/null
manifest=${manifest//\"..\/models\/digits.onnx\"/\"oci:\/\/127.0.0.1:$port\/models\/digits:1\"}
printf '%s\n' "$manifest" >"$out/weir.toml"

python3 - "$out" "$weir" "$repeats" <<'PY'
import json, os, shutil, statistics, subprocess, sys, time, urllib.request

out, weir, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
request = open("examples/digits/request.json", "rb").read()

def post(base):
    started = time.perf_counter()
    req = urllib.request.Request(f"{base}/v2/models/digits/infer", data=request, headers={"content-type": "application/json"})
    body = urllib.request.urlopen(req).read()
    assert json.loads(body)["outputs"][0]["data"] == [2, 0, 4]
    return time.perf_counter() - started

def one_start(oci, compiled):
    env = dict(os.environ, WEIR_OCI_CACHE=oci, WEIR_CACHE_DIR=compiled, WEIR_LOG="warn")
    started = time.perf_counter()
    proc = subprocess.Popen([weir, "serve", f"{out}/weir.toml", "--listen", "127.0.0.1:0", "--no-auth"], env=env, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    listening = time.perf_counter() - started
    base = "http://" + line.split("http://")[1].strip().removesuffix("/v2")
    first = post(base)
    to_first = time.perf_counter() - started
    status = json.loads(urllib.request.urlopen(f"{base}/v2/status").read())
    parts = {c["name"]: c["last_cold_start"] for c in status["components"]}
    warm = sorted(post(base) for _ in range(200))
    proc.terminate(); proc.wait()
    return {"listening": listening, "to_first": to_first, "first": first, "parts": parts,
            "warm_p50": warm[len(warm) // 2], "warm_p99": warm[int(len(warm) * 0.99) - 1]}

def case(name, prepare):
    runs = []
    for i in range(repeats):
        oci, compiled = prepare(i)
        runs.append(one_start(oci, compiled))
    ms = lambda xs: f"{statistics.median(xs) * 1e3:7.1f} ms ({min(xs) * 1e3:.1f}-{max(xs) * 1e3:.1f})"
    print(f"{name:11} process start -> first response {ms([r['to_first'] for r in runs])}; "
          f"first request {ms([r['first'] for r in runs])}")
    for part in ["pull_us", "compile_us", "link_us", "instantiate_us"]:
        total = [sum(p[part] or 0 for p in r["parts"].values()) / 1e6 for r in runs]
        print(f"{'':11}   {part[:-3]:12} (3 components) {ms(total)}")
    return runs

def fresh(i):
    oci, compiled = f"{out}/oci-{i}", f"{out}/compiled-{i}"
    return oci, compiled

# Warm the shared compiled cache once for the next cases.
shared_oci, shared_compiled = f"{out}/oci-shared", f"{out}/compiled-shared"
one_start(shared_oci, shared_compiled)

case("cold", fresh)
case("pulled", lambda i: (f"{out}/oci-pulled-{i}", shared_compiled))
runs = case("cache-warm", lambda i: (shared_oci, shared_compiled))
warm50 = statistics.median(r["warm_p50"] for r in runs) * 1e3
warm99 = statistics.median(r["warm_p99"] for r in runs) * 1e3
print(f"{'warm':11} request latency p50 {warm50:.2f} ms, p99 {warm99:.2f} ms (200 sequential requests, Python client)")
PY
