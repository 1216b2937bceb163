#!/usr/bin/env bash
# Density: `weir serve` with N registered pipelines (default 20 000) over two
# shared components, vs the same server with one pipeline. Reports resident
# memory idle, per registered pipeline, and after invoking every pipeline once.
#
#   bash scripts/bench-density.sh [N]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-20000}
out="$root/target/bench-density"
mkdir -p "$out"
export PATH="$HOME/.cargo/bin:$PATH"
cd "$root"
cargo build --release --locked --quiet -p weir-cli
bash scripts/build-components.sh >/dev/null

python3 - "$out" "$n" <<'PY'
import json, os, subprocess, sys, time, urllib.request
out, n = sys.argv[1], int(sys.argv[2])
guests = os.path.abspath("target/guests/wasm32-wasip1/release")

def manifest(count):
    lines = [f'[components.scale]\nsource = "{guests}/scale.wasm"', f'[components.noop]\nsource = "{guests}/noop.wasm"']
    for i in range(count):
        component, output = ("scale", "y") if i % 2 == 0 else ("noop", "x")
        lines.append(f'[pipelines.p{i}]\nsteps = [{{ name = "s", component = "{component}", inputs = ["x=input.x"], config = {{ mean = 0, std = 1 }} }}]\noutputs = {{ y = "s.{output}" }}')
    path = f"{out}/weir-{count}.toml"
    open(path, "w").write("\n".join(lines) + "\n")
    return path

def serve(path):
    env = dict(os.environ, WEIR_LOG="warn")
    started = time.perf_counter()
    proc = subprocess.Popen(["target/release/weir", "serve", path, "--listen", "127.0.0.1:0", "--no-auth"], env=env, stderr=subprocess.PIPE, text=True)
    base = "http://" + proc.stderr.readline().split("http://")[1].strip().removesuffix("/v2")
    return proc, base, time.perf_counter() - started

def rss(base):
    return json.loads(urllib.request.urlopen(f"{base}/v2/status").read())["resident_memory_bytes"]

body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}]}).encode()
one, one_base, _ = serve(manifest(1))
many, base, startup = serve(manifest(n))
idle_one, idle_many = rss(one_base), rss(base)
started = time.perf_counter()
for i in range(n):
    req = urllib.request.Request(f"{base}/v2/models/p{i}/infer", data=body, headers={"content-type": "application/json"})
    urllib.request.urlopen(req).read()
touched = rss(base)
elapsed = time.perf_counter() - started
for proc in (one, many):
    proc.terminate(); proc.wait()
mib = lambda b: f"{b / 2**20:.1f} MiB"
print(f"{n} pipelines registered: start to listening {startup * 1e3:.0f} ms")
print(f"idle RSS: 1 pipeline {mib(idle_one)}, {n} pipelines {mib(idle_many)} -> {(idle_many - idle_one) / (n - 1):.0f} B per registered pipeline")
print(f"after invoking each once ({n / elapsed:.0f} first invocations/s): {mib(touched)} -> {(touched - idle_one) / n:.0f} B per pipeline")
PY
