"""Cross-layer range equalization of an FP32 ONNX graph, before INT8 quantization.

Why: int8 activations have one scale per tensor, but in MobileNet-style
depthwise stacks (and in the BiFPN's separable convs) the channels of one
tensor have ranges that differ by 100×. The narrow channels then get a few
int8 levels; their error, multiplied by large BN-folded weights, is what
broke FeatherFace in INT8 (measured: the backbone's 2nd conv alone drops
the SQNR from 29 dB to 10 dB).

How (Nagel et al., "Data-Free Quantization", 2019, with measured activation
ranges): for ``P → [LeakyRelu|Relu] → C₁…Cₖ`` where P and every Cᵢ are
Convs with constant weights and the activation is positively homogeneous,
dividing P's output channel c by sᶜ > 0 and multiplying the input channel c
of every Cᵢ by sᶜ leaves the network's function unchanged (exactly, up to
float rounding). sᶜ is chosen to balance the activation's range of channel c
against the consumers' weight range of that input channel:
``sᶜ = sqrt(aᶜ / wᶜ)`` (normalised); for depthwise consumers, whose weights are
quantized per channel anyway, the activation ranges are simply made equal.
"""

from __future__ import annotations

import numpy as np

from featherface_deploy.errors import missing_backend

try:
    import onnx
    import onnxruntime
    from onnx import numpy_helper
except ImportError as error:  # pragma: no cover - depends on the environment
    raise missing_backend("onnxruntime", "onnx") from error

HOMOGENEOUS = ("LeakyRelu", "Relu")
MIN_SCALE = 1e-3


def equalize(model: "onnx.ModelProto", samples: np.ndarray, input_name: str = "input") -> tuple["onnx.ModelProto", int]:
    """Returns an equalized copy of ``model`` and the number of layer pairs rescaled.

    Args:
        model: The FP32 model (after :func:`~featherface_deploy.exporters.onnx2int8.prepare_for_quantization`,
            so BatchNorms are folded into the convolutions).
        samples: Calibration inputs, (N, 3, H, W) float32, to measure activation ranges.
        input_name: The model input.
    """
    model = _copy(model)
    pairs = find_pairs(model)
    if not pairs:
        return model, 0
    ranges = _channel_ranges(model, [tensor for _, tensor, _ in pairs], samples, input_name)
    weights = {init.name: init for init in model.graph.initializer}
    for producer, tensor, consumers in pairs:
        _rescale(producer, consumers, ranges[tensor], weights)
    return model, len(pairs)


def find_pairs(model: "onnx.ModelProto") -> list[tuple[object, str, list]]:
    """``(producer Conv, tensor the consumers read, consumer Convs)`` for every rescalable junction."""
    graph = model.graph
    weights = {init.name for init in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    pairs = []
    for node in graph.node:
        if not _is_const_conv(node, weights) or node.output[0] in outputs:
            continue
        tensor, users = node.output[0], consumers.get(node.output[0], [])
        if len(users) == 1 and users[0].op_type in HOMOGENEOUS:
            tensor = users[0].output[0]
            users = consumers.get(tensor, [])
        if tensor in outputs or not users:
            continue
        if all(_is_const_conv(u, weights) and u.input[0] == tensor and list(u.input).count(tensor) == 1
               for u in users):
            pairs.append((node, tensor, users))
    return pairs


def _is_const_conv(node, weights: set[str]) -> bool:
    return (node.op_type == "Conv" and len(node.input) >= 2 and node.input[1] in weights
            and (len(node.input) < 3 or node.input[2] in weights))


def _group(node) -> int:
    for attribute in node.attribute:
        if attribute.name == "group":
            return int(attribute.i)
    return 1


def _rescale(producer, consumers: list, act_range: np.ndarray, weights: dict) -> None:
    w_p = numpy_helper.to_array(weights[producer.input[1]]).astype(np.float64)
    channels = w_p.shape[0]
    if act_range.shape[0] != channels:
        return
    column = np.zeros(channels)
    depthwise_only = True
    for consumer in consumers:
        w_c = numpy_helper.to_array(weights[consumer.input[1]])
        if _group(consumer) == 1 and w_c.shape[1] == channels:
            column = np.maximum(column, np.abs(w_c).max(axis=(0, 2, 3)))
            depthwise_only = False
        elif not (_group(consumer) == channels and w_c.shape[0] == channels and w_c.shape[1] == 1):
            return  # grouped conv of another kind: leave this junction alone
    act = np.maximum(act_range.astype(np.float64), 1e-12)
    if depthwise_only:
        scale = act / act.max()
    else:
        scale = np.sqrt(act / np.maximum(column, 1e-12))
        scale = scale / scale.max()
    scale = np.clip(scale, MIN_SCALE, None)
    _replace(weights[producer.input[1]], w_p / scale.reshape(-1, *([1] * (w_p.ndim - 1))))
    if len(producer.input) > 2:
        bias = numpy_helper.to_array(weights[producer.input[2]]).astype(np.float64)
        _replace(weights[producer.input[2]], bias / scale)
    for consumer in consumers:
        w_c = numpy_helper.to_array(weights[consumer.input[1]]).astype(np.float64)
        if _group(consumer) == 1:
            _replace(weights[consumer.input[1]], w_c * scale.reshape(1, -1, 1, 1))
        else:
            _replace(weights[consumer.input[1]], w_c * scale.reshape(-1, 1, 1, 1))


def _replace(initializer, values: np.ndarray) -> None:
    initializer.CopyFrom(numpy_helper.from_array(values.astype(np.float32), initializer.name))


def _channel_ranges(model, tensors: list[str], samples: np.ndarray, input_name: str) -> dict[str, np.ndarray]:
    probe = _copy(model)
    known = {o.name for o in probe.graph.output}
    for name in tensors:
        if name not in known:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    session = onnxruntime.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    ranges: dict[str, np.ndarray] = {}
    for i in range(samples.shape[0]):
        values = session.run(tensors, {input_name: samples[i:i + 1]})
        for name, value in zip(tensors, values):
            peak = np.abs(value).max(axis=(0, 2, 3))
            ranges[name] = np.maximum(ranges[name], peak) if name in ranges else peak
    return ranges


def _copy(model: "onnx.ModelProto") -> "onnx.ModelProto":
    clone = onnx.ModelProto()
    clone.CopyFrom(model)
    return clone
