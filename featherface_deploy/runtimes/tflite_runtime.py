"""LiteRT (TFLite) backend: runs an exported ``.tflite`` file (numpy + ai-edge-litert only, never torch).

Everything that differs between TFLite files is read from the model itself,
never guessed from tensor shapes:

- the decode contract from the flatbuffer's metadata (or the sidecar JSON);
- the input layout (``NHWC`` for files made for Android, ``NCHW`` possible)
  from the contract, checked against the interpreter's input shape;
- which output tensor is ``loc``, ``conf`` or ``landmarks`` from the model's
  signature (``serving_default``), whose output names the contract lists;
- int8/uint8 quantization of the input and outputs from each tensor's own
  scale and zero point (full-integer INT8 files), float tensors untouched;
- a file made for MediaPipe's ObjectDetector (``export --format mediapipe``:
  RGB 0–255 in, ``location`` + ``score`` out, marked in its contract) is fed
  and read through :mod:`~featherface_deploy.postprocess.mediapipe_layout`,
  so it opens raw like any other TFLite file.

XNNPACK is LiteRT's default CPU delegate and stays on unless ``xnnpack=False``.
``ai-edge-litert`` is preferred; the older ``tflite-runtime`` wheel is used only
when it is the one installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from featherface_deploy.contract import OUTPUT_ROLES, DecodeContract, reconcile
from featherface_deploy.errors import BackendError, ContractError, FeatherFaceError, first_line, missing_backend
from featherface_deploy.runtimes.base import Runtime, check_output_shapes, usable_threads
from featherface_deploy.runtimes.in_graph import InGraphRuntime
from featherface_deploy.metadata.tflite import read_contract
from featherface_deploy.postprocess.mediapipe_layout import canonical_outputs, is_task_file, task_input

try:
    from ai_edge_litert import interpreter as _litert

    BACKEND = "ai-edge-litert"
except ImportError:  # pragma: no cover - depends on the environment
    try:
        from tflite_runtime import interpreter as _litert

        BACKEND = "tflite-runtime"
    except ImportError as error:
        raise missing_backend("ai_edge_litert", "tflite") from error

Interpreter = _litert.Interpreter
SIGNATURE = "serving_default"
_INT_RANGES = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255)}


class TfliteRuntime(Runtime):
    """Runs a TFLite model with the LiteRT interpreter.

    Args:
        path_or_interpreter: A ``.tflite`` path, the model's bytes, or an
            ``Interpreter`` (injected; then ``contract`` is required, since an
            interpreter does not expose its file's metadata).
        threads: CPU threads (``None`` = LiteRT's default).
        contract: Overrides the embedded contract (required for an injected interpreter).
        xnnpack: Use LiteRT's default XNNPACK delegate (ignored for an injected interpreter).
        signature: The signature whose input/output names the contract refers to.

    Raises:
        ContractError: No contract, or a model whose inputs/outputs (names, shapes, prior count) disagree with it.
        FeatherFaceError: The file is missing.
        BackendError: LiteRT cannot load it (its error is chained).
    """

    name = "litert"

    def __init__(self, path_or_interpreter: str | Path | bytes | "Interpreter", threads: int | None = None,
                 contract: DecodeContract | None = None, xnnpack: bool = True,
                 signature: str = SIGNATURE) -> None:
        threads = usable_threads(threads)
        if isinstance(path_or_interpreter, Interpreter):
            self.interpreter, source = path_or_interpreter, "injected interpreter"
            if contract is None:
                raise ContractError("an injected LiteRT interpreter needs contract=… (its metadata is not readable)")
            self.interpreter.allocate_tensors()
        else:
            data, path, source = _read_model(path_or_interpreter)
            contract = contract or _file_contract(data, path, source)
            self.interpreter = _create_interpreter(data, path, threads, xnnpack, source)
        if contract.in_graph:
            raise ContractError(f"{source} is an end-to-end model (post-processing in the graph): open it with "
                                "TfliteRuntime.open or FaceDetector.load, which return its detecting runtime")
        super().__init__(contract)
        self._bind(signature, source)

    @classmethod
    def open(cls, path: str | Path | bytes, threads: int | None = None, contract: DecodeContract | None = None,
             xnnpack: bool = True, signature: str = SIGNATURE, raw: bool = False):
        """Opens any TFLite file: raw outputs → :class:`TfliteRuntime`; end-to-end → :class:`TfliteEnd2EndRuntime`;
        a file made for MediaPipe's ObjectDetector → the task itself
        (:class:`~featherface_deploy.runtimes.mediapipe_runtime.MediapipeRuntime`), or with ``raw=True`` this
        runtime (its raw outputs, our decoding and NMS)."""
        data, file_path, source = _read_model(path)
        contract = contract or _file_contract(data, file_path, source)
        if is_task_file(contract) and not raw:
            if file_path is None:
                raise ContractError(f"{source}: MediaPipe's task opens files only; pass the path, or raw=True")
            from featherface_deploy.runtimes.mediapipe_runtime import MediapipeRuntime

            return MediapipeRuntime(file_path, threads=threads)
        runtime = TfliteEnd2EndRuntime if contract.in_graph else cls
        # The path, not its bytes, where there is one: messages then name the file, not "in-memory TFLite model".
        return runtime(data if file_path is None else file_path, threads=threads, contract=contract,
                       xnnpack=xnnpack, signature=signature)

    @property
    def max_batch(self) -> int:
        """Exported TFLite models are static with batch 1; the :class:`FaceDetector` loops over images."""
        return 1

    @property
    def input_details(self) -> dict:
        """The interpreter's details of the input tensor (dtype, shape, quantization)."""
        return self._input

    @property
    def output_details(self) -> dict[str, dict]:
        """The interpreter's details of each output tensor, by role (``loc``, ``conf``, ``landmarks``)."""
        return dict(self._outputs)

    def _bind(self, signature: str, source: str) -> None:
        """Maps the contract's input/output names to tensors through the model's signature."""
        signatures = self.interpreter.get_signature_list()
        if signature not in signatures:
            raise ContractError(f"{source}: no signature '{signature}' (has {sorted(signatures)})")
        runner = self.interpreter.get_signature_runner(signature)
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        names = self.contract.output_names
        if list(inputs) != [self.contract.input_name] or not set(names) <= set(outputs):
            raise ContractError(f"{source}: signature inputs {list(inputs)} / outputs {sorted(outputs)} do not match "
                                f"the contract ({self.contract.input_name} → {list(names)})")
        self._input = inputs[self.contract.input_name]
        self._task_layout = is_task_file(self.contract)
        roles = ("location", "score") if self._task_layout else OUTPUT_ROLES
        self._outputs = [(role, outputs[name]) for role, name in zip(roles, names)]
        # The primary subgraph's tensors are reachable through set_tensor/invoke (no per-call re-allocation).
        primary = {detail["index"] for detail in self.interpreter.get_input_details()}
        self._runner = None if self._input["index"] in primary else runner
        self._check_input_shape(source)
        layout_shape = tuple(int(v) for v in self._input["shape"])
        nchw = (layout_shape[0], 3, *layout_shape[1:3]) if self.contract.input_layout == "NHWC" else layout_shape
        shapes = {role: tuple(int(v) for v in detail["shape"]) for role, detail in self._outputs}
        if self._task_layout:
            empty = {role: np.zeros((shape[0], shape[1], shape[2]), np.float32) for role, shape in shapes.items()}
            shapes = {role: value.shape for role, value in canonical_outputs(**empty).items()}
        check_output_shapes(self.contract, shapes, nchw, source)

    def _check_input_shape(self, source: str) -> None:
        shape = tuple(int(v) for v in self._input["shape"])
        layout = self.contract.input_layout
        channels = shape[3] if layout == "NHWC" else shape[1]
        spatial = shape[1:3] if layout == "NHWC" else shape[2:4]
        if len(shape) != 4 or shape[0] != 1 or channels != 3:
            raise ContractError(f"{source}: input shape {shape} is not a batch-1, 3-channel {layout} image tensor")
        if self.contract.input_size is not None and spatial != tuple(self.contract.input_size):
            raise ContractError(f"{source}: input shape {shape} disagrees with the contract's input size "
                                f"{tuple(self.contract.input_size)} in {layout}")

    def _infer(self, batch: np.ndarray) -> Mapping[str, np.ndarray]:
        if self._task_layout:
            array = task_input(batch, self.contract.mean_bgr)
        else:
            array = batch.transpose(0, 2, 3, 1) if self.contract.input_layout == "NHWC" else batch
        array = _quantize(np.ascontiguousarray(array), self._input)
        if self._runner is not None:
            raw = self._runner(**{self.contract.input_name: array})
            values = [raw[name] for name in self.contract.output_names]
        else:
            self.interpreter.set_tensor(self._input["index"], array)
            self.interpreter.invoke()
            values = [self.interpreter.get_tensor(detail["index"]) for _, detail in self._outputs]
        outputs = {role: _dequantize(value, detail) for (role, detail), value in zip(self._outputs, values)}
        return canonical_outputs(**outputs) if self._task_layout else outputs


class TfliteEnd2EndRuntime(InGraphRuntime):
    """Runs an end-to-end TFLite file (decoding and NMS in the graph) and returns detections in image pixels.

    Args:
        path: A ``.tflite`` path or the model's bytes.
        threads, xnnpack, signature: As for :class:`TfliteRuntime`.
        contract: Overrides the embedded contract.

    Raises:
        ContractError: No contract, a contract that is not end-to-end, or a signature that does not match it
            (input name and shape in its layout, ``detections`` (1, max_det, 15), ``num_detections`` (1,)).
    """

    name = "litert"

    def __init__(self, path: str | Path | bytes, threads: int | None = None, contract: DecodeContract | None = None,
                 xnnpack: bool = True, signature: str = SIGNATURE) -> None:
        data, file_path, source = _read_model(path)
        contract = contract or _file_contract(data, file_path, source)
        self.check_contract(contract, source)
        super().__init__(contract)
        self.interpreter = _create_interpreter(data, file_path, usable_threads(threads), xnnpack, source)
        signatures = self.interpreter.get_signature_list()
        if signature not in signatures:
            raise ContractError(f"{source}: no signature '{signature}' (has {sorted(signatures)})")
        self._runner = self.interpreter.get_signature_runner(signature)
        self._check_io(source)

    def _check_io(self, source: str) -> None:
        spec, (height, width) = self.contract.end2end, self.contract.input_size
        inputs = {name: tuple(int(v) for v in d["shape"]) for name, d in self._runner.get_input_details().items()}
        outputs = {name: tuple(int(v) for v in d["shape"]) for name, d in self._runner.get_output_details().items()}
        expected_in = {self.contract.input_name: (1, height, width, 3) if self.contract.input_layout == "NHWC"
                       else (1, 3, height, width)}
        expected_out = {spec.outputs[0]: (1, spec.max_det, 15), spec.outputs[1]: (1,)}
        if inputs != expected_in or outputs != expected_out:
            raise ContractError(f"{source}: signature inputs {inputs} / outputs {outputs} do not match its "
                                f"end-to-end contract ({expected_in} → {expected_out})")
        self._input = self._runner.get_input_details()[self.contract.input_name]
        self._detections = self._runner.get_output_details()[spec.outputs[0]]

    def _run(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self._runner(**{self.contract.input_name: _quantize(tensor, self._input)})
        rows, count = (out[name] for name in self.contract.end2end.outputs)
        return _dequantize(rows, self._detections), count


def _quant_params(detail: dict) -> tuple[float, int]:
    params = detail.get("quantization_parameters") or {}
    scales, zero_points = params.get("scales", ()), params.get("zero_points", ())
    if len(scales) != 1:
        raise ContractError(f"tensor '{detail['name']}' is {detail['dtype'].__name__} without a single "
                            f"per-tensor scale ({len(scales)} scales); cannot (de)quantize it")
    return float(scales[0]), int(zero_points[0])


def _quantize(array: np.ndarray, detail: dict) -> np.ndarray:
    """Float → the input tensor's dtype with its own scale/zero point (no-op for float inputs)."""
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return array
    if dtype not in _INT_RANGES:
        raise ContractError(f"unsupported input dtype {dtype} of tensor '{detail['name']}'")
    scale, zero_point = _quant_params(detail)
    low, high = _INT_RANGES[dtype]
    return np.clip(np.round(array / scale) + zero_point, low, high).astype(dtype)


def _dequantize(value: np.ndarray, detail: dict) -> np.ndarray:
    """The output tensor's dtype → float32 with its own scale/zero point (copy for float outputs)."""
    if np.dtype(detail["dtype"]) == np.float32:
        return np.array(value, dtype=np.float32)
    scale, zero_point = _quant_params(detail)
    return (value.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def _read_model(model: str | Path | bytes) -> tuple[bytes, Path | None, str]:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), None, "in-memory TFLite model"
    path = Path(model)
    if not path.is_file():
        raise FeatherFaceError(f"TFLite model not found (or not a regular file): {path}")
    return path.read_bytes(), path, str(path)


def _file_contract(data: bytes, path: Path | None, source: str) -> DecodeContract:
    """The file's contract by the one rule (:func:`~featherface_deploy.contract.reconcile`): metadata and sidecar agree."""
    return reconcile(read_contract(data, source), path, source,
                     None if path is not None else f"{source}: no decode contract in its metadata; pass contract=… "
                     "or re-export it")


def _create_interpreter(data: bytes, path: Path | None, threads: int | None, xnnpack: bool,
                        source: str) -> "Interpreter":
    options = {"num_threads": threads}
    if not xnnpack:
        options["experimental_op_resolver_type"] = _litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interpreter = (Interpreter(model_path=str(path), **options) if path is not None
                       else Interpreter(model_content=data, **options))
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError, TypeError) as error:
        raise BackendError(f"LiteRT cannot load {source}: {first_line(error)}") from error
    return interpreter
