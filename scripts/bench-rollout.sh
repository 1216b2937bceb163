#!/usr/bin/env bash
# What running shared steps once saves: the rollout example's ride pipeline
# with a shadow challenger that swaps only the ETA model (`eta@v2`), served
# by two release `weir serve`, one with `share_steps = true` and one with
# `share_steps = false`. Sends the same N single-trip requests to each
# (interleaved in rounds), waits for every shadow copy to finish, then prints
# per request: steps executed and CPU by champion and challenger (from the
# experiment's status, i.e. from receipts), and the server process's CPU
# per request read from /proc (the independent check).
#
#   bash scripts/bench-rollout.sh [REQUESTS_PER_ROUND] [ROUNDS]      (default 200, 3)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-200} rounds=${2:-3}
out="$root/target/bench-rollout"
mkdir -p "$out"
cd "$root"
source "$root/scripts/bench-request.sh"
bench_build

declare -A port pid
port[true]=18295 port[false]=18296
for share in true false; do
  python3 - "$share" "$out/weir-$share.toml" <<'PY'
import re, sys
share, path = sys.argv[1], sys.argv[2]
text = open("examples/rollout/weir.toml").read()
text = text[:text.index("[experiments.eta-canary]")]
text = re.sub(r'source = "(\.\./|)', lambda m: 'source = "' + ("../../examples/" if m.group(1) else "../../examples/rollout/"), text)
text += f'''
[experiments.mirror]
pipeline = "ride"
mode = "shadow"
share_steps = {share}
shadow_queue = 100000
compare = {{ output = "eta_minutes", tolerance = 3.0 }}

[[experiments.mirror.variants]]
name = "v2"
models = {{ eta = "eta@v2" }}
'''
open(path, "w").write(text)
PY
  WEIR_LOG=warn target/release/weir serve "$out/weir-$share.toml" --listen "127.0.0.1:${port[$share]}" --no-auth \
    --preload 2>"$out/$share.log" & pid[$share]=$!
done
trap 'kill ${pid[true]} ${pid[false]} 2>/dev/null || true' EXIT
for share in true false; do
  for _ in $(seq 1 200); do
    curl -fsS "http://127.0.0.1:${port[$share]}/v2/health/ready" >/dev/null 2>&1 && break
    sleep 0.3
  done
done

python3 - "$n" "$rounds" "${port[true]}" "${pid[true]}" "${port[false]}" "${pid[false]}" <<'PY'
import json, os, sys, time, urllib.request
n, rounds = int(sys.argv[1]), int(sys.argv[2])
servers = {"true": (int(sys.argv[3]), int(sys.argv[4])), "false": (int(sys.argv[5]), int(sys.argv[6]))}
ticks = os.sysconf("SC_CLK_TCK")
rows = json.load(open("examples/ride-eta/ride_test.json"))["rows"]
def body(r):
    return json.dumps({"inputs": [
        {"name": "distance_km", "shape": [1], "datatype": "FP32", "data": [r[0]]},
        {"name": "hour", "shape": [1], "datatype": "FP32", "data": [r[1]]},
        {"name": "congestion", "shape": [1], "datatype": "FP32", "data": [r[2]]},
        {"name": "driver", "shape": [1, 3], "datatype": "FP32", "data": [[r[3], r[4], r[5]]]}]}).encode()
def cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks
def status(port):
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/experiments/mirror"))
def settle(port):
    while True:
        s = status(port)
        if s["shadow"]["finished"] == s["shadow"]["queued"]:
            return s
        time.sleep(0.05)
process = {k: 0.0 for k in servers}
sent = {k: 0 for k in servers}
for round in range(rounds):
    order = ["true", "false"] if round % 2 == 0 else ["false", "true"]
    for share in order:
        port, pid = servers[share]
        before = cpu(pid)
        for i in range(n):
            request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/ride/infer", data=body(rows[i % len(rows)]),
                                             headers={"content-type": "application/json"})
            urllib.request.urlopen(request).read()
        settle(port)
        process[share] += cpu(pid) - before
        sent[share] += n
print(f"{sum(sent.values())} requests, {rounds} interleaved rounds; per request:")
print(f"{'share_steps':<12} {'champion steps':>15} {'champion CPU us':>16} {'shadow steps':>13} {'shadow CPU us':>14} {'process CPU us':>15} {'agreement':>10}")
for share in ["true", "false"]:
    s = status(servers[share][0])
    c, v = s["variants"][0], s["variants"][1]
    print(f"{share:<12} {c['steps_per_run']:>15.2f} {c['cpu_us_per_run']:>16.0f} {v['shadow_steps_per_run']:>13.2f} "
          f"{v['shadow_cpu_us_per_run']:>14.0f} {1e6 * process[share] / sent[share]:>15.0f} {v['agreement']:>10.3f}")
PY
