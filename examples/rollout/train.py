#!/usr/bin/env python3
"""Challengers for the ride-eta ETA model, for the rollout example.

    python3 examples/rollout/train.py      (after examples/ride-eta/train.py)

Trips are generated as in examples/ride-eta/train.py, from another seed (new data, as a
retraining would see), and two challengers are trained the way the champion was:
  eta_v2.onnx   retrained on the new trips: should agree with the champion and pass a canary
  eta_bad.onnx  "retrained" with a feature-pipeline bug (hour and congestion swapped in training
                data): it answers, fast and without errors, but wrongly; a canary must roll it back
It prints each model's held-out MAE and how often each agrees with the champion within 3 minutes
on held-out trips (what the example's gate checks).
Needs: numpy, scikit-learn, skl2onnx, onnx, onnxruntime.
"""
import os
import sys

import numpy as np
import onnxruntime as ort
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.metrics import mean_absolute_error

HERE = os.path.dirname(os.path.abspath(__file__))
RIDE = os.path.join(HERE, "..", "ride-eta")
sys.path.insert(0, RIDE)
from train import generate, SEED  # noqa: E402
sys.path.insert(0, os.path.join(HERE, "..", "models"))
from onnx_export import export  # noqa: E402

TOLERANCE_MIN = 3.0


def predict(path, x):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0].reshape(-1)


def main():
    rng = np.random.default_rng(SEED + 1)
    x, eta, _ = generate(6000, rng)
    x_train, eta_train, x_test, eta_test = x[:4800], eta[:4800], x[4800:], eta[4800:]
    v2 = GradientBoostingRegressor(n_estimators=100, max_depth=4, random_state=SEED).fit(x_train, eta_train)
    export(v2, x_train, os.path.join(HERE, "eta_v2.onnx"), "eta")
    swapped = x_train[:, [0, 2, 1, 3, 4, 5]]
    bad = GradientBoostingRegressor(n_estimators=100, max_depth=4, random_state=SEED).fit(swapped, eta_train)
    export(bad, x_train, os.path.join(HERE, "eta_bad.onnx"), "eta")
    champion = predict(os.path.join(RIDE, "eta.onnx"), x_test)
    for name in ["eta_v2", "eta_bad"]:
        ours = predict(os.path.join(HERE, f"{name}.onnx"), x_test)
        agree = float(np.mean(np.abs(ours - champion) <= TOLERANCE_MIN))
        print(f"{name}: held-out MAE {mean_absolute_error(eta_test, ours):.2f} min; "
              f"agrees with the champion within {TOLERANCE_MIN} min on {agree:.1%} of trips")
    print(f"champion: held-out MAE {mean_absolute_error(eta_test, champion):.2f} min")


if __name__ == "__main__":
    main()
