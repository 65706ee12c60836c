"""The physical floor of an ONNX graph: multiply-accumulates per node and the bytes its DCN sampling reads.

Shapes come from ONNX shape inference (``onnx.shape_inference.infer_shapes`` with data propagation) after
the input is fixed to batch 1 at the profiled size, so the counts hold for any exported model; where a
dynamic graph computes a size at run time (a ``Resize`` or ``Reshape`` target), inference cannot follow and
the floor ops' remaining shapes are read from one ONNX Runtime run of the graph:

- **MACs**: ``Conv`` (and ``FusedConv``/NCHWc never appear here: this is the exported graph) =
  output elements × input channels per group × kernel taps; ``MatMul`` = output elements × the inner
  dimension (the DCN's per-tap projection and its corner-weight product are MatMuls); ``Gemm`` = M × N × K;
  ``DeformConv`` = output elements × input channels per group × kernel taps (the projection; its offset and
  mask convolutions are ordinary ``Conv`` nodes).
- **DCN sampling bytes**: what the bilinear sampling must read per frame. The portable lowering samples a
  projected table (taps × C_out per pixel): every ``Gather``/``GatherND``/``GatherElements`` with computed,
  non-scalar indices reads its output's elements × element size (taps × channels × 4 corners × bytes per
  output pixel). ``DeformConv`` samples its input: output pixels × taps × C_in × 4 corners × element size.
"""

from __future__ import annotations

import math

import numpy as np

from featherface_deploy.errors import FeatherFaceError

GATHERS = ("Gather", "GatherND", "GatherElements")
FLOOR_OPS = ("Conv", "DeformConv", "MatMul", "Gemm", *GATHERS)
CORNERS = 4  # bilinear sampling reads 4 neighbours per tap


def with_static_input(model, size: tuple[int, int]):
    """A copy of ``model`` whose first input is (1, C, height, width) (any-size dims fixed), shapes inferred.

    Raises:
        FeatherFaceError: The first input is not a 4-D tensor.
    """
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    initializers = {tensor.name for tensor in fixed.graph.initializer}
    graph_input = next(value for value in fixed.graph.input if value.name not in initializers)
    dims = graph_input.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise FeatherFaceError(f"input '{graph_input.name}' has {len(dims)} dimensions; profile takes "
                               "(batch, channels, height, width) images")
    for dim, value in zip(dims, (1, None, *size)):
        if value is not None and not dim.HasField("dim_value"):
            dim.dim_value = value
    del fixed.graph.value_info[:]  # inference keeps existing entries: stale symbolic shapes would stay unknown
    return onnx.shape_inference.infer_shapes(fixed, data_prop=True)


def node_floor(model, size: tuple[int, int]) -> dict[str, dict]:
    """MACs and DCN sampling bytes of every node that has some.

    Args:
        model: An exported ``onnx.ModelProto``.
        size: (height, width) for any-size inputs (a fixed-size model keeps its own).

    Returns:
        Node name → ``{"op", "macs", "dcn_bytes"}`` for the nodes with MACs or DCN reads (others are absent).
    """
    inferred = with_static_input(model, size)
    shapes, sizes = _shapes(inferred)
    _measure_unknown_shapes(inferred, shapes, sizes)
    constants = {tensor.name for tensor in inferred.graph.initializer}
    constants |= {out for node in inferred.graph.node if node.op_type == "Constant" for out in node.output}
    floor = {}
    for node in inferred.graph.node:
        macs = _macs(node, shapes)
        reads = _dcn_bytes(node, shapes, sizes, constants)
        if macs or reads:
            floor[node.name] = {"op": node.op_type, "macs": macs, "dcn_bytes": reads}
    return floor


def _shapes(model) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    """Tensor name → static shape, and → element size in bytes, for every tensor with a known shape."""
    import onnx

    shapes, sizes = {}, {}
    values = list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)
    for value in values:
        tensor_type = value.type.tensor_type
        dims = [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor_type.shape.dim]
        if tensor_type.HasField("shape") and None not in dims:
            shapes[value.name] = tuple(dims)
            sizes[value.name] = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).itemsize
    for tensor in model.graph.initializer:
        shapes[tensor.name] = tuple(tensor.dims)
        sizes[tensor.name] = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    return shapes, sizes


def _measure_unknown_shapes(model, shapes: dict, sizes: dict) -> None:
    """Fills in the shapes inference left unknown (sizes computed at run time in dynamic graphs) by running
    the graph once in ONNX Runtime with those tensors as extra outputs (only the floor ops' tensors)."""
    import onnx

    wanted = list(dict.fromkeys(
        name for node in model.graph.node if node.op_type in FLOOR_OPS
        for name in (*node.input[:2], node.output[0]) if name and name not in shapes))
    if not wanted:
        return
    import onnxruntime

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in wanted)
    session = onnxruntime.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    feed = {first.name: np.zeros(shapes[first.name], np.float32)}
    for name, value in zip(wanted, session.run(wanted, feed)):
        shapes[name], sizes[name] = tuple(value.shape), value.dtype.itemsize


def _macs(node, shapes: dict) -> int:
    out = shapes.get(node.output[0]) if node.output else None
    if out is None:
        return 0
    if node.op_type in ("Conv", "DeformConv"):
        weight = shapes.get(node.input[1])
        return math.prod(out) * math.prod(weight[1:]) if weight else 0
    if node.op_type == "MatMul":
        left = shapes.get(node.input[0])
        return math.prod(out) * left[-1] if left else 0
    if node.op_type == "Gemm":
        left = shapes.get(node.input[0])
        trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
        return math.prod(out) * (left[0] if trans_a else left[-1]) if left else 0
    return 0


def _dcn_bytes(node, shapes: dict, sizes: dict, constants: set[str]) -> int:
    if node.op_type in GATHERS:
        indices = shapes.get(node.input[1])
        out = shapes.get(node.output[0])
        if indices is None or out is None or len(indices) == 0 or node.input[1] in constants:
            return 0
        return math.prod(out) * sizes[node.output[0]]
    if node.op_type == "DeformConv":
        data, weight, out = (shapes.get(node.input[0]), shapes.get(node.input[1]), shapes.get(node.output[0]))
        if data is None or weight is None or out is None:
            return 0
        pixels = out[0] * math.prod(out[2:])
        return pixels * math.prod(weight[2:]) * data[1] * CORNERS * sizes[node.input[0]]
    return 0
