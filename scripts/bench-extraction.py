#!/usr/bin/env python3
"""A simple model-extraction attack on the served digits model, with and
without output policies: the attacker queries `weir serve` N times and
trains a copy (logistic regression) on the answers: soft labels (the full
probability vector) when the pipeline answers them, hard labels otherwise.
Two attackers: `natural` holds unlabeled digits (scikit-learn's bundled set,
disjoint from the held-out ones); `synthetic` has no data and queries random
pixel images. Reports each copy's accuracy on held-out digits and its
agreement with the served model.

    python3 -m venv /tmp/skvenv && /tmp/skvenv/bin/pip install scikit-learn
    cargo build -p weir-cli && bash scripts/build-components.sh
    /tmp/skvenv/bin/python scripts/bench-extraction.py [target/debug/weir] [natural|synthetic]
"""
import json, os, subprocess, sys, tempfile, time, urllib.request

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
weir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "target/debug/weir")
attacker = sys.argv[2] if len(sys.argv) > 2 else "natural"
guests = os.path.join(root, "target/guests/wasm32-wasip1/release")
steps = """[
  { name = "normalise", component = "scale", inputs = ["x=input.pixels"], config = { std = 16 } },
  { name = "classify", component = "classify", inputs = ["x=normalise.y"], models = ["digits"] },
]"""
manifest = f"""
[models.digits]
source = "{root}/examples/models/digits.onnx"
[components.scale]
source = "{guests}/scale.wasm"
[components.classify]
source = "{guests}/classify.wasm"
[pipelines.open]
steps = {steps}
outputs = {{ label = "classify.label", probabilities = "classify.probabilities" }}
[pipelines.top1]
steps = {steps}
outputs = {{ label = "classify.label", probabilities = "classify.probabilities" }}
[pipelines.top1.protect.probabilities]
top_k = 1
decimals = 1
noise = 0.05
[pipelines.label_only]
steps = {steps}
outputs = {{ label = "classify.label", probabilities = "classify.probabilities" }}
[pipelines.label_only.protect.probabilities]
remove = true
"""
tmp = tempfile.mkdtemp()
path = os.path.join(tmp, "weir.toml")
open(path, "w").write(manifest)
server = subprocess.Popen([weir, "serve", path, "--listen", "127.0.0.1:0", "--no-auth"], stderr=subprocess.PIPE, text=True)
for line in server.stderr:
    if line.startswith("weir: serving"):
        base = line.split("on ")[1].strip().removesuffix("/v2")
        break


def ask(pipeline, rows):
    """One request per row (quotas and the detector count requests)."""
    labels, probabilities = [], []
    for row in rows:
        body = {"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [float(v) for v in row]}]}
        request = urllib.request.Request(f"{base}/v2/models/{pipeline}/infer", json.dumps(body).encode(),
                                         {"content-type": "application/json"})
        answer = json.load(urllib.request.urlopen(request))
        outputs = {o["name"]: o["data"] for o in answer["outputs"]}
        labels.append(int(outputs["label"][0]))
        probabilities.append(outputs.get("probabilities"))
    return np.array(labels), probabilities


def copy_from(x, labels, probabilities):
    if probabilities[0] is None or len(set(labels)) < 2:
        model = LogisticRegression(max_iter=2000).fit(x, labels) if len(set(labels)) > 1 else None
        return model
    # Soft labels: each query becomes ten weighted rows, one per class.
    p = np.clip(np.array(probabilities, dtype=float), 0, None)
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-9)
    rows, classes, weights = [], [], []
    for i in range(len(x)):
        for c in range(p.shape[1]):
            if p[i, c] > 0:
                rows.append(x[i]); classes.append(c); weights.append(p[i, c])
    if len(set(classes)) < 2:
        return None
    return LogisticRegression(max_iter=2000).fit(np.array(rows), np.array(classes), sample_weight=np.array(weights))


try:
    digits = load_digits()
    rng = np.random.default_rng(7)
    order = rng.permutation(len(digits.target))
    pool, held = order[:1000], order[1000:]
    x_pool, x_held, y_held = digits.data[pool], digits.data[held], digits.target[held]
    if attacker == "synthetic":
        # No data: random images, each pixel 0-16 with the digits' sparsity.
        x_pool = np.where(rng.random((1000, 64)) < 0.5, rng.integers(0, 17, (1000, 64)), 0).astype(float)
    print(f"attacker: {attacker}")
    served, _ = ask("open", x_held)
    print(f"served model: accuracy {np.mean(served == y_held):.3f} on {len(held)} held-out digits")
    print(f"{'pipeline':<11} {'N':>5} {'copy accuracy':>14} {'agreement':>10}")
    for n in [10, 30, 100, 300, 1000]:
        for pipeline in ["open", "top1", "label_only"]:
            labels, probabilities = ask(pipeline, x_pool[:n])
            copy = copy_from(x_pool[:n], labels, probabilities)
            if copy is None:
                print(f"{pipeline:<11} {n:>5} {'(one class)':>14}")
                continue
            guess = copy.predict(x_held)
            print(f"{pipeline:<11} {n:>5} {np.mean(guess == y_held):>14.3f} {np.mean(guess == served):>10.3f}")
finally:
    server.terminate()
