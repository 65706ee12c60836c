"""Which multiply-accumulates of an ONNX model ONNX Runtime runs in integer kernels (numpy + onnx + onnxruntime).

A QDQ file only *asks* for integer arithmetic: ONNX Runtime's graph optimizer fuses
``DequantizeLinear → Conv → QuantizeLinear`` into ``QLinearConv`` (and the MatMul patterns into
``QLinearMatMul`` / ``MatMulIntegerToFloat``) only where the pattern is complete; elsewhere it
dequantizes and runs the float kernel. :func:`integer_mac_share` reads the optimized graph
ONNX Runtime saved (``SessionOptions.optimized_model_filepath``) and weighs each weight layer of
the file by its MACs: a layer ran integer when its (quantized) weight feeds an integer kernel
of the optimized graph.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Integer kernels of ONNX Runtime's CPU provider → index of their weight input.
INTEGER_KERNELS = {"QLinearConv": 3, "QLinearMatMul": 3, "ConvInteger": 1, "MatMulInteger": 1,
                   "MatMulIntegerToFloat": 1, "DynamicQuantizeMatMul": 1}
# Weight layers of an exported file → index of their weight input.
WEIGHT_LAYERS = {"Conv": 1, "DeformConv": 1, "MatMul": 1, "Gemm": 1, "ConvInteger": 1, "MatMulInteger": 1,
                 "QLinearConv": 3, "QLinearMatMul": 3}


@dataclass(frozen=True)
class IntegerShare:
    """MACs of a model's weight layers, and how many of them ran in integer kernels.

    Attributes:
        total_macs: MACs of every weight layer (Conv, DeformConv, MatMul/Gemm with a constant weight).
        integer_macs: Those whose weight feeds an integer kernel of the optimized graph.
        integer_layers: How many layers that is, of ``layers``.
        layers: Weight layers counted.
        kernels: Op type → count of the integer kernels in the optimized graph.
    """

    total_macs: int
    integer_macs: int
    integer_layers: int
    layers: int
    kernels: dict

    @property
    def fraction(self) -> float:
        """Share of the MACs that ran in integer kernels (0 for a model without weight layers)."""
        return self.integer_macs / self.total_macs if self.total_macs else 0.0

    def record(self) -> dict:
        """JSON-ready summary (for reports and the contract)."""
        return {"integer_mac_fraction": round(self.fraction, 4), "integer_layers": self.integer_layers,
                "weight_layers": self.layers, "integer_kernels": dict(sorted(self.kernels.items()))}


def integer_mac_share(model, optimized, input_shape: tuple[int, ...]) -> IntegerShare:
    """How much of ``model``'s MACs ONNX Runtime ran in integer kernels, from its ``optimized`` graph.

    Args:
        model: The file's ``onnx.ModelProto``.
        optimized: The optimized graph ONNX Runtime saved for it (``onnx.ModelProto``).
        input_shape: The (batch, channels, height, width) fed (MACs are counted per image).
    """
    macs = weight_layer_macs(model, input_shape)
    integer_weights = {node.input[INTEGER_KERNELS[node.op_type]] for node in optimized.graph.node
                       if node.op_type in INTEGER_KERNELS and len(node.input) > INTEGER_KERNELS[node.op_type]}
    kernels: dict[str, int] = {}
    for node in optimized.graph.node:
        if node.op_type in INTEGER_KERNELS:
            kernels[node.op_type] = kernels.get(node.op_type, 0) + 1
    integer = {name: count for name, (weight, count) in macs.items() if weight in integer_weights}
    return IntegerShare(sum(count for _, count in macs.values()), sum(integer.values()), len(integer), len(macs),
                        kernels)


def ort_integer_share(path: str | Path, input_shape: tuple[int, ...]) -> IntegerShare:
    """:func:`integer_mac_share` of an ONNX file, from the graph ONNX Runtime's CPU provider optimizes it to.

    The session uses ONNX Runtime's default optimization level, the one users get.
    """
    import onnx
    import onnxruntime

    with tempfile.TemporaryDirectory(prefix="featherface-int8-kernels-") as workdir:
        options = onnxruntime.SessionOptions()
        options.optimized_model_filepath = str(Path(workdir) / "optimized.onnx")
        options.log_severity_level = 3  # an NCHWc graph warns that it is hardware-specific: it stays here
        onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        optimized = onnx.load(options.optimized_model_filepath)
    return integer_mac_share(onnx.load(str(path)), optimized, input_shape)


def weight_layers(model) -> dict[str, str]:
    """Node name → name of the constant weight tensor it multiplies by (through a ``DequantizeLinear``)."""
    initializers = {init.name for init in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    layers = {}
    for node in model.graph.node:
        index = WEIGHT_LAYERS.get(node.op_type)
        if index is None or len(node.input) <= index:
            continue
        weight = node.input[index]
        parent = producers.get(weight)
        if parent is not None and parent.op_type == "DequantizeLinear":
            weight = parent.input[0]
        if weight in initializers:
            layers[node.name] = weight
    return layers


def weight_layer_macs(model, input_shape: tuple[int, ...]) -> dict[str, tuple[str, int]]:
    """Node name → (weight tensor, MACs for one image) of every weight layer, output shapes from one run.

    MACs: weight elements × output positions (spatial size for convolutions, rows for matrix products).
    """
    import onnx
    import onnxruntime

    layers = weight_layers(model)
    nodes = {node.name: node for node in model.graph.node if node.name in layers}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {output.name for output in probe.graph.output}
    names = [nodes[name].output[0] for name in layers]
    for name in names:
        if name not in known:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = np.zeros((1, *input_shape[1:]), np.float32)
    shapes = dict(zip(names, (out.shape for out in session.run(names, {session.get_inputs()[0].name: feed}))))
    sizes = {init.name: int(np.prod(init.dims)) for init in model.graph.initializer}
    result = {}
    for name, weight in layers.items():
        node = nodes[name]
        shape = shapes[node.output[0]]
        convolution = node.op_type in ("Conv", "DeformConv", "ConvInteger", "QLinearConv")
        positions = int(np.prod(shape[2:])) if convolution else int(np.prod(shape[:-1]))
        result[name] = (weight, sizes[weight] * positions)
    return result
