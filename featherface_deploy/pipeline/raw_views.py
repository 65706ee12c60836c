"""Raw views of end-to-end files: the same graph with its raw ``loc``/``conf``/``landmarks`` exposed.

Verification compares an end-to-end file with PyTorch (the existing parity gate, on raw
outputs) and its in-graph detections with our numpy post-processing of the same raw
outputs (:mod:`featherface_deploy.verify.in_graph`). Both need the raw tensors of the very
graph that was written: each format family registers here how to expose them
(:data:`RAW_VIEWS`); the result is a :class:`~featherface_deploy.runtimes.base.Runtime` behind the
canonical input (:class:`~featherface_deploy.verify.in_graph.RgbInputView`).

- **ONNX**: the file's ``ModelProto`` with the tensors named in ``End2EndSpec.raw_tensors``
  added back as graph outputs (the exporter wrote them as outputs and dropped them), opened
  with ONNX Runtime from memory.
- **TFLite**: the flatbuffer with the tensors named in ``raw_tensors`` (the tensor names of the
  outputs the exporter dropped from the signature) added back as signature outputs, opened with LiteRT.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from featherface_deploy.contract import DecodeContract
from featherface_deploy.errors import ExportError
from featherface_deploy.runtimes.base import Runtime
from featherface_deploy.verify.in_graph import RgbInputView, raw_contract


def onnx_raw_view(path: Path, contract: DecodeContract) -> Runtime:
    """The ONNX end-to-end file at ``path`` with its raw tensors as extra outputs, behind the canonical input.

    Raises:
        ExportError: A raw tensor named in the contract is not in the graph.
    """
    import onnx
    import onnxruntime

    from featherface_deploy.runtimes.ort_runtime import OrtRuntime

    proto = onnx.load(str(path))
    produced = {name for node in proto.graph.node for name in node.output}
    missing = [name for name in contract.end2end.raw_tensors if name not in produced]
    if missing:
        raise ExportError(f"{path.name}: the raw tensors {missing} named in its contract are not in the graph")
    for name in contract.end2end.raw_tensors:
        proto.graph.output.add().name = name
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return RgbInputView(OrtRuntime(session, contract=raw_contract(contract)), contract)


def tflite_raw_view(path: Path, contract: DecodeContract) -> Runtime:
    """The TFLite end-to-end file at ``path`` with its raw tensors as extra signature outputs.

    Raises:
        ExportError: A raw tensor named in the contract is not in the graph.
    """
    from featherface_deploy.exporters.tflite_graph import expose_tensors
    from featherface_deploy.runtimes.tflite_runtime import TfliteRuntime

    try:
        data = expose_tensors(path.read_bytes(), contract.end2end.raw_tensors)
    except KeyError as error:
        raise ExportError(f"{path.name}: the raw tensor {error} named in its contract is not in the graph") from error
    return RgbInputView(TfliteRuntime(data, contract=raw_contract(contract)), contract)


RAW_VIEWS: dict[str, Callable[[Path, DecodeContract], Runtime]] = {
    "onnx": onnx_raw_view,
    "trt-recipe": onnx_raw_view,
    "tflite": tflite_raw_view,
}


def raw_view(family: str, path: Path, contract: DecodeContract) -> Runtime:
    """The raw view of an end-to-end file of format ``family``.

    Raises:
        ExportError: The family has no raw view registered (its end-to-end files cannot be verified yet).
    """
    if family not in RAW_VIEWS:
        raise ExportError(f"{family}: no raw view of its end-to-end files is registered, so they cannot be "
                          f"verified (registered: {', '.join(RAW_VIEWS)})")
    return RAW_VIEWS[family](path, contract)
