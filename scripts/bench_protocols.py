"""The client side of scripts/bench-protocols.sh: tritonclient in a closed
loop against the digits pipeline, every protocol and batch size interleaved,
with the server's CPU time per request read from /proc/PID/stat."""

import argparse
import json
import os
import time

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

OUTPUTS = ["label", "top_classes", "top_scores"]
TICKS = os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def http_call(client, pixels, binary):
    tensor = httpclient.InferInput("pixels", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in OUTPUTS]
    return lambda: client.infer("digits", [tensor], outputs=outputs).as_numpy("label")


def grpc_call(client, pixels):
    tensor = grpcclient.InferInput("pixels", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    outputs = [grpcclient.InferRequestedOutput(name) for name in OUTPUTS]
    return lambda: client.infer("digits", [tensor], outputs=outputs).as_numpy("label")


def cell(call, seconds, pid, rows):
    call()  # warm
    latencies = []
    cpu0, start = server_cpu_seconds(pid), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        labels = call()
        latencies.append(time.perf_counter() - t)
        assert labels.shape == (rows,)
    wall, cpu = time.perf_counter() - start, server_cpu_seconds(pid) - cpu0
    latencies.sort()
    return {
        "rps": len(latencies) / wall,
        "p50_ms": 1e3 * latencies[len(latencies) // 2],
        "p99_ms": 1e3 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "server_cpu_us": 1e6 * cpu / len(latencies),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", required=True)
    parser.add_argument("--grpc", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    test = json.load(open("examples/models/digits_test.json"))
    one_row = (np.array(test["inputs"][:1], dtype=np.float32) * 16).round()
    rng = np.random.default_rng(7)
    big = (np.array(test["inputs"], dtype=np.float32)[rng.integers(0, len(test["inputs"]), 1000)] * 16).round()
    http = httpclient.InferenceServerClient(args.http)
    grpc = grpcclient.InferenceServerClient(args.grpc)
    cells = {}
    for rows, pixels in [(1, one_row), (1000, big)]:
        cells[(rows, "HTTP JSON")] = http_call(http, pixels, False)
        cells[(rows, "HTTP binary")] = http_call(http, pixels, True)
        cells[(rows, "gRPC")] = grpc_call(grpc, pixels)
    results = {key: [] for key in cells}
    for _ in range(args.rounds):
        for key, call in cells.items():
            results[key].append(cell(call, args.seconds, args.pid, key[0]))
    print(f"{args.rounds} interleaved rounds of {args.seconds:g} s per cell, median of rounds; one tritonclient, closed loop\n")
    print("| batch | protocol | req/s | p50 | p99 | server CPU µs/req | req/s × JSON |")
    print("|---|---|---|---|---|---|---|")
    for (rows, protocol), runs in results.items():
        median = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
        json_rps = float(np.median([r["rps"] for r in results[(rows, "HTTP JSON")]]))
        print(f"| {rows} × 64 | {protocol} | {median['rps']:,.0f} | {median['p50_ms']:.2f} ms | {median['p99_ms']:.2f} ms "
              f"| {median['server_cpu_us']:,.0f} | {median['rps'] / json_rps:.2f} |")


if __name__ == "__main__":
    main()
