#!/usr/bin/env python3
"""A trainer for `weir retrain`: a new ETA model from recorded trips and their true ETAs.

    weir retrain weir.toml --step eta --version v3 --trainer "python3 examples/rollout/retrain.py" ...

weir runs it with WEIR_EXPORT (a Parquet file of recorded invocations with feedback), WEIR_FEATURES (the
step's input column: `features.features`, the six trip features), WEIR_TARGET (the true ETA column) and
WEIR_CANDIDATE (where to write the model). It fits a least-squares ETA on the distance, the distance
times congestion and its square (travel time grows with distance over a congestion-dependent speed), and
the driver's distance to the pickup, on the exported rows, and writes it as ONNX with the champion's
signature: `input` FP32 [N, 6] -> `variable` FP32 [N, 1]. Prints the fit's MAE on the rows it held out.
Needs: numpy, pyarrow, onnx.
"""
import json
import os

import numpy as np
import onnx
import pyarrow.parquet as pq
from onnx import TensorProto, helper, numpy_helper


def features(x):
    d, c, driver_km = x[:, 0], x[:, 2], x[:, 3]
    return np.stack([d, d * c, d * c * c, driver_km, np.ones(len(x))], axis=1)


def onnx_model(w):
    """ETA = d*w0 + d*c*w1 + d*c*c*w2 + driver_km*w3 + w4, as ONNX operators on the raw features."""
    def column(i, name):
        return helper.make_node("Gather", ["input", f"i{i}"], [name], axis=1)
    constants = [numpy_helper.from_array(np.array([i], dtype=np.int64), f"i{i}") for i in (0, 2, 3)]
    weights = [numpy_helper.from_array(np.array(v, dtype=np.float32), n)
               for n, v in [("w0", w[0]), ("w1", w[1]), ("w2", w[2]), ("w3", w[3]), ("w4", w[4])]]
    nodes = [column(0, "d"), column(2, "c"), column(3, "k"),
             helper.make_node("Mul", ["d", "c"], ["dc"]), helper.make_node("Mul", ["dc", "c"], ["dcc"]),
             helper.make_node("Mul", ["d", "w0"], ["t0"]), helper.make_node("Mul", ["dc", "w1"], ["t1"]),
             helper.make_node("Mul", ["dcc", "w2"], ["t2"]), helper.make_node("Mul", ["k", "w3"], ["t3"]),
             helper.make_node("Sum", ["t0", "t1", "t2", "t3"], ["s"]),
             helper.make_node("Add", ["s", "w4"], ["variable"])]
    graph = helper.make_graph(
        nodes, "eta_retrained",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 6])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])],
        initializer=constants + weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main():
    table = pq.read_table(os.environ["WEIR_EXPORT"]).to_pydict()
    column = os.environ["WEIR_FEATURES"].split(",")[0]
    x = np.array([np.ravel(v) for v in table[column]], dtype=np.float64)
    y = np.array([np.ravel(v)[0] for v in table[os.environ["WEIR_TARGET"]]], dtype=np.float64)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    held = order[: max(len(y) // 5, 1)]
    fit = order[len(held):]
    w, *_ = np.linalg.lstsq(features(x[fit]), y[fit], rcond=None)
    mae = float(np.mean(np.abs(features(x[held]) @ w - y[held])))
    onnx.save(onnx_model(w), os.environ["WEIR_CANDIDATE"])
    print(json.dumps({"rows": len(y), "held_out_mae": round(mae, 4), "weights": [round(float(v), 5) for v in w]}))


if __name__ == "__main__":
    main()
