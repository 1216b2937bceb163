# Sourced by the HTTP benches. `bench_build` installs wrk when missing and
# builds the release binary and the reference steps (run from the repository
# root). `bench_request DIR` writes DIR/request.json
# (one held-out digit as raw pixels, one flat row: the pipeline normalises)
# and DIR/post.lua (wrk posts it and prints
# `RESULT <requests> <duration µs> <p99 µs> <errors>` when done).
bench_request() {
  python3 - "$1/request.json" <<'PY'
import json, sys
test = json.load(open("examples/models/digits_test.json"))
raw = [round(v * 16) for v in test["inputs"][0]]
json.dump({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": raw}]}, open(sys.argv[1], "w"))
PY
  cat >"$1/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("BODY")):read("*a")
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(99), summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
LUA
}

bench_build() { # [PROFILE] (default release; the binary lands in target/PROFILE/weir)
  export PATH="$HOME/.cargo/bin:$PATH"
  command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
  cargo build --profile "${1:-release}" --locked --quiet -p weir-cli
  bash scripts/build-components.sh >/dev/null
}
