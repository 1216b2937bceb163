#!/usr/bin/env python3
"""Train weir's example models on scikit-learn's bundled data sets and export them to ONNX.

    python3 examples/models/train.py [--out examples/models] [--big]

Writes, next to this script by default:
  digits.onnx            MLP 64 -> 128 -> 10 on the 8x8 digits (UCI), input `input` FP32 [N, 64]
                         (pixels / 16), outputs `label` INT64 [N] and `probabilities` FP32 [N, 10]
  breast_cancer.onnx     standardise + logistic regression on the Wisconsin breast-cancer data,
                         input `input` FP32 [N, 30], outputs `label` INT64 [N], `probabilities` FP32 [N, 2]
  dtypes.onnx            not trained: one Identity per wasi-nn tensor type (FP16, FP32, FP64, BF16,
                         U8, I32, I64), to test every type in both directions
  digits_test.json       the held-out digits samples and labels, scikit-learn's accuracy on them, and its
                         prediction and class probabilities for each sample
  breast_cancer_test.json  the same for the breast-cancer model
  digits_int8.onnx       digits.onnx quantised to INT8 weights with ONNX Runtime's quantisation tools
                         (dynamic quantisation), the same inputs and outputs
  digits_small.onnx      a smaller network, MLP 64 -> 16 -> 10, on the same split
  digits_variants.json   each digits variant's file, size and held-out accuracy as ONNX Runtime
                         computes it (what a manifest's `[models.digits.variants.*]` declare)
With --variants only the three digits variant files are (re)made, from the digits.onnx already there.
With --joblib also digits.joblib (the same fitted scikit-learn model, for serving it with MLServer
in the HTTP benchmark; not committed). With --big also digits_big.onnx (MLP 64 -> 2048 -> 2048 -> 10 on digits, ~1 ms per inference;
for benchmarks, not committed).
Needs: scikit-learn, skl2onnx, onnx, onnxruntime (pip install scikit-learn skl2onnx onnx onnxruntime).
"""
import argparse
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from onnx_export import export

SEED = 0


def held_out(path, model, x_test, y_test, accuracy, features):
    """The held-out samples as stored (rounded), their true labels, and the scikit-learn model's own
    prediction and class probabilities for each stored sample: what weir's answers are checked against."""
    inputs = np.round(x_test, 6)
    with open(path, "w") as f:
        json.dump({"features": features, "accuracy": accuracy, "inputs": inputs.tolist(), "labels": y_test.tolist(),
                   "predictions_sklearn": model.predict(inputs).tolist(),
                   "probabilities_sklearn": np.round(model.predict_proba(inputs), 6).tolist()}, f)


def digits(out, big, joblib_too=False):
    x_train, x_test, y_train, y_test = digits_split()
    # The big model is for timing (~1 ms per inference), so it trains briefly.
    sizes = [("digits", (128,), 400)] + ([("digits_big", (2048, 2048), 40)] if big else [])
    for name, hidden, iterations in sizes:
        model = MLPClassifier(hidden_layer_sizes=hidden, max_iter=iterations, random_state=SEED).fit(x_train, y_train)
        accuracy = float(model.score(x_test, y_test))
        export(model, x_train, os.path.join(out, f"{name}.onnx"), name)
        print(f"{name}: held-out accuracy {accuracy:.4f} on {len(y_test)} samples")
        if name == "digits":
            held_out(os.path.join(out, "digits_test.json"), model, x_test, y_test, accuracy, 64)
            if joblib_too:
                import joblib
                joblib.dump(model, os.path.join(out, "digits.joblib"))


def digits_split():
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    return train_test_split(x, data.target, test_size=0.25, random_state=SEED, stratify=data.target)


def onnx_accuracy(path, inputs, labels):
    """Held-out accuracy of an ONNX file as ONNX Runtime computes it on the stored (rounded) samples."""
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    predicted = session.run(["label"], {"input": np.asarray(inputs, dtype=np.float32)})[0]
    return float(np.mean(predicted == np.asarray(labels)))


def variants(out):
    """Forms of the digits model a host may choose between (docs/models.md#variants)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    base = os.path.join(out, "digits.onnx")
    quantize_dynamic(base, os.path.join(out, "digits_int8.onnx"), weight_type=QuantType.QInt8)
    x_train, _, y_train, _ = digits_split()
    small = MLPClassifier(hidden_layer_sizes=(16,), max_iter=400, random_state=SEED).fit(x_train, y_train)
    export(small, x_train, os.path.join(out, "digits_small.onnx"), "digits_small")
    with open(os.path.join(out, "digits_test.json")) as f:
        test = json.load(f)
    table = {}
    for variant, file in [("fp32", "digits.onnx"), ("int8", "digits_int8.onnx"), ("small", "digits_small.onnx")]:
        path = os.path.join(out, file)
        accuracy = onnx_accuracy(path, test["inputs"], test["labels"])
        table[variant] = {"file": file, "bytes": os.path.getsize(path), "accuracy": round(accuracy, 6)}
        print(f"digits variant {variant}: {file}, {os.path.getsize(path)} bytes, held-out accuracy {accuracy:.4f}")
    with open(os.path.join(out, "digits_variants.json"), "w") as f:
        json.dump({"samples": len(test["labels"]), "variants": table}, f, indent=1)


def breast_cancer(out):
    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, data.target, test_size=0.25, random_state=SEED,
                                                        stratify=data.target)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_train, y_train)
    accuracy = float(model.score(x_test, y_test))
    export(model, x_train, os.path.join(out, "breast_cancer.onnx"), "breast_cancer")
    held_out(os.path.join(out, "breast_cancer_test.json"), model, x_test, y_test, accuracy, 30)
    print(f"breast_cancer: held-out accuracy {accuracy:.4f} on {len(y_test)} samples")


def dtypes(out):
    types = [("fp16", TensorProto.FLOAT16), ("fp32", TensorProto.FLOAT), ("fp64", TensorProto.DOUBLE),
             ("bf16", TensorProto.BFLOAT16), ("u8", TensorProto.UINT8), ("i32", TensorProto.INT32),
             ("i64", TensorProto.INT64)]
    inputs = [helper.make_tensor_value_info(f"in_{n}", t, ["n", 3]) for n, t in types]
    outputs = [helper.make_tensor_value_info(f"out_{n}", t, ["n", 3]) for n, t in types]
    nodes = [helper.make_node("Identity", [f"in_{n}"], [f"out_{n}"]) for n, _ in types]
    graph = helper.make_graph(nodes, "dtypes", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(out, "dtypes.onnx"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--big", action="store_true", help="also train digits_big.onnx for benchmarks")
    parser.add_argument("--joblib", action="store_true", help="also save digits.joblib for MLServer")
    parser.add_argument("--variants", action="store_true", help="only remake the digits variants")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.variants:
        variants(args.out)
        return
    digits(args.out, args.big, args.joblib)
    variants(args.out)
    breast_cancer(args.out)
    dtypes(args.out)


if __name__ == "__main__":
    main()
