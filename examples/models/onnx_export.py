"""Export a fitted scikit-learn model to ONNX the way weir's example steps expect it."""
import onnx
from onnx import helper
from skl2onnx import to_onnx


def export(model, sample, path, name):
    """Write `model` to `path`: input named `input`, classifiers without ZipMap (plain tensors)."""
    options = {"zipmap": False} if hasattr(model, "predict_proba") else None
    onx = to_onnx(model, sample[:1], options=options, target_opset=17)
    rename = {onx.graph.input[0].name: "input"}
    for node in onx.graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
    onx.graph.input[0].name = "input"
    onx.graph.name = name
    # skl2onnx can list the default domain twice for pipelines; keep one.
    opsets = {}
    for opset in onx.opset_import:
        opsets[opset.domain] = max(opsets.get(opset.domain, 0), opset.version)
    del onx.opset_import[:]
    onx.opset_import.extend(helper.make_opsetid(d, v) for d, v in opsets.items())
    onnx.checker.check_model(onx)
    with open(path, "wb") as f:
        f.write(onx.SerializeToString())
    return onx
