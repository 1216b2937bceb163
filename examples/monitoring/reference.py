#!/usr/bin/env python3
"""The breast-cancer monitors' reference window: the model's training rows.

    python3 examples/monitoring/reference.py

Splits scikit-learn's Wisconsin breast-cancer data exactly as examples/models/train.py does (test_size 0.25,
random_state 0, stratified), and writes the 426 training rows as an Open Inference Protocol request body,
breast_cancer_reference.json: one tensor `features` FP32 [426, 30], the reference the drift and outlier
monitors of weir.toml compare traffic with. Needs: scikit-learn (pip install scikit-learn).
"""
import json
import os

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    x_train, _, _, _ = train_test_split(x, data.target, test_size=0.25, random_state=0, stratify=data.target)
    rows = np.round(x_train.astype(np.float64), 5)
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": list(rows.shape), "data": rows.tolist()}]}
    with open(os.path.join(HERE, "breast_cancer_reference.json"), "w") as f:
        json.dump(body, f, separators=(",", ":"))
    print(f"{rows.shape[0]} reference rows of {rows.shape[1]} features")


if __name__ == "__main__":
    main()
