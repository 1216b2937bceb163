#!/usr/bin/env python3
"""The breast-cancer model's exact linear attributions, read from the ONNX file itself.

    python3 examples/diagnosis/linear.py

examples/models/breast_cancer.onnx is a StandardScaler (ONNX `Scaler`: z = (x - offset) * scale) and a
logistic regression (`LinearClassifier`, LOGISTIC post-transform), so the log-odds of class 1 are linear in
the raw features: logit p1 = sum_i w_i * scale_i * (x_i - offset_i) + b. Against a baseline x0, feature i's
exact Shapley value of the log-odds is w_i * scale_i * (x_i - x0_i). Writes breast_cancer_linear.json with
the per-feature weights (w_i * scale_i), the intercept in raw units, and the training mean (the Scaler's
offset), which tests use as the baseline. Needs: onnx (pip install onnx).
"""
import json
import os

import onnx
from onnx import helper

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    model = onnx.load(os.path.join(HERE, "..", "models", "breast_cancer.onnx"))
    nodes = {n.op_type: {a.name: helper.get_attribute_value(a) for a in n.attribute} for n in model.graph.node}
    offset, scale = nodes["Scaler"]["offset"], nodes["Scaler"]["scale"]
    linear = nodes["LinearClassifier"]
    features = len(offset)
    coefficients, intercepts = linear["coefficients"], linear["intercepts"]
    # Two classes: the second row scores class 1.
    w = coefficients[features:2 * features] if len(coefficients) == 2 * features else coefficients
    b = intercepts[-1]
    weights = [w[i] * scale[i] for i in range(features)]
    intercept = b - sum(weights[i] * offset[i] for i in range(features))
    with open(os.path.join(HERE, "breast_cancer_linear.json"), "w") as f:
        json.dump({"weights": weights, "intercept": intercept, "training_mean": list(offset),
                   "post_transform": linear["post_transform"].decode()}, f, indent=1)
    print(f"{features} weights; intercept {intercept:.4f}")


if __name__ == "__main__":
    main()
