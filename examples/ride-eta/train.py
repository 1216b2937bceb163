#!/usr/bin/env python3
"""The ride-sharing ETA example (the seed paper's Figure 1): generate trips, train two models.

    python3 examples/ride-eta/train.py

The training data is GENERATED here (no public ride-sharing data set ships with scikit-learn):
trips with a distance and an hour of day, a traffic congestion index with rush hours, and the
driver's state (distance to the pickup, rating, hours on shift). Travel time follows a speed
that falls with congestion plus the drive to the pickup, with noise; whether the driver accepts
follows a logistic rule of pickup distance, trip length, fatigue and rating.

Writes next to this script:
  eta.onnx         gradient-boosted trees: 6 features -> `variable` FP32 [N, 1] (minutes)
  acceptance.onnx  standardise + logistic regression: 6 features -> `label` INT64, `probabilities` FP32 [N, 2]
  ride_test.json   held-out requests with the true ETA and acceptance, and scikit-learn's scores,
                   ETA predictions and acceptance probabilities
Features, in order: distance_km, hour, congestion, driver_km, driver_rating, hours_on_shift.
Needs: numpy, scikit-learn, skl2onnx, onnx.
"""
import json
import os

import sys

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mean_absolute_error
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

SEED = 0
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models"))
from onnx_export import export  # noqa: E402


def generate(n, rng):
    distance = np.clip(rng.lognormal(1.3, 0.6, n), 0.3, 40.0)
    hour = rng.integers(0, 24, n).astype(float)
    rush = ((hour >= 7) & (hour <= 9)) | ((hour >= 16) & (hour <= 19))
    congestion = np.clip(rng.beta(2, 3, n) + 0.25 * rush, 0.0, 1.0)
    driver_km = rng.gamma(2.0, 1.2, n)
    rating = rng.uniform(4.0, 5.0, n)
    shift_hours = rng.uniform(0.0, 12.0, n)
    speed = 38.0 * (1.0 - 0.6 * congestion) + rng.normal(0, 2.0, n)
    eta = distance / np.maximum(speed, 5.0) * 60.0 + driver_km / 30.0 * 60.0 + rng.normal(0, 1.5, n)
    logit = 2.0 - 0.5 * driver_km + 0.04 * distance - 0.15 * shift_hours + 0.8 * (rating - 4.5)
    accept = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    x = np.stack([distance, hour, congestion, driver_km, rating, shift_hours], axis=1).astype(np.float32)
    return x, eta.astype(np.float32), accept


def export_model(model, sample, name):
    export(model, sample, os.path.join(HERE, f"{name}.onnx"), name)


def main():
    rng = np.random.default_rng(SEED)
    x, eta, accept = generate(6000, rng)
    x_train, x_test, eta_train, eta_test, acc_train, acc_test = train_test_split(
        x, eta, accept, test_size=0.2, random_state=SEED)
    eta_model = GradientBoostingRegressor(n_estimators=150, max_depth=4, random_state=SEED).fit(x_train, eta_train)
    mae = float(mean_absolute_error(eta_test, eta_model.predict(x_test)))
    accept_model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_train, acc_train)
    accuracy = float(accept_model.score(x_test, acc_test))
    export_model(eta_model, x_train, "eta")
    export_model(accept_model, x_train, "acceptance")
    test = x_test[:200]
    with open(os.path.join(HERE, "ride_test.json"), "w") as f:
        json.dump({
            "features": ["distance_km", "hour", "congestion", "driver_km", "driver_rating", "hours_on_shift"],
            "rows": np.round(test.astype(float), 5).tolist(),
            "eta_minutes": np.round(eta_test[:200].astype(float), 4).tolist(),
            "eta_mae_sklearn": mae,
            "eta_predictions_sklearn": np.round(eta_model.predict(test).astype(float), 4).tolist(),
            "accept": acc_test[:200].tolist(),
            "accept_accuracy_sklearn": accuracy,
            # For the rows as stored (rounded), as weir is sent them.
            "accept_probabilities_sklearn":
                np.round(accept_model.predict_proba(np.round(test.astype(float), 5)), 6).tolist(),
        }, f)
    print(f"eta: held-out MAE {mae:.2f} min; acceptance: held-out accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
