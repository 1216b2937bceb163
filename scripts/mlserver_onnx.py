"""An MLServer runtime that serves an ONNX model with ONNX Runtime in-process,
for the layered benchmark (scripts/bench-layered.sh): MLServer on the same
inference engine as weir, so the comparison measures serving, not the engine.

model-settings.json: {"name": ..., "implementation": "mlserver_onnx.OnnxModel",
                      "parameters": {"uri": "./digits.onnx"}}
"""

import numpy as np
import onnxruntime
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxModel(MLModel):
    async def load(self) -> bool:
        options = onnxruntime.SessionOptions()
        # One thread per call, as weir runs the model (threads = 1).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(await get_model_uri(self._settings), options,
                                                     providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
        results = self._session.run(self._outputs, {self._input: x})
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output(name, value) for name, value in zip(self._outputs, results)],
        )
