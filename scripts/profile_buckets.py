#!/usr/bin/env python3
"""Bucket a `perf report --no-children --sort symbol --stdio` by leaf symbol
and scale the buckets to the measured CPU µs per request
(scripts/profile-request.sh calls this)."""
import re
import sys

report, cpu_us, requests, seconds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])

# First match wins; the order puts specific libraries before general ones.
BUCKETS = [
    ("inference (ONNX Runtime)", r"onnxruntime|Ort|Mlas|mlas|onnx::|libonnx"),
    ("guest code (Wasm)", r"wasm\[\d+\]|wasm-function|jit|^\s*0x0000"),
    ("instantiate (wasmtime)", r"instantiat|InstancePre|Pooling|pooling|memory_image|MemoryImage|allocate_|Instance::new|vmctx|VMContext|init_|table_|TablePool|StackPool|decommit|madvise|mprotect|mmap|munmap"),
    ("host-guest copies (lift/lower)", r"lower|lift|Lower|Lift|typed_func|TypedFunc|ComponentType|canonical|realloc"),
    ("WASI, store, resources", r"wasmtime_wasi|WasiCtx|Store|ResourceTable|store::|wasmtime::runtime::func|call_async|fiber|Fiber|wasmtime_setjmp|trampoline|epoch"),
    ("wasi:nn host calls", r"weir_nn|NnCtx|nn::"),
    ("HTTP (hyper, axum)", r"hyper|axum|h1::|http::|httparse|tower"),
    ("JSON decode", r"serde_json::de|Deserialize|deserialize|RawValue|oip::decode|decode"),
    ("JSON encode", r"serde_json::ser|Serialize|serialize|encode|itoa|ryu|format_"),
    ("metrics", r"prometheus|metrics|Metric|histogram|Histogram"),
    ("receipts, energy, clocks", r"receipt|Receipt|energy|Energy|CpuMetered|clock_gettime|cputime|thread_cpu|rapl|Rapl"),
    ("provenance, observers", r"provenance|Provenance|observe|Observer|recording"),
    ("tracing", r"tracing"),
    ("executor, pipeline", r"weir_executor|schedule|route_inputs|fetch|Executor"),
    ("tokio runtime", r"tokio"),
    ("allocator", r"malloc|free|_int_|cfree|realloc|calloc|memmove|memcpy|memset"),
    ("kernel", r"\[k\]"),
]

samples = {}
total = 0.0
symbols = []
for line in open(report):
    m = re.match(r"\s*([\d.]+)%\s+\[(.)\]\s+(.*)$", line)
    if not m:
        continue
    share, kind, symbol = float(m.group(1)), m.group(2), m.group(3).strip()
    name = f"[k] {symbol}" if kind == "k" else symbol
    bucket = next((b for b, pattern in BUCKETS if re.search(pattern, name)), "other")
    samples[bucket] = samples.get(bucket, 0.0) + share
    total += share
    symbols.append((share, bucket, symbol))

print(f"{requests} requests in {seconds:.0f} s ({requests / seconds:.0f}/s); server CPU {cpu_us:.0f} µs per request")
print(f"{'bucket':<34} {'share':>6} {'µs/request':>11}")
for bucket, share in sorted(samples.items(), key=lambda kv: -kv[1]):
    print(f"{bucket:<34} {share / total * 100:>5.1f}% {share / total * cpu_us:>11.1f}")
print("\ntop unbucketed symbols:")
for share, bucket, symbol in sorted((x for x in symbols if x[1] == "other"), reverse=True)[:12]:
    print(f"{share:>5.2f}%  {symbol[:120]}")
print("\ntop symbols:")
for share, bucket, symbol in sorted(symbols, reverse=True)[:25]:
    print(f"{share:>5.2f}%  {bucket:<30} {symbol[:110]}")
