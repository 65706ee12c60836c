"""End-to-end ONNX around an already-built network graph: float adapter in front, float tail behind.

The INT8 rows quantize the raw network exactly as without ``--end2end`` (calibrated on the
usual BGR − mean input), then :func:`compose_end2end` wraps the quantized graph:

- **Adapter** (:func:`adapter_model`): the app's RGB 0–255 NCHW input → BGR − mean (a
  ``Split``, a ``Concat`` and a ``Sub``; float, exact for 0–255 values), the same arithmetic as
  :class:`~featherface_deploy.exporters.end2end_head.End2EndModel`'s adapter.
- **Tail** (:func:`tail_model`): :class:`~featherface_deploy.exporters.end2end_head.End2EndTail`
  exported alone (softmax output → decode, rank scores, ``NonMaxSuppression``, gather), float32.

The network's raw ``loc``/``conf``/``landmarks`` keep their names inside the composed graph
(``End2EndSpec.raw_tensors``), so verification exposes them again on the file written.
The tail's nodes are named ``tail/…`` (:data:`TAIL_PREFIX`); :func:`tail_node_names` finds the
tail of any end-to-end graph (what the TensorRT recipe pins to FP32).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

from featherface_deploy.contract import OUTPUT_ROLES, DecodeContract, End2EndSpec
from featherface_deploy.errors import ExportError
from featherface_deploy.postprocess.priors import generate_priors

TAIL_PREFIX = "tail/"
ADAPTER_PREFIX = "adapter/"
_NETWORK_INPUT = "network/input"


def _default_opset(proto: onnx.ModelProto) -> int:
    return next(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx"))


def tail_model(contract: DecodeContract, spec: End2EndSpec, opset: int) -> onnx.ModelProto:
    """:class:`End2EndTail` alone as ONNX: inputs ``loc``, ``conf``, ``landmarks`` → ``detections``, ``num_detections``.

    Raises:
        ExportError: The exporter failed.
    """
    import torch  # only to export the tail: tail_node_names and the recipe need onnx alone

    from featherface_deploy.exporters.end2end_head import End2EndTail
    from featherface_deploy.exporters.nms_onnx import nms_translation

    height, width = contract.input_size
    count = len(generate_priors(contract.priors, height, width))
    tail = End2EndTail(contract.priors, (height, width), spec).eval()
    example = (torch.zeros(1, count, 4), torch.zeros(1, count, 2), torch.zeros(1, count, 10))
    try:
        program = torch.onnx.export(tail, example, dynamo=True, opset_version=opset,
                                    input_names=list(OUTPUT_ROLES), output_names=list(spec.outputs),
                                    custom_translation_table=nms_translation(), optimize=True, verbose=False)
    except Exception as error:  # the exporter raises many unrelated types; keep the cause chained
        raise ExportError(f"exporting the end-to-end tail failed: {str(error).splitlines()[0]}") from error
    return program.model_proto


def adapter_model(contract: DecodeContract, opset: int) -> onnx.ModelProto:
    """RGB 0–255 ``(1, 3, H, W)`` input named ``contract.input_name`` → BGR − mean (output ``adapter/bgr``)."""
    height, width = contract.input_size
    mean = numpy_helper.from_array(np.asarray(contract.mean_bgr, dtype=np.float32).reshape(1, 3, 1, 1),
                                   ADAPTER_PREFIX + "mean_bgr")
    r, g, b = (ADAPTER_PREFIX + c for c in "rgb")
    nodes = [
        helper.make_node("Split", [contract.input_name], [r, g, b], name=ADAPTER_PREFIX + "split", axis=1,
                         num_outputs=3),
        helper.make_node("Concat", [b, g, r], [ADAPTER_PREFIX + "bgr255"], name=ADAPTER_PREFIX + "flip", axis=1),
        helper.make_node("Sub", [ADAPTER_PREFIX + "bgr255", mean.name], [ADAPTER_PREFIX + "bgr"],
                         name=ADAPTER_PREFIX + "mean"),
    ]
    graph = helper.make_graph(
        nodes, "rgb_adapter",
        [helper.make_tensor_value_info(contract.input_name, TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info(ADAPTER_PREFIX + "bgr", TensorProto.FLOAT, [1, 3, height, width])],
        initializer=[mean])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def compose_end2end(network: onnx.ModelProto, contract: DecodeContract, spec: End2EndSpec) -> onnx.ModelProto:
    """``network`` (raw outputs, e.g. a Q/DQ INT8 graph) with the float adapter before it and the tail after it.

    The result takes ``contract.input_name`` (RGB 0–255) and returns only ``spec.outputs``; the raw
    tensors keep their names (``spec.raw_tensors``) inside the graph. Metadata is not copied.

    Raises:
        ExportError: The network has no fixed input size, or lacks an input/output the composition needs.
    """
    if contract.input_size is None:
        raise ExportError("an end-to-end model needs a fixed input size (its priors are constants): "
                          "quantize a fixed-size export")
    names = [output.name for output in network.graph.output]
    if [name for name in OUTPUT_ROLES if name not in names] or not network.graph.input:
        raise ExportError(f"the network graph must have the input '{contract.input_name}' and the outputs "
                          f"{list(OUTPUT_ROLES)} (found outputs {names})")
    opset = _default_opset(network)
    network = onnx.ModelProto.FromString(network.SerializeToString())
    del network.metadata_props[:]
    _rename(network.graph, contract.input_name, _NETWORK_INPUT)
    adapter = adapter_model(contract, opset)
    tail = compose.add_prefix(tail_model(contract, spec, opset), TAIL_PREFIX)
    for part in (adapter, tail):
        part.ir_version = network.ir_version
    front = compose.merge_models(adapter, network, io_map=[(ADAPTER_PREFIX + "bgr", _NETWORK_INPUT)])
    whole = compose.merge_models(front, tail, io_map=[(name, TAIL_PREFIX + name) for name in OUTPUT_ROLES],
                                 outputs=[TAIL_PREFIX + name for name in spec.outputs])
    for name in spec.outputs:
        _rename(whole.graph, TAIL_PREFIX + name, name)
    return whole


def tail_node_names(proto: onnx.ModelProto, raw_tensors=OUTPUT_ROLES) -> list[str]:
    """The names of the nodes downstream of the raw tensors (decode, rank scores, NMS, gather), in graph order.

    Works on any end-to-end ONNX graph (the one-piece export and the composed INT8 file alike):
    what the network's raw ``loc``/``conf``/``landmarks`` feed, directly or not, is the tail.
    """
    downstream, names = set(raw_tensors), []
    for node in proto.graph.node:  # ONNX graphs are topologically sorted
        if downstream.intersection(node.input):
            downstream.update(node.output)
            names.append(node.name)
    return names


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Renames the tensor ``old`` to ``new`` wherever the graph names it (node edges, inputs, outputs)."""
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.name == old:
            value.name = new
