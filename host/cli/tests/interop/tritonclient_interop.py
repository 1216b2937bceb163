"""Unmodified Open Inference Protocol clients against a running `weir serve`.

tritonclient (gRPC and HTTP, binary tensor data on and off) calls the digits
and ride-eta examples and an `echo` pipeline that returns one tensor of every
datatype; every way must give the same answer, and the right one. Run by the
integration test `interop::tritonclient_*` (host/cli/tests/it/interop.rs),
which starts the server; exits non-zero with the reason on the first failure.

    python tritonclient_interop.py --http HOST:PORT --grpc HOST:PORT --examples DIR [--key KEY]
"""

import argparse
import json
import queue
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

FAILURES = []


def check(condition, what):
    if not condition:
        FAILURES.append(what)
        print(f"FAIL: {what}", file=sys.stderr)


def http_infer(client, model, arrays, outputs, binary_in, binary_out, headers):
    inputs = []
    for name, array in arrays.items():
        tensor = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array, binary_data=binary_in)
        inputs.append(tensor)
    wanted = [httpclient.InferRequestedOutput(name, binary_data=binary_out) for name in outputs]
    # A copy: tritonclient writes Inference-Header-Content-Length into the dict it is given.
    result = client.infer(model, inputs, outputs=wanted, headers=dict(headers or {}))
    return {name: result.as_numpy(name) for name in outputs}, result.get_response()


def grpc_inputs(arrays):
    inputs = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def grpc_infer(client, model, arrays, outputs, headers):
    wanted = [grpcclient.InferRequestedOutput(name) for name in outputs]
    result = client.infer(model, grpc_inputs(arrays), outputs=wanted, headers=headers)
    return {name: result.as_numpy(name) for name in outputs}, result.get_response(as_json=True)


def grpc_stream_infer(client, model, arrays, outputs, headers, bad_arrays):
    """Three requests on one stream, the middle one bad: two answers and one error, in order."""
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)), headers=headers)
    wanted = [grpcclient.InferRequestedOutput(name) for name in outputs]
    for i, which in enumerate([arrays, bad_arrays, arrays]):
        client.async_stream_infer(model, grpc_inputs(which), outputs=wanted, request_id=f"stream-{i}")
    got = [answers.get(timeout=30) for _ in range(3)]
    client.stop_stream()
    check(got[1][0] is None and got[1][1] is not None, f"stream: the bad request is answered with an error: {got[1]}")
    first, error = got[0]
    check(error is None, f"stream: first request failed: {error}")
    check(got[2][1] is None, f"stream: the request after a bad one failed: {got[2][1]}")
    if first is None:
        return None
    return {name: first.as_numpy(name) for name in outputs}


def every_way(http, grpc, model, arrays, outputs, headers, bad_arrays):
    """The same request through every protocol and encoding: {way: outputs}."""
    ways = {}
    ways["http binary"], _ = http_infer(http, model, arrays, outputs, True, True, headers)
    ways["http binary in, json out"], _ = http_infer(http, model, arrays, outputs, True, False, headers)
    ways["http json"], _ = http_infer(http, model, arrays, outputs, False, False, headers)
    ways["http json in, binary out"], _ = http_infer(http, model, arrays, outputs, False, True, headers)
    ways["grpc"], response = grpc_infer(grpc, model, arrays, outputs, headers)
    receipt = response.get("parameters", {}).get("receipt", {}).get("string_param")
    check(receipt is not None and isinstance(json.loads(receipt), dict), f"{model}: gRPC response has a receipt: {response.get('parameters')}")
    streamed = grpc_stream_infer(grpc, model, arrays, outputs, headers, bad_arrays)
    if streamed is not None:
        ways["grpc stream"] = streamed
    return ways


def same_everywhere(model, ways, exact=True):
    first_way, first = next(iter(ways.items()))
    for way, outputs in ways.items():
        for name, value in outputs.items():
            ref = first[name]
            if exact or ref.dtype.kind not in "f":
                same = value.shape == ref.shape and value.dtype == ref.dtype and np.array_equal(value, ref)
            else:
                same = value.shape == ref.shape and np.allclose(value, ref, rtol=1e-6, atol=1e-6)
            check(same, f"{model}: output {name} by {way} ({value.dtype} {value.shape}) differs from {first_way} ({ref.dtype} {ref.shape})")


def metadata(http, grpc, headers):
    check(http.is_server_live() and grpc.is_server_live(), "server live")
    check(http.is_server_ready() and grpc.is_server_ready(), "server ready")
    for model in ["digits", "ride", "echo"]:
        check(http.is_model_ready(model, headers=headers), f"http: {model} ready")
        check(grpc.is_model_ready(model, headers=headers), f"grpc: {model} ready")
    meta = grpc.get_model_metadata("digits", headers=headers, as_json=True)
    check([i["name"] for i in meta["inputs"]] == ["pixels"], f"grpc metadata inputs: {meta}")
    check(meta["inputs"][0]["datatype"] == "FP32", f"grpc metadata datatype: {meta}")
    server = grpc.get_server_metadata(headers=headers, as_json=True)
    check(server["name"] == "weir" and "binary_tensor_data" in server.get("extensions", []), f"server metadata: {server}")
    http_meta = http.get_model_metadata("ride", headers=headers)
    check(len(http_meta["inputs"]) == 4, f"http metadata: {http_meta}")


def digits(http, grpc, examples, headers):
    test = json.load(open(f"{examples}/models/digits_test.json"))
    pixels = (np.array(test["inputs"][:100], dtype=np.float32) * 16).round()
    labels = np.array(test["labels"][:100])
    ways = every_way(http, grpc, "digits", {"pixels": pixels}, ["label", "top_classes", "top_scores"], headers,
                     {"pixels": np.zeros((2, 63), dtype=np.float32)})
    same_everywhere("digits", ways)
    for way, outputs in ways.items():
        accuracy = float((outputs["label"] == labels).mean())
        check(accuracy >= 0.95, f"digits by {way}: accuracy {accuracy}")
        check(outputs["top_classes"].shape == (100, 3), f"digits by {way}: top_classes {outputs['top_classes'].shape}")


def ride(http, grpc, examples, headers):
    test = json.load(open(f"{examples}/ride-eta/ride_test.json"))
    rows = np.array(test["rows"], dtype=np.float32)
    arrays = {"distance_km": rows[:, 0].copy(), "hour": rows[:, 1].copy(), "congestion": rows[:, 2].copy(),
              "driver": rows[:, 3:6].copy()}
    bad = dict(arrays, driver=rows[:, 3:5].copy())
    ways = every_way(http, grpc, "ride", arrays, ["eta_minutes", "fare", "accept_probability"], headers, bad)
    same_everywhere("ride", ways)
    sklearn = np.array(test["eta_predictions_sklearn"])
    for way, outputs in ways.items():
        gap = float(np.abs(outputs["eta_minutes"].reshape(-1) - sklearn).max())
        check(gap < 1e-3, f"ride by {way}: eta differs from scikit-learn by {gap}")


def all_datatypes():
    return {
        "b": np.array([[True, False, True]]),
        "u8": np.array([0, 7, 255], dtype=np.uint8),
        "u16": np.array([0, 65535], dtype=np.uint16),
        "u32": np.array([0, 4294967295], dtype=np.uint32),
        "u64": np.array([0, 2**63 + 5], dtype=np.uint64),
        "i8": np.array([-128, 127], dtype=np.int8),
        "i16": np.array([-32768, 32767], dtype=np.int16),
        "i32": np.array([-(2**31), 2**31 - 1], dtype=np.int32),
        "i64": np.array([[-(2**63), 2**63 - 1]], dtype=np.int64),
        "f16": np.array([0.5, -2.25], dtype=np.float16),
        "f32": np.array([[1.5, -0.1], [3.25e10, 0]], dtype=np.float32),
        "f64": np.array([0.1, -1e300], dtype=np.float64),
        "s": np.array([b"hello", b"", b"weir \xe2\x9c\x93"], dtype=np.object_),
    }


def echo(http, grpc, headers):
    arrays = all_datatypes()
    names = list(arrays)
    # 33 dimensions: over the limit of 32.
    bad = dict(arrays, s=np.array([b"x"], dtype=np.object_).reshape((1,) * 33))
    ways = every_way(http, grpc, "echo", arrays, names, headers, bad)
    for way, outputs in ways.items():
        for name, value in outputs.items():
            sent = arrays[name]
            if sent.dtype == np.object_:
                # JSON answers BYTES as text; the binary encodings as bytes.
                value = np.array([v.encode() if isinstance(v, str) else v for v in value.flat], dtype=np.object_).reshape(value.shape)
            same = value.shape == sent.shape and np.array_equal(value.astype(sent.dtype), sent)
            check(same, f"echo by {way}: {name} came back as {value!r}, sent {sent!r}")
    typed_contents(headers)


def typed_contents(headers):
    """gRPC `contents` (typed fields, no raw bytes), through the client's own protobuf stubs."""
    import grpc as grpclib

    channel = grpclib.insecure_channel(ARGS.grpc)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    request = service_pb2.ModelInferRequest(model_name="typed", id="typed")
    field = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
             "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
             "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}
    sent = {k: v for k, v in all_datatypes().items() if k != "f16"}
    for name, array in sent.items():
        datatype = np_to_triton_dtype(array.dtype)
        tensor = request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
        getattr(tensor.contents, field[datatype]).extend(array.flatten().tolist())
    metadata = [(k.lower(), v) for k, v in (headers or {}).items()]
    response = stub.ModelInfer(request, metadata=metadata)
    check(response.id == "typed", f"typed contents: id {response.id!r}")
    result = grpcclient.InferResult(response)
    for name, array in sent.items():
        value = result.as_numpy(name)
        check(value.shape == array.shape and np.array_equal(value, array), f"typed contents: {name} came back as {value!r}, sent {array!r}")
    # A count that does not match the shape is INVALID_ARGUMENT, with where.
    bad = service_pb2.ModelInferRequest(model_name="echo")
    tensor = bad.inputs.add(name="x", datatype="FP32", shape=[4])
    tensor.contents.fp32_contents.extend([1.0, 2.0])
    try:
        stub.ModelInfer(bad, metadata=metadata)
        check(False, "typed contents: a short fp32_contents was accepted")
    except grpclib.RpcError as error:
        check(error.code() == grpclib.StatusCode.INVALID_ARGUMENT, f"short contents: {error.code()}")
        check("fp32_contents has 2" in error.details(), f"short contents message: {error.details()}")


def errors(http, grpc, headers):
    try:
        grpc.infer("nope", grpc_inputs({"x": np.zeros(1, dtype=np.float32)}), headers=headers)
        check(False, "grpc: an unknown model was served")
    except InferenceServerException as error:
        check(error.status() == "StatusCode.NOT_FOUND", f"grpc unknown model: {error.status()} {error.message()}")
    # A message over max_body (8 MiB) is refused by its declared length; the server goes on.
    huge = {"pixels": np.zeros((33000, 64), dtype=np.float32)}
    try:
        grpc.infer("digits", grpc_inputs(huge), headers=headers)
        check(False, "grpc: a 8.4 MB message was accepted over max_body")
    except InferenceServerException as error:
        check(error.status() in ("StatusCode.RESOURCE_EXHAUSTED", "StatusCode.OUT_OF_RANGE"), f"grpc over max_body: {error.status()} {error.message()}")
    check(grpc.is_server_live() and grpc.infer("digits", grpc_inputs({"pixels": np.zeros((1, 64), dtype=np.float32)}),
                                                headers=headers).as_numpy("label").shape == (1,), "grpc serves on after a refusal")
    # Compressed bodies are refused with a message that says so, not misread.
    pixels = httpclient.InferInput("pixels", [1, 64], "FP32")
    pixels.set_data_from_numpy(np.zeros((1, 64), dtype=np.float32))
    try:
        http.infer("digits", [pixels], headers=dict(headers or {}), request_compression_algorithm="gzip")
        check(False, "http: a gzip body was accepted")
    except InferenceServerException as error:
        check(str(error.status()) == "400" and "not supported" in error.message(), f"http gzip: {error.status()} {error.message()}")
    try:
        http.infer("nope", [], headers=headers)
        check(False, "http: an unknown model was served")
    except InferenceServerException as error:
        check(str(error.status()) == "404", f"http unknown model: {error.status()} {error.message()}")


def unauthenticated(http_url, grpc_url):
    try:
        grpcclient.InferenceServerClient(grpc_url).get_server_metadata()
        check(False, "grpc: metadata without a key was answered")
    except InferenceServerException as error:
        check(error.status() == "StatusCode.UNAUTHENTICATED", f"grpc without a key: {error.status()}")
    try:
        grpcclient.InferenceServerClient(grpc_url).is_model_ready("digits", headers={"authorization": "Bearer nope"})
        check(False, "grpc: a bad key was accepted")
    except InferenceServerException as error:
        check(error.status() == "StatusCode.UNAUTHENTICATED", f"grpc with a bad key: {error.status()}")


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", required=True)
    parser.add_argument("--grpc", required=True)
    parser.add_argument("--examples", required=True)
    parser.add_argument("--key")
    ARGS = parser.parse_args()
    headers = {"authorization": f"Bearer {ARGS.key}"} if ARGS.key else None
    http = httpclient.InferenceServerClient(ARGS.http)
    grpc = grpcclient.InferenceServerClient(ARGS.grpc)
    if ARGS.key:
        unauthenticated(ARGS.http, ARGS.grpc)
    metadata(http, grpc, headers)
    digits(http, grpc, ARGS.examples, headers)
    ride(http, grpc, ARGS.examples, headers)
    echo(http, grpc, headers)
    errors(http, grpc, headers)
    if FAILURES:
        sys.exit(f"{len(FAILURES)} interoperability checks failed")
    print("all interoperability checks passed")


if __name__ == "__main__":
    main()
