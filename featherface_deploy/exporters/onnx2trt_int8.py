"""INT8 for TensorRT: the explicit Q/DQ flavour (TensorRT ≥ 10) and the legacy calibration cache (8.x).

Explicit quantization (``qdq``): the project's QDQ export
(:mod:`~featherface_deploy.exporters.onnx_quantize`) with what TensorRT's parser
demands (onnx-tensorrt ``docs/operators.md``: "`x_zero_point` must be zero"):

- biases stay float (``QuantizeBias=False``): ONNX Runtime's default int32 bias
  ``DequantizeLinear`` is rejected, "only activation types allowed as input to
  this layer" (onnx-tensorrt#850, onnxruntime#14229, onnxruntime#17738);
- symmetric int8 (zero points 0), per-channel weights on axis 0;
- no Q/DQ around the DCN sampling (the exporter never quantizes it) nor around
  ``DeformConv`` (no INT8 kernel; the INT8 export uses the portable lowering).

Legacy (``calibration-cache``, TensorRT 8.x): TensorRT quantizes the float
graph itself from a cache of per-tensor scales. The cache holds exactly the
activations the QDQ flavour quantizes, with the same scales (read from its
``QuantizeLinear`` nodes), so 8.x and 10.x quantize the same tensors the same
way; every other tensor (the DCN sampling, the depthwise layers) has no scale
and stays float.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from featherface_deploy.exporters.onnx_quantize import Int8Options
from featherface_deploy.trt.calib_cache import write_cache
from featherface_deploy.trt.versions import TrtVersion

import onnx  # noqa: E402  (onnx_quantize above already reported a missing onnx with its extra)
from onnx import numpy_helper  # noqa: E402


def tensorrt_int8_options(options: Int8Options = Int8Options()) -> Int8Options:
    """The TensorRT flavour of INT8 options: float biases, symmetric per-channel int8 (the rest unchanged)."""
    return dataclasses.replace(options, quantize_bias=False, per_channel=True, placement="inputs")


def activation_scales(qdq_model: "onnx.ModelProto") -> dict[str, float]:
    """``{tensor: scale}`` of every activation (non-initializer) a ``QuantizeLinear`` quantizes per tensor."""
    constants = {init.name: numpy_helper.to_array(init) for init in qdq_model.graph.initializer}
    scales = {}
    for node in qdq_model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in constants:
            continue
        scale = constants.get(node.input[1])
        if scale is not None and scale.size == 1:
            scales[node.input[0]] = float(scale.reshape(()))
    return scales


def write_calibration_cache(qdq_path: str | Path, cache_path: str | Path, version: TrtVersion) -> dict[str, float]:
    """Writes the legacy cache for ``version`` from a QDQ model's activation scales; returns the scales."""
    scales = activation_scales(onnx.load(str(qdq_path)))
    write_cache(cache_path, scales, version)
    return scales
