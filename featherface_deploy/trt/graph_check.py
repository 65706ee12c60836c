"""Does an ONNX graph fit a TensorRT version's ONNX parser? Checked from the graph alone, no TensorRT needed.

The rules (each problem names the node and the rule):

- ``opset``: the model's opset is newer than the parser documents.
- ``op``: an operator its ``operators.md`` does not list as supported, or one in a
  custom domain (needs a plugin). ``DeformConv`` before 10.1 gets the fix (``--dcn portable``).
- ``deformconv``: 10.1's restrictions: 2-D only, equal begin/end pads, and no
  Q/DQ on its inputs or output (FP32/FP16 only, no INT8 kernel).
- ``qdq-zero-point``: Q/DQ zero points must be 0 ("`x_zero_point` must be zero",
  "`y_zero_point` must be 0") and signed int8.
- ``qdq-bias``: a ``DequantizeLinear`` of int32 data (the quantized bias ONNX
  Runtime's quantizer writes by default) is rejected: "only activation types
  allowed as input to this layer" (onnx-tensorrt#850, onnxruntime#14229,
  onnxruntime#17738). Quantize with ``QuantizeBias=False``.
- ``qdq-axis``: a per-channel ``DequantizeLinear`` of convolution weights must
  use axis 0 (the output channels, TensorRT's only per-channel weight axis).
- ``qdq-scale``: Q/DQ scales must be constants (initializers or ``Constant``).
- ``nms``: ``NonMaxSuppression`` maps to TensorRT's NMS layer from 8.5 (``INMSLayer``,
  TensorRT 8.5 release notes; earlier parsers need a plugin), and that layer considers at
  most 5000 candidate boxes per image (its TopK box limit; 2000 on SM 5.3 / 6.2 devices, the
  Jetson Nano and TX2: ``small_jetson``). It suppresses at IoU > threshold and keeps scores
  above the score threshold, the ONNX semantics; ties are ordered arbitrarily, which the
  end-to-end head avoids by feeding strictly decreasing rank scores.
- ``topk``: a ``TopK`` takes K ≤ 3840 (TensorRT's ``TopK`` operator: "k <= 3840"), and K must be
  a constant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featherface_deploy.errors import missing_backend
from featherface_deploy.trt.versions import TrtVersion

try:
    import onnx
    from onnx import numpy_helper
except ImportError as error:  # pragma: no cover - depends on the environment
    raise missing_backend("onnx", "export") from error

_DEFAULT_DOMAINS = ("", "ai.onnx")
NMS_MIN_VERSION = (8, 5)
NMS_BOX_LIMIT = 5000
NMS_BOX_LIMIT_SMALL_JETSON = 2000  # SM 5.3 / 6.2: Jetson Nano, TX2
TOPK_MAX_K = 3840
_QDQ = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class Problem:
    """One reason the graph does not fit.

    Attributes:
        rule: Which rule (``op``, ``opset``, ``deformconv``, ``qdq-bias``…).
        node: The node's name (or ``<model>`` for graph-wide problems).
        message: What is wrong and what to do.
    """

    rule: str
    node: str
    message: str

    def format(self) -> str:
        """One line: ``node: message [rule]``."""
        return f"{self.node}: {self.message} [{self.rule}]"


def check_onnx_file(path: str | Path, version: TrtVersion, small_jetson: bool = False) -> list[Problem]:
    """Loads an ONNX file (without external data) and checks it; see :func:`check_graph`."""
    return check_graph(onnx.load(str(path), load_external_data=False), version, small_jetson)


def check_graph(model: "onnx.ModelProto", version: TrtVersion, small_jetson: bool = False) -> list[Problem]:
    """Checks a model against a TensorRT version's parser rules.

    Args:
        model: The ONNX model.
        version: The TensorRT version's rules.
        small_jetson: The device is a Jetson Nano or TX2 (SM 5.3 / 6.2): its NMS layer takes fewer boxes.

    Returns:
        The problems, in graph order (empty: the graph fits).
    """
    problems = _opset_problems(model, version)
    constants = _constants(model)
    producers = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    supported = version.supported_ops()
    for node in model.graph.node:
        problems += _op_problems(node, version, supported)
        if node.op_type == "DeformConv":
            problems += _deform_conv_problems(node, constants, producers, consumers)
        if node.op_type in _QDQ:
            problems += _qdq_problems(node, constants, consumers)
        if node.op_type == "NonMaxSuppression":
            problems += _nms_problems(node, version, _static_shapes(model), small_jetson)
        if node.op_type == "TopK":
            problems += _topk_problems(node, constants)
    return problems


def _nms_problems(node, version: TrtVersion, shapes: dict, small_jetson: bool) -> list[Problem]:
    if (version.major, version.minor) < NMS_MIN_VERSION:
        return [Problem("nms", node.name, f"NonMaxSuppression maps to TensorRT's NMS layer from 8.5 (this is "
                        f"{version.name}); use --trt-version 8.5 or newer (JetPack 5+), or export without --end2end")]
    limit = NMS_BOX_LIMIT_SMALL_JETSON if small_jetson else NMS_BOX_LIMIT
    boxes = shapes.get(node.input[0])
    candidates = boxes[1] if boxes is not None and len(boxes) == 3 else None
    if not isinstance(candidates, int):
        return [Problem("nms", node.name, f"NonMaxSuppression over an unknown number of boxes: TensorRT's NMS "
                        f"layer considers at most {limit}; export with a fixed --pre-nms-top-k")]
    if candidates > limit:
        where = "on a Jetson Nano / TX2 (SM 5.3 / 6.2)" if small_jetson else "per image"
        return [Problem("nms", node.name, f"NonMaxSuppression over {candidates} boxes: TensorRT's NMS layer "
                        f"considers at most {limit} {where}; export with --pre-nms-top-k {limit} or fewer")]
    return []


def _topk_problems(node, constants: dict) -> list[Problem]:
    k = constants.get(node.input[1]) if len(node.input) > 1 else None
    if k is None:
        return [Problem("topk", node.name, "TopK with a K computed at run time: TensorRT needs a constant K")]
    if int(np.asarray(k).reshape(-1)[0]) > TOPK_MAX_K:
        return [Problem("topk", node.name, f"TopK K = {int(np.asarray(k).reshape(-1)[0])}: TensorRT takes K ≤ "
                        f"{TOPK_MAX_K}; export with --pre-nms-top-k {TOPK_MAX_K} or fewer")]
    return []


def _static_shapes(model) -> dict[str, tuple]:
    """Tensor name → shape (ints where static, else ``None``) after ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for info in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    return shapes


def _opset_problems(model, version: TrtVersion) -> list[Problem]:
    opset = next((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), None)
    if opset is not None and opset > version.max_opset:
        return [Problem("opset", "<model>", f"opset {opset} is newer than TensorRT {version.name}'s ONNX parser "
                        f"documents (≤ {version.max_opset}); write the model for it with `featherface-deploy "
                        f"export --format trt-recipe --trt-version {version.name}`")]
    return []


def _op_problems(node, version: TrtVersion, supported: frozenset[str]) -> list[Problem]:
    if node.domain not in _DEFAULT_DOMAINS:
        return [Problem("op", node.name, f"{node.domain}::{node.op_type} is a custom operator: TensorRT needs a "
                        "plugin for it")]
    if node.op_type in supported:
        return []
    if node.op_type == "DeformConv":
        return [Problem("op", node.name, f"DeformConv parses only from TensorRT 10.1 (this is {version.name}); "
                        "export with --dcn portable")]
    return [Problem("op", node.name, f"{node.op_type} is not supported by TensorRT {version.name}'s ONNX parser "
                    "(onnx-tensorrt docs/operators.md)")]


def _deform_conv_problems(node, constants: dict, producers: dict, consumers: dict) -> list[Problem]:
    problems = []
    weight = constants.get(node.input[1]) if len(node.input) > 1 else None
    kernel = _attribute(node, "kernel_shape")
    spatial = len(kernel) if kernel is not None else (weight.ndim - 2 if weight is not None else 2)
    if spatial not in (1, 2):
        problems.append(Problem("deformconv", node.name, f"{spatial}-D DeformConv: TensorRT takes 1-D or 2-D only"))
    pads = _attribute(node, "pads")
    if pads is not None and list(pads[:len(pads) // 2]) != list(pads[len(pads) // 2:]):
        problems.append(Problem("deformconv", node.name, f"pads {list(pads)}: TensorRT needs equal begin and end "
                                "pads"))
    quantized_inputs = [name for name in node.input if name and getattr(producers.get(name), "op_type", "")
                        == "DequantizeLinear"]
    quantized_output = any(c.op_type == "QuantizeLinear" for out in node.output for c in consumers.get(out, ()))
    if quantized_inputs or quantized_output:
        problems.append(Problem("deformconv", node.name, "Q/DQ around DeformConv: it runs in FP32/FP16 only (no "
                                "INT8 kernel); keep the DCN sampling out of quantization"))
    return problems


def _qdq_problems(node, constants: dict, consumers: dict) -> list[Problem]:
    problems = []
    if len(node.input) > 1 and node.input[1] not in constants:
        problems.append(Problem("qdq-scale", node.name, "the scale is computed at run time; TensorRT needs a "
                                "constant scale"))
    zero_point = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if zero_point is not None:
        if zero_point.dtype != np.int8 and zero_point.dtype != np.int32:
            problems.append(Problem("qdq-zero-point", node.name, f"{zero_point.dtype} zero point: TensorRT's "
                                    "Q/DQ are signed int8 (quantize with QuantType.QInt8)"))
        elif zero_point.any():
            problems.append(Problem("qdq-zero-point", node.name, "non-zero zero point: TensorRT needs symmetric "
                                    "quantization (zero point 0)"))
    if node.op_type != "DequantizeLinear":
        return problems
    data = constants.get(node.input[0])
    if data is not None and data.dtype == np.int32:
        problems.append(Problem("qdq-bias", node.name, "DequantizeLinear of int32 data (a quantized bias): "
                                "TensorRT rejects it, \"only activation types allowed as input to this layer\" "
                                "(onnx-tensorrt#850); quantize with QuantizeBias=False"))
    scale = constants.get(node.input[1]) if len(node.input) > 1 else None
    if data is not None and scale is not None and scale.size > 1:
        axis = _attribute(node, "axis")
        axis = 1 if axis is None else axis  # the ONNX default
        feeds_conv_weight = any(c.op_type in ("Conv", "DeformConv") and len(c.input) > 1 and c.input[1] == out
                                for out in node.output for c in consumers.get(out, ()))
        if feeds_conv_weight and axis % data.ndim != 0:
            problems.append(Problem("qdq-axis", node.name, f"per-channel convolution weights quantized on axis "
                                    f"{axis}: TensorRT needs axis 0 (output channels)"))
    return problems


def _constants(model) -> dict[str, np.ndarray]:
    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            value = next((a for a in node.attribute if a.name == "value"), None)
            if value is not None:
                values[node.output[0]] = numpy_helper.to_array(value.t)
    return values


def _attribute(node, name: str):
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return None
