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
- **Core ML**: the program run by the reference interpreter, which returns the values named in
  ``raw_tensors`` (kept inside the program when the exporter dropped them as outputs) with the
  detections. Core ML itself cannot return values that are not outputs, so this view runs the
  interpreter on macOS too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from featherface_deploy.contract import OUTPUT_ROLES, DecodeContract
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


class _MilRawView(Runtime):
    """The raw tensors of an end-to-end ML Program, read by the reference interpreter (input: the graph's own)."""

    def __init__(self, path: Path, contract: DecodeContract) -> None:
        from featherface_deploy.runtimes.coreml_runtime import INTERPRETER_NAME, INTERPRETER_NOTE
        from featherface_deploy.runtimes.mil import MilInterpreter

        super().__init__(raw_contract(contract))
        self.name, self.note = INTERPRETER_NAME, INTERPRETER_NOTE
        self._interpreter = MilInterpreter(path)
        self._names = tuple(contract.end2end.raw_tensors)

    @property
    def max_batch(self) -> int:
        """End-to-end programs take one image."""
        return 1

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        values = self._interpreter.run({self.contract.input_name: batch}, keep=self._names)
        return {role: np.asarray(values[name], dtype=np.float32) for role, name in zip(OUTPUT_ROLES, self._names)}


def coreml_raw_view(path: Path, contract: DecodeContract) -> Runtime:
    """The Core ML end-to-end package at ``path``: its raw tensors through the reference interpreter."""
    return RgbInputView(_MilRawView(path, contract), contract)


RAW_VIEWS: dict[str, Callable[[Path, DecodeContract], Runtime]] = {
    "onnx": onnx_raw_view,
    "trt-recipe": onnx_raw_view,
    "tflite": tflite_raw_view,
    "coreml": coreml_raw_view,
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
