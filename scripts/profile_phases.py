#!/usr/bin/env python3
"""Inclusive shares of a request's phases from `perf script -F ip,sym`
output of a `perf record --call-graph dwarf` profile: a sample counts for a
phase when any frame of its stack matches (so phases nest and overlap; the
leaf buckets of profile_buckets.py add up, these do not).
scripts/profile-request.sh calls this with `--phases`."""
import re
import sys

path, cpu_us = sys.argv[1], float(sys.argv[2])

# (phase, pattern on any frame of the stack), outermost first.
PHASES = [
    ("HTTP: socket reads (kernel recv)", r"sock_recvmsg|tcp_recvmsg|sock_read_iter"),
    ("HTTP: socket writes (kernel TCP send, loopback delivery)", r"sock_write_iter|tcp_sendmsg"),
    ("  infer handler (decode, dispatch, encode)", r"weir_triggers::http::infer"),
    ("    JSON decode of the request", r"Prepared::parse_http|serde_json::de"),
    ("    JSON encode of the answer and receipt", r"to_json|serde_json::ser"),
    ("  steps, each in CpuMetered (instantiate, run, drop)", r"CpuMetered"),
    ("    instantiation: imports (build_imports)", r"Instantiator::build_imports"),
    ("    instantiation: module registry", r"ModuleRegistry"),
    ("    step state: WASI context, pipes", r"StepState::new"),
    ("    guest call (process)", r"call_process|TypedFunc.*call"),
    ("      inference (ONNX Runtime Run)", r"run_shared"),
    ("      lift/lower of tensor lists", r"[Ll]ift|[Ll]ower"),
    ("    store drop: instance back to the pool", r"Store<T> as core::ops::drop::Drop|drop_in_place<wasmtime::runtime::store::StoreInner"),
    ("      linear memory reset (pagemap scan, copy)", r"clear_and_remain_ready"),
    ("    thread CPU clock reads (receipts)", r"thread_cpu_time"),
    ("observers: records, board, metrics", r"weir_observe|weir_console|prometheus"),
    ("allocator (malloc, free, memmove)", r"^\s*\S+ (mi_|_mi_|malloc|cfree|free|__mem(move|cpy|set))"),
    ("scheduler (context switches)", r"__schedule"),
]

samples = [s for s in open(path).read().split("\n\n") if s.strip()]
total = len(samples)
print(f"{total} samples; shares of CPU scaled to {cpu_us:.0f} µs per request (a phase counts every sample it is on the stack of)")
print(f"{'phase':<56} {'share':>6} {'µs/request':>11}")
for phase, pattern in PHASES:
    r = re.compile(pattern, re.M)
    n = sum(1 for s in samples if r.search(s))
    print(f"{phase:<56} {100 * n / total:>5.1f}% {n / total * cpu_us:>11.1f}")
